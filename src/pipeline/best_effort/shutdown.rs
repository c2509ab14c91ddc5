//! Shutdown of the best-effort work: wait, cancel, let each job settle
//! itself, hand back what is left, and report it ([`ShutdownReport`]).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use super::outgoing::Outgoing;
use super::BestEffortRunner;
use crate::dead_letter::DeadLetterEntry;

/// How long shutdown waits, once it cancelled the pending work, for the jobs
/// to stop and settle themselves. A job whose task is polled takes one poll;
/// this bounds the wait for jobs whose task is not polled any more.
const STOP_GRACE: Duration = Duration::from_millis(100);

/// What [`Pipeline::shutdown`](crate::Pipeline::shutdown) left undone.
///
/// Every best-effort job ends in exactly one state: succeeded, or in the
/// dead letter (or refused by it). Work cancelled by shutdown is never also
/// completed, and no attempt starts once `shutdown` gave up waiting.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Every pending job finished before the deadline.
    pub drained: bool,
    /// Work still pending at the deadline — cancelled, reason
    /// [`DeadLetterReason::ShutDown`](crate::DeadLetterReason::ShutDown), with
    /// the attempts started (the one cut short included) and the last error —
    /// and work still waiting to be dead-lettered then (e.g. from a
    /// `BestEffort` dropped outside a runtime), with its own reason: all sent
    /// to the dead letter by `shutdown` and handed back here.
    pub abandoned: Vec<DeadLetterEntry>,
    /// How many of the abandoned entries the dead letter refused (they exist
    /// only in `abandoned`).
    pub dead_letter_failures: usize,
    /// Jobs whose handler was still inside one poll when shutdown stopped
    /// waiting: a handler that blocks its thread instead of awaiting.
    /// Shutdown can neither stop nor hand back such a job; it settles itself
    /// once that poll returns (succeeded, failed into the dead letter, or
    /// cancelled into it with reason `ShutDown`, sent from a background task)
    /// and starts no further attempt. Always 0 for handlers that await.
    pub still_running: usize,
    /// When the pipeline's dead letter is a [`MemoryDeadLetter`](crate::MemoryDeadLetter)
    /// (the default), a copy of every entry it holds after the abandoned
    /// work was added: they end with the process unless you store them.
    /// Empty for any other dead letter.
    pub memory_dead_letter: Vec<DeadLetterEntry>,
}

/// A shutdown's turn at sending the orphans itself (counted in
/// `Pending::shutdowns`). It ends when the shutdown found no orphan left, or
/// when the shutdown future is dropped, which leaves the orphans to a
/// background flush.
struct Turn<'a> {
    runner: &'a Arc<BestEffortRunner>,
    ended: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let flush = {
            let mut pending = self.runner.pending();
            pending.shutdowns -= 1;
            pending.shutdowns == 0 && !pending.orphans.is_empty()
        };
        if flush {
            self.runner.flush_soon();
        }
    }
}

impl BestEffortRunner {
    /// Waits up to `deadline` for every pending job. Then cancels what is
    /// left: no attempt starts any more, and each job, at its next poll,
    /// drops its handler's future and hands its entry over (reason
    /// `ShutDown`, the attempts started so far). Waits up to [`STOP_GRACE`]
    /// for them; a job whose task was not polled by then (its runtime is
    /// stopping, or the host holds a `BestEffort` it no longer polls) is
    /// settled here the same way, and never runs its handler again if its
    /// task does run later. Finally sends every entry handed over (with the
    /// work still waiting to be dead-lettered) and reports them.
    pub(in crate::pipeline) async fn shutdown(
        self: &Arc<Self>,
        deadline: Duration,
    ) -> ShutdownReport {
        let drained = tokio::time::timeout(deadline, self.until_settled())
            .await
            .is_ok();
        self.cancel_all();
        let mut turn = Turn {
            runner: self,
            ended: false,
        };
        // Bounded: a task that is never polled again cannot hold shutdown.
        let _stopped = tokio::time::timeout(STOP_GRACE, self.until_settled()).await;
        let still_running = self.take_unresponsive();
        let mut abandoned = Vec::new();
        let mut dead_letter_failures = 0;
        loop {
            let entry = {
                let mut pending = self.pending();
                let Some(entry) = pending.take_orphan() else {
                    pending.shutdowns -= 1;
                    turn.ended = true;
                    break;
                };
                entry
            };
            abandoned.push(entry.clone());
            if !Outgoing::new(self, entry).send().await {
                dead_letter_failures += 1;
            }
        }
        ShutdownReport {
            drained,
            abandoned,
            dead_letter_failures,
            still_running,
            memory_dead_letter: Vec::new(),
        }
    }

    /// Returns once no job is pending and no entry is being sent.
    async fn until_settled(&self) {
        loop {
            let mut notified = pin!(self.drained.notified());
            notified.as_mut().enable();
            if self.pending().settled() {
                return;
            }
            notified.await;
        }
    }
}
