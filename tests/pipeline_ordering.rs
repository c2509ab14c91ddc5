//! The ordering guard through the pipeline: stale events answer 200 `Stale`
//! without running handlers, are completed, counted, reported and journaled;
//! failures of the watermark store answer 503 and release the key.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::pipeline::*;
use hookgate::journal::{DeliveryStatus, Journal, MemoryJournal};
use hookgate::store::{Watermark, WatermarkStore};
use hookgate::{
    testing, BuildError, Claim, FencingToken, Fingerprint, Headers, IdempotencyStore, MemoryStore,
    OrderingGuard, OrderingKey, OutcomeKind, Pipeline, Registry, RejectionReason, ReplayOptions,
    StoreError, Stripe,
};
use time::OffsetDateTime;

/// A signed Stripe event `id` about `object`, created at `created` (Unix s).
fn stripe_event(id: &str, object: &str, created: i64) -> (Bytes, Headers) {
    let body = format!(
        r#"{{"id":"{id}","object":"event","type":"customer.subscription.updated","created":{created},"data":{{"object":{{"id":"{object}","status":"active"}}}}}}"#
    );
    let headers = Headers::from_pairs(testing::stripe_headers(
        STRIPE_SECRET,
        body.as_bytes(),
        OffsetDateTime::now_utc(),
    ));
    (Bytes::from(body), headers)
}

fn stripe() -> Stripe {
    Stripe::builder(STRIPE_SECRET).build().unwrap()
}

fn guarded(store: impl IdempotencyStore + 'static, tally: &Tally, log: &RejectedLog) -> Pipeline {
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "apply", tally.handler());
    Pipeline::builder()
        .verifier(stripe())
        .store(store)
        .registry(registry)
        .ordering("stripe", OrderingGuard::stripe())
        .on_rejected(log.hook())
        .build()
        .unwrap()
}

async fn deliver(pipeline: &Pipeline, id: &str, object: &str, created: i64) -> OutcomeKind {
    let (body, headers) = stripe_event(id, object, created);
    pipeline.handle(body, &headers).await.kind
}

#[tokio::test]
async fn an_event_older_than_a_processed_one_is_stale_and_runs_nothing() {
    let (tally, log) = (Tally::default(), RejectedLog::default());
    let pipeline = guarded(store(), &tally, &log);
    assert!(matches!(
        deliver(&pipeline, "evt_new", "sub_1", 2_000).await,
        OutcomeKind::Processed { .. }
    ));
    let (body, headers) = stripe_event("evt_old", "sub_1", 1_000);
    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status(), 200);
    assert_eq!(outcome.body(), "stale: a newer event was already processed");
    let OutcomeKind::Stale { at, newest } = outcome.kind else {
        panic!("expected Stale, got {:?}", outcome.kind);
    };
    assert_eq!(at, Watermark::from_unix_millis(1_000_000));
    assert_eq!(newest, Watermark::from_unix_millis(2_000_000));
    assert_eq!(outcome.critical_handlers, 0);
    assert_eq!(tally.count("evt_old"), 0);
    assert_eq!(tally.count("evt_new"), 1);
    // The stale event's key is completed: its retry is a plain duplicate.
    let retry = pipeline.handle(body, &headers).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Duplicate),
        "{:?}",
        retry.kind
    );
    let stats = pipeline.stats();
    assert_eq!((stats.stale, stats.processed, stats.duplicate), (1, 1, 1));
    assert_eq!(stats.deliveries(), 3);
    let rejected = log.entries();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].status, 200);
    assert_eq!(rejected[0].event_id.as_deref(), Some("evt_old"));
    assert_eq!(
        rejected[0].reason,
        RejectionReason::Stale {
            object: "stripe:sub_1".to_owned(),
            at: Watermark::from_unix_millis(1_000_000),
            newest: Watermark::from_unix_millis(2_000_000),
        }
    );
}

#[tokio::test]
async fn equal_times_newer_times_and_other_objects_all_run() {
    let (tally, log) = (Tally::default(), RejectedLog::default());
    let pipeline = guarded(store(), &tally, &log);
    for (id, object, created) in [
        ("evt_1", "sub_1", 1_000),
        // The same second: Stripe emits several events per action.
        ("evt_2", "sub_1", 1_000),
        ("evt_3", "sub_1", 1_001),
        // Another object with an older time is not compared with sub_1.
        ("evt_4", "sub_2", 10),
        // No object id: not guarded.
        ("evt_5", "", 0),
    ] {
        let kind = deliver(&pipeline, id, object, created).await;
        assert!(
            matches!(kind, OutcomeKind::Processed { .. }),
            "{id}: {kind:?}"
        );
    }
    assert_eq!(tally.total(), 5);
    assert_eq!(pipeline.stats().stale, 0);
    assert!(log.entries().is_empty());
}

#[tokio::test]
async fn a_failed_newer_event_does_not_make_older_ones_stale() {
    let fail = Arc::new(AtomicBool::new(true));
    let tally = Tally::default();
    let (calls, handler) = numbered({
        let (fail, tally) = (fail.clone(), tally.clone());
        move |_, event| {
            let fail = fail.load(Ordering::SeqCst) && event.id() == "evt_new";
            let tally = tally.clone();
            async move {
                if fail {
                    return Err(hookgate::HandlerError::transient(std::io::Error::other(
                        "down",
                    )));
                }
                tally.record(&event);
                Ok(())
            }
        }
    });
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "apply", handler);
    let pipeline = Pipeline::builder()
        .verifier(stripe())
        .store(store())
        .registry(registry)
        .ordering("stripe", OrderingGuard::stripe())
        .build()
        .unwrap();
    let failed = deliver(&pipeline, "evt_new", "sub_1", 2_000).await;
    assert!(
        matches!(failed, OutcomeKind::CriticalFailed { .. }),
        "{failed:?}"
    );
    // The watermark was not raised: the older event still runs.
    let older = deliver(&pipeline, "evt_old", "sub_1", 1_000).await;
    assert!(matches!(older, OutcomeKind::Processed { .. }), "{older:?}");
    // The newer one's retry runs too, and then the older one is stale.
    fail.store(false, Ordering::SeqCst);
    let retry = deliver(&pipeline, "evt_new", "sub_1", 2_000).await;
    assert!(matches!(retry, OutcomeKind::Processed { .. }), "{retry:?}");
    let oldest = deliver(&pipeline, "evt_oldest", "sub_1", 500).await;
    assert!(matches!(oldest, OutcomeKind::Stale { .. }), "{oldest:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!((tally.count("evt_old"), tally.count("evt_new")), (1, 1));
}

#[tokio::test]
async fn stale_events_are_journaled_and_a_forced_replay_runs_them() {
    let tally = Tally::default();
    let journal = Arc::new(MemoryJournal::new());
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "apply", tally.handler());
    let pipeline = Pipeline::builder()
        .verifier(stripe())
        .store(store())
        .registry(registry)
        .ordering("stripe", OrderingGuard::stripe())
        .journal(journal.clone())
        .build()
        .unwrap();
    deliver(&pipeline, "evt_new", "sub_1", 2_000).await;
    let (body, headers) = stripe_event("evt_old", "sub_1", 1_000);
    let outcome = pipeline.handle(body, &headers).await;
    let id = outcome.journal_id.expect("journaled");
    pipeline.flush_journal(Duration::from_secs(5)).await;
    let record = journal.get(id).await.unwrap().expect("the stale record");
    assert_eq!(record.status, DeliveryStatus::Stale);
    assert_eq!(record.http_status, 200);
    let error = record.error.expect("says why");
    assert!(error.contains("stale"), "{error}");
    assert!(
        record.body.is_some(),
        "a stale event is verified: its body is kept"
    );
    // An ordinary replay is stale again; a forced one runs the handlers.
    let replayed = pipeline.replay(id, ReplayOptions::default()).await.unwrap();
    assert!(
        matches!(replayed.kind, OutcomeKind::Duplicate),
        "{:?}",
        replayed.kind
    );
    let forced = pipeline.replay(id, ReplayOptions::forced()).await.unwrap();
    assert!(
        matches!(forced.kind, OutcomeKind::Processed { .. }),
        "{:?}",
        forced.kind
    );
    assert_eq!(tally.count("evt_old"), 1);
}

#[tokio::test]
async fn a_custom_rule_and_a_panicking_rule() {
    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "apply", tally.handler());
    // One object for every event, ordered by `created`; a panic for evt_boom.
    let guard = OrderingGuard::new(|event| {
        assert_ne!(event.id(), "evt_boom", "the rule panics");
        Some(OrderingKey::new("everything", event.occurred_at()?))
    });
    let pipeline = Pipeline::builder()
        .verifier(stripe())
        .store(store())
        .registry(registry)
        .ordering("stripe", guard)
        .build()
        .unwrap();
    assert!(matches!(
        deliver(&pipeline, "evt_a", "x", 50).await,
        OutcomeKind::Processed { .. }
    ));
    assert!(matches!(
        deliver(&pipeline, "evt_b", "y", 40).await,
        OutcomeKind::Stale { .. }
    ));
    // A rule that panics leaves the event unguarded: it runs.
    assert!(matches!(
        deliver(&pipeline, "evt_boom", "z", 1).await,
        OutcomeKind::Processed { .. }
    ));
    assert_eq!(tally.total(), 2);
}

#[test]
fn the_builder_refuses_unknown_providers_and_stores_without_watermarks() {
    let unknown = Pipeline::builder()
        .verifier(stripe())
        .store(store())
        .ordering("shopify", OrderingGuard::shopify())
        .build();
    assert!(
        matches!(&unknown, Err(BuildError::UnknownProvider { provider, what })
            if provider == "shopify" && what == "an ordering guard"),
        "{unknown:?}"
    );
    let any = Pipeline::builder()
        .verifier(stripe())
        .store(store())
        .ordering("*", OrderingGuard::stripe())
        .build();
    assert!(
        matches!(any, Err(BuildError::UnknownProvider { .. })),
        "{any:?}"
    );
    let unsupported = Pipeline::builder()
        .verifier(stripe())
        .store(NoWatermarks(store()))
        .ordering("stripe", OrderingGuard::stripe())
        .build();
    assert!(
        matches!(unsupported, Err(BuildError::OrderingUnsupported)),
        "{unsupported:?}"
    );
    // Without a guard, such a store is fine.
    Pipeline::builder()
        .verifier(stripe())
        .store(NoWatermarks(store()))
        .build()
        .unwrap();
}

#[tokio::test]
async fn a_failing_watermark_store_answers_503_and_releases_the_key() {
    for failing in [Failing::Read, Failing::Advance] {
        let (tally, log) = (Tally::default(), RejectedLog::default());
        let store = FlakyWatermarks::new(failing);
        let pipeline = guarded(store.clone(), &tally, &log);
        let kind = deliver(&pipeline, "evt_1", "sub_1", 1_000).await;
        assert!(
            matches!(kind, OutcomeKind::StoreUnavailable(_)),
            "{failing:?}: {kind:?}"
        );
        let ran = u64::from(failing == Failing::Advance);
        assert_eq!(tally.count("evt_1"), ran, "{failing:?}");
        // Released, not left leased: the retry runs at once, and the
        // watermark now works.
        store.down.store(false, Ordering::SeqCst);
        let retry = deliver(&pipeline, "evt_1", "sub_1", 1_000).await;
        assert!(
            matches!(retry, OutcomeKind::Processed { .. }),
            "{failing:?}: {retry:?}"
        );
        assert_eq!(tally.count("evt_1"), ran + 1);
        let older = deliver(&pipeline, "evt_0", "sub_1", 999).await;
        assert!(
            matches!(older, OutcomeKind::Stale { .. }),
            "{failing:?}: {older:?}"
        );
    }
}

#[tokio::test]
async fn a_slow_watermark_store_is_bounded_by_the_answer_budget() {
    let (tally, log) = (Tally::default(), RejectedLog::default());
    let store = FlakyWatermarks::new(Failing::Hang);
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "apply", tally.handler());
    let pipeline = Pipeline::builder()
        .verifier(stripe())
        .store(store.clone())
        .registry(registry)
        .ordering("stripe", OrderingGuard::stripe())
        .on_rejected(log.hook())
        .answer_budget("stripe", Duration::from_millis(300))
        .settle_reserve("stripe", Duration::from_millis(100))
        .critical_deadline("stripe", Duration::from_millis(150))
        .build()
        .unwrap();
    let began = std::time::Instant::now();
    let kind = deliver(&pipeline, "evt_1", "sub_1", 1_000).await;
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    let OutcomeKind::StoreUnavailable(err) = kind else {
        panic!("expected 503, got {kind:?}");
    };
    assert!(err.to_string().contains("ordering watermark"), "{err}");
    assert_eq!(tally.total(), 0);
}

/// A memory store that keeps no watermarks.
#[derive(Debug)]
struct NoWatermarks(MemoryStore);

#[async_trait]
impl IdempotencyStore for NoWatermarks {
    async fn claim(
        &self,
        key: &str,
        fp: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.0.claim(key, fp, lease).await
    }
    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        keep: Duration,
    ) -> Result<(), StoreError> {
        self.0.complete(key, token, keep).await
    }
    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.0.release(key, token, reason).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failing {
    Read,
    Advance,
    Hang,
}

/// A memory store whose watermarks fail (or hang) while `down` is set.
#[derive(Debug, Clone)]
struct FlakyWatermarks {
    keys: MemoryStore,
    failing: Failing,
    down: Arc<AtomicBool>,
}

impl FlakyWatermarks {
    fn new(failing: Failing) -> Self {
        Self {
            keys: store(),
            failing,
            down: Arc::new(AtomicBool::new(true)),
        }
    }

    async fn fault(&self, during: Failing) -> Result<(), StoreError> {
        if !self.down.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.failing {
            Failing::Hang => std::future::pending().await,
            failing if failing == during => {
                Err(StoreError::unavailable(Injected("watermarks down")))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl IdempotencyStore for FlakyWatermarks {
    async fn claim(
        &self,
        key: &str,
        fp: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.keys.claim(key, fp, lease).await
    }
    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        keep: Duration,
    ) -> Result<(), StoreError> {
        self.keys.complete(key, token, keep).await
    }
    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.keys.release(key, token, reason).await
    }
    fn watermarks(&self) -> Option<&dyn WatermarkStore> {
        Some(self)
    }
}

#[async_trait]
impl WatermarkStore for FlakyWatermarks {
    async fn watermark(&self, object: &str) -> Result<Option<Watermark>, StoreError> {
        self.fault(Failing::Read).await?;
        self.keys.watermark(object).await
    }
    async fn advance(
        &self,
        object: &str,
        at: Watermark,
        keep: Duration,
    ) -> Result<Watermark, StoreError> {
        self.fault(Failing::Advance).await?;
        self.keys.advance(object, at, keep).await
    }
}
