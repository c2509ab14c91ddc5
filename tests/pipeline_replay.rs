//! The replay guard (`PipelineBuilder::replay_guard`): GitHub and Shopify sign
//! the body only, so a captured delivery can be sent again under a fresh
//! delivery id or another kind. With the guard on, such a replay is answered
//! 200 `Duplicate` without running a handler and reported; the provider's own
//! redeliveries stay ordinary duplicates; Stripe, which signs its ids, is left
//! alone. Without the guard, the replays run (the risk the guard closes).
#![cfg(feature = "tokio")]

mod common;

use common::pipeline::*;
use hookgate::{
    testing, BuildError, HandlerError, Headers, OutcomeKind, Pipeline, PipelineBuilder, Registry,
    RejectionReason, Stripe,
};
use time::OffsetDateTime;

/// A pipeline with the GitHub, Shopify and Stripe verifiers, these handlers,
/// the replay guard on for each name in `guard`, and `log` as its
/// `on_rejected` hook.
fn builder(registry: Registry, guard: &[&str], log: &RejectedLog) -> PipelineBuilder {
    let mut builder = Pipeline::builder()
        .verifier(github())
        .verifier(shopify())
        .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
        .store(store())
        .registry(registry)
        .on_rejected(log.hook());
    for provider in guard {
        builder = builder.replay_guard(provider);
    }
    builder
}

fn pipeline(registry: Registry, guard: &[&str], log: &RejectedLog) -> Pipeline {
    builder(registry, guard, log)
        .build()
        .expect("valid settings")
}

/// Asserts that `log` holds exactly one replay per `(provider, event id, kind)`,
/// each reported with status 200 and the body as received.
fn assert_replays(log: &RejectedLog, body: &[u8], expected: &[(&str, &str, &str)]) {
    let entries = log.entries();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|r| {
            assert_eq!(r.reason, RejectionReason::Replayed);
            assert_eq!(r.status, 200);
            assert_eq!(&r.body[..], body);
            (
                &*r.provider,
                r.event_id.as_deref().unwrap(),
                r.event_kind.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, expected);
}

/// GitHub's `issues` and `pull_request` events, each with its own handler.
fn github_registry(issues: &Tally, pull_requests: &Tally) -> Registry {
    let mut registry = Registry::new();
    registry.critical("github", "issues", "issues", issues.handler());
    registry.critical("github", "pull_request", "prs", pull_requests.handler());
    registry
}

/// Shopify's `orders/create` and `orders/cancelled` topics, each with its own
/// handler.
fn shopify_registry(created: &Tally, cancelled: &Tally) -> Registry {
    let mut registry = Registry::new();
    registry.critical("shopify", "orders/create", "create", created.handler());
    registry.critical("shopify", "orders/cancelled", "cancel", cancelled.handler());
    registry
}

const ORDER: &str = r#"{"id":820982911946154508,"email":"jon@example.com"}"#;
const CLOSED_ISSUE: &str = r#"{"action":"closed","issue":{"number":7}}"#;

#[tokio::test]
async fn github_replay_under_a_new_delivery_id_is_refused_and_reported() {
    let (issues, prs, log) = (Tally::default(), Tally::default(), RejectedLog::default());
    let pipeline = pipeline(github_registry(&issues, &prs), &["github"], &log);
    let (body, headers) = gh_delivery("d-1", &issue_body(1));
    let first = pipeline.handle(body.clone(), &headers).await;
    assert!(matches!(first.kind, OutcomeKind::Processed { .. }));

    let (replayed, headers) = gh_delivery("d-forged", &issue_body(1));
    let outcome = pipeline.handle(replayed, &headers).await;
    assert_eq!(outcome.status(), 200);
    assert!(matches!(outcome.kind, OutcomeKind::Duplicate));
    assert_eq!(outcome.event_id.as_deref(), Some("d-forged"));

    // The handler ran once, and saw the provider's delivery id.
    assert_eq!(
        issues.snapshot().into_iter().collect::<Vec<_>>(),
        [("d-1".to_owned(), 1)]
    );
    let stats = pipeline.stats();
    assert_eq!((stats.processed, stats.duplicate, stats.replays), (1, 1, 1));
    assert_replays(&log, &body, &[("github", "d-forged", "issues.opened")]);

    // Another body is another event, claimed as usual.
    let (other, headers) = gh_delivery("d-2", &issue_body(2));
    let outcome = pipeline.handle(other, &headers).await;
    assert!(matches!(outcome.kind, OutcomeKind::Processed { .. }));
    assert_eq!((issues.count("d-2"), pipeline.stats().replays), (1, 1));
}

#[tokio::test]
async fn github_event_header_swap_runs_no_other_handler() {
    let (issues, prs, log) = (Tally::default(), Tally::default(), RejectedLog::default());
    let pipeline = pipeline(github_registry(&issues, &prs), &["github"], &log);
    let (body, headers) = gh_event_delivery("issues", "d-1", CLOSED_ISSUE);
    let first = pipeline.handle(body.clone(), &headers).await;
    assert!(matches!(first.kind, OutcomeKind::Processed { .. }));

    // The `issues` body sent as `pull_request.closed`, under its own delivery
    // id and under a fresh one.
    for id in ["d-1", "d-2"] {
        let (swapped, headers) = gh_event_delivery("pull_request", id, CLOSED_ISSUE);
        let outcome = pipeline.handle(swapped, &headers).await;
        assert_eq!(outcome.status(), 200, "{id}");
        assert!(matches!(outcome.kind, OutcomeKind::Duplicate), "{id}");
        assert_eq!(outcome.event_kind.as_deref(), Some("pull_request.closed"));
    }
    assert_eq!((issues.total(), prs.total()), (1, 0));
    assert_eq!(pipeline.stats().replays, 2);
    assert_replays(
        &log,
        &body,
        &[
            ("github", "d-1", "pull_request.closed"),
            ("github", "d-2", "pull_request.closed"),
        ],
    );
}

#[tokio::test]
async fn shopify_replay_under_a_new_webhook_id_is_refused_and_reported() {
    let (created, cancelled, log) = (Tally::default(), Tally::default(), RejectedLog::default());
    let pipeline = pipeline(shopify_registry(&created, &cancelled), &["shopify"], &log);
    let (body, headers) = shopify_delivery("orders/create", "w-1", None, ORDER);
    let first = pipeline.handle(body.clone(), &headers).await;
    assert!(matches!(first.kind, OutcomeKind::Processed { .. }));

    let (replayed, headers) = shopify_delivery("orders/create", "w-forged", None, ORDER);
    let outcome = pipeline.handle(replayed, &headers).await;
    assert_eq!(outcome.status(), 200);
    assert!(matches!(outcome.kind, OutcomeKind::Duplicate));

    assert_eq!((created.count("w-1"), created.total()), (1, 1));
    let stats = pipeline.stats();
    assert_eq!((stats.processed, stats.duplicate, stats.replays), (1, 1, 1));
    assert_replays(&log, &body, &[("shopify", "w-forged", "orders/create")]);
}

#[tokio::test]
async fn shopify_topic_or_shop_swap_runs_no_other_handler() {
    let (created, cancelled, log) = (Tally::default(), Tally::default(), RejectedLog::default());
    let pipeline = pipeline(shopify_registry(&created, &cancelled), &["*"], &log);
    let (body, headers) = shopify_delivery("orders/create", "w-1", None, ORDER);
    let first = pipeline.handle(body.clone(), &headers).await;
    assert!(matches!(first.kind, OutcomeKind::Processed { .. }));

    // The order sent as cancelled, then as created in another shop (one app
    // secret signs every shop's deliveries), each under a fresh webhook id.
    let (as_cancelled, headers) = shopify_delivery("orders/cancelled", "w-2", None, ORDER);
    let (other_shop, other_headers) =
        shopify_delivery("orders/create", "w-3", Some("victim.myshopify.com"), ORDER);
    for (body, headers) in [(as_cancelled, headers), (other_shop, other_headers)] {
        let outcome = pipeline.handle(body, &headers).await;
        assert_eq!(outcome.status(), 200);
        assert!(matches!(outcome.kind, OutcomeKind::Duplicate));
    }
    assert_eq!((created.total(), cancelled.total()), (1, 0));
    assert_eq!(pipeline.stats().replays, 2);
    assert_replays(
        &log,
        &body,
        &[
            ("shopify", "w-2", "orders/cancelled"),
            ("shopify", "w-3", "orders/create"),
        ],
    );
}

#[tokio::test]
async fn provider_redeliveries_are_ordinary_duplicates() {
    let (issues, prs, created, cancelled) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    let mut registry = github_registry(&issues, &prs);
    registry.critical("shopify", "orders/create", "create", created.handler());
    registry.critical("shopify", "orders/cancelled", "cancel", cancelled.handler());
    let log = RejectedLog::default();
    let pipeline = pipeline(registry, &["*"], &log);

    // GitHub's redelivery keeps the delivery id; Shopify's retry keeps the
    // webhook id: same body, same headers.
    let deliveries = [
        gh_delivery("d-1", &issue_body(1)),
        shopify_delivery("orders/create", "w-1", None, ORDER),
    ];
    for (body, headers) in &deliveries {
        let first = pipeline.handle(body.clone(), headers).await;
        assert!(matches!(first.kind, OutcomeKind::Processed { .. }));
        for _ in 0..2 {
            let again = pipeline.handle(body.clone(), headers).await;
            assert_eq!(again.status(), 200);
            assert!(matches!(again.kind, OutcomeKind::Duplicate));
        }
    }
    assert_eq!((issues.count("d-1"), created.count("w-1")), (1, 1));
    let stats = pipeline.stats();
    assert_eq!((stats.processed, stats.duplicate, stats.replays), (2, 4, 0));
    assert!(log.entries().is_empty(), "redeliveries are not reported");
}

#[tokio::test]
async fn a_failed_body_runs_on_the_providers_retry_and_never_under_another_kind() {
    // The first attempt fails: the key is released for the provider's retry.
    let (calls, flaky) = numbered(|call, _| async move {
        if call == 0 {
            Err(HandlerError::transient(Injected("database restarting")))
        } else {
            Ok(())
        }
    });
    let prs = Tally::default();
    let mut registry = Registry::new();
    registry.critical("github", "issues", "issues", flaky);
    registry.critical("github", "pull_request", "prs", prs.handler());
    let log = RejectedLog::default();
    let pipeline = pipeline(registry, &["github"], &log);

    let (body, headers) = gh_event_delivery("issues", "d-1", CLOSED_ISSUE);
    assert_eq!(pipeline.handle(body.clone(), &headers).await.status(), 500);

    // Sent as `pull_request` meanwhile: refused, the other handler never runs.
    let (swapped, swapped_headers) = gh_event_delivery("pull_request", "d-2", CLOSED_ISSUE);
    let outcome = pipeline.handle(swapped, &swapped_headers).await;
    assert!(matches!(outcome.kind, OutcomeKind::Duplicate));

    // The provider's redelivery (same id, same event) runs the work.
    let retry = pipeline.handle(body.clone(), &headers).await;
    assert!(matches!(retry.kind, OutcomeKind::Processed { .. }));
    assert_eq!(
        (calls.load(std::sync::atomic::Ordering::SeqCst), prs.total()),
        (2, 0)
    );
    assert_eq!(pipeline.stats().replays, 1);
    assert_replays(&log, &body, &[("github", "d-2", "pull_request.closed")]);
}

#[tokio::test]
async fn a_guarded_event_keeps_its_id_key_and_the_body_rule() {
    let (issues, prs, log) = (Tally::default(), Tally::default(), RejectedLog::default());
    let pipeline = pipeline(github_registry(&issues, &prs), &["github"], &log);
    let (body, headers) = gh_delivery("d-1", &issue_body(1));
    assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
    // Another body under a completed delivery id (not a replay of a captured
    // body: its bytes are new) is the completed event's duplicate, reported.
    let (changed, headers) = gh_delivery("d-1", &issue_body(2));
    let outcome = pipeline.handle(changed, &headers).await;
    assert!(matches!(outcome.kind, OutcomeKind::Duplicate));
    assert_eq!(issues.count("d-1"), 1);
    let stats = pipeline.stats();
    assert_eq!((stats.replays, stats.duplicate_body_changed), (0, 1));
    let reasons: Vec<_> = log.entries().into_iter().map(|r| r.reason).collect();
    assert_eq!(reasons, [RejectionReason::DuplicateBodyChanged]);
}

/// Without the guard, today's keys (`provider:delivery_id`) let both attacks
/// through: this is the risk the guard closes.
#[tokio::test]
async fn without_the_guard_replays_under_fresh_headers_run_again() {
    let (issues, prs, log) = (Tally::default(), Tally::default(), RejectedLog::default());
    let mut registry = github_registry(&issues, &prs);
    let (created, cancelled) = (Tally::default(), Tally::default());
    registry.critical("shopify", "orders/create", "create", created.handler());
    registry.critical("shopify", "orders/cancelled", "cancel", cancelled.handler());
    let pipeline = pipeline(registry, &[], &log);

    let replays = [
        gh_event_delivery("issues", "d-1", CLOSED_ISSUE),
        gh_event_delivery("issues", "d-2", CLOSED_ISSUE),
        gh_event_delivery("pull_request", "d-3", CLOSED_ISSUE),
        shopify_delivery("orders/create", "w-1", None, ORDER),
        shopify_delivery("orders/cancelled", "w-2", None, ORDER),
    ];
    for (body, headers) in replays {
        let outcome = pipeline.handle(body, &headers).await;
        assert!(matches!(outcome.kind, OutcomeKind::Processed { .. }));
    }
    assert_eq!((issues.total(), prs.total()), (2, 1));
    assert_eq!((created.total(), cancelled.total()), (1, 1));
    assert_eq!(pipeline.stats().replays, 0);
    assert!(log.entries().is_empty());
}

#[tokio::test]
async fn stripe_is_left_alone_by_the_wildcard() {
    let (stripe, issues, prs) = (Tally::default(), Tally::default(), Tally::default());
    let mut registry = github_registry(&issues, &prs);
    registry.critical("stripe", "*", "record", stripe.handler());
    let log = RejectedLog::default();
    let pipeline = pipeline(registry, &["*"], &log);
    let stripe_delivery = |body: &'static str, at: i64| {
        let at = OffsetDateTime::now_utc() + time::Duration::seconds(at);
        let headers =
            Headers::from_pairs(testing::stripe_headers(STRIPE_SECRET, body.as_bytes(), at));
        (body, headers)
    };

    let (body, headers) = stripe_delivery(
        r#"{"id":"evt_1","type":"invoice.paid","pending_webhooks":2}"#,
        0,
    );
    let first = pipeline.handle(body, &headers).await;
    assert!(matches!(first.kind, OutcomeKind::Processed { .. }));
    // Stripe's retry: a new signature timestamp, the same event id.
    let (body, headers) = stripe_delivery(body, 1);
    let retry = pipeline.handle(body, &headers).await;
    assert!(matches!(retry.kind, OutcomeKind::Duplicate));
    // A re-rendered retry (a live count changed) is still keyed on `evt_1`.
    let (rerendered, headers) = stripe_delivery(
        r#"{"id":"evt_1","type":"invoice.paid","pending_webhooks":1}"#,
        2,
    );
    let outcome = pipeline.handle(rerendered, &headers).await;
    assert!(!matches!(outcome.kind, OutcomeKind::Processed { .. }));
    assert_eq!(stripe.count("evt_1"), 1);
    assert_eq!(pipeline.stats().replays, 0);
    assert!(log
        .entries()
        .iter()
        .all(|r| r.reason != RejectionReason::Replayed));

    // In the same pipeline, `*` does cover GitHub.
    let (body, headers) = gh_delivery("d-1", &issue_body(1));
    pipeline.handle(body, &headers).await;
    let (body, headers) = gh_delivery("d-forged", &issue_body(1));
    assert!(matches!(
        pipeline.handle(body, &headers).await.kind,
        OutcomeKind::Duplicate
    ));
    assert_eq!((issues.total(), pipeline.stats().replays), (1, 1));
}

#[test]
fn build_refuses_a_guard_on_a_signed_or_unknown_provider() {
    let log = RejectedLog::default();
    let err = builder(Registry::new(), &["*", "stripe"], &log)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::ReplayGuardOnSignedIdentity(name) if name == "stripe"),
        "{err}"
    );
    let err = builder(Registry::new(), &["gitlab"], &log)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::UnknownProvider { provider, what }
            if provider == "gitlab" && what == "a replay guard"),
        "{err}"
    );
    // `*` skips Stripe instead of refusing it.
    assert!(builder(Registry::new(), &["*"], &log).build().is_ok());
}
