//! What one delivery's idempotency bookkeeping costs on each store: a claim of
//! a new key followed by its `complete` (the path of every first delivery), a
//! claim of a completed key (the path of every duplicate), and the same first
//! path with 16 deliveries in flight at once. Criterion reports the latency per
//! iteration and, through the element throughput, operations (deliveries) per
//! second. Every group holds `bare_hmac`, the HMAC-SHA256 of a 1 KiB body that
//! verifying the same delivery costs, so `bench-ratios` reads the bookkeeping
//! as a multiple of the verification.
//!
//! The server stores read `HOOKGATE_POSTGRES_URL` / `HOOKGATE_REDIS_URL` (local
//! defaults) and are benched only when their feature is on:
//! `cargo bench --bench stores --all-features -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use hmac::{Hmac, Mac};
use hookgate::{Claim, Fingerprint, IdempotencyStore, MemoryStore};
use sha2::Sha256;
use tokio::runtime::Runtime;

const LEASE: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(600);
const CONCURRENCY: u64 = 16;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A prefix that no earlier run used, so every claim is of a new key.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("bench_{}_{nanos}", std::process::id())
}

fn bare_hmac(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let body = vec![0x5a_u8; 1024];
    let mac = Hmac::<Sha256>::new_from_slice(b"whsec_bench_secret").expect("any key length");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bare_hmac", |b| {
        b.iter(|| {
            let mut mac = mac.clone();
            mac.update(black_box(&body));
            black_box(mac.finalize().into_bytes())
        })
    });
}

/// Claims a new key and completes it; panics unless the claim acquires.
async fn claim_complete(store: &dyn IdempotencyStore, key: &str, fp: Fingerprint) {
    match store.claim(key, fp, LEASE).await {
        Ok(Claim::Acquired(token)) => store
            .complete(key, token, RETENTION)
            .await
            .expect("complete"),
        other => panic!("claim of a new key answered {other:?}"),
    }
}

/// The three store members of a group, on `store`.
fn bench_store(c: &mut Criterion, name: &str, rt: &Runtime, store: Arc<dyn IdempotencyStore>) {
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    bare_hmac(&mut group);
    let fp = Fingerprint::of(&[0x5a_u8; 1024]);
    let prefix = run_id();
    let counter = Arc::new(AtomicU64::new(0));

    group.throughput(Throughput::Elements(1));
    group.bench_function("claim_complete", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    claim_complete(&*store, &format!("{prefix}:{n}"), fp).await;
                }
                started.elapsed()
            })
        })
    });

    let duplicate = format!("{prefix}:duplicate");
    rt.block_on(claim_complete(&*store, &duplicate, fp));
    group.bench_function("claim_duplicate", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let answer = store.claim(&duplicate, fp, LEASE).await;
                    assert!(matches!(answer, Ok(Claim::Completed)), "{answer:?}");
                }
                started.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(CONCURRENCY));
    group.bench_function("claim_complete_x16", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let mut batch = tokio::task::JoinSet::new();
                    for _ in 0..CONCURRENCY {
                        let store = Arc::clone(&store);
                        let key = format!("{prefix}:{}", counter.fetch_add(1, Ordering::Relaxed));
                        batch.spawn(async move { claim_complete(&*store, &key, fp).await });
                    }
                    while let Some(done) = batch.join_next().await {
                        done.expect("claim task");
                    }
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    bench_store(c, "store_memory", &rt, Arc::new(MemoryStore::new()));
}

#[cfg(feature = "sqlite")]
fn sqlite(c: &mut Criterion) {
    use hookgate::store::sqlite::SqliteStore;
    let rt = runtime();
    let path = std::env::temp_dir().join(format!("{}.sqlite3", run_id()));
    let store = SqliteStore::file(&path).build().expect("sqlite store");
    bench_store(c, "store_sqlite", &rt, Arc::new(store));
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

#[cfg(feature = "postgres")]
fn postgres(c: &mut Criterion) {
    use hookgate::store::postgres::PostgresStore;
    let rt = runtime();
    let url = std::env::var("HOOKGATE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let store = PostgresStore::connect(url)
        .table(run_id())
        .build()
        .expect("postgres store");
    bench_store(c, "store_postgres", &rt, Arc::new(store.clone()));
    rt.block_on(async {
        let client = store.pool().get().await.expect("connection");
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", store.table()))
            .await
            .expect("drop the bench table");
    });
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    use hookgate::store::redis::RedisStore;
    let rt = runtime();
    let url = std::env::var("HOOKGATE_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    // Keys expire with their retention (10 minutes).
    let store = RedisStore::connect(url)
        .key_prefix(format!("hookgate:{}:", run_id()))
        .build()
        .expect("redis store");
    bench_store(c, "store_redis", &rt, Arc::new(store));
}

#[cfg(not(feature = "sqlite"))]
fn sqlite(_: &mut Criterion) {}
#[cfg(not(feature = "postgres"))]
fn postgres(_: &mut Criterion) {}
#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {}

criterion_group!(benches, memory, sqlite, postgres, redis);
criterion_main!(benches);
