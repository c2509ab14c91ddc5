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
//! ([`DeadLetterReason::Overflow`]), and the unfinished work of a `FollowUp`
//! that is dropped ([`DeadLetterReason::FollowUpDropped`]).

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
    /// The work was still pending when shutdown's deadline passed, or arrived
    /// after shutdown had given up.
    ShutDown,
    /// The pipeline already held its maximum of pending best-effort jobs
    /// ([`PipelineBuilder::max_pending_best_effort`](crate::PipelineBuilder::max_pending_best_effort)):
    /// the work was never started and went here at once.
    Overflow,
    /// The `FollowUp` holding the work was dropped (or the task running it
    /// aborted) before the work settled.
    FollowUpDropped,
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
/// Production services should send entries somewhere durable (a database table,
/// a queue): the pipeline's default is an in-process [`MemoryDeadLetter`], which
/// is lost when the process ends.
///
/// `send` returning `Ok` means the entry is stored: for a critical event the
/// pipeline then records it as done and answers 200. When `send` fails:
/// - for a critical event, the pipeline releases the key and answers 500
///   ([`OutcomeKind::PermanentFailure`](crate::OutcomeKind::PermanentFailure) with
///   `dead_lettered: false`), so the provider keeps the event: it retries, or
///   (GitHub) lists it as failed for redelivery;
/// - for best-effort work (the critical work already succeeded and was
///   answered), nobody else holds the entry: the failure is counted in
///   [`Stats::dead_letter_failures`](crate::Stats::dead_letter_failures) and in the
///   `FollowUpReport` / `ShutdownReport`, and the entry is dropped. A sink that
///   can refuse should therefore alert on its own refusals.
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

/// An in-memory, bounded [`DeadLetter`] for tests, examples and small services;
/// the pipeline's default (read it with
/// [`Pipeline::memory_dead_letter`](crate::Pipeline::memory_dead_letter)).
///
/// Clones share the same entries, so keep a clone to read what the pipeline
/// sent, and [`drain`](MemoryDeadLetter::drain) it regularly. When full it
/// refuses new entries rather than forgetting old ones: a critical permanent
/// failure is then answered 500 (the provider keeps the event) until you drain
/// it, and refused best-effort work is counted in
/// [`Stats::dead_letter_failures`](crate::Stats::dead_letter_failures).
/// Entries live only as long as the process: set a durable [`DeadLetter`] in
/// production.
///
/// It is bounded twice, since each entry keeps its event's body (up to 25 MiB
/// for GitHub): by a number of entries and by the bytes of their bodies (a body
/// shared by several entries counts once per entry).
#[derive(Clone)]
pub struct MemoryDeadLetter {
    held: Arc<Mutex<Held>>,
    capacity: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Held {
    entries: VecDeque<DeadLetterEntry>,
    bytes: usize,
}

/// [`MemoryDeadLetter`] is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the in-memory dead letter is full (at most {capacity} entries and {max_bytes} bytes of bodies): read and clear it with `MemoryDeadLetter::drain`")]
#[non_exhaustive]
pub struct DeadLetterFull {
    /// Its capacity in entries.
    pub capacity: usize,
    /// Its capacity in body bytes.
    pub max_bytes: usize,
}

impl Default for MemoryDeadLetter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDeadLetter {
    /// The default limit on the bytes of the bodies held: 256 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;

    /// A dead letter holding up to 10,000 entries and
    /// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) of bodies.
    pub fn new() -> Self {
        Self::with_capacity(10_000)
    }

    /// A dead letter holding up to `capacity` entries and
    /// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) of bodies.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_limits(capacity, Self::DEFAULT_MAX_BYTES)
    }

    /// A dead letter holding up to `capacity` entries whose bodies total at
    /// most `max_bytes`.
    pub fn with_limits(capacity: usize, max_bytes: usize) -> Self {
        Self {
            held: Arc::new(Mutex::new(Held::default())),
            capacity,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // The lock is never held across a panic-prone call; recover the data anyway.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the entries, oldest first.
    pub fn entries(&self) -> Vec<DeadLetterEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// Removes and returns every entry, oldest first, making room for new ones.
    pub fn drain(&self) -> Vec<DeadLetterEntry> {
        let mut held = self.lock();
        held.bytes = 0;
        held.entries.drain(..).collect()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// Bytes of the bodies held (a shared body counts once per entry).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[async_trait]
impl DeadLetter for MemoryDeadLetter {
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
        let mut held = self.lock();
        let size = entry.event.body().len();
        let bytes = held.bytes.saturating_add(size);
        if held.entries.len() >= self.capacity || bytes > self.max_bytes {
            return Err(DeadLetterError::new(DeadLetterFull {
                capacity: self.capacity,
                max_bytes: self.max_bytes,
            }));
        }
        held.bytes = bytes;
        held.entries.push_back(entry);
        Ok(())
    }
}

impl fmt::Debug for MemoryDeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.lock();
        f.debug_struct("MemoryDeadLetter")
            .field("len", &held.entries.len())
            .field("capacity", &self.capacity)
            .field("bytes", &held.bytes)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

#[cfg(feature = "tokio")]
mod runner {
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
    /// aborted [`FollowUp`], a cancelled task), handing its work to the dead letter.
    struct JobGuard {
        shared: Arc<FollowUpShared>,
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
        shared: &'a Arc<FollowUpShared>,
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

    impl FollowUpShared {
        pub(crate) fn new(
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
        pub(crate) fn held(&self) -> usize {
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
        pub(crate) async fn follow_up(
            self: &Arc<Self>,
            event: &Event,
            handlers: Vec<NamedHandler>,
        ) -> FollowUp {
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
            FollowUp {
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
        /// it to the dead letter (reason [`DeadLetterReason::FollowUpDropped`]).
        fn orphan_job(self: &Arc<Self>, id: u64) {
            {
                let mut pending = self.pending();
                let Some(job) = pending.jobs.remove(&id) else {
                    return;
                };
                Recorder::bump(&self.stats.best_effort_dropped);
                pending
                    .orphans
                    .push_back(job.into_entry(DeadLetterReason::FollowUpDropped));
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
        /// dead-letters it (with the work still waiting to be dead-lettered) and
        /// hands it back.
        pub(crate) async fn shutdown(self: &Arc<Self>, deadline: Duration) -> ShutdownReport {
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

    impl std::fmt::Debug for FollowUpShared {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FollowUpShared")
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
    /// [`FollowUp::spawn`]. Its handlers run concurrently, each with its own
    /// retries. The work is registered with the pipeline as soon as the
    /// `FollowUp` exists, and counts towards
    /// [`PipelineBuilder::max_pending_best_effort`](crate::PipelineBuilder::max_pending_best_effort).
    ///
    /// **Dropping it (or aborting the task that runs it) before it finished**
    /// hands its unfinished work to the dead letter at once, reason
    /// [`DeadLetterReason::FollowUpDropped`], with the attempts made so far and
    /// the last error; it no longer counts as pending, so
    /// [`Pipeline::shutdown`](crate::Pipeline::shutdown) does not wait for it. (If
    /// it is dropped outside a tokio runtime, the entries are sent by the next
    /// follow-up that needs the dead letter, or by `shutdown`.)
    ///
    /// Work the pipeline could not register — it already held its maximum of
    /// pending jobs ([`DeadLetterReason::Overflow`]) or shutdown had given up
    /// ([`DeadLetterReason::ShutDown`]) — went to the dead letter when the
    /// `FollowUp` was made and is counted in [`FollowUpReport::refused`].
    #[must_use = "best-effort work only runs when the FollowUp is awaited or spawned; dropping it dead-letters the work"]
    pub struct FollowUp {
        count: usize,
        refused: usize,
        jobs: Vec<BoxFuture<'static, End>>,
        running: Option<JoinAll<BoxFuture<'static, End>>>,
    }

    /// What a [`FollowUp`] did.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct FollowUpReport {
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

    impl FollowUp {
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

    impl Future for FollowUp {
        type Output = FollowUpReport;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FollowUpReport> {
            let this = &mut *self;
            let refused = this.refused;
            let running = this
                .running
                .get_or_insert_with(|| future::join_all(std::mem::take(&mut this.jobs)));
            Pin::new(running).poll(cx).map(|ends| {
                let mut report = FollowUpReport {
                    refused,
                    ..FollowUpReport::default()
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

    impl std::fmt::Debug for FollowUp {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FollowUp")
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
        /// dead-lettered then (e.g. from a `FollowUp` dropped outside a runtime),
        /// with its own reason: all sent to the dead letter by `shutdown` and
        /// handed back here.
        pub abandoned: Vec<DeadLetterEntry>,
        /// How many of the abandoned entries the dead letter refused (they exist
        /// only in `abandoned`).
        pub dead_letter_failures: usize,
        /// When the pipeline's dead letter is a [`MemoryDeadLetter`](super::MemoryDeadLetter)
        /// (the default), a copy of every entry it holds after the abandoned
        /// work was added: they end with the process unless you store them.
        /// Empty for any other dead letter.
        pub memory_dead_letter: Vec<DeadLetterEntry>,
    }
}
