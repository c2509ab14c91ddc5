//! [`BestEffort`]: the best-effort work of one delivery, as a future the host
//! may run itself, and what it did ([`BestEffortReport`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::{self, JoinAll};

use super::job::{End, Job};

/// The best-effort work of one delivery, for hosts that run it themselves
/// (see [`Pipeline::handle_deferred`](crate::Pipeline::handle_deferred)).
///
/// Await it, spawn it on any executor that provides a tokio timer, or call
/// [`BestEffort::spawn`]. Its handlers run concurrently, each with its own
/// retries. The work is registered with the pipeline as soon as the
/// `BestEffort` exists, and counts towards
/// [`PipelineBuilder::max_pending_best_effort`](crate::PipelineBuilder::max_pending_best_effort).
///
/// Each handler's work ends in exactly one state: succeeded, or sent to the
/// dead letter (counted in the [`BestEffortReport`]).
///
/// **Dropping it (or aborting the task that runs it) before it finished**
/// hands its unfinished work to the dead letter at once, reason
/// [`DeadLetterReason::BestEffortDropped`](crate::DeadLetterReason::BestEffortDropped),
/// with the attempts started so far and the last error; it no longer counts
/// as pending, so [`Pipeline::shutdown`](crate::Pipeline::shutdown) does not
/// wait for it. (If it is dropped outside a tokio runtime, the entries are
/// sent by the next best-effort work that needs the dead letter, or by
/// `shutdown`.)
///
/// **Shutdown** cancels the work still pending at its deadline. A
/// `BestEffort` still being polled then stops its handlers at their next poll
/// and hands their work to shutdown; one that was never polled, or that is
/// not polled within shutdown's grace, is handed over by shutdown itself and,
/// if polled later, finishes at once without resuming any handler. Either
/// way the work is counted in [`BestEffortReport::abandoned`].
///
/// Work the pipeline could not register — it already held its maximum of
/// pending jobs ([`DeadLetterReason::Overflow`](crate::DeadLetterReason::Overflow))
/// or shutdown had given up
/// ([`DeadLetterReason::ShutDown`](crate::DeadLetterReason::ShutDown)) — went
/// to the dead letter when the `BestEffort` was made and is counted in
/// [`BestEffortReport::refused`].
#[must_use = "best-effort work only runs when the BestEffort is awaited or spawned; dropping it dead-letters the work"]
pub struct BestEffort {
    count: usize,
    refused: usize,
    jobs: Vec<Job>,
    running: Option<JoinAll<Job>>,
}

/// What a [`BestEffort`] did: each of its handlers is counted in exactly one
/// field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BestEffortReport {
    /// Handlers that succeeded (possibly after retries).
    pub succeeded: usize,
    /// Handlers whose work went to the dead letter after failing.
    pub dead_lettered: usize,
    /// Handlers whose work failed and that the dead letter then refused: the
    /// entry is gone (also counted in
    /// [`Stats::dead_letter_failures`](crate::Stats::dead_letter_failures)).
    pub dead_letter_refused: usize,
    /// Handlers cancelled by shutdown: their work was handed to it (listed in
    /// [`ShutdownReport::abandoned`](crate::ShutdownReport::abandoned)).
    pub abandoned: usize,
    /// Handlers never run because the pipeline could not take the work (too
    /// much pending work, or shutting down): sent to the dead letter at once.
    pub refused: usize,
}

impl BestEffort {
    pub(super) fn new(count: usize, refused: usize, jobs: Vec<Job>) -> Self {
        Self {
            count,
            refused,
            jobs,
            running: None,
        }
    }

    /// Number of best-effort handlers in this work, refused ones included.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is no best-effort work.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many handlers' work the pipeline refused and dead-lettered
    /// instead of registering (see the type's documentation).
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Spawns each handler's work as its own task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn(mut self) {
        for job in std::mem::take(&mut self.jobs) {
            tokio::spawn(job);
        }
        if let Some(running) = self.running.take() {
            tokio::spawn(running);
        }
    }
}

impl Future for BestEffort {
    type Output = BestEffortReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BestEffortReport> {
        let this = &mut *self;
        let refused = this.refused;
        let running = this
            .running
            .get_or_insert_with(|| future::join_all(std::mem::take(&mut this.jobs)));
        Pin::new(running).poll(cx).map(|ends| {
            let mut report = BestEffortReport {
                refused,
                ..BestEffortReport::default()
            };
            for end in ends {
                match end {
                    End::Succeeded => report.succeeded += 1,
                    End::DeadLettered => report.dead_lettered += 1,
                    End::DeadLetterRefused => report.dead_letter_refused += 1,
                    End::Abandoned => report.abandoned += 1,
                }
            }
            report
        })
    }
}

impl std::fmt::Debug for BestEffort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BestEffort")
            .field("handlers", &self.len())
            .field("refused", &self.refused)
            .finish()
    }
}
