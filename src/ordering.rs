//! The ordering guard: an event older than one already processed for the
//! same object is answered 200 [`Stale`](crate::OutcomeKind::Stale) without
//! running its handlers.
//!
//! Providers do not deliver in order: Stripe says so outright, a retry of an
//! old event can land after a newer one succeeded, and a redelivered GitHub
//! event arrives whenever someone presses the button. A handler that writes
//! an object's state (a subscription's status, an order's fulfilment) would
//! then overwrite the newer state with the older one. With a guard set for a
//! provider ([`PipelineBuilder::ordering`](crate::PipelineBuilder::ordering)),
//! each claimed event is first given an [`OrderingKey`]: the object it is
//! about and its event time. Then:
//!
//! - if the newest event time already processed for that object (its
//!   [watermark](crate::store::watermark)) is **later** than this event's,
//!   the event is stale: its key is completed (a retry is a duplicate),
//!   no handler runs, the answer is 200 `Stale`, it is counted in
//!   [`Stats::stale`](crate::Stats::stale), handed to the `on_rejected` hook
//!   and journaled as `stale`;
//! - otherwise its critical handlers run; once they all succeeded the
//!   watermark is raised to its time (an atomic maximum in the store), and
//!   only then is the key completed. When raising the watermark fails, the
//!   key is released and the answer is 503, as when completing fails.
//!
//! Events with the **same** time are never stale to each other (Stripe's
//! `created` has one-second resolution, and one action often emits several
//! events in the same second). Two events for one object that are in flight
//! at the same time both run: the guard compares with what is processed,
//! not with what is running. An event the guard gives no key to (the
//! function returns `None`) is not guarded. A [forced replay](crate::ReplayOptions::forced)
//! is never stale, but does raise the watermark. The watermarks live in the
//! idempotency store's backend ([`IdempotencyStore::watermarks`](crate::store::IdempotencyStore::watermarks)),
//! kept for the provider's retention.
//!
//! ```
//! use hookgate::ordering::{OrderingGuard, OrderingKey};
//! use hookgate::{MemoryStore, Pipeline, Stripe};
//!
//! let pipeline = Pipeline::builder()
//!     .verifier(Stripe::builder("whsec_x").build()?)
//!     .store(MemoryStore::new())
//!     // `data.object.id` at the event's `created`:
//!     .ordering("stripe", OrderingGuard::stripe())
//!     .build()?;
//! # drop(pipeline);
//! // Or any rule of your own:
//! let by_customer = OrderingGuard::new(|event| {
//!     let customer = event.json().ok()?["data"]["object"]["customer"].as_str()?.to_owned();
//!     Some(OrderingKey::new(customer, event.occurred_at()?))
//! });
//! # drop(by_customer);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::event::Event;
#[cfg(feature = "tokio")]
use crate::store::Watermark;

/// What an event is about and when it happened, for the ordering guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderingKey {
    /// The object the event is about (`sub_123`, `orders/450789469`). The
    /// pipeline scopes it by provider: the watermark's key is
    /// `provider:object`.
    pub object: String,
    /// When the event happened, as the provider says (kept to the
    /// millisecond).
    pub at: OffsetDateTime,
}

impl OrderingKey {
    /// The key of an event about `object` that happened `at`.
    pub fn new(object: impl Into<String>, at: OffsetDateTime) -> Self {
        Self {
            object: object.into(),
            at,
        }
    }
}

type KeyOf = dyn Fn(&Event) -> Option<OrderingKey> + Send + Sync;

/// How the ordering guard finds an event's [`OrderingKey`]; see the
/// [module](self). Cheap to clone.
#[derive(Clone)]
pub struct OrderingGuard {
    key_of: Arc<KeyOf>,
    rule: &'static str,
}

impl OrderingGuard {
    /// A guard that asks `key_of` for each claimed event's key; `None`
    /// leaves the event unguarded. It runs once per claimed event, before
    /// the critical handlers: keep it cheap, and never let it panic (a
    /// panic is caught and leaves the event unguarded).
    pub fn new(key_of: impl Fn(&Event) -> Option<OrderingKey> + Send + Sync + 'static) -> Self {
        Self {
            key_of: Arc::new(key_of),
            rule: "custom",
        }
    }

    /// Stripe: the object at `data.object.id`, at the event's `created`
    /// ([`Event::occurred_at`]). Events without an object id (or an empty
    /// one) or a time are not guarded.
    pub fn stripe() -> Self {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            data: Data<'a>,
        }
        #[derive(Deserialize)]
        struct Data<'a> {
            #[serde(borrow)]
            object: Object<'a>,
        }
        #[derive(Deserialize)]
        struct Object<'a> {
            #[serde(borrow)]
            id: Cow<'a, str>,
        }
        Self {
            key_of: Arc::new(|event: &Event| {
                let at = event.occurred_at()?;
                let envelope: Envelope<'_> = serde_json::from_slice(event.body()).ok()?;
                let id = envelope.data.object.id;
                (!id.is_empty()).then(|| OrderingKey::new(id, at))
            }),
            rule: "stripe: data.object.id at created",
        }
    }

    /// Shopify: the resource of the topic and the body's `id`
    /// (`orders/450789469` for `orders/updated`), at the body's
    /// `updated_at`, or the `X-Shopify-Triggered-At` time when the body has
    /// none (Shopify's advice for ordering its webhooks). Events without an
    /// `id` or a time are not guarded.
    pub fn shopify() -> Self {
        #[derive(Deserialize)]
        struct Resource<'a> {
            id: Option<serde_json::Value>,
            #[serde(borrow)]
            updated_at: Option<Cow<'a, str>>,
        }
        Self {
            key_of: Arc::new(|event: &Event| {
                let resource: Resource<'_> = serde_json::from_slice(event.body()).ok()?;
                let id = scalar_text(&resource.id?)?;
                let at = resource
                    .updated_at
                    .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
                    .or_else(|| event.occurred_at())?;
                let topic = event.kind();
                let resource = topic
                    .split_once('/')
                    .map_or(topic, |(resource, _)| resource);
                Some(OrderingKey::new(format!("{resource}/{id}"), at))
            }),
            rule: "shopify: topic resource and id at updated_at",
        }
    }

    /// Any JSON provider: the string or number at the JSON `pointer`
    /// (RFC 6901, e.g. `/data/object/id`), at the event's
    /// [`occurred_at`](Event::occurred_at).
    pub fn json_pointer(pointer: impl Into<String>) -> Self {
        let pointer = pointer.into();
        Self {
            key_of: Arc::new(move |event: &Event| {
                let at = event.occurred_at()?;
                let object = scalar_text(event.json().ok()?.pointer(&pointer)?)?;
                Some(OrderingKey::new(object, at))
            }),
            rule: "json pointer at occurred_at",
        }
    }

    /// The key of `event`, or `None` when it is not guarded (the rule
    /// found none, or panicked).
    pub fn key(&self, event: &Event) -> Option<OrderingKey> {
        let key_of = &self.key_of;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| key_of(event)))
            .ok()
            .flatten()
    }

    /// The watermark key (`provider:object`, scoped as idempotency keys
    /// are) and time of `event` for provider `provider`.
    #[cfg(feature = "tokio")]
    pub(crate) fn watermark_of(
        &self,
        provider: &str,
        event: &Event,
    ) -> Option<(String, Watermark)> {
        let key = self.key(event)?;
        let object = crate::event::idempotency_key(provider, &key.object);
        Some((object, Watermark::from_time(key.at)))
    }
}

/// A JSON id as text: a string as it is, a number as written; `None` for
/// anything else.
fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl fmt::Debug for OrderingGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OrderingGuard").field(&self.rule).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Identity;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn event(provider: &str, kind: &str, occurred: Option<i64>, body: &'static str) -> Event {
        let identity = Identity::new("evt_1", kind).occurred_at(occurred.map(at));
        Event::new(provider, identity, body.as_bytes())
    }

    #[test]
    fn stripe_takes_the_object_id_at_created() {
        let guard = OrderingGuard::stripe();
        let e = event(
            "stripe",
            "customer.subscription.updated",
            Some(1_700_000_000),
            r#"{"id":"evt_1","data":{"object":{"id":"sub_\u0031","status":"active"}}}"#,
        );
        assert_eq!(
            guard.key(&e),
            Some(OrderingKey::new("sub_1", at(1_700_000_000)))
        );
        #[cfg(feature = "tokio")]
        {
            let (object, mark) = guard.watermark_of("stripe", &e).unwrap();
            assert_eq!(object, "stripe:sub_1");
            assert_eq!(mark.unix_millis(), 1_700_000_000_000);
        }
        for body in [
            r#"{"data":{}}"#,
            r#"{"data":{"object":{"id":5}}}"#,
            r#"{"data":{"object":{"id":""}}}"#,
            "not json",
            "{}",
        ] {
            let e = event("stripe", "x", Some(1), body);
            assert_eq!(guard.key(&e), None, "{body}");
        }
        let no_time = event("stripe", "x", None, r#"{"data":{"object":{"id":"a"}}}"#);
        assert_eq!(guard.key(&no_time), None);
    }

    #[test]
    fn shopify_takes_the_resource_and_id_at_updated_at() {
        let guard = OrderingGuard::shopify();
        let e = event(
            "shopify",
            "orders/updated",
            Some(1),
            r#"{"id":450789469,"updated_at":"2026-01-02T03:04:05-05:00"}"#,
        );
        let key = guard.key(&e).unwrap();
        assert_eq!(key.object, "orders/450789469");
        assert_eq!(
            key.at,
            OffsetDateTime::parse("2026-01-02T08:04:05Z", &Rfc3339).unwrap()
        );
        // No updated_at: the triggered-at time.
        let e = event("shopify", "app/uninstalled", Some(7), r#"{"id":"gid-1"}"#);
        assert_eq!(guard.key(&e), Some(OrderingKey::new("app/gid-1", at(7))));
        let e = event(
            "shopify",
            "orders/create",
            None,
            r#"{"id":1,"updated_at":"bad"}"#,
        );
        assert_eq!(guard.key(&e), None);
        let e = event("shopify", "orders/create", Some(1), r#"{"id":[1]}"#);
        assert_eq!(guard.key(&e), None);
    }

    #[test]
    fn a_json_pointer_takes_strings_and_numbers() {
        let guard = OrderingGuard::json_pointer("/object/id");
        let e = event("acme", "x", Some(3), r#"{"object":{"id":42}}"#);
        assert_eq!(guard.key(&e), Some(OrderingKey::new("42", at(3))));
        let e = event("acme", "x", Some(3), r#"{"object":{"id":"a"}}"#);
        assert_eq!(guard.key(&e), Some(OrderingKey::new("a", at(3))));
        let e = event("acme", "x", Some(3), r#"{"object":{"id":null}}"#);
        assert_eq!(guard.key(&e), None);
    }

    #[test]
    fn a_panicking_rule_leaves_the_event_unguarded() {
        let guard = OrderingGuard::new(|_| panic!("boom"));
        let e = event("acme", "x", Some(3), "{}");
        assert_eq!(guard.key(&e), None);
        assert_eq!(format!("{guard:?}"), "OrderingGuard(\"custom\")");
    }
}
