//! # hookgate
//!
//! Receive webhooks safely. hookgate verifies every delivery on its raw bytes,
//! deduplicates it across the provider's retries and across the instances of your
//! service, routes it to your handlers, and splits **critical** work (must succeed
//! before you answer 2xx, or the provider retries) from **best-effort** work
//! (notifications with retries and a dead letter, never blocking the answer).
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
pub use store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};
pub use verify::{IdentifyError, Identity, Verified, Verifier, VerifyError};
