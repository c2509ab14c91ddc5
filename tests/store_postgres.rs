//! `PostgresStore` against the real server at `HOOKGATE_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`): the conformance suite,
//! exactly-once across four pools, crash recovery, outages through a proxy,
//! schema. Every test uses its own table and drops it at the end.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::{closed_port, Proxy};
use common::scenarios::{self, Store};
use hookgate::store::postgres::PostgresStore;
use hookgate::store::StoreConfigError;
use hookgate::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};

const LEASE: Duration = Duration::from_secs(30);

/// A store on a fresh table of the test server.
fn store_on(url: &str, table: &str) -> PostgresStore {
    PostgresStore::connect(url)
        .table(table)
        .max_connections(8)
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// Drops the test's table.
async fn drop_table(store: &PostgresStore) {
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {}", store.table()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_passes() {
    let store = store_on(&common::postgres_url(), &common::unique("conf"));
    scenarios::conformance_passes(Arc::new(store.clone())).await;
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_pools_process_every_event_exactly_once() {
    let table = common::unique("once");
    let stores: Vec<PostgresStore> = (0..4)
        .map(|_| store_on(&common::postgres_url(), &table))
        .collect();
    let shared: Vec<Store> = stores
        .iter()
        .map(|s| Arc::new(s.clone()) as Store)
        .collect();
    let report = scenarios::exactly_once_across_instances(shared, 10_000).await;
    println!("postgres: {report:?}");
    drop_table(&stores[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_attempt_is_reclaimed_after_its_lease() {
    let table = common::unique("crash");
    let first = store_on(&common::postgres_url(), &table);
    let second = store_on(&common::postgres_url(), &table);
    scenarios::abandoned_attempt_is_reclaimed(Arc::new(first.clone()), Arc::new(second)).await;
    drop_table(&first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable() {
    let url = common::url_with_addr(&common::postgres_url(), closed_port().await);
    let store = store_on(&url, "hookgate_never_created");
    scenarios::unreachable_store_is_unavailable(Arc::new(store), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_connections_answer_503_and_recover() {
    let proxy = Proxy::start(common::url_addr(&common::postgres_url()).await).await;
    let url = common::url_with_addr(&common::postgres_url(), proxy.addr());
    let store = store_on(&url, &common::unique("cut"));
    let (unavailable, repeated) =
        scenarios::cut_connections_recover(Arc::new(store.clone()), &proxy).await;
    println!("postgres cut: {unavailable} answers 503, {repeated} events ran twice");
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_pool_can_be_handed_over() {
    use deadpool_postgres::{Manager, Pool};
    let config: tokio_postgres::Config = common::postgres_url().parse().unwrap();
    let pool = Pool::builder(Manager::new(config, tokio_postgres::NoTls))
        .max_size(2)
        .build()
        .unwrap();
    let store = PostgresStore::from_pool(pool)
        .table(common::unique("pool"))
        .build()
        .unwrap();
    scenarios::complete_new_key(&store, "k").await;
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_and_a_restart_keep_the_keys() {
    let table = format!("public.{}", common::unique("mig"));
    let stores: Vec<PostgresStore> = (0..4)
        .map(|_| store_on(&common::postgres_url(), &table))
        .collect();
    let migrations = stores.iter().map(|store| {
        let store = store.clone();
        tokio::spawn(async move { store.migrate().await })
    });
    for migration in migrations.collect::<Vec<_>>() {
        migration.await.unwrap().unwrap();
    }
    stores[0].migrate().await.unwrap();
    let fp = Fingerprint::of(b"body");
    let Claim::Acquired(token) = stores[1].claim("k", fp, LEASE).await.unwrap() else {
        panic!("fresh key")
    };
    stores[2].complete("k", token, LEASE).await.unwrap();
    let restarted = store_on(&common::postgres_url(), &table);
    assert_eq!(
        restarted.claim("k", fp, LEASE).await.unwrap(),
        Claim::Completed
    );
    // The index the purge uses exists.
    let client = restarted.pool().get().await.unwrap();
    let unqualified = table.trim_start_matches("public.");
    let indexes = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
            &[&unqualified],
        )
        .await
        .unwrap();
    let names: Vec<String> = indexes.iter().map(|row| row.get(0)).collect();
    assert!(
        names.contains(&format!("{unqualified}_expires_at")),
        "{names:?}"
    );
    drop_table(&restarted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_use_the_servers_clock() {
    let store = store_on(&common::postgres_url(), &common::unique("clock"));
    let server_now = async {
        let client = store.pool().get().await.unwrap();
        let row = client
            .query_one("SELECT (extract(epoch FROM now()) * 1000)::bigint", &[])
            .await
            .unwrap();
        std::time::UNIX_EPOCH + Duration::from_millis(row.get::<_, i64>(0) as u64)
    };
    scenarios::lease_ends_by_server_clock(&store, "k", LEASE, server_now).await;
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_expired_completed_keys_in_batches() {
    let store = PostgresStore::connect(common::postgres_url())
        .table(common::unique("purge"))
        .purge_batch_size(2)
        .build()
        .unwrap();
    let fp = Fingerprint::of(b"body");
    for (n, retention) in [1, 1, 1, 1, 1, 3_600_000].into_iter().enumerate() {
        let key = format!("k{n}");
        let Claim::Acquired(token) = store.claim(&key, fp, LEASE).await.unwrap() else {
            panic!("fresh key")
        };
        let retention = Duration::from_millis(retention);
        store.complete(&key, token, retention).await.unwrap();
    }
    store
        .claim("leased", fp, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Five expired keys in batches of two: 2 + 2 + 1; the lease is not purged.
    assert_eq!(store.purge_expired().await.unwrap(), 5);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(
        store.claim("k5", fp, LEASE).await.unwrap(),
        Claim::Completed
    );
    assert_eq!(
        store.claim("leased", fp, LEASE).await.unwrap(),
        Claim::Acquired(FencingToken(2))
    );
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_forgets_released_keys_and_abandoned_leases_after_unsettled_retention() {
    let table = common::unique("unsettled");
    let retention = Duration::from_millis(200);
    let store = PostgresStore::connect(common::postgres_url())
        .table(&table)
        .purge_batch_size(2)
        .unsettled_retention(retention)
        .build()
        .unwrap();
    // Another instance on the same table keeping unsettled keys for an hour.
    let patient = PostgresStore::connect(common::postgres_url())
        .table(&table)
        .unsettled_retention(Duration::from_secs(3600))
        .build()
        .unwrap();
    let fp = Fingerprint::of(b"body");
    for key in ["released-1", "released-2"] {
        let token = scenarios::acquire(&store, key, LEASE).await;
        store.release(key, token, "boom").await.unwrap();
    }
    scenarios::acquire(&store, "abandoned", Duration::from_millis(100)).await;
    // A lease still running long after its claim is older than the retention.
    scenarios::acquire(&store, "live-lease", LEASE).await;
    let done = scenarios::acquire(&store, "done", LEASE).await;
    store
        .complete("done", done, Duration::from_secs(3600))
        .await
        .unwrap();

    // Lease end (100 ms) plus retention (200 ms), with room for a slow server.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        patient.purge_expired().await.unwrap(),
        0,
        "within an hour's retention"
    );
    // Three unsettled keys in batches of two.
    assert_eq!(store.purge_expired().await.unwrap(), 3);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert!(
        matches!(
            store.claim("live-lease", fp, LEASE).await.unwrap(),
            Claim::InFlight { .. }
        ),
        "a lease is never purged before it ends"
    );
    assert_eq!(
        store.claim("done", fp, LEASE).await.unwrap(),
        Claim::Completed
    );
    for key in ["released-1", "released-2", "abandoned"] {
        scenarios::assert_forgotten(&store, key).await;
    }
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_adds_the_unsettled_index_to_an_existing_table() {
    let table = common::unique("v1");
    let store = store_on(&common::postgres_url(), &table);
    {
        // The schema as the first release created it: no `_unsettled` index.
        let client = store.pool().get().await.unwrap();
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (
                    event_key   text        NOT NULL PRIMARY KEY,
                    fingerprint bytea       NOT NULL,
                    state       text        NOT NULL CHECK (state IN ('leased', 'released', 'completed')),
                    token       bigint      NOT NULL,
                    expires_at  timestamptz NOT NULL,
                    reason      text,
                    updated_at  timestamptz NOT NULL
                 );
                 CREATE INDEX {table}_expires_at ON {table} (expires_at) WHERE state = 'completed';
                 INSERT INTO {table} VALUES ('old', '\\x{fp}', 'released', 7,
                    now() - interval '5 days', 'boom', now() - interval '5 days');",
                fp = hex::encode(Fingerprint::of(b"body").to_bytes()),
            ))
            .await
            .unwrap();
    }
    store.migrate().await.unwrap();
    store_on(&common::postgres_url(), &table)
        .migrate()
        .await
        .unwrap();
    let client = store.pool().get().await.unwrap();
    let indexes = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
            &[&table],
        )
        .await
        .unwrap();
    let names: Vec<String> = indexes.iter().map(|row| row.get(0)).collect();
    assert!(names.contains(&format!("{table}_unsettled")), "{names:?}");
    drop(client);
    // Released 5 days ago: kept by the migration, purged by the new rule.
    scenarios::old_released_key_survives_then_is_purged(&store, "old").await;
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_key_is_taken_by_another_body() {
    let store = store_on(&common::postgres_url(), &common::unique("body"));
    scenarios::released_key_is_taken_by_another_body(&store, "k").await;
    drop_table(&store).await;
}

/// Seconds from the server's now to the stored `expires_at` of `key`.
async fn expires_in(store: &PostgresStore, key: &str) -> i64 {
    let client = store.pool().get().await.unwrap();
    let sql = format!(
        "SELECT extract(epoch FROM expires_at - now())::bigint FROM {} WHERE event_key = $1",
        store.table()
    );
    client.query_one(&sql, &[&key]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_of_99_years_is_stored_in_full() {
    let store = store_on(&common::postgres_url(), &common::unique("long"));
    let year = 365 * 86_400;
    let token = scenarios::acquire(&store, "k", LEASE).await;
    let retention = Duration::from_secs(99 * year);
    store.complete("k", token, retention).await.unwrap();
    let left = expires_in(&store, "k").await;
    assert!(
        (99 * year as i64 - 60..=99 * year as i64).contains(&left),
        "kept for {left} s"
    );
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(
        store
            .claim("k", Fingerprint::of(b"body"), LEASE)
            .await
            .unwrap(),
        Claim::Completed
    );
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsettled_keys_are_kept_72_hours_by_default() {
    let store = PostgresStore::connect(common::postgres_url())
        .table(common::unique("default"))
        .build()
        .unwrap();
    store.migrate().await.unwrap();
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO {t} VALUES ('kept', '\\x{fp}', 'released', 7, now() - interval '73 hours',
                'boom', now() - interval '72 hours' + interval '1 minute');
             INSERT INTO {t} VALUES ('gone', '\\x{fp}', 'released', 7, now() - interval '73 hours',
                'boom', now() - interval '72 hours' - interval '1 minute');",
            t = store.table(),
            fp = hex::encode(Fingerprint::of(b"body").to_bytes()),
        ))
        .await
        .unwrap();
    drop(client);
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    // Kept: its token counter goes on.
    assert_eq!(
        store
            .claim("kept", Fingerprint::of(b"body"), LEASE)
            .await
            .unwrap(),
        Claim::Acquired(FencingToken(8))
    );
    scenarios::assert_forgotten(&store, "gone").await;
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_rows_are_reported_as_corrupt() {
    let store = store_on(&common::postgres_url(), &common::unique("corrupt"));
    store.migrate().await.unwrap();
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO {t} VALUES ('short-fp', '\\x00', 'leased', 1, now(), NULL, now());
             INSERT INTO {t} VALUES ('negative', '\\x{fp}', 'leased', -4, now(), NULL, now());",
            t = store.table(),
            fp = hex::encode(Fingerprint::of(b"").to_bytes()),
        ))
        .await
        .unwrap();
    drop(client);
    for key in ["short-fp", "negative"] {
        let claim = store.claim(key, Fingerprint::of(b""), LEASE).await;
        assert!(
            matches!(claim, Err(StoreError::Corrupt { key: ref k, .. }) if k == key),
            "{claim:?}"
        );
    }
    let stale = store
        .complete("negative", FencingToken(u64::MAX), LEASE)
        .await;
    assert!(
        matches!(stale, Err(StoreError::StaleToken { .. })),
        "{stale:?}"
    );
    drop_table(&store).await;
}

#[test]
fn unsafe_table_names_and_bad_urls_are_refused() {
    for name in [
        "keys; DROP TABLE x",
        "a.b.c",
        "",
        "1keys",
        "\"keys\"",
        "k-v",
    ] {
        let result = PostgresStore::connect("postgres://localhost/x")
            .table(name)
            .build();
        assert!(
            matches!(result, Err(StoreConfigError::InvalidTableName(ref n)) if n == name),
            "{name}"
        );
    }
    common::assert_url_refused_quietly(
        PostgresStore::connect("postgres://user:secret@host:notaport/db").build(),
        format!(
            "{:?}",
            PostgresStore::connect("postgres://user:secret@localhost/x")
        ),
    );
    assert!(matches!(
        PostgresStore::connect("postgres://localhost/x")
            .operation_timeout(Duration::ZERO)
            .build(),
        Err(StoreConfigError::ZeroTimeout("operation"))
    ));
    assert!(matches!(
        PostgresStore::connect("postgres://localhost/x")
            .unsettled_retention(Duration::ZERO)
            .build(),
        Err(StoreConfigError::ZeroTimeout("unsettled retention"))
    ));
}
