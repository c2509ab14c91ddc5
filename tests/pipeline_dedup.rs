//! `PipelineBuilder::dedup_key`: event ids taken from a header, a JSON
//! pointer, the body's digest or several of them, and what happens when the
//! key finds nothing.
#![cfg(feature = "tokio")]

mod common;

use bytes::Bytes;
use common::pipeline::*;
use hookgate::dedup::{DedupKey, DedupKeyError};
use hookgate::{
    testing, BuildError, Headers, IdentifyError, OutcomeKind, Pipeline, PipelineBuilder, Registry,
    Stripe,
};
use time::OffsetDateTime;

fn builder(tally: &Tally) -> PipelineBuilder {
    let mut registry = Registry::new();
    registry.critical("github", "issues", "record", tally.handler());
    registry.critical("stripe", "*", "record", tally.handler());
    Pipeline::builder()
        .verifier(github())
        .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
        .store(store())
        .registry(registry)
}

fn with_header(delivery_id: &str, body: &str, custom: Option<&str>) -> (Bytes, Headers) {
    let mut pairs = testing::github_headers(GH_SECRET, body.as_bytes(), "issues", delivery_id);
    if let Some(custom) = custom {
        pairs.push(("X-Custom-Id".to_owned(), custom.to_owned()));
    }
    (Bytes::from(body.to_owned()), Headers::from_pairs(pairs))
}

#[tokio::test]
async fn a_header_key_dedupes_across_delivery_ids() {
    let tally = Tally::default();
    let pipeline = builder(&tally)
        .dedup_key("github", DedupKey::header("X-Custom-Id"))
        .build()
        .unwrap();
    let (body, headers) = with_header("d-1", &issue_body(1), Some("order-7"));
    let first = pipeline.handle(body, &headers).await;
    assert!(matches!(first.kind, OutcomeKind::Processed { .. }));
    assert_eq!(first.event_id.as_deref(), Some("order-7"));
    // Another delivery id, the same custom id: the same event.
    let (body, headers) = with_header("d-2", &issue_body(1), Some("order-7"));
    let second = pipeline.handle(body, &headers).await;
    assert!(
        matches!(second.kind, OutcomeKind::Duplicate),
        "{:?}",
        second.kind
    );
    assert_eq!(tally.count("order-7"), 1);

    // No such header: 400 unusable, nothing claimed or run.
    let (body, headers) = with_header("d-3", &issue_body(2), None);
    let missing = pipeline.handle(body, &headers).await;
    assert_eq!(missing.status(), 400);
    assert!(
        matches!(&missing.kind, OutcomeKind::Unusable(IdentifyError::DedupKey(what)) if what.contains("X-Custom-Id")),
        "{:?}",
        missing.kind
    );
    assert_eq!(tally.total(), 1);
    assert_eq!(pipeline.stats().unusable, 1);
}

fn stripe_event(id: &str, object: &str) -> (Bytes, Headers) {
    let body = format!(
        r#"{{"id":"{id}","object":"event","type":"invoice.paid","created":1,"data":{{"object":{{"id":"{object}"}}}}}}"#
    );
    let headers = Headers::from_pairs(testing::stripe_headers(
        STRIPE_SECRET,
        body.as_bytes(),
        OffsetDateTime::now_utc(),
    ));
    (Bytes::from(body), headers)
}

#[tokio::test]
async fn a_composite_key_of_the_provider_id_and_a_pointer() {
    let tally = Tally::default();
    let key = DedupKey::composite([
        DedupKey::json_pointer("/type"),
        DedupKey::json_pointer("/data/object/id"),
    ]);
    let pipeline = builder(&tally).dedup_key("stripe", key).build().unwrap();
    let (body, headers) = stripe_event("evt_1", "in_1");
    let first = pipeline.handle(body, &headers).await;
    assert_eq!(first.event_id.as_deref(), Some("invoice.paid:in_1"));
    // A second Stripe event about the same invoice: one event by this key.
    let (body, headers) = stripe_event("evt_2", "in_1");
    assert!(matches!(
        pipeline.handle(body, &headers).await.kind,
        OutcomeKind::Duplicate
    ));
    let (body, headers) = stripe_event("evt_3", "in_2");
    assert!(matches!(
        pipeline.handle(body, &headers).await.kind,
        OutcomeKind::Processed { .. }
    ));
    assert_eq!(tally.total(), 2);
    // GitHub keeps its own ids.
    let (body, headers) = gh_delivery("d-9", &issue_body(9));
    assert_eq!(
        pipeline.handle(body, &headers).await.event_id.as_deref(),
        Some("d-9")
    );
}

#[tokio::test]
async fn the_body_digest_and_the_star_default() {
    let tally = Tally::default();
    let pipeline = builder(&tally)
        .dedup_key("*", DedupKey::BodyDigest)
        .dedup_key("stripe", DedupKey::ProviderDefault)
        .build()
        .unwrap();
    let body = issue_body(3);
    let (bytes, headers) = gh_delivery("d-a", &body);
    let first = pipeline.handle(bytes, &headers).await;
    assert!(first.event_id.as_deref().unwrap().starts_with("sha256:"));
    // The same bytes under another delivery id: one event.
    let (bytes, headers) = gh_delivery("d-b", &body);
    assert!(matches!(
        pipeline.handle(bytes, &headers).await.kind,
        OutcomeKind::Duplicate
    ));
    // Stripe overrides `*` with its own ids.
    let (bytes, headers) = stripe_event("evt_9", "in_9");
    assert_eq!(
        pipeline.handle(bytes, &headers).await.event_id.as_deref(),
        Some("evt_9")
    );
}

#[test]
fn keys_that_cannot_work_are_refused_at_build() {
    let tally = Tally::default();
    let err = builder(&tally)
        .dedup_key("gitlab", DedupKey::BodyDigest)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BuildError::UnknownProvider { ref provider, .. } if provider == "gitlab")
    );
    let err = builder(&tally)
        .dedup_key("github", DedupKey::json_pointer("pull_request/id"))
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        BuildError::InvalidDedupKey {
            reason: DedupKeyError::BadPointer(_),
            ..
        }
    ));
    let err = builder(&tally)
        .dedup_key("github", DedupKey::composite([]))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("at least one part"), "{err}");
    // Set again: the last key wins.
    let pipeline = builder(&tally)
        .dedup_key("github", DedupKey::composite([]))
        .dedup_key("github", DedupKey::BodyDigest)
        .build();
    assert!(pipeline.is_ok());
}
