//! Best-effort work through the durable outbox, next to the in-process runner
//! on the same store and the bare HMAC-SHA256 of the 1 KiB body, so
//! `bench-ratios` reads each as a multiple of the verification.
//!
//! One group per database (`outbox_sqlite`, `outbox_postgres`), each with:
//! - `bare_hmac`: the HMAC of the body;
//! - `in_process`: a first delivery with one best-effort handler (a no-op),
//!   its work run in this process (`handle_deferred`, then the `BestEffort`
//!   awaited): claim, complete, run;
//! - `outbox_enqueue`: the same delivery with an outbox: claim, then one
//!   transaction that completes the key and inserts the job;
//! - `outbox_enqueue_relay`: that delivery and a relay round that claims,
//!   runs and settles its job (the whole path of one job);
//! - `relay_x16`: one relay round over 16 due jobs (enqueued outside the
//!   timed part): relay throughput, in jobs per second.
//!
//! Deliveries are signed outside the timed part. Wall time (the databases'
//! work runs on other threads and in the server); with the features on:
//! `cargo bench --bench outbox --features postgres,sqlite -- --warm-up-time 1 --measurement-time 3`
//! (`HOOKGATE_POSTGRES_URL` names the server, the local one by default).

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod common;

use criterion::{criterion_group, criterion_main};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod outbox {
    use std::hint::black_box;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use criterion::{Criterion, Throughput};
    use hookgate::outbox::{OutboxSettings, Relay};
    use hookgate::{
        handler_fn, testing, GitHub, HandlerError, Headers, IdempotencyStore, OutcomeKind,
        Pipeline, Registry,
    };

    use super::common;

    const SECRET: &str = "bench-secret";

    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    /// A name no earlier run used.
    pub(crate) fn run_id() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
        format!("bo_{}_{nanos}", std::process::id())
    }

    /// A 1 KiB JSON body.
    fn body() -> Vec<u8> {
        let mut body = br#"{"pad":""#.to_vec();
        body.resize(1024 - 2, b'x');
        body.extend_from_slice(b"\"}");
        body
    }

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry.best_effort(
            "github",
            "*",
            "noop",
            handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
        );
        registry
    }

    fn pipeline(store: impl IdempotencyStore + 'static, outbox: Option<&str>) -> Pipeline {
        let mut builder = Pipeline::builder()
            .verifier(GitHub::builder(SECRET).build().expect("secret"))
            .store(store)
            .registry(registry());
        if let Some(table) = outbox {
            let mut settings = OutboxSettings::default();
            settings.table = table.to_owned();
            settings.batch_size = 16;
            builder = builder.outbox(settings);
        }
        builder.build().expect("pipeline")
    }

    /// `n` signed deliveries with fresh ids.
    fn deliveries(prefix: &str, counter: &AtomicU64, n: u64, body: &[u8]) -> Vec<Headers> {
        (0..n)
            .map(|_| {
                let id = format!("{prefix}-{}", counter.fetch_add(1, Ordering::Relaxed));
                Headers::from_pairs(testing::github_headers(SECRET, body, "push", &id))
            })
            .collect()
    }

    async fn processed(pipeline: &Pipeline, body: &Bytes, headers: &Headers) {
        let outcome = pipeline.handle(body.clone(), headers).await;
        assert!(
            matches!(outcome.kind, OutcomeKind::Processed { best_effort: 1 }),
            "{:?}",
            outcome.kind
        );
    }

    /// Relay rounds until `jobs` jobs succeeded.
    async fn relay_jobs(relay: &Relay, jobs: usize) {
        let mut done = 0;
        while done < jobs {
            let round = relay.run_once().await.expect("relay round");
            assert_eq!(round.succeeded, round.claimed, "{round:?}");
            done += round.succeeded;
        }
    }

    /// The members of one group: the in-process pipeline and the outbox
    /// pipeline run on stores of the same database.
    pub(crate) fn bench(
        c: &mut Criterion,
        name: &str,
        rt: &tokio::runtime::Runtime,
        in_process: Pipeline,
        outboxed: Pipeline,
    ) {
        let relay = outboxed.relay().expect("an outbox");
        let mut group = c.benchmark_group(name);
        group.sample_size(20);
        let body = body();
        let keyed = common::keyed();
        let expected = common::tag(&[&body]);
        group.bench_function("bare_hmac", |b| {
            b.iter(|| common::bare_hmac(&keyed, &[black_box(&body)], &expected))
        });
        let prefix = run_id();
        let counter = AtomicU64::new(0);
        let bytes = Bytes::from(body.clone());
        group.throughput(Throughput::Elements(1));

        group.bench_function("in_process", |b| {
            b.iter_custom(|iters| {
                let signed = deliveries(&prefix, &counter, iters, &body);
                rt.block_on(async {
                    let started = Instant::now();
                    for headers in &signed {
                        let (outcome, work) =
                            in_process.handle_deferred(bytes.clone(), headers).await;
                        assert!(matches!(outcome.kind, OutcomeKind::Processed { .. }));
                        let report = work.expect("best-effort work").await;
                        assert_eq!(report.succeeded, 1);
                    }
                    started.elapsed()
                })
            })
        });

        group.bench_function("outbox_enqueue", |b| {
            b.iter_custom(|iters| {
                let signed = deliveries(&prefix, &counter, iters, &body);
                let elapsed = rt.block_on(async {
                    let started = Instant::now();
                    for headers in &signed {
                        processed(&outboxed, &bytes, headers).await;
                    }
                    started.elapsed()
                });
                // The enqueued jobs are relayed outside the timed part.
                rt.block_on(relay_jobs(&relay, signed.len()));
                elapsed
            })
        });

        group.bench_function("outbox_enqueue_relay", |b| {
            b.iter_custom(|iters| {
                let signed = deliveries(&prefix, &counter, iters, &body);
                rt.block_on(async {
                    let started = Instant::now();
                    for headers in &signed {
                        processed(&outboxed, &bytes, headers).await;
                        relay_jobs(&relay, 1).await;
                    }
                    started.elapsed()
                })
            })
        });

        group.throughput(Throughput::Elements(16));
        group.bench_function("relay_x16", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let signed = deliveries(&prefix, &counter, 16, &body);
                    rt.block_on(async {
                        for headers in &signed {
                            processed(&outboxed, &bytes, headers).await;
                        }
                        let started = Instant::now();
                        relay_jobs(&relay, 16).await;
                        total += started.elapsed();
                    });
                }
                total
            })
        });
        group.finish();
    }

    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite(c: &mut Criterion) {
        use hookgate::store::sqlite::SqliteStore;
        let rt = runtime();
        let path = std::env::temp_dir().join(format!("{}.sqlite3", run_id()));
        let store = || SqliteStore::file(&path).build().expect("sqlite store");
        let in_process = pipeline(store(), None);
        let outboxed = pipeline(store(), Some("bench_jobs"));
        bench(c, "outbox_sqlite", &rt, in_process, outboxed);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(c: &mut Criterion) {
        use hookgate::store::postgres::PostgresStore;
        let rt = runtime();
        let url = std::env::var("HOOKGATE_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let keys = run_id();
        let jobs = format!("{keys}_jobs");
        let store = PostgresStore::connect(url)
            .table(&keys)
            .build()
            .expect("postgres store");
        let in_process = pipeline(store.clone(), None);
        let outboxed = pipeline(store.clone(), Some(&jobs));
        bench(c, "outbox_postgres", &rt, in_process, outboxed);
        rt.block_on(async {
            let client = store.pool().get().await.expect("connection");
            for table in [keys.clone(), jobs.clone(), format!("{jobs}_dead")] {
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                    .await
                    .expect("drop a bench table");
            }
        });
    }
}

#[cfg(feature = "postgres")]
use outbox::postgres;
#[cfg(feature = "sqlite")]
use outbox::sqlite;

#[cfg(not(feature = "sqlite"))]
fn sqlite(_: &mut criterion::Criterion) {}
#[cfg(not(feature = "postgres"))]
fn postgres(_: &mut criterion::Criterion) {}

criterion_group!(outboxes, sqlite, postgres);
criterion_main!(outboxes);
