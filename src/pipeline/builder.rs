//! [`PipelineBuilder`]: a pipeline's settings, checked once by `build()`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::best_effort::BestEffortRunner;
use super::build_error::BuildError;
use super::journaling::Journaling;
use super::limits::{resolve_limits, FingerprintPolicy, LimitOverrides, PermanentFailurePolicy};
use super::recorder::Recorder;
use super::rejected_hook::RejectedHook;
use super::replay;
use super::{Inner, Pipeline, Provider};
use crate::clock::{Clock, SystemClock};
use crate::dead_letter::{DeadLetter, MemoryDeadLetter};
use crate::dedup::DedupKey;
use crate::health::HealthThresholds;
use crate::journal::{Journal, JournalSettings};
use crate::ordering::OrderingGuard;
use crate::registry::Registry;
use crate::rejected::RejectedDelivery;
use crate::retry::RetryPolicy;
use crate::store::IdempotencyStore;
use crate::verify::{ProviderProfile, Verifier};

/// The provider name that stands for every provider in limit and replay guard
/// settings (as in [`Registry`] routes).
pub(super) const ANY_PROVIDER: &str = "*";

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
    fingerprint_policy: FingerprintPolicy,
    retry_policy: RetryPolicy,
    dead_letter: Arc<dyn DeadLetter>,
    memory_dead_letter: Option<MemoryDeadLetter>,
    max_concurrent_best_effort: usize,
    max_pending_best_effort: usize,
    on_rejected: Option<RejectedHook>,
    replay_guards: Vec<String>,
    orderings: Vec<(String, OrderingGuard)>,
    dedup_keys: Vec<(String, DedupKey)>,
    journal: Option<Arc<dyn Journal>>,
    journal_settings: JournalSettings,
    health_thresholds: HealthThresholds,
    /// The store's database, for transactional handlers and the outbox.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(super) database: super::in_transaction::Database,
    /// The outbox's settings, when one is set.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(super) outbox: Option<crate::outbox::OutboxSettings>,
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
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        {
            self.database = super::in_transaction::Database::of(&store);
        }
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

    /// The settings of `provider`; `*` stands for every provider (a provider's
    /// own setting wins over it).
    fn limits_of(&mut self, provider: &str) -> &mut LimitOverrides {
        self.overrides.entry(provider.to_owned()).or_default()
    }

    /// Sets the largest accepted body for `provider` (`"*"`: every provider
    /// without a setting of its own); see [`ProviderLimits::body_limit`](crate::ProviderLimits::body_limit).
    #[must_use]
    pub fn body_limit(mut self, provider: &str, bytes: usize) -> Self {
        self.limits_of(provider).body_limit = Some(bytes);
        self
    }

    /// Sets the answer budget of `provider` (`"*"`: every provider without a
    /// setting of its own): the time claim, critical handlers and completion
    /// share from the start of `handle`; see
    /// [`ProviderLimits::answer_budget`](crate::ProviderLimits::answer_budget).
    /// The settle reserve, critical deadline and lease you do not set follow it.
    ///
    /// ```
    /// # use hookgate::{MemoryStore, Pipeline, Shopify};
    /// # use std::time::Duration;
    /// let pipeline = Pipeline::builder()
    ///     .verifier(Shopify::builder("shp").build()?)
    ///     .store(MemoryStore::new())
    ///     .answer_budget("shopify", Duration::from_millis(3_500))
    ///     .build()?;
    /// let limits = pipeline.limits("shopify").unwrap();
    /// assert_eq!(limits.critical_deadline, Duration::from_millis(3_500));
    /// assert!(limits.lease > limits.answer_budget);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn answer_budget(mut self, provider: &str, budget: Duration) -> Self {
        self.limits_of(provider).answer_budget = Some(budget);
        self
    }

    /// Sets how much of the answer budget of `provider` (`"*"`: every provider
    /// without a setting of its own) is kept for settling the key; see
    /// [`ProviderLimits::settle_reserve`](crate::ProviderLimits::settle_reserve).
    #[must_use]
    pub fn settle_reserve(mut self, provider: &str, reserve: Duration) -> Self {
        self.limits_of(provider).settle_reserve = Some(reserve);
        self
    }

    /// Sets the critical deadline of `provider` (`"*"`: every provider without
    /// a setting of its own); see [`ProviderLimits::critical_deadline`](crate::ProviderLimits::critical_deadline).
    ///
    /// ```
    /// # use hookgate::{GitHub, MemoryStore, Pipeline, Shopify};
    /// # use std::time::Duration;
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("gh").build()?)
    ///     .verifier(Shopify::builder("shp").build()?)
    ///     .store(MemoryStore::new())
    ///     .critical_deadline("*", Duration::from_secs(2))
    ///     .critical_deadline("github", Duration::from_secs(5))
    ///     .build()?;
    /// assert_eq!(pipeline.limits("shopify").unwrap().critical_deadline, Duration::from_secs(2));
    /// assert_eq!(pipeline.limits("github").unwrap().critical_deadline, Duration::from_secs(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn critical_deadline(mut self, provider: &str, deadline: Duration) -> Self {
        self.limits_of(provider).critical_deadline = Some(deadline);
        self
    }

    /// Sets the lease of `provider` (`"*"`: every provider without a setting of
    /// its own); see [`ProviderLimits::lease`](crate::ProviderLimits::lease).
    #[must_use]
    pub fn lease(mut self, provider: &str, lease: Duration) -> Self {
        self.limits_of(provider).lease = Some(lease);
        self
    }

    /// Sets how long completed events of `provider` (`"*"`: every provider
    /// without a setting of its own) are remembered; see
    /// [`ProviderLimits::retention`](crate::ProviderLimits::retention).
    #[must_use]
    pub fn retention(mut self, provider: &str, retention: Duration) -> Self {
        self.limits_of(provider).retention = Some(retention);
        self
    }

    /// Turns the replay guard on for `provider` (`"*"`: every provider whose
    /// verifier does not sign the event id and kind, i.e. whose
    /// [`ProviderProfile::signs_identity`](crate::ProviderProfile::signs_identity)
    /// is `false`: GitHub and Shopify). Default: off.
    ///
    /// GitHub and Shopify sign the body only; the delivery id and kind headers
    /// are not signed. Whoever holds a captured delivery (a log, a proxy, a
    /// leaked request dump) can send it again under a fresh delivery id, and
    /// it runs again, or under another event header, and it runs another
    /// handler (an `issues` body as `pull_request`). Deduplicating on the
    /// delivery id cannot catch that. With the guard on, a verified body
    /// already registered to another delivery id, kind (or, for Shopify, shop
    /// domain) is answered **200 [`Duplicate`](crate::OutcomeKind::Duplicate)**
    /// without running a handler, counted in
    /// [`Stats::replays`](crate::Stats::replays) and handed to
    /// [`on_rejected`](Self::on_rejected) as
    /// [`RejectionReason::Replayed`](crate::RejectionReason::Replayed). The
    /// provider's own redeliveries and retries keep their delivery id and kind,
    /// so they are ordinary duplicates (or run, if the earlier attempt failed).
    ///
    /// How: before its event is claimed, each body is registered in the store
    /// under a key of its own (a digest of the signed body) with a digest of
    /// the id and kind headers as fingerprint, completed at once and kept for
    /// the provider's retention, so it stays bound to the first headers it
    /// came with. That costs one more store call per delivery (two the first
    /// time a body is seen). Event keys stay `provider:event_id`, and handlers
    /// still see the delivery id in [`Event::id`](crate::Event::id).
    ///
    /// Know before you turn it on:
    /// - **Byte-identical bodies are one event.** If the provider legitimately
    ///   sends the same bytes under two delivery ids or kinds, the second is
    ///   refused as a replay: e.g. a Shopify app subscribed to two topics whose
    ///   payloads can be identical for one merchant action (`orders/create` and
    ///   `orders/updated`), or the same topic subscribed twice. Only deliveries
    ///   that reach the store count: a kind with no handler is `Ignored`
    ///   without a claim. Watch the `on_rejected` hook when you turn it on.
    /// - **A body whose only attempt failed** (500, key released) is still
    ///   refused under another id or kind: the provider's own retry (same id,
    ///   same kind) is what runs it.
    /// - **A body never claimed** (its kind had no handler) can still be sent
    ///   once under a handled kind. To have every body recorded, register a
    ///   critical no-op handler on `"*"` for the provider (this makes the
    ///   first point apply to every kind).
    /// - **Bodies are registered from the switch on.** A body first seen before
    ///   the guard was on is registered by its next delivery, whatever its
    ///   headers, so a replay of an older capture is caught only once the
    ///   provider's own redelivery registered it. Event keys do not change:
    ///   turning the guard on or off never runs a completed event again, and
    ///   instances that disagree still deduplicate each event.
    /// - The digest is the body's 128-bit xxh3 [`Fingerprint`](crate::Fingerprint),
    ///   not collision-resistant against whoever writes whole bodies; only the
    ///   provider does. A collision would refuse a later event (reported),
    ///   never run a forged one.
    ///
    /// Naming a provider that signs its ids and kinds (Stripe) is refused with
    /// [`BuildError::ReplayGuardOnSignedIdentity`]: it has nothing to guard,
    /// and the registration would only cost a store call per delivery. `"*"`
    /// skips such providers. A name no verifier has is refused with
    /// [`BuildError::UnknownProvider`].
    ///
    /// ```
    /// # use hookgate::{GitHub, MemoryStore, Pipeline, Shopify, Stripe};
    /// let pipeline = Pipeline::builder()
    ///     .verifier(Stripe::builder("whsec_x").build()?)
    ///     .verifier(GitHub::builder("gh").build()?)
    ///     .verifier(Shopify::builder("shp").build()?)
    ///     .store(MemoryStore::new())
    ///     .replay_guard("*") // GitHub and Shopify; Stripe signs its ids
    ///     .build()?;
    /// # drop(pipeline);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn replay_guard(mut self, provider: &str) -> Self {
        self.replay_guards.push(provider.to_owned());
        self
    }

    /// Guards `provider`'s events against arriving out of order: an event
    /// older than the newest one already processed for the same object (as
    /// `guard` finds them, e.g. [`OrderingGuard::stripe`]) is answered 200
    /// [`OutcomeKind::Stale`](crate::OutcomeKind::Stale) without running its
    /// handlers; see [`ordering`](crate::ordering). Setting a guard again for
    /// the same provider replaces it.
    ///
    /// The watermarks live in the idempotency store
    /// ([`IdempotencyStore::watermarks`](crate::store::IdempotencyStore::watermarks)):
    /// a store that keeps none is refused with
    /// [`BuildError::OrderingUnsupported`], and a name no verifier has (or
    /// `*`) with [`BuildError::UnknownProvider`].
    ///
    /// ```
    /// # use hookgate::{MemoryStore, OrderingGuard, Pipeline, Shopify, Stripe};
    /// let pipeline = Pipeline::builder()
    ///     .verifier(Stripe::builder("whsec_x").build()?)
    ///     .verifier(Shopify::builder("shp").build()?)
    ///     .store(MemoryStore::new())
    ///     .ordering("stripe", OrderingGuard::stripe())
    ///     .ordering("shopify", OrderingGuard::shopify())
    ///     .build()?;
    /// # drop(pipeline);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn ordering(mut self, provider: &str, guard: OrderingGuard) -> Self {
        self.orderings.retain(|(name, _)| name != provider);
        self.orderings.push((provider.to_owned(), guard));
        self
    }

    /// Takes the deduplication id of `provider`'s events from elsewhere than
    /// its verifier does (`*`: of every provider without a key of its own);
    /// see [`DedupKey`]. An event whose key finds nothing usable is answered
    /// 400 [`OutcomeKind::Unusable`](crate::OutcomeKind::Unusable). A key that
    /// cannot work is refused with [`BuildError::InvalidDedupKey`], and a name
    /// no verifier has with [`BuildError::UnknownProvider`]. Setting a key
    /// again for the same provider replaces it.
    ///
    /// Changing the key of a provider that already has completed events
    /// changes their ids: deliveries retried across the change run again.
    ///
    /// ```
    /// # use hookgate::{DedupKey, GitHub, MemoryStore, Pipeline};
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(MemoryStore::new())
    ///     // One event per pull request head commit, whatever the delivery id.
    ///     .dedup_key("github", DedupKey::composite([
    ///         DedupKey::header("X-GitHub-Event"),
    ///         DedupKey::json_pointer("/pull_request/head/sha"),
    ///     ]))
    ///     .build()?;
    /// # drop(pipeline);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn dedup_key(mut self, provider: &str, key: DedupKey) -> Self {
        self.dedup_keys.retain(|(name, _)| name != provider);
        self.dedup_keys.push((provider.to_owned(), key));
        self
    }

    /// Sets what happens when a critical handler fails permanently. Default:
    /// [`PermanentFailurePolicy::DeadLetter`].
    #[must_use]
    pub fn permanent_failure_policy(mut self, policy: PermanentFailurePolicy) -> Self {
        self.permanent_failure_policy = policy;
        self
    }

    /// Sets what a delivery whose event already completed with a different
    /// body answers: 200 `Duplicate`, reported (the default,
    /// [`FingerprintPolicy::Lenient`]), or 422 ([`FingerprintPolicy::Strict`]).
    /// A retry after a failed attempt runs whatever its body under both.
    ///
    /// ```
    /// # use hookgate::{FingerprintPolicy, GitHub, MemoryStore, Pipeline};
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(MemoryStore::new())
    ///     .fingerprint_policy(FingerprintPolicy::Strict)
    ///     .build()?;
    /// # let _ = pipeline;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn fingerprint_policy(mut self, policy: FingerprintPolicy) -> Self {
        self.fingerprint_policy = policy;
        self
    }

    /// Sets how best-effort work is retried; `build` refuses a policy that
    /// cannot work ([`BuildError::InvalidRetryPolicy`]). Default:
    /// [`RetryPolicy::default`].
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
        self.memory_dead_letter = None;
        self.dead_letter = Arc::new(dead_letter);
        self
    }

    /// Sets an in-memory dead letter of your choosing (say, with another
    /// capacity), returned by [`Pipeline::memory_dead_letter`] as the default
    /// one is. Keep a clone to read it: clones share their entries.
    #[must_use]
    pub fn memory_dead_letter(mut self, dead_letter: MemoryDeadLetter) -> Self {
        self.dead_letter = Arc::new(dead_letter.clone());
        self.memory_dead_letter = Some(dead_letter);
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
    /// retry, or handed out in a [`BestEffort`](crate::BestEffort) not yet run. Each holds its event,
    /// body included, so this bounds memory. Work beyond it is never started:
    /// it goes to the dead letter at once with [`DeadLetterReason::Overflow`](crate::DeadLetterReason::Overflow) and
    /// is counted in [`Stats::best_effort_overflow`](crate::Stats::best_effort_overflow) — from a background task
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
    /// whose handlers the pipeline did not run for it — an unusable payload
    /// (400), an event that already completed with a different body (200 as a
    /// duplicate, 422 under [`FingerprintPolicy::Strict`]), or a replay refused
    /// by the [replay guard](Self::replay_guard) (200) — with its raw body and
    /// headers, so you can keep it for inspection or replay (see
    /// [`crate::rejected`]). Deliveries that fail verification never reach it.
    ///
    /// It is called inline, before `handle` returns: keep it quick (push into a
    /// channel, spawn a task). A panic in it is caught and does not change the
    /// answer. Default: none (such deliveries are only counted in [`Stats`](crate::Stats)).
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

    /// Journals every delivery attempt in `journal` (see [`crate::journal`]):
    /// what arrived, how it ended, and for verified deliveries the body and
    /// allowlisted headers, so failed deliveries can be found and replayed
    /// ([`Pipeline::replay`]). Default: no journal.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookgate::journal::{Journal, JournalQuery, MemoryJournal};
    /// use hookgate::{testing, GitHub, Headers, MemoryStore, Pipeline};
    /// let journal = MemoryJournal::new();
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(MemoryStore::new())
    ///     .journal(journal.clone())
    ///     .build()?;
    /// let headers = Headers::from_pairs(testing::github_headers("secret", b"{}", "push", "d-1"));
    /// let outcome = pipeline.handle(&b"{}"[..], &headers).await;
    /// pipeline.flush_journal(std::time::Duration::from_secs(1)).await;
    /// let record = journal.get(outcome.journal_id.unwrap()).await?.unwrap();
    /// assert_eq!(record.status.as_str(), "ignored");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn journal(mut self, journal: impl Journal + 'static) -> Self {
        self.journal = Some(Arc::new(journal));
        self
    }

    /// Sets the thresholds of [`Pipeline::health`]; see [`HealthThresholds`]
    /// for the defaults.
    #[must_use]
    pub fn health_thresholds(mut self, thresholds: HealthThresholds) -> Self {
        self.health_thresholds = thresholds;
        self
    }

    /// Sets what the journal keeps and how records are written; see
    /// [`JournalSettings`] for the defaults.
    #[must_use]
    pub fn journal_settings(mut self, settings: JournalSettings) -> Self {
        self.journal_settings = settings;
        self
    }

    /// Writes the best-effort jobs of each event into a durable outbox in the
    /// idempotency store's database, in the transaction that completes the
    /// event's key, instead of running them in this process; a
    /// [`Relay`](crate::outbox::Relay) ([`Pipeline::relay`], or one in
    /// another process) runs them under this pipeline's
    /// [retry policy](Self::retry_policy). See [`outbox`](crate::outbox).
    /// Default: no outbox (best-effort work runs in process).
    ///
    /// The store must be a `PostgresStore` or an `SqliteStore`
    /// ([`BuildError::OutboxStore`]), and the settings must work with the
    /// retry policy ([`BuildError::Outbox`]).
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
    #[must_use]
    pub fn outbox(mut self, settings: crate::outbox::OutboxSettings) -> Self {
        self.outbox = Some(settings);
        self
    }

    /// Checks the settings and builds the pipeline.
    ///
    /// # Errors
    /// A [`BuildError`] naming the first setting that cannot work.
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
        if self.journal_settings.queue_capacity == 0 {
            return Err(BuildError::Zero("journal_settings.queue_capacity"));
        }
        if self.journal_settings.batch_size == 0 {
            return Err(BuildError::Zero("journal_settings.batch_size"));
        }
        if let Err(err) = self.retry_policy.check() {
            return Err(BuildError::InvalidRetryPolicy {
                field: err.field,
                requirement: err.requirement,
            });
        }
        self.registry.validate()?;
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        let database = self
            .database
            .check(&self.registry, self.outbox, self.retry_policy)?;
        let known = |name: &str| self.verifiers.iter().any(|v| v.provider() == name);
        for provider in self.registry.providers() {
            if provider != ANY_PROVIDER && !known(provider) {
                return Err(BuildError::UnknownProvider {
                    provider: provider.to_owned(),
                    what: "a registered handler".to_owned(),
                });
            }
        }
        check_known(self.overrides.keys(), known, "a limit setting")?;
        check_known(&self.replay_guards, known, "a replay guard")?;
        check_known(
            self.dedup_keys.iter().map(|(name, _)| name),
            known,
            "a dedup key",
        )?;
        for (provider, key) in &self.dedup_keys {
            key.check().map_err(|reason| BuildError::InvalidDedupKey {
                provider: provider.clone(),
                reason,
            })?;
        }
        for (provider, _) in &self.orderings {
            if !known(provider) {
                return Err(BuildError::UnknownProvider {
                    provider: provider.clone(),
                    what: "an ordering guard".to_owned(),
                });
            }
        }
        if !self.orderings.is_empty() && store.watermarks().is_none() {
            return Err(BuildError::OrderingUnsupported);
        }
        let every = self
            .overrides
            .get(ANY_PROVIDER)
            .copied()
            .unwrap_or_default();
        let mut providers: Vec<Provider> = Vec::with_capacity(self.verifiers.len());
        for verifier in self.verifiers {
            let name: Arc<str> = verifier.provider().into();
            check_provider_name(&name)?;
            if providers.iter().any(|p| p.name == name) {
                return Err(BuildError::DuplicateProvider(name.to_string()));
            }
            let profile = verifier.profile();
            let set = self.overrides.get(&*name).copied().unwrap_or_default();
            let limits = resolve_limits(&name, &profile, set.or(every))?;
            let replay_guard = replay::covers(&self.replay_guards, &name, &profile)?;
            let dedup = self
                .dedup_keys
                .iter()
                .find(|(provider, _)| **provider == *name)
                .or_else(|| self.dedup_keys.iter().find(|(p, _)| p == ANY_PROVIDER))
                .map(|(_, key)| key.clone())
                .unwrap_or_default();
            let ordering = self
                .orderings
                .iter()
                .find(|(provider, _)| **provider == *name)
                .map(|(_, guard)| guard.clone());
            let journal_headers = journal_headers(&profile, &self.journal_settings);
            providers.push(Provider {
                name,
                verifier,
                profile,
                limits,
                replay_guard,
                ordering,
                dedup,
                journal_headers,
            });
        }
        let max_body_limit = providers
            .iter()
            .map(|p| p.limits.body_limit)
            .max()
            .unwrap_or(0);
        let stats = Arc::new(Recorder::default());
        let best_effort = Arc::new(BestEffortRunner::new(
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
                fingerprint_policy: self.fingerprint_policy,
                dead_letter: self.dead_letter,
                memory_dead_letter: self.memory_dead_letter,
                on_rejected: self.on_rejected,
                best_effort,
                journaling: self
                    .journal
                    .map(|journal| Journaling::new(journal, self.journal_settings, stats.clone())),
                stats,
                health_thresholds: self.health_thresholds,
                #[cfg(any(feature = "postgres", feature = "sqlite"))]
                database,
                closing: AtomicBool::new(false),
            }),
        })
    }
}

/// Refuses a setting that names a provider no verifier has (`*` names them all).
fn check_known<'a>(
    names: impl IntoIterator<Item = &'a String>,
    known: impl Fn(&str) -> bool,
    what: &str,
) -> Result<(), BuildError> {
    match names
        .into_iter()
        .find(|p| p.as_str() != ANY_PROVIDER && !known(p))
    {
        Some(provider) => Err(BuildError::UnknownProvider {
            provider: provider.clone(),
            what: what.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Refuses a provider name that could make two idempotency keys collide: keys
/// are `provider:event_id`, so a name holding `:` (`acme:eu` with id `42`
/// against `acme` with id `eu:42`) or an empty name is ambiguous.
fn check_provider_name(name: &str) -> Result<(), BuildError> {
    if name.is_empty() || name.contains(':') || name == ANY_PROVIDER {
        return Err(BuildError::InvalidProviderName(name.to_owned()));
    }
    Ok(())
}

impl PipelineBuilder {
    /// The defaults: no verifier, no store, no handlers, the system clock, the
    /// in-memory dead letter.
    pub(super) fn new() -> Self {
        let memory_dead_letter = MemoryDeadLetter::new();
        PipelineBuilder {
            verifiers: Vec::new(),
            store: None,
            registry: Registry::new(),
            clock: Arc::new(SystemClock),
            overrides: HashMap::new(),
            permanent_failure_policy: PermanentFailurePolicy::default(),
            fingerprint_policy: FingerprintPolicy::default(),
            retry_policy: RetryPolicy::default(),
            dead_letter: Arc::new(memory_dead_letter.clone()),
            memory_dead_letter: Some(memory_dead_letter),
            max_concurrent_best_effort: 64,
            max_pending_best_effort: 1024,
            on_rejected: None,
            replay_guards: Vec::new(),
            orderings: Vec::new(),
            dedup_keys: Vec::new(),
            journal: None,
            journal_settings: JournalSettings::default(),
            health_thresholds: HealthThresholds::default(),
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            database: super::in_transaction::Database::default(),
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            outbox: None,
        }
    }
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

/// The headers a journal keeps of `profile`'s verified deliveries: the
/// profile's and the settings' (each once, case ignored), less those whose
/// names may never be kept. Decided once here rather than per delivery.
fn journal_headers(profile: &ProviderProfile, settings: &JournalSettings) -> Box<[Box<str>]> {
    let mut kept: Vec<Box<str>> = Vec::new();
    let listed = profile.journal_headers.iter().copied();
    for name in listed.chain(settings.headers.iter().map(String::as_str)) {
        if JournalSettings::may_keep(name) && !kept.iter().any(|k| k.eq_ignore_ascii_case(name)) {
            kept.push(name.into());
        }
    }
    kept.into_boxed_slice()
}
