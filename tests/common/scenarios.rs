//! The scenarios every durable store must pass, driven through real pipelines
//! (GitHub-signed deliveries, so every delivery is verified as in production):
//! exactly-once across instances, crash recovery, and outages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate::store::conformance;
use hookgate::{
    handler_fn, FencingToken, Fingerprint, HandlerError, Headers, IdempotencyStore, OutcomeKind,
    Pipeline, Registry, StoreError,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::pipeline::{gh_delivery, github, issue_body, Rng};
use super::proxy::Proxy;

/// A store shared by the pipelines of a scenario.
pub type Store = Arc<dyn IdempotencyStore>;

/// A signed GitHub delivery: same `id` and `run`, same bytes.
#[derive(Clone)]
pub struct Delivery {
    pub id: String,
    pub body: Bytes,
    pub headers: Arc<Headers>,
}

impl Delivery {
    pub fn new(run: &str, n: usize) -> Self {
        let id = format!("{run}-{n}");
        let (body, headers) = gh_delivery(&id, &issue_body(n as u64));
        Delivery {
            id,
            body,
            headers: Arc::new(headers),
        }
    }

    /// The idempotency key the pipeline claims for this delivery.
    pub fn key(&self) -> String {
        format!("github:{}", self.id)
    }

    pub async fn send(&self, pipeline: &Pipeline) -> hookgate::Outcome {
        pipeline.handle(self.body.clone(), &self.headers).await
    }
}

/// How often each event's critical handler ran, and succeeded.
#[derive(Debug, Default)]
pub struct Ledger {
    runs: Mutex<HashMap<String, (u32, u32)>>,
    executions: AtomicU64,
}

impl Ledger {
    fn started(&self, id: &str) -> u64 {
        self.runs
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .0 += 1;
        self.executions.fetch_add(1, Ordering::Relaxed)
    }

    fn succeeded(&self, id: &str) {
        self.runs
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .1 += 1;
    }

    /// (started, succeeded) for one event id.
    pub fn of(&self, id: &str) -> (u32, u32) {
        self.runs
            .lock()
            .unwrap()
            .get(id)
            .copied()
            .unwrap_or_default()
    }
}

/// Per-provider limits of a scenario's pipelines.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Duration,
    pub lease: Duration,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        deadline: Duration::from_secs(5),
        lease: Duration::from_secs(15),
    };
}

/// A pipeline on `store` whose one critical handler records every run in
/// `ledger` and fails transiently when `fail` says so (given the run's global
/// sequence number).
pub fn pipeline(
    store: Store,
    ledger: Arc<Ledger>,
    limits: Limits,
    fail: impl Fn(u64) -> bool + Send + Sync + 'static,
) -> Pipeline {
    let fail = Arc::new(fail);
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "*",
        "record",
        handler_fn(move |event| {
            let ledger = Arc::clone(&ledger);
            let fail = Arc::clone(&fail);
            async move {
                let id = event.id().to_owned();
                let sequence = ledger.started(&id);
                // Let concurrent duplicates overlap with this attempt.
                tokio::task::yield_now().await;
                if fail(sequence) {
                    return Err(HandlerError::transient("injected transient failure"));
                }
                ledger.succeeded(&id);
                Ok(())
            }
        }),
    );
    pipeline_with(store, limits, registry)
}

/// A GitHub pipeline on `store` with `registry` and `limits`.
pub fn pipeline_with(store: Store, limits: Limits, registry: Registry) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store)
        .registry(registry)
        .critical_deadline("github", limits.deadline)
        // The lease must outlast the whole answer budget.
        .answer_budget("github", limits.lease / 2)
        .lease("github", limits.lease)
        .retention("github", Duration::from_secs(600))
        .build()
        .unwrap()
}

/// A pseudo-random number fixed by `seed`, so runs are reproducible.
fn mix(seed: u64) -> u64 {
    Rng::new(seed).next_u64()
}

/// What the exactly-once run saw.
#[derive(Debug, Default)]
pub struct ExactlyOnceReport {
    pub deliveries: usize,
    pub events: usize,
    pub executions: u64,
    pub answers: HashMap<u16, u64>,
    pub elapsed: Duration,
}

/// `deliveries` deliveries, 30 % of them duplicates sent close to their
/// original, raced at concurrency 64 across one pipeline per store (each store a
/// separate instance with its own connections, all sharing one database). A
/// critical run fails transiently 30 % of the time; every non-2xx answer is
/// retried like a provider would, on a pseudo-randomly chosen instance. Every
/// event's critical work must succeed exactly once, and no delivery may end
/// without a 2xx.
pub async fn exactly_once_across_instances(
    stores: Vec<Store>,
    deliveries: usize,
) -> ExactlyOnceReport {
    let started = Instant::now();
    let run = super::unique("once");
    let ledger = Arc::new(Ledger::default());
    let pipelines: Arc<Vec<Pipeline>> = Arc::new(
        stores
            .into_iter()
            .map(|store| {
                pipeline(store, Arc::clone(&ledger), Limits::DEFAULT, |sequence| {
                    mix(sequence ^ 0x5EED) % 100 < 30
                })
            })
            .collect(),
    );
    // 70 % originals in order; each duplicate lands up to ~40 slots after its
    // original so that the two race.
    let events = deliveries * 7 / 10;
    let mut order: Vec<(u64, usize)> = (0..events).map(|n| (n as u64 * 100, n)).collect();
    for d in 0..deliveries - events {
        let n = (mix(d as u64) % events as u64) as usize;
        order.push((n as u64 * 100 + 1 + mix(d as u64 ^ 0xD0B1E) % 4_000, n));
    }
    order.sort_unstable();
    let catalogue: Arc<Vec<Delivery>> =
        Arc::new((0..events).map(|n| Delivery::new(&run, n)).collect());

    let permits = Arc::new(Semaphore::new(64));
    let mut tasks = JoinSet::new();
    for (slot, (_, n)) in order.into_iter().enumerate() {
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let pipelines = Arc::clone(&pipelines);
        let catalogue = Arc::clone(&catalogue);
        tasks.spawn(async move {
            let _permit = permit;
            let delivery = &catalogue[n];
            let mut answers = Vec::new();
            for attempt in 0..10_000u64 {
                let instance =
                    (mix(slot as u64 * 7_919 + attempt) % pipelines.len() as u64) as usize;
                let outcome = delivery.send(&pipelines[instance]).await;
                answers.push(outcome.status());
                match outcome.status() {
                    200 => return answers,
                    409 | 500 => tokio::time::sleep(Duration::from_millis(1)).await,
                    other => panic!(
                        "delivery {} answered {other}: {:?}",
                        delivery.id, outcome.kind
                    ),
                }
            }
            panic!("delivery {} never succeeded", delivery.id);
        });
    }
    let mut report = ExactlyOnceReport {
        deliveries,
        events,
        ..ExactlyOnceReport::default()
    };
    while let Some(answers) = tasks.join_next().await {
        for status in answers.expect("a delivery task failed") {
            *report.answers.entry(status).or_default() += 1;
        }
    }
    for delivery in catalogue.iter() {
        let (runs, successes) = ledger.of(&delivery.id);
        assert_eq!(
            successes, 1,
            "event {} succeeded {successes} times in {runs} runs",
            delivery.id
        );
    }
    report.executions = ledger.executions.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    // Every delivery ended with exactly one 2xx; retries were really exercised.
    assert_eq!(report.answers.get(&200).copied(), Some(deliveries as u64));
    assert!(report.answers.get(&500).copied().unwrap_or(0) > 0);
    assert!(report.executions > events as u64);
    report
}

/// An attempt abandoned mid-handler (its future dropped, as when a process
/// dies) keeps the key only until its lease ends; then another instance runs the
/// work, and the abandoned attempt's token can neither complete nor release.
pub async fn abandoned_attempt_is_reclaimed(first: Store, second: Store) {
    let limits = Limits {
        deadline: Duration::from_millis(300),
        lease: Duration::from_millis(1_500),
    };
    let ledger = Arc::new(Ledger::default());
    let started = Arc::new(Notify::new());
    let hang = {
        let started = Arc::clone(&started);
        let ledger = Arc::clone(&ledger);
        let mut registry = Registry::new();
        registry.critical(
            "github",
            "*",
            "hang",
            handler_fn(move |event| {
                let started = Arc::clone(&started);
                let ledger = Arc::clone(&ledger);
                async move {
                    ledger.started(event.id());
                    started.notify_one();
                    std::future::pending::<Result<(), HandlerError>>().await
                }
            }),
        );
        pipeline_with(Arc::clone(&first), limits, registry)
    };
    let healthy = pipeline(Arc::clone(&second), Arc::clone(&ledger), limits, |_| false);
    let delivery = Delivery::new(&super::unique("crash"), 0);

    let claimed_at = Instant::now();
    tokio::select! {
        outcome = delivery.send(&hang) => panic!("the hanging attempt finished: {outcome:?}"),
        () = started.notified() => {} // the "process" dies here: the future is dropped
    }
    let first_retry = delivery.send(&healthy).await;
    assert!(
        matches!(first_retry.kind, OutcomeKind::InFlight { .. }),
        "{first_retry:?}"
    );
    assert_eq!(first_retry.status(), 409);
    let recovered = loop {
        let outcome = delivery.send(&healthy).await;
        match outcome.status() {
            409 => tokio::time::sleep(Duration::from_millis(25)).await,
            200 => break claimed_at.elapsed(),
            other => panic!("retry answered {other}: {outcome:?}"),
        }
        assert!(
            claimed_at.elapsed() < Duration::from_secs(10),
            "never reclaimed"
        );
    };
    assert!(
        recovered >= limits.lease - Duration::from_millis(100),
        "reclaimed after {recovered:?}, before the lease ended"
    );
    assert_eq!(ledger.of(&delivery.id), (2, 1));

    // The abandoned attempt held token 1 of a fresh key; it settles nothing now.
    let key = delivery.key();
    let abandoned = FencingToken(1);
    let late_complete = first
        .complete(&key, abandoned, Duration::from_secs(60))
        .await;
    assert!(
        matches!(late_complete, Err(StoreError::StaleToken { token, .. }) if token == abandoned),
        "{late_complete:?}"
    );
    let late_release = first.release(&key, abandoned, "woke up late").await;
    assert!(
        matches!(late_release, Err(StoreError::StaleToken { .. })),
        "{late_release:?}"
    );
    let duplicate = delivery.send(&healthy).await;
    assert!(
        matches!(duplicate.kind, OutcomeKind::Duplicate),
        "{duplicate:?}"
    );
    assert_eq!(ledger.of(&delivery.id), (2, 1));
}

/// A store whose server does not listen answers every call with
/// [`StoreError::Unavailable`] within its timeouts, and a pipeline on it answers
/// 503 without running any handler.
pub async fn unreachable_store_is_unavailable(store: Store, has_purge: bool) {
    let check = async {
        let key = super::unique("down");
        let fp = Fingerprint::of(b"{}");
        let claim = store.claim(&key, fp, Duration::from_secs(1)).await;
        assert!(
            matches!(claim, Err(StoreError::Unavailable(_))),
            "{claim:?}"
        );
        let complete = store
            .complete(&key, FencingToken(1), Duration::from_secs(1))
            .await;
        assert!(
            matches!(complete, Err(StoreError::Unavailable(_))),
            "{complete:?}"
        );
        let release = store.release(&key, FencingToken(1), "x").await;
        assert!(
            matches!(release, Err(StoreError::Unavailable(_))),
            "{release:?}"
        );
        if has_purge {
            let purge = store.purge_expired().await;
            assert!(
                matches!(purge, Err(StoreError::Unavailable(_))),
                "{purge:?}"
            );
        }
        let ledger = Arc::new(Ledger::default());
        let pipeline = pipeline(
            Arc::clone(&store),
            Arc::clone(&ledger),
            Limits::DEFAULT,
            |_| false,
        );
        let delivery = Delivery::new(&key, 0);
        let outcome = delivery.send(&pipeline).await;
        assert_eq!(outcome.status(), 503, "{outcome:?}");
        assert!(matches!(outcome.kind, OutcomeKind::StoreUnavailable(_)));
        assert_eq!(ledger.of(&delivery.id), (0, 0));
    };
    tokio::time::timeout(Duration::from_secs(30), check)
        .await
        .expect("an unreachable store must fail fast, not hang");
}

/// A store whose connections go through `proxy`: while the proxy is cut every
/// delivery answers 503 and runs nothing; once restored, the same deliveries
/// succeed exactly once and earlier ones are still known. Then a cut in the
/// middle of concurrent traffic: every delivery still ends with 2xx, none lost.
/// Returns (503 answers during the mid-traffic cut, events whose critical work
/// ran twice because a reply was lost in the cut).
pub async fn cut_connections_recover(store: Store, proxy: &Proxy) -> (u32, usize) {
    let limits = Limits {
        deadline: Duration::from_millis(500),
        lease: Duration::from_millis(1_500),
    };
    let ledger = Arc::new(Ledger::default());
    let pipeline = Arc::new(self::pipeline(
        Arc::clone(&store),
        Arc::clone(&ledger),
        limits,
        |_| false,
    ));
    let run = super::unique("cut");
    let before: Vec<Delivery> = (0..10).map(|n| Delivery::new(&run, n)).collect();
    let during: Vec<Delivery> = (10..20).map(|n| Delivery::new(&run, n)).collect();
    for delivery in &before {
        assert_eq!(delivery.send(&pipeline).await.status(), 200);
    }

    proxy.cut();
    for delivery in during.iter().chain(&before[..1]) {
        let outcome = tokio::time::timeout(Duration::from_secs(30), delivery.send(&pipeline))
            .await
            .expect("a cut store must fail fast, not hang");
        assert_eq!(outcome.status(), 503, "{outcome:?}");
    }
    for delivery in &during {
        assert_eq!(ledger.of(&delivery.id), (0, 0));
    }

    proxy.restore().await;
    for delivery in &during {
        deliver_until_success(&pipeline, delivery, Duration::from_secs(30)).await;
        assert_eq!(ledger.of(&delivery.id), (1, 1));
    }
    let duplicate = before[0].send(&pipeline).await;
    assert!(
        matches!(duplicate.kind, OutcomeKind::Duplicate),
        "{duplicate:?}"
    );

    // A cut in the middle of traffic: deliveries start every 5 ms for 1.5 s,
    // the proxy is cut from 300 ms to 900 ms.
    let traffic: Vec<Delivery> = (100..400).map(|n| Delivery::new(&run, n)).collect();
    let mut tasks = JoinSet::new();
    for (i, delivery) in traffic.iter().cloned().enumerate() {
        let pipeline = Arc::clone(&pipeline);
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
            deliver_until_success(&pipeline, &delivery, Duration::from_secs(60)).await
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(600)).await;
    proxy.restore().await;
    let mut unavailable = 0;
    while let Some(answers) = tasks.join_next().await {
        unavailable += answers.expect("a delivery task failed");
    }
    assert!(unavailable > 0, "the cut was never noticed");
    let mut repeated = 0;
    for delivery in &traffic {
        let (_, successes) = ledger.of(&delivery.id);
        // At least once: a `complete` whose reply was lost in the cut is
        // indistinguishable from one that never arrived.
        assert!(successes >= 1, "event {} was lost", delivery.id);
        repeated += usize::from(successes > 1);
    }
    (unavailable, repeated)
}

/// Sends `delivery` until it answers 2xx, retrying 409/500/503 like a provider;
/// returns how many 503 answers it got.
pub async fn deliver_until_success(
    pipeline: &Pipeline,
    delivery: &Delivery,
    limit: Duration,
) -> u32 {
    let started = Instant::now();
    let mut unavailable = 0;
    loop {
        let outcome = delivery.send(pipeline).await;
        match outcome.status() {
            200 => return unavailable,
            503 => unavailable += 1,
            409 | 500 => {}
            other => panic!(
                "delivery {} answered {other}: {:?}",
                delivery.id, outcome.kind
            ),
        }
        assert!(
            started.elapsed() < limit,
            "delivery {} not accepted within {limit:?}: last {:?}",
            delivery.id,
            outcome.kind
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The public conformance suite, with every check passing.
pub async fn conformance_passes(store: Store) {
    let report = match conformance::run(&store).await {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    };
    assert!(report.multi_thread());
    assert_eq!(report.checks().len(), conformance::Check::ALL.len());
}

/// Claims the new `key`, completes it, and checks that it now answers `Completed`.
pub async fn complete_new_key(store: &dyn IdempotencyStore, key: &str) {
    let fp = Fingerprint::of(b"body");
    let lease = Duration::from_secs(30);
    let claim = store.claim(key, fp, lease).await.unwrap();
    let hookgate::Claim::Acquired(token) = claim else {
        panic!("a new key answered {claim:?}")
    };
    store
        .complete(key, token, Duration::from_secs(600))
        .await
        .unwrap();
    let again = store.claim(key, fp, lease).await.unwrap();
    assert_eq!(again, hookgate::Claim::Completed);
}

/// Claims `key` with the body `body` for `lease`, expecting to acquire it;
/// returns the token.
pub async fn acquire(store: &dyn IdempotencyStore, key: &str, lease: Duration) -> FencingToken {
    match store
        .claim(key, Fingerprint::of(b"body"), lease)
        .await
        .unwrap()
    {
        hookgate::Claim::Acquired(token) => token,
        other => panic!("{key}: expected Acquired, got {other:?}"),
    }
}

/// Checks that the store forgot `key`: a claim with another body acquires it,
/// and its tokens start again at 1. The key is leased afterwards.
pub async fn assert_forgotten(store: &dyn IdempotencyStore, key: &str) {
    let claim = store
        .claim(
            key,
            Fingerprint::of(b"another body"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        claim,
        hookgate::Claim::Acquired(FencingToken(1)),
        "{key} should have been forgotten"
    );
}

/// Checks that the released `key`, written by an earlier schema long ago,
/// survived a migration and goes with the next purge.
pub async fn old_released_key_survives_then_is_purged(store: &dyn IdempotencyStore, key: &str) {
    // The only key of the table: the purge finding it shows the migration kept it.
    assert_eq!(store.purge_expired().await.unwrap(), 1, "{key} was kept");
    assert_forgotten(store, key).await;
}

/// The regression of a retry whose body changed (the provider re-rendered the
/// event between attempts): a released `key` is taken by a claim with another
/// body, which the key then holds; once completed, only another body is
/// reported as changed.
pub async fn released_key_is_taken_by_another_body(store: &dyn IdempotencyStore, key: &str) {
    let lease = Duration::from_secs(30);
    let (body, rerendered) = (
        Fingerprint::of(b"body"),
        Fingerprint::of(b"re-rendered body"),
    );
    let first = acquire(store, key, lease).await;
    store.release(key, first, "boom").await.unwrap();
    let second = store.claim(key, rerendered, lease).await.unwrap();
    assert!(
        matches!(second, hookgate::Claim::AcquiredBodyChanged(t) if t > first),
        "a released key with another body answered {second:?}"
    );
    let second = second.token().unwrap();
    store.release(key, second, "boom again").await.unwrap();
    // The key holds the re-rendered body now: the first body is the changed one.
    let third = store.claim(key, body, lease).await.unwrap();
    assert!(
        matches!(third, hookgate::Claim::AcquiredBodyChanged(t) if t > second),
        "{third:?}"
    );
    store
        .complete(key, third.token().unwrap(), Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(
        store.claim(key, body, lease).await.unwrap(),
        hookgate::Claim::Completed
    );
    assert_eq!(
        store.claim(key, rerendered, lease).await.unwrap(),
        hookgate::Claim::CompletedBodyChanged
    );
}

/// Leases the new `key` for `lease` and checks that the `until` a second claim
/// reports is one lease after the time `server_now` reads right after.
pub async fn lease_ends_by_server_clock<F>(
    store: &dyn IdempotencyStore,
    key: &str,
    lease: Duration,
    server_now: F,
) where
    F: std::future::Future<Output = std::time::SystemTime>,
{
    let fp = Fingerprint::of(b"body");
    store.claim(key, fp, lease).await.unwrap();
    let claim = store.claim(key, fp, lease).await.unwrap();
    let hookgate::Claim::InFlight { until } = claim else {
        panic!("a leased key answered {claim:?}")
    };
    let now = server_now.await;
    let remaining = until.duration_since(now).unwrap();
    // The lease was measured from the server's clock a moment earlier.
    assert!(
        remaining <= lease && remaining > lease - Duration::from_secs(5),
        "lease ends {remaining:?} after the server's now"
    );
}
