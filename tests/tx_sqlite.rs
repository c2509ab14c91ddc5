//! Transactional critical handlers on SQLite (a file shared by four
//! pipelines): the business rows of each event exist exactly once whatever
//! fails between the handler's writes and the commit, counted in the user's
//! table; every failure path rolls the writes back.
#![cfg(feature = "sqlite")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pipeline::{gh_delivery, github, Injected, Rng};
use common::tx::{self, Answers};
use common::unique;
use hookgate::outbox::{OutboxConfigError, OutboxSettings};
use hookgate::store::sqlite::SqliteStore;
use hookgate::transactional::sqlite::rusqlite::{Connection, Transaction};
use hookgate::{
    handler_fn, BuildError, CriticalFailure, Event, HandlerError, MemoryStore, OutcomeKind,
    Pipeline, Registry,
};

/// A fresh database file with the user's table: one row per write, no
/// unique constraint, so a double write shows up as two rows.
fn database() -> (PathBuf, String) {
    let path = std::env::temp_dir().join(format!("{}.db", unique("txs")));
    let business = "payments".to_owned();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE payments (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL);",
    )
    .unwrap();
    (path, business)
}

fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn store(path: &Path) -> SqliteStore {
    SqliteStore::file(path)
        .max_connections(2)
        .busy_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn rows_per_event(path: &Path) -> Vec<(String, i64)> {
    let conn = Connection::open(path).unwrap();
    let mut select = conn
        .prepare("SELECT event_id, count(*) FROM payments GROUP BY event_id")
        .unwrap();
    let rows = select
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

fn rows_of(path: &Path, event_id: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(
        "SELECT count(*) FROM payments WHERE event_id = ?1",
        [event_id],
        |row| row.get(0),
    )
    .unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    Error,
    Permanent,
    Panic,
    /// Blocks past the answer budget (the commit is then skipped).
    Stall,
}

const PANIC_MARKER: &str = "injected panic after the write";

/// How often a handler ran, and how often it injected a fault.
type Counters = (Arc<AtomicU64>, Arc<AtomicU64>);

/// A handler that writes the event's row through the transaction, then
/// injects `fault()`; the counters tell how often it ran and injected.
fn write_row(
    fault: impl Fn() -> Fault + Send + Sync + 'static,
) -> (
    Counters,
    impl Fn(&Event, &Transaction<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
) {
    let calls = Arc::new(AtomicU64::new(0));
    let injected = Arc::new(AtomicU64::new(0));
    let (c, i) = (calls.clone(), injected.clone());
    let handler = move |event: &Event, tx: &Transaction<'_>| {
        c.fetch_add(1, Ordering::Relaxed);
        tx.execute("INSERT INTO payments (event_id) VALUES (?1)", [event.id()])
            .map_err(HandlerError::transient)?;
        let fault = fault();
        if !matches!(fault, Fault::None) {
            i.fetch_add(1, Ordering::Relaxed);
        }
        match fault {
            Fault::None => Ok(()),
            Fault::Error => Err(HandlerError::transient(Injected("after the write"))),
            Fault::Permanent => Err(HandlerError::permanent(Injected("after the write"))),
            Fault::Panic => panic!("{PANIC_MARKER}"),
            Fault::Stall => {
                std::thread::sleep(Duration::from_millis(1_200));
                Ok(())
            }
        }
    };
    ((calls, injected), handler)
}

fn pipeline(store: SqliteStore, registry: Registry) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store)
        .registry(registry)
        .answer_budget("*", Duration::from_millis(1_000))
        .lease("*", Duration::from_millis(1_500))
        .build()
        .unwrap()
}

fn registry_with(
    handler: impl Fn(&Event, &Transaction<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
) -> Registry {
    let mut registry = Registry::new();
    registry.critical_in_sqlite("github", "*", "write_row", handler);
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_pipelines_write_each_events_row_exactly_once_through_errors_panics_and_drops() {
    tx::quiet_injected_panics(PANIC_MARKER);
    let (path, run) = database();
    let rng = Arc::new(Mutex::new(Rng::new(0x5117)));
    let mut pipelines = Vec::new();
    let mut injected = Vec::new();
    for _ in 0..4 {
        let draw = rng.clone();
        let ((_, faults), handler) = write_row(move || {
            let mut rng = draw.lock().unwrap();
            match rng.between(0, 999) {
                0..=39 => Fault::Error,
                40..=59 => Fault::Panic,
                60..=61 => Fault::Stall,
                _ => Fault::None,
            }
        });
        injected.push(faults);
        pipelines.push(pipeline(store(&path), registry_with(handler)));
    }
    let total = tx::deliveries(10_000);
    let (ids, unique_events) = tx::plan(&run, total, 30, 0xD0B2);
    let started = std::time::Instant::now();
    let answers = tx::run_race(&pipelines, ids, 32, 5, 0x5EEE).await;
    let elapsed = started.elapsed();

    let rows = rows_per_event(&path);
    let doubled: Vec<_> = rows.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        doubled.is_empty(),
        "events written more than once: {doubled:?}"
    );
    assert_eq!(rows.len(), unique_events, "every event's row exists");
    let completed: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM hookgate_idempotency WHERE state = 'completed'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(completed as usize, unique_events, "every key is completed");
    let faults: u64 = injected.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    assert!(faults > 50, "injected faults: {faults}");
    assert!(Answers::get(&answers.failed_5xx) > 50, "{answers:?}");
    assert!(Answers::get(&answers.dropped) > 50, "{answers:?}");
    let processed = Answers::get(&answers.processed) as usize;
    let duplicate = Answers::get(&answers.duplicate) as usize;
    assert_eq!(processed + duplicate, total, "{answers:?}");
    assert!(processed <= unique_events, "{answers:?}");
    eprintln!(
        "{total} deliveries ({unique_events} events) in {elapsed:?}; {faults} faults injected; \
         {} commits answered only by a later duplicate; {answers:?}",
        unique_events - processed
    );
    drop(pipelines);
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_rolls_the_write_back_and_the_retry_writes_once() {
    let (path, _) = database();
    let fail = Arc::new(AtomicBool::new(true));
    let flip = fail.clone();
    let (_, handler) = write_row(move || {
        if flip.swap(false, Ordering::AcqRel) {
            Fault::Error
        } else {
            Fault::None
        }
    });
    let pipeline = pipeline(store(&path), registry_with(handler));
    let (body, headers) = gh_delivery("err-1", "{}");
    let first = pipeline.handle(body.clone(), &headers).await;
    assert!(
        matches!(
            first.kind,
            OutcomeKind::CriticalFailed {
                failure: CriticalFailure::Transient(_),
                ..
            }
        ),
        "{:?}",
        first.kind
    );
    assert_eq!(rows_of(&path, "err-1"), 0);
    let retry = pipeline.handle(body.clone(), &headers).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Processed { .. }),
        "{:?}",
        retry.kind
    );
    let again = pipeline.handle(body, &headers).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate));
    assert_eq!(rows_of(&path, "err-1"), 1);
    drop(pipeline);
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_rolls_the_write_back_and_dead_letters_the_event() {
    let (path, _) = database();
    let ((calls, _), handler) = write_row(|| Fault::Permanent);
    let pipeline = pipeline(store(&path), registry_with(handler));
    let (body, headers) = gh_delivery("perm-1", "{}");
    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert!(
        matches!(
            outcome.kind,
            OutcomeKind::PermanentFailure {
                dead_lettered: true,
                ..
            }
        ),
        "{:?}",
        outcome.kind
    );
    assert_eq!(rows_of(&path, "perm-1"), 0);
    assert_eq!(pipeline.memory_dead_letter().unwrap().entries().len(), 1);
    let again = pipeline.handle(body, &headers).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    drop(pipeline);
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_after_the_write_rolls_it_back_and_keeps_the_connection_usable() {
    tx::quiet_injected_panics(PANIC_MARKER);
    let (path, _) = database();
    let fail = Arc::new(AtomicBool::new(true));
    let flip = fail.clone();
    let (_, handler) = write_row(move || {
        if flip.swap(false, Ordering::AcqRel) {
            Fault::Panic
        } else {
            Fault::None
        }
    });
    let pipeline = pipeline(store(&path), registry_with(handler));
    let (body, headers) = gh_delivery("panic-1", "{}");
    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert!(
        matches!(
            outcome.kind,
            OutcomeKind::CriticalFailed {
                failure: CriticalFailure::Panic(ref message),
                ..
            } if message.contains(PANIC_MARKER)
        ),
        "{:?}",
        outcome.kind
    );
    assert_eq!(rows_of(&path, "panic-1"), 0);
    let retry = pipeline.handle(body, &headers).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Processed { .. }),
        "{:?}",
        retry.kind
    );
    assert_eq!(rows_of(&path, "panic-1"), 1);
    drop(pipeline);
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_the_answer_budget_is_rolled_back_not_committed() {
    let (path, _) = database();
    let (_, handler) = write_row(|| Fault::Stall);
    let pipeline = pipeline(store(&path), registry_with(handler));
    let (body, headers) = gh_delivery("late-1", "{}");
    let outcome = pipeline.handle(body, &headers).await;
    assert!(outcome.status() >= 500, "{:?}", outcome.kind);
    // The blocking handler finishes after the answer; its transaction is
    // rolled back, not committed.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rows_of(&path, "late-1"), 0);
    drop(pipeline);
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_delivery_commits_whole_or_not_at_all() {
    let (path, _) = database();
    let ((calls, _), handler) = write_row(|| Fault::None);
    let pipeline = pipeline(store(&path), registry_with(handler));
    let mut answered = 0;
    for n in 0..40 {
        let id = format!("drop-{n}");
        let (body, headers) = gh_delivery(&id, "{}");
        // Dropped at once, mid-claim or mid-transaction: the blocking part
        // runs on, and commits the write with the completion or neither.
        let handle = pipeline.handle(body.clone(), &headers);
        let dropped = tokio::time::timeout(Duration::from_micros(n * 50), handle).await;
        answered += usize::from(dropped.is_ok());
        let mut outcome = pipeline.handle(body.clone(), &headers).await;
        for _ in 0..100 {
            if outcome.status() == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            outcome = pipeline.handle(body.clone(), &headers).await;
        }
        assert_eq!(outcome.status(), 200, "{id}: {:?}", outcome.kind);
        assert_eq!(rows_of(&path, &id), 1, "{id}");
    }
    assert!(answered < 40, "some deliveries were dropped");
    assert!(calls.load(Ordering::Relaxed) >= 40);
    drop(pipeline);
    remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_out_attempt_runs_no_handler_and_writes_nothing() {
    let (path, _) = database();
    let ((calls, _), handler) = write_row(|| Fault::None);
    let mut registry = registry_with(handler);
    let takeover = path.clone();
    registry.critical(
        "github",
        "*",
        "newer_attempt_takes_over",
        handler_fn(move |event| {
            let path = takeover.clone();
            async move {
                let conn = Connection::open(&path).map_err(HandlerError::transient)?;
                conn.execute(
                    "UPDATE hookgate_idempotency SET token = token + 1 WHERE event_key = ?1",
                    [event.key()],
                )
                .map_err(HandlerError::transient)?;
                Ok::<(), HandlerError>(())
            }
        }),
    );
    let pipeline = pipeline(store(&path), registry);
    let (body, headers) = gh_delivery("stale-1", "{}");
    let outcome = pipeline.handle(body, &headers).await;
    assert!(
        matches!(
            outcome.kind,
            OutcomeKind::CriticalFailed {
                failure: CriticalFailure::LeaseLost(_),
                ..
            }
        ),
        "{:?}",
        outcome.kind
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    assert_eq!(rows_of(&path, "stale-1"), 0);
    drop(pipeline);
    remove(&path);
}

#[test]
fn a_transactional_handler_or_an_outbox_needs_an_sqlite_store() {
    let (_, handler) = write_row(|| Fault::None);
    let built = Pipeline::builder()
        .verifier(github())
        .store(MemoryStore::new())
        .registry(registry_with(handler))
        .build();
    assert!(
        matches!(
            built,
            Err(BuildError::TransactionalStore { ref handler, needs: "SqliteStore" })
                if handler == "write_row"
        ),
        "{built:?}"
    );
    let built = Pipeline::builder()
        .verifier(github())
        .store(MemoryStore::new())
        .outbox(OutboxSettings::default())
        .build();
    assert!(matches!(built, Err(BuildError::OutboxStore)), "{built:?}");
}

#[test]
fn unsafe_outbox_table_names_are_refused() {
    for name in [
        "outbox; DROP TABLE x",
        "main.outbox",
        "",
        "1outbox",
        "\"outbox\"",
        "o-b",
        &"o".repeat(44),
    ] {
        let mut settings = OutboxSettings::default();
        settings.table = name.to_owned();
        let built = Pipeline::builder()
            .verifier(github())
            .store(SqliteStore::memory().build().unwrap())
            .outbox(settings)
            .build();
        assert!(
            matches!(
                built,
                Err(BuildError::Outbox(OutboxConfigError::InvalidTableName(ref n))) if n == name
            ),
            "{name}: {built:?}"
        );
    }
}
