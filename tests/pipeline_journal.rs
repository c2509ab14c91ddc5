//! The pipeline's journal: one record per attempt with every status of the
//! table, what is kept (and never kept), the write before a non-2xx answer,
//! drops when the journal is down, `processing` for dropped attempts,
//! best-effort results, replay and the retry of dead-lettered work.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use common::pipeline::{
    gh_delivery, gh_event_delivery, github, issue_body, registry_with_critical, shopify,
    shopify_delivery, store, DownStore, GH_SECRET, STRIPE_SECRET,
};
use hookgate::journal::{
    BestEffortJob, BestEffortState, BodyRetention, DeliveryStatus, Journal, JournalError,
    JournalFilter, JournalId, JournalPage, JournalQuery, JournalRecord, JournalSettings,
    JournalWrite, MemoryJournal, StatusCounts,
};
use hookgate::{
    handler_fn, testing, HandlerError, Headers, OutcomeKind, Pipeline, PipelineBuilder, Registry,
    ReplayError, ReplayOptions, RetryPolicy, Stripe,
};

const WAIT: Duration = Duration::from_secs(5);

fn stripe() -> Stripe {
    Stripe::builder(STRIPE_SECRET).build().unwrap()
}

fn stripe_delivery(id: &str, kind: &str) -> (Bytes, Headers) {
    let body = format!(r#"{{"id":"{id}","object":"event","type":"{kind}","created":1700000000}}"#);
    let headers = Headers::from_pairs(testing::stripe_headers(
        STRIPE_SECRET,
        body.as_bytes(),
        time::OffsetDateTime::now_utc(),
    ));
    (Bytes::from(body), headers)
}

/// A critical handler that fails transiently while `down` is set.
fn flaky(down: &Arc<AtomicBool>, runs: &Arc<AtomicU64>) -> impl hookgate::Handler + 'static {
    let (down, runs) = (down.clone(), runs.clone());
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
    })
}

fn builder(journal: &MemoryJournal, registry: Registry) -> PipelineBuilder {
    Pipeline::builder()
        .verifier(github())
        .verifier(stripe())
        .verifier(shopify())
        .store(store())
        .registry(registry)
        .journal(journal.clone())
}

async fn record_of(
    pipeline: &Pipeline,
    journal: &MemoryJournal,
    id: Option<JournalId>,
) -> JournalRecord {
    assert!(pipeline.flush_journal(WAIT).await, "the queue drains");
    let id = id.expect("a journaled outcome names its record");
    journal
        .get(id)
        .await
        .unwrap()
        .expect("the record is written")
}

#[tokio::test]
async fn every_status_of_the_table_is_journaled_with_its_answer() {
    let journal = MemoryJournal::new();
    let down = Arc::new(AtomicBool::new(true));
    let runs = Arc::new(AtomicU64::new(0));
    let mut registry = Registry::new();
    registry.critical("github", "issues", "db", flaky(&down, &runs));
    registry.critical(
        "github",
        "fatal",
        "fatal",
        handler_fn(|_e| async { Err::<(), _>(HandlerError::permanent("bad data")) }),
    );
    registry.critical(
        "stripe",
        "*",
        "noop",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = builder(&journal, registry)
        .body_limit("stripe", 64)
        .build()
        .unwrap();

    let mut cases: Vec<(DeliveryStatus, u16, Option<JournalId>)> = Vec::new();
    let mut run = |status, outcome: hookgate::Outcome| {
        assert_eq!(DeliveryStatus::of(&outcome.kind), status, "{outcome:?}");
        cases.push((status, outcome.status(), outcome.journal_id));
    };
    // 413, 400 malformed, 401, 400 unusable.
    let (_, headers) = stripe_delivery("evt_big", "x");
    run(
        DeliveryStatus::TooLarge,
        pipeline.handle(vec![b' '; 65], &headers).await,
    );
    run(
        DeliveryStatus::Malformed,
        pipeline.handle(&b"{}"[..], &Headers::new()).await,
    );
    let (_, good) = gh_delivery("d-forged", &issue_body(1));
    let forged = Headers::from_pairs(good.iter().map(|(n, v)| {
        let forged = format!("sha256={}", "0".repeat(64));
        let v = if n.eq_ignore_ascii_case("x-hub-signature-256") {
            forged.into_bytes()
        } else {
            v.to_vec()
        };
        (n.to_owned(), v)
    }));
    run(
        DeliveryStatus::Unauthorized,
        pipeline.handle(issue_body(1), &forged).await,
    );
    let (body, headers) = gh_delivery("d-bad", "{not json");
    run(
        DeliveryStatus::Unusable,
        pipeline.handle(body, &headers).await,
    );
    // 500, then 200 processed and 200 duplicate.
    let (body, headers) = gh_delivery("d-1", &issue_body(1));
    run(
        DeliveryStatus::CriticalFailed,
        pipeline.handle(body.clone(), &headers).await,
    );
    down.store(false, Ordering::SeqCst);
    run(
        DeliveryStatus::Processed,
        pipeline.handle(body.clone(), &headers).await,
    );
    run(
        DeliveryStatus::Duplicate,
        pipeline.handle(body, &headers).await,
    );
    // Ignored, permanent failure (dead-lettered, 200).
    let (body, headers) = gh_event_delivery("star", "d-star", "{}");
    run(
        DeliveryStatus::Ignored,
        pipeline.handle(body, &headers).await,
    );
    let (body, headers) = gh_event_delivery("fatal", "d-fatal", "{}");
    run(
        DeliveryStatus::PermanentFailure,
        pipeline.handle(body, &headers).await,
    );

    for (status, http_status, id) in &cases {
        let record = record_of(&pipeline, &journal, *id).await;
        assert_eq!((record.status, record.http_status), (*status, *http_status));
        assert!(record.durations.total.is_some());
    }
    // The attempt numbers of d-1: 1 failed, 2 processed, the duplicate none.
    let attempts: Vec<_> = cases[4..7].iter().map(|(_, _, id)| id.unwrap()).collect();
    let mut got = Vec::new();
    for id in attempts {
        got.push(journal.get(id).await.unwrap().unwrap().attempt);
    }
    assert_eq!(got, vec![Some(1), Some(2), None]);

    // 503 store unavailable and shutting down, on another pipeline.
    let journal = MemoryJournal::new();
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "*",
        "noop",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(DownStore::default())
        .registry(registry)
        .journal(journal.clone())
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-503", &issue_body(3));
    let unavailable = pipeline.handle(body.clone(), &headers).await;
    let record = record_of(&pipeline, &journal, unavailable.journal_id).await;
    assert_eq!(
        (record.status, record.http_status),
        (DeliveryStatus::StoreUnavailable, 503)
    );
    assert!(record.error.is_some());
    pipeline.shutdown(Duration::from_millis(10)).await;
    let closed = pipeline.handle(body, &headers).await;
    assert!(matches!(closed.kind, OutcomeKind::ShuttingDown));
    // Written through the queue, whose writer outlives shutdown.
    let record = record_of(&pipeline, &journal, closed.journal_id).await;
    assert_eq!(
        (record.status, record.http_status),
        (DeliveryStatus::ShuttingDown, 503)
    );
}

#[tokio::test]
async fn refused_deliveries_keep_metadata_only_and_verified_ones_their_allowlist() {
    let journal = MemoryJournal::new();
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "*",
        "noop",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = builder(&journal, registry)
        .journal_settings(JournalSettings {
            headers: vec![
                "x-request-id".into(),
                "x-hub-signature-256".into(),
                "authorization".into(),
            ],
            ..JournalSettings::default()
        })
        .build()
        .unwrap();
    let body = issue_body(5);
    let mut pairs = testing::github_headers(GH_SECRET, body.as_bytes(), "issues", "d-5");
    pairs.push(("X-Request-Id".into(), "req-9".into()));
    pairs.push(("Authorization".into(), "Bearer hunter2".into()));
    pairs.push(("X-Other".into(), "dropped".into()));
    let headers = Headers::from_pairs(pairs.clone());
    let outcome = pipeline.handle(body.clone(), &headers).await;
    let record = record_of(&pipeline, &journal, outcome.journal_id).await;
    assert_eq!(record.status, DeliveryStatus::Processed);
    assert_eq!(record.provider.as_deref(), Some("github"));
    assert_eq!(record.event_id.as_deref(), Some("d-5"));
    assert_eq!(record.kind.as_deref(), Some("issues.opened"));
    assert_eq!(record.delivery_id.as_deref(), Some("d-5"));
    assert_eq!(record.body.as_deref(), Some(body.as_bytes()));
    assert_eq!(record.body_size, body.len() as u64);
    assert_eq!(record.body_digest, None, "a kept body needs no digest");
    let names: Vec<String> = record
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    assert!(names.contains(&"x-github-event".to_owned()), "{names:?}");
    assert!(names.contains(&"x-github-delivery".to_owned()), "{names:?}");
    assert!(names.contains(&"x-request-id".to_owned()), "{names:?}");
    for never in ["x-hub-signature-256", "authorization", "x-other"] {
        assert!(
            !names.contains(&never.to_owned()),
            "{never} kept: {names:?}"
        );
    }
    let text = format!("{record:?}");
    assert!(
        !text.contains("hunter2") && !text.contains(GH_SECRET),
        "{text}"
    );

    // The same delivery with a bad signature: metadata only.
    let forged: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| {
            let v = if n == "X-Hub-Signature-256" {
                "sha256=".to_owned() + &"0".repeat(64)
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect();
    let outcome = pipeline
        .handle(body.clone(), &Headers::from_pairs(forged))
        .await;
    assert_eq!(outcome.status(), 401);
    let record = record_of(&pipeline, &journal, outcome.journal_id).await;
    assert_eq!(record.status, DeliveryStatus::Unauthorized);
    assert_eq!(
        record.provider.as_deref(),
        Some("github"),
        "the provider guess"
    );
    assert_eq!(record.body_size, body.len() as u64);
    assert!(record.error.as_deref().is_some_and(|e| !e.is_empty()));
    assert_eq!((record.body, record.body_digest), (None, None));
    assert!(record.headers.is_empty() && record.delivery_id.is_none());
}

#[tokio::test]
async fn body_retention_and_the_size_cap() {
    for (retention, max, keeps_body, keeps_digest) in [
        (BodyRetention::Keep, 1 << 20, true, false),
        (BodyRetention::Keep, 10, false, true),
        (BodyRetention::DigestOnly, 1 << 20, false, true),
        (BodyRetention::Drop, 1 << 20, false, false),
    ] {
        let journal = MemoryJournal::new();
        let pipeline = builder(&journal, Registry::new())
            .journal_settings(JournalSettings {
                body_retention: retention,
                max_body_bytes: max,
                ..JournalSettings::default()
            })
            .build()
            .unwrap();
        let (body, headers) = stripe_delivery("evt_r", "charge.succeeded");
        let outcome = pipeline.handle(body.clone(), &headers).await;
        let record = record_of(&pipeline, &journal, outcome.journal_id).await;
        assert_eq!(record.body.is_some(), keeps_body, "{retention:?} {max}");
        assert_eq!(
            record.body_digest.is_some(),
            keeps_digest,
            "{retention:?} {max}"
        );
        assert_eq!(record.body_size, body.len() as u64);
        if keeps_digest {
            use sha2::Digest;
            let expected: [u8; 32] = sha2::Sha256::digest(&body).into();
            assert_eq!(record.body_digest, Some(expected));
        }
    }
}

/// A journal that fails (or hangs) every write while `down` is set, and
/// counts the writes it took.
#[derive(Debug, Default)]
struct Flaky {
    inner: MemoryJournal,
    down: AtomicBool,
    hang: AtomicBool,
}

#[async_trait]
impl Journal for Flaky {
    async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(JournalError::unavailable("journal down"));
        }
        self.inner.write(batch).await
    }
    async fn get(&self, id: JournalId) -> Result<Option<JournalRecord>, JournalError> {
        self.inner.get(id).await
    }
    async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError> {
        self.inner.list(query).await
    }
    async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError> {
        self.inner.counts(filter).await
    }
    async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError> {
        self.inner.mark_resolved(id, at).await
    }
    async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError> {
        self.inner.purge_before(before).await
    }
}

#[tokio::test]
async fn a_failed_verified_delivery_is_written_before_its_answer() {
    let journal = MemoryJournal::new();
    let down = Arc::new(AtomicBool::new(true));
    let runs = Arc::new(AtomicU64::new(0));
    let mut registry = Registry::new();
    registry.critical("github", "issues", "db", flaky(&down, &runs));
    let pipeline = builder(&journal, registry).build().unwrap();
    let (body, headers) = gh_delivery("d-7", &issue_body(7));
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 500);
    // No flush: it is there as soon as the answer is.
    let record = journal
        .get(outcome.journal_id.unwrap())
        .await
        .unwrap()
        .expect("written before the answer");
    assert_eq!(record.status, DeliveryStatus::CriticalFailed);
    assert!(
        record.error.as_deref().unwrap().contains("database down"),
        "{:?}",
        record.error
    );
    assert!(record.is_replayable());
}

#[tokio::test]
async fn a_memory_journal_takes_every_record_at_once() {
    let journal = MemoryJournal::new();
    let registry = registry_with_critical(handler_fn(|_e| async { Ok::<(), HandlerError>(()) }));
    let pipeline = builder(&journal, registry).build().unwrap();
    for i in 0..3 {
        let (body, headers) = gh_delivery(&format!("d-{i}"), &issue_body(i));
        let outcome = pipeline.handle(body, &headers).await;
        assert_eq!(outcome.status(), 200);
        // Neither flushed nor yielded to the writer task: there already.
        let record = journal
            .get(outcome.journal_id.unwrap())
            .await
            .unwrap()
            .expect("written at once");
        assert_eq!(record.status, DeliveryStatus::Processed);
        assert_eq!(pipeline.stats().journal_written, i + 1);
    }
    assert_eq!(journal.len(), 3);
    assert_eq!(pipeline.stats().journal_dropped, 0);
    // Through an `Arc` (how a shared journal is usually passed) as well.
    let shared = Arc::new(MemoryJournal::new());
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .journal(shared.clone())
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-arc", &issue_body(9));
    let outcome = pipeline.handle(body, &headers).await;
    assert!(shared
        .get(outcome.journal_id.unwrap())
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_is_down_or_hangs_never_changes_an_answer_and_drops_are_counted() {
    let flaky_journal = Arc::new(Flaky::default());
    let down = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let mut registry = Registry::new();
    registry.critical("github", "issues", "db", flaky(&down, &runs));
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .journal(flaky_journal.clone())
        .build()
        .unwrap();
    flaky_journal.down.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    for i in 0..10 {
        let (body, headers) = gh_delivery(&format!("d-{i}"), &issue_body(i));
        answers.push(pipeline.handle(body, &headers).await.status());
    }
    assert_eq!(answers, vec![200; 10]);
    down.store(true, Ordering::SeqCst);
    let (body, headers) = gh_delivery("d-fail", &issue_body(99));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 500);
    assert!(pipeline.flush_journal(WAIT).await);
    let stats = pipeline.stats();
    assert_eq!(
        (stats.journal_dropped, stats.journal_written),
        (11, 0),
        "{stats:?}"
    );
    assert_eq!(stats.processed, 10);

    // Hanging: the 500 is answered within the answer budget all the same.
    flaky_journal.down.store(false, Ordering::SeqCst);
    flaky_journal.hang.store(true, Ordering::SeqCst);
    let budget = pipeline.limits("github").unwrap().answer_budget;
    let began = tokio::time::Instant::now();
    let (body, headers) = gh_delivery("d-hang", &issue_body(100));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 500);
    assert!(
        began.elapsed() <= budget,
        "answered within the budget: {:?}",
        began.elapsed()
    );

    // Back: new records are written again.
    flaky_journal.hang.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await; // the hung batch times out
    down.store(false, Ordering::SeqCst);
    let (body, headers) = gh_delivery("d-back", &issue_body(101));
    let back = pipeline.handle(body, &headers).await;
    assert!(pipeline.flush_journal(WAIT).await);
    assert!(flaky_journal
        .inner
        .get(back.journal_id.unwrap())
        .await
        .unwrap()
        .is_some());
    assert!(pipeline.stats().journal_written >= 1);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let flaky_journal = Arc::new(Flaky::default());
    flaky_journal.hang.store(true, Ordering::SeqCst);
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .journal(flaky_journal.clone())
        .journal_settings(JournalSettings {
            queue_capacity: 4,
            batch_size: 1,
            ..JournalSettings::default()
        })
        .build()
        .unwrap();
    for i in 0..20 {
        let (body, headers) = gh_delivery(&format!("d-{i}"), &issue_body(i));
        assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
    }
    // One batch hangs in the journal, four wait in the queue: the rest dropped.
    let dropped = pipeline.stats().journal_dropped;
    assert!((15..=16).contains(&dropped), "{dropped}");
}

#[tokio::test]
async fn an_attempt_dropped_mid_handler_is_journaled_as_processing() {
    let journal = MemoryJournal::new();
    let started = Arc::new(tokio::sync::Notify::new());
    let mut registry = Registry::new();
    let signal = started.clone();
    registry.critical(
        "github",
        "issues",
        "slow",
        handler_fn(move |_e| {
            let signal = signal.clone();
            async move {
                signal.notify_one();
                std::future::pending::<()>().await;
                Ok::<(), HandlerError>(())
            }
        }),
    );
    let pipeline = builder(&journal, registry).build().unwrap();
    let (body, headers) = gh_delivery("d-drop", &issue_body(8));
    let handle = pipeline.handle(body, &headers);
    tokio::select! {
        _ = handle => panic!("the handler never finishes"),
        () = started.notified() => {}
    }
    assert!(pipeline.flush_journal(WAIT).await);
    let page = journal.list(&JournalQuery::default()).await.unwrap();
    assert_eq!(page.records.len(), 1);
    let record = &page.records[0];
    assert_eq!(record.status, DeliveryStatus::Processing);
    assert_eq!(record.attempt, Some(1));
    assert_eq!(record.event_id.as_deref(), Some("d-drop"));
    let full = journal.get(record.id).await.unwrap().unwrap();
    assert!(full.is_replayable(), "a dropped attempt can be replayed");
}

#[tokio::test]
async fn best_effort_results_land_on_the_record_and_dead_lettered_work_can_be_retried() {
    let journal = MemoryJournal::new();
    let failing = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let mut registry = Registry::new();
    registry.critical(
        "stripe",
        "*",
        "noop",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    registry.best_effort(
        "stripe",
        "*",
        "email",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    let (f, s) = (failing.clone(), sent.clone());
    registry.best_effort(
        "stripe",
        "*",
        "slack",
        handler_fn(move |_e| {
            let failing = f.load(Ordering::SeqCst);
            s.fetch_add(1, Ordering::SeqCst);
            async move {
                if failing {
                    Err(HandlerError::permanent("channel archived"))
                } else {
                    Ok(())
                }
            }
        }),
    );
    let pipeline = builder(&journal, registry)
        .retry_policy({
            let mut policy = RetryPolicy::default();
            policy.max_attempts = 2;
            policy.initial_backoff = Duration::from_millis(1);
            policy
        })
        .build()
        .unwrap();
    let (body, headers) = stripe_delivery("evt_be", "invoice.paid");
    let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
    let report = work.expect("two jobs").await;
    assert_eq!((report.succeeded, report.dead_lettered), (1, 1));
    let id = outcome.journal_id.unwrap();
    let record = record_of(&pipeline, &journal, Some(id)).await;
    let mut jobs = record.best_effort.clone();
    jobs.sort_by(|a, b| a.handler.cmp(&b.handler));
    assert_eq!(
        jobs,
        vec![
            BestEffortJob::new("email", 1, BestEffortState::Succeeded),
            BestEffortJob::new("slack", 1, BestEffortState::DeadLettered),
        ]
    );

    failing.store(false, Ordering::SeqCst);
    let retry = pipeline
        .retry_dead_lettered(id)
        .await
        .unwrap()
        .expect("slack is retried");
    let report = retry.await;
    assert_eq!((report.succeeded, report.dead_lettered), (1, 0));
    assert_eq!(sent.load(Ordering::SeqCst), 2);
    let record = record_of(&pipeline, &journal, Some(id)).await;
    let slack = record
        .best_effort
        .iter()
        .find(|j| j.handler == "slack")
        .unwrap();
    assert_eq!(
        (slack.attempts, slack.state),
        (1, BestEffortState::Succeeded)
    );
    assert!(
        pipeline.retry_dead_lettered(id).await.unwrap().is_none(),
        "nothing left to retry"
    );
}

#[tokio::test]
async fn a_failed_github_delivery_is_found_replayed_and_ends_processed() {
    let journal = MemoryJournal::new();
    let down = Arc::new(AtomicBool::new(true));
    let runs = Arc::new(AtomicU64::new(0));
    let mut registry = Registry::new();
    registry.critical("github", "issues", "db", flaky(&down, &runs));
    let pipeline = builder(&journal, registry).build().unwrap();
    let (body, headers) = gh_delivery("d-9", &issue_body(9));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 500);

    let failed = journal
        .list(&JournalQuery::new(JournalFilter {
            statuses: vec![DeliveryStatus::CriticalFailed],
            provider: Some("github".into()),
            unresolved: true,
            ..JournalFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(failed.records.len(), 1);
    let original = failed.records[0].id;

    down.store(false, Ordering::SeqCst);
    let replayed = pipeline
        .replay(original, ReplayOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(replayed.kind, OutcomeKind::Processed { .. }),
        "{replayed:?}"
    );
    let record = record_of(&pipeline, &journal, replayed.journal_id).await;
    assert_eq!(
        (record.status, record.replay_of, record.attempt),
        (DeliveryStatus::Processed, Some(original), Some(2))
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // Idempotency holds: the provider's redelivery and a plain replay are duplicates.
    let (body, headers) = gh_delivery("d-9", &issue_body(9));
    assert!(matches!(
        pipeline.handle(body, &headers).await.kind,
        OutcomeKind::Duplicate
    ));
    let again = pipeline
        .replay(original, ReplayOptions::default())
        .await
        .unwrap();
    assert!(matches!(again.kind, OutcomeKind::Duplicate));
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // Forced: the handlers run once more, each time it is asked.
    let forced = pipeline
        .replay(original, ReplayOptions::forced())
        .await
        .unwrap();
    assert!(
        matches!(forced.kind, OutcomeKind::Processed { .. }),
        "{forced:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let forced_record = record_of(&pipeline, &journal, forced.journal_id).await;
    assert_eq!(forced_record.replay_of, Some(original));
    // A forced replay that fails releases its own key: the retry runs.
    down.store(true, Ordering::SeqCst);
    assert_eq!(
        pipeline
            .replay(original, ReplayOptions::forced())
            .await
            .unwrap()
            .status(),
        500
    );

    // Resolved, then counted and purged.
    assert!(journal
        .mark_resolved(original, SystemTime::now())
        .await
        .unwrap());
    let unresolved = journal
        .counts(&JournalFilter {
            statuses: vec![DeliveryStatus::CriticalFailed],
            unresolved: true,
            ..JournalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        unresolved.get(&DeliveryStatus::CriticalFailed),
        Some(&1),
        "the last forced replay"
    );
    assert!(
        journal
            .purge_before(SystemTime::now() + Duration::from_secs(1))
            .await
            .unwrap()
            >= 6
    );
}

#[tokio::test]
async fn what_cannot_be_replayed_is_refused_with_a_reason() {
    let journal = MemoryJournal::new();
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "*",
        "noop",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = builder(&journal, registry).build().unwrap();
    let missing = pipeline
        .replay(JournalId(5), ReplayOptions::default())
        .await;
    assert!(
        matches!(missing, Err(ReplayError::NotFound(JournalId(5)))),
        "{missing:?}"
    );

    let outcome = pipeline.handle(&b"{}"[..], &Headers::new()).await;
    pipeline.flush_journal(WAIT).await;
    let refused = pipeline
        .replay(outcome.journal_id.unwrap(), ReplayOptions::default())
        .await;
    assert!(
        matches!(refused, Err(ReplayError::NotReplayable { .. })),
        "{refused:?}"
    );

    let digest_only = MemoryJournal::new();
    let pipeline = builder(&digest_only, Registry::new())
        .journal_settings(JournalSettings {
            body_retention: BodyRetention::DigestOnly,
            ..JournalSettings::default()
        })
        .build()
        .unwrap();
    let (body, headers) = shopify_delivery("orders/create", "wh-1", None, "{}");
    let outcome = pipeline.handle(body, &headers).await;
    pipeline.flush_journal(WAIT).await;
    let refused = pipeline
        .replay(outcome.journal_id.unwrap(), ReplayOptions::forced())
        .await;
    assert!(
        matches!(refused, Err(ReplayError::NotReplayable { .. })),
        "{refused:?}"
    );

    // A record from a provider this pipeline does not know.
    let mut foreign = JournalRecord::new(
        JournalId::generate(),
        SystemTime::now(),
        DeliveryStatus::CriticalFailed,
    );
    foreign.provider = Some("paypal".into());
    foreign.body = Some(Bytes::from_static(b"{}"));
    digest_only
        .write(vec![JournalWrite::Record(foreign.clone())])
        .await
        .unwrap();
    let unknown = pipeline.replay(foreign.id, ReplayOptions::default()).await;
    assert!(
        matches!(unknown, Err(ReplayError::UnknownProvider { .. })),
        "{unknown:?}"
    );

    let plain = Pipeline::builder()
        .verifier(github())
        .store(store())
        .build()
        .unwrap();
    assert!(matches!(
        plain.replay(JournalId(1), ReplayOptions::default()).await,
        Err(ReplayError::NoJournal)
    ));
    assert!(plain.journal().is_none());
    assert!(plain.flush_journal(WAIT).await);
}

#[tokio::test]
async fn zero_queue_settings_are_refused_at_build() {
    for settings in [
        JournalSettings {
            queue_capacity: 0,
            ..JournalSettings::default()
        },
        JournalSettings {
            batch_size: 0,
            ..JournalSettings::default()
        },
    ] {
        let built = Pipeline::builder()
            .verifier(github())
            .store(store())
            .journal(MemoryJournal::new())
            .journal_settings(settings)
            .build();
        assert!(built.is_err());
    }
}

#[tokio::test]
async fn work_retried_after_shutdown_is_refused_into_the_dead_letter() {
    let journal = MemoryJournal::new();
    let mut registry = Registry::new();
    registry.critical(
        "stripe",
        "*",
        "noop",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    registry.best_effort(
        "stripe",
        "*",
        "slack",
        handler_fn(|_e| async { Err::<(), _>(HandlerError::permanent("channel archived")) }),
    );
    let pipeline = builder(&journal, registry).build().unwrap();
    let dead_letter = pipeline.memory_dead_letter().unwrap().clone();
    let (body, headers) = stripe_delivery("evt_after", "invoice.paid");
    let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
    assert_eq!(work.unwrap().await.dead_lettered, 1);
    let id = outcome.journal_id.unwrap();
    assert!(pipeline.shutdown(Duration::from_secs(1)).await.drained);
    assert_eq!(dead_letter.len(), 1);

    let retry = pipeline
        .retry_dead_lettered(id)
        .await
        .unwrap()
        .expect("slack again");
    common::pipeline::eventually("the refused retry in the dead letter", || {
        dead_letter.len() == 2
    })
    .await;
    let entry = &dead_letter.entries()[1];
    assert_eq!(
        (entry.event_id(), entry.reason),
        ("evt_after", hookgate::DeadLetterReason::ShutDown)
    );
    assert_eq!(retry.await.refused, 1, "refused at registration");
}
