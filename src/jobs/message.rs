//! [`JobMessage`]: one best-effort job, as it travels through a broker.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use time::OffsetDateTime;

use super::key::job_key;
use crate::event::Event;
use crate::verify::Identity;

/// One best-effort job: the work of one handler for one verified event, as an
/// outbox relay or a [`JobSink`](super::JobSink) hands it to a broker and a
/// worker receives it.
///
/// It carries everything a worker needs to run the handler without the
/// original delivery: the provider, the event's [`Identity`] (id, kind,
/// `occurred_at`, metadata) and the raw body, exactly as verified; the
/// handler's registered name; the attempt it is at; and when it was enqueued.
/// [`JobMessage::encode`] and [`JobMessage::decode`] carry it over the wire
/// (see [`WIRE_VERSION`](super::WIRE_VERSION)) and round-trip every field
/// exactly.
///
/// Its [key](JobMessage::key) is the same for every attempt of the job, so a
/// broker (JetStream's `Nats-Msg-Id`) and a worker's
/// [`IdempotencyStore`](crate::IdempotencyStore) deduplicate on it.
///
/// ```
/// use hookgate::jobs::JobMessage;
/// use hookgate::{Event, Identity};
/// use time::OffsetDateTime;
///
/// let event = Event::new("stripe", Identity::new("evt_1", "invoice.paid"), &b"{\"id\":\"evt_1\"}"[..]);
/// let job = JobMessage::new(&event, "email_receipt", OffsetDateTime::now_utc());
/// assert_eq!(job.key(), "stripe:evt_1:email_receipt");
/// assert_eq!(job.attempt(), 1);
///
/// let wire = job.encode();
/// let back = JobMessage::decode(&wire)?;
/// assert_eq!(back, job);
/// assert_eq!(back.event().body(), event.body());
/// # Ok::<(), hookgate::jobs::DecodeError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct JobMessage {
    pub(super) key: String,
    pub(super) handler: Arc<str>,
    pub(super) provider: Arc<str>,
    pub(super) identity: Identity,
    pub(super) body: Bytes,
    pub(super) attempt: u32,
    pub(super) enqueued_at: OffsetDateTime,
}

impl JobMessage {
    /// The job of `handler` (its registered name) for `event`, at attempt 1,
    /// enqueued at `enqueued_at`. The body is shared with the event, not
    /// copied.
    pub fn new(event: &Event, handler: &str, enqueued_at: OffsetDateTime) -> Self {
        Self::from_parts(
            event.provider().into(),
            event.identity().clone(),
            event.body().clone(),
            handler.into(),
            1,
            enqueued_at,
        )
    }

    pub(super) fn from_parts(
        provider: Arc<str>,
        identity: Identity,
        body: Bytes,
        handler: Arc<str>,
        attempt: u32,
        enqueued_at: OffsetDateTime,
    ) -> Self {
        Self {
            key: job_key(&provider, &identity.id, &handler),
            handler,
            provider,
            identity,
            body,
            attempt,
            enqueued_at,
        }
    }

    /// The same job at attempt `attempt` (at least 1; 0 is taken as 1): what a
    /// worker or relay sends when it hands the job on for another try.
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt.max(1);
        self
    }

    /// The same job, enqueued at `at`.
    #[must_use]
    pub fn with_enqueued_at(mut self, at: OffsetDateTime) -> Self {
        self.enqueued_at = at;
        self
    }

    /// The job key, `{provider}:{event_id}:{handler}`: the same for every
    /// attempt and every copy of the job, and different for any other
    /// provider, event id or handler. In each part, `%`, `:` and every byte
    /// outside printable ASCII are written `%XX` (so `a:b` as an event id
    /// reads `a%3Ab`), which keeps the parts apart and the key a valid header
    /// value.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key a [`JobRunner`](super::JobRunner) claims for this job in an
    /// [`IdempotencyStore`](crate::IdempotencyStore): `job:` and the
    /// [job key](JobMessage::key). The prefix keeps job keys apart from the
    /// pipeline's event keys (`{provider}:{event_id}`) when both share a
    /// store: an event id may itself contain `:` (composite dedup keys do), so
    /// an unprefixed job key could name an event. Only a provider named `job`
    /// could still meet them; giving the workers a store (table, key prefix)
    /// of their own rules that out too.
    pub fn store_key(&self) -> String {
        let mut key = String::with_capacity(4 + self.key.len());
        key.push_str("job:");
        key.push_str(&self.key);
        key
    }

    /// The name the handler was registered with.
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// The event's provider (`"stripe"`, `"github"`, …).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The event's identity: id, kind, `occurred_at` and metadata.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The event's raw body, exactly as received and verified.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The attempt this message is for, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the job was first enqueued.
    pub fn enqueued_at(&self) -> OffsetDateTime {
        self.enqueued_at
    }

    /// The event, as the handler sees it (the body is shared, not copied).
    pub fn event(&self) -> Event {
        Event::new(
            Arc::clone(&self.provider),
            self.identity.clone(),
            self.body.clone(),
        )
    }
}

impl fmt::Debug for JobMessage {
    /// The key, attempt and body length, never the body: payloads carry
    /// customer data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobMessage")
            .field("key", &self.key)
            .field("kind", &self.identity.kind)
            .field("attempt", &self.attempt)
            .field("enqueued_at", &self.enqueued_at)
            .field("body_len", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobMessage {
        let event = Event::new(
            "shopify",
            Identity::new("w-1", "orders/create").with_metadata("shop_domain", "a.myshopify.com"),
            &br#"{"email":"a@example.com"}"#[..],
        );
        JobMessage::new(&event, "notify", OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn the_event_comes_back_with_its_identity_and_the_same_body_bytes() {
        let job = job();
        let event = job.event();
        assert_eq!(event.provider(), "shopify");
        assert_eq!(event.identity(), job.identity());
        assert_eq!(event.metadata("shop_domain"), Some("a.myshopify.com"));
        assert_eq!(event.body().as_ptr(), job.body().as_ptr());
    }

    #[test]
    fn the_key_does_not_change_with_the_attempt() {
        let job = job();
        let later = job.clone().with_attempt(5);
        assert_eq!(later.key(), job.key());
        assert_eq!(later.attempt(), 5);
        assert_eq!(job.clone().with_attempt(0).attempt(), 1);
    }

    #[test]
    fn the_store_key_is_the_job_key_behind_a_prefix() {
        assert_eq!(job().store_key(), "job:shopify:w-1:notify");
    }

    #[test]
    fn debug_hides_the_body() {
        let printed = format!("{:?}", job());
        assert!(printed.contains("shopify:w-1:notify"));
        assert!(!printed.contains("example.com"));
    }
}
