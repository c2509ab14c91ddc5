//! From a delivery's raw bytes to exactly-once critical work and an answer.
//!
//! [`Pipeline::handle`] takes each delivery through the same steps, and stops at
//! the first that fails with the [`Outcome`] that says why:
//!
//! 1. **size**: a body over the provider's limit is refused before anything reads it;
//! 2. **detect**: the first verifier whose signature header is present (or the one
//!    named in [`Pipeline::handle_for`]);
//! 3. **verify** the signature over the raw bytes, then **identify** the event;
//! 4. **route**: no handler for the kind means `Ignored`, without touching the store;
//! 5. **claim** `provider:event_id` with the body's [`Fingerprint`] and the
//!    provider's lease;
//! 6. run the **critical** handlers in order under the provider's deadline
//!    (errors, timeouts and panics release the key);
//! 7. **complete** the key (kept for the provider's retention) — only then is the
//!    answer 2xx, and only then does best-effort work start.
//!
//! A fencing token ties steps 5–7 together, so an attempt whose lease expired
//! can neither complete nor release a newer attempt's claim.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;

use crate::clock::{Clock, SystemClock};
use crate::event::{idempotency_key, Event};
use crate::followup::{
    DeadLetter, DeadLetterEntry, DeadLetterReason, FollowUp, FollowUpShared, MemoryDeadLetter,
    RetryPolicy, ShutdownReport,
};
use crate::handler::{HandlerError, HandlerPanicked};
use crate::headers::Headers;
use crate::outcome::{CriticalFailure, Outcome, OutcomeKind};
use crate::registry::{NamedHandler, Registry, RouteError, Routes};
use crate::rejected::{RejectedDelivery, RejectedHook, RejectionReason};
use crate::stats::{Recorder, Stats};
use crate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};
use crate::verify::{Verifier, VerifyError};

const MIB: usize = 1024 * 1024;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Per-provider limits: how big a body may be, how long critical work may take,
/// how long a claim is held and how long a completed event is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderLimits {
    /// Largest accepted body in bytes. Default: 25 MiB for `github` (its
    /// payload cap), 1 MiB otherwise.
    pub body_limit: usize,
    /// Time the critical handlers get, together, before the attempt is
    /// cancelled and answered 500. It must leave room under the provider's own
    /// answer timeout. Default: 4 s for `shopify` (answers within 5 s), 8 s for
    /// `github` (10 s) and every other provider.
    pub critical_deadline: Duration,
    /// How long a claim holds the key; must be longer than the deadline so a
    /// live attempt never loses its key. Default: 3 × the deadline.
    pub lease: Duration,
    /// How long a completed event is remembered, which must cover the provider's
    /// retry or redelivery window. Default: 30 days for `github` (manual
    /// redelivery), 72 h otherwise (Stripe retries for 3 days).
    pub retention: Duration,
}

impl ProviderLimits {
    /// The defaults for a provider name.
    pub fn defaults_for(provider: &str) -> Self {
        let (body_limit, critical_deadline, retention) = match provider {
            "github" => (25 * MIB, Duration::from_secs(8), 30 * DAY),
            "shopify" => (MIB, Duration::from_secs(4), 3 * DAY),
            _ => (MIB, Duration::from_secs(8), 3 * DAY),
        };
        Self {
            body_limit,
            critical_deadline,
            lease: critical_deadline * 3,
            retention,
        }
    }
}

/// What the pipeline does when a critical handler fails permanently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PermanentFailurePolicy {
    /// Send the event to the dead letter, record it as done and answer 200, so
    /// the provider stops retrying something that cannot succeed. The event is
    /// then only as safe as the dead letter: set a durable one with
    /// [`PipelineBuilder::dead_letter`] in production (the default
    /// [`MemoryDeadLetter`] lives in the process; read it with
    /// [`Pipeline::memory_dead_letter`]). If the dead letter refuses the entry,
    /// the key is released and the answer is 500 instead, so the provider keeps
    /// the event.
    #[default]
    DeadLetter,
    /// Release the key and answer 500, so the provider keeps retrying (useful when
    /// a fix can be deployed within the provider's retry window).
    Retry,
}

/// Why a pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No verifier was added: no delivery could ever be accepted.
    #[error("a pipeline needs at least one verifier: add one with `PipelineBuilder::verifier`")]
    NoVerifier,
    /// No idempotency store was set.
    #[error("a pipeline needs an idempotency store: set one with `PipelineBuilder::store`")]
    NoStore,
    /// Two verifiers have the same provider name.
    #[error("two verifiers are named `{0}`: add several secrets to one verifier instead")]
    DuplicateProvider(String),
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
    /// A limit that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// A handler registration is invalid.
    #[error(transparent)]
    Route(#[from] RouteError),
}

#[derive(Debug, Clone, Copy, Default)]
struct LimitOverrides {
    body_limit: Option<usize>,
    critical_deadline: Option<Duration>,
    lease: Option<Duration>,
    retention: Option<Duration>,
}

/// Builds a [`Pipeline`]; start with [`Pipeline::builder`].
///
/// **Set a durable dead letter in production** ([`PipelineBuilder::dead_letter`]):
/// events whose critical handler fails permanently are answered 200 once they
/// are in the dead letter, and best-effort work that cannot be done ends there.
/// The default is an in-process [`MemoryDeadLetter`] (10,000 entries, 256 MiB
/// of bodies), readable
/// and drainable through [`Pipeline::memory_dead_letter`], but gone when the
/// process ends.
pub struct PipelineBuilder {
    verifiers: Vec<Box<dyn Verifier>>,
    store: Option<Arc<dyn IdempotencyStore>>,
    registry: Registry,
    clock: Arc<dyn Clock>,
    overrides: HashMap<String, LimitOverrides>,
    permanent_failure_policy: PermanentFailurePolicy,
    retry_policy: RetryPolicy,
    dead_letter: Arc<dyn DeadLetter>,
    memory_dead_letter: Option<MemoryDeadLetter>,
    max_concurrent_best_effort: usize,
    max_pending_best_effort: usize,
    on_rejected: Option<RejectedHook>,
}

impl PipelineBuilder {
    /// Adds a verifier. Deliveries go to the first verifier whose
    /// [`Verifier::detect`] recognises their headers, or to the one named in
    /// [`Pipeline::handle_for`].
    #[must_use]
    pub fn verifier(mut self, verifier: impl Verifier + 'static) -> Self {
        self.verifiers.push(Box::new(verifier));
        self
    }

    /// Sets the idempotency store (required). Share one store between every
    /// instance of your service.
    #[must_use]
    pub fn store(mut self, store: impl IdempotencyStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Sets the handlers. Default: none (every verified delivery is `Ignored`).
    #[must_use]
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Sets the clock used for signature timestamps. Default: [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn limits_of(&mut self, provider: &str) -> &mut LimitOverrides {
        self.overrides.entry(provider.to_owned()).or_default()
    }

    /// Sets the largest accepted body for `provider`; see [`ProviderLimits::body_limit`].
    #[must_use]
    pub fn body_limit(mut self, provider: &str, bytes: usize) -> Self {
        self.limits_of(provider).body_limit = Some(bytes);
        self
    }

    /// Sets the critical deadline of `provider`; see [`ProviderLimits::critical_deadline`].
    #[must_use]
    pub fn critical_deadline(mut self, provider: &str, deadline: Duration) -> Self {
        self.limits_of(provider).critical_deadline = Some(deadline);
        self
    }

    /// Sets the lease of `provider`; see [`ProviderLimits::lease`].
    #[must_use]
    pub fn lease(mut self, provider: &str, lease: Duration) -> Self {
        self.limits_of(provider).lease = Some(lease);
        self
    }

    /// Sets how long completed events of `provider` are remembered; see
    /// [`ProviderLimits::retention`].
    #[must_use]
    pub fn retention(mut self, provider: &str, retention: Duration) -> Self {
        self.limits_of(provider).retention = Some(retention);
        self
    }

    /// Sets what happens when a critical handler fails permanently. Default:
    /// [`PermanentFailurePolicy::DeadLetter`].
    #[must_use]
    pub fn permanent_failure_policy(mut self, policy: PermanentFailurePolicy) -> Self {
        self.permanent_failure_policy = policy;
        self
    }

    /// Sets how best-effort work is retried. Default: [`RetryPolicy::default`].
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Sets where work that cannot be done goes: critical events that failed
    /// permanently (with [`PermanentFailurePolicy::DeadLetter`]) and best-effort
    /// work that failed, overflowed or was abandoned. See [`DeadLetter`] for what
    /// happens when it refuses an entry.
    ///
    /// Default: an in-process [`MemoryDeadLetter`] holding 10,000 entries and
    /// 256 MiB of bodies, read
    /// and drained through [`Pipeline::memory_dead_letter`]. It does not survive
    /// a restart: production services should set a durable sink (a table, a
    /// queue). A [`MemoryDeadLetter`] set here is also returned by
    /// [`Pipeline::memory_dead_letter`].
    #[must_use]
    pub fn dead_letter(mut self, dead_letter: impl DeadLetter + 'static) -> Self {
        self.memory_dead_letter = (&dead_letter as &dyn Any)
            .downcast_ref::<MemoryDeadLetter>()
            .cloned();
        self.dead_letter = Arc::new(dead_letter);
        self
    }

    /// Sets how many best-effort attempts may run at once across the pipeline
    /// (at most tokio's semaphore limit). Default: 64.
    #[must_use]
    pub fn max_concurrent_best_effort(mut self, max: usize) -> Self {
        self.max_concurrent_best_effort = max;
        self
    }

    /// Sets how many best-effort jobs (one per handler and delivery) the
    /// pipeline holds at once: running, waiting for a permit, sleeping before a
    /// retry, or handed out in a [`FollowUp`] not yet run. Each holds its event,
    /// body included, so this bounds memory. Work beyond it is never started:
    /// it goes to the dead letter at once with [`DeadLetterReason::Overflow`] and
    /// is counted in [`Stats::best_effort_overflow`] — from a background task
    /// while fewer than `max` entries wait for the dead letter, otherwise before
    /// `handle` returns (back-pressure: a dead letter that falls behind slows the
    /// answers rather than growing a queue). So at most about `2 × max` events
    /// are held for best-effort work (fewer bodies when several handlers share
    /// one). Default: 1,024.
    #[must_use]
    pub fn max_pending_best_effort(mut self, max: usize) -> Self {
        self.max_pending_best_effort = max;
        self
    }

    /// Sets a hook that receives every delivery whose signature verified but
    /// that the pipeline refused — an unusable payload (400) or an event id
    /// already used with a different body (422) — with its raw body and headers,
    /// so you can keep it for inspection or replay (see [`crate::rejected`]).
    /// Deliveries that fail verification never reach it.
    ///
    /// It is called inline, before `handle` returns: keep it quick (push into a
    /// channel, spawn a task). A panic in it is caught and does not change the
    /// answer. Default: none (such deliveries are only counted in [`Stats`]).
    ///
    /// ```
    /// # use hookgate::{GitHub, MemoryStore, Pipeline, RejectedDelivery};
    /// let (tx, rx) = std::sync::mpsc::channel::<RejectedDelivery>();
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(MemoryStore::new())
    ///     .on_rejected(move |rejected| {
    ///         let _ = tx.send(rejected); // a task stores them durably
    ///     })
    ///     .build()?;
    /// # drop(rx);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn on_rejected(mut self, hook: impl Fn(RejectedDelivery) + Send + Sync + 'static) -> Self {
        self.on_rejected = Some(RejectedHook::new(hook));
        self
    }

    /// Checks the settings and builds the pipeline.
    pub fn build(self) -> Result<Pipeline, BuildError> {
        if self.verifiers.is_empty() {
            return Err(BuildError::NoVerifier);
        }
        let store = self.store.ok_or(BuildError::NoStore)?;
        if self.max_concurrent_best_effort == 0 {
            return Err(BuildError::Zero("max_concurrent_best_effort"));
        }
        if self.max_pending_best_effort == 0 {
            return Err(BuildError::Zero("max_pending_best_effort"));
        }
        self.registry.validate()?;
        let known = |name: &str| self.verifiers.iter().any(|v| v.provider() == name);
        for provider in self.registry.providers() {
            if provider != "*" && !known(provider) {
                return Err(BuildError::UnknownProvider {
                    provider: provider.to_owned(),
                    what: "a registered handler".to_owned(),
                });
            }
        }
        if let Some(provider) = self.overrides.keys().find(|p| !known(p)) {
            return Err(BuildError::UnknownProvider {
                provider: provider.clone(),
                what: "a limit setting".to_owned(),
            });
        }
        let mut providers: Vec<Provider> = Vec::with_capacity(self.verifiers.len());
        for verifier in self.verifiers {
            let name: Arc<str> = verifier.provider().into();
            if providers.iter().any(|p| p.name == name) {
                return Err(BuildError::DuplicateProvider(name.to_string()));
            }
            let limits = resolve_limits(
                &name,
                self.overrides.get(&*name).copied().unwrap_or_default(),
            )?;
            providers.push(Provider {
                name,
                verifier,
                limits,
            });
        }
        let max_body_limit = providers
            .iter()
            .map(|p| p.limits.body_limit)
            .max()
            .unwrap_or(0);
        let stats = Arc::new(Recorder::default());
        let follow_ups = Arc::new(FollowUpShared::new(
            self.retry_policy,
            self.dead_letter.clone(),
            self.max_concurrent_best_effort,
            self.max_pending_best_effort,
            stats.clone(),
        ));
        Ok(Pipeline {
            inner: Arc::new(Inner {
                providers,
                max_body_limit,
                store,
                registry: self.registry,
                clock: self.clock,
                permanent_failure_policy: self.permanent_failure_policy,
                dead_letter: self.dead_letter,
                memory_dead_letter: self.memory_dead_letter,
                on_rejected: self.on_rejected,
                follow_ups,
                stats,
                closing: AtomicBool::new(false),
            }),
        })
    }
}

fn resolve_limits(provider: &str, set: LimitOverrides) -> Result<ProviderLimits, BuildError> {
    let defaults = ProviderLimits::defaults_for(provider);
    let critical_deadline = set.critical_deadline.unwrap_or(defaults.critical_deadline);
    let limits = ProviderLimits {
        body_limit: set.body_limit.unwrap_or(defaults.body_limit),
        critical_deadline,
        lease: set.lease.unwrap_or(critical_deadline * 3),
        retention: set.retention.unwrap_or(defaults.retention),
    };
    if limits.body_limit == 0 {
        return Err(BuildError::Zero("body_limit"));
    }
    if limits.critical_deadline.is_zero() {
        return Err(BuildError::Zero("critical_deadline"));
    }
    if limits.retention.is_zero() {
        return Err(BuildError::Zero("retention"));
    }
    if limits.lease <= limits.critical_deadline {
        return Err(BuildError::LeaseNotLongerThanDeadline {
            provider: provider.to_owned(),
            lease: limits.lease,
            deadline: limits.critical_deadline,
        });
    }
    Ok(limits)
}

impl fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("verifiers", &self.verifiers)
            .field("store", &self.store)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// Turns deliveries into exactly-once critical work, best-effort follow-ups and
/// the status to answer; see the crate documentation for the full protocol.
///
/// Cheap to clone (one `Arc`): share it between your HTTP handlers.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    providers: Vec<Provider>,
    max_body_limit: usize,
    store: Arc<dyn IdempotencyStore>,
    registry: Registry,
    clock: Arc<dyn Clock>,
    permanent_failure_policy: PermanentFailurePolicy,
    dead_letter: Arc<dyn DeadLetter>,
    memory_dead_letter: Option<MemoryDeadLetter>,
    on_rejected: Option<RejectedHook>,
    follow_ups: Arc<FollowUpShared>,
    stats: Arc<Recorder>,
    closing: AtomicBool,
}

struct Provider {
    name: Arc<str>,
    verifier: Box<dyn Verifier>,
    limits: ProviderLimits,
}

/// A claimed key, settled exactly once by the attempt that holds it.
struct Attempt<'a> {
    inner: &'a Inner,
    key: String,
    token: FencingToken,
    limits: ProviderLimits,
}

impl Attempt<'_> {
    /// Frees the key so a retry runs the work again. A failed release is not
    /// reported: the lease expires on its own, and a stale token must not touch a
    /// newer attempt's claim (the store refuses it).
    async fn release(&self, reason: &str) {
        let _ = self
            .inner
            .store
            .release(&self.key, self.token, reason)
            .await;
    }

    /// Records the key as done; the outcome to answer when that fails.
    async fn complete(&self, handler: Arc<str>) -> Result<(), OutcomeKind> {
        match self
            .inner
            .store
            .complete(&self.key, self.token, self.limits.retention)
            .await
        {
            Ok(()) => Ok(()),
            Err(err @ StoreError::StaleToken { .. }) => Err(OutcomeKind::CriticalFailed {
                handler,
                failure: CriticalFailure::LeaseLost(Arc::new(err)),
            }),
            Err(err) => {
                // The store may be back for the release; if so the provider's retry
                // runs at once instead of waiting out the lease.
                self.release("completing the key failed").await;
                Err(OutcomeKind::StoreUnavailable(Arc::new(err)))
            }
        }
    }
}

impl Pipeline {
    /// A builder with safe defaults; add at least one verifier and a store.
    pub fn builder() -> PipelineBuilder {
        let memory_dead_letter = MemoryDeadLetter::new();
        PipelineBuilder {
            verifiers: Vec::new(),
            store: None,
            registry: Registry::new(),
            clock: Arc::new(SystemClock),
            overrides: HashMap::new(),
            permanent_failure_policy: PermanentFailurePolicy::default(),
            retry_policy: RetryPolicy::default(),
            dead_letter: Arc::new(memory_dead_letter.clone()),
            memory_dead_letter: Some(memory_dead_letter),
            max_concurrent_best_effort: 64,
            max_pending_best_effort: 1024,
            on_rejected: None,
        }
    }

    /// Handles one delivery whose provider is detected from its headers, and
    /// spawns its best-effort work on the current tokio runtime.
    ///
    /// Pass the body exactly as received (no re-encoding) and every header.
    /// Answer the returned [`Outcome::status`] with [`Outcome::body`].
    ///
    /// If this future is dropped before it finishes (say, your HTTP server
    /// cancels the request), the critical handlers stop where they were and the
    /// claim is left to expire: the provider's retries get 409 until the lease
    /// ends, then run the work again. Nothing is recorded as done.
    ///
    /// # Panics
    /// Outside a tokio runtime (deadlines and best-effort tasks need one).
    pub async fn handle(&self, raw_body: impl Into<Bytes>, headers: &Headers) -> Outcome {
        let (outcome, follow_up) = self.handle_deferred(raw_body, headers).await;
        if let Some(follow_up) = follow_up {
            follow_up.spawn();
        }
        outcome
    }

    /// Like [`Pipeline::handle`], for a provider chosen by name (e.g. from the
    /// URL path) rather than detected. An unknown name is rejected with 400.
    pub async fn handle_for(
        &self,
        provider: &str,
        raw_body: impl Into<Bytes>,
        headers: &Headers,
    ) -> Outcome {
        let (outcome, follow_up) = self.handle_for_deferred(provider, raw_body, headers).await;
        if let Some(follow_up) = follow_up {
            follow_up.spawn();
        }
        outcome
    }

    /// Like [`Pipeline::handle`], but hands the best-effort work back instead of
    /// spawning it: run the [`FollowUp`] yourself (await it after answering, or
    /// spawn it on your executor). `None` when there is nothing to do. Dropping
    /// the `FollowUp` unfinished sends its work to the dead letter
    /// ([`DeadLetterReason::FollowUpDropped`]).
    ///
    /// # Panics
    /// Outside a tokio runtime with its time driver enabled: the critical
    /// deadline and the retry delays use tokio's timer.
    pub async fn handle_deferred(
        &self,
        raw_body: impl Into<Bytes>,
        headers: &Headers,
    ) -> (Outcome, Option<FollowUp>) {
        let body = raw_body.into();
        let index = self
            .inner
            .providers
            .iter()
            .position(|p| p.verifier.detect(headers));
        self.process(index, body, headers).await
    }

    /// Like [`Pipeline::handle_for`], handing the best-effort work back as
    /// [`Pipeline::handle_deferred`] does.
    pub async fn handle_for_deferred(
        &self,
        provider: &str,
        raw_body: impl Into<Bytes>,
        headers: &Headers,
    ) -> (Outcome, Option<FollowUp>) {
        let index = self
            .inner
            .providers
            .iter()
            .position(|p| &*p.name == provider);
        self.process(index, raw_body.into(), headers).await
    }

    async fn process(
        &self,
        index: Option<usize>,
        body: Bytes,
        headers: &Headers,
    ) -> (Outcome, Option<FollowUp>) {
        let (mut outcome, follow_up) = self.run(index, body, headers).await;
        outcome.status = outcome.kind.status();
        self.inner.stats.delivery(&outcome.kind);
        (outcome, follow_up)
    }

    async fn run(
        &self,
        index: Option<usize>,
        body: Bytes,
        headers: &Headers,
    ) -> (Outcome, Option<FollowUp>) {
        let inner = &*self.inner;
        let done = |kind| (Outcome::new(kind), None);
        if inner.closing.load(Ordering::Acquire) {
            return done(OutcomeKind::ShuttingDown);
        }
        // Nothing larger than every provider's limit is even looked at.
        if body.len() > inner.max_body_limit {
            return done(OutcomeKind::TooLarge {
                size: body.len(),
                limit: inner.max_body_limit,
            });
        }
        let Some(provider) = index.map(|i| &inner.providers[i]) else {
            return done(OutcomeKind::Rejected(VerifyError::UnknownProvider));
        };
        let mut outcome = Outcome::new(OutcomeKind::Ignored);
        outcome.provider = Some(provider.name.clone());
        let finish = |mut outcome: Outcome, kind| {
            outcome.kind = kind;
            (outcome, None)
        };
        if body.len() > provider.limits.body_limit {
            let kind = OutcomeKind::TooLarge {
                size: body.len(),
                limit: provider.limits.body_limit,
            };
            return finish(outcome, kind);
        }
        if let Err(err) = provider.verifier.verify(&body, headers, inner.clock.now()) {
            return finish(outcome, OutcomeKind::Rejected(err));
        }
        let identity = match provider.verifier.identify(&body, headers) {
            Ok(identity) => identity,
            Err(err) => {
                self.reject(
                    &outcome,
                    RejectionReason::Unusable(err.clone()),
                    &body,
                    headers,
                );
                return finish(outcome, OutcomeKind::Unusable(err));
            }
        };
        outcome.event_id = Some(identity.id.clone());
        outcome.event_kind = Some(identity.kind.clone());
        if inner
            .registry
            .route(&provider.name, &identity.kind)
            .is_empty()
        {
            return finish(outcome, OutcomeKind::Ignored);
        }
        let fingerprint = Fingerprint::of(&body);
        let key = idempotency_key(&provider.name, &identity.id);
        let token = match inner
            .store
            .claim(&key, fingerprint, provider.limits.lease)
            .await
        {
            Ok(Claim::Acquired(token) | Claim::AcquiredBodyChanged(token)) => token,
            Ok(Claim::Completed) => return finish(outcome, OutcomeKind::Duplicate),
            Ok(Claim::InFlight { until }) => {
                return finish(outcome, OutcomeKind::InFlight { until })
            }
            Ok(Claim::CompletedBodyChanged) => {
                self.reject(
                    &outcome,
                    RejectionReason::FingerprintMismatch,
                    &body,
                    headers,
                );
                return finish(outcome, OutcomeKind::FingerprintMismatch);
            }
            Err(err) => return finish(outcome, OutcomeKind::StoreUnavailable(Arc::new(err))),
        };
        let attempt = Attempt {
            inner,
            key,
            token,
            limits: provider.limits,
        };
        // Built only once the key is held: duplicates never pay for it.
        let event = Event::new(provider.name.clone(), identity, body);
        let routes = inner.registry.route(event.provider(), event.kind());
        let kind = match self.run_critical(&attempt, &event, routes).await {
            Ok(last) => match attempt.complete(handler_name(last)).await {
                Ok(()) => {
                    let best_effort: Vec<NamedHandler> = routes.best_effort().cloned().collect();
                    let count = best_effort.len();
                    let follow_up = if count > 0 {
                        Some(inner.follow_ups.follow_up(&event, best_effort).await)
                    } else {
                        None
                    };
                    outcome.kind = OutcomeKind::Processed { best_effort: count };
                    return (outcome, follow_up);
                }
                Err(kind) => kind,
            },
            Err(kind) => kind,
        };
        finish(outcome, kind)
    }

    /// Hands an authentic but refused delivery to the host's hook, if any.
    fn reject(&self, outcome: &Outcome, reason: RejectionReason, body: &Bytes, headers: &Headers) {
        let Some(hook) = &self.inner.on_rejected else {
            return;
        };
        let status = match &reason {
            RejectionReason::Unusable(err) => err.status(),
            RejectionReason::FingerprintMismatch => OutcomeKind::FingerprintMismatch.status(),
        };
        let Some(provider) = outcome.provider.clone() else {
            return;
        };
        let delivered = hook.call(RejectedDelivery {
            provider,
            reason,
            status,
            event_id: outcome.event_id.clone(),
            event_kind: outcome.event_kind.clone(),
            body: body.clone(),
            headers: headers.clone(),
        });
        if !delivered {
            Recorder::bump(&self.inner.stats.rejected_hook_panics);
        }
    }

    /// Runs the critical handlers in order under the deadline and settles the
    /// failures; `Ok` (with the last handler run) means every handler succeeded
    /// and the key is still held.
    async fn run_critical<'r>(
        &self,
        attempt: &Attempt<'_>,
        event: &Event,
        routes: Routes<'r>,
    ) -> Result<Option<&'r NamedHandler>, OutcomeKind> {
        let deadline = attempt.limits.critical_deadline;
        let mut current = None;
        let chain = async {
            for handler in routes.critical() {
                current = Some(handler);
                let run = AssertUnwindSafe(async { handler.handler().handle(event).await });
                match run.catch_unwind().await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => return Err(Failure::Error(err)),
                    Err(panic) => {
                        return Err(Failure::Panic(HandlerPanicked::from_payload(&*panic)))
                    }
                }
            }
            Ok(())
        };
        let failure = match tokio::time::timeout(deadline, chain).await {
            Ok(Ok(())) => return Ok(current),
            Ok(Err(failure)) => failure,
            Err(_) => Failure::Timeout,
        };
        let handler = handler_name(current);
        let kind = match failure {
            Failure::Error(err) if !err.is_transient() => {
                return Err(self.settle_permanent(attempt, event, handler, err).await)
            }
            Failure::Error(err) => CriticalFailure::Transient(Arc::new(err)),
            Failure::Panic(panic) => CriticalFailure::Panic(panic.message),
            Failure::Timeout => CriticalFailure::Timeout(deadline),
        };
        attempt.release(&failure_reason(&handler, &kind)).await;
        Err(OutcomeKind::CriticalFailed {
            handler,
            failure: kind,
        })
    }

    async fn settle_permanent(
        &self,
        attempt: &Attempt<'_>,
        event: &Event,
        handler: Arc<str>,
        err: HandlerError,
    ) -> OutcomeKind {
        let inner = &*self.inner;
        let error = Arc::new(err);
        let reason = format!("critical handler `{handler}` failed permanently: {error}");
        let failed = |dead_lettered| OutcomeKind::PermanentFailure {
            handler: handler.clone(),
            error: error.clone(),
            dead_lettered,
        };
        if inner.permanent_failure_policy == PermanentFailurePolicy::Retry {
            attempt.release(&reason).await;
            return failed(false);
        }
        // Dead-letter first, then complete: if completing fails the provider
        // retries, and the event is dead-lettered again rather than lost.
        let entry = DeadLetterEntry::new(
            event.clone(),
            handler.clone(),
            1,
            DeadLetterReason::CriticalPermanent,
            Some(error.clone()),
        );
        if inner.dead_letter.send(entry).await.is_err() {
            Recorder::bump(&inner.stats.dead_letter_failures);
            attempt.release(&reason).await;
            return failed(false);
        }
        match attempt.complete(handler.clone()).await {
            Ok(()) => failed(true),
            Err(kind) => kind,
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.stats.snapshot();
        stats.best_effort_pending = self.inner.follow_ups.held() as u64;
        stats
    }

    /// The dead letter every entry goes to: the one set with
    /// [`PipelineBuilder::dead_letter`], or the default [`MemoryDeadLetter`].
    pub fn dead_letter(&self) -> Arc<dyn DeadLetter> {
        Arc::clone(&self.inner.dead_letter)
    }

    /// The in-memory dead letter, when the pipeline uses one — the default, or
    /// a [`MemoryDeadLetter`] you set: read it with
    /// [`MemoryDeadLetter::entries`], empty it with [`MemoryDeadLetter::drain`]
    /// (e.g. to replay or store the entries elsewhere). `None` when you set
    /// another kind of dead letter.
    ///
    /// ```
    /// # use hookgate::{GitHub, MemoryStore, Pipeline};
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(MemoryStore::new())
    ///     .build()?;
    /// let dead_letter = pipeline.memory_dead_letter().expect("the default dead letter");
    /// for entry in dead_letter.drain() {
    ///     println!("{} {} failed in {}: {:?}", entry.provider(), entry.event_id(), entry.handler, entry.reason);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn memory_dead_letter(&self) -> Option<&MemoryDeadLetter> {
        self.inner.memory_dead_letter.as_ref()
    }

    /// The limits in force for `provider`, if a verifier has that name.
    pub fn limits(&self, provider: &str) -> Option<ProviderLimits> {
        self.inner
            .providers
            .iter()
            .find(|p| &*p.name == provider)
            .map(|p| p.limits)
    }

    /// The largest body worth reading for a delivery with these headers (the
    /// detected provider's limit, or the largest limit when none is detected):
    /// cap your HTTP body reader with it.
    pub fn max_body_size(&self, headers: &Headers) -> usize {
        self.inner
            .providers
            .iter()
            .find(|p| p.verifier.detect(headers))
            .map_or(self.inner.max_body_limit, |p| p.limits.body_limit)
    }

    /// Stops taking deliveries (they get 503 [`OutcomeKind::ShuttingDown`]) and
    /// waits up to `deadline` for pending best-effort work to finish. Work still
    /// pending then is cancelled, sent to the dead letter and listed in the
    /// report, so nothing is dropped silently. When the dead letter is in
    /// memory (the default), the report also carries a copy of what it holds
    /// ([`ShutdownReport::memory_dead_letter`]): store it before the process
    /// ends, or it is lost.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.closing.store(true, Ordering::Release);
        let mut report = self.inner.follow_ups.shutdown(deadline).await;
        if let Some(memory) = &self.inner.memory_dead_letter {
            report.memory_dead_letter = memory.entries();
        }
        report
    }
}

/// The name an outcome gives for `handler` (the failing or last critical one).
fn handler_name(handler: Option<&NamedHandler>) -> Arc<str> {
    handler.map_or_else(|| "(no critical handler)".into(), NamedHandler::shared_name)
}

enum Failure {
    Error(HandlerError),
    Panic(HandlerPanicked),
    Timeout,
}

fn failure_reason(handler: &str, failure: &CriticalFailure) -> String {
    match failure {
        CriticalFailure::Transient(err) => format!("critical handler `{handler}` failed: {err}"),
        CriticalFailure::Timeout(after) => {
            format!("critical handlers passed the {after:?} deadline in `{handler}`")
        }
        CriticalFailure::Panic(message) => {
            format!("critical handler `{handler}` panicked: {message}")
        }
        CriticalFailure::LeaseLost(err) => format!("lease lost: {err}"),
    }
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "providers",
                &self
                    .inner
                    .providers
                    .iter()
                    .map(|p| (&*p.name, p.limits))
                    .collect::<Vec<_>>(),
            )
            .field("store", &self.inner.store)
            .field("registry", &self.inner.registry)
            .field(
                "permanent_failure_policy",
                &self.inner.permanent_failure_policy,
            )
            .field("dead_letter", &self.inner.dead_letter)
            .field("follow_ups", &self.inner.follow_ups)
            .finish()
    }
}
