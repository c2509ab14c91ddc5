//! The outbox scenarios every database runs (`outbox_postgres.rs`,
//! `outbox_sqlite.rs`): kill the pipeline and its relays mid-run and start
//! new ones on the same database; race several relays on one outbox and
//! watch for a job running twice at once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookgate::outbox::{OutboxSettings, Relay};
use hookgate::{handler_fn, Event, Handler, HandlerError, OutcomeKind, Pipeline, Registry};
use hookgate::{IdempotencyStore, RetryPolicy};

use super::pipeline::{gh_delivery, github, Injected};

/// What the tables hold at the end: job keys settled `succeeded`, job keys in
/// the dead-letter table (with their attempts), and rows still pending.
#[derive(Debug, Default)]
pub struct Settled {
    pub succeeded: Vec<String>,
    pub dead: Vec<(String, i64)>,
    pub pending: i64,
}

/// Reads [`Settled`] from an outbox (its table name given).
pub type ReadSettled =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Settled> + Send>> + Send + Sync>;

/// Handler effects per job key, kept across pipeline incarnations.
#[derive(Clone, Default)]
pub struct Effects {
    /// Successful runs per job key.
    pub done: Arc<Mutex<HashMap<String, u64>>>,
    /// Runs started per job key.
    pub runs: Arc<Mutex<HashMap<String, u64>>>,
    /// Job keys running right now.
    pub running: Arc<Mutex<HashSet<String>>>,
    /// Times a job started while it was already running.
    pub overlaps: Arc<AtomicU64>,
}

/// Removes a job from the running set however its run ends (success,
/// error, timeout, a killed relay).
struct Running {
    effects: Effects,
    key: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.effects.running.lock().unwrap().remove(&self.key);
    }
}

impl Effects {
    /// Marks `key` running (counting an overlap if it already was); the
    /// guard unmarks it.
    fn start(&self, key: String) -> (Running, u64) {
        if !self.running.lock().unwrap().insert(key.clone()) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let mut runs = self.runs.lock().unwrap();
        let run = runs.entry(key.clone()).or_default();
        *run += 1;
        let nth = *run;
        drop(runs);
        (
            Running {
                effects: self.clone(),
                key,
            },
            nth,
        )
    }

    fn done(&self, key: &str) {
        *self.done.lock().unwrap().entry(key.to_owned()).or_default() += 1;
    }

    /// A best-effort handler named `name`: waits `work(event)`, then fails
    /// as `fails(run number, event)` says, or records its effect.
    pub fn handler(
        &self,
        name: &'static str,
        work: impl Fn(&Event) -> Duration + Send + Sync + 'static,
        fails: impl Fn(u64, &Event) -> Option<HandlerError> + Send + Sync + 'static,
    ) -> impl Handler + 'static {
        let effects = self.clone();
        let work = Arc::new(work);
        let fails = Arc::new(fails);
        handler_fn(move |event: Event| {
            let (effects, work, fails) = (effects.clone(), work.clone(), fails.clone());
            async move {
                let key = format!("{}/{name}", event.key());
                let (_running, run) = effects.start(key.clone());
                tokio::time::sleep(work(&event)).await;
                if let Some(err) = fails(run, &event) {
                    return Err(err);
                }
                effects.done(&key);
                Ok(())
            }
        })
    }
}

/// The retry policy of the scenarios: 3 attempts, 20 ms backoff doubling.
pub fn policy() -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.max_attempts = 3;
    policy.initial_backoff = Duration::from_millis(20);
    policy.max_backoff = Duration::from_millis(200);
    policy.attempt_timeout = Duration::from_millis(400);
    policy
}

/// Outbox settings with a short lease, so killed relays' jobs come back fast.
pub fn settings(table: &str) -> OutboxSettings {
    let mut settings = OutboxSettings::default();
    settings.table = table.to_owned();
    settings.lease = Duration::from_millis(800);
    settings.poll_interval = Duration::from_millis(20);
    settings.batch_size = 16;
    settings
}

/// The registry of the kill-and-restart scenario: a critical no-op and four
/// best-effort handlers: `effect` (succeeds), `flaky` (fails its first run),
/// `doomed` (always fails: dead after 3 attempts), `refused` (fails
/// permanently on odd issue numbers, else succeeds).
pub fn registry(effects: &Effects) -> Registry {
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "*",
        "accept",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    let short = |event: &Event| Duration::from_millis(u64::from(event.id().len() as u8 % 7) * 3);
    registry.best_effort(
        "github",
        "*",
        "effect",
        effects.handler("effect", short, |_, _| None),
    );
    registry.best_effort(
        "github",
        "*",
        "flaky",
        effects.handler("flaky", short, |run, _| {
            (run == 1).then(|| HandlerError::transient(Injected("first run fails")))
        }),
    );
    registry.best_effort(
        "github",
        "*",
        "doomed",
        effects.handler("doomed", short, |_, _| {
            Some(HandlerError::transient(Injected("always fails")))
        }),
    );
    registry.best_effort(
        "github",
        "*",
        "refused",
        effects.handler("refused", short, |_, event| {
            let n: u64 = event.id().rsplit('-').next()?.parse().ok()?;
            (n % 2 == 1).then(|| HandlerError::permanent(Injected("refused")))
        }),
    );
    registry
}

/// A pipeline on `store` with the outbox `table`.
pub fn pipeline(
    store: impl IdempotencyStore + 'static,
    registry: Registry,
    table: &str,
) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store)
        .registry(registry)
        .retry_policy(policy())
        .outbox(settings(table))
        .build()
        .unwrap()
}

/// Delivers `ids` to `pipeline` until each is answered 200; `Processed`
/// answers report `jobs` jobs enqueued.
pub async fn deliver_all(pipeline: &Pipeline, ids: &[String], jobs: usize) {
    for id in ids {
        let (body, headers) = gh_delivery(id, "{}");
        let mut outcome = pipeline.handle(body.clone(), &headers).await;
        for _ in 0..100 {
            if outcome.status() == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            outcome = pipeline.handle(body.clone(), &headers).await;
        }
        match outcome.kind {
            OutcomeKind::Processed { best_effort } => assert_eq!(best_effort, jobs, "{id}"),
            OutcomeKind::Duplicate => {}
            ref other => panic!("{id}: {other:?}"),
        }
    }
}

/// Spawns `n` relay tasks of `pipeline`.
pub fn spawn_relays(relay: &Relay, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n).map(|_| tokio::spawn(relay.clone().run())).collect()
}

/// Waits until the outbox holds no pending job (at most `limit`).
pub async fn drained(read: &ReadSettled, table: &str, limit: Duration) -> Settled {
    let began = std::time::Instant::now();
    loop {
        let settled = read(table.to_owned()).await;
        if settled.pending == 0 {
            return settled;
        }
        assert!(
            began.elapsed() < limit,
            "{} jobs still pending after {limit:?}",
            settled.pending
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kill-and-restart: pipeline A and two relays take the first half of the
/// events; mid-run the relays are aborted and A dropped; pipeline B and two
/// new relays on the same database take the rest (and redeliveries of the
/// first half). Every job ends exactly once, succeeded or dead, none lost.
pub async fn kill_and_restart(
    make: impl Fn(Registry) -> Pipeline,
    read: ReadSettled,
    run: &str,
    table: &str,
    events: usize,
) {
    let effects = Effects::default();
    let ids: Vec<String> = (0..events).map(|n| format!("{run}-{n}")).collect();
    let (first, second) = ids.split_at(events / 2);

    let a = make(registry(&effects));
    let relay = a.relay().expect("the pipeline has an outbox");
    let relays = spawn_relays(&relay, 2);
    deliver_all(&a, first, 4).await;
    // Let the relays get going, then kill everything mid-run.
    tokio::time::sleep(Duration::from_millis(60)).await;
    for task in &relays {
        task.abort();
    }
    for task in relays {
        let _ = task.await;
    }
    drop(relay);
    drop(a);
    let before_restart = read(table.to_owned()).await;
    assert!(
        before_restart.pending > 0,
        "the kill must leave work behind: {before_restart:?}"
    );

    let b = make(registry(&effects));
    let relay = b.relay().expect("the pipeline has an outbox");
    let relays = spawn_relays(&relay, 2);
    deliver_all(&b, second, 4).await;
    deliver_all(&b, &first[..first.len() / 4], 4).await;
    let settled = drained(&read, table, Duration::from_secs(60)).await;
    for task in relays {
        task.abort();
    }
    assert_exactly_once(&ids, &settled, &effects, 2 * 16);
    assert_eq!(effects.overlaps.load(Ordering::SeqCst), 0);
}

/// Every job of every event ended exactly once: `effect` and `flaky`
/// succeeded, `doomed` dead after 3 attempts, `refused` dead on odd events
/// and succeeded on even ones; each succeeded job's effect happened, more
/// than once for at most `killed` jobs (those a killed relay held).
pub fn assert_exactly_once(ids: &[String], settled: &Settled, effects: &Effects, killed: usize) {
    let succeeded: HashSet<&str> = settled.succeeded.iter().map(String::as_str).collect();
    let dead: HashMap<&str, i64> = settled
        .dead
        .iter()
        .map(|(key, attempts)| (key.as_str(), *attempts))
        .collect();
    assert_eq!(succeeded.len(), settled.succeeded.len());
    assert_eq!(dead.len(), settled.dead.len());
    let mut expected = 0;
    for id in ids {
        let n: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
        for handler in ["effect", "flaky", "doomed", "refused"] {
            expected += 1;
            let key = format!("github:{id}/{handler}");
            let ok = succeeded.contains(key.as_str());
            let buried = dead.get(key.as_str());
            assert!(
                ok != buried.is_some(),
                "{key}: succeeded {ok}, dead {buried:?}"
            );
            match handler {
                "effect" | "flaky" => assert!(ok, "{key} should succeed: dead {buried:?}"),
                "doomed" => assert_eq!(buried, Some(&3), "{key}"),
                _ if n % 2 == 1 => assert!(buried.is_some(), "{key}"),
                _ => assert!(ok, "{key}"),
            }
        }
    }
    assert_eq!(
        succeeded.len() + dead.len(),
        expected,
        "no job is missing or extra"
    );
    let done = effects.done.lock().unwrap();
    for key in &settled.succeeded {
        assert!(done.get(key).copied().unwrap_or(0) >= 1, "{key}: no effect");
    }
    let repeated = done.values().filter(|&&n| n > 1).count();
    assert!(
        repeated <= killed,
        "{repeated} jobs had their effect more than once (at most the {killed} a killed relay held may)"
    );
    eprintln!(
        "{} jobs: {} succeeded, {} dead; {repeated} effects repeated after the kill",
        expected,
        succeeded.len(),
        dead.len()
    );
}

/// Several relays on one outbox, every job slow (some past the attempt
/// timeout, so they are retried and some end dead): no job ever runs on two
/// relays at once, and every job ends exactly once.
pub async fn relays_never_overlap(
    make: impl Fn(Registry) -> Pipeline,
    read: ReadSettled,
    run: &str,
    table: &str,
    events: usize,
) {
    let effects = Effects::default();
    let slow = |event: &Event| {
        let n: u64 = event
            .id()
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Duration::from_millis((n * 37) % 480)
    };
    let pipelines: Vec<Pipeline> = (0..2)
        .map(|_| {
            let mut registry = Registry::new();
            registry.best_effort(
                "github",
                "*",
                "slow",
                effects.handler("slow", slow, |_, _| None),
            );
            make(registry)
        })
        .collect();
    let ids: Vec<String> = (0..events).map(|n| format!("{run}-{n}")).collect();
    let mut relays = Vec::new();
    for pipeline in &pipelines {
        relays.extend(spawn_relays(&pipeline.relay().unwrap(), 2));
    }
    for (n, id) in ids.iter().enumerate() {
        deliver_all(&pipelines[n % pipelines.len()], std::slice::from_ref(id), 1).await;
    }
    let settled = drained(&read, table, Duration::from_secs(60)).await;
    for task in relays {
        task.abort();
    }
    assert_eq!(
        effects.overlaps.load(Ordering::SeqCst),
        0,
        "a job ran on two relays at once"
    );
    let runs: u64 = effects.runs.lock().unwrap().values().sum();
    assert!(
        runs > events as u64,
        "some attempts timed out and ran again: {runs} runs"
    );
    let keys: HashSet<&str> = settled
        .succeeded
        .iter()
        .map(String::as_str)
        .chain(settled.dead.iter().map(|(key, _)| key.as_str()))
        .collect();
    assert_eq!(keys.len(), events, "{settled:?}");
    assert_eq!(settled.succeeded.len() + settled.dead.len(), events);
    eprintln!(
        "{events} jobs on 4 relays: {runs} runs, {} succeeded, {} dead, no overlap",
        settled.succeeded.len(),
        settled.dead.len()
    );
}
