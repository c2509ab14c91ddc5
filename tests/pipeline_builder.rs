//! Misconfigurations the builder refuses, and the per-provider defaults it applies.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use common::pipeline::*;
use hookgate::{
    BuildError, GitHub, MemoryStore, Pipeline, ProviderLimits, Registry, Shopify, Stripe,
};

fn with_handler(provider: &str, pattern: &str) -> Registry {
    let mut registry = Registry::new();
    registry.critical(provider, pattern, "h", Tally::default().handler());
    registry
}

#[test]
fn builder_refuses_what_can_never_work() {
    let err = Pipeline::builder().store(store()).build().unwrap_err();
    assert!(matches!(err, BuildError::NoVerifier));
    let err = Pipeline::builder().verifier(github()).build().unwrap_err();
    assert!(matches!(err, BuildError::NoStore));
    let err = Pipeline::builder()
        .verifier(github())
        .verifier(GitHub::builder("other").build().unwrap())
        .store(store())
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::DuplicateProvider(ref p) if p == "github"));
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(with_handler("gihtub", "*"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BuildError::UnknownProvider { ref provider, .. } if provider == "gihtub")
    );
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .retention("stripe", Duration::from_secs(60))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BuildError::UnknownProvider { ref provider, .. } if provider == "stripe")
    );
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .critical_deadline("github", Duration::from_secs(10))
        .lease("github", Duration::from_secs(10))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::LeaseNotLongerThanDeadline { .. }));
    assert!(err.to_string().contains("must be longer"));
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(with_handler("github", "iss*"))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Route(_)));
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .body_limit("github", 0)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Zero("body_limit")));
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .max_concurrent_best_effort(0)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        BuildError::Zero("max_concurrent_best_effort")
    ));
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .max_pending_best_effort(0)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Zero("max_pending_best_effort")));
}

#[test]
fn provider_defaults_follow_their_answer_times_and_retry_windows() {
    let pipeline = Pipeline::builder()
        .verifier(github())
        .verifier(Shopify::builder("s").build().unwrap())
        .verifier(Stripe::builder("s").build().unwrap())
        .store(MemoryStore::new())
        .registry(with_handler("*", "*"))
        .critical_deadline("stripe", Duration::from_secs(2))
        .build()
        .unwrap();
    let github = pipeline.limits("github").unwrap();
    assert_eq!(github.body_limit, 25 * 1024 * 1024);
    assert_eq!(github.critical_deadline, Duration::from_secs(8));
    assert_eq!(github.retention, Duration::from_secs(30 * 24 * 3600));
    let shopify = pipeline.limits("shopify").unwrap();
    assert_eq!(shopify, ProviderLimits::defaults_for("shopify"));
    assert!(shopify.critical_deadline < Duration::from_secs(5));
    assert_eq!(shopify.body_limit, 1024 * 1024);
    assert_eq!(shopify.retention, Duration::from_secs(72 * 3600));
    let stripe = pipeline.limits("stripe").unwrap();
    assert_eq!(stripe.critical_deadline, Duration::from_secs(2));
    assert_eq!(
        stripe.lease,
        Duration::from_secs(6),
        "the lease follows an overridden deadline"
    );
    assert!(pipeline.limits("slack").is_none());
}
