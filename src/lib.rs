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
pub mod headers;
pub mod secret;
pub mod store;
pub mod verify;

pub use clock::{Clock, FixedClock, SystemClock};
pub use headers::{HeaderError, Headers};
pub use secret::{Secret, SecretSet};
pub use store::{Claim, FencingToken, Fingerprint, IdempotencyStore, MemoryStore, StoreError};
pub use verify::{IdentifyError, Identity, Verified, Verifier, VerifyError};
