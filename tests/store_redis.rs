//! `RedisStore` against the real server at `HOOKGATE_REDIS_URL` (default
//! `redis://127.0.0.1:6379/`): the conformance suite, exactly-once across four
//! connection managers, crash recovery, outages through a proxy, key layout.
//! Every test uses its own key prefix and deletes its keys at the end.
#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::{closed_port, Proxy};
use common::scenarios::{self, Store};
use hookgate::store::redis::RedisStore;
use hookgate::store::StoreConfigError;
use hookgate::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};
use redis::AsyncCommands;

const LEASE: Duration = Duration::from_secs(30);

/// A store on the test server under a fresh key prefix.
fn store_on(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect(url)
        .key_prefix(prefix)
        .connect_timeout(Duration::from_secs(1))
        .operation_timeout(Duration::from_secs(2))
        .unsettled_retention(Duration::from_secs(600))
        .build()
        .unwrap()
}

fn prefix() -> String {
    format!("{}:", common::unique("redis"))
}

async fn connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(common::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Deletes every key under `prefix`.
async fn delete_keys(prefix: &str) {
    let mut conn = connection().await;
    let keys: Vec<String> = {
        let mut iter = conn
            .scan_match::<_, String>(format!("{prefix}*"))
            .await
            .unwrap();
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key.unwrap());
        }
        keys
    };
    for chunk in keys.chunks(500) {
        let _: () = conn.del(chunk).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_passes() {
    let prefix = prefix();
    scenarios::conformance_passes(Arc::new(store_on(&common::redis_url(), &prefix))).await;
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_connections_process_every_event_exactly_once() {
    let prefix = prefix();
    let stores: Vec<Store> = (0..4)
        .map(|_| Arc::new(store_on(&common::redis_url(), &prefix)) as Store)
        .collect();
    let report = scenarios::exactly_once_across_instances(stores, 10_000).await;
    println!("redis: {report:?}");
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_attempt_is_reclaimed_after_its_lease() {
    let prefix = prefix();
    let first = store_on(&common::redis_url(), &prefix);
    let second = store_on(&common::redis_url(), &prefix);
    scenarios::abandoned_attempt_is_reclaimed(Arc::new(first), Arc::new(second)).await;
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable() {
    let url = common::url_with_addr(&common::redis_url(), closed_port().await);
    let store = store_on(&url, &prefix());
    // Redis expires keys itself: purge_expired has nothing to reach the server for.
    scenarios::unreachable_store_is_unavailable(Arc::new(store.clone()), false).await;
    assert_eq!(store.purge_expired().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_connections_answer_503_and_recover() {
    let prefix = prefix();
    let proxy = Proxy::start(common::url_addr(&common::redis_url()).await).await;
    let url = common::url_with_addr(&common::redis_url(), proxy.addr());
    let (unavailable, repeated) =
        scenarios::cut_connections_recover(Arc::new(store_on(&url, &prefix)), &proxy).await;
    println!("redis cut: {unavailable} answers 503, {repeated} events ran twice");
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_documented_layout_and_ttls() {
    let prefix = prefix();
    let store = store_on(&common::redis_url(), &prefix);
    let fp = Fingerprint::of(b"body");
    let Claim::Acquired(token) = store.claim("github:d-1", fp, LEASE).await.unwrap() else {
        panic!("fresh key")
    };
    let key = store.redis_key("github:d-1");
    assert_eq!(key, format!("{prefix}github:d-1"));
    let mut conn = connection().await;
    let fields: std::collections::HashMap<String, Vec<u8>> = conn.hgetall(&key).await.unwrap();
    assert_eq!(fields["state"], b"leased");
    assert_eq!(fields["fp"], fp.to_bytes());
    assert_eq!(fields["token"], b"1");
    // A lease keeps its key for the lease plus the unsettled retention.
    let ttl: i64 = conn.pttl(&key).await.unwrap();
    assert!(ttl > 600_000 && ttl <= 630_000, "{ttl}");

    store
        .release("github:d-1", token, "handler failed")
        .await
        .unwrap();
    let reason: String = conn.hget(&key, "reason").await.unwrap();
    assert_eq!(reason, "handler failed");
    let Claim::Acquired(second) = store.claim("github:d-1", fp, LEASE).await.unwrap() else {
        panic!("a released key is claimable")
    };
    assert_eq!(second, FencingToken(2));
    store
        .complete("github:d-1", second, Duration::from_secs(3_600))
        .await
        .unwrap();
    let state: String = conn.hget(&key, "state").await.unwrap();
    assert_eq!(state, "completed");
    let ttl: i64 = conn.pttl(&key).await.unwrap();
    assert!(ttl > 3_590_000 && ttl <= 3_600_000, "{ttl}");
    // Completed with no retention, a key is new again at once, but its token
    // counter goes on so the finished attempt's token stays stale.
    let Claim::Acquired(token) = store.claim("github:d-2", fp, LEASE).await.unwrap() else {
        panic!("fresh key")
    };
    store
        .complete("github:d-2", token, Duration::ZERO)
        .await
        .unwrap();
    let other = Fingerprint::of(b"other body");
    assert_eq!(
        store.claim("github:d-2", other, LEASE).await.unwrap(),
        Claim::Acquired(FencingToken(2))
    );
    assert!(matches!(
        store.complete("github:d-2", token, LEASE).await,
        Err(StoreError::StaleToken { .. })
    ));
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_key_is_taken_by_another_body() {
    let prefix = prefix();
    let store = store_on(&common::redis_url(), &prefix);
    scenarios::released_key_is_taken_by_another_body(&store, "k").await;
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_of_99_years_is_stored_in_full() {
    let prefix = prefix();
    let store = store_on(&common::redis_url(), &prefix);
    let year_ms: i64 = 365 * 86_400 * 1000;
    let token = scenarios::acquire(&store, "k", LEASE).await;
    let retention = Duration::from_millis(99 * year_ms as u64);
    store.complete("k", token, retention).await.unwrap();
    let mut conn = store.connection().await.unwrap();
    let key = store.redis_key("k");
    let ttl: i64 = conn.pttl(&key).await.unwrap();
    assert!(
        (99 * year_ms - 60_000..=99 * year_ms).contains(&ttl),
        "kept for {ttl} ms"
    );
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let exp: i64 = conn.hget(&key, "exp").await.unwrap();
    let left = exp - (seconds * 1000 + micros / 1000);
    assert!(
        (99 * year_ms - 60_000..=99 * year_ms).contains(&left),
        "completed until {left} ms from now"
    );
    assert_eq!(
        store
            .claim("k", Fingerprint::of(b"body"), LEASE)
            .await
            .unwrap(),
        Claim::Completed
    );
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsettled_keys_are_kept_72_hours_by_default() {
    let prefix = prefix();
    let store = RedisStore::connect(common::redis_url())
        .key_prefix(&prefix)
        .build()
        .unwrap();
    let token = scenarios::acquire(&store, "k", LEASE).await;
    let mut conn = connection().await;
    let hours_72: i64 = 72 * 3600 * 1000;
    let ttl: i64 = conn.pttl(store.redis_key("k")).await.unwrap();
    let leased = LEASE.as_millis() as i64 + hours_72;
    assert!(
        (leased - 60_000..=leased).contains(&ttl),
        "leased: {ttl} ms"
    );
    store.release("k", token, "boom").await.unwrap();
    let ttl: i64 = conn.pttl(store.redis_key("k")).await.unwrap();
    assert!(
        (hours_72 - 60_000..=hours_72).contains(&ttl),
        "released: {ttl} ms"
    );
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_connection_serves_maintenance_commands() {
    let prefix = prefix();
    let store = store_on(&common::redis_url(), &prefix);
    // Before any operation: the connection is set up on demand.
    let mut conn = store.connection().await.unwrap();
    scenarios::complete_new_key(&store, "k").await;
    let state: String = conn.hget(store.redis_key("k"), "state").await.unwrap();
    assert_eq!(state, "completed");
    let _: () = conn.del(store.redis_key("k")).await.unwrap();
    assert!(matches!(
        scenarios::acquire(&store, "k", LEASE).await,
        FencingToken(1)
    ));
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_use_the_servers_clock() {
    let prefix = prefix();
    let store = store_on(&common::redis_url(), &prefix);
    let server_now = async {
        let (seconds, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut connection().await)
            .await
            .unwrap();
        std::time::UNIX_EPOCH + Duration::from_micros(seconds * 1_000_000 + micros)
    };
    scenarios::lease_ends_by_server_clock(&store, "k", LEASE, server_now).await;
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_or_damaged_keys_are_reported_as_corrupt() {
    let prefix = prefix();
    let store = store_on(&common::redis_url(), &prefix);
    let mut conn = connection().await;
    let _: () = conn
        .hset_multiple(
            store.redis_key("no-token"),
            &[("state", "leased"), ("fp", "x"), ("exp", "1")],
        )
        .await
        .unwrap();
    let _: () = conn
        .hset(store.redis_key("odd-state"), "state", "finished")
        .await
        .unwrap();
    let _: () = conn
        .hset(store.redis_key("no-state"), "token", "1")
        .await
        .unwrap();
    for key in ["no-token", "odd-state", "no-state"] {
        let claim = store.claim(key, Fingerprint::of(b""), LEASE).await;
        assert!(
            matches!(claim, Err(StoreError::Corrupt { key: ref k, .. }) if k == key),
            "{key}: {claim:?}"
        );
    }
    // A plain string at the key is not ours either: reported, not overwritten.
    let _: () = conn.set(store.redis_key("string"), "v").await.unwrap();
    let claim = store.claim("string", Fingerprint::of(b""), LEASE).await;
    assert!(
        matches!(claim, Err(StoreError::Corrupt { .. })),
        "{claim:?}"
    );
    let value: String = conn.get(store.redis_key("string")).await.unwrap();
    assert_eq!(value, "v");
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_connection_manager_can_be_handed_over() {
    let prefix = prefix();
    let client = redis::Client::open(common::redis_url()).unwrap();
    let manager = redis::aio::ConnectionManager::new(client).await.unwrap();
    let store = RedisStore::from_manager(manager)
        .key_prefix(&prefix)
        .build()
        .unwrap();
    scenarios::complete_new_key(&store, "k").await;
    delete_keys(&prefix).await;
}

#[test]
fn bad_urls_and_settings_are_refused() {
    common::assert_url_refused_quietly(
        RedisStore::connect("http://user:secret@localhost/").build(),
        format!("{:?}", RedisStore::connect("redis://:secret@localhost/")),
    );
    assert!(matches!(
        RedisStore::connect("redis://localhost/")
            .unsettled_retention(Duration::ZERO)
            .build(),
        Err(StoreConfigError::ZeroTimeout("unsettled retention"))
    ));
}
