//! [`BuildError`]: why a pipeline could not be built, one variant per setting
//! that cannot work.

use std::time::Duration;

use crate::registry::RouteError;
#[cfg(doc)]
use crate::{PipelineBuilder, RetryPolicy};

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A [`DedupKey`](crate::DedupKey) set with
    /// [`PipelineBuilder::dedup_key`] cannot work.
    #[error("the dedup key of `{provider}` cannot work: {reason}")]
    InvalidDedupKey {
        /// The provider (or `*`).
        provider: String,
        /// Why.
        reason: crate::dedup::DedupKeyError,
    },
    /// No verifier was added: no delivery could ever be accepted.
    #[error("a pipeline needs at least one verifier: add one with `PipelineBuilder::verifier`")]
    NoVerifier,
    /// No idempotency store was set.
    #[error("a pipeline needs an idempotency store: set one with `PipelineBuilder::store`")]
    NoStore,
    /// Two verifiers have the same provider name.
    #[error("two verifiers are named `{0}`: add several secrets to one verifier instead")]
    DuplicateProvider(String),
    /// A verifier's provider name is empty, is `*`, or holds `:`, which would
    /// make idempotency keys (`provider:event_id`) of two providers collide.
    #[error("invalid provider name `{0}`: use a non-empty name without `:` (and not `*`)")]
    InvalidProviderName(String),
    /// A setting or a handler names a provider that no verifier has.
    #[error("{what} names provider `{provider}`, but no verifier has that name")]
    UnknownProvider {
        /// The provider name.
        provider: String,
        /// Which setting or handler.
        what: String,
    },
    /// A lease is not longer than its critical deadline.
    #[error("the lease of `{provider}` ({lease:?}) must be longer than its critical deadline ({deadline:?}), or a live attempt could lose its key")]
    LeaseNotLongerThanDeadline {
        /// The provider.
        provider: String,
        /// The lease.
        lease: Duration,
        /// The deadline.
        deadline: Duration,
    },
    /// [`PipelineBuilder::replay_guard`] names a provider whose verifier signs
    /// the event id and kind ([`ProviderProfile::signs_identity`](crate::ProviderProfile::signs_identity)).
    #[error("`{0}` signs its event ids and kinds, so a captured delivery cannot be sent again under other headers: it needs no replay guard (leave it out, or use `*`, which skips it)")]
    ReplayGuardOnSignedIdentity(String),
    /// A field of the [`RetryPolicy`] set with
    /// [`PipelineBuilder::retry_policy`] cannot work (see [`RetryPolicy::check`]).
    #[error("the retry policy's `{field}` {requirement}")]
    InvalidRetryPolicy {
        /// The field, as named in [`RetryPolicy`]: `max_attempts`,
        /// `multiplier`, `jitter` or `attempt_timeout`.
        field: &'static str,
        /// What the field must be.
        requirement: &'static str,
    },
    /// A lease is not longer than its answer budget: an attempt that uses the
    /// whole budget could lose its key to a retry while it still runs.
    #[error("the lease of `{provider}` ({lease:?}) must be longer than its answer budget ({budget:?}), or a live attempt could lose its key")]
    LeaseNotLongerThanBudget {
        /// The provider.
        provider: String,
        /// The lease.
        lease: Duration,
        /// The answer budget.
        budget: Duration,
    },
    /// A settle reserve is not shorter than its answer budget, which would
    /// leave the claim and the critical handlers no time at all.
    #[error("the settle reserve of `{provider}` ({reserve:?}) must be shorter than its answer budget ({budget:?}), or the claim and the critical handlers get no time")]
    ReserveNotShorterThanBudget {
        /// The provider.
        provider: String,
        /// The settle reserve.
        reserve: Duration,
        /// The answer budget.
        budget: Duration,
    },
    /// A limit that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// An [ordering guard](crate::ordering) is set, but the idempotency store
    /// keeps no watermarks ([`IdempotencyStore::watermarks`](crate::store::IdempotencyStore::watermarks)
    /// is `None`).
    #[error("an ordering guard needs a store that keeps watermarks (`IdempotencyStore::watermarks`); every built-in store does")]
    OrderingUnsupported,
    /// A handler registration is invalid.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A [transactional](crate::transactional) critical handler is
    /// registered, but the pipeline's store is not the database it runs in.
    /// The store is recognised when `PipelineBuilder::store` is given a
    /// `PostgresStore` or an `SqliteStore` (or an `Arc` of one), not one
    /// behind `dyn IdempotencyStore` or a wrapper of your own.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
    #[error("transactional handler `{handler}` runs in the store's transaction: the pipeline's store must be a {needs} (set it with `PipelineBuilder::store`)")]
    TransactionalStore {
        /// The handler's registered name.
        handler: String,
        /// The store it needs: `PostgresStore` or `SqliteStore`.
        needs: &'static str,
    },
    /// An [outbox](crate::outbox) is set, but the pipeline's store is neither
    /// a `PostgresStore` nor an `SqliteStore`: the jobs must be written in the
    /// transaction that completes the key.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
    #[error("an outbox lives in the idempotency store's database: the pipeline's store must be a PostgresStore or an SqliteStore")]
    OutboxStore,
    /// The [outbox](crate::outbox) settings cannot work.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxConfigError),
}
