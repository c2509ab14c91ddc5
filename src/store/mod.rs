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

pub use memory::{MemoryStore, MemoryStoreBuilder, MemoryStoreError};

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
// Each store uses part of the shared helpers; all of them are used with every store on.
#[cfg_attr(
    not(all(feature = "sqlite", feature = "postgres", feature = "redis")),
    allow(dead_code)
)]
mod durable;
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
        Self(xxhash_rust::xxh3::xxh3_128(body))
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
/// runs. Run the public conformance suite (`store::conformance`) against your
/// own implementation.
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
}

#[async_trait]
impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Arc<S> {
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
}

#[async_trait]
impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Box<S> {
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
}
