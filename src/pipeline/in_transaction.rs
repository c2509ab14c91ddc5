//! The success step of an attempt when the store's database runs it: the
//! transactional critical handlers, the completion of the key and the
//! outbox jobs in one transaction (see [`crate::transactional`] and
//! [`crate::outbox`]); otherwise the plain completion.

use std::sync::Arc;

use super::attempt::Attempt;
use crate::event::Event;
use crate::outcome::{Outcome, OutcomeKind};
use crate::registry::Routes;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
use {
    super::budget::within,
    super::build_error::BuildError,
    super::Pipeline,
    crate::outbox::{Job, OutboxSettings, OutboxTables, Relay},
    crate::outcome::CriticalFailure,
    crate::registry::Registry,
    crate::retry::RetryPolicy,
    crate::transactional::{Engine, TxFailure, Work},
    std::pin::pin,
    tokio::time::Instant,
};

/// The database of the pipeline's store, when it can run transactions, and
/// the outbox in it, when one is set.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[derive(Debug, Default)]
pub(super) struct Database {
    engine: Option<Engine>,
    outbox: Option<Outbox>,
}

/// A pipeline's outbox.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[derive(Debug)]
struct Outbox {
    tables: OutboxTables,
    settings: OutboxSettings,
    policy: RetryPolicy,
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl Database {
    /// The database of `store`, as the builder is given it.
    pub(super) fn of(store: &dyn std::any::Any) -> Self {
        Self {
            engine: Engine::of(store),
            outbox: None,
        }
    }

    /// Checks that every transactional handler of `registry` runs on this
    /// database, and sets up the outbox when `outbox` holds its settings.
    pub(super) fn check(
        mut self,
        registry: &Registry,
        outbox: Option<OutboxSettings>,
        policy: RetryPolicy,
    ) -> Result<Self, BuildError> {
        for handler in registry.transactional_handlers() {
            if !self
                .engine
                .as_ref()
                .is_some_and(|engine| engine.runs(&handler.handler))
            {
                return Err(BuildError::TransactionalStore {
                    handler: handler.name.to_string(),
                    needs: handler.handler.needs(),
                });
            }
        }
        if let Some(settings) = outbox {
            let Some(engine) = &self.engine else {
                return Err(BuildError::OutboxStore);
            };
            settings.check(&policy)?;
            let tables = OutboxTables::new(&settings.table, engine)?;
            self.outbox = Some(Outbox {
                tables,
                settings,
                policy,
            });
        }
        Ok(self)
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl Pipeline {
    /// A [`Relay`] for this pipeline's outbox
    /// ([`PipelineBuilder::outbox`](super::PipelineBuilder::outbox)): it runs
    /// the pipeline's best-effort handlers under its retry policy. `None`
    /// without an outbox. Spawn [`Relay::run`] once or more per instance;
    /// abort its task (or drop its future) to stop it.
    ///
    /// ```no_run
    /// # async fn run(pipeline: hookgate::Pipeline) {
    /// if let Some(relay) = pipeline.relay() {
    ///     tokio::spawn(relay.run());
    /// }
    /// # }
    /// ```
    pub fn relay(&self) -> Option<Relay> {
        let database = &self.inner.database;
        let (engine, outbox) = (database.engine.as_ref()?, database.outbox.as_ref()?);
        Some(Relay::new(
            engine.clone(),
            outbox.tables.clone(),
            self.inner.registry.clone(),
            outbox.policy,
            outbox.settings.clone(),
        ))
    }
}

impl Attempt<'_> {
    /// Settles the key once the plain critical handlers (the last of them
    /// `last`) succeeded: in one transaction with the transactional handlers
    /// and the outbox jobs when the store's database runs them, else with a
    /// plain completion. `Ok(Some(n))`: the key is completed and `n`
    /// best-effort jobs are in the outbox; `Ok(None)`: the key is completed
    /// and best-effort work runs in process; `Err`: the answer.
    #[allow(unused_variables)]
    pub(super) async fn finish(
        &self,
        event: &Event,
        routes: Routes<'_>,
        last: Arc<str>,
        outcome: &mut Outcome,
    ) -> Result<Option<usize>, OutcomeKind> {
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        if let Some(engine) = &self.inner.database.engine {
            let outbox = self.inner.database.outbox.as_ref();
            let handlers: Vec<_> = routes.transactional().cloned().collect();
            if !handlers.is_empty() || outbox.is_some() {
                outcome.critical_handlers += handlers.len();
                let jobs: Option<Vec<Job>> = outbox.map(|_| {
                    routes
                        .best_effort()
                        .map(|handler| Job::new(&self.key, handler.shared_name(), event))
                        .collect()
                });
                let enqueued = jobs.as_ref().map(Vec::len);
                let work = Work {
                    key: &self.key,
                    token: self.token,
                    retention: self.limits.retention,
                    event,
                    handlers,
                    outbox: outbox
                        .zip(jobs)
                        .map(|(outbox, jobs)| (&outbox.tables, jobs)),
                    #[cfg(feature = "sqlite")]
                    deadline: self.budget.ends().map(Instant::into_std),
                };
                return self
                    .transaction(engine, event, work, last)
                    .await
                    .map(|()| enqueued);
            }
        }
        self.complete(last).await.map(|()| None)
    }

    /// Runs `work` within the answer budget and settles what went wrong.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    async fn transaction(
        &self,
        engine: &Engine,
        event: &Event,
        work: Work<'_>,
        last: Arc<str>,
    ) -> Result<(), OutcomeKind> {
        let began = Instant::now();
        let ran = within(|| self.budget.ends(), pin!(engine.run(work))).await;
        let failed = |handler, failure| OutcomeKind::CriticalFailed { handler, failure };
        let failure = match ran {
            Some(Ok(())) => return Ok(()),
            // Dropped where it stood: rolled back, or committed if the commit
            // was already on its way. The retry finds the key completed, or
            // leased until the lease ends.
            None => return Err(failed(last, CriticalFailure::Timeout(began.elapsed()))),
            Some(Err(failure)) => failure,
        };
        let (reason, kind) = match failure {
            TxFailure::Stale(err) => {
                return Err(failed(last, CriticalFailure::LeaseLost(Arc::new(err))))
            }
            TxFailure::Handler { handler, error } if !error.is_transient() => {
                return Err(self.settle_permanent(event, handler, error).await)
            }
            TxFailure::Handler { handler, error } => {
                let reason = format!("critical handler `{handler}` failed: {error}");
                let failure = CriticalFailure::Transient(Arc::new(error));
                (reason, failed(handler, failure))
            }
            TxFailure::Panic { handler, panic } => (
                format!("critical handler `{handler}` panicked: {}", panic.message),
                failed(handler, CriticalFailure::Panic(panic.message)),
            ),
            #[cfg(feature = "sqlite")]
            TxFailure::Timeout { handler } => (
                format!("critical handlers passed the deadline in `{handler}`"),
                failed(handler, CriticalFailure::Timeout(began.elapsed())),
            ),
            TxFailure::Store(err) => (
                format!("the transaction failed: {err}"),
                OutcomeKind::StoreUnavailable(Arc::new(err)),
            ),
            // Released all the same: the release is fenced by the token and
            // by `state = 'leased'`, so it cannot undo a commit that landed
            // (PostgreSQL makes it wait for the transaction's row lock).
            TxFailure::CommitUnknown(err) => (
                format!("the commit's outcome is unknown: {err}"),
                OutcomeKind::StoreUnavailable(Arc::new(err)),
            ),
        };
        self.release(&reason).await;
        Err(kind)
    }
}
