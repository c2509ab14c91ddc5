//! The shared test vectors (tests/data/vectors.json, copied from the providers'
//! documentation and their documented algorithms), run against every supported
//! provider's verifier.

mod common;

use std::time::Duration;

use common::{at, headers};
use hookgate::{GitHub, Shopify, StandardWebhooks, Stripe, Verifier, VerifyError};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    provider: String,
    source: String,
    secret: String,
    body: String,
    headers: Vec<(String, String)>,
    now: Option<i64>,
    tolerance_s: Option<u64>,
    expect: String,
}

/// Providers whose verifier does not exist yet; their cases are counted as skipped.
const NOT_YET_SUPPORTED: &[&str] = &[];

fn verifier(case: &Case) -> Option<Box<dyn Verifier>> {
    let secret = case.secret.as_str();
    Some(match case.provider.as_str() {
        "stripe" => {
            let mut builder = Stripe::builder(secret);
            if let Some(tolerance) = case.tolerance_s {
                builder = builder.tolerance(Duration::from_secs(tolerance));
            }
            Box::new(builder.build().unwrap())
        }
        "github" => Box::new(GitHub::builder(secret).build().unwrap()),
        "shopify" => Box::new(Shopify::builder(secret).build().unwrap()),
        "standard" => {
            let mut builder = StandardWebhooks::builder(secret);
            if let Some(tolerance) = case.tolerance_s {
                builder = builder.tolerance(Duration::from_secs(tolerance));
            }
            Box::new(builder.build().unwrap())
        }
        _ => return None,
    })
}

#[test]
fn every_vector_of_a_supported_provider_gives_the_expected_verdict() {
    let cases: Vec<Case> =
        serde_json::from_str(include_str!("data/vectors.json")).expect("vectors.json parses");
    let (mut ran, mut skipped) = (0, 0);
    for case in &cases {
        let Some(verifier) = verifier(case) else {
            assert!(
                NOT_YET_SUPPORTED.contains(&case.provider.as_str()),
                "unknown provider {}",
                case.provider
            );
            skipped += 1;
            continue;
        };
        let h = headers(case.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        assert!(verifier.detect(&h), "{}", case.source);
        let now = at(case.now.unwrap_or(1_700_000_000));
        let verdict = verifier.verify(case.body.as_bytes(), &h, now);
        match case.expect.as_str() {
            "ok" => assert!(verdict.is_ok(), "{}: {verdict:?}", case.source),
            "reject" => assert!(verdict.is_err(), "{}", case.source),
            other => panic!("unknown expectation {other}"),
        }
        ran += 1;
    }
    assert_eq!((ran, skipped), (5, 0), "every provider's cases run");
}

#[test]
fn the_stripe_vector_is_rejected_for_its_age_one_second_past_the_limit() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("data/vectors.json")).unwrap();
    let late = cases
        .iter()
        .find(|c| c.provider == "stripe" && c.expect == "reject")
        .unwrap();
    let verifier = verifier(late).unwrap();
    let h = headers(late.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let err = verifier
        .verify(late.body.as_bytes(), &h, at(late.now.unwrap()))
        .unwrap_err();
    assert_eq!(
        err,
        VerifyError::TimestampOutsideTolerance {
            skew_seconds: 301,
            tolerance_seconds: 300
        }
    );
    // One second earlier it passes: the boundary is inclusive.
    assert!(verifier
        .verify(late.body.as_bytes(), &h, at(late.now.unwrap() - 1))
        .is_ok());
}

#[test]
fn detection_picks_the_provider_or_reports_an_unknown_one() {
    let verifiers: Vec<Box<dyn Verifier>> = vec![
        Box::new(Stripe::builder("s").build().unwrap()),
        Box::new(GitHub::builder("g").build().unwrap()),
        Box::new(Shopify::builder("h").build().unwrap()),
    ];
    for (header, provider) in [
        ("Stripe-Signature", "stripe"),
        ("x-hub-signature-256", "github"),
        ("X-Hub-Signature", "github"),
        ("X-Shopify-Hmac-Sha256", "shopify"),
        ("shopify-hmac-sha256", "shopify"),
    ] {
        let delivery = headers([(header, "x")]);
        let found: Vec<&str> = verifiers
            .iter()
            .filter(|v| v.detect(&delivery))
            .map(|v| v.provider())
            .collect();
        assert_eq!(found, [provider], "{header}");
    }
    let unknown = headers([("webhook-signature", "v1,x")]);
    assert!(verifiers.iter().all(|v| !v.detect(&unknown)));
    assert_eq!(VerifyError::UnknownProvider.status(), 400);
}
