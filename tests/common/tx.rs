//! The provider's side of the transactional and outbox races: a delivery
//! plan (unique events plus duplicates), sent to several pipelines at once,
//! each delivery retried as a provider would until it is answered 2xx, with
//! some calls dropped mid-flight. Shared by `tx_postgres.rs` and
//! `tx_sqlite.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookgate::{OutcomeKind, Pipeline};

use super::pipeline::{gh_delivery, Rng};

/// How many deliveries a race sends: `HOOKGATE_TX_DELIVERIES`, else `default`.
pub fn deliveries(default: usize) -> usize {
    std::env::var("HOOKGATE_TX_DELIVERIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The events of a race of `total` deliveries of which `duplicates_percent`
/// repeat an earlier event: `(event ids in delivery order, unique ids)`.
pub fn plan(run: &str, total: usize, duplicates_percent: u64, seed: u64) -> (Vec<String>, usize) {
    let mut rng = Rng::new(seed);
    let mut ids: Vec<String> = Vec::with_capacity(total);
    let mut unique = 0usize;
    for _ in 0..total {
        if unique > 0 && rng.chance(duplicates_percent) {
            let pick = rng.between(0, unique as u64 - 1) as usize;
            ids.push(format!("{run}-{pick}"));
        } else {
            ids.push(format!("{run}-{unique}"));
            unique += 1;
        }
    }
    (ids, unique)
}

/// What the provider saw over a race.
#[derive(Debug, Default)]
pub struct Answers {
    pub processed: AtomicU64,
    pub duplicate: AtomicU64,
    pub in_flight: AtomicU64,
    pub failed_5xx: AtomicU64,
    pub dropped: AtomicU64,
}

impl Answers {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Sends every id of `ids` (as a GitHub `issues` delivery with body `{}`,
/// delivery id = event id) to a random pipeline of `pipelines`, `concurrency`
/// at a time, retrying each until it is answered 200; `drop_percent` of
/// the calls are dropped after a random 0–20 ms. Panics if a delivery is
/// never answered 200 within `max_tries`.
pub async fn run_race(
    pipelines: &[Pipeline],
    ids: Vec<String>,
    concurrency: usize,
    drop_percent: u64,
    seed: u64,
) -> Arc<Answers> {
    let answers = Arc::new(Answers::default());
    let rng = Arc::new(Mutex::new(Rng::new(seed)));
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(ids.len());
    for id in ids {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let pipelines = pipelines.to_vec();
        let answers = answers.clone();
        let rng = rng.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            deliver(&pipelines, &id, &answers, &rng, drop_percent).await;
        }));
    }
    for task in tasks {
        task.await.expect("a delivery task panicked");
    }
    answers
}

const MAX_TRIES: usize = 2_000;

async fn deliver(
    pipelines: &[Pipeline],
    id: &str,
    answers: &Answers,
    rng: &Mutex<Rng>,
    drop_percent: u64,
) {
    let (body, headers) = gh_delivery(id, "{}");
    for _ in 0..MAX_TRIES {
        let (index, drop_after) = {
            let mut rng = rng.lock().unwrap();
            let index = rng.between(0, pipelines.len() as u64 - 1) as usize;
            let drop_after = rng
                .chance(drop_percent)
                .then(|| Duration::from_millis(rng.between(0, 20)));
            (index, drop_after)
        };
        let handle = pipelines[index].handle(body.clone(), &headers);
        let outcome = match drop_after {
            Some(after) => match tokio::time::timeout(after, handle).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    answers.dropped.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            None => handle.await,
        };
        match outcome.kind {
            OutcomeKind::Processed { .. } => {
                answers.processed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            OutcomeKind::Duplicate => {
                answers.duplicate.fetch_add(1, Ordering::Relaxed);
                return;
            }
            OutcomeKind::InFlight { .. } => {
                answers.in_flight.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ref other => {
                assert!(outcome.status() >= 500, "{id}: unexpected answer {other:?}");
                answers.failed_5xx.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    panic!("{id} was never answered 200 in {MAX_TRIES} tries");
}

/// Silences the panics a test injects on purpose (their message holds
/// `marker`); every other panic still prints.
pub fn quiet_injected_panics(marker: &'static str) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if !message.contains(marker) {
            default(info);
        }
    }));
}
