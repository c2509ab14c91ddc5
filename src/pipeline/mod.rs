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
mod steps;

use std::fmt;
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

use best_effort::BestEffortRunner;
use journaling::Journaling;
use recorder::Recorder;
use rejected_hook::RejectedHook;

use crate::clock::Clock;
use crate::dead_letter::{DeadLetter, MemoryDeadLetter};
use crate::dedup::DedupKey;
use crate::headers::Headers;
use crate::health::{HealthReport, HealthThresholds};
use crate::ordering::OrderingGuard;
use crate::outcome::Outcome;
use crate::registry::Registry;
use crate::stats::Stats;
use crate::store::IdempotencyStore;
use crate::verify::{ProviderProfile, Verifier};

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
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
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
    /// The headers a journal keeps of its verified deliveries: its profile's
    /// and those of the journal settings, less any that may never be kept.
    journal_headers: Box<[Box<str>]>,
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
    /// [`ProviderLimits::body_limit`]): 413 [`OutcomeKind::TooLarge`](crate::OutcomeKind::TooLarge), counted
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

    /// Stops taking deliveries (they get 503 [`OutcomeKind::ShuttingDown`](crate::OutcomeKind::ShuttingDown)) and
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
