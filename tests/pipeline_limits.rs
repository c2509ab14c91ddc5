//! Body limits at their boundaries (exactly at the limit, one byte over), per
//! provider and pipeline-wide, and the limits each provider's profile gives.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::pipeline::{github, shopify, store, Tally, GH_SECRET, STRIPE_SECRET};
use hookgate::testing::{github_headers, stripe_headers};
use hookgate::{
    FixedClock, Headers, OutcomeKind, Pipeline, ProviderLimits, Registry, Stripe, Verifier,
    VerifyError,
};
use time::OffsetDateTime;

const MIB: usize = 1024 * 1024;
const NOW: i64 = 1_700_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

fn stripe() -> Stripe {
    Stripe::builder(STRIPE_SECRET).build().unwrap()
}

/// GitHub (25 MiB) and Stripe (1 MiB) in one pipeline, a handler recording
/// every event of both.
fn github_and_stripe(tally: &Tally) -> Pipeline {
    let mut registry = Registry::new();
    registry.critical("github", "*", "record github", tally.handler());
    registry.critical("stripe", "*", "record stripe", tally.handler());
    Pipeline::builder()
        .verifier(github())
        .verifier(stripe())
        .store(store())
        .registry(registry)
        .clock(FixedClock::new(now()))
        .build()
        .unwrap()
}

/// A Stripe event JSON of exactly `len` bytes.
fn stripe_body(id: &str, len: usize) -> Bytes {
    let head = format!(r#"{{"id":"{id}","object":"event","type":"invoice.paid","pad":""#);
    let tail = r#""}"#;
    let mut body = head.into_bytes();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    assert_eq!(body.len(), len);
    Bytes::from(body)
}

/// A GitHub `issues.opened` JSON of exactly `len` bytes.
fn github_body(len: usize) -> Bytes {
    let head = br#"{"action":"opened","pad":""#;
    let mut body = head.to_vec();
    body.resize(len - 2, b'x');
    body.extend_from_slice(br#""}"#);
    Bytes::from(body)
}

fn stripe_signed(body: &[u8]) -> Headers {
    Headers::from_pairs(stripe_headers(STRIPE_SECRET, body, now()))
}

fn too_large(kind: &OutcomeKind) -> Option<(usize, usize)> {
    match kind {
        OutcomeKind::TooLarge { size, limit } => Some((*size, *limit)),
        _ => None,
    }
}

#[tokio::test]
async fn a_stripe_body_over_stripes_limit_is_refused_even_when_githubs_is_larger() {
    let tally = Tally::default();
    let pipeline = github_and_stripe(&tally);
    for len in [2 * MIB, MIB + 1] {
        let body = stripe_body("evt_big", len);
        // Authentic, yet refused: nothing over the limit is even hashed.
        let outcome = pipeline.handle(body.clone(), &stripe_signed(&body)).await;
        assert_eq!(outcome.status(), 413, "{len}");
        assert_eq!(too_large(&outcome.kind), Some((len, MIB)), "{len}");
        assert_eq!(outcome.provider.as_deref(), Some("stripe"));
        assert_eq!(outcome.event_id, None, "nothing was identified");
    }
    assert_eq!(tally.total(), 0);
    assert_eq!(pipeline.stats().too_large, 2);
}

#[tokio::test]
async fn a_stripe_body_of_exactly_stripes_limit_is_verified() {
    let tally = Tally::default();
    let pipeline = github_and_stripe(&tally);
    let body = stripe_body("evt_exact", MIB);
    let outcome = pipeline.handle(body.clone(), &stripe_signed(&body)).await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.kind);
    assert!(matches!(outcome.kind, OutcomeKind::Processed { .. }));
    assert_eq!(tally.count("evt_exact"), 1);

    // Not refused for its size: it fails later, on its signature.
    let forged = Headers::from_pairs(stripe_headers("whsec_wrong", &body, now()));
    let outcome = pipeline.handle(body, &forged).await;
    assert_eq!(outcome.status(), 401);
    assert!(matches!(
        outcome.kind,
        OutcomeKind::VerificationFailed(VerifyError::SignatureMismatch { .. })
    ));
}

#[tokio::test]
async fn nothing_over_the_largest_limit_is_looked_at() {
    let tally = Tally::default();
    let pipeline = github_and_stripe(&tally);
    let over = Bytes::from(vec![b'x'; 25 * MIB + 1]);
    let outcome = pipeline.handle(over, &Headers::new()).await;
    assert_eq!(outcome.status(), 413);
    assert_eq!(too_large(&outcome.kind), Some((25 * MIB + 1, 25 * MIB)));
    assert_eq!(outcome.provider, None, "refused before detection");

    let exact = Bytes::from(vec![b'x'; 25 * MIB]);
    let outcome = pipeline.handle(exact, &Headers::new()).await;
    assert_eq!(outcome.status(), 400, "not too large: no provider");
    assert!(matches!(
        outcome.kind,
        OutcomeKind::VerificationFailed(VerifyError::UnknownProvider)
    ));
    assert_eq!(tally.total(), 0);
}

#[tokio::test]
async fn a_github_body_of_exactly_githubs_limit_is_processed() {
    let tally = Tally::default();
    let pipeline = github_and_stripe(&tally);
    let body = github_body(25 * MIB);
    let headers = Headers::from_pairs(github_headers(GH_SECRET, &body, "issues", "d-exact"));
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.kind);
    assert_eq!(tally.count("d-exact"), 1);

    let body = github_body(25 * MIB + 1);
    let headers = Headers::from_pairs(github_headers(GH_SECRET, &body, "issues", "d-over"));
    let outcome = pipeline.handle(body, &headers).await;
    assert_eq!(too_large(&outcome.kind), Some((25 * MIB + 1, 25 * MIB)));
    assert_eq!(tally.count("d-over"), 0);
}

#[tokio::test]
async fn the_largest_limit_is_that_of_the_providers_present() {
    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "record", tally.handler());
    let pipeline = Pipeline::builder()
        .verifier(stripe())
        .verifier(shopify())
        .store(store())
        .registry(registry)
        .clock(FixedClock::new(now()))
        .build()
        .unwrap();
    assert_eq!(pipeline.max_body_size(&Headers::new()), MIB);
    let outcome = pipeline
        .handle(Bytes::from(vec![b'x'; MIB + 1]), &Headers::new())
        .await;
    assert_eq!(too_large(&outcome.kind), Some((MIB + 1, MIB)));
    let outcome = pipeline
        .handle(Bytes::from(vec![b'x'; MIB]), &Headers::new())
        .await;
    assert_eq!(outcome.status(), 400);
}

#[tokio::test]
async fn a_lowered_limit_holds_at_its_boundary() {
    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "record", tally.handler());
    let pipeline = Pipeline::builder()
        .verifier(stripe())
        .store(store())
        .registry(registry)
        .clock(FixedClock::new(now()))
        .body_limit("stripe", 200)
        .build()
        .unwrap();
    let exact = stripe_body("evt_200", 200);
    let outcome = pipeline.handle(exact.clone(), &stripe_signed(&exact)).await;
    assert_eq!(outcome.status(), 200, "{:?}", outcome.kind);
    let over = stripe_body("evt_201", 201);
    let outcome = pipeline.handle(over.clone(), &stripe_signed(&over)).await;
    assert_eq!(too_large(&outcome.kind), Some((201, 200)));
    assert_eq!((tally.count("evt_200"), tally.count("evt_201")), (1, 0));
}

#[test]
fn limits_derive_from_each_providers_profile() {
    let pipeline = Pipeline::builder()
        .verifier(github())
        .verifier(shopify())
        .verifier(stripe())
        .store(store())
        .build()
        .unwrap();
    let expect = |provider: &str, body_limit, deadline_s, retention: Duration| {
        let limits = pipeline.limits(provider).unwrap();
        assert_eq!(limits.body_limit, body_limit, "{provider}");
        assert_eq!(
            limits.critical_deadline,
            Duration::from_secs(deadline_s),
            "{provider}"
        );
        assert_eq!(
            limits.lease,
            Duration::from_secs(3 * deadline_s),
            "{provider}"
        );
        assert_eq!(limits.retention, retention, "{provider}");
        limits
    };
    let day = Duration::from_secs(24 * 60 * 60);
    let github_limits = expect("github", 25 * MIB, 8, 30 * day);
    let shopify_limits = expect("shopify", MIB, 4, 3 * day);
    let stripe_limits = expect("stripe", MIB, 8, 3 * day);
    assert_eq!(
        github_limits,
        ProviderLimits::from_profile(&github().profile())
    );
    assert_eq!(
        shopify_limits,
        ProviderLimits::from_profile(&shopify().profile())
    );
    assert_eq!(
        stripe_limits,
        ProviderLimits::from_profile(&stripe().profile())
    );

    let github_headers = Headers::from_pairs(github_headers(GH_SECRET, b"{}", "ping", "d"));
    assert_eq!(pipeline.max_body_size(&github_headers), 25 * MIB);
    assert_eq!(pipeline.max_body_size(&stripe_signed(b"{}")), MIB);
    assert_eq!(pipeline.max_body_size(&Headers::new()), 25 * MIB);
}

#[test]
fn from_profile_takes_four_fifths_of_the_answer_time_and_three_deadlines_of_lease() {
    let mut profile = hookgate::ProviderProfile::default();
    profile.body_limit = 12_345;
    profile.answer_within = Duration::from_secs(20);
    profile.retention = Duration::from_secs(99);
    let limits = ProviderLimits::from_profile(&profile);
    assert_eq!(limits.body_limit, 12_345);
    assert_eq!(limits.critical_deadline, Duration::from_secs(16));
    assert_eq!(limits.lease, Duration::from_secs(48));
    assert_eq!(limits.retention, Duration::from_secs(99));
}
