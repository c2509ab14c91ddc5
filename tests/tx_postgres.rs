//! Transactional critical handlers on PostgreSQL (the real server at
//! `HOOKGATE_POSTGRES_URL`): the business rows of each event exist exactly
//! once whatever fails between the handler's writes and the commit, counted
//! in the user's table; every failure path rolls the writes back.
#![cfg(feature = "postgres")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pipeline::{gh_delivery, github, Injected, Rng};
use common::proxy::Proxy;
use common::tx::{self, Answers};
use common::{postgres_url, unique, url_addr, url_with_addr};
use hookgate::outbox::{OutboxConfigError, OutboxSettings};
use hookgate::store::postgres::PostgresStore;
use hookgate::transactional::postgres::tokio_postgres::Transaction;
use hookgate::transactional::postgres::PostgresHandler;
use hookgate::{
    async_trait, handler_fn, BuildError, CriticalFailure, Event, HandlerError, MemoryStore,
    OutcomeKind, Pipeline, Registry,
};

/// A store on a fresh table, through `url`.
fn store_on(url: &str, table: &str, connections: usize) -> PostgresStore {
    PostgresStore::connect(url)
        .table(table)
        .max_connections(connections)
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// The user's table: one row per write, no unique constraint, so a double
/// write shows up as two rows.
async fn create_business_table(store: &PostgresStore, table: &str) {
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, event_id text NOT NULL)"
        ))
        .await
        .unwrap();
}

async fn drop_tables(store: &PostgresStore, tables: &[&str]) {
    let client = store.pool().get().await.unwrap();
    for table in tables {
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .unwrap();
    }
}

/// Rows per event id in the user's table.
async fn rows_per_event(store: &PostgresStore, table: &str) -> Vec<(String, i64)> {
    let client = store.pool().get().await.unwrap();
    client
        .query(
            &format!("SELECT event_id, count(*) FROM {table} GROUP BY event_id ORDER BY event_id"),
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

async fn rows_of(store: &PostgresStore, table: &str, event_id: &str) -> i64 {
    let client = store.pool().get().await.unwrap();
    client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE event_id = $1"),
            &[&event_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// What the handler does after its write.
#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    Error,
    Permanent,
    Panic,
    /// Cut this pipeline's connections (the commit then fails).
    Cut,
    /// Wait past the answer budget (the pipeline drops the transaction).
    Stall,
}

/// Writes the event's row through the transaction, then injects a fault.
struct WriteRow {
    table: String,
    calls: Arc<AtomicU64>,
    fault: Box<dyn Fn() -> Fault + Send + Sync>,
    proxy: Option<Arc<Proxy>>,
    cut: Arc<AtomicBool>,
    injected: Arc<AtomicU64>,
}

impl WriteRow {
    fn new(table: &str, fault: impl Fn() -> Fault + Send + Sync + 'static) -> Self {
        Self {
            table: table.to_owned(),
            calls: Arc::default(),
            fault: Box::new(fault),
            proxy: None,
            cut: Arc::default(),
            injected: Arc::default(),
        }
    }
}

const PANIC_MARKER: &str = "injected panic after the write";

#[async_trait]
impl PostgresHandler for WriteRow {
    async fn handle(&self, event: &Event, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tx.execute(
            &format!("INSERT INTO {} (event_id) VALUES ($1)", self.table),
            &[&event.id()],
        )
        .await
        .map_err(HandlerError::transient)?;
        let fault = (self.fault)();
        if !matches!(fault, Fault::None) {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        match fault {
            Fault::None => Ok(()),
            Fault::Error => Err(HandlerError::transient(Injected("after the write"))),
            Fault::Permanent => Err(HandlerError::permanent(Injected("after the write"))),
            Fault::Panic => panic!("{PANIC_MARKER}"),
            Fault::Cut => {
                if let Some(proxy) = &self.proxy {
                    // One cut at a time per proxy; restored shortly after.
                    if !self.cut.swap(true, Ordering::AcqRel) {
                        proxy.cut();
                        let (proxy, cut) = (proxy.clone(), self.cut.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            proxy.restore().await;
                            cut.store(false, Ordering::Release);
                        });
                    }
                }
                Ok(())
            }
            Fault::Stall => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            }
        }
    }
}

fn pipeline(store: PostgresStore, registry: Registry) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store)
        .registry(registry)
        .answer_budget("*", Duration::from_millis(1_500))
        .lease("*", Duration::from_secs(2))
        .build()
        .unwrap()
}

fn registry_with(handler: WriteRow) -> Registry {
    let mut registry = Registry::new();
    registry.critical_in_postgres("github", "*", "write_row", handler);
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_pipelines_write_each_events_row_exactly_once_through_cuts_panics_and_drops() {
    tx::quiet_injected_panics(PANIC_MARKER);
    let url = postgres_url();
    let server = url_addr(&url).await;
    let keys = unique("txk");
    let business = unique("txb");
    let direct = store_on(&url, &keys, 2);
    direct.migrate().await.unwrap();
    create_business_table(&direct, &business).await;

    let rng = Arc::new(Mutex::new(Rng::new(0x7A11)));
    let mut pipelines = Vec::new();
    let mut injected = Vec::new();
    let mut proxies = Vec::new();
    for _ in 0..4 {
        let proxy = Arc::new(Proxy::start(server).await);
        let store = store_on(&url_with_addr(&url, proxy.addr()), &keys, 6);
        let draw = rng.clone();
        let mut handler = WriteRow::new(&business, move || {
            let mut rng = draw.lock().unwrap();
            match rng.between(0, 99) {
                0..=3 => Fault::Error,
                4..=5 => Fault::Panic,
                6..=7 => Fault::Cut,
                _ => Fault::None,
            }
        });
        handler.proxy = Some(proxy.clone());
        injected.push(handler.injected.clone());
        pipelines.push(pipeline(store, registry_with(handler)));
        proxies.push(proxy);
    }

    let total = tx::deliveries(10_000);
    let (ids, unique_events) = tx::plan(&business, total, 30, 0xD0B1);
    let started = std::time::Instant::now();
    let answers = tx::run_race(&pipelines, ids, 48, 5, 0x5EED).await;
    let elapsed = started.elapsed();

    let rows = rows_per_event(&direct, &business).await;
    let doubled: Vec<_> = rows.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        doubled.is_empty(),
        "events written more than once: {doubled:?}"
    );
    assert_eq!(rows.len(), unique_events, "every event's row exists");
    let client = direct.pool().get().await.unwrap();
    let completed: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {keys} WHERE state = 'completed'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(completed as usize, unique_events, "every key is completed");
    // The faults really happened (or the test proves nothing).
    let faults: u64 = injected.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    assert!(faults > 50, "injected faults: {faults}");
    assert!(Answers::get(&answers.failed_5xx) > 50, "{answers:?}");
    assert!(Answers::get(&answers.dropped) > 50, "{answers:?}");
    // Every delivery was answered 200 in the end. An event whose commit
    // landed while its answer was lost (a cut or a drop during COMMIT) was
    // then answered `Duplicate`, never run again.
    let processed = Answers::get(&answers.processed) as usize;
    let duplicate = Answers::get(&answers.duplicate) as usize;
    assert_eq!(processed + duplicate, total, "{answers:?}");
    assert!(processed <= unique_events, "{answers:?}");
    eprintln!(
        "{total} deliveries ({unique_events} events) in {elapsed:?}; {faults} faults injected; \
         {} commits answered only by a later duplicate; {answers:?}",
        unique_events - processed
    );
    drop(client);
    drop(pipelines);
    drop_tables(&direct, &[&keys, &business]).await;
}

/// A pipeline with one `WriteRow` that injects `fault` on every call, on
/// fresh tables; `(pipeline, handler calls, store, keys table, business table)`.
async fn single(fault: Fault) -> (Pipeline, Arc<AtomicU64>, PostgresStore, String, String) {
    let url = postgres_url();
    let keys = unique("txk");
    let business = unique("txb");
    let store = store_on(&url, &keys, 4);
    create_business_table(&store, &business).await;
    let handler = WriteRow::new(&business, move || fault);
    let calls = handler.calls.clone();
    let pipeline = pipeline(store.clone(), registry_with(handler));
    (pipeline, calls, store, keys, business)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_rolls_the_write_back_and_the_retry_writes_once() {
    let flip = Arc::new(AtomicBool::new(true));
    let url = postgres_url();
    let keys = unique("txk");
    let business = unique("txb");
    let store = store_on(&url, &keys, 4);
    create_business_table(&store, &business).await;
    let fail = flip.clone();
    let handler = WriteRow::new(&business, move || {
        if fail.swap(false, Ordering::AcqRel) {
            Fault::Error
        } else {
            Fault::None
        }
    });
    let pipeline = pipeline(store.clone(), registry_with(handler));
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
    assert_eq!(first.status(), 500);
    assert_eq!(rows_of(&store, &business, "err-1").await, 0);
    // Released: the retry runs at once and writes once.
    let retry = pipeline.handle(body.clone(), &headers).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Processed { .. }),
        "{:?}",
        retry.kind
    );
    assert_eq!(rows_of(&store, &business, "err-1").await, 1);
    let again = pipeline.handle(body, &headers).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate));
    assert_eq!(rows_of(&store, &business, "err-1").await, 1);
    drop_tables(&store, &[&keys, &business]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_rolls_the_write_back_and_dead_letters_the_event() {
    let (pipeline, calls, store, keys, business) = single(Fault::Permanent).await;
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
    assert_eq!(outcome.status(), 200);
    assert_eq!(rows_of(&store, &business, "perm-1").await, 0);
    let dead = pipeline.memory_dead_letter().unwrap().entries();
    assert_eq!(dead.len(), 1);
    assert_eq!(&*dead[0].handler, "write_row");
    // Completed without its write: the provider's retry is a duplicate.
    let again = pipeline.handle(body, &headers).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    drop_tables(&store, &[&keys, &business]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_after_the_write_rolls_it_back() {
    tx::quiet_injected_panics(PANIC_MARKER);
    let (pipeline, _, store, keys, business) = single(Fault::Panic).await;
    let (body, headers) = gh_delivery("panic-1", "{}");
    let outcome = pipeline.handle(body, &headers).await;
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
    assert_eq!(rows_of(&store, &business, "panic-1").await, 0);
    drop_tables(&store, &[&keys, &business]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_delivery_rolls_the_write_back_and_the_retry_after_the_lease_writes_once() {
    let url = postgres_url();
    let keys = unique("txk");
    let business = unique("txb");
    let store = store_on(&url, &keys, 4);
    create_business_table(&store, &business).await;
    let stall = Arc::new(AtomicBool::new(true));
    let first = stall.clone();
    let handler = WriteRow::new(&business, move || {
        if first.swap(false, Ordering::AcqRel) {
            Fault::Stall
        } else {
            Fault::None
        }
    });
    let calls = handler.calls.clone();
    let pipeline = pipeline(store.clone(), registry_with(handler));
    let (body, headers) = gh_delivery("drop-1", "{}");
    // The host gives up while the handler's write is in the transaction.
    let handle = pipeline.handle(body.clone(), &headers);
    assert!(tokio::time::timeout(Duration::from_millis(300), handle)
        .await
        .is_err());
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(rows_of(&store, &business, "drop-1").await, 0);
    // The key is still leased: 409 until the lease ends, then the retry runs.
    let busy = pipeline.handle(body.clone(), &headers).await;
    assert!(
        matches!(busy.kind, OutcomeKind::InFlight { .. }),
        "{:?}",
        busy.kind
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let retry = pipeline.handle(body, &headers).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Processed { .. }),
        "{:?}",
        retry.kind
    );
    assert_eq!(rows_of(&store, &business, "drop-1").await, 1);
    drop_tables(&store, &[&keys, &business]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_the_answer_budget_writes_nothing() {
    let (pipeline, _, store, keys, business) = single(Fault::Stall).await;
    let (body, headers) = gh_delivery("late-1", "{}");
    let outcome = pipeline.handle(body, &headers).await;
    assert!(
        matches!(
            outcome.kind,
            OutcomeKind::CriticalFailed {
                failure: CriticalFailure::Timeout(_),
                ..
            }
        ),
        "{:?}",
        outcome.kind
    );
    assert_eq!(rows_of(&store, &business, "late-1").await, 0);
    drop_tables(&store, &[&keys, &business]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_before_the_commit_answers_503_writes_nothing_and_the_retry_writes_once() {
    let url = postgres_url();
    let server = url_addr(&url).await;
    let keys = unique("txk");
    let business = unique("txb");
    let direct = store_on(&url, &keys, 2);
    direct.migrate().await.unwrap();
    create_business_table(&direct, &business).await;
    let proxy = Arc::new(Proxy::start(server).await);
    let store = store_on(&url_with_addr(&url, proxy.addr()), &keys, 2);
    let once = Arc::new(AtomicBool::new(true));
    let first = once.clone();
    let mut handler = WriteRow::new(&business, move || {
        if first.swap(false, Ordering::AcqRel) {
            Fault::Cut
        } else {
            Fault::None
        }
    });
    handler.proxy = Some(proxy.clone());
    let pipeline = pipeline(store, registry_with(handler));
    let (body, headers) = gh_delivery("cut-1", "{}");
    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status(), 503, "{:?}", outcome.kind);
    assert!(matches!(outcome.kind, OutcomeKind::StoreUnavailable(_)));
    assert_eq!(rows_of(&direct, &business, "cut-1").await, 0);
    // The provider retries until it is answered 200: exactly one row.
    let mut answered = None;
    for _ in 0..100 {
        let retry = pipeline.handle(body.clone(), &headers).await;
        if retry.status() == 200 {
            answered = Some(retry.kind);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matches!(answered, Some(OutcomeKind::Processed { .. })),
        "{answered:?}"
    );
    assert_eq!(rows_of(&direct, &business, "cut-1").await, 1);
    drop(pipeline);
    drop_tables(&direct, &[&keys, &business]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_out_attempt_runs_no_handler_and_writes_nothing() {
    let url = postgres_url();
    let keys = unique("txk");
    let business = unique("txb");
    let store = store_on(&url, &keys, 4);
    create_business_table(&store, &business).await;
    let handler = WriteRow::new(&business, || Fault::None);
    let calls = handler.calls.clone();
    let mut registry = registry_with(handler);
    // A plain critical handler that runs first and lets a newer attempt take
    // the key meanwhile (as after an expired lease): the token moves on.
    let takeover = store.clone();
    let table = keys.clone();
    registry.critical(
        "github",
        "*",
        "newer_attempt_takes_over",
        handler_fn(move |event| {
            let (store, table) = (takeover.clone(), table.clone());
            async move {
                let client = store.pool().get().await.map_err(HandlerError::transient)?;
                client
                    .execute(
                        &format!("UPDATE {table} SET token = token + 1 WHERE event_key = $1"),
                        &[&event.key()],
                    )
                    .await
                    .map_err(HandlerError::transient)?;
                Ok::<(), HandlerError>(())
            }
        }),
    );
    let pipeline = pipeline(store.clone(), registry);
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
    assert_eq!(calls.load(Ordering::Relaxed), 0, "the fence runs first");
    assert_eq!(rows_of(&store, &business, "stale-1").await, 0);
    // The newer attempt's claim is untouched: still leased.
    let client = store.pool().get().await.unwrap();
    let state: String = client
        .query_one(
            &format!("SELECT state FROM {keys} WHERE event_key = 'github:stale-1'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "leased");
    drop(client);
    drop_tables(&store, &[&keys, &business]).await;
}

#[test]
fn a_transactional_handler_or_an_outbox_needs_a_postgres_store() {
    let handler = WriteRow::new("t", || Fault::None);
    let built = Pipeline::builder()
        .verifier(github())
        .store(MemoryStore::new())
        .registry(registry_with(handler))
        .build();
    assert!(
        matches!(
            built,
            Err(BuildError::TransactionalStore { ref handler, needs: "PostgresStore" })
                if handler == "write_row"
        ),
        "{built:?}"
    );
    let message = built.err().map(|err| err.to_string()).unwrap_or_default();
    assert!(message.contains("PostgresStore"), "{message}");
    let built = Pipeline::builder()
        .verifier(github())
        .store(MemoryStore::new())
        .outbox(OutboxSettings::default())
        .build();
    assert!(matches!(built, Err(BuildError::OutboxStore)), "{built:?}");
}

#[test]
fn unsafe_outbox_table_names_are_refused() {
    let url = postgres_url();
    for name in [
        "outbox; DROP TABLE x",
        "",
        "1outbox",
        "\"outbox\"",
        "o-b",
        "a.b.c",
        &"o".repeat(44),
    ] {
        let mut settings = OutboxSettings::default();
        settings.table = name.to_owned();
        let built = Pipeline::builder()
            .verifier(github())
            .store(store_on(&url, "hookgate_unused", 1))
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
    // PostgreSQL takes a schema-qualified name.
    let mut settings = OutboxSettings::default();
    settings.table = "public.hookgate_jobs".to_owned();
    let built = Pipeline::builder()
        .verifier(github())
        .store(store_on(&url, "hookgate_unused", 1))
        .outbox(settings)
        .build();
    assert!(built.is_ok(), "{built:?}");
}
