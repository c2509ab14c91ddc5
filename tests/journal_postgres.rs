//! `PostgresJournal` against the real server at `HOOKGATE_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`): the journal suite,
//! batches checked against `MemoryJournal`, concurrent migrations, outages
//! through a proxy, corrupt rows, large batches. Every test uses its own table
//! and drops it at the end.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::journal_suite::{self, assert_corrupt, bare_record, full_record, t, walk};
use common::proxy::Proxy;
use hookgate::journal::postgres::PostgresJournal;
use hookgate::journal::{
    BestEffortJob, BestEffortState, DeliveryStatus, Journal, JournalError, JournalFilter,
    JournalId, JournalQuery, JournalWrite,
};
use hookgate::store::StoreConfigError;

/// A journal on `table` of the server at `url`.
fn journal_on(url: &str, table: &str) -> PostgresJournal {
    PostgresJournal::builder(url)
        .table(table)
        .max_connections(4)
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A journal on a fresh table of the test server.
fn fresh() -> PostgresJournal {
    journal_on(&common::postgres_url(), &common::unique("jr"))
}

/// Drops the test's table.
async fn drop_table(journal: &PostgresJournal) {
    let client = journal.pool().get().await.unwrap();
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {}", journal.table()))
        .await
        .unwrap();
}

#[tokio::test]
async fn round_trip() {
    let journal = fresh();
    journal_suite::round_trip(&journal).await;
    drop_table(&journal).await;
}

#[tokio::test]
async fn rewrites_and_best_effort_updates() {
    let journal = fresh();
    journal_suite::rewrites_and_best_effort_updates(&journal).await;
    drop_table(&journal).await;
}

#[tokio::test]
async fn filters_and_counts() {
    let journal = fresh();
    journal_suite::filters_and_counts(&journal).await;
    drop_table(&journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_is_stable_under_inserts() {
    let journal = fresh();
    journal_suite::pagination_is_stable_under_inserts(Arc::new(journal.clone())).await;
    drop_table(&journal).await;
}

#[tokio::test]
async fn purge() {
    let journal = fresh();
    journal_suite::purge(&journal).await;
    drop_table(&journal).await;
}

#[tokio::test]
async fn batches_apply_in_order_as_the_memory_journal_does() {
    let journal = fresh();
    journal_suite::batches_match_memory(&journal).await;
    drop_table(&journal).await;
}

#[tokio::test]
async fn filters_compare_the_stored_microsecond_times() {
    let journal = fresh();
    // 600 ns into a microsecond: stored as the microsecond.
    let at = t(10) + Duration::from_nanos(5_600);
    let mut record = bare_record(10, DeliveryStatus::Processed, "github", "push");
    record.received_at = at;
    let stored = journal_suite::write_and_get(&journal, &record).await;
    assert_eq!(
        stored.received_at,
        t(10) + Duration::from_micros(5),
        "kept to the microsecond"
    );
    let bounds = [0, 4_999, 5_000, 5_001, 5_600, 5_999, 6_000, 6_001]
        .map(|ns| t(10) + Duration::from_nanos(ns));
    journal_suite::time_filters_match_the_stored_time(&journal, &stored, bounds).await;
    // Bounds far outside what timestamptz holds are clamped, not refused.
    let far = JournalFilter {
        since: Some(std::time::UNIX_EPOCH),
        until: Some(t(0) + Duration::from_secs(400_000 * 365 * 86_400)),
        ..Default::default()
    };
    assert_eq!(walk(&journal, &far, 10).await, vec![record.id]);
    assert_eq!(
        journal
            .purge_before(t(10) + Duration::from_micros(5))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        journal
            .purge_before(t(10) + Duration::from_nanos(5_001))
            .await
            .unwrap(),
        1
    );
    drop_table(&journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_succeed_and_migrate_is_idempotent() {
    let table = format!("public.{}", common::unique("jrmig"));
    let journals: Vec<PostgresJournal> = (0..6)
        .map(|_| journal_on(&common::postgres_url(), &table))
        .collect();
    journal_suite::migrate_at_once(&journals, |journal| async move { journal.migrate().await })
        .await;
    journals[0].migrate().await.unwrap();
    let record = full_record(1, DeliveryStatus::CriticalFailed);
    journals[1]
        .write(vec![JournalWrite::Record(record.clone())])
        .await
        .unwrap();
    // A new instance migrates the existing table and reads the record.
    let restarted = journal_on(&common::postgres_url(), &table);
    restarted.migrate().await.unwrap();
    restarted.migrate().await.unwrap();
    assert_eq!(restarted.get(record.id).await.unwrap(), Some(record));
    let client = restarted.pool().get().await.unwrap();
    let unqualified = table.trim_start_matches("public.");
    let rows = client
        .query(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
            &[&unqualified],
        )
        .await
        .unwrap();
    let defs: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let names: Vec<&str> = defs.iter().map(|(n, _)| n.as_str()).collect();
    for (suffix, columns) in [
        ("_event", "(provider, event_id)"),
        ("_received_at", "(received_at)"),
        ("_status", "(status, id)"),
    ] {
        let name = format!("{unqualified}{suffix}");
        let def = defs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.as_str());
        assert!(
            def.is_some_and(|d| d.ends_with(columns)),
            "{name}: {names:?}"
        );
    }
    drop(client);
    drop_table(&restarted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_server_is_unavailable_within_the_timeout_and_recovers() {
    let proxy = Proxy::start(common::url_addr(&common::postgres_url()).await).await;
    let url = common::url_with_addr(&common::postgres_url(), proxy.addr());
    let timeout = Duration::from_millis(800);
    let journal = PostgresJournal::builder(&url)
        .table(common::unique("jrcut"))
        .max_connections(2)
        .connect_timeout(Duration::from_millis(500))
        .operation_timeout(timeout)
        .build()
        .unwrap();
    let before = bare_record(1, DeliveryStatus::Processed, "github", "push");
    journal
        .write(vec![JournalWrite::Record(before.clone())])
        .await
        .unwrap();

    proxy.cut();
    let during = bare_record(2, DeliveryStatus::CriticalFailed, "github", "push");
    let started = Instant::now();
    let write = journal
        .write(vec![JournalWrite::Record(during.clone())])
        .await;
    let get = journal.get(before.id).await;
    let list = journal.list(&JournalQuery::default()).await;
    let took = started.elapsed();
    for result in [write.map(|_| ()), get.map(|_| ()), list.map(|_| ())] {
        assert!(
            matches!(result, Err(JournalError::Unavailable(_))),
            "{result:?}"
        );
    }
    // Three operations, each within its timeout (with room for a busy machine).
    assert!(took < 3 * timeout + Duration::from_secs(2), "took {took:?}");

    proxy.restore().await;
    journal_suite::write_once_recovered(&journal, &[JournalWrite::Record(during.clone())]).await;
    assert_eq!(
        walk(&journal, &JournalFilter::default(), 10).await,
        vec![during.id, before.id]
    );
    drop_table(&journal).await;
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let url = common::url_with_addr(&common::postgres_url(), common::proxy::closed_port().await);
    let journal = journal_on(&url, "hookgate_never_created");
    let started = Instant::now();
    let result = journal.get(JournalId(1)).await;
    assert!(
        matches!(result, Err(JournalError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(7));
}

#[tokio::test]
async fn unreadable_rows_are_corrupt_for_get_and_list() {
    let journal = fresh();
    journal.migrate().await.unwrap();
    let table = journal.table().to_owned();
    let client = journal.pool().get().await.unwrap();
    let insert = format!(
        "INSERT INTO {table} (id, received_at, status, http_status, best_effort, body_size,
            headers) VALUES ($1, now(), 'processed', 200, '[]', 0, '[]')"
    );
    let cases = [
        ("status", "'exploded'", "exploded"),
        ("best_effort", "'{not json'", "JSON"),
        (
            "best_effort",
            r#"'[{"handler":"a","attempts":1,"state":"lost"}]'"#,
            "lost",
        ),
        ("headers", r#"'{"a":"b"}'"#, "JSON"),
        ("body_digest", "'\\x0102'", "32"),
        ("replay_of", "'\\x01'", "16"),
        ("body_size", "-3", "negative"),
        ("http_status", "70000", "range"),
        ("attempt", "-1", "negative"),
    ];
    for (n, (column, value, problem)) in cases.iter().enumerate() {
        let id = JournalId::generate_at(t(100 + n as u64));
        client
            .execute(&insert, &[&&id.to_bytes()[..]])
            .await
            .unwrap();
        client
            .execute(
                &format!("UPDATE {table} SET {column} = {value} WHERE id = $1"),
                &[&&id.to_bytes()[..]],
            )
            .await
            .unwrap();
        assert_corrupt(journal.get(id).await, &[&id.to_string(), column, problem]);
        assert_corrupt(
            journal.list(&JournalQuery::default()).await,
            &[&id.to_string(), column],
        );
        if *column == "status" {
            assert_corrupt(
                journal.counts(&JournalFilter::default()).await,
                &["status", "exploded"],
            );
        }
        if *column == "best_effort" {
            // An update of a record whose jobs are unreadable fails its batch,
            // which is rolled back.
            let fine = bare_record(50, DeliveryStatus::Processed, "github", "push");
            let batch = vec![
                JournalWrite::Record(fine.clone()),
                JournalWrite::BestEffort {
                    id,
                    job: BestEffortJob::new("x", 1, BestEffortState::Pending),
                },
            ];
            assert_corrupt(journal.write(batch).await, &[&id.to_string()]);
            assert_eq!(journal.get(fine.id).await.unwrap(), None, "rolled back");
        }
        client
            .execute(&format!("DELETE FROM {table}"), &[])
            .await
            .unwrap();
    }
    client.execute(&insert, &[&&b"\x01\x02"[..]]).await.unwrap();
    assert_corrupt(
        journal.list(&JournalQuery::default()).await,
        &["`id`", "2 bytes"],
    );
    drop(client);
    drop_table(&journal).await;
}

#[tokio::test]
async fn purge_deletes_in_batches() {
    let journal = PostgresJournal::builder(common::postgres_url())
        .table(common::unique("jrpurge"))
        .purge_batch_size(2)
        .build()
        .unwrap();
    journal_suite::purge_in_batches_of_two(&journal).await;
    drop_table(&journal).await;
}

/// A batch as the pipeline's writer hands it over: `n` records of about 1 KiB.
fn pipeline_batch(n: u64, from: u64) -> Vec<JournalWrite> {
    (from..from + n)
        .map(|i| {
            let mut record = full_record(i, DeliveryStatus::Processed);
            record.body = Some(Bytes::from(vec![b'x'; 1024]));
            record.body_size = 1024;
            JournalWrite::Record(record)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_256_records_are_written_whole() {
    let journal = fresh();
    journal.migrate().await.unwrap();
    // Warm the connection and its prepared statement.
    let stored = pipeline_batch(256, 0);
    journal.write(stored.clone()).await.unwrap();
    let batches: Vec<Vec<JournalWrite>> = (0..20u64)
        .map(|b| pipeline_batch(256, 1_000 + b * 256))
        .collect();
    let count = batches.len();
    let started = Instant::now();
    for batch in batches {
        journal.write(batch).await.unwrap();
    }
    let took = started.elapsed();
    let per_second = (count * 256) as f64 / took.as_secs_f64();
    println!(
        "postgres journal: {} batches of 256 records in {took:?}: {per_second:.0} records/s",
        count
    );
    let counts = journal.counts(&JournalFilter::default()).await.unwrap();
    assert_eq!(
        counts.get(&DeliveryStatus::Processed),
        Some(&(256 * (count as u64 + 1)))
    );
    // A batch with updates of its own records and of stored ones.
    let mut mixed = pipeline_batch(256, 100_000);
    for i in 0..256 {
        let id = mixed[i].id();
        mixed.push(JournalWrite::BestEffort {
            id,
            job: BestEffortJob::new("slack", 1, BestEffortState::Succeeded),
        });
        mixed.push(JournalWrite::BestEffort {
            id: stored[i].id(),
            job: BestEffortJob::new("audit", 1, BestEffortState::DeadLettered),
        });
    }
    let started = Instant::now();
    journal.write(mixed.clone()).await.unwrap();
    println!(
        "postgres journal: a mixed batch of 768 writes in {:?}",
        started.elapsed()
    );
    let email = BestEffortJob::new("email", 2, BestEffortState::Succeeded);
    let slack = BestEffortJob::new("slack", 0, BestEffortState::Pending);
    for i in [0, 255] {
        let new = journal.get(mixed[i].id()).await.unwrap().unwrap();
        let slack_done = BestEffortJob::new("slack", 1, BestEffortState::Succeeded);
        assert_eq!(new.best_effort, vec![email.clone(), slack_done]);
        let old = journal.get(stored[i].id()).await.unwrap().unwrap();
        let audit = BestEffortJob::new("audit", 1, BestEffortState::DeadLettered);
        assert_eq!(old.best_effort, vec![email.clone(), slack.clone(), audit]);
    }
    drop_table(&journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_large_bodies_is_written_whole() {
    let journal = fresh();
    // 9 bodies of 4 MiB: more than one statement carries, in one transaction.
    let records: Vec<_> = (0..9u64)
        .map(|i| {
            let mut record = full_record(i, DeliveryStatus::CriticalFailed);
            record.body = Some(Bytes::from(vec![i as u8; 4 * 1024 * 1024]));
            record.body_size = 4 * 1024 * 1024;
            record
        })
        .collect();
    let mut batch: Vec<JournalWrite> = records.iter().cloned().map(JournalWrite::Record).collect();
    // The same id twice in one batch: the later record wins.
    let mut again = records[0].clone();
    again.error = Some("again".into());
    again.best_effort.clear();
    batch.push(JournalWrite::Record(again.clone()));
    journal.write(batch).await.unwrap();
    for record in &records[1..] {
        assert_eq!(journal.get(record.id).await.unwrap().as_ref(), Some(record));
    }
    let mut expected = again;
    expected.best_effort = records[0].best_effort.clone();
    assert_eq!(journal.get(expected.id).await.unwrap(), Some(expected));
    drop_table(&journal).await;
}

#[tokio::test]
async fn a_users_pool_can_be_handed_over() {
    use deadpool_postgres::{Manager, Pool};
    let config: tokio_postgres::Config = common::postgres_url().parse().unwrap();
    let pool = Pool::builder(Manager::new(config, tokio_postgres::NoTls))
        .max_size(2)
        .build()
        .unwrap();
    let journal = PostgresJournal::from_pool(pool)
        .table(common::unique("jrpool"))
        .build()
        .unwrap();
    journal_suite::round_trip(&journal).await;
    assert_eq!(journal.pool().status().max_size, 2);
    drop_table(&journal).await;
}

#[test]
fn unsafe_table_names_and_bad_settings_are_refused() {
    journal_suite::assert_unsafe_table_names_refused("a.b.c", |name| {
        PostgresJournal::builder("postgres://localhost/x")
            .table(name)
            .build()
    });
    assert!(PostgresJournal::builder("postgres://localhost/x")
        .table("ops.journal")
        .build()
        .is_ok());
    common::assert_url_refused_quietly(
        PostgresJournal::builder("postgres://user:secret@host:notaport/db").build(),
        format!(
            "{:?}",
            PostgresJournal::builder("postgres://user:secret@localhost/x")
        ),
    );
    assert!(matches!(
        PostgresJournal::builder("postgres://localhost/x")
            .operation_timeout(Duration::ZERO)
            .build(),
        Err(StoreConfigError::ZeroTimeout("operation"))
    ));
    assert!(matches!(
        PostgresJournal::builder("postgres://localhost/x")
            .statement_timeout(Duration::ZERO)
            .build(),
        Err(StoreConfigError::ZeroTimeout("statement"))
    ));
    assert!(matches!(
        PostgresJournal::builder("postgres://localhost/x")
            .max_connections(0)
            .build(),
        Err(StoreConfigError::ZeroPoolSize)
    ));
    assert!(matches!(
        PostgresJournal::builder("postgres://localhost/x")
            .purge_batch_size(0)
            .build(),
        Err(StoreConfigError::ZeroPurgeBatch)
    ));
}
