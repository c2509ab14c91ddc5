//! Exactly-once critical work under concurrent, repeated and failing deliveries,
//! and what happens to a key when a critical attempt panics, times out or loses
//! its lease.
#![cfg(feature = "tokio")]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::pipeline::*;
use hookgate::store::MemoryStore;
use hookgate::{
    handler_fn, CriticalFailure, Event, FixedClock, HandlerError, Headers, Outcome, OutcomeKind,
    Pipeline,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

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
    let (calls, handler) = numbered(|call, _| async move {
        if call == 0 {
            panic!("index out of bounds");
        }
        Ok(())
    });
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(handler))
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-panic", &issue_body(1));

    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status(), 500);
    assert!(matches!(
        &outcome.kind,
        OutcomeKind::CriticalFailed { failure: CriticalFailure::Panic(message), .. }
            if message == "index out of bounds"
    ));
    let retry = pipeline.handle(body, &headers).await;
    assert_eq!(
        retry.status(),
        200,
        "the key was released and the pipeline still works"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn critical_handler_past_the_deadline_gets_500_and_its_key_released() {
    let finished = Tally::default();
    let recorder = finished.clone();
    let (_, handler) = numbered(move |call, event| {
        let finished = recorder.clone();
        async move {
            if call == 0 {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            finished.record(&event);
            Ok(())
        }
    });
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(handler))
        .critical_deadline("github", Duration::from_millis(50))
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-slow", &issue_body(2));

    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status(), 500);
    assert!(matches!(
        outcome.kind,
        OutcomeKind::CriticalFailed { failure: CriticalFailure::Timeout(d), .. } if d == Duration::from_millis(50)
    ));
    let retry = pipeline.handle(body, &headers).await;
    assert_eq!(retry.status(), 200, "released at once, not after the lease");
    assert_eq!(
        finished.count("d-slow"),
        1,
        "the cancelled attempt never finished"
    );
}

/// One delivery to a pipeline whose store runs on a clock the test moves, so a
/// lease can expire while an attempt is still running. The critical handler's
/// n-th call (from 0) waits for `gates[n]`, then records success; later calls run
/// straight through.
struct LeaseScene {
    clock: FixedClock,
    entered: Arc<Notify>,
    tally: Tally,
    pipeline: Pipeline,
    body: Bytes,
    headers: Headers,
}

impl LeaseScene {
    fn new(id: &str, gates: Vec<Arc<Notify>>, deadline: Duration) -> Self {
        let clock = FixedClock::at_unix(1_700_000_000);
        let entered = Arc::new(Notify::new());
        let tally = Tally::default();
        let (signal, record) = (entered.clone(), tally.clone());
        let (_, handler) = numbered(move |call, event| {
            let (gates, entered, tally) = (gates.clone(), signal.clone(), record.clone());
            async move {
                entered.notify_one();
                if let Some(gate) = usize::try_from(call).ok().and_then(|c| gates.get(c)) {
                    gate.notified().await;
                }
                tally.record(&event);
                Ok(())
            }
        });
        let pipeline = Pipeline::builder()
            .verifier(github())
            .store(MemoryStore::builder().clock(clock.clone()).build())
            .registry(registry_with_critical(handler))
            .critical_deadline("github", deadline)
            .lease("github", Duration::from_secs(30))
            .build()
            .unwrap();
        let (body, headers) = gh_delivery(id, &issue_body(3));
        Self {
            clock,
            entered,
            tally,
            pipeline,
            body,
            headers,
        }
    }

    /// Starts an attempt in its own task and waits until its handler runs.
    async fn start_attempt(&self) -> JoinHandle<Outcome> {
        let (pipeline, body, headers) = (
            self.pipeline.clone(),
            self.body.clone(),
            self.headers.clone(),
        );
        let attempt = tokio::spawn(async move { pipeline.handle(body, &headers).await });
        self.entered.notified().await;
        attempt
    }

    async fn deliver(&self) -> Outcome {
        self.pipeline.handle(self.body.clone(), &self.headers).await
    }

    /// Moves the store's clock past the lease.
    fn expire_lease(&self) {
        self.clock.advance(Duration::from_secs(31));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_attempt_cannot_release_a_newer_attempts_key() {
    // Attempt A waits forever; A's deadline leaves B ample time to claim and
    // complete first, even under load.
    let scene = LeaseScene::new(
        "d-stale",
        vec![Arc::new(Notify::new())],
        Duration::from_secs(1),
    );
    let a = scene.start_attempt().await;
    // A's lease expires (say, its instance froze); attempt B takes the key and completes.
    scene.expire_lease();
    assert_eq!(scene.deliver().await.status(), 200);

    // A passes its deadline and releases with its old token: refused by the store.
    let a = a.await.unwrap();
    assert!(matches!(
        a.kind,
        OutcomeKind::CriticalFailed {
            failure: CriticalFailure::Timeout(_),
            ..
        }
    ));
    let c = scene.deliver().await;
    assert!(
        matches!(c.kind, OutcomeKind::Duplicate),
        "B's completion stands: {c:?}"
    );
    assert_eq!(scene.tally.count("d-stale"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_that_lost_its_lease_gets_500_and_cannot_complete_the_newer_claim() {
    let (gate_a, gate_b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let scene = LeaseScene::new(
        "d-lease",
        vec![gate_a.clone(), gate_b.clone()],
        Duration::from_secs(10),
    );
    let a = scene.start_attempt().await;
    scene.expire_lease();
    let b = scene.start_attempt().await;

    // A finishes its work late: its completion is refused, so it must not answer 2xx.
    gate_a.notify_one();
    let a = a.await.unwrap();
    assert_eq!(a.status(), 500);
    assert!(matches!(
        a.kind,
        OutcomeKind::CriticalFailed {
            failure: CriticalFailure::LeaseLost(_),
            ..
        }
    ));
    // ... and B still holds the key.
    let c = scene.deliver().await;
    assert!(matches!(c.kind, OutcomeKind::InFlight { .. }), "{c:?}");

    gate_b.notify_one();
    assert_eq!(b.await.unwrap().status(), 200);
    assert!(matches!(scene.deliver().await.kind, OutcomeKind::Duplicate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_attempt_holds_the_key_until_its_lease_ends() {
    // The first attempt waits forever: its request is cancelled mid-way.
    let scene = LeaseScene::new(
        "d-cancelled",
        vec![Arc::new(Notify::new())],
        Duration::from_secs(10),
    );
    let cancelled = scene.start_attempt().await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());

    let early = scene.deliver().await;
    assert_eq!(early.status(), 409, "nothing was recorded as done");
    scene.expire_lease();
    let after_lease = scene.deliver().await;
    assert_eq!(after_lease.status(), 200);
    assert_eq!(scene.tally.count("d-cancelled"), 1);
}
