//! Idempotency stores: the cost of one claim + complete (the work every new
//! delivery adds to the pipeline) and of a duplicate's claim, next to the bare
//! HMAC-SHA256 of a 1 KiB body (the work verification cannot avoid).
//!
//! `cargo bench --bench stores -- --warm-up-time 1 --measurement-time 3`

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use futures_util::FutureExt;
use hmac::{Hmac, Mac};
use hookgate::store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};
use sha2::Sha256;

const LEASE: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(72 * 3600);

fn bare_hmac(body: &[u8]) -> [u8; 32] {
    // A 32-byte key is always valid for HMAC.
    let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_bench_secret_0123456789abc").unwrap();
    mac.update(body);
    mac.finalize().into_bytes().into()
}

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
    group: &mut BenchmarkGroup<'_, WallTime>,
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

fn store_memory(c: &mut Criterion) {
    let body = vec![b'x'; 1024];
    let fingerprint = Fingerprint::of(&body);
    let mut group = c.benchmark_group("store_memory");

    group.bench_function("bare_hmac", |b| b.iter(|| bare_hmac(black_box(&body))));

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

criterion_group!(benches, store_memory);
criterion_main!(benches);
