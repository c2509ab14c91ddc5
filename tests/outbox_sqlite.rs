//! The durable outbox on SQLite (one database file): killed and restarted
//! pipelines and relays lose no job and end each exactly once; relays
//! sharing the outbox never run a job at the same time; a rolled-back
//! delivery enqueues nothing.
#![cfg(feature = "sqlite")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::outbox::{self, ReadSettled, Settled};
use common::pipeline::{gh_delivery, Injected};
use common::unique;
use hookgate::outbox::Relay;
use hookgate::store::sqlite::SqliteStore;
use hookgate::transactional::sqlite::rusqlite::{Connection, Transaction};
use hookgate::{Event, HandlerError, Registry};

fn path() -> PathBuf {
    std::env::temp_dir().join(format!("{}.db", unique("obs")))
}

fn store(path: &Path) -> SqliteStore {
    SqliteStore::file(path).max_connections(2).build().unwrap()
}

fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn reader(path: PathBuf) -> ReadSettled {
    Arc::new(move |table: String| {
        let path = path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = Connection::open(&path).unwrap();
                conn.busy_timeout(Duration::from_secs(5)).unwrap();
                let strings = |sql: String| -> Vec<String> {
                    let mut select = conn.prepare(&sql).unwrap();
                    let rows = select.query_map([], |row| row.get(0)).unwrap();
                    rows.collect::<Result<_, _>>().unwrap()
                };
                let succeeded = strings(format!(
                    "SELECT job_key FROM {table} WHERE state = 'succeeded'"
                ));
                let mut select = conn
                    .prepare(&format!("SELECT job_key, attempts FROM {table}_dead"))
                    .unwrap();
                let dead = select
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let pending = conn
                    .query_row(
                        &format!("SELECT count(*) FROM {table} WHERE state = 'pending'"),
                        [],
                        |row| row.get(0),
                    )
                    .unwrap();
                Settled {
                    succeeded,
                    dead,
                    pending,
                }
            })
            .await
            .unwrap()
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_pipeline_and_its_relays_lose_no_job_and_end_each_once() {
    let path = path();
    let table = "jobs".to_owned();
    outbox::kill_and_restart(
        |registry| outbox::pipeline(store(&path), registry, &table),
        reader(path.clone()),
        &unique("ev"),
        &table,
        300,
    )
    .await;
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_sharing_an_outbox_never_run_a_job_at_once() {
    let path = path();
    let table = "jobs".to_owned();
    outbox::relays_never_overlap(
        |registry| outbox::pipeline(store(&path), registry, &table),
        reader(path.clone()),
        &unique("ev"),
        &table,
        200,
    )
    .await;
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_delivery_enqueues_nothing_and_a_separate_relay_runs_the_rest() {
    let path = path();
    let table = "jobs".to_owned();
    let effects = outbox::Effects::default();
    let mut registry = outbox::registry(&effects);
    registry.critical_in_sqlite(
        "github",
        "issues",
        "fails",
        |event: &Event, _: &Transaction<'_>| {
            if event.id().starts_with("rolled") {
                return Err(HandlerError::transient(Injected("rolled back")));
            }
            Ok(())
        },
    );
    let pipeline = outbox::pipeline(store(&path), registry, &table);
    let (body, headers) = gh_delivery("rolled-1", "{}");
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 500, "{:?}", outcome.kind);
    outbox::deliver_all(&pipeline, &["ok-2".to_owned()], 4).await;
    let read = reader(path.clone());
    let settled = read(table.clone()).await;
    assert_eq!(
        settled.pending, 4,
        "only the committed delivery's jobs: {settled:?}"
    );
    let relay = Relay::sqlite(
        store(&path),
        outbox::registry(&effects),
        outbox::policy(),
        outbox::settings(&table),
    )
    .unwrap();
    let task = tokio::spawn(relay.run());
    let settled = outbox::drained(&read, &table, Duration::from_secs(20)).await;
    task.abort();
    assert_eq!(
        settled.succeeded.len() + settled.dead.len(),
        4,
        "{settled:?}"
    );
    assert!(!effects
        .done
        .lock()
        .unwrap()
        .keys()
        .any(|key| key.contains("rolled-1")));
    let bare = Relay::sqlite(
        store(&path),
        Registry::new(),
        outbox::policy(),
        outbox::settings(&table),
    )
    .unwrap();
    outbox::deliver_all(&pipeline, &["orphan-3".to_owned()], 4).await;
    let round = bare.run_once().await.unwrap();
    assert_eq!((round.claimed, round.dead_lettered), (4, 4), "{round:?}");
    drop(pipeline);
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_relay_hands_each_job_to_the_sink_once_retrying_its_failures() {
    use hookgate::jobs::{MemoryJobSink, SinkError};
    let path = path();
    let table = "jobs".to_owned();
    let effects = outbox::Effects::default();
    let pipeline = outbox::pipeline(store(&path), outbox::registry(&effects), &table);
    let ids: Vec<String> = (0..5).map(|n| format!("fwd-{n}")).collect();
    outbox::deliver_all(&pipeline, &ids, 4).await;
    let sink = MemoryJobSink::new();
    // The first three sends fail transiently: retried with backoff.
    sink.fail_next(3, || SinkError::transient(Injected("broker away")));
    let relay = pipeline.relay().unwrap().forward_to(sink.clone());
    let task = tokio::spawn(relay.run());
    let read = reader(path.clone());
    let settled = outbox::drained(&read, &table, Duration::from_secs(20)).await;
    task.abort();
    assert_eq!(settled.succeeded.len(), 20, "{settled:?}");
    assert!(settled.dead.is_empty(), "{settled:?}");
    let sent = sink.jobs();
    let keys: std::collections::HashSet<String> =
        sent.iter().map(|job| job.key().to_owned()).collect();
    assert_eq!(
        (sent.len(), keys.len()),
        (20, 20),
        "each job handed over once"
    );
    assert!(
        sent.iter().any(|job| job.attempt() > 1),
        "the failed sends were retried"
    );
    // No handler ran in this process: the worker behind the sink runs them.
    assert!(effects.done.lock().unwrap().is_empty());
    // A sink that refuses a job for good sends it to the dead-letter table.
    outbox::deliver_all(&pipeline, &["fwd-refused".to_owned()], 4).await;
    let refusing = MemoryJobSink::new();
    refusing.fail_next(4, || SinkError::permanent(Injected("too large")));
    let round = pipeline
        .relay()
        .unwrap()
        .forward_to(refusing)
        .run_once()
        .await
        .unwrap();
    assert_eq!((round.claimed, round.dead_lettered), (4, 4), "{round:?}");
    drop(pipeline);
    remove(&path);
}
