//! Best-effort work: what runs after the critical work succeeded.
//!
//! Each best-effort handler of an event runs independently of the others, in
//! parallel, under a [`RetryPolicy`] (exponential backoff with jitter, a maximum
//! number of attempts, a timeout per attempt) and a bound on how many run at
//! once. A panic is caught and counts as a failed attempt. Work that cannot
//! succeed — retries exhausted, a [`HandlerError::Permanent`](crate::HandlerError::Permanent),
//! or still pending when [`Pipeline::shutdown`](crate::Pipeline::shutdown)
//! gives up — goes to the [`DeadLetter`], so nothing is dropped silently. So
//! does work the pipeline cannot take because too much is already pending
//! ([`DeadLetterReason::Overflow`]), and the unfinished work of a [`BestEffort`]
//! that is dropped ([`DeadLetterReason::BestEffortDropped`]).
//!
//! # One terminal state per job
//! The work of one handler for one event is a *job*. Every job ends exactly
//! once: it succeeds, or its entry goes to the dead letter (or is refused by
//! it). The pending table (`table.rs`) decides who settles a job:
//! - the job's own task, whenever it is being polled: it settles success,
//!   failure, and cancellation by shutdown (it drops its handler's future
//!   first, and counts the attempt it cut short);
//! - shutdown, only for a job whose future is not being polled: never polled
//!   at all, or not polled again within a grace after being cancelled;
//! - the drop guard of a job whose future is dropped unsettled.
//!
//! A job's future checks the table before it polls its handler, so a job
//! settled by someone else never runs its handler again. An attempt starts
//! only after the table recorded it, and never once shutdown has cancelled
//! the pending work.
//!
//! Files: `work.rs` (the public [`BestEffort`] future), `job.rs` (one job's
//! future and its attempts), `table.rs` (the pending table and its
//! transitions), `outgoing.rs` (entries on their way to the dead letter),
//! `shutdown.rs` (cancelling and handing back).

mod job;
mod outgoing;
mod shutdown;
mod table;
mod work;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, Semaphore};

pub use shutdown::ShutdownReport;
pub use work::{BestEffort, BestEffortReport};

use super::journaling::JournalTag;
use super::observe;
use super::recorder::Recorder;
use crate::dead_letter::{DeadLetter, DeadLetterReason};
use crate::event::Event;
use crate::registry::NamedHandler;
use crate::retry::RetryPolicy;
use job::Job;
use outgoing::Outgoing;
use table::{Pending, PendingJob};

/// State shared by every best-effort job of one pipeline.
pub(super) struct BestEffortRunner {
    policy: RetryPolicy,
    dead_letter: Arc<dyn DeadLetter>,
    permits: Semaphore,
    max_pending: usize,
    stats: Arc<Recorder>,
    pending: Mutex<Pending>,
    /// Notified whenever the table may have become settled.
    drained: Notify,
    rng: AtomicU64,
}

impl BestEffortRunner {
    pub(super) fn new(
        policy: RetryPolicy,
        dead_letter: Arc<dyn DeadLetter>,
        max_concurrent: usize,
        max_pending: usize,
        stats: Arc<Recorder>,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Self {
            policy,
            dead_letter,
            permits: Semaphore::new(max_concurrent.min(Semaphore::MAX_PERMITS)),
            max_pending,
            stats,
            pending: Mutex::new(Pending::default()),
            drained: Notify::new(),
            rng: AtomicU64::new(seed),
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // No code panics while holding this lock; recover the data anyway.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Jobs registered and not settled, plus entries not yet handed to the
    /// dead letter.
    pub(super) fn held(&self) -> usize {
        self.pending().held()
    }

    /// A uniform number in [0, 1) (splitmix64; jitter needs no cryptographic quality).
    fn unit(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Registers the best-effort work of `event` and returns it, not yet
    /// started. Work that cannot be registered — the pipeline already holds
    /// `max_pending` jobs, or shutdown has cancelled pending work — is sent
    /// to the dead letter at once instead: from a task, or, when `max_pending`
    /// entries already wait for the dead letter, right here (the caller waits:
    /// back-pressure rather than unbounded memory).
    pub(super) async fn register(
        self: &Arc<Self>,
        event: &Event,
        handlers: Vec<NamedHandler>,
        journal: Option<JournalTag>,
    ) -> BestEffort {
        let count = handlers.len();
        // Each job ends once, succeeded or dead-lettered (refused ones too).
        observe::best_effort_registered(count);
        let mut jobs = Vec::with_capacity(count);
        let mut refused = 0;
        let mut inline = Vec::new();
        let flush = {
            let mut pending = self.pending();
            for handler in handlers {
                let job = PendingJob::new(event.clone(), handler.shared_name(), journal.clone());
                let reason = if pending.cancelled {
                    DeadLetterReason::ShutDown
                } else if pending.jobs.len() >= self.max_pending {
                    Recorder::bump(&self.stats.best_effort_overflow);
                    DeadLetterReason::Overflow
                } else {
                    let id = pending.next_id;
                    pending.next_id += 1;
                    pending.jobs.insert(id, job);
                    jobs.push(Job::new(self, id, event.clone(), handler));
                    continue;
                };
                let entry = job.into_entry(reason);
                if pending.orphans.len() + pending.sending < self.max_pending {
                    pending.orphans.push_back(entry);
                } else {
                    pending.sending += 1;
                    inline.push(entry);
                }
                refused += 1;
            }
            // The refused work just queued, and entries of work dropped
            // outside a runtime; a shutdown sends them itself.
            !pending.orphans.is_empty() && pending.shutdowns == 0
        };
        // Wrapped before the first await: if this future is dropped, the
        // entries not yet sent go back to the orphans.
        let inline: Vec<Outgoing> = inline
            .into_iter()
            .map(|entry| Outgoing::new(self, entry))
            .collect();
        for outgoing in inline {
            outgoing.send().await;
        }
        if flush {
            self.flush_soon();
        }
        BestEffort::new(count, refused, jobs)
    }
}

impl std::fmt::Debug for BestEffortRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BestEffortRunner")
            .field("policy", &self.policy)
            .field("max_pending", &self.max_pending)
            .field("held", &self.held())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::MemoryDeadLetter;

    fn runner() -> BestEffortRunner {
        let dead_letter = Arc::new(MemoryDeadLetter::new());
        BestEffortRunner::new(RetryPolicy::default(), dead_letter, 1, 1, Arc::default())
    }

    #[test]
    fn jitter_draws_are_splitmix64_scaled_to_the_unit_interval() {
        let runner = runner();
        runner.rng.store(0, Ordering::Relaxed);
        // SplitMix64's published outputs for seed 0 (Vigna's reference code).
        for expected in [
            0xE220_A839_7B1D_CDAF_u64,
            0x6E78_9E6A_A1B9_65F4,
            0x06C4_5D18_8009_454F,
        ] {
            let unit = runner.unit();
            assert_eq!(unit, (expected >> 11) as f64 / (1u64 << 53) as f64);
        }
        let draws: Vec<f64> = (0..10_000).map(|_| runner.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let low = draws.iter().filter(|&&u| u < 0.5).count();
        assert!((4_700..5_300).contains(&low), "{low}");
    }
}
