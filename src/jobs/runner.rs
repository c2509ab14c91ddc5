//! [`JobRunner`]: runs one received job once per job key, and says what the
//! broker should do with its message.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;

use super::message::JobMessage;
use crate::dead_letter::{DeadLetter, DeadLetterEntry, DeadLetterReason, MemoryDeadLetter};
use crate::handler::{HandlerError, HandlerPanicked, HandlerTimedOut};
use crate::registry::Registry;
use crate::retry::{RetryPolicy, RetryPolicyError};
use crate::store::{Claim, Fingerprint, IdempotencyStore, StoreError};

/// The broker-independent half of a worker: given a received [`JobMessage`]
/// and the attempt it is at, runs the job's best-effort handler at most once
/// per [job key](JobMessage::key) and answers a [`Verdict`] that says whether
/// to acknowledge the message or have it delivered again later.
/// `jobs::nats::NatsWorker` and `jobs::rabbitmq::RabbitWorker` are built on
/// it; use it to write a worker for another broker.
///
/// Each run claims the job's [store key](JobMessage::store_key) (`job:` and
/// the job key) in an [`IdempotencyStore`] (the same protocol
/// as critical work: a lease, a fencing token), so with a store shared by
/// every worker (PostgreSQL, Redis) a redelivered or duplicated message does
/// not run finished work again, on any worker, and two copies never run at
/// once:
/// - key completed: [`Verdict::AlreadyDone`], the handler is not run;
/// - key held by another worker: [`Verdict::Busy`] until its lease ends (a
///   crashed worker's lease ends, and the job runs again then);
/// - key acquired: the handler runs under the [`RetryPolicy`]'s
///   `attempt_timeout`, panics caught. Success completes the key
///   ([`Verdict::Succeeded`]); a transient failure releases it and asks for a
///   retry after the policy's backoff ([`Verdict::Retry`]); a permanent
///   failure, or the last attempt failing, sends a [`DeadLetterEntry`] to the
///   [`DeadLetter`] and then completes the key ([`Verdict::DeadLettered`]).
///
/// What is not covered: a worker that dies after its handler's effect but
/// before the key is completed leaves a lease that expires, and the job runs
/// again — handlers see at-least-once delivery in that window, as critical
/// handlers do between their `Ok` and `complete`.
///
/// ```
/// use hookgate::jobs::{JobMessage, JobRunner, Verdict};
/// use hookgate::{handler_fn, Event, HandlerError, Identity, MemoryStore, Registry};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::new();
/// registry.best_effort("stripe", "invoice.*", "email", handler_fn(|_| async { Ok::<(), HandlerError>(()) }));
/// let runner = JobRunner::builder(registry, MemoryStore::new()).build()?;
///
/// let event = Event::new("stripe", Identity::new("evt_1", "invoice.paid"), &b"{}"[..]);
/// let job = JobMessage::new(&event, "email", time::OffsetDateTime::now_utc());
/// assert_eq!(runner.run(&job, 1).await, Verdict::Succeeded);
/// // The broker delivers the message again: the handler does not run twice.
/// assert_eq!(runner.run(&job, 2).await, Verdict::AlreadyDone);
/// # Ok(()) }
/// ```
pub struct JobRunner {
    registry: Registry,
    store: Arc<dyn IdempotencyStore>,
    dead_letter: Arc<dyn DeadLetter>,
    policy: RetryPolicy,
    lease: Duration,
    retention: Duration,
    busy_delay: Duration,
    rng: AtomicU64,
    counts: Counts,
}

/// What to do with a job's message after [`JobRunner::run`].
///
/// A worker for your own broker settles each message by it:
///
/// ```
/// use hookgate::jobs::Verdict;
/// use std::time::Duration;
///
/// /// What a queue with acks and delayed redelivery would be told.
/// #[derive(Debug, PartialEq)]
/// enum Settle { Ack, RedeliverAt { attempt: u32, after: Duration } }
///
/// fn settle(verdict: Verdict, attempt: u32) -> Settle {
///     match verdict {
///         Verdict::Retry { after } => Settle::RedeliverAt { attempt: attempt + 1, after },
///         Verdict::Busy { after } => Settle::RedeliverAt { attempt, after },
///         // Succeeded, AlreadyDone, DeadLettered (and any later final verdict).
///         _ => Settle::Ack,
///     }
/// }
/// assert_eq!(settle(Verdict::Succeeded, 1), Settle::Ack);
/// assert_eq!(
///     settle(Verdict::Retry { after: Duration::from_secs(2) }, 1),
///     Settle::RedeliverAt { attempt: 2, after: Duration::from_secs(2) }
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The handler succeeded and the key is completed: acknowledge.
    Succeeded,
    /// The job already finished (succeeded or dead-lettered) on some worker;
    /// the handler was not run: acknowledge.
    AlreadyDone,
    /// This attempt failed transiently and attempts remain: deliver the job
    /// again, at the next attempt, after `after`.
    Retry {
        /// The backoff before the next attempt (the policy's delay, jittered).
        after: Duration,
    },
    /// The job was not run and this delivery does not count as an attempt:
    /// another worker holds its key, or the store or dead letter could not
    /// be reached. Deliver it again, at the same attempt, after `after`.
    Busy {
        /// When to try again: the end of the other worker's lease, or a short
        /// pause for an unavailable store.
        after: Duration,
    },
    /// The job cannot succeed (a permanent error, the last attempt failed, no
    /// handler of that name routes the event here) and its entry is in the
    /// dead letter: acknowledge (or move the message to the broker's
    /// dead-letter queue).
    DeadLettered {
        /// Why.
        reason: DeadLetterReason,
    },
}

impl Verdict {
    /// Whether the message should be acknowledged (the job reached its end:
    /// succeeded, already done, or dead-lettered).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Verdict::Succeeded | Verdict::AlreadyDone | Verdict::DeadLettered { .. }
        )
    }
}

/// Counts of what a [`JobRunner`] did since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCounts {
    /// Runs whose handler succeeded.
    pub succeeded: u64,
    /// Deliveries of finished jobs (not run again).
    pub already_done: u64,
    /// Failed attempts followed by a retry.
    pub retried: u64,
    /// Deliveries put back because the key was held, or the store or dead
    /// letter was unreachable.
    pub busy: u64,
    /// Jobs sent to the dead letter.
    pub dead_lettered: u64,
}

#[derive(Default)]
struct Counts {
    succeeded: AtomicU64,
    already_done: AtomicU64,
    retried: AtomicU64,
    busy: AtomicU64,
    dead_lettered: AtomicU64,
}

impl Counts {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Settings of a [`JobRunner`].
#[must_use = "call `.build()` to get the runner"]
pub struct JobRunnerBuilder {
    registry: Registry,
    store: Arc<dyn IdempotencyStore>,
    dead_letter: Arc<dyn DeadLetter>,
    policy: RetryPolicy,
    lease: Option<Duration>,
    retention: Duration,
    busy_delay: Duration,
}

/// A [`JobRunnerBuilder`] setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobRunnerError {
    /// The retry policy cannot work (see [`RetryPolicy::check`]).
    #[error("invalid retry policy: {0}")]
    InvalidRetryPolicy(#[from] RetryPolicyError),
    /// The lease is not longer than the policy's `attempt_timeout`: a running
    /// attempt could lose its key to a second worker.
    #[error("the job lease ({lease:?}) must be longer than the retry policy's attempt_timeout ({attempt_timeout:?})")]
    LeaseTooShort {
        /// The lease.
        lease: Duration,
        /// The policy's attempt timeout.
        attempt_timeout: Duration,
    },
    /// The registry has an invalid route.
    #[error("invalid registry: {0}")]
    InvalidRoute(#[from] crate::registry::RouteError),
}

impl JobRunner {
    /// Starts a runner of the best-effort handlers of `registry` (critical
    /// handlers are ignored), deduplicating on `store`. Share the store with
    /// every worker so they deduplicate together.
    pub fn builder(registry: Registry, store: impl IdempotencyStore + 'static) -> JobRunnerBuilder {
        JobRunnerBuilder {
            registry,
            store: Arc::new(store),
            dead_letter: Arc::new(MemoryDeadLetter::new()),
            policy: RetryPolicy::default(),
            lease: None,
            retention: Duration::from_secs(72 * 3600),
            busy_delay: Duration::from_secs(1),
        }
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The lease each run holds on its job key.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// What this runner did so far.
    pub fn counts(&self) -> JobCounts {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        JobCounts {
            succeeded: read(&self.counts.succeeded),
            already_done: read(&self.counts.already_done),
            retried: read(&self.counts.retried),
            busy: read(&self.counts.busy),
            dead_lettered: read(&self.counts.dead_lettered),
        }
    }

    /// Runs `job` at attempt `attempt` (1 for the first; the broker's
    /// delivery count or the message's own count) and says what to do with
    /// its message. Never panics; a handler's panic is a failed attempt.
    pub async fn run(&self, job: &JobMessage, attempt: u32) -> Verdict {
        let attempt = attempt.max(1);
        let verdict = self.run_inner(job, attempt).await;
        let counter = match verdict {
            Verdict::Succeeded => &self.counts.succeeded,
            Verdict::AlreadyDone => &self.counts.already_done,
            Verdict::Retry { .. } => &self.counts.retried,
            Verdict::Busy { .. } => &self.counts.busy,
            Verdict::DeadLettered { .. } => &self.counts.dead_lettered,
        };
        Counts::bump(counter);
        verdict
    }

    async fn run_inner(&self, job: &JobMessage, attempt: u32) -> Verdict {
        let event = job.event();
        let handler = self
            .registry
            .route(job.provider(), &event.identity().kind, true)
            .best_effort()
            .find(|h| h.name() == job.handler())
            .cloned();
        let Some(handler) = handler else {
            // A worker without the handler (an older deploy) may be followed
            // by one with it: retry within the policy, then dead-letter.
            let error = HandlerError::transient(UnknownHandler {
                handler: job.handler().to_owned(),
            });
            return self.failed(job, attempt, error, None).await;
        };
        let store_key = job.store_key();
        let key = store_key.as_str();
        let claim = match self
            .store
            .claim(key, Fingerprint::of(job.body()), self.lease)
            .await
        {
            Ok(claim) => claim,
            Err(_) => return self.busy(self.busy_delay),
        };
        let token = match claim {
            Claim::Completed | Claim::CompletedBodyChanged => return Verdict::AlreadyDone,
            Claim::InFlight { until } => {
                let left = until
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                return self.busy(left.max(self.busy_delay));
            }
            Claim::Acquired(token) | Claim::AcquiredBodyChanged(token) => token,
        };
        let run = AssertUnwindSafe(handler.handler().handle(&event)).catch_unwind();
        let error = match tokio::time::timeout(self.policy.attempt_timeout, run).await {
            Ok(Ok(Ok(()))) => {
                return match self.complete(key, token).await {
                    // Done, or the lease was lost (only past the lease, which
                    // is longer than the attempt timeout): either way this
                    // worker is finished with the message.
                    Ok(()) | Err(StoreError::StaleToken { .. }) => Verdict::Succeeded,
                    // The key stays leased; once the lease ends the job runs again.
                    Err(_) => self.busy(self.lease),
                };
            }
            Ok(Ok(Err(err))) => err,
            Ok(Err(panic)) => HandlerError::transient(HandlerPanicked::from_payload(&*panic)),
            Err(_) => HandlerError::transient(HandlerTimedOut {
                after: self.policy.attempt_timeout,
            }),
        };
        self.failed(job, attempt, error, Some(token)).await
    }

    /// A failed attempt: retry, or dead-letter then complete the key.
    async fn failed(
        &self,
        job: &JobMessage,
        attempt: u32,
        error: HandlerError,
        token: Option<crate::store::FencingToken>,
    ) -> Verdict {
        let store_key = job.store_key();
        let key = store_key.as_str();
        let reason = if !error.is_transient() {
            DeadLetterReason::Permanent
        } else if attempt < self.policy.max_attempts {
            if let Some(token) = token {
                // Best effort: an unreleased key is claimable when its lease ends.
                let _ = self.store.release(key, token, &error.to_string()).await;
            }
            return Verdict::Retry {
                after: self.policy.delay(attempt, self.unit()),
            };
        } else {
            DeadLetterReason::RetriesExhausted
        };
        let entry = DeadLetterEntry::new(
            job.event(),
            job.handler().into(),
            attempt,
            reason,
            Some(Arc::new(error)),
        );
        if self.dead_letter.send(entry).await.is_err() {
            if let Some(token) = token {
                let _ = self
                    .store
                    .release(key, token, "the dead letter refused the entry")
                    .await;
            }
            return self.busy(self.busy_delay);
        }
        if let Some(token) = token {
            // The entry is stored: a failure here only means a redelivery
            // could dead-letter it again.
            let _ = self.complete(key, token).await;
        }
        Verdict::DeadLettered { reason }
    }

    /// Completes the key, trying a few times over a passing store error.
    async fn complete(
        &self,
        key: &str,
        token: crate::store::FencingToken,
    ) -> Result<(), StoreError> {
        let mut pause = Duration::from_millis(50);
        let mut tries = 0;
        loop {
            match self.store.complete(key, token, self.retention).await {
                Err(StoreError::Unavailable(_)) if tries < 3 => {
                    tries += 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                other => return other,
            }
        }
    }

    fn busy(&self, after: Duration) -> Verdict {
        Verdict::Busy { after }
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
}

/// No best-effort handler of the job's name routes its event in this
/// worker's registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no best-effort handler named `{handler}` routes this event in the worker's registry: register it on every worker")]
pub struct UnknownHandler {
    /// The job's handler name.
    pub handler: String,
}

impl JobRunnerBuilder {
    /// The retry policy: attempts, backoff and jitter, and each attempt's
    /// time limit. Defaults to [`RetryPolicy::default`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where jobs that cannot succeed go. Defaults to an in-process
    /// [`MemoryDeadLetter`]; set a durable one in production.
    pub fn dead_letter(mut self, dead_letter: impl DeadLetter + 'static) -> Self {
        self.dead_letter = Arc::new(dead_letter);
        self
    }

    /// How long a run holds its job key: another worker receiving the same
    /// job meanwhile puts it back ([`Verdict::Busy`]), and a crashed worker's
    /// job runs again once it ends. Must be longer than the policy's
    /// `attempt_timeout`. Defaults to `attempt_timeout` + 30 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How long a finished job key is remembered, so later copies are not
    /// run again. Cover the longest time a copy can arrive after the first
    /// (the broker's redelivery and the outbox's retries). Defaults to 72 h.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The pause before a job whose store or dead letter was unreachable is
    /// delivered again (and the least pause after finding it held). Defaults
    /// to 1 s.
    pub fn busy_delay(mut self, delay: Duration) -> Self {
        self.busy_delay = delay;
        self
    }

    /// Builds the runner.
    ///
    /// # Errors
    /// [`JobRunnerError`] for a policy, lease or route that cannot work.
    pub fn build(self) -> Result<JobRunner, JobRunnerError> {
        self.policy.check()?;
        self.registry.validate()?;
        let lease = self.lease.unwrap_or_else(|| {
            self.policy
                .attempt_timeout
                .saturating_add(Duration::from_secs(30))
        });
        if lease <= self.policy.attempt_timeout {
            return Err(JobRunnerError::LeaseTooShort {
                lease,
                attempt_timeout: self.policy.attempt_timeout,
            });
        }
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Ok(JobRunner {
            registry: self.registry,
            store: self.store,
            dead_letter: self.dead_letter,
            policy: self.policy,
            lease,
            retention: self.retention,
            busy_delay: self.busy_delay,
            rng: AtomicU64::new(seed),
            counts: Counts::default(),
        })
    }
}

impl fmt::Debug for JobRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRunner")
            .field("store", &self.store)
            .field("dead_letter", &self.dead_letter)
            .field("policy", &self.policy)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for JobRunnerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRunnerBuilder")
            .field("policy", &self.policy)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}
