//! `MemoryJournal`: the journal suite, and its bounds.

mod common;

use std::sync::Arc;

use common::journal_suite::{self, bare_record, full_record};
use hookgate::journal::{DeliveryStatus, Journal, JournalQuery, JournalWrite, MemoryJournal};

#[tokio::test]
async fn round_trip() {
    journal_suite::round_trip(&MemoryJournal::new()).await;
}

#[tokio::test]
async fn rewrites_and_best_effort_updates() {
    journal_suite::rewrites_and_best_effort_updates(&MemoryJournal::new()).await;
}

#[tokio::test]
async fn filters_and_counts() {
    journal_suite::filters_and_counts(&MemoryJournal::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_is_stable_under_inserts() {
    journal_suite::pagination_is_stable_under_inserts(Arc::new(MemoryJournal::new())).await;
}

#[tokio::test]
async fn purge() {
    journal_suite::purge(&MemoryJournal::new()).await;
}

#[tokio::test]
async fn the_oldest_records_make_room_for_records_and_for_body_bytes() {
    let journal = MemoryJournal::with_limits(3, usize::MAX);
    let records: Vec<_> = (0..5)
        .map(|i| bare_record(i, DeliveryStatus::Processed, "stripe", "x"))
        .collect();
    for record in &records {
        journal
            .write(vec![JournalWrite::Record(record.clone())])
            .await
            .unwrap();
    }
    assert_eq!((journal.len(), journal.evicted()), (3, 2));
    let left: Vec<_> = journal
        .list(&JournalQuery::default())
        .await
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec![records[4].id, records[3].id, records[2].id]);

    // Each full record carries a body of about 40 bytes: room for two.
    let body = full_record(0, DeliveryStatus::Processed)
        .body
        .unwrap()
        .len();
    let journal = MemoryJournal::with_limits(100, 2 * body + body / 2);
    for i in 0..3 {
        journal
            .write(vec![JournalWrite::Record(full_record(
                i,
                DeliveryStatus::Processed,
            ))])
            .await
            .unwrap();
    }
    assert_eq!((journal.len(), journal.evicted()), (2, 1));
    assert!(!journal.is_empty());
    // A record written again is not counted twice.
    let again = full_record(9, DeliveryStatus::Processed);
    for _ in 0..3 {
        journal
            .write(vec![JournalWrite::Record(again.clone())])
            .await
            .unwrap();
    }
    assert_eq!(journal.len(), 2);
    assert_eq!(journal.evicted(), 2);
    assert!(MemoryJournal::new().is_empty());
    assert_eq!(
        journal
            .purge_before(journal_suite::t(1_000_000))
            .await
            .unwrap(),
        2
    );
    assert!(journal.is_empty());
    let debug = format!("{journal:?}");
    assert!(
        debug.contains("MemoryJournal") && !debug.contains("opened"),
        "{debug}"
    );
}
