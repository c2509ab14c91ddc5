//! The pending table: every job registered and not settled, the entries on
//! their way to the dead letter, and the transitions that decide who settles
//! a job.
//!
//! A job leaves the table exactly once, under its lock, and whoever removes
//! it settles it. While a job's future is being polled (`polling`), only that
//! future may remove it: shutdown never settles work whose handler might be
//! returning `Ok` at that moment.
//!
//! No waker is dropped or woken under the lock: dropping a waker may drop the
//! last handle of a task, and so a job, whose drop guard takes the lock.
//! Wakers leave the table into a `Vec` declared before the lock guard, so
//! they go after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::task::Waker;

use super::outgoing::Outgoing;
use super::BestEffortRunner;
use crate::dead_letter::{DeadLetterEntry, DeadLetterReason};
use crate::event::Event;
use crate::handler::HandlerError;
use crate::journal::BestEffortState;
use crate::pipeline::journaling::JournalTag;
use crate::pipeline::monitor::Count;
use crate::pipeline::observe;
use crate::pipeline::recorder::Recorder;

#[derive(Default)]
pub(super) struct Pending {
    pub(super) next_id: u64,
    /// Shutdown gave up waiting: no attempt starts any more, and new work is
    /// refused.
    pub(super) cancelled: bool,
    /// Shutdowns sending the orphans themselves right now; background flushes
    /// leave the orphans to them meanwhile, so each shutdown reports every
    /// entry of the work it cancelled.
    pub(super) shutdowns: usize,
    /// Registered jobs not yet settled: running, waiting for a permit,
    /// sleeping before a retry, or not started yet.
    pub(super) jobs: HashMap<u64, PendingJob>,
    /// Entries waiting to be sent to the dead letter (cancelled, dropped or
    /// refused work), oldest first.
    pub(super) orphans: VecDeque<DeadLetterEntry>,
    /// Entries being sent to the dead letter right now.
    pub(super) sending: usize,
}

impl Pending {
    /// Everything held: the bound on pending work applies to this.
    pub(super) fn held(&self) -> usize {
        self.jobs.len() + self.orphans.len() + self.sending
    }

    /// Nothing left for shutdown to wait for (orphans it sends itself).
    pub(super) fn settled(&self) -> bool {
        self.jobs.is_empty() && self.sending == 0
    }

    /// The oldest orphan, counted as being sent from now on.
    pub(super) fn take_orphan(&mut self) -> Option<DeadLetterEntry> {
        let entry = self.orphans.pop_front()?;
        self.sending += 1;
        Some(entry)
    }

    /// Takes a job out of the table, its waker into `released` (to be dropped
    /// once the lock is released).
    pub(super) fn remove(&mut self, id: u64, released: &mut Vec<Waker>) -> Option<PendingJob> {
        let mut job = self.jobs.remove(&id)?;
        released.extend(job.waker.take());
        Some(job)
    }

    /// Takes every job `which` selects out of the table and queues its entry
    /// for the dead letter with reason [`DeadLetterReason::ShutDown`].
    fn shut_down(&mut self, which: impl Fn(&PendingJob) -> bool, released: &mut Vec<Waker>) {
        let ids: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, job)| which(job))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(job) = self.remove(id, released) {
                self.orphans
                    .push_back(job.into_entry(DeadLetterReason::ShutDown));
            }
        }
    }

    /// Queues an entry for the dead letter; whether a background flush must
    /// send it (no shutdown is sending the orphans itself).
    #[must_use]
    pub(super) fn push_orphan(&mut self, entry: DeadLetterEntry) -> bool {
        self.orphans.push_back(entry);
        self.shutdowns == 0
    }
}

/// One job in the table.
pub(super) struct PendingJob {
    event: Event,
    handler: Arc<str>,
    /// Attempts started, the running one included.
    attempts: u32,
    last_error: Option<Arc<HandlerError>>,
    /// Its future has been polled at least once.
    started: bool,
    /// Its future is being polled right now: only it may settle the job.
    polling: bool,
    /// Wakes the task polling the job, so it sees a cancellation.
    waker: Option<Waker>,
    /// The journal record its end updates, when there is a journal.
    journal: Option<JournalTag>,
}

impl PendingJob {
    pub(super) fn new(event: Event, handler: Arc<str>, journal: Option<JournalTag>) -> Self {
        Self {
            event,
            handler,
            attempts: 0,
            last_error: None,
            started: false,
            polling: false,
            waker: None,
            journal,
        }
    }

    /// Records the job's end in the metrics and the journal, if any.
    fn journal(&self, state: BestEffortState) {
        observe::best_effort_ended(&self.handler, state == BestEffortState::Succeeded);
        if let Some(tag) = &self.journal {
            tag.settled(&self.handler, self.attempts, state);
        }
    }

    /// The job's dead-letter entry; its journal record says so.
    pub(super) fn into_entry(self, reason: DeadLetterReason) -> DeadLetterEntry {
        self.journal(BestEffortState::DeadLettered);
        DeadLetterEntry::new(
            self.event,
            self.handler,
            self.attempts,
            reason,
            self.last_error,
        )
    }
}

/// What a job's future may do when it is polled.
pub(super) enum Enter {
    /// Poll the handler's future.
    Run,
    /// Shutdown cancelled the work: drop the handler's future, then settle
    /// with [`Settled::Cancelled`].
    Cancelled,
    /// Someone else settled the job (shutdown, while the future was not
    /// being polled): stop without touching the handler's future.
    Settled,
}

/// How a job's attempts ended, as its own future saw it.
pub(super) enum Settled {
    Succeeded,
    Failed(DeadLetterReason),
    /// Shutdown cancelled the work before the next attempt or during one.
    Cancelled,
}

/// What a job's future still has to do once it settled.
pub(super) enum Settlement {
    Succeeded,
    /// Handed to shutdown (or a background flush) for the dead letter.
    Abandoned,
    /// Send this entry to the dead letter.
    Send(Outgoing),
}

impl BestEffortRunner {
    /// A job's future is about to poll its handler's future: marks it as
    /// being polled (so nobody else settles it meanwhile) and keeps its waker.
    pub(super) fn enter(&self, id: u64, waker: &Waker) -> Enter {
        let mut replaced = None;
        let mut pending = self.pending();
        let cancelled = pending.cancelled;
        let Some(job) = pending.jobs.get_mut(&id) else {
            return Enter::Settled;
        };
        job.started = true;
        job.polling = true;
        if cancelled {
            return Enter::Cancelled;
        }
        if !job.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            replaced = job.waker.replace(waker.clone());
        }
        drop(pending);
        drop(replaced);
        Enter::Run
    }

    /// The poll that [`enter`](Self::enter) began ended with the job pending.
    pub(super) fn leave(&self, id: u64) {
        if let Some(job) = self.pending().jobs.get_mut(&id) {
            job.polling = false;
        }
    }

    /// Records the start of an attempt; `false` (start nothing) once shutdown
    /// has cancelled pending work.
    pub(super) fn begin_attempt(&self, id: u64) -> bool {
        let mut pending = self.pending();
        if pending.cancelled {
            return false;
        }
        let Some(job) = pending.jobs.get_mut(&id) else {
            return false;
        };
        job.attempts = job.attempts.saturating_add(1);
        if job.attempts > 1 {
            Recorder::bump(&self.stats.best_effort_retries);
        }
        true
    }

    /// Keeps the error of a failed attempt for the dead-letter entry.
    pub(super) fn record_error(&self, id: u64, error: &Arc<HandlerError>) {
        if let Some(job) = self.pending().jobs.get_mut(&id) {
            job.last_error = Some(Arc::clone(error));
        }
    }

    /// The job's own future settles it (it is being polled, so the job is
    /// still in the table). A success is counted before the lock is released,
    /// so shutdown never sees a drained table with the count missing; a
    /// failure counts as being sent until its [`Outgoing`] ends.
    pub(super) fn settle(self: &Arc<Self>, id: u64, settled: Settled) -> Settlement {
        let mut released = Vec::new();
        let mut flush = false;
        let settlement = {
            let mut pending = self.pending();
            let Some(job) = pending.remove(id, &mut released) else {
                return Settlement::Abandoned;
            };
            let settlement = match settled {
                Settled::Succeeded => {
                    Recorder::bump(&self.stats.best_effort_succeeded);
                    self.stats.monitor.count(Count::BestEffortSucceeded, 1);
                    job.journal(BestEffortState::Succeeded);
                    Settlement::Succeeded
                }
                Settled::Failed(reason) => {
                    pending.sending += 1;
                    Settlement::Send(Outgoing::new(self, job.into_entry(reason)))
                }
                Settled::Cancelled => {
                    flush = pending.push_orphan(job.into_entry(DeadLetterReason::ShutDown));
                    Settlement::Abandoned
                }
            };
            if pending.settled() {
                self.drained.notify_waiters();
            }
            settlement
        };
        if flush {
            self.flush_soon();
        }
        settlement
    }

    /// A job's future was dropped unsettled: its work goes to the dead
    /// letter, reason [`DeadLetterReason::BestEffortDropped`]. Nothing to do
    /// if it was settled already.
    pub(super) fn orphan_job(self: &Arc<Self>, id: u64) {
        let mut released = Vec::new();
        let flush = {
            let mut pending = self.pending();
            let Some(job) = pending.remove(id, &mut released) else {
                return;
            };
            Recorder::bump(&self.stats.best_effort_dropped);
            let flush = pending.push_orphan(job.into_entry(DeadLetterReason::BestEffortDropped));
            if pending.settled() {
                self.drained.notify_waiters();
            }
            flush
        };
        if flush {
            self.flush_soon();
        }
    }

    /// Shutdown gives up waiting: no attempt starts from now on, new work is
    /// refused, jobs never polled are settled here (reason
    /// [`DeadLetterReason::ShutDown`], no attempt made), and every other job
    /// is woken to settle itself. Counts one more shutdown sending orphans.
    pub(super) fn cancel_all(&self) {
        let mut wakers = Vec::new();
        {
            let mut pending = self.pending();
            pending.cancelled = true;
            pending.shutdowns += 1;
            pending.shut_down(|job| !job.started, &mut wakers);
            if pending.settled() {
                self.drained.notify_waiters();
            }
            wakers.extend(pending.jobs.values_mut().filter_map(|job| job.waker.take()));
        }
        for waker in wakers {
            waker.wake();
        }
    }

    /// After the grace: settles every job whose future is not being polled
    /// (its task did not run within the grace, or will never run again), so
    /// its entry is not lost. Returns how many jobs are inside a poll of
    /// their handler and stay with their own task.
    pub(super) fn take_unresponsive(&self) -> usize {
        let mut released = Vec::new();
        let mut pending = self.pending();
        pending.shut_down(|job| !job.polling, &mut released);
        if pending.settled() {
            self.drained.notify_waiters();
        }
        pending.jobs.len()
    }
}
