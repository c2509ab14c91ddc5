//! One test per row of DESIGN.md's status table: the status a delivery gets and
//! the outcome variant that says why.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::pipeline::*;
use hookgate::{
    handler_fn, testing, Clock, CriticalFailure, DeadLetterReason, FingerprintPolicy, FixedClock,
    HandlerError, Headers, MemoryDeadLetter, OutcomeKind, PermanentFailurePolicy, Pipeline,
    Registry, RejectedDelivery, RejectionReason, Stripe, SystemClock, VerifyError,
};
use time::OffsetDateTime;
use tokio::sync::Notify;

fn pipeline(registry: Registry) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .build()
        .expect("valid settings")
}

/// A Stripe pipeline whose only critical handler records into `tally`.
fn stripe_pipeline(tally: &Tally, clock: impl Clock + 'static) -> Pipeline {
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "record", tally.handler());
    Pipeline::builder()
        .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
        .store(store())
        .registry(registry)
        .clock(clock)
        .build()
        .unwrap()
}

#[tokio::test]
async fn body_over_the_limit_gets_413_and_is_not_parsed() {
    let tally = Tally::default();
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(tally.handler()))
        .body_limit("github", 64)
        .build()
        .unwrap();
    let body = format!(r#"{{"action":"opened","pad":"{}"}}"#, "x".repeat(64));
    // A forged signature: the size check comes first, so this is 413, not 401.
    let headers = Headers::from_pairs([
        ("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64))),
        ("X-GitHub-Event", "issues".to_owned()),
        ("X-GitHub-Delivery", "d-big".to_owned()),
    ]);
    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status(), 413);
    assert!(matches!(
        outcome.kind,
        OutcomeKind::TooLarge { size, limit: 64 } if size == body.len()
    ));
    assert_eq!(outcome.event_id, None, "nothing was identified");
    assert_eq!(tally.total(), 0);
    assert_eq!(pipeline.max_body_size(&headers), 64);
}

#[tokio::test]
async fn missing_unknown_or_malformed_signature_gets_400() {
    let pipeline = pipeline(registry_with_critical(Tally::default().handler()));
    let body = issue_body(1);

    let none = pipeline.handle(body.clone(), &Headers::new()).await;
    assert_eq!(none.status(), 400);
    assert!(matches!(
        none.kind,
        OutcomeKind::VerificationFailed(VerifyError::UnknownProvider)
    ));

    let unknown = pipeline
        .handle_for("stripe", body.clone(), &gh_delivery("d-1", &body).1)
        .await;
    assert_eq!(unknown.status(), 400);
    assert!(matches!(
        unknown.kind,
        OutcomeKind::VerificationFailed(VerifyError::UnknownProvider)
    ));

    let malformed = Headers::from_pairs([
        ("X-Hub-Signature-256", "sha256=not-hex"),
        ("X-GitHub-Event", "issues"),
        ("X-GitHub-Delivery", "d-1"),
    ]);
    let outcome = pipeline.handle(body, &malformed).await;
    assert_eq!(outcome.status(), 400);
    assert!(matches!(outcome.kind, OutcomeKind::VerificationFailed(_)));
    assert_eq!(outcome.provider.as_deref(), Some("github"));
    assert_eq!(pipeline.stats().bad_request, 3);
}

#[tokio::test]
async fn bad_signature_or_stale_timestamp_gets_401_without_leaking_the_reason() {
    let clock = FixedClock::at_unix(1_700_000_000);
    let tally = Tally::default();
    let pipeline = stripe_pipeline(&tally, clock.clone());
    let body = br#"{"id":"evt_1","type":"invoice.paid","created":1700000000}"#;
    let now = clock.now();

    let forged = Headers::from_pairs(testing::stripe_headers("whsec_wrong", body, now));
    let outcome = pipeline.handle(&body[..], &forged).await;
    assert_eq!(outcome.status(), 401);
    assert!(matches!(
        outcome.kind,
        OutcomeKind::VerificationFailed(VerifyError::SignatureMismatch { .. })
    ));
    assert_eq!(outcome.body(), "invalid signature");

    let old = now - time::Duration::seconds(301);
    let replayed = Headers::from_pairs(testing::stripe_headers(STRIPE_SECRET, body, old));
    let outcome = pipeline.handle(&body[..], &replayed).await;
    assert_eq!(outcome.status(), 401);
    assert!(matches!(
        outcome.kind,
        OutcomeKind::VerificationFailed(VerifyError::TimestampOutsideTolerance { .. })
    ));
    assert_eq!(
        outcome.body(),
        "invalid signature",
        "the skew is for logs only"
    );
    assert_eq!(tally.total(), 0);
    assert_eq!(pipeline.stats().unauthorized, 2);
}

#[tokio::test]
async fn verified_but_unusable_payload_gets_400_and_is_recorded() {
    let tally = Tally::default();
    let pipeline = stripe_pipeline(&tally, SystemClock);
    let now = OffsetDateTime::now_utc();
    for body in [&b"not json"[..], br#"{"type":"invoice.paid"}"#] {
        let headers = Headers::from_pairs(testing::stripe_headers(STRIPE_SECRET, body, now));
        let outcome = pipeline.handle(body, &headers).await;
        assert_eq!(outcome.status(), 400);
        assert!(
            matches!(outcome.kind, OutcomeKind::Unusable(_)),
            "{outcome:?}"
        );
    }
    assert_eq!(
        pipeline.stats().unusable,
        2,
        "recorded, never silently dropped"
    );
    assert_eq!(tally.total(), 0);
}

#[tokio::test]
async fn duplicate_of_completed_event_gets_200_and_runs_nothing() {
    let critical = Tally::default();
    let best_effort = Tally::default();
    let mut registry = registry_with_critical(critical.handler());
    registry.best_effort("github", "issues.*", "notify", best_effort.handler());
    let pipeline = pipeline(registry);
    let (body, headers) = gh_delivery("d-dup", &issue_body(7));

    let first = pipeline.handle_deferred(body.clone(), &headers).await;
    assert!(matches!(
        first.0.kind,
        OutcomeKind::Processed { best_effort: 1 }
    ));
    first.1.expect("best-effort work").await;

    let again = pipeline.handle_deferred(body, &headers).await;
    assert_eq!(again.0.status(), 200);
    assert!(matches!(again.0.kind, OutcomeKind::Duplicate));
    assert!(again.1.is_none(), "no best-effort work for a duplicate");
    assert_eq!(critical.count("d-dup"), 1);
    assert_eq!(best_effort.count("d-dup"), 1);
}

/// A GitHub pipeline with one critical handler, handing what `on_rejected`
/// receives to the returned list.
fn reporting_pipeline(
    handler: impl hookgate::Handler + 'static,
    policy: FingerprintPolicy,
) -> (Pipeline, Arc<Mutex<Vec<RejectedDelivery>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(handler))
        .fingerprint_policy(policy)
        .on_rejected(move |rejected| sink.lock().unwrap().push(rejected))
        .build()
        .unwrap();
    (pipeline, received)
}

#[tokio::test]
async fn completed_event_with_a_different_body_gets_200_duplicate_and_is_reported() {
    let tally = Tally::default();
    let (pipeline, received) = reporting_pipeline(tally.handler(), FingerprintPolicy::default());
    let (body, headers) = gh_delivery("d-same", &issue_body(1));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 200);

    let (other, headers) = gh_delivery("d-same", &issue_body(2));
    let outcome = pipeline.handle(other.clone(), &headers).await;
    assert_eq!(outcome.status(), 200);
    assert!(matches!(outcome.kind, OutcomeKind::Duplicate));
    assert_eq!(tally.count("d-same"), 1, "handlers not run again");
    let stats = pipeline.stats();
    assert_eq!(
        (
            stats.duplicate,
            stats.duplicate_body_changed,
            stats.fingerprint_mismatch,
            stats.body_changed
        ),
        (1, 1, 0, 0)
    );
    let received = received.lock().unwrap();
    let [reported] = &received[..] else {
        panic!("{received:?}")
    };
    assert_eq!(reported.reason, RejectionReason::DuplicateBodyChanged);
    assert_eq!((reported.status, reported.body.clone()), (200, other));
    assert_eq!(reported.event_id.as_deref(), Some("d-same"));
}

#[tokio::test]
async fn strict_policy_answers_422_to_a_completed_event_with_a_different_body() {
    let tally = Tally::default();
    let (pipeline, received) = reporting_pipeline(tally.handler(), FingerprintPolicy::Strict);
    let (body, headers) = gh_delivery("d-strict", &issue_body(1));
    assert_eq!(pipeline.handle(body.clone(), &headers).await.status(), 200);

    let (other, other_headers) = gh_delivery("d-strict", &issue_body(2));
    let outcome = pipeline.handle(other, &other_headers).await;
    assert_eq!(outcome.status(), 422);
    assert!(matches!(outcome.kind, OutcomeKind::FingerprintMismatch));
    // The same body is still a plain duplicate.
    let again = pipeline.handle(body, &headers).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate));
    assert_eq!(tally.count("d-strict"), 1, "handlers not run again");
    let stats = pipeline.stats();
    assert_eq!(
        (
            stats.fingerprint_mismatch,
            stats.duplicate,
            stats.duplicate_body_changed
        ),
        (1, 1, 0)
    );
    let received = received.lock().unwrap();
    let [reported] = &received[..] else {
        panic!("{received:?}")
    };
    assert_eq!(reported.reason, RejectionReason::FingerprintMismatch);
    assert_eq!(reported.status, 422);
}

#[tokio::test]
async fn a_retry_with_a_different_body_after_a_500_runs_the_handlers() {
    for policy in [FingerprintPolicy::Lenient, FingerprintPolicy::Strict] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (calls, handler) = numbered({
            let seen = seen.clone();
            move |call, event| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(event.body().clone());
                    if call == 0 {
                        return Err(HandlerError::transient(Injected("database timeout")));
                    }
                    Ok(())
                }
            }
        });
        let (pipeline, received) = reporting_pipeline(handler, policy);
        let (body, headers) = gh_delivery("d-rerendered", &issue_body(1));
        assert_eq!(pipeline.handle(body, &headers).await.status(), 500);

        // The provider re-rendered the event for its retry.
        let (rerendered, headers) = gh_delivery("d-rerendered", &issue_body(2));
        let retried = pipeline.handle(rerendered.clone(), &headers).await;
        assert_eq!(retried.status(), 200, "{policy:?}: {retried:?}");
        assert!(matches!(retried.kind, OutcomeKind::Processed { .. }));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{policy:?}");
        assert_eq!(seen.lock().unwrap().last(), Some(&rerendered));
        let stats = pipeline.stats();
        assert_eq!((stats.body_changed, stats.processed), (1, 1), "{policy:?}");
        assert!(received.lock().unwrap().is_empty(), "nothing to report");
        // Done now: the re-rendered body is the plain duplicate.
        let again = pipeline.handle(rerendered, &headers).await;
        assert!(matches!(again.kind, OutcomeKind::Duplicate));
        assert_eq!(pipeline.stats().duplicate_body_changed, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_while_another_attempt_holds_the_lease_gets_409() {
    let entered = Arc::new(Notify::new());
    let go_on = Arc::new(Notify::new());
    let runs = Arc::new(AtomicU64::new(0));
    let handler = {
        let (entered, go_on, runs) = (entered.clone(), go_on.clone(), runs.clone());
        handler_fn(move |_| {
            let (entered, go_on, runs) = (entered.clone(), go_on.clone(), runs.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                entered.notify_one();
                go_on.notified().await;
                Ok::<(), HandlerError>(())
            }
        })
    };
    let pipeline = pipeline(registry_with_critical(handler));
    let (body, headers) = gh_delivery("d-busy", &issue_body(3));
    let first = {
        let (pipeline, body, headers) = (pipeline.clone(), body.clone(), headers.clone());
        tokio::spawn(async move { pipeline.handle(body, &headers).await })
    };
    entered.notified().await;

    let second = pipeline.handle(body, &headers).await;
    assert_eq!(second.status(), 409);
    assert!(matches!(second.kind, OutcomeKind::InFlight { .. }));
    // Whatever its body.
    let (other, headers) = gh_delivery("d-busy", &issue_body(4));
    let third = pipeline.handle(other, &headers).await;
    assert!(matches!(third.kind, OutcomeKind::InFlight { .. }));

    go_on.notify_one();
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn event_without_handler_gets_200_ignored_and_recorded() {
    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("github", "pull_request", "record", tally.handler());
    let pipeline = pipeline(registry);
    let (body, headers) = gh_delivery("d-ignored", &issue_body(4));
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 200);
    assert!(matches!(outcome.kind, OutcomeKind::Ignored));
    assert_eq!(outcome.event_kind.as_deref(), Some("issues.opened"));
    assert_eq!(pipeline.stats().ignored, 1);
    assert_eq!(tally.total(), 0);
}

#[tokio::test]
async fn critical_success_gets_200_then_best_effort_starts() {
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let step = |name: &'static str| {
        let order = order.clone();
        handler_fn(move |_| {
            let order = order.clone();
            async move {
                order.lock().unwrap().push(name);
                Ok::<(), HandlerError>(())
            }
        })
    };
    let mut registry = Registry::new();
    registry
        .best_effort("github", "*", "email", step("email"))
        .critical("github", "issues.opened", "first", step("first"))
        .critical("github", "issues.*", "second", step("second"));
    let pipeline = pipeline(registry);
    let (body, headers) = gh_delivery("d-ok", &issue_body(5));

    let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
    assert_eq!(outcome.status(), 200);
    assert!(matches!(
        outcome.kind,
        OutcomeKind::Processed { best_effort: 1 }
    ));
    assert_eq!(outcome.body(), "ok");
    assert_eq!(outcome.event_id.as_deref(), Some("d-ok"));
    assert_eq!(
        *order.lock().unwrap(),
        ["first", "second"],
        "critical in registration order, best-effort not yet"
    );

    let report = work.expect("best-effort work").await;
    assert_eq!(report.succeeded, 1);
    assert_eq!(*order.lock().unwrap(), ["first", "second", "email"]);
}

#[tokio::test]
async fn critical_transient_failure_gets_500_and_the_retry_runs_again() {
    let tally = Tally::default();
    let recorder = tally.clone();
    let (_, handler) = numbered(move |call, event| {
        let tally = recorder.clone();
        async move {
            if call == 0 {
                return Err(HandlerError::transient(Injected("database timeout")));
            }
            tally.record(&event);
            Ok(())
        }
    });
    let pipeline = pipeline(registry_with_critical(handler));
    let (body, headers) = gh_delivery("d-flaky", &issue_body(6));

    let failed = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(failed.status(), 500);
    match &failed.kind {
        OutcomeKind::CriticalFailed {
            handler,
            failure: CriticalFailure::Transient(err),
        } => {
            assert_eq!(&**handler, "record");
            assert!(err.to_string().contains("database timeout"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        !failed.body().contains("database"),
        "internal reasons stay internal"
    );

    let retried = pipeline.handle(body, &headers).await;
    assert_eq!(retried.status(), 200, "the key was released for the retry");
    assert_eq!(tally.count("d-flaky"), 1);
}

#[tokio::test]
async fn critical_permanent_failure_follows_the_policy() {
    let failing = || {
        handler_fn(|_| async { Err::<(), _>(HandlerError::permanent(Injected("no such order"))) })
    };

    // Default: dead letter + 200, and the event is recorded as done.
    let dead_letter = MemoryDeadLetter::new();
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(failing()))
        .memory_dead_letter(dead_letter.clone())
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-perm", &issue_body(8));
    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status(), 200);
    assert!(matches!(
        outcome.kind,
        OutcomeKind::PermanentFailure {
            dead_lettered: true,
            ..
        }
    ));
    let entries = dead_letter.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].reason, DeadLetterReason::CriticalPermanent);
    assert_eq!(entries[0].event_id(), "d-perm");
    assert_eq!(&*entries[0].handler, "record");
    assert!(entries[0]
        .error
        .as_ref()
        .unwrap()
        .to_string()
        .contains("no such order"));
    let again = pipeline.handle(body.clone(), &headers).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate));

    // Retry policy: 500 and the key is released.
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(failing()))
        .permanent_failure_policy(PermanentFailurePolicy::Retry)
        .build()
        .unwrap();
    for _ in 0..2 {
        let outcome = pipeline.handle(body.clone(), &headers).await;
        assert_eq!(outcome.status(), 500);
        assert!(matches!(
            outcome.kind,
            OutcomeKind::PermanentFailure {
                dead_lettered: false,
                ..
            }
        ));
    }

    // A dead letter that refuses the entry: 500, not a silent 200.
    let full = MemoryDeadLetter::with_capacity(0);
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(failing()))
        .memory_dead_letter(full)
        .build()
        .unwrap();
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 500);
    assert_eq!(pipeline.stats().dead_letter_failures, 1);
}

#[tokio::test]
async fn store_unavailable_gets_503_and_runs_nothing() {
    let tally = Tally::default();
    let store = Arc::new(DownStore::default());
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store.clone())
        .registry(registry_with_critical(tally.handler()))
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-down", &issue_body(9));
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 503);
    assert!(matches!(outcome.kind, OutcomeKind::StoreUnavailable(_)));
    assert_eq!(tally.total(), 0, "nothing runs without a claim");
    assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    assert_eq!(pipeline.stats().store_unavailable, 1);

    // A store that fails to record completion: never 200 without the key completed.
    let tally = Tally::default();
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(CompleteFails::default())
        .registry(registry_with_critical(tally.handler()))
        .build()
        .unwrap();
    let (body, headers) = gh_delivery("d-complete", &issue_body(10));
    let outcome = pipeline.handle(body.clone(), &headers).await;
    assert_eq!(outcome.status(), 503);
    assert!(matches!(outcome.kind, OutcomeKind::StoreUnavailable(_)));
    assert_eq!(tally.count("d-complete"), 1);
    let retry = pipeline.handle(body, &headers).await;
    assert_eq!(
        retry.status(),
        503,
        "the key was released, so the retry claims and runs again"
    );
    assert_eq!(tally.count("d-complete"), 2);
}

#[tokio::test]
async fn authentic_refusals_reach_the_rejected_hook_and_forged_ones_never_do() {
    let received = Arc::new(std::sync::Mutex::new(Vec::<RejectedDelivery>::new()));
    let tally = Tally::default();
    let pipeline = {
        let received = received.clone();
        Pipeline::builder()
            .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
            .verifier(github())
            .store(store())
            .registry({
                let mut registry = registry_with_critical(tally.handler());
                registry.critical("stripe", "*", "record", tally.handler());
                registry
            })
            .on_rejected(move |rejected| received.lock().unwrap().push(rejected))
            .build()
            .unwrap()
    };
    let taken = || std::mem::take(&mut *received.lock().unwrap());

    // 400 unusable: authentic, so handed over with the raw body and headers.
    let body = &b"not json"[..];
    let headers = Headers::from_pairs(testing::stripe_headers(
        STRIPE_SECRET,
        body,
        OffsetDateTime::now_utc(),
    ));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 400);
    let rejected = taken();
    assert_eq!(rejected.len(), 1);
    let unusable = &rejected[0];
    assert_eq!(&*unusable.provider, "stripe");
    assert!(matches!(unusable.reason, RejectionReason::Unusable(_)));
    assert_eq!(unusable.status, 400);
    assert_eq!(unusable.event_id, None);
    assert_eq!(&unusable.body[..], body);
    assert!(unusable.headers.get("stripe-signature").is_ok());

    // A completed event's id with another body: the altered body, its id and kind.
    let (first, headers) = gh_delivery("d-altered", &issue_body(1));
    assert_eq!(pipeline.handle(first, &headers).await.status(), 200);
    let (altered, headers) = gh_delivery("d-altered", &issue_body(2));
    assert_eq!(
        pipeline.handle(altered.clone(), &headers).await.status(),
        200
    );
    let rejected = taken();
    assert_eq!(rejected.len(), 1);
    let mismatch = &rejected[0];
    assert_eq!(mismatch.reason, RejectionReason::DuplicateBodyChanged);
    assert_eq!(
        (
            mismatch.status,
            mismatch.event_id.as_deref(),
            mismatch.event_kind.as_deref()
        ),
        (200, Some("d-altered"), Some("issues.opened"))
    );
    assert_eq!(mismatch.body, altered);
    assert!(
        !format!("{mismatch:?}").contains("number"),
        "Debug leaves the body out"
    );

    // Forged, malformed, duplicate, processed: nothing handed over.
    let forged = Headers::from_pairs(testing::stripe_headers(
        "whsec_wrong",
        body,
        OffsetDateTime::now_utc(),
    ));
    assert_eq!(pipeline.handle(body, &forged).await.status(), 401);
    assert_eq!(pipeline.handle(body, &Headers::new()).await.status(), 400);
    let (again, headers) = gh_delivery("d-altered", &issue_body(1));
    assert_eq!(pipeline.handle(again, &headers).await.status(), 200);
    assert!(taken().is_empty());
    assert_eq!(tally.count("d-altered"), 1);
}

#[tokio::test]
async fn a_panicking_rejected_hook_does_not_change_the_answer() {
    let pipeline = Pipeline::builder()
        .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
        .store(store())
        .on_rejected(|_| panic!("log sink crashed"))
        .build()
        .unwrap();
    let body = &b"not json"[..];
    let headers = Headers::from_pairs(testing::stripe_headers(
        STRIPE_SECRET,
        body,
        OffsetDateTime::now_utc(),
    ));
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 400);
    assert!(matches!(outcome.kind, OutcomeKind::Unusable(_)));
    let stats = pipeline.stats();
    assert_eq!((stats.unusable, stats.rejected_hook_panics), (1, 1));
}
