//! Misconfigurations the builder refuses, and the per-provider defaults it applies.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use common::pipeline::*;
use hookgate::{
    BuildError, GitHub, MemoryStore, Pipeline, ProviderLimits, Registry, Shopify, Stripe, Verifier,
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
    assert_eq!(
        shopify,
        ProviderLimits::from_profile(&Shopify::builder("s").build().unwrap().profile())
    );
    assert_eq!(shopify.critical_deadline, Duration::from_secs(4));
    assert!(shopify.critical_deadline < Duration::from_secs(5));
    assert_eq!(shopify.body_limit, 1024 * 1024);
    assert_eq!(shopify.retention, Duration::from_secs(72 * 3600));
    let stripe = pipeline.limits("stripe").unwrap();
    assert_eq!(stripe.critical_deadline, Duration::from_secs(2));
    assert_eq!(
        stripe.lease,
        Duration::from_secs(24),
        "the lease outlasts the whole answer budget, not only a shorter deadline"
    );
    assert!(pipeline.limits("slack").is_none());
}

/// GitHub's scheme under another provider name.
#[derive(Debug)]
struct Renamed(&'static str, GitHub);

impl Verifier for Renamed {
    fn provider(&self) -> &str {
        self.0
    }
    fn detect(&self, headers: &hookgate::Headers) -> bool {
        self.1.detect(headers)
    }
    fn verify(
        &self,
        body: &[u8],
        headers: &hookgate::Headers,
        now: time::OffsetDateTime,
    ) -> Result<hookgate::Verified, hookgate::VerifyError> {
        self.1.verify(body, headers, now)
    }
    fn identify(
        &self,
        body: &[u8],
        headers: &hookgate::Headers,
    ) -> Result<hookgate::Identity, hookgate::IdentifyError> {
        self.1.identify(body, headers)
    }
}

#[test]
fn provider_names_whose_keys_could_collide_are_refused() {
    // `acme` with event id `eu:42` and `acme:eu` with id `42` would share the
    // idempotency key `acme:eu:42`.
    for name in ["acme:eu", "", "*"] {
        let err = Pipeline::builder()
            .verifier(Renamed(name, github()))
            .store(store())
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidProviderName(n) if n == name),
            "{name:?}: {err}"
        );
    }
    assert!(Pipeline::builder()
        .verifier(Renamed("acme", github()))
        .verifier(Renamed("acme-eu", github()))
        .store(store())
        .build()
        .is_ok());
}

#[test]
fn extreme_limits_are_typed_errors_not_panics() {
    // The default lease is 3 × the deadline: it saturates instead of overflowing.
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .critical_deadline("github", Duration::MAX)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::LeaseNotLongerThanDeadline { .. }));
    let err = Pipeline::builder()
        .verifier(github())
        .store(store())
        .critical_deadline("github", Duration::MAX)
        .lease("github", Duration::MAX)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::LeaseNotLongerThanDeadline { .. }));
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .critical_deadline("*", Duration::from_secs(u64::MAX / 4))
        .body_limit("*", usize::MAX)
        .retention("*", Duration::MAX)
        .build()
        .unwrap();
    let limits = pipeline.limits("github").unwrap();
    assert_eq!(limits.lease, Duration::from_secs(u64::MAX / 4 * 3));
    assert_eq!(limits.body_limit, usize::MAX);
}

#[test]
fn limits_for_every_provider_yield_to_a_providers_own() {
    let pipeline = Pipeline::builder()
        .verifier(github())
        .verifier(Shopify::builder("s").build().unwrap())
        .store(store())
        .body_limit("*", 2048)
        .retention("*", Duration::from_secs(60))
        .body_limit("github", 4096)
        .build()
        .unwrap();
    let github = pipeline.limits("github").unwrap();
    let shopify = pipeline.limits("shopify").unwrap();
    assert_eq!((github.body_limit, shopify.body_limit), (4096, 2048));
    assert_eq!(github.retention, Duration::from_secs(60));
    assert_eq!(shopify.retention, Duration::from_secs(60));
    assert_eq!(
        pipeline.max_body_size(&hookgate::Headers::new()),
        4096,
        "the largest limit caps an undetected delivery"
    );
}
