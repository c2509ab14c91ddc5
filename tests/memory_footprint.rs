//! How many bytes of heap a MemoryStore holds per retained completed key,
//! counted by a global allocator. (A measurement of memory, not of time.)
//! Run with `cargo test --release --test memory_footprint -- --nocapture` to see the table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use hookgate::store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};

/// Counts the bytes currently allocated by the whole test binary.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to the system allocator unchanged and only adds
// bookkeeping on an atomic counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TARGET_BYTES_PER_KEY: f64 = 128.0;
/// A full shard's table: 52-byte slots, 5/3 of them per key (86.7 B), whatever
/// the per-shard capacity, plus a little fixed overhead per shard.
const FULL_BYTES_PER_KEY: f64 = 88.0;
/// A growing table is at least half full (it grows by half at 3/4): 104 B.
const GROWING_BYTES_PER_KEY: f64 = 105.0;
// Both bounds meet the README's target.
const _: () = assert!(FULL_BYTES_PER_KEY <= TARGET_BYTES_PER_KEY);
const _: () = assert!(GROWING_BYTES_PER_KEY <= TARGET_BYTES_PER_KEY);

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Claims and completes `key` (the store answers synchronously).
fn retain(store: &MemoryStore, key: &str) {
    let fingerprint = Fingerprint::of(key.as_bytes());
    let claim = store.claim(key, fingerprint, Duration::from_secs(30));
    let Some(Ok(Claim::Acquired(token))) = claim.now_or_never() else {
        panic!("claim of {key} did not acquire at once");
    };
    let complete = store.complete(key, token, Duration::from_secs(72 * 3600));
    complete
        .now_or_never()
        .expect("complete answers at once")
        .expect("complete");
}

/// One test only: the counter sees the whole binary, so nothing may run beside it.
#[test]
fn retained_completed_keys_cost_at_most_128_bytes_each() {
    let mut key = String::with_capacity(64);
    let mut worst: f64 = 0.0;
    let mut sum = 0.0;
    let mut samples = 0;

    // Growing store: sample across several doublings of every shard's table.
    let before = live();
    let store = MemoryStore::builder().capacity(10_000_000).build();
    let step = 5_000;
    for n in 1..=300_000usize {
        key.clear();
        // Realistic keys: provider and a Stripe-like id, 36 bytes.
        std::fmt::Write::write_fmt(&mut key, format_args!("stripe:evt_1PbQ3sKz{n:017}")).unwrap();
        retain(&store, &key);
        if n % step == 0 {
            let per_key = (live() - before) as f64 / n as f64;
            worst = worst.max(per_key);
            sum += per_key;
            samples += 1;
            if n % 50_000 == 0 {
                println!("{n:>8} keys retained: {per_key:6.1} B/key");
            }
        }
    }
    let mean = sum / samples as f64;
    println!("growing store: mean {mean:.1} B/key, worst {worst:.1} B/key over {samples} samples");
    assert!(worst <= GROWING_BYTES_PER_KEY, "worst {worst:.1} B/key");
    drop(store);
    assert!(
        live() - before < 4096,
        "dropping the store frees its memory"
    );

    // Full stores in steady state (every new key evicts the oldest), one shard at
    // a time: per-shard capacities around the default's (1,000,000 / 16 = 62,500),
    // including the cheapest and the dearest with a power-of-two table before
    // (6,250: 80 B, 101,946: 136 B).
    for shard_capacity in [6_250, 40_000, 62_500, 101_946] {
        let per_key = full_store_bytes_per_key(shard_capacity, &mut key);
        println!("full shard of {shard_capacity:>7} keys, evicting: {per_key:6.1} B/key");
        // A full shard's table is sized for its capacity, not to a power of
        // two: every sizing costs the same per key.
        assert!(per_key <= FULL_BYTES_PER_KEY, "{per_key:.1} B/key");
        assert!(per_key >= 80.0, "{per_key:.1} B/key: is the table sized?");
    }
}

/// Fills a one-shard store of `capacity` three times over; bytes per held key.
fn full_store_bytes_per_key(capacity: usize, key: &mut String) -> f64 {
    let before = live();
    let store = MemoryStore::builder().capacity(capacity).shards(1).build();
    for n in 0..3 * capacity {
        key.clear();
        std::fmt::Write::write_fmt(key, format_args!("github:{n:036}")).unwrap();
        retain(&store, key);
    }
    assert_eq!(store.len(), store.capacity());
    assert_eq!(store.evictions(), (2 * capacity) as u64);
    (live() - before) as f64 / store.len() as f64
}
