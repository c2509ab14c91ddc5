//! Best-effort work: retries with backoff, the dead letter, caught panics,
//! bounded concurrency, deferred best-effort works and shutdown.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pipeline::*;
use hookgate::{
    handler_fn, DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterReason, Handler,
    HandlerError, MemoryDeadLetter, OutcomeKind, Pipeline, Registry, RetryPolicy,
};

fn fast_policy() -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.max_attempts = 3;
    policy.initial_backoff = Duration::from_millis(40);
    policy.jitter = 0.25;
    policy.attempt_timeout = Duration::from_secs(5);
    policy
}

/// [`fast_policy`] with a first retry after `backoff`.
fn backing_off(backoff: Duration) -> RetryPolicy {
    let mut policy = fast_policy();
    policy.initial_backoff = backoff;
    policy
}

fn pipeline_with(
    registry: Registry,
    policy: RetryPolicy,
    dead_letter: &MemoryDeadLetter,
) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .retry_policy(policy)
        .memory_dead_letter(dead_letter.clone())
        .build()
        .unwrap()
}

/// A best-effort handler that fails its first `failures` calls (with a permanent
/// error if `permanent`), recording when each call started.
#[derive(Clone, Default)]
struct Flaky {
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Flaky {
    fn handler(&self, failures: usize, permanent: bool) -> impl Handler + 'static {
        let calls = self.calls.clone();
        handler_fn(move |_| {
            let calls = calls.clone();
            async move {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    calls.push(Instant::now());
                    calls.len()
                };
                if n <= failures {
                    let err = Injected("smtp unavailable");
                    return Err(if permanent {
                        HandlerError::permanent(err)
                    } else {
                        HandlerError::transient(err)
                    });
                }
                Ok(())
            }
        })
    }

    fn starts(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

fn best_effort(name: &str, handler: impl Handler + 'static) -> Registry {
    let mut registry = Registry::new();
    registry.best_effort("github", "issues", name, handler);
    registry
}

#[tokio::test]
async fn retries_are_counted_and_backoff_is_respected() {
    let flaky = Flaky::default();
    let dead_letter = MemoryDeadLetter::new();
    let policy = fast_policy();
    let pipeline = pipeline_with(
        best_effort("email", flaky.handler(2, false)),
        policy,
        &dead_letter,
    );
    let (body, headers) = gh_delivery("d-retry", &issue_body(1));

    let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
    assert_eq!(
        outcome.status(),
        200,
        "best-effort failures never change the answer"
    );
    let report = work.unwrap().await;
    assert_eq!(report.succeeded, 1);

    let starts = flaky.starts();
    assert_eq!(starts.len(), 3);
    for retry in 1..=2u32 {
        let gap = starts[retry as usize] - starts[retry as usize - 1];
        let (low, high) = policy.delay_bounds(retry);
        assert!(
            gap >= low,
            "retry {retry} came after {gap:?}, before {low:?}"
        );
        assert!(
            gap < high + Duration::from_millis(500),
            "retry {retry} waited {gap:?}"
        );
    }
    assert_eq!(
        policy.delay_bounds(2).0,
        Duration::from_millis(60),
        "40 ms doubled, minus 25 %"
    );
    let stats = pipeline.stats();
    assert_eq!(stats.best_effort_retries, 2);
    assert_eq!(stats.best_effort_succeeded, 1);
    assert_eq!(stats.best_effort_dead_lettered, 0);
    assert!(dead_letter.is_empty());
}

#[test]
fn default_policy_is_three_retries_at_two_four_eight_seconds() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.max_attempts, 4);
    let nominal: Vec<_> = (1..=3).map(|r| policy.nominal_delay(r)).collect();
    assert_eq!(nominal, [2, 4, 8].map(Duration::from_secs));
    let (low, high) = policy.delay_bounds(1);
    assert!(
        low < Duration::from_secs(2) && high > Duration::from_secs(2),
        "jittered"
    );
    let mut capped = policy;
    capped.max_backoff = Duration::from_secs(5);
    assert_eq!(capped.nominal_delay(3), Duration::from_secs(5));
}

#[tokio::test]
async fn exhausted_work_reaches_the_dead_letter_with_its_error() {
    let flaky = Flaky::default();
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = pipeline_with(
        best_effort("sms", flaky.handler(usize::MAX, false)),
        fast_policy(),
        &dead_letter,
    );
    let (body, headers) = gh_delivery("d-exhausted", &issue_body(2));

    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    let report = work.unwrap().await;
    assert_eq!(report.dead_lettered, 1);

    let entries = dead_letter.entries();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.reason, DeadLetterReason::RetriesExhausted);
    assert_eq!(entry.attempts, 3);
    assert_eq!(entry.provider(), "github");
    assert_eq!(entry.event_id(), "d-exhausted");
    assert_eq!(&*entry.handler, "sms");
    let error = entry.error.as_ref().expect("the last error");
    assert!(error.is_transient());
    assert!(error.to_string().contains("smtp unavailable"));
    assert_eq!(flaky.starts().len(), 3);
    let stats = pipeline.stats();
    assert_eq!(
        (stats.best_effort_retries, stats.best_effort_dead_lettered),
        (2, 1)
    );
}

#[tokio::test]
async fn permanent_error_is_dead_lettered_without_retry() {
    let flaky = Flaky::default();
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = pipeline_with(
        best_effort("crm", flaky.handler(1, true)),
        fast_policy(),
        &dead_letter,
    );
    let (body, headers) = gh_delivery("d-permanent", &issue_body(3));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    work.unwrap().await;
    assert_eq!(flaky.starts().len(), 1);
    let entries = dead_letter.drain();
    assert_eq!(entries[0].reason, DeadLetterReason::Permanent);
    assert_eq!(entries[0].attempts, 1);
    assert_eq!(pipeline.stats().best_effort_retries, 0);
}

#[tokio::test]
async fn panics_and_timeouts_are_caught_and_retried() {
    let (calls, handler) = numbered(|call, _| async move {
        match call {
            0 => panic!("webhook relay crashed"),
            1 => tokio::time::sleep(Duration::from_secs(60)).await,
            _ => {}
        }
        Ok(())
    });
    let dead_letter = MemoryDeadLetter::new();
    let mut policy = backing_off(Duration::from_millis(5));
    policy.attempt_timeout = Duration::from_millis(50);
    let pipeline = pipeline_with(best_effort("relay", handler), policy, &dead_letter);
    let (body, headers) = gh_delivery("d-panic", &issue_body(4));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    let report = work.unwrap().await;
    assert_eq!(report.succeeded, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(pipeline.stats().best_effort_retries, 2);

    // A handler that always panics ends in the dead letter with the panic message.
    let always = handler_fn(|_| async { panic!("always broken") });
    let pipeline = pipeline_with(best_effort("broken", always), policy, &dead_letter);
    let (body, headers) = gh_delivery("d-broken", &issue_body(5));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    work.unwrap().await;
    let entries = dead_letter.drain();
    assert_eq!(entries.len(), 1);
    assert!(entries[0]
        .error
        .as_ref()
        .unwrap()
        .to_string()
        .contains("always broken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_run_independently_in_parallel_under_the_concurrency_bound() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Tally::default();
    let mut registry = Registry::new();
    for name in ["a", "b", "c", "d", "e", "f"] {
        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
        registry.best_effort(
            "github",
            "*",
            name,
            handler_fn(move |event| {
                let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    done.record(&event);
                    Ok::<(), HandlerError>(())
                }
            }),
        );
    }
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .max_concurrent_best_effort(2)
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-parallel", &issue_body(6));
    let started = Instant::now();
    let outcome = pipeline.handle(body, &headers).await;
    assert!(matches!(
        outcome.kind,
        OutcomeKind::Processed { best_effort: 6 }
    ));
    let report = pipeline.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained);
    assert_eq!(done.count("d-parallel"), 6);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "parallel, but never more than the bound"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "6 × 50 ms two at a time"
    );
}

#[tokio::test]
async fn one_failing_handler_does_not_hold_back_the_others() {
    let ok = Tally::default();
    let mut registry = Registry::new();
    registry
        .best_effort(
            "github",
            "*",
            "failing",
            Flaky::default().handler(usize::MAX, false),
        )
        .best_effort("github", "*", "ok", ok.handler());
    let dead_letter = MemoryDeadLetter::new();
    let policy = backing_off(Duration::from_secs(60));
    let pipeline = pipeline_with(registry, policy, &dead_letter);
    let (body, headers) = gh_delivery("d-independent", &issue_body(7));
    pipeline.handle(body, &headers).await;
    tokio::time::timeout(Duration::from_secs(2), async {
        while ok.count("d-independent") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the healthy handler finished while the other waits to retry");
    let report = pipeline.shutdown(Duration::from_millis(10)).await;
    assert_eq!(report.abandoned.len(), 1);
}

#[tokio::test]
async fn shutdown_drains_pending_work() {
    let done = Tally::default();
    let slow = {
        let done = done.clone();
        handler_fn(move |event| {
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                done.record(&event);
                Ok::<(), HandlerError>(())
            }
        })
    };
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = pipeline_with(best_effort("slow", slow), fast_policy(), &dead_letter);
    for n in 0..5 {
        let (body, headers) = gh_delivery(&format!("d-drain-{n}"), &issue_body(n));
        assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
    }
    assert_eq!(done.total(), 0, "best-effort work runs after the answer");

    let report = pipeline.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained);
    assert!(report.abandoned.is_empty());
    assert_eq!(done.total(), 5);
    assert!(dead_letter.is_empty());

    let (body, headers) = gh_delivery("d-late", &issue_body(9));
    let late = pipeline.handle(body, &headers).await;
    assert_eq!(late.status(), 503);
    assert!(matches!(late.kind, OutcomeKind::ShuttingDown));
}

/// A pipeline whose `webhook` handler always fails transiently, then waits a
/// minute before its retry.
fn failing_then_waiting(dead_letter: &MemoryDeadLetter) -> (Flaky, Pipeline) {
    let flaky = Flaky::default();
    let policy = backing_off(Duration::from_secs(60));
    let pipeline = pipeline_with(
        best_effort("webhook", flaky.handler(usize::MAX, false)),
        policy,
        dead_letter,
    );
    (flaky, pipeline)
}

#[tokio::test]
async fn shutdown_hands_back_and_dead_letters_what_it_cannot_finish() {
    let dead_letter = MemoryDeadLetter::new();
    let (flaky, pipeline) = failing_then_waiting(&dead_letter);
    let (body, headers) = gh_delivery("d-pending", &issue_body(8));
    pipeline.handle(body, &headers).await;
    // Never-driven deferred work is not pending: dropping it dead-letters it.
    let (body, headers) = gh_delivery("d-dropped", &issue_body(9));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    drop(work);
    while flaky.starts().is_empty() {
        tokio::task::yield_now().await;
    }
    eventually("the dropped work in the dead letter", || {
        dead_letter.len() == 1
    })
    .await;

    let report = pipeline.shutdown(Duration::from_millis(50)).await;
    assert!(!report.drained);
    let handed_back: Vec<_> = report
        .abandoned
        .iter()
        .map(|e| (e.event_id().to_owned(), e.attempts, e.reason))
        .collect();
    assert_eq!(
        handed_back,
        [("d-pending".to_owned(), 1, DeadLetterReason::ShutDown)]
    );
    let mut entries: Vec<_> = dead_letter
        .entries()
        .into_iter()
        .map(|e| (e.event_id().to_owned(), e.reason, e.error.is_some()))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        entries,
        [
            (
                "d-dropped".to_owned(),
                DeadLetterReason::BestEffortDropped,
                false
            ),
            // The last error travels with the work.
            ("d-pending".to_owned(), DeadLetterReason::ShutDown, true),
        ]
    );
    assert_eq!(report.dead_letter_failures, 0);
    assert_eq!(pipeline.stats().best_effort_dead_lettered, 2);
    assert_eq!(pipeline.stats().best_effort_pending, 0);
    assert_eq!(
        report.memory_dead_letter.len(),
        2,
        "the in-memory dead letter is handed back before the process ends"
    );
}

/// A best-effort handler that waits until `gate` is opened, counting its calls.
fn gated(gate: &Arc<tokio::sync::Semaphore>, calls: &Arc<AtomicUsize>) -> impl Handler + 'static {
    let (gate, calls) = (gate.clone(), calls.clone());
    handler_fn(move |_| {
        let (gate, calls) = (gate.clone(), calls.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let _pass = gate.acquire().await;
            Ok::<(), HandlerError>(())
        }
    })
}

/// A pipeline whose one best-effort handler waits for `gate`, one attempt at a
/// time, holding at most `max_pending` jobs.
fn gated_pipeline(
    gate: &Arc<tokio::sync::Semaphore>,
    calls: &Arc<AtomicUsize>,
    dead_letter: impl DeadLetter + 'static,
    max_pending: usize,
) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(best_effort("slow", gated(gate, calls)))
        .dead_letter(dead_letter)
        .max_concurrent_best_effort(1)
        .max_pending_best_effort(max_pending)
        .build()
        .unwrap()
}

/// Delivers `{prefix}-{n}` for each `n`, each answered 200.
async fn deliver_all(pipeline: &Pipeline, prefix: &str, numbers: std::ops::Range<u64>) {
    for n in numbers {
        let (body, headers) = gh_delivery(&format!("{prefix}-{n}"), &issue_body(n));
        assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
    }
}

#[tokio::test]
async fn dropped_work_is_dead_lettered_at_once_and_shutdown_does_not_wait_for_it() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = pipeline_with(
        best_effort("slow", gated(&gate, &calls)),
        fast_policy(),
        &dead_letter,
    );
    let (body, headers) = gh_delivery("d-drop", &issue_body(1));
    let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
    assert_eq!(outcome.status(), 200);
    let work = work.expect("best-effort work");
    assert_eq!(pipeline.stats().best_effort_pending, 1);
    drop(work);

    eventually("the dropped work in the dead letter", || {
        dead_letter.len() == 1
    })
    .await;
    let entry = &dead_letter.entries()[0];
    assert_eq!(
        (
            entry.event_id(),
            &*entry.handler,
            entry.reason,
            entry.attempts
        ),
        ("d-drop", "slow", DeadLetterReason::BestEffortDropped, 0)
    );
    let stats = pipeline.stats();
    assert_eq!(
        (stats.best_effort_pending, stats.best_effort_dropped),
        (0, 1)
    );
    assert_eq!(stats.best_effort_dead_lettered, 1);

    let started = Instant::now();
    let report = pipeline.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained, "nothing left to wait for");
    assert!(report.abandoned.is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "dropped work never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_work_hands_its_attempts_and_last_error_to_the_dead_letter() {
    let dead_letter = MemoryDeadLetter::new();
    let (flaky, pipeline) = failing_then_waiting(&dead_letter);
    let (body, headers) = gh_delivery("d-abort", &issue_body(2));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    let task = tokio::spawn(work.expect("best-effort work"));
    eventually("the first attempt", || !flaky.starts().is_empty()).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    eventually("the aborted work in the dead letter", || {
        dead_letter.len() == 1
    })
    .await;
    let entry = &dead_letter.entries()[0];
    assert_eq!(entry.reason, DeadLetterReason::BestEffortDropped);
    assert_eq!(entry.attempts, 1);
    assert!(entry
        .error
        .as_ref()
        .expect("the last error")
        .to_string()
        .contains("smtp unavailable"));
    assert_eq!(pipeline.stats().best_effort_pending, 0);
    let report = pipeline.shutdown(Duration::from_secs(5)).await;
    assert!(report.drained && report.abandoned.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_work_is_bounded_and_overflow_goes_to_the_dead_letter_at_once() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = gated_pipeline(&gate, &calls, dead_letter.clone(), 2);
    // Two jobs: one running, one waiting for the single permit.
    deliver_all(&pipeline, "d-held", 0..2).await;
    eventually("the first job running", || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(pipeline.stats().best_effort_pending, 2);

    // The third is answered 200 (its critical work is done) but never started.
    let (body, headers) = gh_delivery("d-overflow", &issue_body(3));
    let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
    assert!(matches!(
        outcome.kind,
        OutcomeKind::Processed { best_effort: 1 }
    ));
    let work = work.expect("the refused work is reported");
    assert_eq!((work.len(), work.refused()), (1, 1));
    eventually("the overflow in the dead letter", || dead_letter.len() == 1).await;
    let entry = &dead_letter.entries()[0];
    assert_eq!(
        (entry.event_id(), entry.reason, entry.attempts),
        ("d-overflow", DeadLetterReason::Overflow, 0)
    );
    let report = work.await;
    assert_eq!(
        (report.refused, report.succeeded, report.dead_lettered),
        (1, 0, 0)
    );
    let stats = pipeline.stats();
    assert_eq!(stats.best_effort_overflow, 1);
    assert_eq!(stats.best_effort_pending, 2, "the bound held");

    // Once the held jobs finish there is room again.
    gate.add_permits(10);
    eventually("the held jobs done", || {
        pipeline.stats().best_effort_pending == 0
    })
    .await;
    let (body, headers) = gh_delivery("d-after", &issue_body(4));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    let report = work.unwrap().await;
    assert_eq!((report.succeeded, report.refused), (1, 0));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the overflowed job never ran"
    );
    assert_eq!(pipeline.stats().best_effort_overflow, 1);
}

#[tokio::test]
async fn default_dead_letter_is_readable_and_drainable_from_the_pipeline() {
    let mut registry = best_effort("sms", Flaky::default().handler(usize::MAX, true));
    registry.critical(
        "github",
        "issues",
        "record",
        handler_fn(|event| async move {
            if event.id() == "d-critical" {
                return Err(HandlerError::permanent(Injected("no such order")));
            }
            Ok(())
        }),
    );
    // No dead letter set: the default in-memory one.
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .retry_policy(fast_policy())
        .build()
        .unwrap();
    let dead_letter = pipeline.memory_dead_letter().expect("the default").clone();
    assert!(format!("{:?}", pipeline.dead_letter()).contains("MemoryDeadLetter"));

    let (body, headers) = gh_delivery("d-critical", &issue_body(1));
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 200);
    let (body, headers) = gh_delivery("d-best-effort", &issue_body(2));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    assert_eq!(work.unwrap().await.dead_lettered, 1);

    assert_eq!(dead_letter.len(), 2);
    let drained: Vec<_> = dead_letter
        .drain()
        .into_iter()
        .map(|e| (e.event_id().to_owned(), e.reason))
        .collect();
    assert_eq!(
        drained,
        [
            ("d-critical".to_owned(), DeadLetterReason::CriticalPermanent),
            ("d-best-effort".to_owned(), DeadLetterReason::Permanent),
        ]
    );
    assert!(pipeline.memory_dead_letter().unwrap().is_empty());

    // A MemoryDeadLetter you set is the one returned; another kind is not.
    let mine = MemoryDeadLetter::with_capacity(5);
    let pipeline = pipeline_with(Registry::new(), fast_policy(), &mine);
    assert!(format!("{:?}", pipeline.memory_dead_letter()).contains("capacity: 5"));
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .dead_letter(Refusing)
        .build()
        .unwrap();
    assert!(pipeline.memory_dead_letter().is_none());
    assert!(pipeline
        .shutdown(Duration::from_secs(1))
        .await
        .memory_dead_letter
        .is_empty());
}

/// A dead letter that refuses every entry.
#[derive(Debug)]
struct Refusing;

#[async_trait::async_trait]
impl DeadLetter for Refusing {
    async fn send(&self, _: DeadLetterEntry) -> Result<(), DeadLetterError> {
        Err(DeadLetterError::new(Injected("queue unreachable")))
    }
}

#[tokio::test]
async fn a_dead_letter_refusal_is_counted_and_reported_never_acknowledged() {
    // Best-effort: the refusal shows in the report and the stats.
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(best_effort(
            "crm",
            Flaky::default().handler(usize::MAX, true),
        ))
        .dead_letter(Refusing)
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-refused", &issue_body(1));
    let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
    assert_eq!(outcome.status(), 200, "the critical work is done");
    let report = work.unwrap().await;
    assert_eq!((report.dead_letter_refused, report.dead_lettered), (1, 0));
    let stats = pipeline.stats();
    assert_eq!(
        (stats.dead_letter_failures, stats.best_effort_dead_lettered),
        (1, 0)
    );

    // Critical: a full dead letter answers 500 and keeps the key free, so the
    // provider's retry (or a GitHub redelivery) succeeds once it was drained.
    let full = MemoryDeadLetter::with_capacity(1);
    let failing = handler_fn(|_| async { Err::<(), _>(HandlerError::permanent(Injected("bad"))) });
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(failing))
        .memory_dead_letter(full.clone())
        .build()
        .unwrap();
    let (first, first_headers) = gh_delivery("d-fills", &issue_body(2));
    assert_eq!(pipeline.handle(first, &first_headers).await.status(), 200);
    let (second, headers) = gh_delivery("d-refused-critical", &issue_body(3));
    let refused = pipeline.handle(second.clone(), &headers).await;
    assert_eq!(refused.status(), 500);
    assert!(matches!(
        refused.kind,
        OutcomeKind::PermanentFailure {
            dead_lettered: false,
            ..
        }
    ));
    assert_eq!(pipeline.stats().dead_letter_failures, 1);
    assert_eq!(full.drain().len(), 1);
    let redelivered = pipeline.handle(second, &headers).await;
    assert_eq!(redelivered.status(), 200);
    assert!(matches!(
        redelivered.kind,
        OutcomeKind::PermanentFailure {
            dead_lettered: true,
            ..
        }
    ));
    assert_eq!(full.entries()[0].event_id(), "d-refused-critical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_drops_aborts_and_overflow_settle_every_job_exactly_once() {
    let done = Tally::default();
    let work = {
        let done = done.clone();
        handler_fn(move |event| {
            let done = done.clone();
            async move {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                done.record(&event);
                Ok::<(), HandlerError>(())
            }
        })
    };
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(best_effort("work", work))
        .memory_dead_letter(dead_letter.clone())
        .max_concurrent_best_effort(4)
        .max_pending_best_effort(16)
        .build()
        .unwrap();
    const DELIVERIES: u64 = 400;
    let tasks: Vec<_> = (0..4)
        .map(|lane| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                for n in (lane..DELIVERIES).step_by(4) {
                    let (body, headers) = gh_delivery(&format!("d-race-{n}"), &issue_body(n));
                    match n % 6 {
                        0 => drop(pipeline.handle_deferred(body, &headers).await.1),
                        1 => {
                            let work = pipeline.handle_deferred(body, &headers).await.1;
                            let task = tokio::spawn(work.unwrap());
                            tokio::task::yield_now().await;
                            task.abort();
                        }
                        _ => assert_eq!(pipeline.handle(body, &headers).await.status(), 200),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    assert!(report.drained);
    assert_eq!(report.dead_letter_failures, 0);

    let mut settled: std::collections::HashMap<String, u64> = done.snapshot();
    let entries = dead_letter.entries();
    for entry in &entries {
        *settled.entry(entry.event_id().to_owned()).or_default() += 1;
    }
    for n in 0..DELIVERIES {
        assert_eq!(
            settled.get(&format!("d-race-{n}")).copied(),
            Some(1),
            "d-race-{n} must succeed or be dead-lettered exactly once"
        );
    }
    let stats = pipeline.stats();
    assert_eq!(stats.best_effort_pending, 0);
    assert_eq!(
        stats.best_effort_succeeded + stats.best_effort_dead_lettered,
        DELIVERIES
    );
    let with_reason = |reason| entries.iter().filter(|e| e.reason == reason).count() as u64;
    assert_eq!(
        stats.best_effort_overflow,
        with_reason(DeadLetterReason::Overflow)
    );
    assert_eq!(
        stats.best_effort_dropped,
        with_reason(DeadLetterReason::BestEffortDropped)
    );
    assert!(stats.best_effort_overflow > 0, "the bound was reached");
    assert!(stats.best_effort_succeeded > 0, "{stats:?}");
}

/// A dead letter that stores entries only once its gate is open.
#[derive(Debug, Clone)]
struct SlowDeadLetter {
    gate: Arc<tokio::sync::Semaphore>,
    inner: MemoryDeadLetter,
}

#[async_trait::async_trait]
impl DeadLetter for SlowDeadLetter {
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
        let _pass = self.gate.acquire().await;
        self.inner.send(entry).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_waits_for_a_slow_dead_letter_instead_of_queueing_without_bound() {
    let handler_gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let dead_letter = SlowDeadLetter {
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        inner: MemoryDeadLetter::new(),
    };
    let pipeline = gated_pipeline(&handler_gate, &calls, dead_letter.clone(), 1);
    // One job held; the next delivery's work overflows into the dead-letter queue.
    deliver_all(&pipeline, "d-queued", 0..2).await;
    // The queue to the dead letter is full too: this delivery waits for it.
    let (body, headers) = gh_delivery("d-waits", &issue_body(2));
    let waiting = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move { pipeline.handle(body, &headers).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "back-pressure, not an unbounded queue"
    );
    assert!(pipeline.stats().best_effort_pending <= 3);

    dead_letter.gate.add_permits(100);
    let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered once the dead letter took the entry")
        .unwrap();
    assert_eq!(outcome.status(), 200);
    eventually("both overflows stored", || dead_letter.inner.len() == 2).await;
    let mut ids: Vec<_> = dead_letter
        .inner
        .entries()
        .iter()
        .map(|e| (e.event_id().to_owned(), e.reason))
        .collect();
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ids,
        [
            ("d-queued-1".to_owned(), DeadLetterReason::Overflow),
            ("d-waits".to_owned(), DeadLetterReason::Overflow),
        ]
    );
    assert_eq!(pipeline.stats().best_effort_overflow, 2);
    handler_gate.add_permits(10);
    assert!(pipeline.shutdown(Duration::from_secs(5)).await.drained);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn memory_dead_letter_is_bounded_by_body_bytes_too() {
    let failing = handler_fn(|_| async { Err::<(), _>(HandlerError::permanent(Injected("bad"))) });
    let size = issue_body(10).len();
    let dead_letter = MemoryDeadLetter::with_limits(100, 2 * size + 1);
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(failing))
        .memory_dead_letter(dead_letter.clone())
        .build()
        .unwrap();
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for n in 10..13 {
            let (body, headers) = gh_delivery(&format!("d-bytes-{n}"), &issue_body(n));
            statuses.push(pipeline.handle(body, &headers).await.status());
        }
        statuses
    };
    assert_eq!(statuses, [200, 200, 500], "the third body does not fit");
    assert_eq!((dead_letter.len(), dead_letter.bytes()), (2, 2 * size));
    assert!(format!("{dead_letter:?}").contains(&format!("max_bytes: {}", 2 * size + 1)));

    assert_eq!(dead_letter.drain().len(), 2);
    assert_eq!(dead_letter.bytes(), 0);
    let (body, headers) = gh_delivery("d-bytes-12", &issue_body(12));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
}

// --- Issue 8 A1: best-effort work and shutdown settle each job exactly once. ---

/// A best-effort handler that counts its calls, waits for a permit of `gate`,
/// then counts its completion and succeeds.
fn gated_counting(
    gate: &Arc<tokio::sync::Semaphore>,
    started: &Arc<AtomicUsize>,
    completed: &Arc<AtomicUsize>,
) -> impl Handler + 'static {
    let (gate, started, completed) = (gate.clone(), started.clone(), completed.clone());
    handler_fn(move |_| {
        let (gate, started, completed) = (gate.clone(), started.clone(), completed.clone());
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            let permit = gate.acquire().await;
            drop(permit);
            completed.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    })
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Regression (issue 8 A1): a handler that becomes ready just as shutdown
/// gives up used to return `Ok` after shutdown had dead-lettered its work.
#[test]
fn work_that_becomes_ready_during_shutdown_ends_in_exactly_one_state() {
    current_thread().block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let completed = Arc::new(AtomicUsize::new(0));
        let dead_letter = MemoryDeadLetter::new();
        let pipeline = pipeline_with(
            best_effort("mail", gated_counting(&gate, &started, &completed)),
            fast_policy(),
            &dead_letter,
        );
        let (body, headers) = gh_delivery("d-gate", &issue_body(1));
        let (_, work) = pipeline.handle_deferred(body, &headers).await;
        let task = tokio::spawn(work.expect("best-effort work"));
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }

        let report = pipeline.shutdown(Duration::from_millis(20)).await;
        gate.add_permits(1);
        let work_report = task.await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }

        let completed = completed.load(Ordering::SeqCst);
        let entries = dead_letter.entries();
        assert_eq!(
            completed + entries.len(),
            1,
            "done ({completed}) XOR dead-lettered ({})",
            entries.len()
        );
        assert_eq!(completed, 0, "the attempt was cancelled by shutdown");
        let entry = &entries[0];
        assert_eq!(
            (entry.event_id(), entry.reason, entry.attempts),
            ("d-gate", DeadLetterReason::ShutDown, 1),
            "the cancelled attempt counts"
        );
        let abandoned: Vec<_> = report
            .abandoned
            .iter()
            .map(|e| (e.event_id().to_owned(), e.attempts))
            .collect();
        assert_eq!(abandoned, [("d-gate".to_owned(), 1)]);
        assert_eq!(
            (work_report.abandoned, work_report.succeeded),
            (1, 0),
            "{work_report:?}"
        );
        let stats = pipeline.stats();
        assert_eq!(
            (
                stats.best_effort_succeeded,
                stats.best_effort_dead_lettered,
                stats.best_effort_pending
            ),
            (0, 1, 0)
        );
        assert_eq!(started.load(Ordering::SeqCst), 1);
    });
}

/// Regression (issue 8 A1): a retry whose backoff had passed when shutdown
/// gave up used to start after `shutdown` returned.
#[test]
fn no_retry_starts_after_shutdown_returned() {
    current_thread().block_on(async {
        let flaky = Flaky::default();
        let dead_letter = MemoryDeadLetter::new();
        let mut policy = backing_off(Duration::from_millis(5));
        policy.max_attempts = 10;
        policy.jitter = 0.0;
        let pipeline = pipeline_with(
            best_effort("webhook", flaky.handler(usize::MAX, false)),
            policy,
            &dead_letter,
        );
        let (body, headers) = gh_delivery("d-no-retry", &issue_body(1));
        assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
        while flaky.starts().is_empty() {
            tokio::task::yield_now().await;
        }
        // The backoff passes while the job's task cannot run (this thread is
        // the runtime's only one): the retry is due when shutdown gives up.
        std::thread::sleep(Duration::from_millis(30));

        let report = pipeline.shutdown(Duration::ZERO).await;
        let at_return = flaky.starts().len();
        tokio::time::sleep(Duration::from_millis(60)).await;

        assert_eq!(
            flaky.starts().len(),
            at_return,
            "an attempt started after shutdown returned"
        );
        let handed_back: Vec<_> = report
            .abandoned
            .iter()
            .map(|e| (e.event_id().to_owned(), e.reason, e.attempts as usize))
            .collect();
        assert_eq!(
            handed_back,
            [(
                "d-no-retry".to_owned(),
                DeadLetterReason::ShutDown,
                at_return
            )]
        );
        assert_eq!(dead_letter.len(), 1);
        let stats = pipeline.stats();
        assert_eq!(stats.best_effort_retries as usize, at_return - 1);
        assert_eq!(stats.best_effort_pending, 0);
    });
}

/// Counts, per event id, the attempts a handler saw start and the ones that
/// completed successfully.
#[derive(Clone, Default)]
struct Effects {
    started: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    completed: Tally,
}

impl Effects {
    fn started(&self, id: &str) -> usize {
        self.started.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    fn total_started(&self) -> usize {
        self.started.lock().unwrap().values().sum()
    }
}

/// Regression (issue 8 A1): hundreds of jobs finishing around shutdown's
/// deadline each end in exactly one state, and the reports and stats agree
/// with what ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_finishing_around_the_shutdown_deadline_each_end_once() {
    const JOBS: u64 = 300;
    let effects = Effects::default();
    // Every handler waits for `go`, so its timing is relative to shutdown.
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let work = {
        let (effects, go) = (effects.clone(), go.clone());
        handler_fn(move |event| {
            let (effects, go) = (effects.clone(), go.clone());
            async move {
                let n: u64 = event.id().trim_start_matches("d-many-").parse().unwrap();
                let call = {
                    let mut started = effects.started.lock().unwrap();
                    let calls = started.entry(event.id().to_owned()).or_default();
                    *calls += 1;
                    *calls as u64
                };
                drop(go.acquire().await);
                let mut rng = Rng::new(n * 31 + call);
                if rng.chance(25) {
                    tokio::task::yield_now().await;
                    return Err(HandlerError::transient(Injected("flaky")));
                }
                tokio::time::sleep(Duration::from_micros(rng.between(0, 40_000))).await;
                for _ in 0..rng.between(0, 4) {
                    tokio::task::yield_now().await;
                }
                effects.completed.record(&event);
                Ok(())
            }
        })
    };
    let dead_letter = MemoryDeadLetter::new();
    let mut policy = backing_off(Duration::from_millis(2));
    policy.max_attempts = 4;
    policy.jitter = 0.5;
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(best_effort("work", work))
        .retry_policy(policy)
        .memory_dead_letter(dead_letter.clone())
        .max_concurrent_best_effort(64)
        .max_pending_best_effort(1_000)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..JOBS {
        let (body, headers) = gh_delivery(&format!("d-many-{n}"), &issue_body(n));
        let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
        assert_eq!(outcome.status(), 200);
        tasks.push(tokio::spawn(work.expect("best-effort work")));
    }
    go.add_permits(tokio::sync::Semaphore::MAX_PERMITS);

    let report = pipeline.shutdown(Duration::from_millis(20)).await;
    let started_at_return = effects.total_started();
    let completed_at_return = effects.completed.total();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        effects.total_started(),
        started_at_return,
        "no attempt starts after shutdown returned"
    );
    assert_eq!(
        effects.completed.total(),
        completed_at_return,
        "no work completes after shutdown returned"
    );

    let mut work_reports = hookgate::BestEffortReport::default();
    for task in tasks {
        let one = task.await.unwrap();
        work_reports.succeeded += one.succeeded;
        work_reports.dead_lettered += one.dead_lettered;
        work_reports.dead_letter_refused += one.dead_letter_refused;
        work_reports.abandoned += one.abandoned;
        work_reports.refused += one.refused;
    }
    let entries = dead_letter.entries();
    let mut dead_lettered: std::collections::HashMap<String, usize> = Default::default();
    for entry in &entries {
        *dead_lettered
            .entry(entry.event_id().to_owned())
            .or_default() += 1;
    }
    for n in 0..JOBS {
        let id = format!("d-many-{n}");
        let done = effects.completed.count(&id) as usize;
        let dead = dead_lettered.get(&id).copied().unwrap_or(0);
        assert_eq!(
            done + dead,
            1,
            "{id}: done {done} times, dead-lettered {dead} times"
        );
    }
    for entry in &entries {
        assert_eq!(
            entry.attempts as usize,
            effects.started(entry.event_id()),
            "{} {:?}: attempts counts the attempts started",
            entry.event_id(),
            entry.reason
        );
    }
    let shut_down = entries
        .iter()
        .filter(|e| e.reason == DeadLetterReason::ShutDown)
        .count();
    let stats = pipeline.stats();
    assert_eq!(report.abandoned.len(), shut_down);
    assert_eq!(work_reports.abandoned, shut_down);
    assert_eq!(work_reports.refused, 0);
    assert_eq!(
        work_reports.succeeded + work_reports.dead_lettered + work_reports.abandoned,
        JOBS as usize
    );
    assert_eq!(stats.best_effort_succeeded, effects.completed.total());
    assert_eq!(stats.best_effort_succeeded as usize, work_reports.succeeded);
    assert_eq!(stats.best_effort_dead_lettered as usize, entries.len());
    assert_eq!(
        stats.best_effort_succeeded + stats.best_effort_dead_lettered + stats.dead_letter_failures,
        JOBS
    );
    let jobs_started = (0..JOBS)
        .filter(|n| effects.started(&format!("d-many-{n}")) > 0)
        .count();
    assert_eq!(
        stats.best_effort_retries as usize,
        effects.total_started() - jobs_started,
        "retries are the attempts after the first"
    );
    assert_eq!(stats.best_effort_pending, 0);
    assert!(
        stats.best_effort_succeeded > 0 && shut_down > 0,
        "the deadline cut through the work: {stats:?}"
    );
}

/// A job whose task stops being polled (a host holding a `BestEffort` it no
/// longer drives, a runtime shutting down) cannot hold shutdown: shutdown
/// settles it once, and the job never resumes its handler afterwards.
#[tokio::test]
async fn work_no_longer_polled_is_settled_once_by_shutdown() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = pipeline_with(
        best_effort("mail", gated_counting(&gate, &started, &completed)),
        fast_policy(),
        &dead_letter,
    );
    let mut held = Vec::new();
    for n in 0..2 {
        let (body, headers) = gh_delivery(&format!("d-held-{n}"), &issue_body(n));
        let (_, work) = pipeline.handle_deferred(body, &headers).await;
        let mut work = work.expect("best-effort work");
        // Polled until its attempt waits for the gate, then left alone.
        let polled = tokio::time::timeout(Duration::from_millis(5), &mut work).await;
        assert!(polled.is_err(), "waiting for the gate");
        held.push(work);
    }
    assert_eq!(started.load(Ordering::SeqCst), 2);

    let report = pipeline.shutdown(Duration::from_millis(10)).await;
    let mut abandoned: Vec<_> = report
        .abandoned
        .iter()
        .map(|e| (e.event_id().to_owned(), e.reason, e.attempts))
        .collect();
    abandoned.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        abandoned,
        [
            ("d-held-0".to_owned(), DeadLetterReason::ShutDown, 1),
            ("d-held-1".to_owned(), DeadLetterReason::ShutDown, 1),
        ]
    );
    assert_eq!(report.still_running, 0);

    // Polled again with its gate open, the work finishes without resuming
    // the handler; dropped, it does not dead-letter a second time.
    gate.add_permits(10);
    let dropped = held.pop().unwrap();
    let late = held.pop().unwrap().await;
    drop(dropped);
    tokio::task::yield_now().await;
    assert_eq!((late.abandoned, late.succeeded), (1, 0));
    assert_eq!(completed.load(Ordering::SeqCst), 0);
    assert_eq!(dead_letter.len(), 2);
    let stats = pipeline.stats();
    assert_eq!(
        (
            stats.best_effort_dead_lettered,
            stats.best_effort_dropped,
            stats.best_effort_succeeded,
            stats.best_effort_pending
        ),
        (2, 0, 0, 0)
    );
}

/// A handler that blocks its thread inside a poll cannot be stopped: shutdown
/// returns anyway, reports it as still running, and the job settles itself
/// (here: succeeded) once the poll returns, never also in the dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_blocking_its_thread_is_reported_and_settles_itself_once() {
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = Arc::new(Mutex::new(blocked));
    let started = Arc::new(AtomicUsize::new(0));
    let blocking = {
        let (blocked, started) = (blocked.clone(), started.clone());
        handler_fn(move |_| {
            let (blocked, started) = (blocked.clone(), started.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                // Blocks the worker thread until the test releases it.
                blocked.lock().unwrap().recv().unwrap();
                Ok::<(), HandlerError>(())
            }
        })
    };
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = pipeline_with(best_effort("sync", blocking), fast_policy(), &dead_letter);
    let (body, headers) = gh_delivery("d-blocking", &issue_body(1));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
    eventually("the blocking attempt", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;

    let report = pipeline.shutdown(Duration::from_millis(10)).await;
    assert!(!report.drained);
    assert!(report.abandoned.is_empty(), "{:?}", report.abandoned);
    assert_eq!(report.still_running, 1);

    release.send(()).unwrap();
    eventually("the job settled", || {
        pipeline.stats().best_effort_pending == 0
    })
    .await;
    let stats = pipeline.stats();
    assert_eq!(
        (stats.best_effort_succeeded, stats.best_effort_dead_lettered),
        (1, 0)
    );
    assert!(dead_letter.is_empty());
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

/// A waker may be the last handle of whatever it wakes, here other
/// best-effort work: the pending table never releases one under its lock
/// (the dropped work's guard takes that lock), so this neither deadlocks
/// nor loses the dropped work.
#[test]
fn a_stored_waker_owning_other_work_is_released_outside_the_lock() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Wake, Waker};

    struct Owner(#[allow(dead_code)] Mutex<Option<hookgate::BestEffort>>);
    impl Wake for Owner {
        fn wake(self: Arc<Self>) {}
    }

    let (finished, finishing) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        current_thread().block_on(async {
            // Never ready, and keeps no waker.
            let (started, stuck) = numbered(|_, _| std::future::pending());
            let dead_letter = MemoryDeadLetter::new();
            let pipeline = pipeline_with(best_effort("stuck", stuck), fast_policy(), &dead_letter);
            let mut works = Vec::new();
            for n in 0..2 {
                let (body, headers) = gh_delivery(&format!("d-waker-{n}"), &issue_body(n));
                works.push(pipeline.handle_deferred(body, &headers).await.1.unwrap());
            }
            let owned = works.pop().unwrap();
            let mut work = works.pop().unwrap();
            let waker = Waker::from(Arc::new(Owner(Mutex::new(Some(owned)))));
            let polled = Pin::new(&mut work).poll(&mut Context::from_waker(&waker));
            assert!(polled.is_pending());
            assert_eq!(started.load(Ordering::SeqCst), 1);
            drop(waker);
            // Dropping the polled work drops its attempt, then its guard
            // takes it out of the table with the only handle of `owned`.
            drop(work);

            eventually("both works dead-lettered", || dead_letter.len() == 2).await;
            let mut entries: Vec<_> = dead_letter
                .entries()
                .iter()
                .map(|e| (e.event_id().to_owned(), e.reason, e.attempts))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                entries,
                [
                    (
                        "d-waker-0".to_owned(),
                        DeadLetterReason::BestEffortDropped,
                        1
                    ),
                    (
                        "d-waker-1".to_owned(),
                        DeadLetterReason::BestEffortDropped,
                        0
                    ),
                ]
            );
            assert_eq!(pipeline.stats().best_effort_pending, 0);
        });
        finished.send(()).unwrap();
    });
    finishing
        .recv_timeout(Duration::from_secs(10))
        .expect("finished, without a deadlock");
}

#[tokio::test]
async fn work_dropped_outside_a_runtime_reaches_the_dead_letter_with_the_next_registration() {
    let dead_letter = MemoryDeadLetter::new();
    let mut registry = Registry::new();
    registry.best_effort(
        "github",
        "*",
        "notify",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = pipeline_with(registry, fast_policy(), &dead_letter);
    let (body, headers) = gh_delivery("d-outside", &issue_body(1));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    let work = work.expect("one job");
    // Dropped on a thread with no runtime: nothing can send the entry yet.
    std::thread::spawn(move || drop(work)).join().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(dead_letter.len(), 0, "no runtime flushed it");
    assert_eq!(pipeline.stats().best_effort_pending, 1, "held as an orphan");

    // The next registration, in the runtime, sends it.
    let (body, headers) = gh_delivery("d-next", &issue_body(2));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    eventually("the orphan in the dead letter", || dead_letter.len() == 1).await;
    let entry = &dead_letter.entries()[0];
    assert_eq!(
        (entry.event_id(), entry.reason),
        ("d-outside", DeadLetterReason::BestEffortDropped)
    );
    let report = work.unwrap().await;
    assert_eq!(report.succeeded, 1);
}

#[tokio::test]
async fn a_builder_and_the_best_effort_runner_debug_as_their_settings() {
    let builder = Pipeline::builder().verifier(github()).store(store());
    let debug = format!("{builder:?}");
    for part in [
        "PipelineBuilder",
        "verifiers",
        "GitHub",
        "store",
        "MemoryStore",
        "registry",
    ] {
        assert!(debug.contains(part), "{part} missing from {debug}");
    }
    assert!(!debug.contains(GH_SECRET), "{debug}");
    let pipeline = builder.build().unwrap();
    let debug = format!("{pipeline:?}");
    for part in ["BestEffortRunner", "policy", "max_pending: 1024", "held: 0"] {
        assert!(debug.contains(part), "{part} missing from {debug}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_last_failed_attempt_goes_to_the_dead_letter_without_another_backoff() {
    let dead_letter = MemoryDeadLetter::new();
    let mut registry = Registry::new();
    registry.best_effort(
        "github",
        "*",
        "smtp",
        handler_fn(|_| async {
            Err::<(), _>(HandlerError::transient(Injected("smtp unavailable")))
        }),
    );
    let mut policy = backing_off(Duration::from_secs(10));
    policy.max_attempts = 2;
    policy.jitter = 0.0;
    let pipeline = pipeline_with(registry, policy, &dead_letter);
    let (body, headers) = gh_delivery("d-last", &issue_body(1));
    let (_, work) = pipeline.handle_deferred(body, &headers).await;
    let began = tokio::time::Instant::now();
    let report = work.unwrap().await;
    assert_eq!(report.dead_lettered, 1);
    // One backoff of 10 s between the two attempts, none after the last.
    assert_eq!(began.elapsed(), Duration::from_secs(10));
    assert_eq!(dead_letter.entries()[0].attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_flush_that_outlives_the_start_of_shutdown_leaves_the_rest_to_its_report() {
    let dead_letter = SlowDeadLetter {
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        inner: MemoryDeadLetter::new(),
    };
    let mut registry = Registry::new();
    registry.best_effort(
        "github",
        "*",
        "notify",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .dead_letter(dead_letter.clone())
        .build()
        .unwrap();
    // A's work is dropped: a background flush takes it and waits on the gate.
    let (body, headers) = gh_delivery("d-a", &issue_body(1));
    drop(pipeline.handle_deferred(body, &headers).await.1);
    tokio::time::sleep(Duration::from_millis(1)).await;
    // B's work is held and never run: shutdown will cancel it.
    let (body, headers) = gh_delivery("d-b", &issue_body(2));
    let held = pipeline.handle_deferred(body, &headers).await.1;
    let shutdown = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move { pipeline.shutdown(Duration::from_millis(50)).await })
    };
    // After the deadline B is cancelled; during the grace the gate opens, and
    // the flush, done with A, must leave B to shutdown.
    tokio::time::sleep(Duration::from_millis(80)).await;
    dead_letter.gate.add_permits(10);
    let report = shutdown.await.unwrap();
    let abandoned: Vec<_> = report
        .abandoned
        .iter()
        .map(|e| (e.event_id().to_owned(), e.reason))
        .collect();
    assert_eq!(abandoned, [("d-b".to_owned(), DeadLetterReason::ShutDown)]);
    let mut stored: Vec<_> = dead_letter
        .inner
        .entries()
        .iter()
        .map(|e| e.event_id().to_owned())
        .collect();
    stored.sort();
    assert_eq!(stored, ["d-a", "d-b"], "each entry sent once");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_dropped_while_sending_leaves_the_rest_to_a_background_flush() {
    let dead_letter = SlowDeadLetter {
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        inner: MemoryDeadLetter::new(),
    };
    let mut registry = Registry::new();
    registry.best_effort(
        "github",
        "*",
        "notify",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .dead_letter(dead_letter.clone())
        .build()
        .unwrap();
    // Two held jobs, never run: shutdown cancels both and starts sending them.
    let mut held = Vec::new();
    for n in 0..2 {
        let (body, headers) = gh_delivery(&format!("d-{n}"), &issue_body(n));
        held.push(pipeline.handle_deferred(body, &headers).await.1);
    }
    let shutdown = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move { pipeline.shutdown(Duration::from_millis(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!shutdown.is_finished(), "blocked on the dead letter");
    shutdown.abort();
    assert!(shutdown.await.unwrap_err().is_cancelled());
    dead_letter.gate.add_permits(10);
    eventually("both entries in the dead letter", || {
        dead_letter.inner.len() == 2
    })
    .await;
    assert_eq!(pipeline.stats().best_effort_pending, 0);
    drop(held);
}

#[tokio::test]
async fn a_dead_letter_refusing_at_shutdown_is_counted_in_the_report() {
    let mut registry = Registry::new();
    registry.best_effort(
        "github",
        "*",
        "notify",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .dead_letter(Refusing)
        .build()
        .unwrap();
    let mut held = Vec::new();
    for n in 0..3 {
        let (body, headers) = gh_delivery(&format!("d-{n}"), &issue_body(n));
        held.push(pipeline.handle_deferred(body, &headers).await.1);
    }
    let report = pipeline.shutdown(Duration::from_millis(10)).await;
    assert_eq!(
        (report.abandoned.len(), report.dead_letter_failures),
        (3, 3)
    );
    assert_eq!(pipeline.stats().dead_letter_failures, 3);
    drop(held);
}

#[tokio::test]
async fn pending_counts_held_jobs_orphans_and_entries_being_sent() {
    let dead_letter = SlowDeadLetter {
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
        inner: MemoryDeadLetter::new(),
    };
    let mut registry = Registry::new();
    registry.best_effort(
        "github",
        "*",
        "notify",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .dead_letter(dead_letter.clone())
        .build()
        .unwrap();
    let mut held = Vec::new();
    let (body, headers) = gh_delivery("d-orphan", &issue_body(0));
    let orphan = pipeline.handle_deferred(body, &headers).await.1.unwrap();
    std::thread::spawn(move || drop(orphan)).join().unwrap();
    for n in 1..=2 {
        let (body, headers) = gh_delivery(&format!("d-{n}"), &issue_body(n));
        held.push(pipeline.handle_deferred(body, &headers).await.1);
    }
    assert_eq!(
        pipeline.stats().best_effort_pending,
        3,
        "one orphan and two jobs"
    );
    // The next registration flushes the orphan, which waits on the dead letter.
    let (body, headers) = gh_delivery("d-3", &issue_body(3));
    held.push(pipeline.handle_deferred(body, &headers).await.1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        pipeline.stats().best_effort_pending,
        4,
        "three jobs and one entry being sent"
    );
    dead_letter.gate.add_permits(10);
    eventually("the orphan stored", || dead_letter.inner.len() == 1).await;
    assert_eq!(pipeline.stats().best_effort_pending, 3);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn work_moved_to_another_task_is_woken_there_when_shutdown_cancels_it() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let pipeline = gated_pipeline(&gate, &calls, MemoryDeadLetter::new(), 16);
    let (body, headers) = gh_delivery("d-moved", &issue_body(1));
    let mut work = pipeline.handle_deferred(body, &headers).await.1.unwrap();
    // Polled first by one task, which then hands it over and ends.
    let work = tokio::spawn(async move {
        assert!(tokio::time::timeout(Duration::from_millis(1), &mut work)
            .await
            .is_err());
        Some(work) // handed over (not awaited here)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "its handler is running");
    let running = tokio::spawn(work);
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Shutdown wakes the task polling it now: the job settles itself at once,
    // not after the grace that covers tasks that are never polled again.
    let began = tokio::time::Instant::now();
    let report = pipeline.shutdown(Duration::from_millis(10)).await;
    assert_eq!(
        began.elapsed(),
        Duration::from_millis(10),
        "no grace needed"
    );
    assert_eq!(report.abandoned.len(), 1);
    assert_eq!(report.still_running, 0);
    assert_eq!(running.await.unwrap().abandoned, 1);
}

#[tokio::test]
async fn handed_back_work_knows_how_many_jobs_it_holds() {
    let mut registry = Registry::new();
    for name in ["email", "slack", "crm"] {
        registry.best_effort(
            "github",
            "*",
            name,
            handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
        );
    }
    let pipeline = pipeline_with(registry, fast_policy(), &MemoryDeadLetter::new());
    let (body, headers) = gh_delivery("d-len", &issue_body(1));
    let work = pipeline.handle_deferred(body, &headers).await.1.unwrap();
    assert_eq!((work.len(), work.is_empty(), work.refused()), (3, false, 0));
    assert_eq!(
        format!("{work:?}"),
        "BestEffort { handlers: 3, refused: 0 }"
    );
    assert_eq!(work.await.succeeded, 3);
}
