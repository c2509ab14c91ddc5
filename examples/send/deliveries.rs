//! Which deliveries a run sends, in which order, and how each is signed.
//!
//! Delivery `i` is either the first attempt of a new event or a retry of an
//! earlier one, decided by `i` alone, so the whole plan can be built before
//! the clock starts (see [`Deliveries::build`]) or, for runs too large to hold
//! in memory, one delivery at a time while sending.

use bytes::Bytes;
use hookgate::testing::{github_headers, shopify_headers, stripe_headers};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::args::Args;
use crate::payload::{self, github_event_and_action, mix, EventIds, Provider};

/// Runs whose distinct bodies fit in this many bytes (and events) are built
/// before sending starts; larger ones are built while sending.
const PREBUILD_BYTES: u64 = 512 << 20;
/// Bounds the age of a pre-built Stripe signature (Stripe's tolerance is 300 s).
const PREBUILD_EVENTS: u64 = 200_000;

/// One request: a body and the headers the provider would send with it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The raw JSON body (shared between an event and its retries).
    pub body: Bytes,
    /// The signature, identity and content headers.
    pub headers: HeaderMap,
}

/// Delivery `i` of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The first delivery of event number `n`.
    First(u64),
    /// A retry of event number `n`, sent earlier in the run.
    Retry(u64),
}

/// What a run sends: the provider, kind and secret, and which deliveries
/// are retries.
#[derive(Debug, Clone)]
pub struct Plan {
    provider: Provider,
    kind: String,
    secret: String,
    size: Option<usize>,
    count: u64,
    duplicates: f64,
    /// Makes this run's ids differ from every other run's.
    run: u64,
    /// When the run's events happened.
    at: OffsetDateTime,
}

impl Plan {
    /// The plan of the run `args` asks for; event ids are new for every run.
    pub fn new(args: &Args) -> Self {
        let at = OffsetDateTime::now_utc();
        Self {
            provider: args.provider,
            kind: args.kind.clone(),
            secret: args.secret.clone(),
            size: args.size,
            count: args.count,
            duplicates: args.duplicates,
            run: mix(at.unix_timestamp_nanos() as u64 ^ u64::from(std::process::id()) << 40),
            at,
        }
    }

    /// How many of deliveries `0..i` are retries: `i × duplicates`, rounded
    /// down, spread evenly; the first delivery is never one.
    fn retries_before(&self, i: u64) -> u64 {
        ((i as f64 * self.duplicates) as u64).min(i.saturating_sub(1))
    }

    /// How many distinct events the run sends.
    pub fn events(&self) -> u64 {
        self.count - self.retries_before(self.count)
    }

    /// How many deliveries are retries.
    pub fn retries(&self) -> u64 {
        self.retries_before(self.count)
    }

    /// What delivery `i` is. A retry resends an event chosen at random among
    /// those already sent (possibly still in flight, as real retries can be).
    pub fn attempt(&self, i: u64) -> Attempt {
        let before = self.retries_before(i);
        let first_attempts = i - before;
        if self.retries_before(i + 1) > before {
            Attempt::Retry(mix(self.run ^ i) % first_attempts)
        } else {
            Attempt::First(first_attempts)
        }
    }

    fn ids(&self, event: u64) -> EventIds {
        EventIds::new(self.run, event)
    }

    /// The body of event number `event`.
    pub fn body(&self, event: u64) -> Bytes {
        payload::body(
            self.provider,
            &self.kind,
            self.ids(event),
            self.at,
            self.size,
        )
        .into()
    }

    /// Delivery `attempt` of its event, whose body is `body`, with the
    /// provider's headers. Signed as the provider signs each attempt: Stripe
    /// signs every attempt with its own time; GitHub and Shopify resend the
    /// same ids and signature.
    pub fn delivery(&self, event: u64, body: Bytes) -> Delivery {
        let ids = self.ids(event);
        let (pairs, user_agent, content_type) = match self.provider {
            Provider::Stripe => (
                stripe_headers(&self.secret, &body, OffsetDateTime::now_utc()),
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "application/json; charset=utf-8",
            ),
            Provider::GitHub => {
                let (event, _) = github_event_and_action(&self.kind);
                let pairs = github_headers(&self.secret, &body, event, &ids.github_delivery());
                (pairs, "GitHub-Hookshot/a1b2c3d", "application/json")
            }
            Provider::Shopify => {
                let mut pairs =
                    shopify_headers(&self.secret, &body, &self.kind, &ids.shopify_webhook_id());
                pairs.push(("X-Shopify-Event-Id".into(), ids.shopify_event_id()));
                pairs.push((
                    "X-Shopify-Triggered-At".into(),
                    self.at.format(&Rfc3339).unwrap_or_default(),
                ));
                (pairs, "Shopify-Captain-Hook", "application/json")
            }
        };
        let mut headers = HeaderMap::with_capacity(pairs.len() + 2);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(USER_AGENT, HeaderValue::from_static(user_agent));
        for (name, value) in pairs {
            // Infallible: the names are hookgate's constants, and the values are
            // signatures, generated ids, times and the kind, which `args`
            // checked is visible ASCII.
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid header name");
            let value = HeaderValue::try_from(value).expect("a visible-ASCII header value");
            headers.append(name, value);
        }
        Delivery { body, headers }
    }

    /// Delivery `i`, built from scratch.
    fn build(&self, i: u64) -> Delivery {
        let (Attempt::First(event) | Attempt::Retry(event)) = self.attempt(i);
        self.delivery(event, self.body(event))
    }
}

/// The deliveries of a run, built up front when they fit in memory.
#[derive(Debug)]
pub enum Deliveries {
    /// Every delivery, in order; retries share their event's body.
    Prebuilt(Vec<Delivery>),
    /// Too many to hold: each is built when it is sent.
    OnTheFly(Plan),
}

impl Deliveries {
    /// Builds every delivery of `plan` if their distinct bodies fit in
    /// [`PREBUILD_BYTES`], else defers building to [`Deliveries::get`].
    pub fn build(plan: Plan) -> Self {
        let body_size = plan.size.unwrap_or(0).max(2048) as u64;
        if plan.events() > PREBUILD_EVENTS || plan.events() * body_size > PREBUILD_BYTES {
            return Self::OnTheFly(plan);
        }
        let mut bodies: Vec<Bytes> = Vec::with_capacity(plan.events() as usize);
        let mut deliveries = Vec::with_capacity(plan.count as usize);
        for i in 0..plan.count {
            let delivery = match plan.attempt(i) {
                Attempt::First(event) => {
                    let body = plan.body(event);
                    bodies.push(body.clone());
                    plan.delivery(event, body)
                }
                Attempt::Retry(event) => plan.delivery(event, bodies[event as usize].clone()),
            };
            deliveries.push(delivery);
        }
        Self::Prebuilt(deliveries)
    }

    /// Whether the bodies were built before sending started.
    pub fn is_prebuilt(&self) -> bool {
        matches!(self, Self::Prebuilt(_))
    }

    /// Delivery `i`.
    pub fn get(&self, i: u64) -> Delivery {
        match self {
            Self::Prebuilt(deliveries) => deliveries[i as usize].clone(),
            Self::OnTheFly(plan) => plan.build(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(count: u64, duplicates: f64) -> Plan {
        Plan {
            provider: Provider::GitHub,
            kind: "push".into(),
            secret: "s".into(),
            size: None,
            count,
            duplicates,
            run: 7,
            at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn retries_resend_earlier_events() {
        for (count, duplicates) in [(1, 1.0), (10, 0.0), (100, 0.25), (1000, 0.5), (50, 1.0)] {
            let plan = plan(count, duplicates);
            let mut next = 0;
            let mut retries = 0;
            for i in 0..count {
                match plan.attempt(i) {
                    Attempt::First(event) => {
                        assert_eq!(event, next);
                        next += 1;
                    }
                    Attempt::Retry(event) => {
                        assert!(event < next);
                        retries += 1;
                    }
                }
            }
            assert_eq!((next, retries), (plan.events(), plan.retries()));
            assert_eq!(plan.attempt(0), Attempt::First(0));
        }
        assert_eq!(plan(1000, 0.25).retries(), 250);
    }
}
