//! `SqliteJournal` on real database files (and in memory): the journal suite,
//! batches checked against `MemoryJournal`, restarts, schema, corrupt rows,
//! timeouts.
#![cfg(feature = "sqlite")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::journal_suite::{self, assert_corrupt, bare_record, full_record, t, walk};
use hookgate::journal::sqlite::SqliteJournal;
use hookgate::journal::{
    BestEffortJob, BestEffortState, DeliveryStatus, Journal, JournalError, JournalFilter,
    JournalId, JournalQuery, JournalWrite,
};
use hookgate::store::StoreConfigError;

/// A database file in the temp directory, removed (with its WAL files) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        TempDb(std::env::temp_dir().join(format!("{}.sqlite3", common::unique("jr"))))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn journal(&self) -> SqliteJournal {
        SqliteJournal::file(self.path()).build().unwrap()
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

#[tokio::test]
async fn round_trip() {
    let db = TempDb::new();
    journal_suite::round_trip(&db.journal()).await;
}

#[tokio::test]
async fn rewrites_and_best_effort_updates() {
    let db = TempDb::new();
    journal_suite::rewrites_and_best_effort_updates(&db.journal()).await;
}

#[tokio::test]
async fn filters_and_counts() {
    let db = TempDb::new();
    journal_suite::filters_and_counts(&db.journal()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_is_stable_under_inserts() {
    let db = TempDb::new();
    journal_suite::pagination_is_stable_under_inserts(Arc::new(db.journal())).await;
}

#[tokio::test]
async fn purge() {
    let db = TempDb::new();
    journal_suite::purge(&db.journal()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_suite_passes_in_memory() {
    let memory = || SqliteJournal::memory().build().unwrap();
    journal_suite::round_trip(&memory()).await;
    journal_suite::rewrites_and_best_effort_updates(&memory()).await;
    journal_suite::filters_and_counts(&memory()).await;
    journal_suite::pagination_is_stable_under_inserts(Arc::new(memory())).await;
    journal_suite::purge(&memory()).await;
}

#[tokio::test]
async fn batches_apply_in_order_as_the_memory_journal_does() {
    let db = TempDb::new();
    journal_suite::batches_match_memory(&db.journal()).await;
}

#[tokio::test]
async fn filters_compare_the_stored_millisecond_times() {
    let journal = SqliteJournal::memory().build().unwrap();
    // 0.6 ms into a millisecond: stored as the millisecond.
    let at = t(10) + Duration::from_micros(600);
    let mut record = bare_record(10, DeliveryStatus::Processed, "github", "push");
    record.received_at = at;
    let stored = journal_suite::write_and_get(&journal, &record).await;
    assert_eq!(stored.received_at, t(10), "kept to the millisecond");
    let bounds = [0, 1, 300, 600, 999, 1_000, 1_001].map(|us| t(10) + Duration::from_micros(us));
    journal_suite::time_filters_match_the_stored_time(&journal, &stored, bounds).await;
    assert_eq!(journal.purge_before(t(10)).await.unwrap(), 0);
    assert_eq!(
        journal
            .purge_before(t(10) + Duration::from_micros(1))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn records_survive_reopening_the_file() {
    let db = TempDb::new();
    let record = full_record(1, DeliveryStatus::CriticalFailed);
    {
        let journal = db.journal();
        journal
            .write(vec![JournalWrite::Record(record.clone())])
            .await
            .unwrap();
        assert!(journal.mark_resolved(record.id, t(9)).await.unwrap());
    }
    let reopened = db.journal();
    let mut expected = record.clone();
    expected.resolved_at = Some(t(9));
    assert_eq!(reopened.get(record.id).await.unwrap(), Some(expected));
    assert_eq!(
        walk(&reopened, &JournalFilter::default(), 10).await,
        vec![record.id]
    );
}

/// The names of the indexes on `table`.
fn indexes(path: &Path, table: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut select = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1
              AND sql IS NOT NULL ORDER BY name",
        )
        .unwrap();
    select
        .query_map([table], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn migrate_is_idempotent_and_creates_the_indexes() {
    let db = TempDb::new();
    let first = SqliteJournal::file(db.path()).table("jr").build().unwrap();
    first.migrate().await.unwrap();
    first.migrate().await.unwrap();
    let record = bare_record(1, DeliveryStatus::Ignored, "stripe", "x");
    first
        .write(vec![JournalWrite::Record(record.clone())])
        .await
        .unwrap();
    // Another instance migrates the existing table, twice, and reads it.
    let second = SqliteJournal::file(db.path()).table("jr").build().unwrap();
    second.migrate().await.unwrap();
    second.migrate().await.unwrap();
    assert_eq!(second.get(record.id).await.unwrap(), Some(record.clone()));
    assert_eq!(second.table(), "jr");
    assert_eq!(
        indexes(db.path(), "jr"),
        vec!["jr_event", "jr_received_at", "jr_status"]
    );
    // Other tables of the file are other journals.
    let other = SqliteJournal::file(db.path()).table("jr2").build().unwrap();
    assert_eq!(other.get(record.id).await.unwrap(), None);
    // Concurrent first migrations of a new table all succeed.
    let journals: Vec<SqliteJournal> = (0..4)
        .map(|_| SqliteJournal::file(db.path()).table("jr3").build().unwrap())
        .collect();
    journal_suite::migrate_at_once(&journals, |journal| async move { journal.migrate().await })
        .await;
}

/// Writes rows this journal cannot read, by hand.
fn write_corrupt_rows(path: &Path, table: &str, rows: &[(JournalId, &str, &str, &str)]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    for (id, status, best_effort, headers) in rows {
        conn.execute(
            &format!(
                "INSERT INTO {table} (id, received_at, status, http_status, best_effort,
                    body_size, headers) VALUES (?1, 1700000000000, ?2, 200, ?3, 0, ?4)"
            ),
            rusqlite::params![&id.to_bytes()[..], status, best_effort, headers],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn unreadable_rows_are_corrupt_for_get_and_list() {
    let db = TempDb::new();
    let journal = db.journal();
    journal.migrate().await.unwrap();
    let status = JournalId::generate_at(t(1));
    let jobs = JournalId::generate_at(t(2));
    let state = JournalId::generate_at(t(3));
    let headers = JournalId::generate_at(t(4));
    write_corrupt_rows(
        db.path(),
        journal.table(),
        &[
            (status, "exploded", "[]", "[]"),
            (jobs, "processed", "{not json", "[]"),
            (
                state,
                "processed",
                r#"[{"handler":"a","attempts":1,"state":"lost"}]"#,
                "[]",
            ),
            (headers, "processed", "[]", r#"{"a":"b"}"#),
        ],
    );
    for (id, field) in [
        (status, "status"),
        (jobs, "best_effort"),
        (state, "best_effort"),
        (headers, "headers"),
    ] {
        assert_corrupt(journal.get(id).await, &[&id.to_string(), field]);
    }
    // A list meets the newest first.
    assert_corrupt(
        journal.list(&JournalQuery::default()).await,
        &[&headers.to_string(), "headers"],
    );
    assert_corrupt(
        journal.counts(&JournalFilter::default()).await,
        &["status", "exploded"],
    );
    // An update of a record whose jobs are unreadable fails the batch, which
    // is rolled back.
    let fine = bare_record(50, DeliveryStatus::Processed, "github", "push");
    let batch = vec![
        JournalWrite::Record(fine.clone()),
        JournalWrite::BestEffort {
            id: jobs,
            job: BestEffortJob::new("x", 1, BestEffortState::Pending),
        },
    ];
    assert_corrupt(journal.write(batch).await, &[&jobs.to_string()]);
    assert_eq!(journal.get(fine.id).await.unwrap(), None, "rolled back");

    // Values of the wrong type or length, and a short id.
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let table = journal.table();
    conn.execute(&format!("DELETE FROM {table}"), []).unwrap();
    let cases = [
        ("body_digest", "x'0102'", "32"),
        ("replay_of", "x'01'", "16"),
        ("body_size", "-3", "negative"),
        ("http_status", "70000", "range"),
        ("attempt", "'three'", "text"),
        ("verify_us", "1.5", "real"),
    ];
    for (n, (column, value, problem)) in cases.iter().enumerate() {
        let id = JournalId::generate_at(t(100 + n as u64));
        conn.execute(
            &format!(
                "INSERT INTO {table} (id, received_at, status, http_status, best_effort,
                    body_size, headers) VALUES (?1, 1700000000000, 'processed', 200, '[]', 0, '[]')"
            ),
            [&id.to_bytes()[..]],
        )
        .unwrap();
        conn.execute(
            &format!("UPDATE {table} SET {column} = {value} WHERE id = ?1"),
            [&id.to_bytes()[..]],
        )
        .unwrap();
        assert_corrupt(journal.get(id).await, &[&id.to_string(), column, problem]);
        assert_corrupt(
            journal.list(&JournalQuery::default()).await,
            &[&id.to_string(), column],
        );
        conn.execute(&format!("DELETE FROM {table}"), []).unwrap();
    }
    conn.execute(
        &format!(
            "INSERT INTO {table} (id, received_at, status, http_status, best_effort,
                body_size, headers) VALUES (x'0102', 1, 'processed', 200, '[]', 0, '[]')"
        ),
        [],
    )
    .unwrap();
    assert_corrupt(
        journal.list(&JournalQuery::default()).await,
        &["`id`", "2 bytes"],
    );
}

#[tokio::test]
async fn purge_deletes_in_batches() {
    let journal = SqliteJournal::memory().purge_batch_size(2).build().unwrap();
    journal_suite::purge_in_batches_of_two(&journal).await;
}

#[tokio::test]
async fn a_locked_file_is_unavailable_within_the_operation_timeout() {
    let db = TempDb::new();
    let journal = SqliteJournal::file(db.path())
        .busy_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    journal.migrate().await.unwrap();
    // Another program holds the write lock.
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let record = bare_record(1, DeliveryStatus::Processed, "github", "push");
    let result = journal
        .write(vec![JournalWrite::Record(record.clone())])
        .await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(JournalError::Unavailable(_))),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(3), "failed after {took:?}");
    conn.execute_batch("ROLLBACK").unwrap();
    // The connection still waiting for the lock gets it and comes back; the
    // journal works again.
    journal_suite::write_once_recovered(&journal, &[JournalWrite::Record(record.clone())]).await;
    assert_eq!(journal.get(record.id).await.unwrap(), Some(record));
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_unavailable() {
    let db = TempDb::new();
    std::fs::write(db.path(), vec![b'x'; 4096]).unwrap();
    let result = db.journal().get(JournalId(1)).await;
    assert!(
        matches!(result, Err(JournalError::Unavailable(_))),
        "{result:?}"
    );
}

#[test]
fn unsafe_table_names_and_settings_are_refused() {
    journal_suite::assert_unsafe_table_names_refused("main.journal", |name| {
        SqliteJournal::memory().table(name).build()
    });
    assert!(matches!(
        SqliteJournal::memory()
            .operation_timeout(Duration::ZERO)
            .build(),
        Err(StoreConfigError::ZeroTimeout("operation"))
    ));
    assert!(matches!(
        SqliteJournal::memory().busy_timeout(Duration::ZERO).build(),
        Err(StoreConfigError::ZeroTimeout("busy"))
    ));
    assert!(matches!(
        SqliteJournal::file("x.sqlite3").max_connections(0).build(),
        Err(StoreConfigError::ZeroPoolSize)
    ));
    assert!(matches!(
        SqliteJournal::memory().purge_batch_size(0).build(),
        Err(StoreConfigError::ZeroPurgeBatch)
    ));
    let journal = SqliteJournal::memory().build().unwrap();
    assert_eq!(journal.table(), "hookgate_journal");
    let debug = format!("{journal:?} {:?}", SqliteJournal::memory());
    assert!(debug.contains("hookgate_journal"), "{debug}");
}
