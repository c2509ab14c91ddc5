//! # hookgate
//!
//! Receive webhooks safely. hookgate verifies every delivery on its raw bytes,
//! deduplicates it across the provider's retries and across the instances of your
//! service, routes it to your handlers, and splits **critical** work (must succeed
//! before you answer 2xx, or the provider retries) from **best-effort** work
//! (notifications with retries and a dead letter, never blocking the answer).
//!
//! ## Quick start: verify and identify a Stripe delivery
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
//! | `tokio` | yes | the tokio runtime for deadlines, retry sleeps and best-effort tasks |
//! | `http` | no | `From<&http::HeaderMap>` for [`Headers`] |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations, rust_2018_idioms)]

pub mod clock;
pub mod event;
pub mod followup;
pub mod handler;
pub mod headers;
pub mod outcome;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod pipeline;
pub mod registry;
pub mod secret;
pub mod stats;
pub mod store;
pub mod testing;
pub mod verify;

pub use clock::{Clock, FixedClock, SystemClock};
pub use event::{Event, PayloadError};
pub use followup::{
    DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterReason, MemoryDeadLetter, RetryPolicy,
};
#[cfg(feature = "tokio")]
pub use followup::{FollowUp, FollowUpReport, ShutdownReport};
pub use handler::{handler_fn, Handler, HandlerError};
pub use headers::{HeaderError, Headers};
pub use outcome::{CriticalFailure, Outcome, OutcomeKind};
#[cfg(feature = "tokio")]
pub use pipeline::{BuildError, PermanentFailurePolicy, Pipeline, PipelineBuilder, ProviderLimits};
pub use registry::Registry;
pub use secret::{Secret, SecretSet};
pub use stats::Stats;
pub use store::{Claim, FencingToken, Fingerprint, IdempotencyStore, MemoryStore, StoreError};
pub use verify::{
    ConfigError, GitHub, GitHubBuilder, IdentifyError, Identity, Shopify, ShopifyBuilder, Stripe,
    StripeBuilder, Verified, Verifier, VerifyError,
};
