//! `SqliteJournal` on real database files (and in memory): the journal suite,
//! batches checked against `MemoryJournal`, restarts, schema, corrupt rows,
//! timeouts.
#![cfg(feature = "sqlite")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::journal_suite::{self, bare_record, full_record, t, walk};
use hookgate::journal::sqlite::SqliteJournal;
use hookgate::journal::{
    BestEffortJob, BestEffortState, DeliveryStatus, Journal, JournalError, JournalFilter,
    JournalId, JournalQuery, JournalWrite, MemoryJournal,
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

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random batches mixing records written again (with and without jobs and
/// resolutions) and best-effort updates (of stored, unstored and unknown
/// records, before and after their record in the batch) leave the journal
/// as they leave a `MemoryJournal`.
async fn batches_match_memory(journal: &dyn Journal) {
    let memory = MemoryJournal::new();
    let ids: Vec<JournalId> = (0..5).map(|i| JournalId::generate_at(t(i))).collect();
    let handlers = ["email", "slack", "audit"];
    let states = [
        BestEffortState::Pending,
        BestEffortState::Succeeded,
        BestEffortState::DeadLettered,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..150u64 {
        let mut batch = Vec::new();
        for _ in 0..=rng.below(6) {
            // Ids 0..4 get records; id 4 only ever gets updates.
            let id = ids[rng.below(5) as usize];
            if id != ids[4] && rng.below(2) == 0 {
                let i = ids.iter().position(|x| *x == id).unwrap() as u64;
                let mut record = full_record(
                    i,
                    DeliveryStatus::ALL[rng.below(DeliveryStatus::ALL.len() as u64) as usize],
                );
                record.id = id;
                record.error = Some(format!("round {round}"));
                record.best_effort = (0..rng.below(3))
                    .map(|n| BestEffortJob::new(handlers[n as usize], round as u32, states[0]))
                    .collect();
                record.resolved_at = (rng.below(4) == 0).then(|| t(1_000 + round));
                if rng.below(3) == 0 {
                    record.body = None;
                }
                batch.push(JournalWrite::Record(record));
            } else {
                let job = BestEffortJob::new(
                    handlers[rng.below(3) as usize],
                    rng.below(10) as u32,
                    states[rng.below(3) as usize],
                );
                batch.push(JournalWrite::BestEffort { id, job });
            }
        }
        memory.write(&batch).await.unwrap();
        journal.write(&batch).await.unwrap();
        if rng.below(5) == 0 {
            let id = ids[rng.below(5) as usize];
            let at = t(2_000 + round);
            assert_eq!(
                journal.mark_resolved(id, at).await.unwrap(),
                memory.mark_resolved(id, at).await.unwrap()
            );
        }
        for id in &ids {
            assert_eq!(
                journal.get(*id).await.unwrap(),
                memory.get(*id).await.unwrap(),
                "round {round}, {id}, after {batch:#?}"
            );
        }
    }
    let all = JournalQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        journal.list(&all).await.unwrap(),
        memory.list(&all).await.unwrap()
    );
    let filter = JournalFilter::default();
    assert_eq!(
        journal.counts(&filter).await.unwrap(),
        memory.counts(&filter).await.unwrap()
    );
}

#[tokio::test]
async fn batches_apply_in_order_as_the_memory_journal_does() {
    let db = TempDb::new();
    batches_match_memory(&db.journal()).await;
}

#[tokio::test]
async fn filters_compare_the_stored_millisecond_times() {
    let journal = SqliteJournal::memory().build().unwrap();
    // 0.6 ms into a millisecond: stored as the millisecond.
    let at = t(10) + Duration::from_micros(600);
    let mut record = bare_record(10, DeliveryStatus::Processed, "github", "push");
    record.received_at = at;
    journal
        .write(&[JournalWrite::Record(record.clone())])
        .await
        .unwrap();
    let stored = journal.get(record.id).await.unwrap().unwrap();
    assert_eq!(stored.received_at, t(10), "kept to the millisecond");
    for offset_us in [0, 1, 300, 600, 999, 1_000, 1_001] {
        let bound = t(10) + Duration::from_micros(offset_us);
        for filter in [
            JournalFilter {
                since: Some(bound),
                ..Default::default()
            },
            JournalFilter {
                until: Some(bound),
                ..Default::default()
            },
        ] {
            let listed = walk(&journal, &filter, 10).await;
            let expected = if filter.matches(&stored) {
                vec![record.id]
            } else {
                vec![]
            };
            assert_eq!(listed, expected, "{filter:?}");
        }
    }
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
            .write(&[JournalWrite::Record(record.clone())])
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
        .write(&[JournalWrite::Record(record.clone())])
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
    let migrations: Vec<_> = journals
        .iter()
        .map(|journal| {
            let journal = journal.clone();
            tokio::spawn(async move { journal.migrate().await })
        })
        .collect();
    for migration in migrations {
        migration.await.unwrap().unwrap();
    }
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

fn assert_corrupt<T: std::fmt::Debug>(
    result: Result<T, JournalError>,
    mentions: &[&str],
) -> String {
    match result {
        Err(JournalError::Corrupt(message)) => {
            for part in mentions {
                assert!(message.contains(part), "{message:?} names {part}");
            }
            message
        }
        other => panic!("expected a corrupt record, got {other:?}"),
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
    let batch = [
        JournalWrite::Record(fine.clone()),
        JournalWrite::BestEffort {
            id: jobs,
            job: BestEffortJob::new("x", 1, BestEffortState::Pending),
        },
    ];
    assert_corrupt(journal.write(&batch).await, &[&jobs.to_string()]);
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
    let records: Vec<JournalWrite> = (0..7)
        .map(|i| JournalWrite::Record(bare_record(i, DeliveryStatus::Ignored, "stripe", "x")))
        .collect();
    journal.write(&records).await.unwrap();
    // Five records in batches of two: 2 + 2 + 1.
    assert_eq!(journal.purge_before(t(5)).await.unwrap(), 5);
    assert_eq!(journal.purge_before(t(5)).await.unwrap(), 0);
    assert_eq!(walk(&journal, &JournalFilter::default(), 10).await.len(), 2);
    // A batch that ends exactly at the batch size runs one more, empty.
    assert_eq!(journal.purge_before(t(100)).await.unwrap(), 2);
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
    let result = journal.write(&[JournalWrite::Record(record.clone())]).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(JournalError::Unavailable(_))),
        "{result:?}"
    );
    assert!(took < Duration::from_secs(3), "failed after {took:?}");
    conn.execute_batch("ROLLBACK").unwrap();
    // The connection still waiting for the lock gets it and comes back; the
    // journal works again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match journal.write(&[JournalWrite::Record(record.clone())]).await {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("never recovered: {err}"),
        }
    }
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
    for name in [
        "journal; DROP TABLE x",
        "main.journal",
        "",
        "1journal",
        "\"journal\"",
        "j-r",
        &"j".repeat(49),
    ] {
        let result = SqliteJournal::memory().table(name).build();
        assert!(
            matches!(result, Err(StoreConfigError::InvalidTableName(ref n)) if n == name),
            "{name}: {result:?}"
        );
    }
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
