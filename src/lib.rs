//! # hookgate
//!
//! Receive webhooks safely. hookgate verifies every delivery on its raw bytes,
//! deduplicates it across the provider's retries and across the instances of your
//! service, routes it to your handlers, and splits **critical** work (must succeed
//! before you answer 2xx, or the provider retries) from **best-effort** work
//! (notifications with retries and a dead letter, never blocking the answer).
//!
//! ## Quick start: a pipeline
//!
//! ```
//! use hookgate::{
//!     handler_fn, testing, HandlerError, Headers, MemoryStore, OutcomeKind, Pipeline, Registry,
//!     Stripe,
//! };
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = Registry::new();
//! // Critical: must succeed before Stripe gets its 2xx, run in this order.
//! registry.critical("stripe", "checkout.session.completed", "mark_order_paid", handler_fn(|event| async move {
//!     let _order = &event.json()?["data"]["object"]["client_reference_id"];
//!     // Update your database; `Err(HandlerError::transient(e))` answers 500 so Stripe retries.
//!     Ok::<(), HandlerError>(())
//! }));
//! // Best-effort: after the answer, with retries and a dead letter.
//! registry.best_effort("stripe", "checkout.session.*", "email_receipt", handler_fn(|_event| async move {
//!     Ok::<(), HandlerError>(())
//! }));
//!
//! let pipeline = Pipeline::builder()
//!     .verifier(Stripe::builder("whsec_endpoint_secret").build()?)
//!     .store(MemoryStore::new()) // share one store between the instances of your service
//!     .registry(registry)
//!     .build()?;
//!
//! // In your HTTP handler: the raw body bytes and every header, exactly as received.
//! // (Here a delivery signed by `hookgate::testing`, as Stripe would sign it.)
//! let body = br#"{"id":"evt_1","object":"event","type":"checkout.session.completed","created":1700000000,"data":{"object":{"client_reference_id":"ord_1"}}}"#;
//! let headers = Headers::from_pairs(testing::stripe_headers("whsec_endpoint_secret", body, time::OffsetDateTime::now_utc()));
//!
//! let outcome = pipeline.handle(&body[..], &headers).await;
//! assert_eq!((outcome.status(), outcome.body()), (200, "ok")); // answer with these
//!
//! // Stripe retries: the critical work does not run twice.
//! let again = pipeline.handle(&body[..], &headers).await;
//! assert!(matches!(again.kind, OutcomeKind::Duplicate));
//! # pipeline.shutdown(std::time::Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```
//!
//! `cargo run --example quickstart` runs a whole online shop this way.
//!
//! ## What every delivery gets
//!
//! [`Pipeline::handle`] checks, in order: the body size, the provider (by its
//! signature header), the signature over the raw bytes, the event's identity,
//! then claims `provider:event_id` in the [`IdempotencyStore`], runs the critical
//! handlers under the provider's deadline, and records the event as done only
//! after they succeeded. Every path ends in an [`Outcome`]:
//!
//! | situation | status | [`OutcomeKind`] |
//! |---|---|---|
//! | body larger than the provider's limit | 413 | `TooLarge` (nothing parsed) |
//! | no signature header, unknown provider, malformed header | 400 | `VerificationFailed` |
//! | signature mismatch, timestamp outside tolerance | 401 | `VerificationFailed` (reason not in the body) |
//! | signing certificate refused (PayPal: URL off PayPal's hosts, no chain to a trust anchor, wrong subject, expired) | 401 | `VerificationFailed` |
//! | signing certificate unavailable (the `CertificateSource` failed, or was slower than the answer budget) | 503 | `VerificationFailed` (the provider retries) |
//! | verified but payload unusable (bad JSON, no id) | 400 | `Unusable` |
//! | duplicate of a completed event | 200 | `Duplicate` (handlers not run) |
//! | duplicate of a completed event, different body | 200 | `Duplicate` (handlers not run; counted in `Stats::duplicate_body_changed` and handed to `on_rejected`) |
//! | the same, under [`FingerprintPolicy::Strict`] | 422 | `FingerprintMismatch` (handlers not run; handed to `on_rejected`) |
//! | retry of a failed or abandoned attempt, different body | as any attempt | the handlers run (counted in `Stats::body_changed`) |
//! | under the opt-in [replay guard](PipelineBuilder::replay_guard): a body already seen with another id or kind | 200 | `Duplicate` (handlers not run; counted in `Stats::replays` and handed to `on_rejected`) |
//! | another attempt holds the lease (any body) | 409 | `InFlight` (a later delivery runs it) |
//! | no handler for this kind | 200 | `Ignored` |
//! | verified check of the endpoint (Slack's `url_verification`, [`Verifier::handshake`]) | 200 | `Handshake` (answered with its challenge; nothing claimed or run) |
//! | older than an event already processed for the same object ([`ordering`] guard on) | 200 | `Stale` |
//! | critical handlers succeed | 200 | `Processed` (best-effort work starts after) |
//! | critical transient error, timeout, panic, lost lease | 500 | `CriticalFailed` (key released) |
//! | critical permanent error | 200 + dead letter (default) or 500 | `PermanentFailure` |
//! | idempotency store unavailable, or slower than the answer budget | 503 | `StoreUnavailable` |
//! | pipeline shutting down | 503 | `ShuttingDown` |
//!
//! A non-2xx answer is only as good as the provider's next delivery: Stripe and
//! Shopify retry on their own, **GitHub never does** — a failed GitHub delivery
//! waits for a manual or API redelivery from GitHub's delivery history.
//!
//! Set a durable [`DeadLetter`] in production
//! ([`PipelineBuilder::dead_letter`]): a critical permanent failure is answered 200
//! once it is in the dead letter. The default is an in-process
//! [`MemoryDeadLetter`], readable and drainable through
//! [`Pipeline::memory_dead_letter`], gone when the process ends.
//!
//! ## Quick start: verify and identify a Stripe delivery by hand
//!
//! ```
//! use hookgate::{Headers, Stripe, Verifier, VerifyError};
//! use std::time::Duration;
//! use time::OffsetDateTime;
//!
//! // Your endpoint's signing secret; add the previous one while Stripe rolls it.
//! let stripe = Stripe::builder("whsec_current")
//!     .secret("whsec_previous")
//!     .tolerance(Duration::from_secs(300))
//!     .build()?;
//!
//! // In your HTTP handler: the raw body bytes and the headers, exactly as received.
//! // (Here a delivery signed by `hookgate::testing`, as Stripe would sign it.)
//! let body = br#"{"id":"evt_1","object":"event","type":"checkout.session.completed","created":1700000000}"#;
//! let now = OffsetDateTime::from_unix_timestamp(1_700_000_005)?;
//! let signed_at = OffsetDateTime::from_unix_timestamp(1_700_000_000)?;
//! let headers = Headers::from_pairs(hookgate::testing::stripe_headers("whsec_previous", body, signed_at));
//!
//! let verified = stripe.verify(body, &headers, now)?;
//! assert_eq!(verified.secret_index, 1); // the previous secret matched
//! let event = stripe.identify(body, &headers)?;
//! assert_eq!(event.id, "evt_1");
//! assert_eq!(event.kind, "checkout.session.completed");
//!
//! // A tampered body is refused with a 401.
//! let err = stripe.verify(b"{\"id\":\"evt_2\"}", &headers, now).unwrap_err();
//! assert!(matches!(err, VerifyError::SignatureMismatch { .. }));
//! assert_eq!(err.status(), 401);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tokio` | yes | [`Pipeline`], [`Registry`] and [`BestEffort`]: the tokio runtime for deadlines, retry sleeps and best-effort tasks |
//! | `http` | no | `From<&http::HeaderMap>` for [`Headers`]; `http::response` (`Outcome` → `http::Response`, `Retry-After` on 409/503); `http::WebhookService`, a `tower::Service` reading each body under its provider's limit while it streams |
//! | `axum` | no | axum 0.8: `axum::routes(pipeline)` (`POST /{provider}`, `POST /`), the `axum::Delivery` extractor, `IntoResponse` for [`Outcome`]; admin routes over the journal and health (`axum::admin::AdminRoutes`); `axum::IpAllowlist`, a source-IP allowlist layer for any route |
//! | `ed25519` | no | `v1a` (ed25519) signatures for [`StandardWebhooks`] (`whpk_` public keys, ed25519-dalek) |
//! | `paypal` | no | `PayPal`: RSA-SHA256 `paypal-transmission-sig`, the certificate of `paypal-cert-url` fetched through your `verify::CertificateSource` and chained to your `verify::TrustAnchors` (RustCrypto `rsa`, `x509-cert`; `crc32fast`) |
//! | `sqlite` | no | `store::sqlite::SqliteStore`: an idempotency store in an SQLite file (bundled SQLite, via rusqlite) |
//! | `postgres` | no | `store::postgres::PostgresStore`: an idempotency store in PostgreSQL shared by every instance (tokio-postgres + deadpool-postgres) |
//! | `postgres` or `sqlite` | no | `transactional`: critical handlers that write in the transaction completing the event's key (`Registry::critical_in_postgres`, `Registry::critical_in_sqlite`); `outbox`: best-effort jobs written in that transaction, run by `outbox::Relay`s (`PipelineBuilder::outbox`) |
//! | `redis` | no | `store::redis::RedisStore`: an idempotency store in Redis shared by every instance (redis-rs connection manager, Lua scripts) |
//! | `tracing` | no | a `tracing` span per delivery (`hookgate.delivery`) and per handler run (`hookgate.handler`), a warning for every answer to look at |
//! | `metrics` | no | `metrics` counters, histograms and gauges of deliveries, durations, in-flight and best-effort work (names in the README) |
//! | `nats` | no | `jobs::nats`: best-effort jobs through NATS JetStream (async-nats) — `NatsSink` (job key as `Nats-Msg-Id`, publish acks), `NatsStream`, `NatsWorker` (durable pull consumer, ack after success, NAK with backoff) |
//! | `rabbitmq` | no | `jobs::rabbitmq`: best-effort jobs through RabbitMQ (lapin) — `RabbitSink` (publisher confirms, persistent messages), `RabbitTopology` (work, retry and dead-letter queues), `RabbitWorker` (manual acks) |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations, rust_2018_idioms)]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod clock;
pub mod dead_letter;
pub mod dedup;
pub mod event;
pub mod handler;
pub mod headers;
pub mod health;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod jobs;
pub mod journal;
pub mod ordering;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub mod outbox;
pub mod outcome;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod pipeline;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod registry;
pub mod rejected;
pub mod retry;
pub mod secret;
pub mod stats;
pub mod store;
pub mod testing;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub mod transactional;
pub mod verify;

/// The attribute that implements hookgate's async traits ([`Handler`],
/// [`IdempotencyStore`], [`DeadLetter`]) on your own types, re-exported so you
/// need no dependency of your own.
pub use async_trait::async_trait;
pub use clock::{Clock, FixedClock, SystemClock};
pub use dead_letter::{
    DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterReason, MemoryDeadLetter,
};
pub use dedup::DedupKey;
pub use event::{Event, PayloadError};
pub use handler::{handler_fn, Handler, HandlerError};
pub use headers::{HeaderError, Headers};
pub use ordering::{OrderingGuard, OrderingKey};
pub use outcome::{AnswerBudgetSpent, CriticalFailure, Outcome, OutcomeKind};
#[cfg(feature = "tokio")]
pub use pipeline::{
    BestEffort, BestEffortReport, BuildError, FingerprintPolicy, PermanentFailurePolicy, Pipeline,
    PipelineBuilder, ProviderLimits, ReplayError, ReplayOptions, ShutdownReport,
};
#[cfg(feature = "tokio")]
pub use registry::Registry;
pub use rejected::{RejectedDelivery, RejectionReason};
pub use retry::{RetryPolicy, RetryPolicyError};
pub use secret::{Secret, SecretSet};
pub use stats::Stats;
pub use store::{Claim, FencingToken, Fingerprint, IdempotencyStore, MemoryStore, StoreError};
pub use verify::{
    ConfigError, GitHub, GitHubBuilder, Hmac, HmacBuilder, IdentifyError, Identity,
    ProviderProfile, Shopify, ShopifyBuilder, SignatureEncoding, Slack, SlackBuilder,
    StandardWebhooks, StandardWebhooksBuilder, Stripe, StripeBuilder, Twilio, TwilioBuilder,
    Verified, Verifier, VerifyError,
};
#[cfg(feature = "paypal")]
#[cfg_attr(docsrs, doc(cfg(feature = "paypal")))]
pub use verify::{PayPal, PayPalBuilder};
