//! The ways into a pipeline: detection, an explicit provider, the body-size hint,
//! and the counters every delivery feeds.
#![cfg(feature = "tokio")]

mod common;

use common::pipeline::*;
use hookgate::{Headers, OutcomeKind, Pipeline, Registry, Stripe, VerifyError};

fn two_providers(tally: &Tally) -> Pipeline {
    let mut registry = Registry::new();
    registry.critical("*", "*", "record", tally.handler());
    Pipeline::builder()
        .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
        .verifier(github())
        .store(store())
        .registry(registry)
        .build()
        .unwrap()
}

#[tokio::test]
async fn explicit_provider_skips_detection_and_still_verifies() {
    let tally = Tally::default();
    let pipeline = two_providers(&tally);
    let (body, headers) = gh_delivery("d-explicit", &issue_body(1));

    let outcome = pipeline.handle_for("github", body.clone(), &headers).await;
    assert_eq!(outcome.status(), 200);
    assert_eq!(outcome.provider.as_deref(), Some("github"));
    assert_eq!(tally.count("d-explicit"), 1);

    // Named as Stripe, the GitHub delivery lacks Stripe's signature header.
    let wrong = pipeline.handle_for("stripe", body, &headers).await;
    assert_eq!(wrong.status(), 400);
    assert!(matches!(
        wrong.kind,
        OutcomeKind::VerificationFailed(VerifyError::MissingHeader(_))
    ));
    assert_eq!(tally.count("d-explicit"), 1);
}

#[tokio::test]
async fn body_size_hint_follows_the_detected_provider() {
    let pipeline = two_providers(&Tally::default());
    let (_, github_headers) = gh_delivery("d-size", &issue_body(2));
    assert_eq!(pipeline.max_body_size(&github_headers), 25 * 1024 * 1024);
    let stripe_headers = Headers::from_pairs([("Stripe-Signature", "t=1,v1=00")]);
    assert_eq!(pipeline.max_body_size(&stripe_headers), 1024 * 1024);
    assert_eq!(
        pipeline.max_body_size(&Headers::new()),
        25 * 1024 * 1024,
        "undetected: the largest limit"
    );
}

#[tokio::test]
async fn every_delivery_is_counted_once() {
    let pipeline = two_providers(&Tally::default());
    let (body, headers) = gh_delivery("d-count", &issue_body(3));
    pipeline.handle(body.clone(), &headers).await;
    pipeline.handle(body.clone(), &headers).await;
    pipeline.handle(body, &Headers::new()).await;
    let stats = pipeline.stats();
    assert_eq!(
        (stats.processed, stats.duplicate, stats.bad_request),
        (1, 1, 1)
    );
    assert_eq!(stats.deliveries(), 3);
}

#[tokio::test]
async fn handing_work_back_gives_none_when_no_best_effort_handler_matches() {
    let tally = Tally::default();
    let pipeline = two_providers(&tally);
    let (body, headers) = gh_delivery("d-deferred", &issue_body(3));
    let (outcome, work) = pipeline.handle_deferred(body, &headers).await;
    assert!(
        matches!(outcome.kind, OutcomeKind::Processed { best_effort: 0 }),
        "{outcome:?}"
    );
    assert!(work.is_none(), "nothing to hand back");
    let (body, headers) = gh_delivery("d-deferred-2", &issue_body(4));
    let (_, work) = pipeline.handle_for_deferred("github", body, &headers).await;
    assert!(work.is_none());
}

#[tokio::test]
async fn a_pipeline_debugs_as_its_settings_never_its_secrets() {
    let tally = Tally::default();
    let pipeline = two_providers(&tally);
    let debug = format!("{pipeline:?}");
    for part in [
        "Pipeline",
        "stripe",
        "github",
        "record",
        "MemoryStore",
        "best_effort",
    ] {
        assert!(debug.contains(part), "{part} missing from {debug}");
    }
    for secret in [STRIPE_SECRET, GH_SECRET] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[tokio::test]
async fn a_pipeline_debug_says_whether_a_hook_and_a_journal_are_set() {
    let plain = format!("{:?}", two_providers(&Tally::default()));
    assert!(
        plain.contains("on_rejected: None") && plain.contains("journal: None"),
        "{plain}"
    );
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .on_rejected(|_| {})
        .journal(hookgate::journal::MemoryJournal::new())
        .build()
        .unwrap();
    let debug = format!("{pipeline:?}");
    assert!(debug.contains("on_rejected: Some(RejectedHook)"), "{debug}");
    assert!(debug.contains("journal: Some(MemoryJournal"), "{debug}");
}
