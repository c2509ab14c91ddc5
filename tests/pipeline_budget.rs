//! The answer budget: claim, critical handlers and completion end within the
//! provider's answer time, whichever of them is slow, and a store call that
//! overruns it never turns into a lost event or a 2xx for unrecorded work.
//!
//! Every test runs on a paused tokio clock that jumps ahead whenever the
//! runtime is idle, so slow stores and handlers take no real time and every
//! duration read from tokio's clock is exact.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::pipeline::*;
use hookgate::dead_letter::{DeadLetterEntry, DeadLetterError};
use hookgate::outcome::AnswerBudgetSpent;
use hookgate::{
    testing, CriticalFailure, DeadLetter, FixedClock, HandlerError, Headers, MemoryStore, Outcome,
    OutcomeKind, Pipeline, Registry, Shopify, StoreError,
};
use tokio::time::{sleep, Instant};

const SECOND: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
/// GitHub's defaults: it answers within 10 s, so the budget is 8 s, of which
/// 1 s is the settle reserve.
const GH_BUDGET: Duration = Duration::from_secs(8);
const GH_RESERVE: Duration = Duration::from_secs(1);

/// Which budget overran, if the outcome says one did.
fn budget_spent(outcome: &Outcome) -> Option<AnswerBudgetSpent> {
    match &outcome.kind {
        OutcomeKind::StoreUnavailable(err) => match &**err {
            StoreError::Unavailable(source) => source.downcast_ref::<AnswerBudgetSpent>().copied(),
            _ => None,
        },
        _ => None,
    }
}

/// Delivers and measures, on tokio's clock, how long the answer took.
async fn timed(pipeline: &Pipeline, delivery: &(Bytes, Headers)) -> (Outcome, Duration) {
    let started = Instant::now();
    let outcome = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    (outcome, started.elapsed())
}

/// A GitHub pipeline on `store` with `tally`'s handler as its critical one.
fn gh_pipeline(store: SlowStore, tally: &Tally) -> Pipeline {
    gh_pipeline_with(store, registry_with_critical(tally.handler()))
}

fn gh_pipeline_with(store: SlowStore, registry: Registry) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store)
        .registry(registry)
        .build()
        .unwrap()
}

/// A store whose leases run on a clock the test moves (tokio's paused clock
/// does not move the store's).
fn store_on(clock: &FixedClock) -> SlowStore {
    SlowStore::on(MemoryStore::builder().clock(clock.clone()).build())
}

#[tokio::test(start_paused = true)]
async fn claim_that_does_not_answer_in_time_gets_503_and_runs_nothing() {
    let store = SlowStore::default();
    store.delays.claim(Lag::Before, 60 * SECOND);
    let tally = Tally::default();
    let pipeline = gh_pipeline(store.clone(), &tally);
    let delivery = gh_delivery("d-claim", &issue_body(1));

    let (outcome, took) = timed(&pipeline, &delivery).await;
    assert_eq!(outcome.status(), 503, "{outcome:?}");
    assert_eq!(
        budget_spent(&outcome),
        Some(AnswerBudgetSpent::Claim(GH_BUDGET))
    );
    assert_eq!(
        took,
        GH_BUDGET - GH_RESERVE,
        "the claim gets the budget up to the reserve"
    );
    assert_eq!(tally.total(), 0, "no handler ran");
    assert_eq!(store.completes.load(Ordering::SeqCst), 0);
    assert_eq!(
        (outcome.critical_handlers, outcome.critical_elapsed),
        (0, None)
    );

    // The abandoned claim never reached the store: the retry takes the key.
    store.delays.clear();
    let retry = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Processed { .. }),
        "{retry:?}"
    );
    assert_eq!(tally.count("d-claim"), 1);
}

#[tokio::test(start_paused = true)]
async fn claim_that_lands_after_the_budget_holds_the_key_until_its_lease_ends() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let store = store_on(&clock);
    store.delays.claim(Lag::After, 60 * SECOND);
    let tally = Tally::default();
    let pipeline = gh_pipeline(store.clone(), &tally);
    let delivery = gh_delivery("d-late-claim", &issue_body(2));

    let (outcome, took) = timed(&pipeline, &delivery).await;
    assert_eq!(outcome.status(), 503, "{outcome:?}");
    assert_eq!(
        budget_spent(&outcome),
        Some(AnswerBudgetSpent::Claim(GH_BUDGET))
    );
    assert!(took <= GH_BUDGET);
    assert_eq!(tally.total(), 0);

    // The store took the key after all, for a token nobody holds: retries
    // wait for its lease, then run the work once.
    store.delays.clear();
    let retry = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(
        matches!(retry.kind, OutcomeKind::InFlight { .. }),
        "{retry:?}"
    );
    assert_eq!(tally.total(), 0);
    clock.advance(pipeline.limits("github").unwrap().lease + SECOND);
    let retry = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Processed { .. }),
        "{retry:?}"
    );
    let again = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate), "{again:?}");
    assert_eq!(tally.count("d-late-claim"), 1);
}

#[tokio::test(start_paused = true)]
async fn complete_answered_late_is_not_2xx_and_the_retry_is_a_duplicate() {
    let store = SlowStore::default();
    store.delays.complete(Lag::After, 60 * SECOND);
    let tally = Tally::default();
    let pipeline = gh_pipeline(store.clone(), &tally);
    let delivery = gh_delivery("d-late-complete", &issue_body(3));

    let (outcome, took) = timed(&pipeline, &delivery).await;
    assert_eq!(outcome.status(), 503, "{outcome:?}");
    assert_eq!(
        budget_spent(&outcome),
        Some(AnswerBudgetSpent::Complete(GH_BUDGET))
    );
    assert_eq!(
        took, GH_BUDGET,
        "completing gets what is left of the budget"
    );
    assert_eq!(outcome.critical_handlers, 1, "the handler ran");
    assert_eq!(tally.total(), 1);

    // The completion landed: the retry is a duplicate, the work ran once.
    store.delays.clear();
    let retry = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(matches!(retry.kind, OutcomeKind::Duplicate), "{retry:?}");
    assert_eq!(tally.count("d-late-complete"), 1, "no double effect");
}

#[tokio::test(start_paused = true)]
async fn complete_that_never_lands_leaves_the_key_to_its_lease_and_the_work_runs_again() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let store = store_on(&clock);
    store.delays.complete(Lag::Before, 60 * SECOND);
    let tally = Tally::default();
    let pipeline = gh_pipeline(store.clone(), &tally);
    let delivery = gh_delivery("d-lost-complete", &issue_body(4));

    let (outcome, took) = timed(&pipeline, &delivery).await;
    assert_eq!(outcome.status(), 503, "{outcome:?}");
    assert_eq!(
        budget_spent(&outcome),
        Some(AnswerBudgetSpent::Complete(GH_BUDGET))
    );
    assert!(took <= GH_BUDGET);
    assert_eq!(tally.total(), 1);
    assert_eq!(
        store.completes.load(Ordering::SeqCst),
        0,
        "never reached the store"
    );
    assert_eq!(
        store.releases.load(Ordering::SeqCst),
        0,
        "not released: a completion still on its way may land"
    );

    store.delays.clear();
    let retry = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(
        matches!(retry.kind, OutcomeKind::InFlight { .. }),
        "{retry:?}"
    );
    clock.advance(pipeline.limits("github").unwrap().lease + SECOND);
    let retry = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Processed { .. }),
        "{retry:?}"
    );
    assert_eq!(
        tally.count("d-lost-complete"),
        2,
        "not recorded, so run again: never lost"
    );
    let again = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate), "{again:?}");
}

#[tokio::test(start_paused = true)]
async fn handlers_cannot_use_the_settle_reserve() {
    let store = SlowStore::default();
    store.delays.complete(Lag::Before, 900 * MS);
    let finished = Tally::default();
    let recorder = finished.clone();
    // The first attempt's handler would end 500 ms into the reserve; the
    // retry's ends 500 ms before it.
    let (calls, handler) = numbered(move |call, event| {
        let finished = recorder.clone();
        async move {
            sleep(if call == 0 { 7_500 * MS } else { 6_500 * MS }).await;
            finished.record(&event);
            Ok(())
        }
    });
    let pipeline = gh_pipeline_with(store.clone(), registry_with_critical(handler));
    let delivery = gh_delivery("d-reserve", &issue_body(5));

    let (outcome, took) = timed(&pipeline, &delivery).await;
    let handler_time = GH_BUDGET - GH_RESERVE;
    assert!(
        matches!(
            outcome.kind,
            OutcomeKind::CriticalFailed { failure: CriticalFailure::Timeout(t), .. } if t == handler_time
        ),
        "{outcome:?}"
    );
    assert_eq!(outcome.critical_elapsed, Some(handler_time));
    assert_eq!(
        took, handler_time,
        "released at once, answered within the budget"
    );
    assert_eq!(finished.total(), 0, "cancelled before it finished");
    assert_eq!(store.completes.load(Ordering::SeqCst), 0);

    let (retry, took) = timed(&pipeline, &delivery).await;
    assert!(
        matches!(retry.kind, OutcomeKind::Processed { .. }),
        "{retry:?}"
    );
    assert_eq!(
        took,
        6_500 * MS + 900 * MS,
        "the reserve covered the slow completion"
    );
    assert_eq!(retry.critical_elapsed, Some(6_500 * MS));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(finished.count("d-reserve"), 1);
}

/// One Shopify case: how slow each step is (a claim that lands and answers
/// late, a handler, a completion that waits before reaching the store) and
/// what the delivery must get.
struct Slow {
    claim: Duration,
    handler: Duration,
    complete: Duration,
    expect: fn(&Outcome) -> bool,
    /// Whether the handler finished its work.
    handled: u64,
}

#[tokio::test(start_paused = true)]
async fn shopify_is_answered_within_five_seconds_however_slow_each_step_is() {
    const SHOPIFY_SECRET: &str = "shpss_test";
    let cases = [
        Slow {
            claim: SECOND,
            handler: SECOND,
            complete: SECOND,
            expect: |o| matches!(o.kind, OutcomeKind::Processed { .. }),
            handled: 1,
        },
        Slow {
            claim: 2 * SECOND,
            handler: 3 * SECOND,
            complete: 2 * SECOND,
            expect: |o| matches!(o.kind, OutcomeKind::CriticalFailed { failure: CriticalFailure::Timeout(t), .. } if t == 1_500 * MS),
            handled: 0,
        },
        Slow {
            claim: Duration::ZERO,
            handler: 3 * SECOND,
            complete: 2 * SECOND,
            expect: |o| budget_spent(o) == Some(AnswerBudgetSpent::Complete(4 * SECOND)),
            handled: 1,
        },
        Slow {
            claim: 10 * SECOND,
            handler: Duration::ZERO,
            complete: Duration::ZERO,
            expect: |o| budget_spent(o) == Some(AnswerBudgetSpent::Claim(4 * SECOND)),
            handled: 0,
        },
    ];
    for (n, case) in cases.iter().enumerate() {
        let store = SlowStore::default();
        store.delays.claim(Lag::After, case.claim);
        store.delays.complete(Lag::Before, case.complete);
        let finished = Tally::default();
        let recorder = finished.clone();
        let pause = case.handler;
        let (_, handler) = numbered(move |_, event| {
            let finished = recorder.clone();
            async move {
                sleep(pause).await;
                finished.record(&event);
                Ok(())
            }
        });
        let mut registry = Registry::new();
        registry.critical("shopify", "orders/paid", "record", handler);
        let pipeline = Pipeline::builder()
            .verifier(Shopify::builder(SHOPIFY_SECRET).build().unwrap())
            .store(store.clone())
            .registry(registry)
            .build()
            .unwrap();
        let body = format!(r#"{{"id":{n}}}"#);
        let headers = Headers::from_pairs(testing::shopify_headers(
            SHOPIFY_SECRET,
            body.as_bytes(),
            "orders/paid",
            &format!("w-{n}"),
        ));

        let (outcome, took) = timed(&pipeline, &(Bytes::from(body), headers)).await;
        assert!((case.expect)(&outcome), "case {n}: {outcome:?}");
        assert!(
            took <= 4 * SECOND,
            "case {n}: answered after {took:?}, past the 4 s budget"
        );
        assert!(took < 5 * SECOND, "Shopify would count case {n} as failed");
        assert_eq!(finished.total(), case.handled, "case {n}");
    }
}

/// A dead letter that takes a minute to store an entry.
#[derive(Debug, Default)]
struct SlowDeadLetter {
    stored: AtomicU64,
}

#[async_trait]
impl DeadLetter for SlowDeadLetter {
    async fn send(&self, _: DeadLetterEntry) -> Result<(), DeadLetterError> {
        sleep(60 * SECOND).await;
        self.stored.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn dead_letter_that_does_not_answer_in_time_counts_as_refusing() {
    let store = SlowStore::default();
    let dead_letter = Arc::new(SlowDeadLetter::default());
    let (calls, handler) = numbered(|_, _| async { Err(HandlerError::permanent("bad event")) });
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store.clone())
        .registry(registry_with_critical(handler))
        .dead_letter(Arc::clone(&dead_letter))
        .build()
        .unwrap();
    let delivery = gh_delivery("d-dead-letter", &issue_body(6));

    let (outcome, took) = timed(&pipeline, &delivery).await;
    assert!(
        matches!(
            outcome.kind,
            OutcomeKind::PermanentFailure {
                dead_lettered: false,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(outcome.status(), 500);
    assert_eq!(took, GH_BUDGET - GH_RESERVE);
    assert_eq!(pipeline.stats().dead_letter_failures, 1);
    assert_eq!(
        store.releases.load(Ordering::SeqCst),
        1,
        "released for the retry"
    );
    assert_eq!(store.completes.load(Ordering::SeqCst), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn outcome_tells_whether_critical_handlers_ran_and_how_long_they_took() {
    let mut registry = Registry::new();
    let (_, first) = numbered(|_, _| async {
        sleep(SECOND).await;
        Ok(())
    });
    let (_, second) = numbered(|_, event| async move {
        sleep(2 * SECOND).await;
        if event.id() == "d-fails" {
            return Err(HandlerError::transient("try again"));
        }
        Ok(())
    });
    registry.critical("github", "issues", "first", first);
    registry.critical("github", "issues", "second", second);
    let pipeline = gh_pipeline_with(SlowStore::default(), registry);

    let delivery = gh_delivery("d-ok", &issue_body(7));
    let (outcome, took) = timed(&pipeline, &delivery).await;
    assert!(
        matches!(outcome.kind, OutcomeKind::Processed { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.critical_handlers, 2);
    assert_eq!(outcome.critical_elapsed, Some(3 * SECOND));
    assert_eq!(took, 3 * SECOND);

    let duplicate = pipeline.handle(delivery.0.clone(), &delivery.1).await;
    assert!(matches!(duplicate.kind, OutcomeKind::Duplicate));
    assert_eq!(
        (duplicate.critical_handlers, duplicate.critical_elapsed),
        (0, None)
    );

    let (body, headers) = gh_delivery("d-fails", &issue_body(8));
    let failed = pipeline.handle(body, &headers).await;
    assert_eq!(failed.status(), 500);
    assert_eq!(failed.critical_handlers, 2, "the failing handler counts");
    assert_eq!(failed.critical_elapsed, Some(3 * SECOND));

    let unrouted = Headers::from_pairs(testing::github_headers(GH_SECRET, b"{}", "push", "d-push"));
    let ignored = pipeline.handle(Bytes::from_static(b"{}"), &unrouted).await;
    assert!(matches!(ignored.kind, OutcomeKind::Ignored));
    assert_eq!(
        (ignored.critical_handlers, ignored.critical_elapsed),
        (0, None)
    );
}
