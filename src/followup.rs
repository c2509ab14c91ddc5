//! Best-effort work: what runs after the critical work succeeded.
//!
//! Each best-effort handler of an event runs independently of the others, in
//! parallel, under a [`RetryPolicy`] (exponential backoff with jitter, a maximum
//! number of attempts, a timeout per attempt) and a bound on how many run at
//! once. A panic is caught and counts as a failed attempt. Work that cannot
//! succeed — retries exhausted, a [`HandlerError::Permanent`], or still pending
//! when [`Pipeline::shutdown`](crate::Pipeline::shutdown) gives up — goes to the
//! [`DeadLetter`], so nothing is dropped silently.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::event::Event;
use crate::handler::{BoxError, HandlerError};

#[cfg(feature = "tokio")]
pub(crate) use runner::FollowUpShared;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use runner::{FollowUp, FollowUpReport, ShutdownReport};

/// How best-effort work is retried.
///
/// The default makes 4 attempts: the first, then 3 retries about 2 s, 4 s and 8 s
/// later (±20 % jitter), each attempt cut off after 30 s.
///
/// ```
/// use hookgate::RetryPolicy;
/// use std::time::Duration;
/// let policy = RetryPolicy::default()
///     .with_max_attempts(5)
///     .with_initial_backoff(Duration::from_millis(100))
///     .with_attempt_timeout(Duration::from_secs(5));
/// assert_eq!(policy.nominal_delay(1), Duration::from_millis(100));
/// assert_eq!(policy.nominal_delay(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1). Default: 4.
    pub max_attempts: u32,
    /// Delay before the first retry. Default: 2 s.
    pub initial_backoff: Duration,
    /// Factor applied to the delay after each retry. Default: 2.0.
    pub multiplier: f64,
    /// Largest delay between two attempts. Default: 5 min.
    pub max_backoff: Duration,
    /// Each delay is spread uniformly over ±`jitter` of its nominal value
    /// (0.0 to 1.0), so many failing handlers do not retry in lockstep.
    /// Default: 0.2.
    pub jitter: f64,
    /// Time limit of one attempt; an attempt that passes it is cancelled and
    /// counts as a transient failure. Default: 30 s.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(300),
            jitter: 0.2,
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Sets the number of attempts, the first included (values below 1 mean 1).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the delay before the first retry.
    #[must_use]
    pub fn with_initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }

    /// Sets the growth factor of the delay (values below 1.0 mean 1.0).
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Sets the largest delay between two attempts.
    #[must_use]
    pub fn with_max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }

    /// Sets the jitter fraction (clamped to 0.0..=1.0).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Sets the time limit of one attempt.
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The delay before retry number `retry` (1 for the first retry) without
    /// jitter: `initial_backoff × multiplier^(retry-1)`, at most `max_backoff`.
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exponent);
        let secs = self.initial_backoff.as_secs_f64() * factor;
        let capped = secs.min(self.max_backoff.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.max_backoff)
    }

    /// The range the jittered delay before retry number `retry` falls in.
    pub fn delay_bounds(&self, retry: u32) -> (Duration, Duration) {
        let nominal = self.nominal_delay(retry).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let at = |secs: f64| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
        (at(nominal * (1.0 - jitter)), at(nominal * (1.0 + jitter)))
    }

    /// The jittered delay for `retry`, `unit` being uniform in `[0, 1)`.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // used by the pipeline
    pub(crate) fn delay(&self, retry: u32, unit: f64) -> Duration {
        let (low, high) = self.delay_bounds(retry);
        low + (high - low).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Why work ended in the dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// A best-effort handler failed on every attempt the policy allowed.
    RetriesExhausted,
    /// A best-effort handler returned [`HandlerError::Permanent`]; not retried.
    Permanent,
    /// A critical handler returned [`HandlerError::Permanent`] and the pipeline's
    /// policy acknowledges such events (200) after dead-lettering them.
    CriticalPermanent,
    /// The work was still pending when shutdown's deadline passed.
    ShutDown,
}

/// Work that could not be done, with everything needed to look into it or
/// replay it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetterEntry {
    /// The event (body included).
    pub event: Event,
    /// The name the handler was registered with.
    pub handler: Arc<str>,
    /// Attempts made (0 when shutdown came before the first one).
    pub attempts: u32,
    /// Why the work ended here.
    pub reason: DeadLetterReason,
    /// The last error, when an attempt was made.
    pub error: Option<Arc<HandlerError>>,
}

impl DeadLetterEntry {
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))] // used by the pipeline
    pub(crate) fn new(
        event: Event,
        handler: Arc<str>,
        attempts: u32,
        reason: DeadLetterReason,
        error: Option<Arc<HandlerError>>,
    ) -> Self {
        Self {
            event,
            handler,
            attempts,
            reason,
            error,
        }
    }

    /// The event's provider.
    pub fn provider(&self) -> &str {
        self.event.provider()
    }

    /// The event's deduplication id.
    pub fn event_id(&self) -> &str {
        self.event.id()
    }
}

/// A dead letter could not store an entry.
#[derive(Debug, thiserror::Error)]
#[error("the dead letter refused an entry: {0}")]
pub struct DeadLetterError(#[source] pub BoxError);

impl DeadLetterError {
    /// Wraps the sink's own error.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Self(err.into())
    }
}

/// Where work that could not be done goes: your table, queue or alerting.
///
/// When `send` fails for a critical event, the pipeline releases the key and
/// answers 500 so the provider retries; for best-effort work the failure is
/// counted in [`Stats::dead_letter_failures`](crate::Stats::dead_letter_failures).
#[async_trait]
pub trait DeadLetter: Send + Sync + fmt::Debug {
    /// Stores one entry.
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError>;
}

#[async_trait]
impl<D: DeadLetter + ?Sized> DeadLetter for Arc<D> {
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
        (**self).send(entry).await
    }
}

#[async_trait]
impl<D: DeadLetter + ?Sized> DeadLetter for Box<D> {
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
        (**self).send(entry).await
    }
}

/// An in-memory, bounded [`DeadLetter`] for tests, examples and small services.
///
/// Clones share the same entries, so keep a clone to read what the pipeline
/// sent. When full it refuses new entries (the pipeline then reports the
/// failure) rather than forgetting old ones.
#[derive(Clone)]
pub struct MemoryDeadLetter {
    entries: Arc<Mutex<VecDeque<DeadLetterEntry>>>,
    capacity: usize,
}

/// [`MemoryDeadLetter`] is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the in-memory dead letter is full ({capacity} entries): read and clear it with `take`")]
pub struct DeadLetterFull {
    /// Its capacity.
    pub capacity: usize,
}

impl Default for MemoryDeadLetter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDeadLetter {
    /// A dead letter holding up to 10,000 entries.
    pub fn new() -> Self {
        Self::with_capacity(10_000)
    }

    /// A dead letter holding up to `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Arc::new(Mutex::new(VecDeque::new())),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<DeadLetterEntry>> {
        // The lock is never held across a panic-prone call; recover the data anyway.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the entries, oldest first.
    pub fn entries(&self) -> Vec<DeadLetterEntry> {
        self.lock().iter().cloned().collect()
    }

    /// Removes and returns every entry, oldest first.
    pub fn take(&self) -> Vec<DeadLetterEntry> {
        self.lock().drain(..).collect()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[async_trait]
impl DeadLetter for MemoryDeadLetter {
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            return Err(DeadLetterError::new(DeadLetterFull {
                capacity: self.capacity,
            }));
        }
        entries.push_back(entry);
        Ok(())
    }
}

impl fmt::Debug for MemoryDeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDeadLetter")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(feature = "tokio")]
mod runner {
    use std::collections::HashMap;
    use std::future::Future;
    use std::panic::AssertUnwindSafe;
    use std::pin::{pin, Pin};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use futures_util::future::{self, BoxFuture, Either, JoinAll};
    use futures_util::FutureExt;
    use tokio::sync::{watch, Notify, Semaphore};

    use super::{DeadLetter, DeadLetterEntry, DeadLetterReason, RetryPolicy};
    use crate::event::Event;
    use crate::handler::{HandlerError, HandlerPanicked, HandlerTimedOut};
    use crate::registry::NamedHandler;
    use crate::stats::Recorder;

    /// State shared by every best-effort job of one pipeline.
    pub(crate) struct FollowUpShared {
        policy: RetryPolicy,
        dead_letter: Arc<dyn DeadLetter>,
        permits: Semaphore,
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
        jobs: HashMap<u64, PendingJob>,
    }

    struct PendingJob {
        event: Event,
        handler: Arc<str>,
        attempts: u32,
        last_error: Option<Arc<HandlerError>>,
    }

    /// How one job ended.
    enum End {
        Succeeded,
        DeadLettered,
        Abandoned,
    }

    impl FollowUpShared {
        pub(crate) fn new(
            policy: RetryPolicy,
            dead_letter: Arc<dyn DeadLetter>,
            max_concurrent: usize,
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
                stats,
                pending: Mutex::new(Pending::default()),
                drained: Notify::new(),
                cancel: watch::channel(false).0,
                rng: AtomicU64::new(seed),
            }
        }

        fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
            // No code panics while holding this lock; recover the data anyway.
            self.pending.lock().unwrap_or_else(PoisonError::into_inner)
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

        /// Registers the best-effort work of `event` and returns it, not yet started.
        pub(crate) fn follow_up(
            self: &Arc<Self>,
            event: &Event,
            handlers: Vec<NamedHandler>,
        ) -> FollowUp {
            let jobs = handlers
                .into_iter()
                .map(|handler| {
                    let id = self.register(event, &handler);
                    let shared = Arc::clone(self);
                    let event = event.clone();
                    async move {
                        match id {
                            Some(id) => shared.run(id, event, handler).await,
                            None => shared.refuse(event, handler).await,
                        }
                    }
                    .boxed()
                })
                .collect::<Vec<_>>();
            FollowUp {
                count: jobs.len(),
                jobs,
                running: None,
            }
        }

        /// Records a job as pending; `None` once shutdown has cancelled pending work.
        fn register(&self, event: &Event, handler: &NamedHandler) -> Option<u64> {
            let mut pending = self.pending();
            if pending.cancelled {
                return None;
            }
            let id = pending.next_id;
            pending.next_id += 1;
            pending.jobs.insert(
                id,
                PendingJob {
                    event: event.clone(),
                    handler: handler.shared_name(),
                    attempts: 0,
                    last_error: None,
                },
            );
            Some(id)
        }

        /// Takes a job out of the pending table; `None` if shutdown took it first.
        fn take(&self, id: u64) -> Option<PendingJob> {
            let mut pending = self.pending();
            let job = pending.jobs.remove(&id);
            if pending.jobs.is_empty() {
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

        async fn refuse(&self, event: Event, handler: NamedHandler) -> End {
            let entry = DeadLetterEntry::new(
                event,
                handler.shared_name(),
                0,
                DeadLetterReason::ShutDown,
                None,
            );
            self.dead_letter_send(entry).await;
            End::DeadLettered
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

        async fn run(&self, id: u64, event: Event, handler: NamedHandler) -> End {
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
            let Some(job) = self.take(id) else {
                return End::Abandoned;
            };
            match settled {
                Settled::Succeeded => {
                    Recorder::bump(&self.stats.best_effort_succeeded);
                    End::Succeeded
                }
                Settled::Failed(reason) => {
                    let entry = DeadLetterEntry::new(
                        job.event,
                        job.handler,
                        job.attempts,
                        reason,
                        job.last_error,
                    );
                    self.dead_letter_send(entry).await;
                    End::DeadLettered
                }
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
                    Ok(Err(panic)) => {
                        HandlerError::transient(HandlerPanicked::from_payload(&*panic))
                    }
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
                    tokio::time::sleep(policy.delay(attempt, self.unit())).await;
                }
            }
            Settled::Failed(DeadLetterReason::RetriesExhausted)
        }

        /// Waits up to `deadline` for every pending job; then cancels what is left,
        /// dead-letters it and hands it back.
        pub(crate) async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
            let drained = tokio::time::timeout(deadline, async {
                loop {
                    let mut notified = pin!(self.drained.notified());
                    notified.as_mut().enable();
                    if self.pending().jobs.is_empty() {
                        return;
                    }
                    notified.await;
                }
            })
            .await
            .is_ok();
            let abandoned: Vec<PendingJob> = {
                let mut pending = self.pending();
                pending.cancelled = true;
                pending.jobs.drain().map(|(_, job)| job).collect()
            };
            self.cancel.send_replace(true);
            let mut report = ShutdownReport {
                drained,
                abandoned: Vec::with_capacity(abandoned.len()),
                dead_letter_failures: 0,
            };
            for job in abandoned {
                let entry = DeadLetterEntry::new(
                    job.event,
                    job.handler,
                    job.attempts,
                    DeadLetterReason::ShutDown,
                    job.last_error,
                );
                if !self.dead_letter_send(entry.clone()).await {
                    report.dead_letter_failures += 1;
                }
                report.abandoned.push(entry);
            }
            report
        }
    }

    enum Settled {
        Succeeded,
        Failed(DeadLetterReason),
    }

    impl std::fmt::Debug for FollowUpShared {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FollowUpShared")
                .field("policy", &self.policy)
                .field("pending", &self.pending().jobs.len())
                .finish()
        }
    }

    /// The best-effort work of one delivery, for hosts that run it themselves
    /// (see [`Pipeline::handle_deferred`](crate::Pipeline::handle_deferred)).
    ///
    /// Await it, spawn it on any executor that provides a tokio timer, or call
    /// [`FollowUp::spawn`]. Its handlers run concurrently, each with its own
    /// retries. The work is registered with the pipeline as soon as the
    /// `FollowUp` exists: if it is dropped without being run, the work stays
    /// pending and [`Pipeline::shutdown`](crate::Pipeline::shutdown) hands it back
    /// and dead-letters it. A `FollowUp` created after shutdown gave up (its
    /// delivery's critical work was still running then) runs nothing: driving it
    /// sends its work to the dead letter.
    #[must_use = "best-effort work only runs when the FollowUp is awaited or spawned"]
    pub struct FollowUp {
        count: usize,
        jobs: Vec<BoxFuture<'static, End>>,
        running: Option<JoinAll<BoxFuture<'static, End>>>,
    }

    /// What a [`FollowUp`] did.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct FollowUpReport {
        /// Handlers that succeeded (possibly after retries).
        pub succeeded: usize,
        /// Handlers whose work went to the dead letter.
        pub dead_lettered: usize,
        /// Handlers cancelled by shutdown (handed back by it).
        pub abandoned: usize,
    }

    impl FollowUp {
        /// Number of best-effort handlers in this follow-up.
        pub fn len(&self) -> usize {
            self.count
        }

        /// Whether there is no best-effort work.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Spawns each handler's work as its own task on the current tokio runtime.
        ///
        /// # Panics
        /// Outside a tokio runtime, as `tokio::spawn` does.
        pub fn spawn(self) {
            for job in self.jobs {
                tokio::spawn(job);
            }
            if let Some(running) = self.running {
                tokio::spawn(running);
            }
        }
    }

    impl Future for FollowUp {
        type Output = FollowUpReport;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FollowUpReport> {
            let this = &mut *self;
            let running = this
                .running
                .get_or_insert_with(|| future::join_all(std::mem::take(&mut this.jobs)));
            Pin::new(running).poll(cx).map(|ends| {
                let mut report = FollowUpReport::default();
                for end in ends {
                    match end {
                        End::Succeeded => report.succeeded += 1,
                        End::DeadLettered => report.dead_lettered += 1,
                        End::Abandoned => report.abandoned += 1,
                    }
                }
                report
            })
        }
    }

    impl std::fmt::Debug for FollowUp {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FollowUp")
                .field("handlers", &self.len())
                .finish()
        }
    }

    /// What [`Pipeline::shutdown`](crate::Pipeline::shutdown) left undone.
    #[derive(Debug, Clone)]
    #[non_exhaustive]
    pub struct ShutdownReport {
        /// Every pending job finished before the deadline.
        pub drained: bool,
        /// Work still pending at the deadline: cancelled, sent to the dead letter
        /// (reason [`DeadLetterReason::ShutDown`]) and handed back here.
        pub abandoned: Vec<DeadLetterEntry>,
        /// How many of the abandoned entries the dead letter refused (they exist
        /// only in `abandoned`).
        pub dead_letter_failures: usize,
    }
}
