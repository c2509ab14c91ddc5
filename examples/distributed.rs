//! Two receiver instances and two workers on one machine, sharing PostgreSQL
//! and NATS JetStream, and a worker killed in the middle of a job.
//!
//! - **Receivers** (two pipelines, as two instances of a service would run):
//!   each verifies and deduplicates Stripe deliveries on one `PostgresStore`,
//!   runs the critical handler, and writes the event's best-effort job into
//!   the durable outbox in the same transaction that completes the event's
//!   key. Each instance's relay forwards its outbox's jobs to a JetStream
//!   stream (the job key is the `Nats-Msg-Id`, so a job sent twice is stored
//!   once).
//! - **Workers** (two `NatsWorker`s on one durable consumer) run the jobs'
//!   best-effort handler, acknowledging only after it succeeded, and
//!   deduplicate by job key on a shared `PostgresStore`.
//! - **The crash**: worker 1 hangs in its first job and is killed (its task
//!   aborted, as a crashed process would stop) before acknowledging it.
//!   JetStream delivers the job again once its lease ends, and worker 2
//!   finishes it. The handler's effect is a row keyed by the job key in a
//!   `receipts` table: every event has exactly one.
//!
//! Run with `cargo run --example distributed --features postgres,nats`
//! (PostgreSQL at `HOOKGATE_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; NATS with JetStream at
//! `HOOKGATE_NATS_URL`, default `nats://127.0.0.1:4222`). Its tables and
//! stream have per-run names and are removed at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookgate::jobs::nats::async_nats;
use hookgate::jobs::nats::{NatsSink, NatsStream, NatsWorker};
use hookgate::jobs::JobRunner;
use hookgate::outbox::OutboxSettings;
use hookgate::store::postgres::PostgresStore;
use hookgate::testing::stripe_headers;
use hookgate::{
    handler_fn, Event, HandlerError, Headers, OutcomeKind, Pipeline, Registry, RetryPolicy, Stripe,
};
use tokio::sync::{oneshot, Mutex};

const SECRET: &str = "whsec_distributed_demo";
/// The best-effort handler's name: it names the job, on the receivers and on
/// the workers alike.
const RECEIPT: &str = "send_receipt";
const EVENTS: usize = 20;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Attempts of at most 2 s, so a job's lease (and JetStream's `ack_wait`)
/// can be 3 s and the killed worker's job comes back quickly.
fn retry_policy() -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.attempt_timeout = Duration::from_secs(2);
    policy.initial_backoff = Duration::from_millis(200);
    policy
}

/// A receiver instance: Stripe verification, the PostgreSQL store, a
/// critical handler, and the receipt job written to the outbox.
async fn receiver(
    url: &str,
    store_table: &str,
    outbox: &OutboxSettings,
    processed: Arc<AtomicU64>,
) -> Result<Pipeline, Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(url).table(store_table).build()?;
    store.migrate().await?;
    let mut registry = Registry::new();
    registry
        .critical(
            "stripe",
            "invoice.paid",
            "mark_invoice_paid",
            handler_fn(move |_event| {
                let processed = processed.clone();
                async move {
                    processed.fetch_add(1, Ordering::Relaxed);
                    Ok::<(), HandlerError>(())
                }
            }),
        )
        // Registered here so the receivers know the job exists (they write
        // it to the outbox); the workers run it.
        .best_effort(
            "stripe",
            "invoice.paid",
            RECEIPT,
            handler_fn(|_event| async { Ok::<(), HandlerError>(()) }),
        );
    let pipeline = Pipeline::builder()
        .verifier(Stripe::builder(SECRET).build()?)
        .store(store)
        .registry(registry)
        .retry_policy(retry_policy())
        .outbox(outbox.clone())
        .build()?;
    Ok(pipeline)
}

/// The job's key, as the worker's handler sees it.
fn job_key(event: &Event) -> String {
    format!("{}:{RECEIPT}", event.key())
}

/// The workers' registry: the receipt handler writes one row per job key,
/// idempotently (`ON CONFLICT DO NOTHING`: a worker killed after the write but
/// before its job was marked done runs the job again, and the job key absorbs
/// that repeat; `repeats` counts them). With `hang`, the first job it gets
/// never finishes: it reports the job's key and waits to be killed.
fn worker_registry(
    client: Arc<tokio_postgres::Client>,
    receipts: &str,
    worker: &'static str,
    hang: Option<Arc<Mutex<Option<oneshot::Sender<String>>>>>,
    repeats: Arc<AtomicU64>,
) -> Registry {
    let insert = format!(
        "INSERT INTO {receipts} (job_key, worker) VALUES ($1, $2) ON CONFLICT (job_key) DO NOTHING"
    );
    let mut registry = Registry::new();
    registry.best_effort(
        "stripe",
        "invoice.paid",
        RECEIPT,
        handler_fn(move |event: Event| {
            let client = client.clone();
            let insert = insert.clone();
            let hang = hang.clone();
            let repeats = repeats.clone();
            async move {
                let key = job_key(&event);
                if let Some(hang) = hang {
                    if let Some(started) = hang.lock().await.take() {
                        let _ = started.send(key.clone());
                        std::future::pending::<()>().await;
                    }
                }
                let written = client
                    .execute(&insert, &[&key, &worker])
                    .await
                    .map_err(HandlerError::transient)?;
                if written == 0 {
                    repeats.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        }),
    );
    registry
}

/// A worker on the shared durable consumer, deduplicating on `jobs_table`.
async fn worker(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
    url: &str,
    jobs_table: &str,
    registry: Registry,
) -> Result<NatsWorker, Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(url).table(jobs_table).build()?;
    store.migrate().await?;
    let runner = JobRunner::builder(registry, store)
        .retry_policy(retry_policy())
        .lease(Duration::from_secs(3))
        .build()?;
    Ok(
        NatsWorker::builder(jetstream.clone(), stream, "receipt-workers", runner)
            .concurrency(4)
            .build()
            .await?,
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = setting(
        "HOOKGATE_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let nats_url = setting("HOOKGATE_NATS_URL", "nats://127.0.0.1:4222");
    let run = format!(
        "{}_{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp()
    );
    let (store_table, jobs_table, receipts) = (
        format!("demo_keys_{run}"),
        format!("demo_jobs_{run}"),
        format!("demo_receipts_{run}"),
    );
    let mut outbox = OutboxSettings::default();
    outbox.table = format!("demo_outbox_{run}");
    outbox.lease = Duration::from_secs(5);
    outbox.poll_interval = Duration::from_millis(100);
    let (stream_name, subject) = (format!("DEMO_{run}"), format!("demo.{run}.jobs"));

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let client = Arc::new(client);
    client
        .batch_execute(&format!(
            "CREATE TABLE {receipts} (job_key TEXT PRIMARY KEY, worker TEXT NOT NULL)"
        ))
        .await?;
    let nats = async_nats::connect(&nats_url).await?;
    let jetstream = async_nats::jetstream::new(nats);
    NatsStream::new(&stream_name, &subject)
        .create_or_get(&jetstream)
        .await?;

    let result = demo(
        &url,
        &jetstream,
        &stream_name,
        &subject,
        &store_table,
        &jobs_table,
        &receipts,
        &outbox,
        client.clone(),
    )
    .await;

    // Clean up whatever happened.
    let _ = jetstream.delete_stream(&stream_name).await;
    for table in [
        &receipts,
        &store_table,
        &jobs_table,
        &outbox.table,
        &format!("{}_dead", outbox.table),
    ] {
        let _ = client
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn demo(
    url: &str,
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
    store_table: &str,
    jobs_table: &str,
    receipts: &str,
    outbox: &OutboxSettings,
    client: Arc<tokio_postgres::Client>,
) -> Result<(), Box<dyn std::error::Error>> {
    // Two receiver instances, each with its relay forwarding to JetStream.
    let processed = Arc::new(AtomicU64::new(0));
    let a = receiver(url, store_table, outbox, processed.clone()).await?;
    let b = receiver(url, store_table, outbox, processed.clone()).await?;
    let mut relays = Vec::new();
    for pipeline in [&a, &b] {
        let relay = pipeline
            .relay()
            .ok_or("a pipeline with an outbox has a relay")?
            .forward_to(NatsSink::new(jetstream.clone(), subject));
        relay.migrate().await?;
        relays.push(tokio::spawn(relay.run()));
    }

    // Worker 1 takes the first job and hangs in it.
    let repeats = Arc::new(AtomicU64::new(0));
    let (started_tx, started_rx) = oneshot::channel();
    let hang = Arc::new(Mutex::new(Some(started_tx)));
    let first = worker(
        jetstream,
        stream,
        url,
        jobs_table,
        worker_registry(
            client.clone(),
            receipts,
            "worker-1",
            Some(hang),
            repeats.clone(),
        ),
    )
    .await?;
    let first = tokio::spawn(async move { first.run_until(std::future::pending()).await });

    // Deliveries: each event once to instance A or B, and a quarter of them
    // again to the other instance (a provider's retry).
    let mut duplicates = 0;
    for n in 0..EVENTS {
        let body = format!(
            r#"{{"id":"evt_demo_{n}","object":"event","type":"invoice.paid","created":1700000000,"data":{{"object":{{"id":"in_{n}"}}}}}}"#
        );
        let headers = Headers::from_pairs(stripe_headers(
            SECRET,
            body.as_bytes(),
            time::OffsetDateTime::now_utc(),
        ));
        let (to, other) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let outcome = to.handle(bytes::Bytes::from(body.clone()), &headers).await;
        assert!(
            matches!(outcome.kind, OutcomeKind::Processed { .. }),
            "{outcome:?}"
        );
        if n % 4 == 0 {
            let again = other.handle(bytes::Bytes::from(body), &headers).await;
            assert!(matches!(again.kind, OutcomeKind::Duplicate), "{again:?}");
            duplicates += 1;
        }
    }
    println!(
        "receivers: {EVENTS} events processed once ({} critical runs), {duplicates} retries answered as duplicates",
        processed.load(Ordering::Relaxed)
    );
    assert_eq!(processed.load(Ordering::Relaxed), EVENTS as u64);

    // Kill worker 1 in the middle of its job, before it acknowledges.
    let killed_job = tokio::time::timeout(Duration::from_secs(30), started_rx).await??;
    first.abort();
    let _ = first.await;
    println!("worker-1 killed while running {killed_job}");

    let second = worker(
        jetstream,
        stream,
        url,
        jobs_table,
        worker_registry(client.clone(), receipts, "worker-2", None, repeats.clone()),
    )
    .await?;
    let second = Arc::new(second);
    let running = tokio::spawn({
        let second = second.clone();
        async move { second.run_until(std::future::pending()).await }
    });

    // Every job's receipt, within the lease and retries.
    let count = format!("SELECT count(*) FROM {receipts}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows: i64 = client.query_one(&count, &[]).await?.get(0);
        if rows as usize == EVENTS {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("only {rows} of {EVENTS} receipts after 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.abort();
    for relay in relays {
        relay.abort();
    }

    let by = client
        .query_one(
            &format!("SELECT worker FROM {receipts} WHERE job_key = $1"),
            &[&killed_job],
        )
        .await?;
    let finished_by: String = by.get(0);
    let per_worker = client
        .query(
            &format!("SELECT worker, count(*) FROM {receipts} GROUP BY worker ORDER BY worker"),
            &[],
        )
        .await?;
    println!(
        "receipts: {EVENTS} rows, one per job key ({} repeated run(s) of a job whose worker died after its write, absorbed by the key)",
        repeats.load(Ordering::Relaxed)
    );
    for row in per_worker {
        let (worker, rows): (String, i64) = (row.get(0), row.get(1));
        println!("  {worker}: {rows}");
    }
    println!("{killed_job}: started on worker-1 (killed), finished on {finished_by}");
    assert_eq!(finished_by, "worker-2");
    let counts = second.runner().counts();
    println!(
        "worker-2 runner: {} succeeded, {} already done, {} retried, {} busy, {} dead-lettered",
        counts.succeeded, counts.already_done, counts.retried, counts.busy, counts.dead_lettered
    );
    Ok(())
}
