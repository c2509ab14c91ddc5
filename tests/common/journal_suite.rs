//! What every journal must do, run by the tests of each implementation
//! (memory, SQLite, PostgreSQL) on a fresh, empty journal.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hookgate::journal::{
    BestEffortJob, BestEffortState, DeliveryStatus, Durations, Journal, JournalError,
    JournalFilter, JournalId, JournalQuery, JournalRecord, JournalWrite, MemoryJournal,
};

/// A fixed instant, `secs` after 2023-11-14 22:13:20 UTC.
pub fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// A record received at `t(secs)` with every field set.
pub fn full_record(secs: u64, status: DeliveryStatus) -> JournalRecord {
    let mut record = JournalRecord::new(JournalId::generate_at(t(secs)), t(secs), status);
    record.provider = Some("github".into());
    record.event_id = Some(format!("d-{secs}"));
    record.kind = Some("issues.opened".into());
    record.delivery_id = Some(format!("d-{secs}"));
    record.http_status = 500;
    record.attempt = Some(3);
    let mut durations = Durations::default();
    durations.verify = Some(Duration::from_micros(12));
    durations.claim = Some(Duration::from_micros(345));
    durations.critical = Some(Duration::from_millis(6));
    durations.total = Some(Duration::from_millis(7));
    record.durations = durations;
    record.error = Some("critical handler `db` failed: connection refused".into());
    record.best_effort = vec![
        BestEffortJob::new("email", 2, BestEffortState::Succeeded),
        BestEffortJob::new("slack", 0, BestEffortState::Pending),
    ];
    let body = Bytes::from(format!(
        r#"{{"action":"opened","n":{secs},"bin":"\u0000"}}"#
    ));
    record.body_size = body.len() as u64;
    record.body_digest = Some([7; 32]);
    record.body = Some(body);
    record.headers = [
        ("X-GitHub-Event".to_owned(), "issues".to_owned()),
        ("X-GitHub-Delivery".to_owned(), format!("d-{secs}")),
    ]
    .into_iter()
    .collect();
    record.replay_of = Some(JournalId(42));
    record
}

/// A record with only what a refused delivery has.
pub fn bare_record(secs: u64, status: DeliveryStatus, provider: &str, kind: &str) -> JournalRecord {
    let mut record = JournalRecord::new(JournalId::generate_at(t(secs)), t(secs), status);
    record.provider = Some(provider.into());
    record.kind = Some(kind.into());
    record.event_id = Some(format!("e-{secs}"));
    record.http_status = 200;
    record
}

async fn write_all(journal: &dyn Journal, records: &[JournalRecord]) {
    let batch: Vec<JournalWrite> = records.iter().cloned().map(JournalWrite::Record).collect();
    journal.write(batch).await.expect("write");
}

/// Walks every page of `filter` with pages of `limit`; the ids in order.
pub async fn walk(journal: &dyn Journal, filter: &JournalFilter, limit: usize) -> Vec<JournalId> {
    let mut ids = Vec::new();
    let mut query = JournalQuery::new(filter.clone());
    query.limit = limit;
    loop {
        let page = journal.list(&query).await.expect("list");
        assert!(
            page.records.len() <= limit,
            "a page holds at most its limit"
        );
        assert!(
            page.records.iter().all(|r| r.body.is_none()),
            "lists leave bodies out"
        );
        ids.extend(page.records.iter().map(|r| r.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return ids,
        }
    }
}

/// A record comes back from `get` exactly as written, body included; lists
/// leave the body out and keep everything else.
pub async fn round_trip(journal: &dyn Journal) {
    let record = full_record(1, DeliveryStatus::CriticalFailed);
    write_all(journal, std::slice::from_ref(&record)).await;
    let got = journal.get(record.id).await.unwrap().expect("stored");
    assert_eq!(got, record);
    let page = journal.list(&JournalQuery::default()).await.unwrap();
    let mut listed = record.clone();
    listed.body = None;
    assert_eq!(page.records, vec![listed]);
    assert_eq!(page.next, None);
    assert_eq!(journal.get(JournalId(1)).await.unwrap(), None);

    let mut bare = JournalRecord::new(
        JournalId::generate_at(t(2)),
        t(2),
        DeliveryStatus::Unauthorized,
    );
    bare.http_status = 401;
    write_all(journal, std::slice::from_ref(&bare)).await;
    assert_eq!(journal.get(bare.id).await.unwrap(), Some(bare));
}

/// Writing a record again replaces it but keeps its resolution and, when
/// the new one lists none, its best-effort jobs; best-effort updates replace
/// the job of their handler or add one, and skip unknown records.
pub async fn rewrites_and_best_effort_updates(journal: &dyn Journal) {
    let mut record = full_record(1, DeliveryStatus::Processed);
    record.http_status = 200;
    write_all(journal, std::slice::from_ref(&record)).await;
    assert!(journal.mark_resolved(record.id, t(5)).await.unwrap());
    journal
        .write(vec![
            JournalWrite::BestEffort {
                id: record.id,
                job: BestEffortJob::new("slack", 4, BestEffortState::DeadLettered),
            },
            JournalWrite::BestEffort {
                id: record.id,
                job: BestEffortJob::new("audit", 1, BestEffortState::Succeeded),
            },
            JournalWrite::BestEffort {
                id: JournalId(7),
                job: BestEffortJob::new("slack", 1, BestEffortState::Succeeded),
            },
        ])
        .await
        .unwrap();
    let got = journal.get(record.id).await.unwrap().unwrap();
    assert_eq!(
        got.best_effort,
        vec![
            BestEffortJob::new("email", 2, BestEffortState::Succeeded),
            BestEffortJob::new("slack", 4, BestEffortState::DeadLettered),
            BestEffortJob::new("audit", 1, BestEffortState::Succeeded),
        ]
    );
    assert_eq!(got.resolved_at, Some(t(5)));
    assert_eq!(
        journal.get(JournalId(7)).await.unwrap(),
        None,
        "no record made for an update"
    );

    let mut again = record.clone();
    again.best_effort.clear();
    again.error = Some("changed".into());
    write_all(journal, std::slice::from_ref(&again)).await;
    let got = journal.get(record.id).await.unwrap().unwrap();
    assert_eq!(got.error.as_deref(), Some("changed"));
    assert_eq!(got.best_effort.len(), 3, "jobs kept");
    assert_eq!(got.resolved_at, Some(t(5)), "resolution kept");
}

/// Every filter field narrows the list and the counts the same way.
pub async fn filters_and_counts(journal: &dyn Journal) {
    let records = vec![
        bare_record(10, DeliveryStatus::Processed, "github", "push"),
        bare_record(20, DeliveryStatus::CriticalFailed, "github", "push"),
        bare_record(
            30,
            DeliveryStatus::CriticalFailed,
            "stripe",
            "charge.succeeded",
        ),
        bare_record(40, DeliveryStatus::Duplicate, "stripe", "charge.succeeded"),
        bare_record(50, DeliveryStatus::Unauthorized, "shopify", "orders/create"),
    ];
    write_all(journal, &records).await;
    assert!(journal.mark_resolved(records[1].id, t(60)).await.unwrap());
    assert!(!journal.mark_resolved(JournalId(3), t(60)).await.unwrap());
    let ids =
        |idx: &[usize]| -> Vec<JournalId> { idx.iter().rev().map(|&i| records[i].id).collect() };
    let cases: Vec<(JournalFilter, Vec<JournalId>)> = vec![
        (JournalFilter::default(), ids(&[0, 1, 2, 3, 4])),
        (
            JournalFilter {
                statuses: vec![DeliveryStatus::CriticalFailed],
                ..Default::default()
            },
            ids(&[1, 2]),
        ),
        (
            JournalFilter {
                statuses: vec![DeliveryStatus::CriticalFailed, DeliveryStatus::Unauthorized],
                ..Default::default()
            },
            ids(&[1, 2, 4]),
        ),
        (
            JournalFilter {
                provider: Some("stripe".into()),
                ..Default::default()
            },
            ids(&[2, 3]),
        ),
        (
            JournalFilter {
                kind: Some("push".into()),
                ..Default::default()
            },
            ids(&[0, 1]),
        ),
        (
            JournalFilter {
                event_id: Some("e-30".into()),
                ..Default::default()
            },
            ids(&[2]),
        ),
        (
            JournalFilter {
                since: Some(t(20)),
                until: Some(t(40)),
                ..Default::default()
            },
            ids(&[1, 2]),
        ),
        (
            JournalFilter {
                statuses: vec![DeliveryStatus::CriticalFailed],
                unresolved: true,
                ..Default::default()
            },
            ids(&[2]),
        ),
        (
            JournalFilter {
                provider: Some("nobody".into()),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(walk(journal, &filter, 2).await, expected, "{filter:?}");
        let counts = journal.counts(&filter).await.unwrap();
        assert_eq!(
            counts.values().sum::<u64>(),
            expected.len() as u64,
            "{filter:?}"
        );
        for (status, n) in &counts {
            let with_status = records
                .iter()
                .filter(|r| expected.contains(&r.id) && r.status == *status)
                .count();
            assert_eq!(*n as usize, with_status, "{filter:?} {status}");
        }
    }
    let counts = journal.counts(&JournalFilter::default()).await.unwrap();
    assert_eq!(counts.get(&DeliveryStatus::CriticalFailed), Some(&2));
    assert_eq!(
        counts.get(&DeliveryStatus::Ignored),
        None,
        "absent statuses are left out"
    );
}

/// A walk from the first page to the last lists every record once, newest
/// first, while other tasks keep adding newer records (which it does not
/// list); page sizes are capped.
pub async fn pagination_is_stable_under_inserts(journal: Arc<dyn Journal>) {
    let old: Vec<JournalRecord> = (0..40)
        .map(|i| bare_record(i, DeliveryStatus::Processed, "github", "push"))
        .collect();
    write_all(&*journal, &old).await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let journal = Arc::clone(&journal);
            tokio::spawn(async move {
                for i in 0..25 {
                    let secs = 1_000 + w * 100 + i;
                    let record = bare_record(secs, DeliveryStatus::Processed, "github", "push");
                    journal
                        .write(vec![JournalWrite::Record(record)])
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut query = JournalQuery {
        limit: 3,
        ..Default::default()
    };
    let first = journal.list(&query).await.unwrap();
    let mut seen: Vec<JournalId> = first.records.iter().map(|r| r.id).collect();
    query.after = first.next;
    while query.after.is_some() {
        let page = journal.list(&query).await.unwrap();
        seen.extend(page.records.iter().map(|r| r.id));
        query.after = page.next;
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no record listed twice");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first");
    let mut expected: Vec<JournalId> = old.iter().map(|r| r.id).collect();
    expected.reverse();
    let walked_old: Vec<JournalId> = seen
        .iter()
        .copied()
        .filter(|id| expected.contains(id))
        .collect();
    assert_eq!(walked_old, expected, "every older record, once, in order");

    assert_eq!(
        walk(&*journal, &JournalFilter::default(), 1000).await.len(),
        140
    );
    let huge = JournalQuery {
        limit: usize::MAX,
        ..Default::default()
    };
    assert_eq!(
        journal.list(&huge).await.unwrap().records.len(),
        140.min(JournalQuery::MAX_LIMIT)
    );
    let zero = JournalQuery {
        limit: 0,
        ..Default::default()
    };
    assert_eq!(
        journal.list(&zero).await.unwrap().records.len(),
        1,
        "a page holds at least one"
    );
}

/// Purging deletes exactly the records received before the instant.
pub async fn purge(journal: &dyn Journal) {
    let records: Vec<JournalRecord> = (0..10)
        .map(|i| bare_record(i * 10, DeliveryStatus::Ignored, "stripe", "x"))
        .collect();
    write_all(journal, &records).await;
    assert_eq!(journal.purge_before(t(45)).await.unwrap(), 5);
    assert_eq!(journal.purge_before(t(45)).await.unwrap(), 0);
    let left = walk(journal, &JournalFilter::default(), 100).await;
    let expected: Vec<JournalId> = records[5..].iter().rev().map(|r| r.id).collect();
    assert_eq!(left, expected);
    assert_eq!(journal.get(records[0].id).await.unwrap(), None);
}

/// Purging deletes in batches (on a journal whose purge batch size is 2).
pub async fn purge_in_batches_of_two(journal: &dyn Journal) {
    let records: Vec<JournalWrite> = (0..7)
        .map(|i| JournalWrite::Record(bare_record(i, DeliveryStatus::Ignored, "stripe", "x")))
        .collect();
    journal.write(records).await.unwrap();
    // Five records in batches of two: 2 + 2 + 1.
    assert_eq!(journal.purge_before(t(5)).await.unwrap(), 5);
    assert_eq!(journal.purge_before(t(5)).await.unwrap(), 0);
    assert_eq!(walk(journal, &JournalFilter::default(), 10).await.len(), 2);
    // A batch that ends exactly at the batch size runs one more, empty.
    assert_eq!(journal.purge_before(t(100)).await.unwrap(), 2);
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
pub async fn batches_match_memory(journal: &dyn Journal) {
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
                let status =
                    DeliveryStatus::ALL[rng.below(DeliveryStatus::ALL.len() as u64) as usize];
                let mut record = full_record(i, status);
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
        memory.write(batch.clone()).await.unwrap();
        journal.write(batch.clone()).await.unwrap();
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

/// Writes `record` and reads it back: the record as the journal keeps it.
pub async fn write_and_get(journal: &dyn Journal, record: &JournalRecord) -> JournalRecord {
    journal
        .write(vec![JournalWrite::Record(record.clone())])
        .await
        .unwrap();
    journal.get(record.id).await.unwrap().unwrap()
}

/// A list with `since` at each of `bounds`, and one with `until` there, holds
/// `stored` (the only record) exactly when the filter matches it as stored:
/// filters compare the stored time, not the time written.
pub async fn time_filters_match_the_stored_time(
    journal: &dyn Journal,
    stored: &JournalRecord,
    bounds: impl IntoIterator<Item = SystemTime>,
) {
    for bound in bounds {
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
            let listed = walk(journal, &filter, 10).await;
            let expected = if filter.matches(stored) {
                vec![stored.id]
            } else {
                vec![]
            };
            assert_eq!(listed, expected, "{filter:?}");
        }
    }
}

/// Writes `batch` again and again (for up to 30 s) until the journal takes
/// it: a journal recovers once its storage is back.
pub async fn write_once_recovered(journal: &dyn Journal, batch: &[JournalWrite]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match journal.write(batch.to_vec()).await {
            Ok(()) => return,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("never recovered: {err}"),
        }
    }
}

/// `result` is a [`JournalError::Corrupt`] whose message names every one of
/// `mentions`; the message.
pub fn assert_corrupt<T: std::fmt::Debug>(
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

/// Runs `migrate` on every one of `journals` at once, each on a task of its
/// own (first migrations of one table racing each other); all succeed.
pub async fn migrate_at_once<J, F, Fut>(journals: &[J], migrate: F)
where
    J: Clone,
    F: Fn(J) -> Fut,
    Fut: std::future::Future<Output = Result<(), JournalError>> + Send + 'static,
{
    let migrations: Vec<_> = journals
        .iter()
        .map(|journal| tokio::spawn(migrate(journal.clone())))
        .collect();
    for migration in migrations {
        migration.await.unwrap().unwrap();
    }
}

/// `build` refuses each table name that is not a plain identifier (and
/// `qualified`, a qualified name the journal does not accept), with
/// `InvalidTableName` naming it: table names are spliced into SQL.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub fn assert_unsafe_table_names_refused<T: std::fmt::Debug>(
    qualified: &str,
    build: impl Fn(&str) -> Result<T, hookgate::store::StoreConfigError>,
) {
    for name in [
        "journal; DROP TABLE x",
        qualified,
        "",
        "1journal",
        "\"journal\"",
        "j-r",
        &"j".repeat(49),
    ] {
        let result = build(name);
        assert!(
            matches!(
                result,
                Err(hookgate::store::StoreConfigError::InvalidTableName(ref n)) if n == name
            ),
            "{name}: {result:?}"
        );
    }
}
