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
//! 5. **claim** `provider:event_id` with the body's
//!    [`Fingerprint`](crate::Fingerprint) and the provider's lease (under the
//!    [replay guard](PipelineBuilder::replay_guard), after registering the body
//!    to its id and kind);
//! 6. run the **critical** handlers in order under the provider's deadline
//!    (errors, timeouts and panics release the key);
//! 7. **complete** the key (kept for the provider's retention) — only then is the
//!    answer 2xx, and only then does best-effort work start.
//!
//! A fencing token ties steps 5–7 together, so an attempt whose lease expired
//! can neither complete nor release a newer attempt's claim. Steps 1–7 share
//! the provider's answer budget ([`ProviderLimits::answer_budget`]): each store
//! call gets what is left of it.

mod attempt;
mod best_effort;
mod budget;
mod build_error;
mod builder;
mod claim;
mod in_transaction;
mod journaling;
mod key;
mod limits;
mod monitor;
mod observe;
mod operations;
mod recorder;
mod rejected_hook;
mod replay;

use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

pub use best_effort::{BestEffort, BestEffortReport, ShutdownReport};
pub use build_error::BuildError;
pub use builder::PipelineBuilder;
pub use limits::{FingerprintPolicy, PermanentFailurePolicy, ProviderLimits};
pub use operations::{ReplayError, ReplayOptions};

use attempt::{handler_name, Attempt};
use best_effort::BestEffortRunner;
use budget::{within, Budget};
use claim::ClaimMode;
use journaling::{Delivery, Journaling, Watch};
use recorder::Recorder;
use rejected_hook::RejectedHook;

use crate::clock::Clock;
use crate::dead_letter::{DeadLetter, MemoryDeadLetter};
use crate::dedup::DedupKey;
use crate::event::Event;
use crate::headers::Headers;
use crate::health::{HealthReport, HealthThresholds};
use crate::ordering::OrderingGuard;
use crate::outcome::{AnswerBudgetSpent, Outcome, OutcomeKind};
use crate::registry::{NamedHandler, Registry};
use crate::rejected::RejectionReason;
use crate::stats::Stats;
use crate::store::{IdempotencyStore, StoreError};
use crate::verify::{Identity, ProviderProfile, Verifier, VerifyError};

/// Turns deliveries into exactly-once critical work, best-effort work and
/// the status to answer; see the crate documentation for the full protocol.
///
/// Cheap to clone (one `Arc`): share it between your HTTP handlers.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

/// Everything a pipeline holds, shared by its clones.
struct Inner {
    providers: Vec<Provider>,
    max_body_limit: usize,
    store: Arc<dyn IdempotencyStore>,
    registry: Registry,
    clock: Arc<dyn Clock>,
    permanent_failure_policy: PermanentFailurePolicy,
    fingerprint_policy: FingerprintPolicy,
    dead_letter: Arc<dyn DeadLetter>,
    memory_dead_letter: Option<MemoryDeadLetter>,
    on_rejected: Option<RejectedHook>,
    best_effort: Arc<BestEffortRunner>,
    stats: Arc<Recorder>,
    health_thresholds: HealthThresholds,
    journaling: Option<Arc<Journaling>>,
    /// The store's database, for transactional handlers and the outbox.
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    database: in_transaction::Database,
    closing: AtomicBool,
}

/// One verifier with its name, profile and the limits resolved for it.
struct Provider {
    name: Arc<str>,
    verifier: Box<dyn Verifier>,
    profile: ProviderProfile,
    limits: ProviderLimits,
    /// Whether the replay guard covers it ([`PipelineBuilder::replay_guard`]).
    replay_guard: bool,
    /// Its ordering guard ([`PipelineBuilder::ordering`]).
    ordering: Option<OrderingGuard>,
    /// Where its events' ids come from ([`PipelineBuilder::dedup_key`]).
    dedup: DedupKey,
}

impl Pipeline {
    /// A builder with safe defaults; add at least one verifier and a store.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::new()
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
        let (outcome, best_effort_work) = self.handle_deferred(raw_body, headers).await;
        if let Some(best_effort_work) = best_effort_work {
            best_effort_work.spawn();
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
        let (outcome, best_effort_work) =
            self.handle_for_deferred(provider, raw_body, headers).await;
        if let Some(best_effort_work) = best_effort_work {
            best_effort_work.spawn();
        }
        outcome
    }

    /// Like [`Pipeline::handle`], but hands the best-effort work back instead of
    /// spawning it: run the [`BestEffort`] yourself (await it after answering, or
    /// spawn it on your executor). `None` when there is nothing to do. Dropping
    /// the `BestEffort` unfinished sends its work to the dead letter
    /// ([`DeadLetterReason::BestEffortDropped`](crate::DeadLetterReason::BestEffortDropped)).
    ///
    /// # Panics
    /// Outside a tokio runtime with its time driver enabled: the critical
    /// deadline and the retry delays use tokio's timer.
    pub async fn handle_deferred(
        &self,
        raw_body: impl Into<Bytes>,
        headers: &Headers,
    ) -> (Outcome, Option<BestEffort>) {
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
    ) -> (Outcome, Option<BestEffort>) {
        let index = self
            .inner
            .providers
            .iter()
            .position(|p| &*p.name == provider);
        self.process(index, raw_body.into(), headers).await
    }

    /// Answers a delivery whose body you stopped reading because it is larger
    /// than its limit ([`Pipeline::max_body_size`], or the named provider's
    /// [`ProviderLimits::body_limit`]): 413 [`OutcomeKind::TooLarge`], counted
    /// and journaled (metadata only) exactly like an oversized body handed to
    /// [`Pipeline::handle`], without holding the body.
    ///
    /// `provider` is the name the delivery was routed to, or `None` to detect
    /// it from the headers. `size` is what you know of the body's size: its
    /// `Content-Length`, or how much you had read when you stopped; the outcome
    /// reports at least one byte over the limit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookgate::{GitHub, Headers, MemoryStore, OutcomeKind, Pipeline};
    ///
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(MemoryStore::new())
    ///     .build()?;
    /// let headers = Headers::from_pairs([("X-GitHub-Event", "push")]);
    /// // Content-Length said 30 MB: not a byte of the body is read.
    /// let outcome = pipeline.refuse_too_large(Some("github"), &headers, 30_000_000).await;
    /// assert_eq!(outcome.status(), 413);
    /// assert!(matches!(outcome.kind, OutcomeKind::TooLarge { size: 30_000_000, limit } if limit == 25 * 1024 * 1024));
    /// assert_eq!(pipeline.stats().too_large, 1);
    /// # Ok(()) }
    /// ```
    pub async fn refuse_too_large(
        &self,
        provider: Option<&str>,
        headers: &Headers,
        size: usize,
    ) -> Outcome {
        let providers = &self.inner.providers;
        let index = match provider {
            Some(name) => providers.iter().position(|p| &*p.name == name),
            None => providers.iter().position(|p| p.verifier.detect(headers)),
        };
        let (outcome, _) = self
            .process_as(index, Bytes::new(), headers, Some(size))
            .await;
        outcome
    }

    async fn process(
        &self,
        index: Option<usize>,
        body: Bytes,
        headers: &Headers,
    ) -> (Outcome, Option<BestEffort>) {
        self.process_as(index, body, headers, None).await
    }

    /// Handles a delivery, or refuses it as too large without its body when
    /// `oversized` holds its size.
    async fn process_as(
        &self,
        index: Option<usize>,
        body: Bytes,
        headers: &Headers,
        oversized: Option<usize>,
    ) -> (Outcome, Option<BestEffort>) {
        let started = Instant::now();
        let inner = &*self.inner;
        let provider = index.map(|i| &inner.providers[i]);
        let span = observe::delivery_span(provider.map(|p| &*p.name), false);
        let mut watch = Watch::new(
            inner.journaling.as_ref(),
            started,
            provider.map(|p| (&*p.name, &p.profile)),
            &body,
            headers,
            None,
        );
        let (mut outcome, best_effort_work) = match oversized {
            Some(size) => (self.too_large(index, size), None),
            None => {
                let run = pin!(self.run(started, index, body, headers, &mut watch.delivery));
                observe::in_span(&span, run).await
            }
        };
        inner.stats.delivery(&outcome.kind);
        outcome.journal_id = watch.journal_id();
        observe::delivered(&span, &watch.delivery, &outcome);
        let processing = outcome.critical_elapsed.map(|_| started.elapsed());
        inner
            .stats
            .monitor
            .delivery(started, &outcome.kind, processing);
        let answer_by = provider.and_then(|p| started.checked_add(p.limits.answer_budget));
        watch.finish(&mut outcome, answer_by).await;
        (outcome, best_effort_work)
    }

    /// The outcome of a body of `size` bytes refused unread.
    fn too_large(&self, index: Option<usize>, size: usize) -> Outcome {
        let inner = &*self.inner;
        let provider = index.map(|i| &inner.providers[i]);
        let limit = provider.map_or(inner.max_body_limit, |p| p.limits.body_limit);
        let mut outcome = Outcome::new(OutcomeKind::TooLarge {
            size: size.max(limit.saturating_add(1)),
            limit,
        });
        outcome.provider = provider.map(|p| p.name.clone());
        outcome
    }

    async fn run(
        &self,
        started: Instant,
        index: Option<usize>,
        body: Bytes,
        headers: &Headers,
        delivery: &mut Delivery<'_>,
    ) -> (Outcome, Option<BestEffort>) {
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
            return done(OutcomeKind::VerificationFailed(
                VerifyError::UnknownProvider,
            ));
        };
        let mut outcome = Outcome::new(OutcomeKind::Ignored);
        outcome.provider = Some(provider.name.clone());
        if body.len() > provider.limits.body_limit {
            outcome.kind = OutcomeKind::TooLarge {
                size: body.len(),
                limit: provider.limits.body_limit,
            };
            return (outcome, None);
        }
        // A verifier's asynchronous preparation (PayPal's certificate fetch),
        // within the answer budget and timed as part of verifying; `None`
        // for every other verifier.
        let verifying = delivery.timed.then(Instant::now);
        // One clock read serves both steps unless preparing had to wait.
        let mut now = inner.clock.now();
        if let Some(prepare) = provider.verifier.prepare(headers, now) {
            let budget = Budget::new(started, &provider.limits);
            let failed = match within(|| budget.work_ends(), prepare).await {
                Some(Ok(())) => None,
                Some(Err(err)) => Some(err),
                None => Some(VerifyError::PreparationTimedOut {
                    budget: provider.limits.answer_budget,
                }),
            };
            if let Some(err) = failed {
                delivery.verify = verifying.map(|at| at.elapsed());
                outcome.kind = OutcomeKind::VerificationFailed(err);
                return (outcome, None);
            }
            now = inner.clock.now();
        }
        let verified = provider.verifier.verify(&body, headers, now);
        delivery.verify = verifying.map(|at| at.elapsed());
        if let Err(err) = verified {
            outcome.kind = OutcomeKind::VerificationFailed(err);
            return (outcome, None);
        }
        self.run_verified(
            started,
            provider,
            outcome,
            body,
            headers,
            delivery,
            ClaimMode::Once,
        )
        .await
    }

    /// The steps after verification (identify, route, claim, critical work,
    /// complete, best-effort work), for a delivery or a replay.
    #[allow(clippy::too_many_arguments)]
    async fn run_verified(
        &self,
        started: Instant,
        provider: &Provider,
        mut outcome: Outcome,
        body: Bytes,
        headers: &Headers,
        delivery: &mut Delivery<'_>,
        mode: ClaimMode,
    ) -> (Outcome, Option<BestEffort>) {
        let inner = &*self.inner;
        let finish = |mut outcome: Outcome, kind| {
            outcome.kind = kind;
            (outcome, None)
        };
        // The provider's check of the endpoint is answered, not handled.
        if let Some(handshake) = provider.verifier.handshake(&body, headers) {
            return finish(outcome, OutcomeKind::Handshake(handshake));
        }
        let identified = provider
            .verifier
            .identify(&body, headers)
            .and_then(|mut identity| {
                if !provider.dedup.is_provider_default() {
                    identity.id = provider.dedup.derive(Some(&identity.id), &body, headers)?;
                }
                Ok(identity)
            });
        let identity = match identified {
            Ok(identity) => identity,
            Err(err) => {
                self.reject(
                    &outcome,
                    None,
                    RejectionReason::Unusable(err.clone()),
                    &body,
                    headers,
                );
                return finish(outcome, OutcomeKind::Unusable(err));
            }
        };
        // Until the event is claimed, its id and kind stay in `identity` and
        // are moved into the outcome of an answer without work (a duplicate
        // costs no copies); a claimed event's outcome gets copies below.
        let finish_unclaimed = |mut outcome: Outcome, identity: Identity, kind| {
            outcome.event_id = Some(identity.id);
            outcome.event_kind = Some(identity.kind);
            finish(outcome, kind)
        };
        if inner
            .registry
            .route(
                &provider.name,
                &identity.kind,
                provider.profile.kinds_carry_action,
            )
            .is_empty()
        {
            return finish_unclaimed(outcome, identity, OutcomeKind::Ignored);
        }
        let budget = Budget::new(started, &provider.limits);
        // The claim step (the replay guard's registration included) must leave
        // the settle reserve for completing the key.
        let claiming = delivery.timed.then(Instant::now);
        let claimed = {
            let claim = pin!(self.claim(provider, &outcome, &identity, &body, headers, mode));
            within(|| budget.work_ends(), claim).await
        };
        delivery.claim = claiming.map(|at| at.elapsed());
        let (key, token) = match claimed {
            Some(Ok(claimed)) => claimed,
            Some(Err(kind)) => return finish_unclaimed(outcome, identity, kind),
            None => {
                let spent = AnswerBudgetSpent::Claim(provider.limits.answer_budget);
                let err = StoreError::unavailable(spent);
                let kind = OutcomeKind::StoreUnavailable(Arc::new(err));
                return finish_unclaimed(outcome, identity, kind);
            }
        };
        let _in_flight = inner.stats.monitor.claimed(started);
        if delivery.timed {
            delivery.attempt = Some(token.0);
        }
        if delivery.tag.is_some() {
            delivery.event = Some((identity.id.clone(), identity.kind.clone()));
        }
        let attempt = Attempt {
            inner,
            key,
            token,
            limits: &provider.limits,
            budget,
        };
        // Built only once the key is held: duplicates never pay for it.
        let event = Event::new(provider.name.clone(), identity, body);
        let (kind, best_effort_work) = self
            .run_claimed(
                provider,
                &attempt,
                &event,
                &mut outcome,
                headers,
                delivery,
                mode,
            )
            .await;
        // The outcome takes the event's id and kind over when nothing else
        // holds the event (no best-effort work, no handler kept a clone).
        match event.into_identity() {
            Ok(identity) => {
                outcome.event_id = Some(identity.id);
                outcome.event_kind = Some(identity.kind);
            }
            Err(event) => {
                outcome.event_id = Some(event.id().to_owned());
                outcome.event_kind = Some(event.kind().to_owned());
            }
        }
        outcome.kind = kind;
        (outcome, best_effort_work)
    }

    /// The steps of a claimed event: the ordering guard, the critical work,
    /// completing the key and the best-effort work; the answer's kind. The
    /// outcome's event id and kind are not set yet.
    #[allow(clippy::too_many_arguments)]
    async fn run_claimed(
        &self,
        provider: &Provider,
        attempt: &Attempt<'_>,
        event: &Event,
        outcome: &mut Outcome,
        headers: &Headers,
        delivery: &mut Delivery<'_>,
        mode: ClaimMode,
    ) -> (OutcomeKind, Option<BestEffort>) {
        let inner = &*self.inner;
        let routes = inner.registry.route(
            event.provider(),
            event.kind(),
            provider.profile.kinds_carry_action,
        );
        // The store is asked for its watermarks only under a guard.
        let order = provider.ordering.as_ref().and_then(|guard| {
            let watermarks = inner.store.watermarks()?;
            let (object, at) = guard.watermark_of(&provider.name, event)?;
            Some((watermarks, object, at))
        });
        if let (Some((watermarks, object, at)), ClaimMode::Once) = (&order, mode) {
            if let Err(kind) = attempt.check_order(*watermarks, object, *at).await {
                if let OutcomeKind::Stale { at, newest } = kind {
                    let object = object.clone();
                    let reason = RejectionReason::Stale { object, at, newest };
                    let identity = Some(event.identity());
                    self.reject(outcome, identity, reason, event.body(), headers);
                }
                return (kind, None);
            }
        }
        let critical = match attempt.run_critical(event, routes, outcome).await {
            Ok(last) => match &order {
                Some((watermarks, object, at)) => attempt
                    .advance_order(*watermarks, object, *at)
                    .await
                    .map(|()| last),
                None => Ok(last),
            },
            Err(kind) => Err(kind),
        };
        let last = match critical {
            Ok(last) => last,
            Err(kind) => return (kind, None),
        };
        match attempt
            .finish(event, routes, handler_name(last), outcome)
            .await
        {
            // The best-effort jobs are in the outbox, for a relay.
            Ok(Some(count)) => (OutcomeKind::Processed { best_effort: count }, None),
            Ok(None) => {
                let best_effort: Vec<NamedHandler> = routes.best_effort().cloned().collect();
                let count = best_effort.len();
                let best_effort_work = if count > 0 {
                    if delivery.tag.is_some() {
                        delivery.best_effort =
                            best_effort.iter().map(NamedHandler::shared_name).collect();
                    }
                    let tag = delivery.tag.clone();
                    Some(inner.best_effort.register(event, best_effort, tag).await)
                } else {
                    None
                };
                (
                    OutcomeKind::Processed { best_effort: count },
                    best_effort_work,
                )
            }
            Err(kind) => (kind, None),
        }
    }

    /// Hands an authentic delivery whose handlers did not run to the host's
    /// hook, if any.
    fn reject(
        &self,
        outcome: &Outcome,
        identity: Option<&Identity>,
        reason: RejectionReason,
        body: &Bytes,
        headers: &Headers,
    ) {
        let Some(hook) = &self.inner.on_rejected else {
            return;
        };
        if !hook.deliver(outcome, identity, reason, body, headers) {
            Recorder::bump(&self.inner.stats.rejected_hook_panics);
        }
    }

    /// Whether the receiver is healthy over the last `window` (at most an
    /// hour, in 15 s slots): critical failures, success and duplicate rates,
    /// the in-flight backlog and the oldest attempt still holding its claim,
    /// processing time p50/p95/p99, the best-effort dead-letter rate and
    /// journal drops, checked against the
    /// [thresholds](PipelineBuilder::health_thresholds). Computed from
    /// in-process counters: this instance only (sum instances yourself), and
    /// nothing is stored.
    ///
    /// ```
    /// # use hookgate::{GitHub, MemoryStore, Pipeline};
    /// use hookgate::health::HealthStatus;
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(MemoryStore::new())
    ///     .build()?;
    /// let report = pipeline.health(std::time::Duration::from_secs(300));
    /// assert_eq!(report.status, HealthStatus::Healthy);
    /// for alert in &report.alerts {
    ///     println!("{:?} {}: {} — {}", alert.severity, alert.check, alert.measured, alert.recommendation);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn health(&self, window: Duration) -> HealthReport {
        let inner = &*self.inner;
        inner.stats.monitor.report(window, &inner.health_thresholds)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.stats.snapshot();
        stats.best_effort_pending = self.inner.best_effort.held() as u64;
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

    /// The name of the provider these headers are from (the first verifier
    /// whose [`Verifier::detect`] accepts them), as [`Pipeline::handle`] would
    /// detect it; `None` when no verifier recognises them.
    pub fn detect(&self, headers: &Headers) -> Option<&str> {
        self.inner
            .providers
            .iter()
            .find(|p| p.verifier.detect(headers))
            .map(|p| &*p.name)
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
    /// report, so nothing is dropped silently. Cancelled work is never also
    /// completed and no attempt starts after `shutdown` returns; it waits up to
    /// 100 ms more for cancelled jobs to stop (a handler blocking its thread is
    /// reported in [`ShutdownReport::still_running`]). When the dead letter is in
    /// memory (the default), the report also carries a copy of what it holds
    /// ([`ShutdownReport::memory_dead_letter`]): store it before the process
    /// ends, or it is lost.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.closing.store(true, Ordering::Release);
        let began = Instant::now();
        let mut report = self.inner.best_effort.shutdown(deadline).await;
        if let Some(journaling) = &self.inner.journaling {
            // The records of the work just settled, within what is left.
            let left = deadline.saturating_sub(began.elapsed());
            journaling.flush(left.max(Duration::from_millis(100))).await;
        }
        if let Some(memory) = &self.inner.memory_dead_letter {
            report.memory_dead_letter = memory.entries();
        }
        report
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
            .field("fingerprint_policy", &self.inner.fingerprint_policy)
            .field("dead_letter", &self.inner.dead_letter)
            .field("on_rejected", &self.inner.on_rejected)
            .field(
                "journal",
                &self.inner.journaling.as_ref().map(|j| j.journal()),
            )
            .field("best_effort", &self.inner.best_effort)
            .finish()
    }
}
