//! Best-effort work: what runs after the critical work succeeded.
//!
//! Each best-effort handler of an event runs independently of the others, in
//! parallel, under a [`RetryPolicy`] (exponential backoff with jitter, a maximum
//! number of attempts, a timeout per attempt) and a bound on how many run at
//! once. A panic is caught and counts as a failed attempt. Work that cannot
//! succeed — retries exhausted, a [`HandlerError::Permanent`], or still pending
//! when [`Pipeline::shutdown`](crate::Pipeline::shutdown) gives up — goes to the
//! [`DeadLetter`], so nothing is dropped silently. So does work the pipeline
//! cannot take because too much is already pending
//! ([`DeadLetterReason::Overflow`]), and the unfinished work of a [`BestEffort`]
//! that is dropped ([`DeadLetterReason::BestEffortDropped`]).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{self, BoxFuture, Either, JoinAll};
use futures_util::FutureExt;
use tokio::sync::{watch, Notify, Semaphore};

use super::recorder::Recorder;
use crate::dead_letter::{DeadLetter, DeadLetterEntry, DeadLetterReason};
use crate::event::Event;
use crate::handler::{HandlerError, HandlerPanicked, HandlerTimedOut};
use crate::registry::NamedHandler;
use crate::retry::RetryPolicy;

/// State shared by every best-effort job of one pipeline.
pub(super) struct BestEffortRunner {
    policy: RetryPolicy,
    dead_letter: Arc<dyn DeadLetter>,
    permits: Semaphore,
    max_pending: usize,
    stats: Arc<Recorder>,
    pending: Mutex<Pending>,
    drained: Notify,
    cancel: watch::Sender<bool>,
    rng: AtomicU64,
}

#[derive(Default)]
struct Pending {
    next_id: u64,
    cancelled: bool,
    /// Registered jobs not yet settled: running, waiting for a permit,
    /// sleeping before a retry, or not started yet.
    jobs: HashMap<u64, PendingJob>,
    /// Entries waiting to be sent to the dead letter (work of dropped
    /// follow-ups, refused work), oldest first.
    orphans: VecDeque<DeadLetterEntry>,
    /// Entries being sent to the dead letter right now.
    sending: usize,
}

impl Pending {
    /// Everything held: the bound on pending work applies to this.
    fn held(&self) -> usize {
        self.jobs.len() + self.orphans.len() + self.sending
    }

    /// Nothing left for shutdown to wait for (orphans it sends itself).
    fn settled(&self) -> bool {
        self.jobs.is_empty() && self.sending == 0
    }
}

struct PendingJob {
    event: Event,
    handler: Arc<str>,
    attempts: u32,
    last_error: Option<Arc<HandlerError>>,
}

impl PendingJob {
    fn into_entry(self, reason: DeadLetterReason) -> DeadLetterEntry {
        DeadLetterEntry::new(
            self.event,
            self.handler,
            self.attempts,
            reason,
            self.last_error,
        )
    }
}

/// How one job ended.
enum End {
    Succeeded,
    DeadLettered,
    DeadLetterRefused,
    Abandoned,
}

/// Unregisters a job whose future is dropped before it settled (a dropped or
/// aborted [`BestEffort`], a cancelled task), handing its work to the dead letter.
struct JobGuard {
    shared: Arc<BestEffortRunner>,
    id: u64,
    armed: bool,
}

impl JobGuard {
    /// The job settled: it left the pending table (or shutdown took it).
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.orphan_job(self.id);
        }
    }
}

/// An entry on its way to the dead letter, counted in `Pending::sending`. If
/// the future sending it is dropped mid-send, the entry goes back to the
/// orphans instead of vanishing.
struct Outgoing<'a> {
    shared: &'a Arc<BestEffortRunner>,
    entry: Option<DeadLetterEntry>,
}

impl Outgoing<'_> {
    /// Sends the entry; whether the dead letter took it.
    async fn send(mut self) -> bool {
        let Some(entry) = self.entry.clone() else {
            return false;
        };
        let sent = self.shared.dead_letter_send(entry).await;
        self.entry = None;
        sent
    }
}

impl Drop for Outgoing<'_> {
    fn drop(&mut self) {
        let orphaned = {
            let mut pending = self.shared.pending();
            pending.sending -= 1;
            let orphaned = self
                .entry
                .take()
                .map(|entry| pending.orphans.push_back(entry));
            if pending.settled() {
                self.shared.drained.notify_waiters();
            }
            orphaned.is_some()
        };
        if orphaned {
            self.shared.flush_soon();
        }
    }
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
            cancel: watch::channel(false).0,
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
    ) -> BestEffort {
        let count = handlers.len();
        let mut jobs = Vec::with_capacity(count);
        let mut refused = 0;
        let mut inline = Vec::new();
        {
            let mut pending = self.pending();
            for handler in handlers {
                let job = PendingJob {
                    event: event.clone(),
                    handler: handler.shared_name(),
                    attempts: 0,
                    last_error: None,
                };
                let reason = if pending.cancelled {
                    DeadLetterReason::ShutDown
                } else if pending.jobs.len() >= self.max_pending {
                    Recorder::bump(&self.stats.best_effort_overflow);
                    DeadLetterReason::Overflow
                } else {
                    let id = pending.next_id;
                    pending.next_id += 1;
                    pending.jobs.insert(id, job);
                    jobs.push(self.job(id, event.clone(), handler));
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
        }
        // Wrapped before the first await: if this future is dropped, the
        // entries not yet sent go back to the orphans.
        let inline: Vec<Outgoing<'_>> = inline
            .into_iter()
            .map(|entry| Outgoing {
                shared: self,
                entry: Some(entry),
            })
            .collect();
        for outgoing in inline {
            outgoing.send().await;
        }
        // Also picks up entries of follow-ups dropped outside a runtime.
        if refused > 0 || !self.pending().orphans.is_empty() {
            self.flush_soon();
        }
        BestEffort {
            count,
            refused,
            jobs,
            running: None,
        }
    }

    fn job(
        self: &Arc<Self>,
        id: u64,
        event: Event,
        handler: NamedHandler,
    ) -> BoxFuture<'static, End> {
        let guard = JobGuard {
            shared: Arc::clone(self),
            id,
            armed: true,
        };
        async move {
            let mut guard = guard;
            let shared = Arc::clone(&guard.shared);
            let end = shared.run(id, event, handler).await;
            guard.disarm();
            end
        }
        .boxed()
    }

    /// Moves an unsettled job from the pending table to the orphans and sends
    /// it to the dead letter (reason [`DeadLetterReason::BestEffortDropped`]).
    fn orphan_job(self: &Arc<Self>, id: u64) {
        {
            let mut pending = self.pending();
            let Some(job) = pending.jobs.remove(&id) else {
                return;
            };
            Recorder::bump(&self.stats.best_effort_dropped);
            pending
                .orphans
                .push_back(job.into_entry(DeadLetterReason::BestEffortDropped));
            if pending.settled() {
                self.drained.notify_waiters();
            }
        }
        self.flush_soon();
    }

    /// Sends the orphans to the dead letter from a new task, when there is a
    /// runtime to run it; otherwise they wait for the next flush or shutdown.
    fn flush_soon(self: &Arc<Self>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = Arc::clone(self);
            // The task takes entries only once it runs: if the runtime drops it
            // unpolled, they stay with the orphans.
            drop(runtime.spawn(async move { shared.flush(&mut Vec::new()).await }));
        }
    }

    /// Sends every orphan to the dead letter, listing them in `sent`; the
    /// number the dead letter refused.
    async fn flush(self: &Arc<Self>, sent: &mut Vec<DeadLetterEntry>) -> usize {
        let mut refused = 0;
        loop {
            let entry = {
                let mut pending = self.pending();
                let Some(entry) = pending.orphans.pop_front() else {
                    return refused;
                };
                pending.sending += 1;
                entry
            };
            sent.push(entry.clone());
            let outgoing = Outgoing {
                shared: self,
                entry: Some(entry),
            };
            if !outgoing.send().await {
                refused += 1;
            }
        }
    }

    /// Takes a settled job out of the pending table; `None` if shutdown took
    /// it first. A success is counted before the lock is released (so shutdown
    /// never sees a drained table with the count missing); a failure counts as
    /// being sent until its [`Outgoing`] ends.
    fn take(&self, id: u64, succeeded: bool) -> Option<PendingJob> {
        let mut pending = self.pending();
        let job = pending.jobs.remove(&id);
        if job.is_some() {
            if succeeded {
                Recorder::bump(&self.stats.best_effort_succeeded);
            } else {
                pending.sending += 1;
            }
        }
        if pending.settled() {
            self.drained.notify_waiters();
        }
        job
    }

    fn record_attempt(&self, id: u64, attempts: u32, error: &Arc<HandlerError>) {
        if let Some(job) = self.pending().jobs.get_mut(&id) {
            job.attempts = attempts;
            job.last_error = Some(Arc::clone(error));
        }
    }

    async fn dead_letter_send(&self, entry: DeadLetterEntry) -> bool {
        match self.dead_letter.send(entry).await {
            Ok(()) => {
                Recorder::bump(&self.stats.best_effort_dead_lettered);
                true
            }
            Err(_) => {
                Recorder::bump(&self.stats.dead_letter_failures);
                false
            }
        }
    }

    async fn run(self: &Arc<Self>, id: u64, event: Event, handler: NamedHandler) -> End {
        let mut cancel = self.cancel.subscribe();
        let attempts = pin!(self.attempts(id, &event, &handler));
        let cancelled = pin!(async move {
            // An error means the sender is gone with the pipeline: never cancelled.
            if cancel.wait_for(|c| *c).await.is_err() {
                future::pending::<()>().await;
            }
        });
        let settled = match future::select(attempts, cancelled).await {
            Either::Left((settled, _)) => settled,
            // Shutdown hands the pending entry back and dead-letters it.
            Either::Right(_) => return End::Abandoned,
        };
        let reason = match settled {
            Settled::Succeeded => {
                return match self.take(id, true) {
                    Some(_) => End::Succeeded,
                    None => End::Abandoned,
                };
            }
            Settled::Failed(reason) => reason,
        };
        let Some(job) = self.take(id, false) else {
            return End::Abandoned;
        };
        let outgoing = Outgoing {
            shared: self,
            entry: Some(job.into_entry(reason)),
        };
        if outgoing.send().await {
            End::DeadLettered
        } else {
            End::DeadLetterRefused
        }
    }

    async fn attempts(&self, id: u64, event: &Event, handler: &NamedHandler) -> Settled {
        let policy = self.policy;
        let max = policy.max_attempts.max(1);
        for attempt in 1..=max {
            let result = {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = self.permits.acquire().await;
                let run = AssertUnwindSafe(async { handler.handler().handle(event).await })
                    .catch_unwind();
                tokio::time::timeout(policy.attempt_timeout, run).await
            };
            let error = match result {
                Ok(Ok(Ok(()))) => return Settled::Succeeded,
                Ok(Ok(Err(err))) => err,
                Ok(Err(panic)) => HandlerError::transient(HandlerPanicked::from_payload(&*panic)),
                Err(_) => HandlerError::transient(HandlerTimedOut {
                    after: policy.attempt_timeout,
                }),
            };
            let permanent = !error.is_transient();
            self.record_attempt(id, attempt, &Arc::new(error));
            if permanent {
                return Settled::Failed(DeadLetterReason::Permanent);
            }
            if attempt < max {
                Recorder::bump(&self.stats.best_effort_retries);
                tokio::time::sleep(jittered(&policy, attempt, self.unit())).await;
            }
        }
        Settled::Failed(DeadLetterReason::RetriesExhausted)
    }

    /// Waits up to `deadline` for every pending job; then cancels what is left,
    /// dead-letters it (with the work still waiting to be dead-lettered) and
    /// hands it back.
    pub(super) async fn shutdown(self: &Arc<Self>, deadline: Duration) -> ShutdownReport {
        let drained = tokio::time::timeout(deadline, async {
            loop {
                let mut notified = pin!(self.drained.notified());
                notified.as_mut().enable();
                if self.pending().settled() {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok();
        {
            let mut pending = self.pending();
            pending.cancelled = true;
            let abandoned: Vec<PendingJob> = pending.jobs.drain().map(|(_, job)| job).collect();
            for job in abandoned {
                pending
                    .orphans
                    .push_back(job.into_entry(DeadLetterReason::ShutDown));
            }
        }
        self.cancel.send_replace(true);
        let mut abandoned = Vec::new();
        let dead_letter_failures = self.flush(&mut abandoned).await;
        ShutdownReport {
            drained,
            abandoned,
            dead_letter_failures,
            memory_dead_letter: Vec::new(),
        }
    }
}

enum Settled {
    Succeeded,
    Failed(DeadLetterReason),
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

/// The best-effort work of one delivery, for hosts that run it themselves
/// (see [`Pipeline::handle_deferred`](crate::Pipeline::handle_deferred)).
///
/// Await it, spawn it on any executor that provides a tokio timer, or call
/// [`BestEffort::spawn`]. Its handlers run concurrently, each with its own
/// retries. The work is registered with the pipeline as soon as the
/// `BestEffort` exists, and counts towards
/// [`PipelineBuilder::max_pending_best_effort`](crate::PipelineBuilder::max_pending_best_effort).
///
/// **Dropping it (or aborting the task that runs it) before it finished**
/// hands its unfinished work to the dead letter at once, reason
/// [`DeadLetterReason::BestEffortDropped`], with the attempts made so far and
/// the last error; it no longer counts as pending, so
/// [`Pipeline::shutdown`](crate::Pipeline::shutdown) does not wait for it. (If
/// it is dropped outside a tokio runtime, the entries are sent by the next
/// follow-up that needs the dead letter, or by `shutdown`.)
///
/// Work the pipeline could not register — it already held its maximum of
/// pending jobs ([`DeadLetterReason::Overflow`]) or shutdown had given up
/// ([`DeadLetterReason::ShutDown`]) — went to the dead letter when the
/// `BestEffort` was made and is counted in [`BestEffortReport::refused`].
#[must_use = "best-effort work only runs when the BestEffort is awaited or spawned; dropping it dead-letters the work"]
pub struct BestEffort {
    count: usize,
    refused: usize,
    jobs: Vec<BoxFuture<'static, End>>,
    running: Option<JoinAll<BoxFuture<'static, End>>>,
}

/// What a [`BestEffort`] did.
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
    /// Handlers cancelled by shutdown (handed back by it).
    pub abandoned: usize,
    /// Handlers never run because the pipeline could not take the work (too
    /// much pending work, or shutting down): sent to the dead letter at once.
    pub refused: usize,
}

impl BestEffort {
    /// Number of best-effort handlers in this follow-up, refused ones included.
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

/// What [`Pipeline::shutdown`](crate::Pipeline::shutdown) left undone.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Every pending job finished before the deadline.
    pub drained: bool,
    /// Work still pending at the deadline — cancelled, reason
    /// [`DeadLetterReason::ShutDown`] — and work still waiting to be
    /// dead-lettered then (e.g. from a `BestEffort` dropped outside a runtime),
    /// with its own reason: all sent to the dead letter by `shutdown` and
    /// handed back here.
    pub abandoned: Vec<DeadLetterEntry>,
    /// How many of the abandoned entries the dead letter refused (they exist
    /// only in `abandoned`).
    pub dead_letter_failures: usize,
    /// When the pipeline's dead letter is a [`MemoryDeadLetter`](crate::MemoryDeadLetter)
    /// (the default), a copy of every entry it holds after the abandoned
    /// work was added: they end with the process unless you store them.
    /// Empty for any other dead letter.
    pub memory_dead_letter: Vec<DeadLetterEntry>,
}

/// The jittered delay before retry number `retry`, `unit` being uniform in `[0, 1)`.
fn jittered(policy: &RetryPolicy, retry: u32, unit: f64) -> Duration {
    let (low, high) = policy.delay_bounds(retry);
    low + (high - low).mul_f64(unit.clamp(0.0, 1.0))
}
