//! The pipeline on the durable journals (SQLite file, the local PostgreSQL):
//! a failed GitHub delivery is found, replayed and ends processed; a forced
//! replay of a processed one runs again; purge; and a PostgreSQL journal cut
//! off through a TCP proxy while deliveries keep being answered as before,
//! the drops counted, and written again once it is back.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::pipeline::{gh_delivery, github, issue_body, store};
use common::proxy::Proxy;
use hookgate::journal::postgres::PostgresJournal;
use hookgate::journal::sqlite::SqliteJournal;
use hookgate::journal::{DeliveryStatus, Journal, JournalFilter, JournalQuery};
use hookgate::{handler_fn, HandlerError, OutcomeKind, Pipeline, Registry, ReplayOptions};

const WAIT: Duration = Duration::from_secs(10);

/// A pipeline whose GitHub `issues` handler fails while `down` is set,
/// counting its runs, journaled in `journal`.
fn pipeline(
    journal: impl Journal + 'static,
    down: &Arc<AtomicBool>,
    runs: &Arc<AtomicU64>,
) -> Pipeline {
    let (down, runs) = (down.clone(), runs.clone());
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "issues",
        "db",
        handler_fn(move |_event| {
            let failing = down.load(Ordering::SeqCst);
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                if failing {
                    Err(HandlerError::transient("database down"))
                } else {
                    Ok(())
                }
            }
        }),
    );
    Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .journal(journal)
        .build()
        .unwrap()
}

/// The whole story on one journal.
async fn fail_find_replay_force_purge(journal: impl Journal + 'static) {
    let down = Arc::new(AtomicBool::new(true));
    let runs = Arc::new(AtomicU64::new(0));
    let pipeline = pipeline(journal, &down, &runs);
    let journal = pipeline.journal().unwrap();
    let (body, headers) = gh_delivery("d-durable", &issue_body(1));
    let failed = pipeline.handle(body, &headers).await;
    assert_eq!(failed.status(), 500);

    let page = journal
        .list(&JournalQuery::new(JournalFilter {
            statuses: vec![DeliveryStatus::CriticalFailed],
            provider: Some("github".into()),
            unresolved: true,
            ..JournalFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1, "written before the 500 was answered");
    let original = page.records[0].id;
    assert_eq!(Some(original), failed.journal_id);
    let stored = journal.get(original).await.unwrap().unwrap();
    assert!(stored.is_replayable(), "{stored:?}");
    assert_eq!(stored.delivery_id.as_deref(), Some("d-durable"));

    down.store(false, Ordering::SeqCst);
    let replayed = pipeline
        .replay(original, ReplayOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(replayed.kind, OutcomeKind::Processed { .. }),
        "{replayed:?}"
    );
    let again = pipeline
        .replay(original, ReplayOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(again.kind, OutcomeKind::Duplicate),
        "idempotency holds: {again:?}"
    );
    let forced = pipeline
        .replay(original, ReplayOptions::forced())
        .await
        .unwrap();
    assert!(
        matches!(forced.kind, OutcomeKind::Processed { .. }),
        "{forced:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3, "failed, replayed, forced");
    assert!(journal
        .mark_resolved(original, SystemTime::now())
        .await
        .unwrap());

    assert!(pipeline.flush_journal(WAIT).await);
    let replay_record = journal
        .get(replayed.journal_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (replay_record.status, replay_record.replay_of),
        (DeliveryStatus::Processed, Some(original))
    );
    let counts = journal.counts(&JournalFilter::default()).await.unwrap();
    assert_eq!(counts.get(&DeliveryStatus::Processed), Some(&2));
    assert_eq!(counts.get(&DeliveryStatus::Duplicate), Some(&1));
    assert_eq!(counts.get(&DeliveryStatus::CriticalFailed), Some(&1));
    let unresolved = JournalFilter {
        statuses: vec![DeliveryStatus::CriticalFailed],
        unresolved: true,
        ..JournalFilter::default()
    };
    assert!(journal.counts(&unresolved).await.unwrap().is_empty());
    let purged = journal
        .purge_before(SystemTime::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(purged, 4);
    assert!(journal.get(original).await.unwrap().is_none());
    pipeline.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_github_delivery_is_replayed_from_an_sqlite_journal() {
    let path = std::env::temp_dir().join(format!("{}.sqlite3", common::unique("jr")));
    fail_find_replay_force_purge(SqliteJournal::file(&path).build().unwrap()).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_github_delivery_is_replayed_from_a_postgres_journal() {
    let journal = PostgresJournal::builder(common::postgres_url())
        .table(common::unique("jr"))
        .build()
        .unwrap();
    let table = journal.table().to_owned();
    let pool = journal.pool().clone();
    fail_find_replay_force_purge(journal).await;
    let client = pool.get().await.unwrap();
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_postgres_journal_never_changes_an_answer_and_its_drops_are_counted() {
    let proxy = Proxy::start(common::url_addr(&common::postgres_url()).await).await;
    let url = common::url_with_addr(&common::postgres_url(), proxy.addr());
    let journal = PostgresJournal::builder(url)
        .table(common::unique("jr"))
        .operation_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    journal.migrate().await.unwrap();
    let (table, pool) = (journal.table().to_owned(), journal.pool().clone());
    let down = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let pipeline = pipeline(journal, &down, &runs);
    let journal = pipeline.journal().unwrap();

    let (body, headers) = gh_delivery("d-before", &issue_body(0));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
    assert!(pipeline.flush_journal(WAIT).await);
    assert_eq!(pipeline.stats().journal_dropped, 0);

    proxy.cut();
    let mut answers = Vec::new();
    for i in 1..=10 {
        let (body, headers) = gh_delivery(&format!("d-cut-{i}"), &issue_body(i));
        answers.push(pipeline.handle(body, &headers).await.status());
    }
    assert_eq!(answers, vec![200; 10], "answered as without a journal");
    down.store(true, Ordering::SeqCst);
    let began = tokio::time::Instant::now();
    let (body, headers) = gh_delivery("d-cut-fail", &issue_body(11));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 500);
    let budget = pipeline.limits("github").unwrap().answer_budget;
    assert!(
        began.elapsed() < budget,
        "within the answer budget: {:?}",
        began.elapsed()
    );
    assert!(pipeline.flush_journal(WAIT).await);
    let dropped = pipeline.stats().journal_dropped;
    assert_eq!(
        dropped,
        11,
        "every record of the cut: {:?}",
        pipeline.stats()
    );
    assert_eq!(runs.load(Ordering::SeqCst), 12, "every handler ran");

    proxy.restore().await;
    down.store(false, Ordering::SeqCst);
    let mut written = None;
    for attempt in 0..50 {
        let (body, headers) =
            gh_delivery(&format!("d-after-{attempt}"), &issue_body(100 + attempt));
        let outcome = pipeline.handle(body, &headers).await;
        assert_eq!(outcome.status(), 200);
        pipeline.flush_journal(WAIT).await;
        if let Ok(Some(record)) = journal.get(outcome.journal_id.unwrap()).await {
            written = Some(record);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let record = written.expect("records are written again once the journal is back");
    assert_eq!(record.status, DeliveryStatus::Processed);
    let client = pool.get().await.unwrap();
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .unwrap();
}
