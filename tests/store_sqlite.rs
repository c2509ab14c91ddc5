//! `SqliteStore` on real database files: the conformance suite, exactly-once
//! across four instances sharing one file, crash recovery, restarts, schema.
#![cfg(feature = "sqlite")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::scenarios::{self, Store};
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::StoreConfigError;
use hookgate::{Claim, FencingToken, Fingerprint, FixedClock, IdempotencyStore, StoreError};

/// A database file in the temp directory, removed (with its WAL files) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        TempDb(std::env::temp_dir().join(format!("{}.sqlite3", common::unique("db"))))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::file(self.path()).build().unwrap()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

const LEASE: Duration = Duration::from_secs(30);
const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_passes_on_a_file() {
    let db = TempDb::new();
    scenarios::conformance_passes(Arc::new(db.store())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_passes_in_memory() {
    let store = SqliteStore::memory().build().unwrap();
    scenarios::conformance_passes(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_on_one_file_process_every_event_exactly_once() {
    let db = TempDb::new();
    let stores: Vec<Store> = (0..4).map(|_| Arc::new(db.store()) as Store).collect();
    let report = scenarios::exactly_once_across_instances(stores, 10_000).await;
    println!("sqlite: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_attempt_is_reclaimed_after_its_lease() {
    let db = TempDb::new();
    scenarios::abandoned_attempt_is_reclaimed(Arc::new(db.store()), Arc::new(db.store())).await;
}

#[tokio::test]
async fn an_unopenable_file_is_unavailable() {
    let dir = TempDb::new();
    // A path below a file cannot be opened as a database.
    std::fs::write(dir.path(), b"not a directory").unwrap();
    let store = SqliteStore::file(dir.path().join("keys.sqlite3"))
        .build()
        .unwrap();
    scenarios::unreachable_store_is_unavailable(Arc::new(store), true).await;
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_unavailable() {
    let db = TempDb::new();
    std::fs::write(db.path(), vec![b'x'; 4096]).unwrap();
    let result = db.store().migrate().await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let db = TempDb::new();
    let fp = Fingerprint::of(b"body");
    {
        let store = db.store();
        scenarios::complete_new_key(&store, "k:done").await;
        assert!(matches!(
            store.claim("k:leased", fp, LEASE).await.unwrap(),
            Claim::Acquired(FencingToken(1))
        ));
    }
    let restarted = db.store();
    assert_eq!(
        restarted.claim("k:done", fp, LEASE).await.unwrap(),
        Claim::Completed
    );
    assert!(matches!(
        restarted.claim("k:leased", fp, LEASE).await.unwrap(),
        Claim::InFlight { .. }
    ));
}

#[tokio::test]
async fn leases_and_retention_follow_the_injected_clock() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let store = SqliteStore::memory().clock(clock.clone()).build().unwrap();
    let fp = Fingerprint::of(b"body");
    let Claim::Acquired(first) = store.claim("k", fp, LEASE).await.unwrap() else {
        panic!("fresh key")
    };
    let in_flight = store.claim("k", fp, LEASE).await.unwrap();
    assert_eq!(
        in_flight,
        Claim::InFlight {
            until: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_030)
        }
    );
    clock.advance(LEASE);
    let Claim::Acquired(second) = store.claim("k", fp, LEASE).await.unwrap() else {
        panic!("an expired lease is claimable")
    };
    assert_eq!(second, FencingToken(first.0 + 1));
    assert!(matches!(
        store.complete("k", first, DAY).await,
        Err(StoreError::StaleToken { .. })
    ));
    store.complete("k", second, DAY).await.unwrap();
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    clock.advance(DAY);
    // Past retention the key is new again, even with another body.
    let other = Fingerprint::of(b"other body");
    assert!(matches!(
        store.claim("k", other, LEASE).await.unwrap(),
        Claim::Acquired(_)
    ));
}

#[tokio::test]
async fn purge_deletes_only_completed_keys_past_retention_in_batches() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let store = SqliteStore::memory()
        .clock(clock.clone())
        .purge_batch_size(2)
        .build()
        .unwrap();
    let fp = Fingerprint::of(b"body");
    let minute = Duration::from_secs(60);
    let keys = [
        ("a", minute),
        ("b", minute),
        ("c", minute),
        ("d", minute),
        ("e", minute),
    ];
    for (key, retention) in keys.into_iter().chain([("long", DAY)]) {
        let Claim::Acquired(token) = store.claim(key, fp, LEASE).await.unwrap() else {
            panic!("fresh key")
        };
        store.complete(key, token, retention).await.unwrap();
    }
    let Claim::Acquired(token) = store.claim("released", fp, LEASE).await.unwrap() else {
        panic!("fresh key")
    };
    store.release("released", token, "boom").await.unwrap();
    clock.advance(Duration::from_secs(120));
    // Five expired keys in batches of two: 2 + 2 + 1.
    assert_eq!(store.purge_expired().await.unwrap(), 5);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(
        store.claim("long", fp, LEASE).await.unwrap(),
        Claim::Completed
    );
    // The released key kept its token counter and fingerprint.
    assert_eq!(
        store
            .claim("released", Fingerprint::of(b"x"), LEASE)
            .await
            .unwrap(),
        Claim::AcquiredBodyChanged(FencingToken(2))
    );
}

#[tokio::test]
async fn a_released_key_is_taken_by_another_body() {
    let db = TempDb::new();
    scenarios::released_key_is_taken_by_another_body(&db.store(), "k").await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_by_another_body_which_it_then_holds() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let store = SqliteStore::memory().clock(clock.clone()).build().unwrap();
    let (body, other) = (Fingerprint::of(b"body"), Fingerprint::of(b"other body"));
    let first = scenarios::acquire(&store, "k", LEASE).await;
    assert!(matches!(
        store.claim("k", other, LEASE).await.unwrap(),
        Claim::InFlight { .. }
    ));
    clock.advance(LEASE);
    let second = store.claim("k", other, LEASE).await.unwrap();
    assert_eq!(
        second,
        Claim::AcquiredBodyChanged(FencingToken(first.0 + 1))
    );
    store
        .complete("k", second.token().unwrap(), DAY)
        .await
        .unwrap();
    assert_eq!(
        store.claim("k", other, LEASE).await.unwrap(),
        Claim::Completed
    );
    assert_eq!(
        store.claim("k", body, LEASE).await.unwrap(),
        Claim::CompletedBodyChanged
    );
}

#[tokio::test]
async fn a_retention_of_99_years_is_kept_and_ends() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let store = SqliteStore::memory().clock(clock.clone()).build().unwrap();
    let year = Duration::from_secs(365 * 86_400);
    let token = scenarios::acquire(&store, "k", LEASE).await;
    store.complete("k", token, 99 * year).await.unwrap();
    clock.advance(98 * year);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(
        store
            .claim("k", Fingerprint::of(b"body"), LEASE)
            .await
            .unwrap(),
        Claim::Completed
    );
    clock.advance(year);
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    scenarios::assert_forgotten(&store, "k").await;
}

#[tokio::test]
async fn unsettled_keys_are_kept_72_hours_by_default() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let store = SqliteStore::memory().clock(clock.clone()).build().unwrap();
    let token = scenarios::acquire(&store, "released", LEASE).await;
    store.release("released", token, "boom").await.unwrap();
    clock.advance(Duration::from_secs(72 * 3600 - 1));
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    scenarios::assert_forgotten(&store, "released").await;
}

#[tokio::test]
async fn purge_forgets_released_keys_and_abandoned_leases_after_unsettled_retention() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let hour = Duration::from_secs(3600);
    let store = SqliteStore::memory()
        .clock(clock.clone())
        .unsettled_retention(hour)
        .purge_batch_size(2)
        .build()
        .unwrap();
    let fp = Fingerprint::of(b"body");
    for key in ["released-1", "released-2"] {
        let token = scenarios::acquire(&store, key, LEASE).await;
        store.release(key, token, "boom").await.unwrap();
    }
    // Abandoned: claimed with a 30 s lease and never settled.
    scenarios::acquire(&store, "abandoned", LEASE).await;
    // A long lease still running when its claim is older than the retention.
    scenarios::acquire(&store, "long-lease", 3 * hour).await;
    let done = scenarios::acquire(&store, "done", LEASE).await;
    store.complete("done", done, 3 * DAY).await.unwrap();

    clock.advance(hour - Duration::from_secs(1));
    assert_eq!(store.purge_expired().await.unwrap(), 0, "within retention");
    // A released key retried within the retention starts its clock again.
    let retried = scenarios::acquire(&store, "released-2", LEASE).await;
    assert_eq!(retried, FencingToken(2));
    store
        .release("released-2", retried, "boom again")
        .await
        .unwrap();

    // The abandoned lease ended 30 s after its claim: it goes 30 s after the
    // released key, whose retention counts from its release.
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    clock.advance(LEASE);
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert_eq!(
        store.claim("long-lease", fp, LEASE).await.unwrap(),
        Claim::InFlight {
            until: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + 3 * hour
        },
        "a lease is never purged before it ends"
    );
    scenarios::assert_forgotten(&store, "released-1").await;
    scenarios::assert_forgotten(&store, "abandoned").await;

    // The retried key's retention counts from its second release; the long
    // lease goes one retention after its end; the completed key keeps its own
    // retention.
    clock.advance(3 * hour);
    let purged = store.purge_expired().await.unwrap();
    // released-2, long-lease, and the two keys re-claimed above (30 s leases).
    assert_eq!(purged, 4);
    assert_eq!(
        store.claim("done", fp, LEASE).await.unwrap(),
        Claim::Completed
    );
    scenarios::assert_forgotten(&store, "released-2").await;
}

#[tokio::test]
async fn migrate_adds_the_unsettled_index_to_an_existing_table() {
    let db = TempDb::new();
    let table = "keys_v1";
    {
        // The schema as the first release created it: no `_unsettled` index.
        let conn = rusqlite::Connection::open(db.path()).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE {table} (
                event_key   TEXT    NOT NULL PRIMARY KEY,
                fingerprint BLOB    NOT NULL,
                state       TEXT    NOT NULL CHECK (state IN ('leased', 'released', 'completed')),
                token       INTEGER NOT NULL,
                expires_at  INTEGER NOT NULL,
                reason      TEXT,
                updated_at  INTEGER NOT NULL
             );
             CREATE INDEX {table}_expires_at ON {table} (expires_at);
             INSERT INTO {table} VALUES ('old', x'{fp}', 'released', 7, 0, 'boom', 0);",
            fp = hex::encode(Fingerprint::of(b"body").to_bytes()),
        ))
        .unwrap();
    }
    let store = SqliteStore::file(db.path()).table(table).build().unwrap();
    store.migrate().await.unwrap();
    SqliteStore::file(db.path())
        .table(table)
        .build()
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 ORDER BY name",
        )
        .unwrap()
        .query_map([table], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        indexes.contains(&format!("{table}_unsettled")),
        "{indexes:?}"
    );
    // Released in 1970: kept by the migration, purged by the new rule.
    scenarios::old_released_key_survives_then_is_purged(&store, "old").await;
}

#[tokio::test]
async fn migrate_is_idempotent_and_tables_are_separate() {
    let db = TempDb::new();
    let a = SqliteStore::file(db.path())
        .table("keys_a")
        .build()
        .unwrap();
    let b = SqliteStore::file(db.path())
        .table("keys_b")
        .build()
        .unwrap();
    a.migrate().await.unwrap();
    a.migrate().await.unwrap();
    SqliteStore::file(db.path())
        .table("keys_a")
        .build()
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let fp = Fingerprint::of(b"body");
    assert!(matches!(
        a.claim("k", fp, LEASE).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert!(matches!(
        b.claim("k", fp, LEASE).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert_eq!(a.table(), "keys_a");
}

#[test]
fn unsafe_table_names_and_settings_are_refused() {
    for name in [
        "keys; DROP TABLE x",
        "main.keys",
        "",
        "1keys",
        "keys\"",
        "k-v",
    ] {
        let result = SqliteStore::memory().table(name).build();
        assert!(
            matches!(result, Err(StoreConfigError::InvalidTableName(ref n)) if n == name),
            "{name}"
        );
    }
    assert!(matches!(
        SqliteStore::file("x.db").max_connections(0).build(),
        Err(StoreConfigError::ZeroPoolSize)
    ));
    assert!(matches!(
        SqliteStore::memory().busy_timeout(Duration::ZERO).build(),
        Err(StoreConfigError::ZeroTimeout("busy"))
    ));
    assert!(matches!(
        SqliteStore::memory().purge_batch_size(0).build(),
        Err(StoreConfigError::ZeroPurgeBatch)
    ));
    assert!(matches!(
        SqliteStore::memory()
            .unsettled_retention(Duration::ZERO)
            .build(),
        Err(StoreConfigError::ZeroTimeout("unsettled retention"))
    ));
}

#[tokio::test]
async fn unreadable_rows_are_reported_as_corrupt() {
    let db = TempDb::new();
    let store = db.store();
    store.migrate().await.unwrap();
    {
        let conn = rusqlite::Connection::open(db.path()).unwrap();
        conn.execute(
            &format!(
                "INSERT INTO {} VALUES ('short-fp', x'00', 'leased', 1, 0, NULL, 0)",
                store.table()
            ),
            [],
        )
        .unwrap();
    }
    let claim = store.claim("short-fp", Fingerprint::of(b""), LEASE).await;
    assert!(
        matches!(claim, Err(StoreError::Corrupt { ref key, .. }) if key == "short-fp"),
        "{claim:?}"
    );
}

#[test]
fn a_store_and_its_builder_debug_as_their_settings() {
    let builder = SqliteStore::file("/tmp/hookgate-debug.sqlite3").table("hg_debug");
    let debug = format!("{builder:?}");
    for part in [
        "SqliteStoreBuilder",
        "hookgate-debug.sqlite3",
        "hg_debug",
        "max_connections",
        "busy_timeout",
        "clock",
    ] {
        assert!(debug.contains(part), "{part} missing from {debug}");
    }
    let store = builder.build().unwrap();
    let debug = format!("{store:?}");
    for part in [
        "SqliteStore",
        "hookgate-debug.sqlite3",
        "hg_debug",
        "busy_timeout",
        "operation_timeout",
    ] {
        assert!(debug.contains(part), "{part} missing from {debug}");
    }
}
