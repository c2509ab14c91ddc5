//! The `Verifier` trait around the built-in verifiers: `Box` and `Arc` forward
//! every method (a verifier handed over behind a pointer routes, dedupes and
//! sizes deliveries exactly as the bare one), each built-in profile states its
//! provider's facts field by field, and `Identity`'s helpers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{at, headers, NOW};
use hookgate::testing::{github_headers, shopify_headers, stripe_headers};
use hookgate::{
    GitHub, Headers, IdentifyError, Identity, ProviderProfile, Shopify, Stripe, Verified, Verifier,
    VerifyError,
};

const GH_SECRET: &str = "gh-secret";
const GH_BODY: &[u8] = br#"{"action":"opened","issue":{"number":1}}"#;
const MIB: usize = 1024 * 1024;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn github() -> GitHub {
    GitHub::builder(GH_SECRET).build().unwrap()
}

/// What a verifier answers for a signed GitHub delivery, a forged one, an
/// unsigned one and a Stripe one: every method of the trait, once each.
#[derive(Debug, PartialEq)]
struct Answers {
    provider: String,
    detects_github: bool,
    detects_stripe: bool,
    detects_nothing: bool,
    signed: Result<Verified, VerifyError>,
    forged: Result<Verified, VerifyError>,
    unsigned: Result<Verified, VerifyError>,
    identity: Result<Identity, IdentifyError>,
    unnamed: Result<Identity, IdentifyError>,
    profile: ProviderProfile,
}

fn answers(verifier: &dyn Verifier) -> Answers {
    let signed = headers(github_headers(GH_SECRET, GH_BODY, "issues", "d-1"));
    let forged = headers(github_headers("not-the-secret", GH_BODY, "issues", "d-1"));
    let stripe = headers(stripe_headers("whsec_x", GH_BODY, at(NOW)));
    Answers {
        provider: verifier.provider().to_owned(),
        detects_github: verifier.detect(&signed),
        detects_stripe: verifier.detect(&stripe),
        detects_nothing: verifier.detect(&Headers::new()),
        signed: verifier.verify(GH_BODY, &signed, at(NOW)),
        forged: verifier.verify(GH_BODY, &forged, at(NOW)),
        unsigned: verifier.verify(GH_BODY, &Headers::new(), at(NOW)),
        identity: verifier.identify(GH_BODY, &signed),
        unnamed: verifier.identify(GH_BODY, &Headers::new()),
        profile: verifier.profile(),
    }
}

#[test]
fn the_bare_github_verifier_answers_as_expected() {
    let bare = answers(&github());
    assert_eq!(bare.provider, "github");
    assert!(bare.detects_github);
    assert!(!bare.detects_stripe);
    assert!(!bare.detects_nothing);
    assert_eq!(bare.signed, Ok(Verified::new(None, 0)));
    assert!(matches!(
        bare.forged,
        Err(VerifyError::SignatureMismatch { .. })
    ));
    assert_eq!(
        bare.unsigned,
        Err(VerifyError::MissingHeader("X-Hub-Signature-256"))
    );
    let identity = bare.identity.as_ref().unwrap();
    assert_eq!(
        (identity.id.as_str(), identity.kind.as_str()),
        ("d-1", "issues.opened")
    );
    assert!(matches!(bare.unnamed, Err(IdentifyError::MissingHeader(_))));
    assert_eq!(bare.profile, github().profile());
    assert_ne!(bare.profile, ProviderProfile::default());
}

#[test]
fn box_and_arc_forward_every_method() {
    let bare = answers(&github());
    let pointers: Vec<(&str, Box<dyn Verifier>)> = vec![
        ("Box<GitHub>", Box::new(Box::new(github()))),
        ("Arc<GitHub>", Box::new(Arc::new(github()))),
        (
            "Box<dyn Verifier>",
            Box::new(Box::new(github()) as Box<dyn Verifier>),
        ),
        (
            "Arc<dyn Verifier>",
            Box::new(Arc::new(github()) as Arc<dyn Verifier>),
        ),
        ("Arc<Box<GitHub>>", Box::new(Arc::new(Box::new(github())))),
    ];
    for (what, verifier) in pointers {
        assert_eq!(answers(&*verifier), bare, "{what}");
    }
    // Generic code sees the pointer as a verifier too.
    fn provider_of(verifier: impl Verifier) -> String {
        verifier.provider().to_owned()
    }
    assert_eq!(provider_of(Arc::new(github())), "github");
    assert_eq!(provider_of(Box::new(github())), "github");
}

#[test]
fn box_and_arc_forward_a_stripe_verifier_and_its_timestamp() {
    let stripe = Stripe::builder("whsec_x").build().unwrap();
    let body = br#"{"id":"evt_1","type":"invoice.paid","created":1700000000}"#;
    let signed = headers(stripe_headers("whsec_x", body, at(NOW)));
    let arc: Arc<dyn Verifier> = Arc::new(stripe.clone());
    let boxed: Box<dyn Verifier> = Box::new(stripe.clone());
    for verifier in [&arc as &dyn Verifier, &boxed as &dyn Verifier] {
        assert_eq!(verifier.provider(), "stripe");
        assert!(verifier.detect(&signed));
        assert_eq!(
            verifier.verify(body, &signed, at(NOW + 5)),
            Ok(Verified::new(Some(at(NOW)), 0))
        );
        assert_eq!(
            verifier.verify(body, &signed, at(NOW + 301)),
            stripe.verify(body, &signed, at(NOW + 301))
        );
        assert_eq!(verifier.identify(body, &signed).unwrap().id, "evt_1");
        assert!(verifier.profile().signs_identity);
    }
}

/// A verifier that overrides nothing optional.
#[derive(Debug)]
struct Minimal;

impl Verifier for Minimal {
    fn provider(&self) -> &str {
        "minimal"
    }
    fn detect(&self, _: &Headers) -> bool {
        false
    }
    fn verify(
        &self,
        _: &[u8],
        _: &Headers,
        _: time::OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        Err(VerifyError::UnknownProvider)
    }
    fn identify(&self, _: &[u8], _: &Headers) -> Result<Identity, IdentifyError> {
        Err(IdentifyError::MissingField("id"))
    }
}

#[test]
fn the_default_profile_states_the_documented_defaults() {
    let profile = ProviderProfile::default();
    assert_eq!(profile.body_limit, MIB);
    assert_eq!(profile.answer_within, Duration::from_secs(10));
    assert_eq!(profile.retention, Duration::from_secs(72 * 60 * 60));
    assert!(profile.retries);
    assert!(!profile.kinds_carry_action);
    assert!(!profile.signs_identity);
    assert!(profile.identity_metadata.is_empty());
    assert_eq!(Minimal.profile(), profile, "a verifier's default profile");
    assert_eq!(Arc::new(Minimal).profile(), profile);
}

#[test]
fn github_profile_field_by_field() {
    let profile = github().profile();
    assert_eq!(
        profile.body_limit,
        25 * MIB,
        "GitHub caps payloads at 25 MB"
    );
    assert_eq!(profile.answer_within, Duration::from_secs(10));
    assert_eq!(profile.retention, 30 * DAY, "beyond the redelivery window");
    assert!(!profile.retries, "GitHub never retries on its own");
    assert!(profile.kinds_carry_action, "issues.opened");
    assert!(
        !profile.signs_identity,
        "delivery id and event are unsigned headers"
    );
    assert!(profile.identity_metadata.is_empty());
}

#[test]
fn shopify_profile_field_by_field() {
    let profile = Shopify::builder("s").build().unwrap().profile();
    assert_eq!(profile.body_limit, MIB);
    assert_eq!(
        profile.answer_within,
        Duration::from_secs(5),
        "Shopify waits 5 s"
    );
    assert_eq!(profile.retention, 3 * DAY);
    assert!(profile.retries, "8 retries over 4 hours");
    assert!(!profile.kinds_carry_action);
    assert!(
        !profile.signs_identity,
        "webhook id and topic are unsigned headers"
    );
    assert_eq!(profile.identity_metadata, ["shop_domain"]);
}

#[test]
fn stripe_profile_field_by_field() {
    let profile = Stripe::builder("s").build().unwrap().profile();
    assert_eq!(profile.body_limit, MIB);
    assert_eq!(profile.answer_within, Duration::from_secs(10));
    assert_eq!(profile.retention, 3 * DAY, "Stripe retries for 3 days");
    assert!(profile.retries);
    assert!(!profile.kinds_carry_action);
    assert!(profile.signs_identity, "id and type are in the signed body");
    assert!(profile.identity_metadata.is_empty());
}

#[test]
fn the_profiles_of_one_provider_do_not_depend_on_its_settings() {
    let strict = Stripe::builder("a")
        .secret("b")
        .tolerance(Duration::from_secs(5))
        .max_future_skew(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(
        strict.profile(),
        Stripe::builder("s").build().unwrap().profile()
    );
    let shopify = Shopify::builder("a").secret("b").build().unwrap();
    assert_eq!(
        shopify.profile(),
        Shopify::builder("s").build().unwrap().profile()
    );
}

#[test]
fn identity_metadata_is_looked_up_by_name_first_value_wins() {
    let identity = Identity::new("id-1", "orders/create")
        .with_metadata("shop_domain", "a.myshopify.com")
        .with_metadata("api_version", "2025-07")
        .with_metadata("shop_domain", "b.myshopify.com");
    assert_eq!(identity.metadata("shop_domain"), Some("a.myshopify.com"));
    assert_eq!(identity.metadata("api_version"), Some("2025-07"));
    assert_eq!(identity.metadata("event_id"), None);
    assert_eq!(identity.metadata.len(), 3);
    assert_eq!(identity.occurred_at, None);
    let dated = identity.clone().occurred_at(Some(at(NOW)));
    assert_eq!(dated.occurred_at, Some(at(NOW)));
    assert_eq!(
        (dated.id.as_str(), dated.kind.as_str()),
        ("id-1", "orders/create")
    );
    assert_eq!(dated.metadata, identity.metadata);
}

#[test]
fn identity_debug_shows_every_field() {
    let identity = Identity::new("id-1", "orders/create").with_metadata("shop_domain", "a.example");
    assert_eq!(
        format!("{identity:?}"),
        r#"Identity { id: "id-1", kind: "orders/create", occurred_at: None, metadata: [("shop_domain", "a.example")] }"#
    );
}

#[test]
fn shopify_behind_an_arc_keeps_its_metadata_and_detection() {
    let shopify = Shopify::builder("shpss").build().unwrap();
    let body = br#"{"id":1}"#;
    let signed = headers(shopify_headers("shpss", body, "orders/create", "w-1"));
    let arc: Arc<dyn Verifier> = Arc::new(shopify.clone());
    assert_eq!(arc.provider(), "shopify");
    assert!(arc.detect(&signed));
    assert!(!arc.detect(&headers(github_headers(GH_SECRET, GH_BODY, "issues", "d"))));
    assert_eq!(
        arc.verify(body, &signed, at(NOW)),
        Ok(Verified::new(None, 0))
    );
    assert_eq!(arc.identify(body, &signed), shopify.identify(body, &signed));
    assert_eq!(arc.profile().identity_metadata, ["shop_domain"]);
}

/// Through a pipeline: a verifier behind a pointer routes, dedupes and sizes
/// deliveries exactly as the bare one.
#[cfg(feature = "tokio")]
mod through_a_pipeline {
    use super::*;
    use common::pipeline::{gh_delivery, issue_body, store, Tally, GH_SECRET as PIPE_SECRET};
    use hookgate::{OutcomeKind, Pipeline, ProviderLimits, Registry};

    fn pipeline(verifier: impl Verifier + 'static, tally: &Tally) -> Pipeline {
        let mut registry = Registry::new();
        // The bare event name: matches `issues.opened` only through the
        // profile's `kinds_carry_action`.
        registry.critical("github", "issues", "record", tally.handler());
        Pipeline::builder()
            .verifier(verifier)
            .store(store())
            .registry(registry)
            .build()
            .expect("a valid pipeline")
    }

    /// Statuses of a fixed sequence of deliveries, and what the handler saw.
    async fn run(verifier: impl Verifier + 'static) -> (Vec<(u16, String)>, Vec<u64>) {
        let tally = Tally::default();
        let pipeline = pipeline(verifier, &tally);
        assert_eq!(
            pipeline.limits("github"),
            Some(ProviderLimits::from_profile(&github_profile()))
        );
        let (body, signed) = gh_delivery("d-1", &issue_body(1));
        let (body2, signed2) = gh_delivery("d-2", &issue_body(2));
        // 2 MiB: over the default 1 MiB, within GitHub's 25 MiB.
        let big = format!(r#"{{"action":"opened","pad":"{}"}}"#, "x".repeat(2 * MIB));
        let (big_body, big_signed) = gh_delivery("d-big", &big);
        let forged = Headers::from_pairs(github_headers("wrong", body.as_ref(), "issues", "d-3"));
        let mut statuses = Vec::new();
        for (body, headers) in [
            (body.clone(), signed.clone()),
            (body.clone(), signed.clone()),
            (body2, signed2),
            (big_body, big_signed),
            (body.clone(), forged),
            (body, Headers::new()),
        ] {
            let outcome = pipeline.handle(body, &headers).await;
            let what = match &outcome.kind {
                OutcomeKind::Processed { .. } => "processed".to_owned(),
                OutcomeKind::Duplicate => "duplicate".to_owned(),
                other => format!("{other:?}"),
            };
            statuses.push((outcome.status(), what));
        }
        let counts = ["d-1", "d-2", "d-big", "d-3"]
            .map(|id| tally.count(id))
            .to_vec();
        (statuses, counts)
    }

    fn github_profile() -> ProviderProfile {
        GitHub::builder(PIPE_SECRET).build().unwrap().profile()
    }

    fn verifier() -> GitHub {
        GitHub::builder(PIPE_SECRET).build().unwrap()
    }

    #[tokio::test]
    async fn a_verifier_behind_a_pointer_routes_and_dedupes_like_the_bare_one() {
        let bare = run(verifier()).await;
        let (statuses, counts) = &bare;
        assert_eq!(
            statuses.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [200, 200, 200, 200, 401, 400]
        );
        assert_eq!(statuses[0].1, "processed");
        assert_eq!(statuses[1].1, "duplicate");
        assert_eq!(statuses[3].1, "processed", "2 MiB is within GitHub's limit");
        assert_eq!(counts, &[1, 1, 1, 0]);

        assert_eq!(run(Arc::new(verifier())).await, bare, "Arc<GitHub>");
        assert_eq!(run(Box::new(verifier())).await, bare, "Box<GitHub>");
        let shared: Arc<dyn Verifier> = Arc::new(verifier());
        assert_eq!(run(shared).await, bare, "Arc<dyn Verifier>");
        let boxed: Box<dyn Verifier> = Box::new(verifier());
        assert_eq!(run(boxed).await, bare, "Box<dyn Verifier>");
    }
}
