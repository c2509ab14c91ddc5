//! Idempotency stores: what one delivery's bookkeeping costs on each store,
//! next to the bare HMAC-SHA256 of a 1 KiB body (the work verification cannot
//! avoid), so `bench-ratios` reads it as a multiple of the verification.
//!
//! Every group has `claim_complete` (claim of a new key + its `complete`: the
//! path of every first delivery) and `claim_duplicate` (claim of a completed
//! key: the path of every duplicate). The durable stores add
//! `claim_complete_x16`, 16 first deliveries in flight at once. Criterion
//! reports the latency per iteration and, where a throughput is set, operations
//! (deliveries) per second.
//!
//! `store_memory_tail` is no criterion group: criterion reports a mean per
//! iteration, which hides the rare slow claim a lock holder makes everyone wait
//! for. It times every claim on a full default-sized `MemoryStore` (1,000,000
//! keys, 16 shards), once with churn (every new key evicts a settled one) and once
//! with abandoned leases expiring one after another (every new key evicts one),
//! and prints the percentiles next to the bare HMAC's, timed the same way:
//! `cargo bench --bench stores -- store_memory_tail` (`HOOKGATE_TAIL_CLAIMS` sets
//! the number of timed claims per case, default 1,000,000).
//!
//! `journal_write` is the sustained write rate of the SQL journals: one
//! iteration is one batch of 256 `JournalWrite::Record`s (every field set, a
//! 1 KiB body, fresh ids each batch, made outside the timed part), the batch
//! the pipeline's background writer hands over, written by `SqliteJournal` (a
//! temp file) and `PostgresJournal` (a table of its own, dropped at the end);
//! its `bare_hmac` is the bare HMAC-SHA256 of the same 256 bodies. Criterion
//! prints records per second.
//!
//! The durable stores and journals are benched only with their feature on
//! (wall time: their work runs on other threads and in the servers); the server
//! ones read `HOOKGATE_POSTGRES_URL` / `HOOKGATE_REDIS_URL` (local defaults):
//! `cargo bench --bench stores --all-features -- --warm-up-time 1 --measurement-time 3`

mod common;
mod support;

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use futures_util::FutureExt;
use hookgate::store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};

const LEASE: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(72 * 3600);

/// Claims and completes `key`. The memory store answers at once, so polling the
/// future once (as a runtime would) is the whole cost.
fn claim_complete(store: &MemoryStore, key: &str, fingerprint: Fingerprint) {
    let claim = store.claim(key, fingerprint, LEASE).now_or_never();
    let Some(Ok(Claim::Acquired(token))) = claim else {
        panic!("a new key is acquired at once");
    };
    let done = store.complete(key, token, RETENTION).now_or_never();
    assert!(matches!(done, Some(Ok(()))));
}

/// Benches claim + complete of a new key per iteration.
fn new_keys(
    group: &mut BenchmarkGroup<'_, support::Clock>,
    name: &str,
    store: &MemoryStore,
    fingerprint: Fingerprint,
) {
    let mut key = String::with_capacity(48);
    let mut n = 0u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            n += 1;
            key.clear();
            let _ = write!(key, "stripe:evt_{n:024}");
            claim_complete(store, black_box(&key), fingerprint);
        })
    });
}

fn store_memory(c: &mut Criterion<support::Clock>) {
    let body = vec![b'x'; 1024];
    let fingerprint = Fingerprint::of(&body);
    let mut group = c.benchmark_group("store_memory");
    // One element is one delivery: criterion prints deliveries per second.
    group.throughput(criterion::Throughput::Elements(1));

    let keyed = common::keyed();
    let expected = common::tag(&[&body]);
    group.bench_function("bare_hmac", |b| {
        b.iter(|| common::bare_hmac(&keyed, &[black_box(&body)], &expected))
    });

    // New keys forever: past 1,000,000 keys every claim also evicts the oldest.
    let store = MemoryStore::new();
    new_keys(&mut group, "claim_complete", &store, fingerprint);
    // The same with a store small enough to stay in the CPU caches (10,000 keys):
    // the difference to the above is memory latency, not work.
    let small = MemoryStore::builder().capacity(10_000).build();
    new_keys(
        &mut group,
        "claim_complete_cache_resident",
        &small,
        fingerprint,
    );

    // A duplicate delivery: its key is completed, the claim answers Completed.
    claim_complete(&store, "stripe:evt_duplicate", fingerprint);
    group.bench_function("claim_duplicate", |b| {
        b.iter(|| {
            let claim = store.claim(black_box("stripe:evt_duplicate"), fingerprint, LEASE);
            assert!(matches!(claim.now_or_never(), Some(Ok(Claim::Completed))));
        })
    });

    group.finish();
}

/// Claim latency percentiles on full memory stores (see the crate docs above).
mod tail {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::measurement::Measurement;
    use criterion::Criterion;
    use futures_util::FutureExt;
    use hookgate::store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};
    use hookgate::FixedClock;

    use super::{common, support, LEASE};

    const NAME: &str = "store_memory_tail";

    /// Whether criterion's command line selects the case `NAME/case`: no name
    /// filter, or one the case's name contains (criterion's own filters are
    /// regexes; a plain substring covers the names used here).
    fn selected(case: &str) -> bool {
        // Options of criterion's command line that take a value.
        const VALUED: [&str; 14] = [
            "--warm-up-time",
            "--measurement-time",
            "--sample-size",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--save-baseline",
            "--baseline",
            "--baseline-lenient",
            "--load-baseline",
            "--output-format",
            "--plotting-backend",
            "--profile-time",
        ];
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut filters = Vec::new();
        let mut skip = false;
        for arg in &args {
            if std::mem::take(&mut skip) {
                continue;
            }
            if VALUED.contains(&arg.as_str()) {
                skip = true;
            } else if !arg.starts_with('-') {
                filters.push(arg.as_str());
            }
        }
        let id = format!("{NAME}/{case}");
        filters.is_empty() || filters.iter().any(|f| id.contains(f))
    }

    /// Nanoseconds at the given percentiles of `samples` (sorted in place).
    fn report(case: &str, samples: &mut [u32], refused: usize) {
        samples.sort_unstable();
        let at = |p: f64| {
            let rank = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        let slow = samples.iter().filter(|&&ns| ns > 100_000).count();
        println!(
            "{NAME}/{case:<26} p50 {:>7} ns  p99 {:>7} ns  p99.9 {:>7} ns  max {:>9} ns  \
             ({} claims, {slow} over 100 µs, {refused} refused Full)",
            at(0.50),
            at(0.99),
            at(0.999),
            samples[samples.len() - 1],
            samples.len(),
        );
    }

    /// Times `call` on the clock `HOOKGATE_BENCH_CLOCK` selects, in nanoseconds.
    fn timed<T>(clock: &support::Clock, call: impl FnOnce() -> T) -> (T, u32) {
        let started = clock.start();
        let out = call();
        let ns = clock.end(started);
        (out, u32::try_from(ns).unwrap_or(u32::MAX))
    }

    fn key<'a>(buffer: &'a mut String, prefix: &str, n: usize) -> &'a str {
        use std::fmt::Write as _;
        buffer.clear();
        let _ = write!(buffer, "{prefix}:evt_{n:024}");
        buffer
    }

    /// Full store, every claim a new key that evicts the oldest settled one
    /// (and, first, the claims that fill it).
    fn churn(clock: &support::Clock, capacity: usize, claims: usize, fingerprint: Fingerprint) {
        let store = MemoryStore::builder().capacity(capacity).build();
        let mut buffer = String::with_capacity(48);
        // Filling: the tables grow (1.5 times larger at 3/4 full) on the way.
        let mut samples = Vec::with_capacity(capacity);
        for n in 0..capacity {
            let key = key(&mut buffer, "fill", n);
            let (claim, ns) = timed(clock, || {
                store
                    .claim(black_box(key), fingerprint, LEASE)
                    .now_or_never()
            });
            samples.push(ns);
            let Some(Ok(Claim::Acquired(token))) = claim else {
                panic!("a new key is acquired at once: {claim:?}");
            };
            let done = store.complete(key, token, super::RETENTION).now_or_never();
            assert!(matches!(done, Some(Ok(()))));
        }
        report("filling (growing tables)", &mut samples, 0);
        let mut samples = Vec::with_capacity(claims);
        for n in 0..claims {
            let key = key(&mut buffer, "churn", n);
            let (claim, ns) = timed(clock, || {
                store
                    .claim(black_box(key), fingerprint, LEASE)
                    .now_or_never()
            });
            samples.push(ns);
            let Some(Ok(Claim::Acquired(token))) = claim else {
                panic!("a new key is acquired at once: {claim:?}");
            };
            let done = store.complete(key, token, super::RETENTION).now_or_never();
            assert!(matches!(done, Some(Ok(()))));
        }
        assert!(store.evictions() >= claims as u64);
        report("full_churn", &mut samples, 0);
    }

    /// Full store of abandoned leases that expire one after another, one per
    /// claim of a new key: each claim evicts an abandoned lease, or is refused
    /// when its shard has none yet.
    fn expiring_leases(
        clock: &support::Clock,
        capacity: usize,
        claims: usize,
        fingerprint: Fingerprint,
    ) {
        let time = FixedClock::at_unix(1_700_000_000);
        let store = MemoryStore::builder()
            .capacity(capacity)
            .clock(time.clone())
            .build();
        // One lease per millisecond until every shard is full (a full shard
        // refuses the keys it gets meanwhile); the first ends when the fill ends.
        let lease = Duration::from_millis(capacity as u64);
        let mut buffer = String::with_capacity(48);
        let mut n = 0;
        while store.len() < store.capacity() {
            let claim = store.claim(key(&mut buffer, "fill", n), fingerprint, lease);
            match claim.now_or_never() {
                Some(Ok(Claim::Acquired(_))) => time.advance(Duration::from_millis(1)),
                Some(Err(_)) => {}
                other => panic!("a new key is acquired or refused: {other:?}"),
            }
            n += 1;
        }
        let mut samples = Vec::with_capacity(claims);
        let mut refused = 0;
        for n in 0..claims {
            time.advance(Duration::from_millis(1));
            let key = key(&mut buffer, "lease", n);
            let (claim, ns) = timed(clock, || {
                store
                    .claim(black_box(key), fingerprint, lease)
                    .now_or_never()
            });
            samples.push(ns);
            match claim {
                Some(Ok(Claim::Acquired(_))) => {}
                Some(Err(_)) => refused += 1,
                other => panic!("a new key is acquired or refused: {other:?}"),
            }
        }
        report("full_expiring_leases", &mut samples, refused);
    }

    /// The bare HMAC-SHA256 of a 1 KiB body, timed one call at a time like the
    /// claims (the baseline of every group).
    fn bare_hmac(clock: &support::Clock, claims: usize, body: &[u8]) {
        let keyed = common::keyed();
        let expected = common::tag(&[body]);
        let mut samples = Vec::with_capacity(claims);
        for _ in 0..claims {
            let (ok, ns) = timed(clock, || {
                common::bare_hmac(&keyed, &[black_box(body)], &expected)
            });
            assert!(ok);
            samples.push(ns);
        }
        report("bare_hmac", &mut samples, 0);
    }

    pub(crate) fn store_memory_tail(_: &mut Criterion<support::Clock>) {
        let cases = ["bare_hmac", "full_churn", "full_expiring_leases"].map(selected);
        if !cases.contains(&true) {
            return;
        }
        // `cargo test --benches` runs each member once, without `--bench`: a
        // small store then checks that this member still works.
        let benching = std::env::args().any(|arg| arg == "--bench");
        let (capacity, claims) = if benching {
            let claims = std::env::var("HOOKGATE_TAIL_CLAIMS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1_000_000);
            (MemoryStore::DEFAULT_CAPACITY, claims)
        } else {
            (16_000, 16_000)
        };
        let body = vec![b'x'; 1024];
        let fingerprint = Fingerprint::of(&body);
        let clock = support::clock();
        println!("{NAME}: claim latency, {capacity} keys in 16 shards, {clock:?} clock");
        if cases[0] {
            bare_hmac(&clock, claims, &body);
        }
        if cases[1] {
            churn(&clock, capacity, claims, fingerprint);
        }
        if cases[2] {
            expiring_leases(&clock, capacity, claims, fingerprint);
        }
    }
}

/// The durable stores' benches, built only with one of their features.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod durable {
    use std::hint::black_box;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use criterion::{Criterion, Throughput};
    use hookgate::store::{Claim, Fingerprint, IdempotencyStore};

    use super::common;

    const LEASE: Duration = Duration::from_secs(30);
    const RETENTION: Duration = Duration::from_secs(600);
    const CONCURRENCY: u64 = 16;

    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    /// A prefix that no earlier run used, so every claim is of a new key.
    pub(crate) fn run_id() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("bench_{}_{nanos}", std::process::id())
    }

    /// The PostgreSQL server: `HOOKGATE_POSTGRES_URL`, or the local one.
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres_url() -> String {
        std::env::var("HOOKGATE_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A database file in the temp directory no earlier run used.
    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite_path() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}.sqlite3", run_id()))
    }

    /// Removes the database file at `path` and its WAL files.
    #[cfg(feature = "sqlite")]
    pub(crate) fn remove_sqlite_files(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.to_path_buf().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }

    /// Drops `table` from the database `pool` serves.
    #[cfg(feature = "postgres")]
    pub(crate) async fn drop_table(pool: &deadpool_postgres::Pool, table: &str) {
        let client = pool.get().await.expect("connection");
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .await
            .expect("drop the bench table");
    }

    /// Claims a new key and completes it; panics unless the claim acquires.
    pub(crate) async fn claim_complete(store: &dyn IdempotencyStore, key: &str, fp: Fingerprint) {
        match store.claim(key, fp, LEASE).await {
            Ok(Claim::Acquired(token)) => store
                .complete(key, token, RETENTION)
                .await
                .expect("complete"),
            other => panic!("claim of a new key answered {other:?}"),
        }
    }

    /// The three store members of a group, on `store`.
    pub(crate) fn bench_store(
        c: &mut Criterion,
        name: &str,
        rt: &tokio::runtime::Runtime,
        store: Arc<dyn IdempotencyStore>,
    ) {
        let mut group = c.benchmark_group(name);
        group.sample_size(20);
        let body = vec![b'x'; 1024];
        let keyed = common::keyed();
        let expected = common::tag(&[&body]);
        group.bench_function("bare_hmac", |b| {
            b.iter(|| common::bare_hmac(&keyed, &[black_box(&body)], &expected))
        });
        let fp = Fingerprint::of(&body);
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
                            let key =
                                format!("{prefix}:{}", counter.fetch_add(1, Ordering::Relaxed));
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

    #[cfg(feature = "sqlite")]
    pub(crate) fn sqlite(c: &mut Criterion) {
        use hookgate::store::sqlite::SqliteStore;
        let rt = runtime();
        let path = sqlite_path();
        let store = SqliteStore::file(&path).build().expect("sqlite store");
        bench_store(c, "store_sqlite", &rt, Arc::new(store));
        remove_sqlite_files(&path);
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(c: &mut Criterion) {
        use hookgate::store::postgres::PostgresStore;
        let rt = runtime();
        let store = PostgresStore::connect(postgres_url())
            .table(run_id())
            .build()
            .expect("postgres store");
        bench_store(c, "store_postgres", &rt, Arc::new(store.clone()));
        rt.block_on(drop_table(store.pool(), store.table()));
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis(c: &mut Criterion) {
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
}

/// The SQL journals' write rate (see the crate docs above), built only with
/// one of their features.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod journals {
    use std::hint::black_box;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};
    use hookgate::journal::{
        BestEffortJob, BestEffortState, DeliveryStatus, Durations, Journal, JournalId,
        JournalRecord, JournalWrite,
    };

    use super::{common, durable};

    /// Records per batch: the pipeline writer's default batch.
    const BATCH: usize = 256;
    const BODY: usize = 1024;

    /// `BATCH` distinct JSON bodies of exactly `BODY` bytes.
    fn bodies() -> Vec<Bytes> {
        (0..BATCH)
            .map(|n| {
                let mut body = format!(r#"{{"action":"opened","n":{n:04},"pad":""#).into_bytes();
                body.resize(BODY - 2, b'x');
                body.extend_from_slice(b"\"}");
                Bytes::from(body)
            })
            .collect()
    }

    /// A record with every field set (as the journal suite's `full_record`),
    /// received now, with a fresh id and `body`.
    fn record(n: u64, body: &Bytes) -> JournalRecord {
        let mut record = JournalRecord::new(
            JournalId::generate(),
            SystemTime::now(),
            DeliveryStatus::CriticalFailed,
        );
        record.provider = Some("github".into());
        record.event_id = Some(format!("d-{n}"));
        record.kind = Some("issues.opened".into());
        record.delivery_id = Some(format!("d-{n}"));
        record.http_status = 500;
        record.attempt = Some(3);
        let mut durations = Durations::default();
        durations.verify = Some(Duration::from_micros(12));
        durations.claim = Some(Duration::from_micros(345));
        durations.critical = Some(Duration::from_millis(6));
        durations.total = Some(Duration::from_millis(7));
        record.durations = durations;
        record.error = Some("critical handler `db` failed: connection refused".into());
        record.best_effort = vec![
            BestEffortJob::new("email", 2, BestEffortState::Succeeded),
            BestEffortJob::new("slack", 0, BestEffortState::Pending),
        ];
        record.body_size = body.len() as u64;
        record.body_digest = Some([7; 32]);
        record.body = Some(body.clone());
        record.headers = [
            ("X-GitHub-Event".to_owned(), "issues".to_owned()),
            ("X-GitHub-Delivery".to_owned(), format!("d-{n}")),
        ]
        .into_iter()
        .collect();
        record.replay_of = Some(JournalId(42));
        record
    }

    /// A batch of records of `bodies` with fresh ids.
    fn batch(bodies: &[Bytes], counter: &AtomicU64) -> Vec<JournalWrite> {
        bodies
            .iter()
            .map(|body| {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                JournalWrite::Record(record(n, body))
            })
            .collect()
    }

    /// Benches `journal` writing one batch per iteration, the batch made
    /// outside the timed part (the journal takes it).
    fn bench_journal(
        group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
        rt: &tokio::runtime::Runtime,
        journal: &dyn Journal,
        bodies: &[Bytes],
    ) {
        let counter = AtomicU64::new(0);
        // Opened and migrated before the first timed write.
        rt.block_on(journal.write(batch(bodies, &counter)))
            .expect("journal write");
        group.bench_function(name, |b| {
            b.iter_batched(
                || batch(bodies, &counter),
                |batch| {
                    rt.block_on(journal.write(black_box(batch)))
                        .expect("journal write");
                },
                BatchSize::SmallInput,
            )
        });
    }

    pub(crate) fn journal_write(c: &mut Criterion) {
        let rt = durable::runtime();
        let bodies = bodies();
        let mut group = c.benchmark_group("journal_write");
        group.sample_size(20);
        // One element is one record: criterion prints records per second.
        group.throughput(Throughput::Elements(BATCH as u64));

        let keyed = common::keyed();
        let expected: Vec<[u8; 32]> = bodies.iter().map(|body| common::tag(&[body])).collect();
        group.bench_function("bare_hmac", |b| {
            b.iter(|| {
                bodies
                    .iter()
                    .zip(&expected)
                    .all(|(body, tag)| common::bare_hmac(&keyed, &[black_box(body)], tag))
            })
        });

        #[cfg(feature = "sqlite")]
        {
            use hookgate::journal::sqlite::SqliteJournal;
            let path = durable::sqlite_path();
            let journal = SqliteJournal::file(&path).build().expect("sqlite journal");
            bench_journal(&mut group, "sqlite", &rt, &journal, &bodies);
            drop(journal);
            durable::remove_sqlite_files(&path);
        }

        #[cfg(feature = "postgres")]
        {
            use hookgate::journal::postgres::PostgresJournal;
            let journal = PostgresJournal::builder(durable::postgres_url())
                .table(durable::run_id())
                .build()
                .expect("postgres journal");
            bench_journal(&mut group, "postgres", &rt, &journal, &bodies);
            rt.block_on(durable::drop_table(journal.pool(), journal.table()));
        }

        group.finish();
    }
}

#[cfg(feature = "postgres")]
use durable::postgres;
#[cfg(feature = "redis")]
use durable::redis;
#[cfg(feature = "sqlite")]
use durable::sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use journals::journal_write;

#[cfg(not(feature = "sqlite"))]
fn sqlite(_: &mut Criterion) {}
#[cfg(not(feature = "postgres"))]
fn postgres(_: &mut Criterion) {}
#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {}
#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
fn journal_write(_: &mut Criterion) {}

criterion_group! {
    name = memory;
    config = support::criterion();
    targets = store_memory, tail::store_memory_tail
}
criterion_group!(durable_stores, sqlite, postgres, redis);
criterion_group!(journals, journal_write);
criterion_main!(memory, durable_stores, journals);
