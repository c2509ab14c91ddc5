//! The ordering guard's watermarks in every built-in store, on the real
//! servers: the watermark conformance suite, purge, schema and key layout,
//! a corrupt Redis value, and the guard across four PostgreSQL instances
//! racing one object's events.
#![cfg(feature = "tokio")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use hookgate::store::watermark::conformance;
use hookgate::store::{MemoryStore, Watermark, WatermarkStore};
use hookgate::{FixedClock, IdempotencyStore};

fn mark(ms: i64) -> Watermark {
    Watermark::from_unix_millis(ms)
}

async fn passes<S: WatermarkStore + Clone + 'static>(store: S) {
    if let Err(failure) = conformance::run(&store).await {
        panic!("{failure}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_passes_the_watermark_suite() {
    passes(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn memory_purges_expired_watermarks_and_stays_bounded() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let store = MemoryStore::builder()
        .watermark_capacity(3)
        .clock(clock.clone())
        .build();
    let hour = Duration::from_secs(3600);
    for (i, object) in ["a", "b", "c", "d"].iter().enumerate() {
        store
            .advance(object, mark(i as i64), hour * (i as u32 + 1))
            .await
            .unwrap();
    }
    // Full at 3: `a`, the first to expire, made room for `d`.
    assert_eq!(store.watermark_count(), 3);
    assert_eq!(store.watermark("a").await.unwrap(), None);
    clock.advance(hour * 3);
    assert_eq!(store.watermark("b").await.unwrap(), None);
    assert_eq!(store.watermark("d").await.unwrap(), Some(mark(3)));
    // The purge deletes `b` and `c`, and counts keys only.
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(store.watermark_count(), 1);
    assert!(store.watermarks().is_some());
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use hookgate::store::sqlite::SqliteStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_passes_the_watermark_suite_on_a_file() {
        let path = std::env::temp_dir().join(format!("{}.sqlite3", common::unique("wm")));
        let store = SqliteStore::file(&path).build().unwrap();
        passes(Arc::new(store)).await;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }

    #[tokio::test]
    async fn sqlite_purges_expired_watermarks_by_its_clock() {
        let clock = FixedClock::at_unix(1_700_000_000);
        let store = SqliteStore::memory().clock(clock.clone()).build().unwrap();
        let hour = Duration::from_secs(3600);
        store.advance("short", mark(1), hour).await.unwrap();
        store.advance("long", mark(2), hour * 5).await.unwrap();
        clock.advance(hour * 2);
        assert_eq!(store.watermark("short").await.unwrap(), None);
        assert_eq!(store.purge_expired().await.unwrap(), 0);
        // Purged: an advance to an older time now starts afresh either way,
        // and the long one is untouched.
        assert_eq!(
            store.advance("short", mark(0), hour).await.unwrap(),
            mark(0)
        );
        assert_eq!(store.watermark("long").await.unwrap(), Some(mark(2)));
        assert!(store.watermarks().is_some());
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::pipeline::{Tally, STRIPE_SECRET};
    use hookgate::store::postgres::PostgresStore;
    use hookgate::{testing, Headers, OrderingGuard, OutcomeKind, Pipeline, Registry, Stripe};

    fn store(table: &str) -> PostgresStore {
        PostgresStore::connect(common::postgres_url())
            .table(table)
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_passes_the_watermark_suite() {
        passes(Arc::new(store("hookgate_wm_suite"))).await;
    }

    #[tokio::test]
    async fn postgres_keeps_watermarks_in_their_own_indexed_table_and_purges_them() {
        let table = common::unique("wm_schema").replace('-', "_");
        let store = store(&table);
        store.migrate().await.unwrap();
        let client = store.pool().get().await.unwrap();
        let columns: Vec<String> = client
            .query(
                "SELECT column_name::text FROM information_schema.columns
                  WHERE table_name = $1 ORDER BY ordinal_position",
                &[&format!("{table}_watermarks")],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(columns, ["object", "at_ms", "expires_at"]);
        let indexes: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE tablename = $1",
                &[&format!("{table}_watermarks")],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(indexes, 2, "the primary key and the index on expires_at");
        store
            .advance("gone", mark(1), Duration::from_millis(1))
            .await
            .unwrap();
        store
            .advance("kept", mark(2), Duration::from_secs(600))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.purge_expired().await.unwrap();
        let left: Vec<String> = client
            .query(&format!("SELECT object FROM {table}_watermarks"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(left, ["kept"]);
        for suffix in ["", "_watermarks"] {
            client
                .batch_execute(&format!("DROP TABLE {table}{suffix}"))
                .await
                .unwrap();
        }
    }

    /// Eight events of one subscription, delivered by 8 tasks at once to
    /// four pipelines (four pools) sharing one table, then each again: the
    /// newest always runs exactly once, every other event runs at most
    /// once, none is lost (each is processed, stale or a duplicate), and
    /// the watermark ends at the newest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn four_instances_race_one_objects_events_and_the_newest_wins() {
        let table = common::unique("wm_race").replace('-', "_");
        let object = common::unique("sub");
        let tally = Tally::default();
        let pipelines: Vec<Pipeline> = (0..4)
            .map(|_| {
                let mut registry = Registry::new();
                registry.critical("stripe", "*", "apply", tally.handler());
                Pipeline::builder()
                    .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
                    .store(store(&table))
                    .registry(registry)
                    .ordering("stripe", OrderingGuard::stripe())
                    .build()
                    .unwrap()
            })
            .collect();
        let delivery = |n: i64| {
            let body = format!(
                r#"{{"id":"evt_{n}","type":"customer.subscription.updated","created":{},"data":{{"object":{{"id":"{object}"}}}}}}"#,
                1_700_000_000 + n
            );
            let headers = Headers::from_pairs(testing::stripe_headers(
                STRIPE_SECRET,
                body.as_bytes(),
                time::OffsetDateTime::now_utc(),
            ));
            (body, headers)
        };
        for round in 0..2 {
            let tasks: Vec<_> = [3, 7, 0, 5, 1, 6, 2, 4]
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    let pipeline = pipelines[(i + round) % 4].clone();
                    let (body, headers) = delivery(n);
                    tokio::spawn(async move { (n, pipeline.handle(body, &headers).await.kind) })
                })
                .collect();
            for task in tasks {
                let (n, kind) = task.await.unwrap();
                let settled = matches!(
                    kind,
                    OutcomeKind::Processed { .. }
                        | OutcomeKind::Stale { .. }
                        | OutcomeKind::Duplicate
                );
                // A 409 is possible in round 0 only if two tasks held one
                // event; each event is sent once per round, so never.
                assert!(settled, "round {round}, evt_{n}: {kind:?}");
                if n == 7 {
                    let expected_processed = round == 0;
                    assert_eq!(
                        matches!(kind, OutcomeKind::Processed { .. }),
                        expected_processed,
                        "round {round}: the newest event: {kind:?}"
                    );
                }
            }
        }
        assert_eq!(tally.count("evt_7"), 1);
        for n in 0..8 {
            assert!(tally.count(&format!("evt_{n}")) <= 1, "evt_{n} ran twice");
        }
        let watermarks = store(&table);
        let newest = watermarks
            .watermark(&format!("stripe:{object}"))
            .await
            .unwrap();
        assert_eq!(newest, Some(mark((1_700_000_007) * 1000)));
        // Now strictly in order: anything older is stale.
        let (body, headers) = delivery(-1);
        let late = pipelines[0].handle(body, &headers).await;
        assert!(
            matches!(late.kind, OutcomeKind::Stale { .. }),
            "{:?}",
            late.kind
        );
        let client = watermarks.pool().get().await.unwrap();
        for suffix in ["", "_watermarks"] {
            client
                .batch_execute(&format!("DROP TABLE {table}{suffix}"))
                .await
                .unwrap();
        }
    }
}

#[cfg(feature = "redis")]
mod redis_store {
    use super::*;
    use hookgate::store::redis::RedisStore;
    use hookgate::StoreError;

    fn store() -> RedisStore {
        RedisStore::connect(common::redis_url())
            .watermark_prefix(format!("{}:", common::unique("hookgate-wm")))
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_passes_the_watermark_suite() {
        passes(Arc::new(store())).await;
    }

    #[tokio::test]
    async fn redis_keeps_one_string_key_per_object_with_a_ttl_and_refuses_corrupt_ones() {
        let store = store();
        assert!(store.watermarks().is_some());
        store
            .advance("sub_1", mark(1_234), Duration::from_secs(60))
            .await
            .unwrap();
        let key = store.watermark_key("sub_1");
        let mut conn = store.connection().await.unwrap();
        let (value, ttl): (String, i64) = redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(value, "1234");
        assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("12x")
            .query_async(&mut conn)
            .await
            .unwrap();
        let read = store.watermark("sub_1").await;
        assert!(matches!(read, Err(StoreError::Corrupt { .. })), "{read:?}");
        let advance = store
            .advance("sub_1", mark(1), Duration::from_secs(1))
            .await;
        assert!(
            matches!(advance, Err(StoreError::Corrupt { .. })),
            "{advance:?}"
        );
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Ways to break the watermark rules, each caught by the suite.
mod broken {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    use hookgate::async_trait;
    use hookgate::store::watermark::conformance::WatermarkFailure;
    use hookgate::StoreError;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Flaw {
        None,
        /// Sets the time given, even an older one.
        Overwrite,
        /// Never lets a watermark expire.
        NeverExpires,
        /// Takes the latest retention, even a shorter one.
        ShortensRetention,
        /// Keeps an expired watermark's time when an older one comes.
        KeepsExpiredTime,
    }

    #[derive(Debug)]
    struct Broken {
        flaw: Flaw,
        marks: Mutex<HashMap<String, (Watermark, Instant)>>,
    }

    #[async_trait]
    impl WatermarkStore for Broken {
        async fn watermark(&self, object: &str) -> Result<Option<Watermark>, StoreError> {
            let marks = self.marks.lock().unwrap();
            Ok(marks
                .get(object)
                .filter(|(_, until)| self.flaw == Flaw::NeverExpires || *until > Instant::now())
                .map(|(mark, _)| *mark))
        }

        async fn advance(
            &self,
            object: &str,
            at: Watermark,
            retention: Duration,
        ) -> Result<Watermark, StoreError> {
            let now = Instant::now();
            let mut marks = self.marks.lock().unwrap();
            let until = now + retention;
            let entry = marks.entry(object.to_owned()).or_insert((at, until));
            let live = entry.1 > now || self.flaw == Flaw::KeepsExpiredTime;
            entry.0 = match self.flaw {
                Flaw::Overwrite => at,
                _ if live => entry.0.max(at),
                _ => at,
            };
            entry.1 = match self.flaw {
                Flaw::ShortensRetention => until,
                _ if entry.1 > now => entry.1.max(until),
                _ => until,
            };
            Ok(entry.0)
        }
    }

    async fn failure(flaw: Flaw) -> Option<&'static str> {
        let store = Arc::new(Broken {
            flaw,
            marks: Mutex::default(),
        });
        match conformance::run(&store).await {
            Ok(()) => None,
            Err(WatermarkFailure::Unexpected { check, .. }) => Some(check),
            Err(other) => panic!("{flaw:?}: {other}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn each_broken_rule_fails_its_check() {
        assert_eq!(failure(Flaw::None).await, None);
        assert_eq!(failure(Flaw::Overwrite).await, Some("older_is_kept_out"));
        assert_eq!(failure(Flaw::NeverExpires).await, Some("retention"));
        assert_eq!(
            failure(Flaw::ShortensRetention).await,
            Some("longer_retention_stays")
        );
        assert_eq!(
            failure(Flaw::KeepsExpiredTime).await,
            Some("expired_is_replaced")
        );
    }
}
