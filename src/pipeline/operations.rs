//! The operations API over the journal: replaying a journaled delivery and
//! retrying its dead-lettered best-effort work.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::best_effort::BestEffort;
use super::claim::ClaimMode;
use super::journaling::{Journaling, Watch};
use super::observe;
use super::Pipeline;
use crate::event::Event;
use crate::headers::Headers;
use crate::journal::{
    BestEffortJob, BestEffortState, Journal, JournalError, JournalId, JournalRecord, JournalWrite,
};
use crate::outcome::{Outcome, OutcomeKind};
use crate::registry::NamedHandler;

/// How [`Pipeline::replay`] treats the event's idempotency key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Runs the critical handlers even when the event is already completed:
    /// the replay claims a key of its own (`provider:event_id#replay:<id of
    /// the replay's record>`) instead of the event's, so it runs once, and the
    /// replay guard does not apply. Defaults to `false`: the replay claims the
    /// event's key like any delivery, so a completed event answers
    /// `Duplicate` and nothing runs twice.
    pub force: bool,
}

impl ReplayOptions {
    /// Replays even a completed event; see [`ReplayOptions::force`].
    pub fn forced() -> Self {
        Self { force: true }
    }
}

/// Why a journaled delivery cannot be replayed or its work retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The pipeline was built without a journal
    /// ([`PipelineBuilder::journal`](crate::PipelineBuilder::journal)).
    #[error("the pipeline has no journal")]
    NoJournal,
    /// The journal has no record with this id (never written, purged, or
    /// still waiting in the writer's queue: see [`Pipeline::flush_journal`]).
    #[error("the journal has no record {0}")]
    NotFound(JournalId),
    /// The record cannot be replayed; the reason says why (not verified,
    /// body not kept).
    #[error("journal record {id} cannot be replayed: {reason}")]
    NotReplayable {
        /// The record.
        id: JournalId,
        /// Why.
        reason: &'static str,
    },
    /// The record's provider has no verifier in this pipeline.
    #[error(
        "journal record {id} is from provider `{provider}`, which this pipeline does not know"
    )]
    UnknownProvider {
        /// The record.
        id: JournalId,
        /// Its provider.
        provider: String,
    },
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl Pipeline {
    /// The journal deliveries are recorded in, if the pipeline has one: list,
    /// count, get, mark resolved and purge through it.
    pub fn journal(&self) -> Option<Arc<dyn Journal>> {
        self.inner
            .journaling
            .as_ref()
            .map(|j| Arc::clone(j.journal()))
    }

    /// Waits up to `deadline` until the records queued for the journal are
    /// written (or dropped); whether they all were. `true` without a journal.
    pub async fn flush_journal(&self, deadline: Duration) -> bool {
        match &self.inner.journaling {
            Some(journaling) => journaling.flush(deadline).await,
            None => true,
        }
    }

    /// Replays a journaled verified delivery: its stored body and headers go
    /// through identify, claim, the critical handlers and completion like a
    /// delivery whose signature verified (it is not checked again: the
    /// journal only keeps bodies whose signature held), under the provider's
    /// answer budget, and best-effort work is spawned after. The replay gets a
    /// record of its own, whose [`JournalRecord::replay_of`] names the
    /// original. Without [`ReplayOptions::force`] the event's idempotency is
    /// respected: a completed event answers `Duplicate`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookgate::journal::MemoryJournal;
    /// use hookgate::{handler_fn, testing, GitHub, HandlerError, Headers, MemoryStore, OutcomeKind, Pipeline, Registry, ReplayOptions};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let down = Arc::new(AtomicBool::new(true));
    /// let mut registry = Registry::new();
    /// let db = down.clone();
    /// registry.critical("github", "push", "record_push", handler_fn(move |_event| {
    ///     let down = db.load(Ordering::SeqCst);
    ///     async move { if down { Err(HandlerError::transient("database down")) } else { Ok(()) } }
    /// }));
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(MemoryStore::new())
    ///     .registry(registry)
    ///     .journal(MemoryJournal::new())
    ///     .build()?;
    /// let headers = Headers::from_pairs(testing::github_headers("secret", b"{}", "push", "d-1"));
    /// let failed = pipeline.handle(&b"{}"[..], &headers).await;
    /// assert_eq!(failed.status(), 500); // GitHub will not retry this on its own
    ///
    /// down.store(false, Ordering::SeqCst);
    /// let replayed = pipeline.replay(failed.journal_id.unwrap(), ReplayOptions::default()).await?;
    /// assert!(matches!(replayed.kind, OutcomeKind::Processed { .. }));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ReplayError`]: no journal, no such record, a record that cannot be
    /// replayed (not verified, or its body was not kept), an unknown
    /// provider, or a journal failure.
    pub async fn replay(
        &self,
        id: JournalId,
        options: ReplayOptions,
    ) -> Result<Outcome, ReplayError> {
        let (outcome, best_effort_work) = self.replay_deferred(id, options).await?;
        if let Some(best_effort_work) = best_effort_work {
            best_effort_work.spawn();
        }
        Ok(outcome)
    }

    /// Like [`Pipeline::replay`], handing the best-effort work back as
    /// [`Pipeline::handle_deferred`] does.
    ///
    /// # Errors
    /// As [`Pipeline::replay`].
    pub async fn replay_deferred(
        &self,
        id: JournalId,
        options: ReplayOptions,
    ) -> Result<(Outcome, Option<BestEffort>), ReplayError> {
        let inner = &*self.inner;
        let (journaling, record) = self.replayable(id).await?;
        let provider = self.provider_of(&record)?;
        let body = record.body.clone().unwrap_or_default();
        let headers = Headers::from_pairs(
            record
                .headers
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned())),
        );
        if inner.closing.load(std::sync::atomic::Ordering::Acquire) {
            return Ok((Outcome::of(provider, OutcomeKind::ShuttingDown), None));
        }
        let started = Instant::now();
        let mut watch = Watch::new(
            Some(journaling),
            started,
            Some(provider),
            &body,
            &headers,
            Some(id),
        );
        let mode = if options.force {
            ClaimMode::Forced(watch.delivery.id)
        } else {
            ClaimMode::Once
        };
        let span = observe::delivery_span(Some(&provider.name), true);
        let (mut outcome, best_effort_work) = {
            let run = std::pin::pin!(self.run_verified(
                started,
                provider,
                body,
                &headers,
                &mut watch.delivery,
                mode,
            ));
            observe::in_span(&span, run).await
        };
        // A replay counts in the health report (not in `Stats`, which counts
        // `handle` calls).
        let processing = outcome.critical_elapsed.map(|_| started.elapsed());
        inner
            .stats
            .monitor
            .delivery(started, &outcome.kind, processing);
        outcome.journal_id = watch.journal_id();
        observe::delivered(&span, &watch.delivery, &outcome);
        let answer_by = started.checked_add(provider.limits.answer_budget);
        if let Some(write) = watch.finish(&mut outcome, answer_by) {
            write.await;
        }
        Ok((outcome, best_effort_work))
    }

    /// Runs again the best-effort jobs of a journaled delivery that ended in
    /// the dead letter (by handler name, as registered now), updating the
    /// record's jobs as they end. `None` when none of its jobs is
    /// dead-lettered. Run the returned [`BestEffort`] (await it, or
    /// [`spawn`](BestEffort::spawn) it). The critical work is not touched.
    ///
    /// # Errors
    /// As [`Pipeline::replay`].
    pub async fn retry_dead_lettered(
        &self,
        id: JournalId,
    ) -> Result<Option<BestEffort>, ReplayError> {
        let inner = &*self.inner;
        let (journaling, record) = self.replayable(id).await?;
        let provider = self.provider_of(&record)?;
        let dead: Vec<&BestEffortJob> = record
            .best_effort
            .iter()
            .filter(|job| job.state == BestEffortState::DeadLettered)
            .collect();
        if dead.is_empty() {
            return Ok(None);
        }
        let body = record.body.clone().unwrap_or_default();
        let headers = Headers::from_pairs(
            record
                .headers
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned())),
        );
        let identity = provider.verifier.identify(&body, &headers).map_err(|_| {
            ReplayError::NotReplayable {
                id,
                reason: "its body no longer identifies an event",
            }
        })?;
        let routes = inner.registry.route(
            &provider.name,
            &identity.kind,
            provider.profile.kinds_carry_action,
        );
        let handlers: Vec<NamedHandler> = routes
            .best_effort()
            .filter(|h| dead.iter().any(|job| job.handler == h.name()))
            .cloned()
            .collect();
        if handlers.is_empty() {
            return Ok(None);
        }
        journaling.start();
        for handler in &handlers {
            journaling.submit(JournalWrite::BestEffort {
                id,
                job: BestEffortJob::new(handler.name(), 0, BestEffortState::Pending),
            });
        }
        let event = Event::new(provider.name.clone(), identity, body);
        let tag = Some(journaling.tag(id));
        Ok(Some(
            inner.best_effort.register(&event, handlers, tag).await,
        ))
    }

    /// The journal and the record `id`, if it can be replayed.
    async fn replayable(
        &self,
        id: JournalId,
    ) -> Result<(&Arc<Journaling>, JournalRecord), ReplayError> {
        let journaling = self
            .inner
            .journaling
            .as_ref()
            .ok_or(ReplayError::NoJournal)?;
        let record = journaling
            .journal()
            .get(id)
            .await?
            .ok_or(ReplayError::NotFound(id))?;
        let refuse = |reason| Err(ReplayError::NotReplayable { id, reason });
        if !record.status.is_verified() {
            return refuse("its signature was not verified");
        }
        if record.body.is_none() {
            return refuse("its body was not kept (body retention, or over the size cap)");
        }
        Ok((journaling, record))
    }

    fn provider_of(&self, record: &JournalRecord) -> Result<&super::Provider, ReplayError> {
        let name = record.provider.as_deref().unwrap_or_default();
        self.inner
            .providers
            .iter()
            .find(|p| &*p.name == name)
            .ok_or_else(|| ReplayError::UnknownProvider {
                id: record.id,
                provider: name.to_owned(),
            })
    }
}
