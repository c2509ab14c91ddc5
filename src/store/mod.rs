//! Idempotency stores: who may run an event's critical work, and whether it is done.
//!
//! The protocol (see the crate docs): `claim` a key with the body's fingerprint
//! and a lease; when it acquires the key ([`Claim::token`]) run the critical
//! work, then `complete` on success or `release` on failure, both with the
//! fencing token the claim gave.
//! An expired lease can be claimed again (crash recovery), and a token from an
//! older attempt can no longer settle the key. The body's fingerprint guards
//! completed keys only (see [`Claim`]): a retry after a failed attempt runs
//! even when the provider re-rendered the body.
//!
//! Implementations: [`MemoryStore`] in the process; shared by every instance of
//! a service and surviving restarts, behind opt-in features,
//! `sqlite::SqliteStore` (`sqlite`), `postgres::PostgresStore` (`postgres`) and
//! `redis::RedisStore` (`redis`). `conformance` checks any store, yours too.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod conformance;
mod memory;
mod protocol;
pub mod watermark;

pub use memory::{MemoryStore, MemoryStoreBuilder, MemoryStoreError};
pub use watermark::{Watermark, WatermarkStore};

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
// Each store uses part of the shared helpers; all of them are used with every store on.
#[cfg_attr(
    not(all(feature = "sqlite", feature = "postgres", feature = "redis")),
    allow(dead_code)
)]
pub(crate) mod durable;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "redis")))
)]
pub use durable::StoreConfigError;

/// A 128-bit fingerprint of a delivery's body (xxh3-128).
///
/// Authenticity is already proven by the MAC; the fingerprint only tells whether
/// two deliveries with the same id carry the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    /// The fingerprint of `body`.
    pub fn of(body: &[u8]) -> Self {
        Self(twox_hash::XxHash3_128::oneshot(body))
    }

    /// The fingerprint as 16 big-endian bytes (for storage).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// A fingerprint from 16 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }
}

/// A fencing token: the attempt number of a claim. Each new claim of a key gets a
/// larger token, and only the holder of the current token may settle the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FencingToken(pub u64);

/// The answer to a claim.
///
/// The body's fingerprint guards **completed** keys only: providers re-render an
/// event between attempts (an endpoint's API version changes, Stripe's
/// `pending_webhooks` is a live count), so a retry after a failed or abandoned
/// attempt runs whatever its body, while a duplicate of finished work is never
/// run again, whatever its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The caller holds the key until the lease ends and must run the critical
    /// work, then settle with this token. Answered for an absent key, a
    /// completed key past its retention (whatever its body), and a released key
    /// or an expired lease claimed again with the same body.
    Acquired(FencingToken),
    /// As [`Claim::Acquired`], for a released key or an expired lease that was
    /// last claimed with another body: the caller holds the key and must run the
    /// critical work, and the key now holds the new body's fingerprint. The
    /// pipeline counts these (`Stats::body_changed`).
    AcquiredBodyChanged(FencingToken),
    /// Another attempt holds an unexpired lease on the key until `until`,
    /// whatever the body. Nothing is claimed.
    InFlight {
        /// When the other attempt's lease expires.
        until: SystemTime,
    },
    /// The critical work for this key already succeeded, with the same body,
    /// and the key is within its retention. Nothing is claimed.
    Completed,
    /// The critical work for this key already succeeded, with another body, and
    /// the key is within its retention: same id, different bytes. Nothing is
    /// claimed and the stored fingerprint stays. The pipeline answers it as a
    /// duplicate and reports it, or refuses it under a strict policy.
    CompletedBodyChanged,
}

impl Claim {
    /// The token of a claim that acquired the key ([`Claim::Acquired`] or
    /// [`Claim::AcquiredBodyChanged`]); `None` when nothing was claimed.
    pub fn token(&self) -> Option<FencingToken> {
        match *self {
            Claim::Acquired(token) | Claim::AcquiredBodyChanged(token) => Some(token),
            Claim::InFlight { .. } | Claim::Completed | Claim::CompletedBodyChanged => None,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or failed to answer (maps to status 503).
    #[error("idempotency store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The token does not hold the key any more: its lease expired and a newer
    /// attempt claimed it, or the key was already settled.
    #[error("fencing token {token:?} no longer holds key `{key}`")]
    StaleToken {
        /// The key.
        key: String,
        /// The token that was refused.
        token: FencingToken,
    },
    /// The store holds data it cannot interpret (e.g. written by another program).
    #[error("idempotency store holds unreadable data for key `{key}`: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    /// Wraps a backend error as [`StoreError::Unavailable`].
    pub fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Unavailable(err.into())
    }
}

/// Storage for the idempotency protocol, shared by every instance of a service.
///
/// Implementations must make `claim` atomic: of concurrent claims of one key
/// (from any number of processes), at most one acquires the key
/// ([`Claim::Acquired`] or [`Claim::AcquiredBodyChanged`]) while the lease
/// runs. Run the public conformance suite (`store::conformance`, feature
/// `tokio`) against your own implementation.
///
/// # Implementing a store
///
/// A store keeps, per key, the fingerprint of the body that last claimed it,
/// where it stands (leased, released or completed), the token of its current
/// claim and when its lease or retention ends. Here is a whole store for one
/// process, a `HashMap` behind a mutex (which makes every call atomic),
/// checked by the conformance suite:
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
/// use std::time::{Duration, SystemTime};
///
/// use hookgate::async_trait;
/// use hookgate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};
///
/// #[derive(Debug, Clone, Copy, PartialEq)]
/// enum State {
///     Leased,
///     Released,
///     Completed,
/// }
///
/// #[derive(Debug, Clone, Copy)]
/// struct Entry {
///     fingerprint: Fingerprint,
///     state: State,
///     token: FencingToken,
///     /// When the lease (leased) or the retention (completed) ends.
///     expires_at: SystemTime,
/// }
///
/// #[derive(Debug, Default)]
/// struct Keys {
///     entries: HashMap<String, Entry>,
///     /// One counter for every key: a token is larger than any given before,
///     /// even for a key that was purged in between.
///     last_token: u64,
/// }
///
/// #[derive(Debug, Default)]
/// struct ToyStore {
///     keys: Mutex<Keys>,
/// }
///
/// impl ToyStore {
///     fn keys(&self) -> MutexGuard<'_, Keys> {
///         // A panic elsewhere leaves the map consistent: every change is one insert.
///         self.keys.lock().unwrap_or_else(PoisonError::into_inner)
///     }
///
///     /// Moves `key` from leased to `state` if `token` still holds it.
///     fn settle(&self, key: &str, token: FencingToken, state: State, expires_at: SystemTime)
///         -> Result<(), StoreError>
///     {
///         match self.keys().entries.get_mut(key) {
///             Some(entry) if entry.token == token && entry.state == State::Leased => {
///                 entry.state = state;
///                 entry.expires_at = expires_at;
///                 Ok(())
///             }
///             _ => Err(StoreError::StaleToken { key: key.to_owned(), token }),
///         }
///     }
/// }
///
/// /// `now + duration`, saturating far in the future.
/// fn after(now: SystemTime, duration: Duration) -> SystemTime {
///     let century = Duration::from_secs(100 * 366 * 24 * 3600);
///     now.checked_add(duration.min(century)).unwrap_or(now)
/// }
///
/// #[async_trait]
/// impl IdempotencyStore for ToyStore {
///     async fn claim(&self, key: &str, fingerprint: Fingerprint, lease: Duration)
///         -> Result<Claim, StoreError>
///     {
///         let now = SystemTime::now();
///         let mut keys = self.keys();
///         let mut body_changed = false;
///         if let Some(entry) = keys.entries.get(key) {
///             let expired = entry.expires_at <= now;
///             match entry.state {
///                 // Someone else runs the work: whatever the body, wait.
///                 State::Leased if !expired => {
///                     return Ok(Claim::InFlight { until: entry.expires_at });
///                 }
///                 // Finished work is never run again; the fingerprint tells
///                 // a plain duplicate from a re-rendered one.
///                 State::Completed if !expired => {
///                     return Ok(if entry.fingerprint == fingerprint {
///                         Claim::Completed
///                     } else {
///                         Claim::CompletedBodyChanged
///                     });
///                 }
///                 // Past its retention a completed key is new again.
///                 State::Completed => {}
///                 // A failed or abandoned attempt: the retry runs whatever its body.
///                 State::Leased | State::Released => {
///                     body_changed = entry.fingerprint != fingerprint;
///                 }
///             }
///         }
///         keys.last_token += 1;
///         let token = FencingToken(keys.last_token);
///         let expires_at = after(now, lease);
///         let entry = Entry { fingerprint, state: State::Leased, token, expires_at };
///         keys.entries.insert(key.to_owned(), entry);
///         Ok(if body_changed {
///             Claim::AcquiredBodyChanged(token)
///         } else {
///             Claim::Acquired(token)
///         })
///     }
///
///     async fn complete(&self, key: &str, token: FencingToken, retention: Duration)
///         -> Result<(), StoreError>
///     {
///         let expires_at = after(SystemTime::now(), retention);
///         self.settle(key, token, State::Completed, expires_at)
///     }
///
///     async fn release(&self, key: &str, token: FencingToken, _reason: &str)
///         -> Result<(), StoreError>
///     {
///         self.settle(key, token, State::Released, SystemTime::now())
///     }
///
///     async fn purge_expired(&self) -> Result<u64, StoreError> {
///         let now = SystemTime::now();
///         let mut keys = self.keys();
///         let before = keys.entries.len();
///         keys.entries
///             .retain(|_, entry| entry.state != State::Completed || entry.expires_at > now);
///         Ok(u64::try_from(before - keys.entries.len()).unwrap_or(u64::MAX))
///     }
/// }
///
/// #[tokio::main(flavor = "multi_thread", worker_threads = 4)]
/// async fn main() {
///     let store = Arc::new(ToyStore::default());
///     if let Err(failure) = hookgate::store::conformance::run(&store).await {
///         panic!("{failure}");
///     }
/// }
/// ```
///
/// A store shared by several instances makes the same decisions where the
/// data lives: in one transaction, a conditional write, or a server-side
/// script, as the SQLite, PostgreSQL and Redis stores do.
///
/// # Why `async_trait`
///
/// The pipeline holds its store as `Arc<dyn IdempotencyStore>`, so the trait
/// must stay dyn-compatible (checked at compile time below the trait). A trait
/// with native `async fn` methods (or methods returning `impl Future`) is not:
/// each implementation's futures have their own types, which a vtable cannot
/// name. [`async_trait`](crate::async_trait) turns each method into one that
/// returns a boxed future. The cost is one allocation per call, negligible
/// beside a store's round trip; write your implementation with
/// `#[hookgate::async_trait]` as above, and the crate's version of the macro
/// always matches the trait's.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + fmt::Debug {
    /// Claims `key` for one attempt of the critical work, holding it for `lease`,
    /// with `fingerprint` the fingerprint of this delivery's body.
    ///
    /// - absent key, or completed key past its retention (whatever the body):
    ///   [`Claim::Acquired`];
    /// - released key, or lease expired: taken whatever the body, the key now
    ///   holds `fingerprint`: [`Claim::Acquired`] for the body it held,
    ///   [`Claim::AcquiredBodyChanged`] for another one;
    /// - unexpired lease, whatever the body: [`Claim::InFlight`];
    /// - completed and still retained: [`Claim::Completed`] for the body it
    ///   completed with, [`Claim::CompletedBodyChanged`] for another one (the
    ///   stored fingerprint stays).
    ///
    /// A claim that acquires the key gets a token larger than any given before
    /// for this key.
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError>;

    /// Marks the critical work of `key` as done, keeping the key for `retention`.
    /// Fails with [`StoreError::StaleToken`] unless `token` holds the key's current,
    /// unsettled claim.
    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError>;

    /// Frees `key` after a failed attempt so the provider's retry runs the work
    /// again; `reason` is kept for diagnostics. Fails with
    /// [`StoreError::StaleToken`] unless `token` holds the key's current claim.
    async fn release(&self, key: &str, token: FencingToken, reason: &str)
        -> Result<(), StoreError>;

    /// Deletes completed keys whose retention has passed; returns how many.
    /// A store may also delete keys that were released, or whose lease ended,
    /// longer ago than a retention of its own (the durable stores'
    /// `unsettled_retention`), but never a lease that has not ended. Stores that
    /// expire keys on their own may return `Ok(0)`.
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The answer [`IdempotencyStore::claim`] would give, when the store can
    /// give it at once without waiting (no I/O, no lock held across a wait):
    /// the pipeline asks this first and awaits `claim` only on `None`, which
    /// saves the boxed future of an in-process store. `None` (the default)
    /// for every store that talks to a server. A store that answers here
    /// must answer exactly as `claim` would: the two are one decision.
    fn claim_now(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Option<Result<Claim, StoreError>> {
        let _ = (key, fingerprint, lease);
        None
    }

    /// The answer [`IdempotencyStore::complete`] would give, when the store
    /// can give it at once; as [`IdempotencyStore::claim_now`], `None` (the
    /// default) means the pipeline awaits `complete`.
    fn complete_now(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Option<Result<(), StoreError>> {
        let _ = (key, token, retention);
        None
    }

    /// The store's [watermarks](watermark) for the
    /// [ordering guard](crate::ordering), when it keeps them: every built-in
    /// store does, in the same database as its keys (and its `purge_expired`
    /// deletes expired watermarks too, without counting them). `None` (the
    /// default) for a store that does not; a pipeline with an ordering guard
    /// then refuses to build.
    fn watermarks(&self) -> Option<&dyn WatermarkStore> {
        None
    }
}

/// Forwards [`IdempotencyStore`] through each smart pointer named, so that an
/// `Arc<MemoryStore>` or a `Box<dyn IdempotencyStore>` is a store too.
macro_rules! forward_store {
    ($($pointer:ident),*) => {$(
        #[async_trait]
        impl<S: IdempotencyStore + ?Sized> IdempotencyStore for $pointer<S> {
            async fn claim(
                &self,
                key: &str,
                fingerprint: Fingerprint,
                lease: Duration,
            ) -> Result<Claim, StoreError> {
                (**self).claim(key, fingerprint, lease).await
            }
            async fn complete(
                &self,
                key: &str,
                token: FencingToken,
                retention: Duration,
            ) -> Result<(), StoreError> {
                (**self).complete(key, token, retention).await
            }
            async fn release(
                &self,
                key: &str,
                token: FencingToken,
                reason: &str,
            ) -> Result<(), StoreError> {
                (**self).release(key, token, reason).await
            }
            async fn purge_expired(&self) -> Result<u64, StoreError> {
                (**self).purge_expired().await
            }
            fn claim_now(
                &self,
                key: &str,
                fingerprint: Fingerprint,
                lease: Duration,
            ) -> Option<Result<Claim, StoreError>> {
                (**self).claim_now(key, fingerprint, lease)
            }
            fn complete_now(
                &self,
                key: &str,
                token: FencingToken,
                retention: Duration,
            ) -> Option<Result<(), StoreError>> {
                (**self).complete_now(key, token, retention)
            }
            fn watermarks(&self) -> Option<&dyn WatermarkStore> {
                (**self).watermarks()
            }
        }
    )*};
}

forward_store!(Arc, Box);

// `IdempotencyStore` stays dyn-compatible: the pipeline holds
// `Arc<dyn IdempotencyStore>`. A method that breaks it (a generic one, or a
// native `async fn`) fails to compile here.
const _: Option<&dyn IdempotencyStore> = None;
