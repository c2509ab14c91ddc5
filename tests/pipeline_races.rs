//! Exactly-once critical work under concurrent, repeated and failing deliveries,
//! and what happens to a key when a critical attempt panics, times out or loses
//! its lease.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::pipeline::*;
use hookgate::store::MemoryStore;
use hookgate::{
    handler_fn, CriticalFailure, Event, FixedClock, HandlerError, Headers, OutcomeKind, Pipeline,
};
use tokio::sync::{Notify, Semaphore};

const EVENTS: u64 = 10_000;
const CONCURRENCY: usize = 64;

/// The critical handler of the race: fails transiently 30 % of the time (decided
/// by a hash of a call counter, so runs replay), checks that no two attempts at one
/// event overlap, and records each success.
#[derive(Clone, Default)]
struct RaceHandler {
    calls: Arc<AtomicU64>,
    running: Arc<Mutex<HashSet<String>>>,
    overlaps: Arc<AtomicU64>,
    succeeded: Tally,
}

impl RaceHandler {
    async fn run(&self, event: Event) -> Result<(), HandlerError> {
        if !self.running.lock().unwrap().insert(event.id().to_owned()) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        // Give concurrent copies of the delivery a chance to collide.
        tokio::task::yield_now().await;
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = Rng::new(call).chance(30);
        if !fail {
            self.succeeded.record(&event);
        }
        self.running.lock().unwrap().remove(event.id());
        if fail {
            Err(HandlerError::transient(Injected("injected failure")))
        } else {
            Ok(())
        }
    }
}

/// One provider delivery: sent again until it gets a 2xx, as providers retry.
async fn deliver_until_acknowledged(pipeline: Pipeline, body: Bytes, headers: Arc<Headers>) -> u32 {
    for attempt in 1..=10_000u32 {
        let outcome = pipeline.handle(body.clone(), &headers).await;
        if outcome.is_success() {
            return attempt;
        }
        assert!(
            matches!(
                outcome.kind,
                OutcomeKind::CriticalFailed { .. } | OutcomeKind::InFlight { .. }
            ),
            "unexpected {outcome:?}"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    panic!("a delivery was never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_succeeds_exactly_once_under_repeats_races_and_failures() {
    let handler = RaceHandler::default();
    let critical = {
        let handler = handler.clone();
        handler_fn(move |event| {
            let handler = handler.clone();
            async move { handler.run(event).await }
        })
    };
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(MemoryStore::builder().capacity(2 * EVENTS as usize).build())
        .registry(registry_with_critical(critical))
        .build()
        .unwrap();

    // First wave: every event once, with some repeats right beside it (delivered
    // concurrently); second wave: the other repeats, after the first wave is done.
    let mut rng = Rng::new(42);
    let mut now = Vec::new();
    let mut later = Vec::new();
    let mut repeated = 0;
    for n in 0..EVENTS {
        let (body, headers) = gh_delivery(&format!("race-{n}"), &issue_body(n));
        let headers = Arc::new(headers);
        now.push((body.clone(), headers.clone()));
        if rng.chance(30) {
            repeated += 1;
            for _ in 1..rng.between(2, 5) {
                let copy = (body.clone(), headers.clone());
                if rng.chance(50) {
                    now.push(copy);
                } else {
                    later.push(copy);
                }
            }
        }
    }
    assert!((2_700..=3_300).contains(&repeated), "about 30 % repeated");
    let deliveries = now.len() + later.len();

    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut provider_retries = 0u64;
    for wave in [now, later] {
        let mut tasks = Vec::with_capacity(wave.len());
        for (body, headers) in wave {
            let permit = limit.clone().acquire_owned().await.unwrap();
            let pipeline = pipeline.clone();
            tasks.push(tokio::spawn(async move {
                let attempts = deliver_until_acknowledged(pipeline, body, headers).await;
                drop(permit);
                attempts
            }));
        }
        for task in tasks {
            provider_retries += u64::from(task.await.unwrap() - 1);
        }
    }

    let counts = handler.succeeded.snapshot();
    assert_eq!(counts.len() as u64, EVENTS, "no event lost");
    let wrong: Vec<_> = counts.iter().filter(|(_, &c)| c != 1).collect();
    assert!(
        wrong.is_empty(),
        "critical work ran more than once: {wrong:?}"
    );
    assert_eq!(
        handler.overlaps.load(Ordering::SeqCst),
        0,
        "two attempts at one event overlapped"
    );

    let stats = pipeline.stats();
    assert_eq!(stats.processed, EVENTS);
    assert!(
        stats.critical_failed > 0 && provider_retries > 0,
        "failures were injected and retried"
    );
    assert!(stats.duplicate > 0, "repeats were answered as duplicates");
    assert!(
        stats.in_flight > 0,
        "concurrent copies collided on the lease"
    );
    assert_eq!(
        stats.processed + stats.duplicate,
        deliveries as u64,
        "every delivery was acknowledged exactly once"
    );
}

#[tokio::test]
async fn panicking_critical_handler_gets_500_and_its_key_released() {
    let calls = Arc::new(AtomicU64::new(0));
    let handler = {
        let calls = calls.clone();
        handler_fn(move |_| {
            let calls = calls.clone();
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("index out of bounds");
                }
                Ok::<(), HandlerError>(())
            }
        })
    };
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(handler))
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-panic", &issue_body(1));

    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status, 500);
    assert!(matches!(
        &outcome.kind,
        OutcomeKind::CriticalFailed { failure: CriticalFailure::Panic(message), .. }
            if message == "index out of bounds"
    ));
    let retry = pipeline.handle(body, &headers).await;
    assert_eq!(
        retry.status, 200,
        "the key was released and the pipeline still works"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn critical_handler_past_the_deadline_gets_500_and_its_key_released() {
    let calls = Arc::new(AtomicU64::new(0));
    let finished = Tally::default();
    let handler = {
        let (calls, finished) = (calls.clone(), finished.clone());
        handler_fn(move |event| {
            let (calls, finished) = (calls.clone(), finished.clone());
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                finished.record(&event);
                Ok::<(), HandlerError>(())
            }
        })
    };
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(handler))
        .critical_deadline("github", Duration::from_millis(50))
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-slow", &issue_body(2));

    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status, 500);
    assert!(matches!(
        outcome.kind,
        OutcomeKind::CriticalFailed { failure: CriticalFailure::Timeout(d), .. } if d == Duration::from_millis(50)
    ));
    let retry = pipeline.handle(body, &headers).await;
    assert_eq!(retry.status, 200, "released at once, not after the lease");
    assert_eq!(
        finished.count("d-slow"),
        1,
        "the cancelled attempt never finished"
    );
}

/// A pipeline whose store runs on a clock the test moves, so a lease can expire
/// while an attempt is still running.
fn pipeline_on_clock(
    clock: &FixedClock,
    handler: impl hookgate::Handler + 'static,
    deadline: Duration,
) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(MemoryStore::builder().clock(clock.clone()).build())
        .registry(registry_with_critical(handler))
        .critical_deadline("github", deadline)
        .lease("github", Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A handler whose n-th call (from 0) waits for `gates[n]`, then records success.
fn gated(gates: Vec<Arc<Notify>>, entered: Arc<Notify>, tally: Tally) -> impl hookgate::Handler {
    let calls = Arc::new(AtomicU64::new(0));
    handler_fn(move |event| {
        let (gates, entered, tally, calls) =
            (gates.clone(), entered.clone(), tally.clone(), calls.clone());
        async move {
            let call = calls.fetch_add(1, Ordering::SeqCst) as usize;
            entered.notify_one();
            if let Some(gate) = gates.get(call) {
                gate.notified().await;
            }
            tally.record(&event);
            Ok::<(), HandlerError>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_attempt_cannot_release_a_newer_attempts_key() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let entered = Arc::new(Notify::new());
    let tally = Tally::default();
    // Call 0 (attempt A) waits forever; later calls run straight through.
    let handler = gated(
        vec![Arc::new(Notify::new())],
        entered.clone(),
        tally.clone(),
    );
    let pipeline = pipeline_on_clock(&clock, handler, Duration::from_millis(300));
    let (body, headers) = gh_delivery("d-stale", &issue_body(3));

    let a = {
        let (pipeline, body, headers) = (pipeline.clone(), body.clone(), headers.clone());
        tokio::spawn(async move { pipeline.handle(body, &headers).await })
    };
    entered.notified().await;
    // A's lease expires (say, its instance froze); attempt B takes the key and completes.
    clock.advance(Duration::from_secs(31));
    let b = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(b.status, 200);

    // A passes its deadline and releases with its old token: refused by the store.
    let a = a.await.unwrap();
    assert!(matches!(
        a.kind,
        OutcomeKind::CriticalFailed {
            failure: CriticalFailure::Timeout(_),
            ..
        }
    ));
    let c = pipeline.handle(body, &headers).await;
    assert!(
        matches!(c.kind, OutcomeKind::Duplicate),
        "B's completion stands: {c:?}"
    );
    assert_eq!(tally.count("d-stale"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_that_lost_its_lease_gets_500_and_cannot_complete_the_newer_claim() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let entered = Arc::new(Notify::new());
    let (gate_a, gate_b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let tally = Tally::default();
    let handler = gated(
        vec![gate_a.clone(), gate_b.clone()],
        entered.clone(),
        tally.clone(),
    );
    let pipeline = pipeline_on_clock(&clock, handler, Duration::from_secs(10));
    let (body, headers) = gh_delivery("d-lease", &issue_body(4));
    let spawn = || {
        let (pipeline, body, headers) = (pipeline.clone(), body.clone(), headers.clone());
        tokio::spawn(async move { pipeline.handle(body, &headers).await })
    };

    let a = spawn();
    entered.notified().await;
    clock.advance(Duration::from_secs(31));
    let b = spawn();
    entered.notified().await;

    // A finishes its work late: its completion is refused, so it must not answer 2xx.
    gate_a.notify_one();
    let a = a.await.unwrap();
    assert_eq!(a.status, 500);
    assert!(matches!(
        a.kind,
        OutcomeKind::CriticalFailed {
            failure: CriticalFailure::LeaseLost(_),
            ..
        }
    ));
    // ... and B still holds the key.
    let c = pipeline.handle(body.clone(), &headers).await;
    assert!(matches!(c.kind, OutcomeKind::InFlight { .. }), "{c:?}");

    gate_b.notify_one();
    assert_eq!(b.await.unwrap().status, 200);
    let d = pipeline.handle(body, &headers).await;
    assert!(matches!(d.kind, OutcomeKind::Duplicate));
}
