//! MemoryStore: the conformance suite, plus what only an in-process store
//! promises (capacity, eviction order, sharding, Debug), with a test clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "tokio")]
use hookgate::store::conformance;
use hookgate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore};
use hookgate::store::{MemoryStore, MemoryStoreError};
use hookgate::{FixedClock, StoreError};

const START: i64 = 1_700_000_000;
const LEASE: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(72 * 3600);

fn fp(key: &str) -> Fingerprint {
    Fingerprint::of(key.as_bytes())
}

/// A store on a fixed clock with `capacity` keys in one shard, so eviction order
/// is exact.
fn one_shard(capacity: usize) -> (MemoryStore, FixedClock) {
    let clock = FixedClock::at_unix(START);
    let store = MemoryStore::builder()
        .capacity(capacity)
        .shards(1)
        .clock(clock.clone())
        .build();
    (store, clock)
}

async fn acquire(store: &MemoryStore, key: &str) -> FencingToken {
    match store.claim(key, fp(key), LEASE).await {
        Ok(Claim::Acquired(token)) => token,
        other => panic!("claim of {key}: expected Acquired, got {other:?}"),
    }
}

async fn claim(store: &MemoryStore, key: &str) -> Claim {
    store.claim(key, fp(key), LEASE).await.expect("claim")
}

async fn complete(store: &MemoryStore, key: &str, retention: Duration) -> FencingToken {
    let token = acquire(store, key).await;
    store
        .complete(key, token, retention)
        .await
        .expect("complete");
    token
}

fn full(result: Result<Claim, StoreError>) -> MemoryStoreError {
    match result {
        Err(StoreError::Unavailable(inner)) => inner
            .downcast_ref::<MemoryStoreError>()
            .cloned()
            .expect("a MemoryStoreError"),
        other => panic!("expected Unavailable(MemoryStoreError), got {other:?}"),
    }
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite() {
    let store = Arc::new(MemoryStore::new());
    let report = conformance::run(&store)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.checks().len(), conformance::Check::ALL.len());
    assert!(report.multi_thread());
    assert!(
        report.purged() >= 1,
        "MemoryStore counts purged keys: {report}"
    );
    println!("{report}"); // shown with --nocapture
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_suite_with_many_small_shards_and_as_trait_object() {
    let store: Arc<dyn IdempotencyStore> =
        Arc::new(MemoryStore::builder().capacity(4_096).shards(64).build());
    conformance::run(&store)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
}

#[tokio::test]
async fn lease_expiry_follows_the_clock_to_the_millisecond() {
    let (store, clock) = one_shard(16);
    let first = acquire(&store, "k").await;
    let until = UNIX_EPOCH + Duration::from_secs(START as u64) + LEASE;
    assert_eq!(claim(&store, "k").await, Claim::InFlight { until });

    clock.advance(LEASE - Duration::from_millis(1));
    assert_eq!(claim(&store, "k").await, Claim::InFlight { until });
    clock.advance(Duration::from_millis(1));
    let second = acquire(&store, "k").await;
    assert!(second > first);

    let stale = store.complete("k", first, RETENTION).await;
    assert!(matches!(stale, Err(StoreError::StaleToken { token, .. }) if token == first));
    let stale = store.release("k", first, "late").await;
    assert!(matches!(stale, Err(StoreError::StaleToken { .. })));
    store.complete("k", second, RETENTION).await.unwrap();
    assert_eq!(claim(&store, "k").await, Claim::Completed);
}

#[tokio::test]
async fn settle_of_unknown_key_or_settled_key_is_stale() {
    let (store, _) = one_shard(16);
    let err = store.complete("nobody", FencingToken(1), RETENTION).await;
    match err {
        Err(StoreError::StaleToken { key, token }) => {
            assert_eq!(key, "nobody");
            assert_eq!(token, FencingToken(1));
        }
        other => panic!("expected StaleToken, got {other:?}"),
    }
    let token = acquire(&store, "k").await;
    store.release("k", token, "transient").await.unwrap();
    assert!(store.release("k", token, "again").await.is_err());
    assert!(store.complete("k", token, RETENTION).await.is_err());
}

#[tokio::test]
async fn a_released_key_is_taken_by_another_body_which_it_then_holds() {
    let (store, _) = one_shard(16);
    let first = acquire(&store, "k").await;
    store.release("k", first, "transient").await.unwrap();
    // The provider re-rendered the event for its retry: it runs.
    let Claim::AcquiredBodyChanged(second) = store.claim("k", Fingerprint(7), LEASE).await.unwrap()
    else {
        panic!("a released key is taken by another body");
    };
    assert!(second > first);
    store.release("k", second, "transient").await.unwrap();
    // The key holds the new body now: the first one is the changed one.
    let third = store.claim("k", fp("k"), LEASE).await.unwrap();
    assert!(
        matches!(third, Claim::AcquiredBodyChanged(t) if t > second),
        "{third:?}"
    );
    store
        .complete("k", third.token().unwrap(), RETENTION)
        .await
        .unwrap();
    assert_eq!(claim(&store, "k").await, Claim::Completed);
    assert_eq!(
        store.claim("k", Fingerprint(7), LEASE).await.unwrap(),
        Claim::CompletedBodyChanged
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_by_another_body_and_a_live_one_is_not() {
    let (store, clock) = one_shard(16);
    let first = acquire(&store, "k").await;
    let until = UNIX_EPOCH + Duration::from_secs(START as u64) + LEASE;
    assert_eq!(
        store.claim("k", Fingerprint(7), LEASE).await.unwrap(),
        Claim::InFlight { until }
    );
    clock.advance(LEASE);
    let second = store.claim("k", Fingerprint(7), LEASE).await.unwrap();
    assert!(
        matches!(second, Claim::AcquiredBodyChanged(t) if t > first),
        "{second:?}"
    );
}

#[tokio::test]
async fn retention_ends_and_purge_removes_only_expired_completed_keys() {
    let (store, clock) = one_shard(16);
    complete(&store, "short", Duration::from_secs(10)).await;
    complete(&store, "long", Duration::from_secs(100)).await;
    acquire(&store, "flight").await;
    let released = acquire(&store, "released").await;
    store.release("released", released, "x").await.unwrap();

    assert_eq!(store.purge_expired().await.unwrap(), 0);
    clock.advance(Duration::from_secs(10));
    // Past retention the key is new: another body acquires it even before a purge.
    let again = store.claim("short", Fingerprint(1), LEASE).await.unwrap();
    assert!(matches!(again, Claim::Acquired(_)));
    assert_eq!(
        store.purge_expired().await.unwrap(),
        0,
        "reclaimed, not expired"
    );

    clock.advance(Duration::from_secs(90));
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert_eq!(
        store.len(),
        3,
        "short (reclaimed), flight and released remain"
    );
    assert!(matches!(claim(&store, "long").await, Claim::Acquired(_)));
    assert_eq!(store.purge_expired().await.unwrap(), 0);
}

#[tokio::test]
async fn full_store_evicts_the_oldest_settled_key_first() {
    let (store, clock) = one_shard(3);
    // Claimed in order a, b, c but settled c, a, b: settle order counts.
    let a = acquire(&store, "a").await;
    let b = acquire(&store, "b").await;
    let c = acquire(&store, "c").await;
    store.complete("c", c, RETENTION).await.unwrap();
    clock.advance(Duration::from_secs(1));
    store.complete("a", a, RETENTION).await.unwrap();
    clock.advance(Duration::from_secs(1));
    store.release("b", b, "transient").await.unwrap();

    acquire(&store, "d").await;
    assert_eq!(store.evictions(), 1);
    assert_eq!(store.len(), 3);
    assert_eq!(claim(&store, "a").await, Claim::Completed);
    // c was evicted: it is new again, with a token larger than its old one.
    let c_again = store.claim("c", Fingerprint(9), LEASE).await.unwrap();
    match c_again {
        Claim::Acquired(token) => assert!(token > c),
        other => panic!("expected c to be evicted, got {other:?}"),
    }
    // That claim needed room: a went next.
    assert_eq!(store.evictions(), 2);
    assert!(matches!(claim(&store, "a").await, Claim::Acquired(_)));
    assert_eq!(store.evictions(), 3, "then b");
}

#[tokio::test]
async fn a_full_store_drops_keys_past_retention_before_evicting_live_ones() {
    let (store, clock) = one_shard(4);
    let hour = Duration::from_secs(3600);
    // Settled first: a released key and a GitHub key kept for 30 days...
    let released = acquire(&store, "released").await;
    store
        .release("released", released, "transient")
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    complete(&store, "github", 30 * 24 * hour).await;
    clock.advance(Duration::from_secs(1));
    // ...then two keys kept for an hour.
    complete(&store, "stripe-1", hour).await;
    complete(&store, "stripe-2", hour).await;
    clock.advance(2 * hour);

    // The hour-long keys are past retention: they make room first, and
    // dropping them is no eviction.
    complete(&store, "new-1", RETENTION).await;
    complete(&store, "new-2", RETENTION).await;
    assert_eq!(store.evictions(), 0);
    assert_eq!(store.len(), 4);
    assert_eq!(claim(&store, "github").await, Claim::Completed);

    // Nothing is past retention now: the oldest settlement goes, as before.
    complete(&store, "new-3", RETENTION).await;
    assert_eq!(store.evictions(), 1);
    assert!(
        matches!(
            store
                .claim("released", Fingerprint(9), LEASE)
                .await
                .unwrap(),
            Claim::Acquired(_)
        ),
        "the released key was settled first: forgotten (Acquired), not taken as another body"
    );
    assert_eq!(store.evictions(), 2, "then the GitHub key");
    for key in ["new-1", "new-2", "new-3"] {
        assert_eq!(claim(&store, key).await, Claim::Completed, "{key}");
    }
}

#[tokio::test]
async fn a_key_settled_again_is_evicted_by_its_latest_settlement() {
    let (store, _) = one_shard(2);
    let first = acquire(&store, "a").await;
    store.release("a", first, "transient").await.unwrap(); // a settled first...
    complete(&store, "b", RETENTION).await; // ...then b...
    let again = acquire(&store, "a").await;
    store.complete("a", again, RETENTION).await.unwrap(); // ...then a again.

    acquire(&store, "c").await;
    assert_eq!(store.evictions(), 1);
    assert_eq!(
        claim(&store, "a").await,
        Claim::Completed,
        "a was settled last"
    );
    // b was forgotten: another body acquires it (a remembered b would mismatch).
    let b = store.claim("b", Fingerprint(9), LEASE).await.unwrap();
    assert!(matches!(b, Claim::Acquired(_)), "{b:?}");
}

#[tokio::test]
async fn an_evicted_keys_old_token_cannot_settle_its_next_claim() {
    let (store, _) = one_shard(1);
    let old = acquire(&store, "k").await;
    store.complete("k", old, RETENTION).await.unwrap();
    let other = complete(&store, "other", RETENTION).await; // evicts k
    assert!(other > old);
    let new = acquire(&store, "k").await; // evicts other
    assert!(
        new > other,
        "tokens never restart, even for a forgotten key"
    );
    assert!(matches!(
        store.complete("k", old, RETENTION).await,
        Err(StoreError::StaleToken { .. })
    ));
    store.complete("k", new, RETENTION).await.unwrap();
    assert_eq!(store.evictions(), 2);
}

#[tokio::test]
async fn in_flight_keys_are_never_evicted_and_a_full_store_says_so() {
    let (store, clock) = one_shard(2);
    acquire(&store, "flight").await;
    complete(&store, "done", RETENTION).await;

    acquire(&store, "second-flight").await; // evicts "done", never "flight"
    assert_eq!(store.evictions(), 1);
    assert!(matches!(
        claim(&store, "flight").await,
        Claim::InFlight { .. }
    ));

    // "done" was forgotten and there is no room left to claim it again.
    let err = full(store.claim("done", fp("done"), LEASE).await);
    assert_eq!(err, MemoryStoreError::Full { shard_capacity: 2 });
    let err = full(store.claim("third", fp("third"), LEASE).await);
    assert_eq!(err, MemoryStoreError::Full { shard_capacity: 2 });
    let message = StoreError::unavailable(err).to_string();
    assert!(
        message.contains("in-flight work is never evicted"),
        "{message}"
    );
    assert!(message.contains("raise the store's capacity"), "{message}");
    // Known keys still answer while the store is full.
    assert!(matches!(
        claim(&store, "flight").await,
        Claim::InFlight { .. }
    ));
    assert_eq!(store.len(), 2);

    // Once a lease is abandoned (expired, never settled), it makes room: one
    // per new key, the earliest ended first, each counted as an eviction.
    clock.advance(LEASE);
    assert!(matches!(claim(&store, "third").await, Claim::Acquired(_)));
    assert_eq!((store.len(), store.evictions()), (2, 2));
    assert!(
        matches!(claim(&store, "flight").await, Claim::Acquired(_)),
        "the first lease made room"
    );
    assert_eq!(store.evictions(), 3, "then the second");
    assert!(matches!(
        claim(&store, "third").await,
        Claim::InFlight { .. }
    ));
}

#[tokio::test]
async fn keys_spread_evenly_over_shards() {
    let store = MemoryStore::builder().capacity(1 << 20).shards(16).build();
    for i in 0..16_000 {
        acquire(&store, &format!("github:delivery-{i}")).await;
    }
    let lens = store.shard_lens();
    assert_eq!(lens.len(), 16);
    assert_eq!(lens.iter().sum::<usize>(), 16_000);
    for len in lens {
        assert!(
            (800..=1200).contains(&len),
            "uneven shards: {:?}",
            store.shard_lens()
        );
    }
}

#[tokio::test]
async fn each_shard_holds_its_share_of_the_capacity() {
    let store = MemoryStore::builder().capacity(8).shards(2).build();
    for i in 0..100 {
        // In flight keys fill each shard up to 4, then that shard is full.
        let _ = store.claim(&format!("k{i}"), Fingerprint(0), LEASE).await;
    }
    assert_eq!(store.shard_lens(), vec![4, 4]);
}

#[test]
fn builder_defaults_and_clamping() {
    let store = MemoryStore::new();
    assert_eq!(store.capacity(), 1_000_000);
    assert_eq!(store.shard_count(), 16);
    assert_eq!(MemoryStore::DEFAULT_CAPACITY, 1_000_000);
    assert!(store.is_empty());

    let rounded = MemoryStore::builder().capacity(10).shards(4).build();
    assert_eq!((rounded.capacity(), rounded.shard_count()), (12, 4));
    let clamped = MemoryStore::builder().capacity(2).shards(8).build();
    assert_eq!((clamped.capacity(), clamped.shard_count()), (2, 2));
    let zero = MemoryStore::builder().capacity(0).shards(0).build();
    assert_eq!((zero.capacity(), zero.shard_count()), (1, 1));
    assert_eq!(MemoryStore::MAX_SHARDS, 4096);
}

#[test]
fn extreme_builder_settings_are_clamped_never_overflow_or_panic() {
    let huge = MemoryStore::builder().capacity(usize::MAX).build();
    assert_eq!(huge.shard_count(), MemoryStore::DEFAULT_SHARDS);
    assert_eq!(
        huge.capacity(),
        MemoryStore::DEFAULT_SHARDS * MemoryStore::MAX_SHARD_CAPACITY
    );
    let most = MemoryStore::builder()
        .capacity(usize::MAX)
        .shards(usize::MAX)
        .build();
    assert_eq!(most.shard_count(), MemoryStore::MAX_SHARDS);
    assert_eq!(
        most.capacity(),
        MemoryStore::MAX_SHARDS * MemoryStore::MAX_SHARD_CAPACITY
    );
    let shards = MemoryStore::builder().shards(usize::MAX).build();
    assert_eq!(shards.shard_count(), MemoryStore::MAX_SHARDS);
    assert!(shards.capacity() >= MemoryStore::DEFAULT_CAPACITY);
    assert!(most.is_empty());
}

#[tokio::test]
async fn clones_share_one_store() {
    let (store, _) = one_shard(8);
    let other = store.clone();
    let token = acquire(&store, "k").await;
    assert!(matches!(claim(&other, "k").await, Claim::InFlight { .. }));
    other.complete("k", token, RETENTION).await.unwrap();
    assert_eq!(claim(&store, "k").await, Claim::Completed);
    assert_eq!((store.len(), other.len()), (1, 1));
    drop(store);
    assert_eq!(
        claim(&other, "k").await,
        Claim::Completed,
        "a clone outlives the original"
    );
}

#[tokio::test]
async fn len_is_empty_and_shard_lens_count_every_kind_of_key() {
    let clock = FixedClock::at_unix(START);
    let store = MemoryStore::builder()
        .capacity(64)
        .shards(4)
        .clock(clock.clone())
        .build();
    assert!(store.is_empty());
    assert_eq!(store.shard_lens(), vec![0; 4]);
    complete(&store, "completed", Duration::from_secs(1)).await;
    assert!(!store.is_empty());
    assert_eq!(store.len(), 1);
    acquire(&store, "flight").await;
    let released = acquire(&store, "released").await;
    store.release("released", released, "x").await.unwrap();
    assert_eq!(store.len(), 3);
    let lens = store.shard_lens();
    assert_eq!(lens.len(), 4);
    assert_eq!(lens.iter().sum::<usize>(), 3);
    // Past retention but not purged: still held.
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.len(), 3);
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert_eq!(store.len(), 2);
    assert!(!store.is_empty());
}

#[tokio::test]
async fn eviction_still_works_after_a_purge() {
    let (store, clock) = one_shard(2);
    complete(&store, "a", Duration::from_secs(1)).await;
    complete(&store, "b", Duration::from_secs(3600)).await;
    clock.advance(Duration::from_secs(2));
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    complete(&store, "c", RETENTION).await;
    // Full again: d evicts the oldest live settlement, b, not c.
    acquire(&store, "d").await;
    assert_eq!(store.evictions(), 1);
    assert_eq!(claim(&store, "c").await, Claim::Completed);
    let b = store.claim("b", Fingerprint(9), LEASE).await.unwrap();
    assert!(matches!(b, Claim::Acquired(_)), "b was evicted: {b:?}");
}

#[tokio::test]
async fn the_oldest_settlement_is_evicted_whatever_its_retention() {
    let (store, clock) = one_shard(3);
    let hour = Duration::from_secs(3600);
    complete(&store, "a", hour).await;
    clock.advance(Duration::from_secs(1));
    complete(&store, "b", 2 * hour).await;
    clock.advance(Duration::from_secs(1));
    complete(&store, "c", hour).await;
    clock.advance(Duration::from_secs(1));

    acquire(&store, "d").await; // a: settled first
    assert_eq!(store.evictions(), 1);
    assert_eq!(claim(&store, "b").await, Claim::Completed);
    assert_eq!(claim(&store, "c").await, Claim::Completed);
    acquire(&store, "e").await; // then b (kept longer, but settled before c)
    assert_eq!(store.evictions(), 2);
    assert_eq!(claim(&store, "c").await, Claim::Completed);
    let b = store.claim("b", Fingerprint(9), LEASE).await.unwrap();
    assert!(matches!(b, Claim::Acquired(_)), "b was evicted: {b:?}");
}

#[tokio::test]
async fn evictions_count_each_abandoned_lease_that_makes_room() {
    let (store, clock) = one_shard(3);
    for key in ["a", "b", "c"] {
        acquire(&store, key).await;
    }
    assert_eq!(store.evictions(), 0);
    clock.advance(LEASE);
    for (n, key) in ["d", "e", "f"].into_iter().enumerate() {
        acquire(&store, key).await;
        assert_eq!(store.evictions(), n as u64 + 1, "{key}");
    }
    assert_eq!(store.len(), 3);
    // A key past retention makes room uncounted; a live one counts.
    let (store, clock) = one_shard(1);
    complete(&store, "x", Duration::from_secs(1)).await;
    clock.advance(Duration::from_secs(1));
    acquire(&store, "y").await;
    assert_eq!(store.evictions(), 0, "x was past retention");
    clock.advance(LEASE);
    acquire(&store, "z").await;
    assert_eq!(store.evictions(), 1, "y was an abandoned lease");
}

#[tokio::test]
async fn debug_shows_sizes_not_keys() {
    let (store, _) = one_shard(8);
    acquire(&store, "stripe:evt_secret_customer_42").await;
    let debug = format!("{store:?}");
    assert!(!debug.contains("evt_secret"), "{debug}");
    assert!(!debug.contains("customer_42"), "{debug}");
    assert!(debug.contains("len: 1"), "{debug}");
    assert!(debug.contains("capacity: 8"), "{debug}");
    assert!(debug.contains("evictions: 0"), "{debug}");
}

#[tokio::test]
async fn time_before_the_epoch_or_huge_durations_do_not_panic() {
    let clock = FixedClock::at_unix(-10);
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let token = match store.claim("k", fp("k"), Duration::MAX).await.unwrap() {
        Claim::Acquired(token) => token,
        other => panic!("{other:?}"),
    };
    match claim(&store, "k").await {
        Claim::InFlight { until } => assert!(until > SystemTime::now()),
        other => panic!("{other:?}"),
    }
    store.complete("k", token, Duration::MAX).await.unwrap();
    clock.advance(Duration::from_secs(1 << 40));
    assert_eq!(claim(&store, "k").await, Claim::Completed);
}

#[tokio::test]
async fn a_late_settle_wins_while_nobody_reclaimed_the_key() {
    let (store, clock) = one_shard(16);
    let token = acquire(&store, "k").await;
    clock.advance(LEASE * 2);
    store.complete("k", token, RETENTION).await.unwrap();
    assert_eq!(claim(&store, "k").await, Claim::Completed);
}

/// Eight tasks claim the same 2,000 keys in different orders on a sharded store;
/// each key's work must be acquired, and completed, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_tasks_acquire_each_key_exactly_once() {
    const KEYS: usize = 2_000;
    const TASKS: usize = 8;
    // Room for every key in every shard: nothing is evicted, so nothing may rerun.
    let store = Arc::new(MemoryStore::builder().capacity(8 * KEYS).shards(8).build());
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let mut acquired = vec![0u32; KEYS];
                for i in 0..KEYS {
                    // Each task walks the keys from a different starting point.
                    let n = (i + task * KEYS / TASKS) % KEYS;
                    let key = format!("shopify:{n}");
                    match store.claim(&key, fp(&key), LEASE).await.unwrap() {
                        Claim::Acquired(token) => {
                            acquired[n] += 1;
                            tokio::task::yield_now().await;
                            store.complete(&key, token, RETENTION).await.unwrap();
                        }
                        Claim::InFlight { .. } | Claim::Completed => {}
                        other => panic!("{key}: {other:?}"),
                    }
                }
                acquired
            })
        })
        .collect();
    let mut total = vec![0u32; KEYS];
    for task in tasks {
        for (n, count) in task.await.unwrap().into_iter().enumerate() {
            total[n] += count;
        }
    }
    let wrong: Vec<_> = total.iter().enumerate().filter(|(_, &c)| c != 1).collect();
    assert!(
        wrong.is_empty(),
        "(key, acquisitions) not exactly once: {wrong:?}"
    );
    assert_eq!(store.len(), KEYS);
    assert_eq!(store.evictions(), 0);
}

/// The store against a plain model of the protocol, on random operation
/// sequences with a test clock (capacity large enough that nothing is evicted).
mod model {
    use std::collections::HashMap;

    use futures_util::FutureExt;
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Claim {
            key: u8,
            body: u8,
            lease_s: u64,
        },
        Complete {
            key: u8,
            older: bool,
            retention_s: u64,
        },
        Release {
            key: u8,
            older: bool,
        },
        Advance {
            seconds: u64,
        },
        Purge,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..5u8, 0..2u8, 1..40u64)
                .prop_map(|(key, body, lease_s)| Op::Claim { key, body, lease_s }),
            2 => (0..5u8, any::<bool>(), 1..60u64)
                .prop_map(|(key, older, retention_s)| Op::Complete { key, older, retention_s }),
            1 => (0..5u8, any::<bool>()).prop_map(|(key, older)| Op::Release { key, older }),
            2 => (0..30u64).prop_map(|seconds| Op::Advance { seconds }),
            1 => Just(Op::Purge),
        ]
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum State {
        InFlight,
        Completed,
        Released,
    }

    #[derive(Debug, Clone, Copy)]
    struct Entry {
        body: u8,
        token: FencingToken,
        state: State,
        deadline: u64,
    }

    #[derive(Default)]
    struct Model {
        now: u64,
        entries: HashMap<u8, Entry>,
        /// Every token the store gave per key, in order.
        tokens: HashMap<u8, Vec<FencingToken>>,
    }

    impl Model {
        /// The answer the protocol requires (the token of `Acquired` is the store's).
        fn claim(&mut self, key: u8, body: u8, lease_s: u64, got: Claim) -> Result<(), String> {
            let live = self
                .entries
                .get(&key)
                .filter(|e| !(e.state == State::Completed && e.deadline <= self.now))
                .copied();
            let expected = match live {
                Some(e) if e.state == State::Completed && e.body != body => {
                    Claim::CompletedBodyChanged
                }
                Some(e) if e.state == State::Completed => Claim::Completed,
                Some(e) if e.state == State::InFlight && e.deadline > self.now => Claim::InFlight {
                    until: UNIX_EPOCH + Duration::from_secs(e.deadline),
                },
                _ => {
                    // Released or expired: taken whatever the body, reported
                    // as changed against the body the key holds.
                    let changed = live.is_some_and(|e| e.body != body);
                    let token = match got {
                        Claim::Acquired(token) if !changed => token,
                        Claim::AcquiredBodyChanged(token) if changed => token,
                        got => {
                            return Err(format!(
                                "expected Acquired (body changed: {changed}), got {got:?}"
                            ))
                        }
                    };
                    let given = self.tokens.entry(key).or_default();
                    if given.last().is_some_and(|last| *last >= token) {
                        return Err(format!("token {token:?} after {given:?}"));
                    }
                    given.push(token);
                    let deadline = self.now + lease_s;
                    let state = State::InFlight;
                    self.entries.insert(
                        key,
                        Entry {
                            body,
                            token,
                            state,
                            deadline,
                        },
                    );
                    return Ok(());
                }
            };
            if got == expected {
                Ok(())
            } else {
                Err(format!("expected {expected:?}, got {got:?}"))
            }
        }

        /// The token a settle call uses: the key's latest, or an older one.
        fn token(&self, key: u8, older: bool) -> FencingToken {
            let given = self.tokens.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            match (older, given) {
                (false, [.., last]) => *last,
                (true, [.., older, _]) => *older,
                _ => FencingToken(0),
            }
        }

        /// Settles `key` if `token` holds its in-flight claim; whether it did.
        fn settle(&mut self, key: u8, token: FencingToken, state: State, deadline: u64) -> bool {
            match self.entries.get_mut(&key) {
                Some(e) if e.state == State::InFlight && e.token == token => {
                    e.state = state;
                    e.deadline = deadline;
                    true
                }
                _ => false,
            }
        }

        fn purge(&mut self) -> u64 {
            let before = self.entries.len();
            let now = self.now;
            self.entries
                .retain(|_, e| !(e.state == State::Completed && e.deadline <= now));
            (before - self.entries.len()) as u64
        }
    }

    /// Polls a MemoryStore call once: it answers at once.
    fn now<T>(future: impl std::future::Future<Output = T>) -> T {
        future.now_or_never().expect("MemoryStore answers at once")
    }

    fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let clock = FixedClock::at_unix(START);
        let store = MemoryStore::builder()
            .capacity(64)
            .shards(2)
            .clock(clock.clone())
            .build();
        let mut model = Model {
            now: START as u64,
            ..Model::default()
        };
        for (i, op) in ops.iter().enumerate() {
            let key_name = |key: u8| format!("stripe:evt_{key}");
            match *op {
                Op::Claim { key, body, lease_s } => {
                    let got = now(store.claim(
                        &key_name(key),
                        Fingerprint(u128::from(body)),
                        Duration::from_secs(lease_s),
                    ))
                    .unwrap();
                    model
                        .claim(key, body, lease_s, got)
                        .map_err(|e| TestCaseError::fail(format!("op {i} {op:?}: {e}")))?;
                }
                Op::Complete {
                    key,
                    older,
                    retention_s,
                } => {
                    let token = model.token(key, older);
                    let retention = Duration::from_secs(retention_s);
                    let got = now(store.complete(&key_name(key), token, retention));
                    let deadline = model.now + retention_s;
                    let expected = model.settle(key, token, State::Completed, deadline);
                    prop_assert_eq!(got.is_ok(), expected, "op {} {:?}: {:?}", i, op, got);
                }
                Op::Release { key, older } => {
                    let token = model.token(key, older);
                    let got = now(store.release(&key_name(key), token, "model"));
                    let expected = model.settle(key, token, State::Released, model.now);
                    prop_assert_eq!(got.is_ok(), expected, "op {} {:?}: {:?}", i, op, got);
                }
                Op::Advance { seconds } => {
                    clock.advance(Duration::from_secs(seconds));
                    model.now += seconds;
                }
                Op::Purge => {
                    let got = now(store.purge_expired()).unwrap();
                    prop_assert_eq!(got, model.purge(), "op {} purge", i);
                }
            }
            prop_assert_eq!(store.len(), model.entries.len(), "op {} {:?}", i, op);
        }
        prop_assert_eq!(store.evictions(), 0);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn memory_store_follows_the_protocol_model(ops in prop::collection::vec(op(), 1..80)) {
            check(ops)?;
        }
    }
}

/// Any builder settings, extreme ones included, build a store that works.
mod builder_props {
    use futures_util::FutureExt;
    use proptest::prelude::*;

    use super::*;

    fn size() -> impl Strategy<Value = usize> {
        prop_oneof![
            Just(0),
            Just(1),
            Just(usize::MAX),
            Just(usize::MAX / 2 + 1),
            0..10_000usize,
            any::<usize>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_capacity_and_shard_count_build_a_working_store(capacity in size(), shards in size()) {
            let store = MemoryStore::builder().capacity(capacity).shards(shards).build();
            let wanted = capacity.max(1);
            let count = store.shard_count();
            prop_assert_eq!(count, shards.clamp(1, MemoryStore::MAX_SHARDS).min(wanted));
            let most = count * MemoryStore::MAX_SHARD_CAPACITY;
            prop_assert!(store.capacity() >= wanted.min(most), "{} < {}", store.capacity(), wanted);
            prop_assert!(store.capacity() <= wanted.max(count).saturating_add(count - 1));
            prop_assert_eq!(store.capacity() % count, 0);
            let answer = store.claim("k", fp("k"), LEASE).now_or_never();
            prop_assert!(matches!(answer, Some(Ok(Claim::Acquired(_)))));
            prop_assert_eq!(store.len(), 1);
        }
    }
}

/// A store of its own that keeps the trait's default `purge_expired`.
#[derive(Debug, Default)]
struct NoPurge(MemoryStore);

#[async_trait::async_trait]
impl IdempotencyStore for NoPurge {
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.0.claim(key, fingerprint, lease).await
    }
    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.0.complete(key, token, retention).await
    }
    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.0.release(key, token, reason).await
    }
}

#[tokio::test]
async fn a_store_that_expires_keys_itself_purges_nothing_by_default() {
    let store = NoPurge::default();
    let Claim::Acquired(token) = store
        .claim("k", fp("k"), Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("a new key is acquired");
    };
    store.complete("k", token, Duration::ZERO).await.unwrap();
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(
        Arc::new(NoPurge::default()).purge_expired().await.unwrap(),
        0
    );
}
