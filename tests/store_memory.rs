//! MemoryStore: the conformance suite, plus what only an in-process store
//! promises (capacity, eviction order, sharding, Debug), with a test clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookgate::store::{conformance, Claim, FencingToken, Fingerprint, IdempotencyStore};
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
}

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
async fn released_key_keeps_its_fingerprint_and_is_reclaimed_with_a_larger_token() {
    let (store, _) = one_shard(16);
    let first = acquire(&store, "k").await;
    store.release("k", first, "transient").await.unwrap();
    let other_body = store.claim("k", Fingerprint(7), LEASE).await.unwrap();
    assert_eq!(other_body, Claim::FingerprintMismatch);
    assert!(acquire(&store, "k").await > first);
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
    // b (released) is still there: its fingerprint is remembered.
    assert_eq!(
        store.claim("b", Fingerprint(9), LEASE).await.unwrap(),
        Claim::FingerprintMismatch
    );
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

    // Once a lease is abandoned (expired, never settled), it makes room.
    clock.advance(LEASE);
    assert!(matches!(claim(&store, "third").await, Claim::Acquired(_)));
    assert_eq!(store.len(), 1, "both abandoned leases were swept");
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
