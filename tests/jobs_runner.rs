//! JobRunner without a broker: what each verdict means for the job key in
//! the store, for the dead letter and for the handler's runs, on every path.
#![cfg(feature = "tokio")]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookgate::async_trait;
use hookgate::jobs::{JobMessage, JobRunner, JobRunnerError, Verdict};
use hookgate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};
use hookgate::{
    handler_fn, DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterReason, Event,
    HandlerError, Identity, MemoryDeadLetter, MemoryStore, Registry, RetryPolicy,
};
use time::OffsetDateTime;

fn job(id: &str) -> JobMessage {
    let event = Event::new("stripe", Identity::new(id, "invoice.paid"), &b"{}"[..]);
    JobMessage::new(&event, "email", OffsetDateTime::now_utc())
}

fn policy() -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.max_attempts = 3;
    policy.initial_backoff = Duration::from_millis(100);
    policy.jitter = 0.0;
    policy.attempt_timeout = Duration::from_millis(200);
    policy
}

/// A registry whose `email` handler answers what `answer` says for each call
/// (1-based), counting calls.
fn registry(
    calls: &Arc<AtomicU32>,
    answer: impl Fn(u32) -> Result<(), HandlerError> + Send + Sync + 'static,
) -> Registry {
    let calls = Arc::clone(calls);
    let answer = Arc::new(answer);
    let mut registry = Registry::new();
    registry.best_effort(
        "stripe",
        "invoice.*",
        "email",
        handler_fn(move |_event: Event| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = Arc::clone(&answer);
            async move { answer(n) }
        }),
    );
    registry
}

fn runner(
    registry: Registry,
    store: impl IdempotencyStore + 'static,
    dead_letter: impl DeadLetter + 'static,
) -> JobRunner {
    JobRunner::builder(registry, store)
        .retry_policy(policy())
        .lease(Duration::from_secs(2))
        .busy_delay(Duration::from_millis(300))
        .dead_letter(dead_letter)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_success_completes_the_key_and_later_copies_are_not_run() {
    let calls = Arc::new(AtomicU32::new(0));
    let store = Arc::new(MemoryStore::new());
    let runner = runner(
        registry(&calls, |_| Ok(())),
        Arc::clone(&store),
        MemoryDeadLetter::new(),
    );
    let job = job("evt_1");
    assert_eq!(runner.run(&job, 1).await, Verdict::Succeeded);
    assert_eq!(runner.run(&job, 1).await, Verdict::AlreadyDone);
    assert_eq!(
        runner.run(&job.clone().with_attempt(2), 2).await,
        Verdict::AlreadyDone
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let claim = store
        .claim(
            &job.store_key(),
            Fingerprint::of(job.body()),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(claim, Claim::Completed);
    let counts = runner.counts();
    assert_eq!((counts.succeeded, counts.already_done), (1, 2));
}

#[tokio::test]
async fn transient_failures_retry_with_the_policys_backoff_then_dead_letter() {
    let calls = Arc::new(AtomicU32::new(0));
    let dead_letter = MemoryDeadLetter::new();
    let runner = runner(
        registry(&calls, |_| Err(HandlerError::transient("smtp timeout"))),
        MemoryStore::new(),
        dead_letter.clone(),
    );
    let job = job("evt_2");
    assert_eq!(
        runner.run(&job, 1).await,
        Verdict::Retry {
            after: Duration::from_millis(100)
        }
    );
    assert_eq!(
        runner.run(&job, 2).await,
        Verdict::Retry {
            after: Duration::from_millis(200)
        }
    );
    assert_eq!(
        runner.run(&job, 3).await,
        Verdict::DeadLettered {
            reason: DeadLetterReason::RetriesExhausted
        }
    );
    // Dead-lettered is final: a redelivery does not run it again.
    assert_eq!(runner.run(&job, 4).await, Verdict::AlreadyDone);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let entries = dead_letter.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].attempts, &*entries[0].handler), (3, "email"));
    assert!(entries[0]
        .error
        .as_ref()
        .unwrap()
        .to_string()
        .contains("smtp timeout"));
    assert_eq!(runner.counts().retried, 2);
}

#[tokio::test]
async fn a_permanent_error_is_dead_lettered_at_once() {
    let calls = Arc::new(AtomicU32::new(0));
    let dead_letter = MemoryDeadLetter::new();
    let runner = runner(
        registry(&calls, |_| Err(HandlerError::permanent("no such order"))),
        MemoryStore::new(),
        dead_letter.clone(),
    );
    assert_eq!(
        runner.run(&job("evt_3"), 1).await,
        Verdict::DeadLettered {
            reason: DeadLetterReason::Permanent
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(dead_letter.entries()[0].attempts, 1);
}

#[tokio::test]
async fn panics_and_timeouts_are_failed_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut registry = Registry::new();
    {
        let calls = Arc::clone(&calls);
        registry.best_effort(
            "stripe",
            "*",
            "email",
            handler_fn(move |_event: Event| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    match n {
                        1 => panic!("boom"),
                        2 => tokio::time::sleep(Duration::from_secs(5)).await,
                        _ => {}
                    }
                    Ok::<(), HandlerError>(())
                }
            }),
        );
    }
    let runner = runner(registry, MemoryStore::new(), MemoryDeadLetter::new());
    let job = job("evt_4");
    assert!(matches!(runner.run(&job, 1).await, Verdict::Retry { .. }));
    assert!(matches!(runner.run(&job, 2).await, Verdict::Retry { .. }));
    assert_eq!(runner.run(&job, 3).await, Verdict::Succeeded);
}

#[tokio::test]
async fn a_key_held_by_another_worker_is_busy_until_its_lease_ends() {
    let calls = Arc::new(AtomicU32::new(0));
    let store = Arc::new(MemoryStore::new());
    let runner = runner(
        registry(&calls, |_| Ok(())),
        Arc::clone(&store),
        MemoryDeadLetter::new(),
    );
    let job = job("evt_5");
    // Another worker claimed it (and crashed, say) with a 1.5 s lease.
    store
        .claim(
            &job.store_key(),
            Fingerprint::of(job.body()),
            Duration::from_millis(1500),
        )
        .await
        .unwrap();
    match runner.run(&job, 1).await {
        Verdict::Busy { after } => {
            assert!(
                after > Duration::from_millis(1000) && after <= Duration::from_millis(1500),
                "{after:?}"
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        runner.run(&job, 1).await,
        Verdict::Succeeded,
        "the expired lease is taken over"
    );
    assert_eq!(runner.counts().busy, 1);
}

/// A store whose every call fails, or only `complete`.
#[derive(Debug)]
struct Down {
    inner: MemoryStore,
    claims_fail: bool,
}

#[async_trait]
impl IdempotencyStore for Down {
    async fn claim(
        &self,
        key: &str,
        fp: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        if self.claims_fail {
            return Err(StoreError::unavailable("connection refused"));
        }
        self.inner.claim(key, fp, lease).await
    }
    async fn complete(&self, _: &str, _: FencingToken, _: Duration) -> Result<(), StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.inner.release(key, token, reason).await
    }
}

#[tokio::test]
async fn an_unreachable_store_puts_the_job_back_without_running_it() {
    let calls = Arc::new(AtomicU32::new(0));
    let runner = runner(
        registry(&calls, |_| Ok(())),
        Down {
            inner: MemoryStore::new(),
            claims_fail: true,
        },
        MemoryDeadLetter::new(),
    );
    assert_eq!(
        runner.run(&job("evt_6"), 1).await,
        Verdict::Busy {
            after: Duration::from_millis(300)
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_success_that_cannot_be_recorded_waits_out_the_lease() {
    let calls = Arc::new(AtomicU32::new(0));
    let runner = runner(
        registry(&calls, |_| Ok(())),
        Down {
            inner: MemoryStore::new(),
            claims_fail: false,
        },
        MemoryDeadLetter::new(),
    );
    assert_eq!(
        runner.run(&job("evt_7"), 1).await,
        Verdict::Busy {
            after: Duration::from_secs(2)
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A dead letter that refuses entries until told otherwise.
#[derive(Debug, Default)]
struct Refusing {
    accept: AtomicBool,
    stored: AtomicU32,
}

#[async_trait]
impl DeadLetter for Refusing {
    async fn send(&self, _entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
        if self.accept.load(Ordering::SeqCst) {
            self.stored.fetch_add(1, Ordering::SeqCst);
            Ok(())
        } else {
            Err(DeadLetterError::new("dead-letter table unavailable"))
        }
    }
}

#[tokio::test]
async fn a_refused_dead_letter_keeps_the_job_for_another_delivery() {
    let calls = Arc::new(AtomicU32::new(0));
    let dead_letter = Arc::new(Refusing::default());
    let runner = runner(
        registry(&calls, |_| Err(HandlerError::permanent("no such order"))),
        MemoryStore::new(),
        Arc::clone(&dead_letter),
    );
    let job = job("evt_8");
    assert_eq!(
        runner.run(&job, 1).await,
        Verdict::Busy {
            after: Duration::from_millis(300)
        }
    );
    // The key was released: the next delivery runs and dead-letters it.
    dead_letter.accept.store(true, Ordering::SeqCst);
    assert_eq!(
        runner.run(&job, 1).await,
        Verdict::DeadLettered {
            reason: DeadLetterReason::Permanent
        }
    );
    assert_eq!(dead_letter.stored.load(Ordering::SeqCst), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_job_for_a_handler_this_worker_lacks_is_retried_then_dead_lettered() {
    let calls = Arc::new(AtomicU32::new(0));
    let dead_letter = MemoryDeadLetter::new();
    let runner = runner(
        registry(&calls, |_| Ok(())),
        MemoryStore::new(),
        dead_letter.clone(),
    );
    let event = Event::new("stripe", Identity::new("evt_9", "invoice.paid"), &b"{}"[..]);
    let sms = JobMessage::new(&event, "sms", OffsetDateTime::now_utc());
    assert!(matches!(runner.run(&sms, 1).await, Verdict::Retry { .. }));
    assert_eq!(
        runner.run(&sms, 3).await,
        Verdict::DeadLettered {
            reason: DeadLetterReason::RetriesExhausted
        }
    );
    let error = dead_letter.entries()[0].error.as_ref().unwrap().to_string();
    assert!(
        error.contains("no best-effort handler named `sms`"),
        "{error}"
    );
    // A handler of the right name for another kind does not take the job.
    let push = Event::new(
        "stripe",
        Identity::new("evt_10", "customer.created"),
        &b"{}"[..],
    );
    let unrouted = JobMessage::new(&push, "email", OffsetDateTime::now_utc());
    assert!(matches!(
        runner.run(&unrouted, 1).await,
        Verdict::Retry { .. }
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_lease_not_longer_than_the_attempt_timeout_is_refused() {
    let err = JobRunner::builder(Registry::new(), MemoryStore::new())
        .retry_policy(policy())
        .lease(Duration::from_millis(200))
        .build()
        .unwrap_err();
    assert!(matches!(err, JobRunnerError::LeaseTooShort { .. }), "{err}");
    let mut bad = policy();
    bad.max_attempts = 0;
    let err = JobRunner::builder(Registry::new(), MemoryStore::new())
        .retry_policy(bad)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, JobRunnerError::InvalidRetryPolicy(_)),
        "{err}"
    );
    let runner = JobRunner::builder(Registry::new(), MemoryStore::new())
        .retry_policy(policy())
        .build()
        .unwrap();
    assert_eq!(
        runner.lease(),
        Duration::from_millis(200) + Duration::from_secs(30)
    );
}

#[test]
fn final_verdicts_are_the_ones_to_acknowledge() {
    assert!(Verdict::Succeeded.is_final());
    assert!(Verdict::AlreadyDone.is_final());
    assert!(Verdict::DeadLettered {
        reason: DeadLetterReason::Permanent
    }
    .is_final());
    assert!(!Verdict::Retry {
        after: Duration::ZERO
    }
    .is_final());
    assert!(!Verdict::Busy {
        after: Duration::ZERO
    }
    .is_final());
}

#[tokio::test]
async fn job_keys_never_meet_event_keys_in_a_shared_store() {
    let calls = Arc::new(AtomicU32::new(0));
    let store = Arc::new(MemoryStore::new());
    // The pipeline completed the event whose (composite) id is `a:email`:
    // its key is `stripe:a:email`, the job key of event `a`'s `email` job.
    let event_key = "stripe:a:email";
    let fp = Fingerprint::of(b"{}");
    let Claim::Acquired(token) = store
        .claim(event_key, fp, Duration::from_secs(5))
        .await
        .unwrap()
    else {
        panic!("a fresh key is acquired");
    };
    store
        .complete(event_key, token, Duration::from_secs(60))
        .await
        .unwrap();
    let runner = runner(
        registry(&calls, |_| Ok(())),
        Arc::clone(&store),
        MemoryDeadLetter::new(),
    );
    let job = job("a");
    assert_eq!(job.key(), event_key);
    assert_eq!(
        runner.run(&job, 1).await,
        Verdict::Succeeded,
        "the job is not taken for the event"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
