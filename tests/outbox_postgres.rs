//! The durable outbox on PostgreSQL (the real server at
//! `HOOKGATE_POSTGRES_URL`): killed and restarted pipelines and relays lose
//! no job and end each exactly once; relays sharing the outbox never run a
//! job at the same time; a rolled-back delivery enqueues nothing.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::outbox::{self, ReadSettled, Settled};
use common::pipeline::{gh_delivery, Injected};
use common::{postgres_url, unique};
use hookgate::outbox::Relay;
use hookgate::store::postgres::PostgresStore;
use hookgate::transactional::postgres::tokio_postgres::Transaction;
use hookgate::transactional::postgres::PostgresHandler;
use hookgate::{async_trait, Event, HandlerError, OutcomeKind, Registry};

fn store(keys: &str) -> PostgresStore {
    PostgresStore::connect(postgres_url())
        .table(keys)
        .max_connections(8)
        .operation_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

fn reader(store: PostgresStore) -> ReadSettled {
    Arc::new(move |table: String| {
        let store = store.clone();
        Box::pin(async move {
            let client = store.pool().get().await.unwrap();
            let succeeded = client
                .query(
                    &format!("SELECT job_key FROM {table} WHERE state = 'succeeded'"),
                    &[],
                )
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.get(0))
                .collect();
            let dead = client
                .query(&format!("SELECT job_key, attempts FROM {table}_dead"), &[])
                .await
                .unwrap()
                .into_iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            let pending: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE state = 'pending'"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            Settled {
                succeeded,
                dead,
                pending,
            }
        })
    })
}

async fn drop_tables(store: &PostgresStore, tables: &[String]) {
    let client = store.pool().get().await.unwrap();
    for table in tables {
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_pipeline_and_its_relays_lose_no_job_and_end_each_once() {
    let keys = unique("obk");
    let table = unique("obx");
    let direct = store(&keys);
    outbox::kill_and_restart(
        |registry| outbox::pipeline(store(&keys), registry, &table),
        reader(direct.clone()),
        &table,
        &table,
        300,
    )
    .await;
    drop_tables(
        &direct,
        &[keys.clone(), table.clone(), format!("{table}_dead")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_sharing_an_outbox_never_run_a_job_at_once() {
    let keys = unique("obk");
    let table = unique("obx");
    let direct = store(&keys);
    outbox::relays_never_overlap(
        |registry| outbox::pipeline(store(&keys), registry, &table),
        reader(direct.clone()),
        &table,
        &table,
        200,
    )
    .await;
    drop_tables(
        &direct,
        &[keys.clone(), table.clone(), format!("{table}_dead")],
    )
    .await;
}

/// A transactional handler that fails after its work.
struct Fails;

#[async_trait]
impl PostgresHandler for Fails {
    async fn handle(&self, event: &Event, _: &Transaction<'_>) -> Result<(), HandlerError> {
        if event.id().starts_with("rolled") {
            return Err(HandlerError::transient(Injected("rolled back")));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_delivery_enqueues_nothing_and_a_separate_relay_runs_the_rest() {
    let keys = unique("obk");
    let table = unique("obx");
    let direct = store(&keys);
    let effects = outbox::Effects::default();
    let mut registry = outbox::registry(&effects);
    registry.critical_in_postgres("github", "issues", "fails", Fails);
    let pipeline = outbox::pipeline(store(&keys), registry, &table);
    let (body, headers) = gh_delivery("rolled-1", "{}");
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 500, "{:?}", outcome.kind);
    // A delivery whose kind has no failing handler goes through.
    outbox::deliver_all(&pipeline, &["ok-2".to_owned()], 4).await;
    let read = reader(direct.clone());
    let settled = read(table.clone()).await;
    assert_eq!(
        settled.pending, 4,
        "only the committed delivery's jobs: {settled:?}"
    );
    // A relay in another process: built from the store and a registry alone.
    let relay = Relay::postgres(
        store(&keys),
        outbox::registry(&effects),
        outbox::policy(),
        outbox::settings(&table),
    )
    .unwrap();
    assert_eq!(relay.dead_letter_table(), format!("{table}_dead"));
    let task = tokio::spawn(relay.clone().run());
    let settled = outbox::drained(&read, &table, Duration::from_secs(20)).await;
    task.abort();
    assert!(
        settled
            .succeeded
            .iter()
            .all(|key| key.starts_with("github:ok-2/")),
        "{settled:?}"
    );
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
    // A job whose handler is no longer registered goes to the dead letter.
    let (body, headers) = gh_delivery("orphan-3", "{}");
    assert!(matches!(
        pipeline.handle(body, &headers).await.kind,
        OutcomeKind::Processed { .. }
    ));
    let bare = Relay::postgres(
        store(&keys),
        Registry::new(),
        outbox::policy(),
        outbox::settings(&table),
    )
    .unwrap();
    let round = bare.run_once().await.unwrap();
    assert_eq!((round.claimed, round.dead_lettered), (4, 4), "{round:?}");
    drop(pipeline);
    drop_tables(
        &direct,
        &[keys.clone(), table.clone(), format!("{table}_dead")],
    )
    .await;
}
