//! Verifies and identifies one delivery from each provider, the way an HTTP handler
//! would: pick the verifier by its signature header, check the raw bytes, name the
//! event, and map a rejection to its HTTP status. The deliveries are signed with
//! `hookgate::testing`, exactly as the providers sign them.
//!
//! Run with `cargo run --example verify_deliveries`.

use hookgate::testing::{github_headers, shopify_headers, stripe_headers};
use hookgate::{GitHub, Headers, Shopify, Stripe, Verifier, VerifyError};
use time::OffsetDateTime;

/// The first verifier whose signature header is present (detection proves
/// nothing; `verify` does).
fn detect_provider<'v>(
    verifiers: &'v [Box<dyn Verifier>],
    headers: &Headers,
) -> Result<&'v dyn Verifier, VerifyError> {
    verifiers
        .iter()
        .find(|v| v.detect(headers))
        .map(|v| &**v)
        .ok_or(VerifyError::UnknownProvider)
}

fn handle(verifiers: &[Box<dyn Verifier>], body: &[u8], headers: &Headers) -> u16 {
    let now = OffsetDateTime::now_utc();
    let outcome = detect_provider(verifiers, headers).and_then(|verifier| {
        verifier.verify(body, headers, now)?;
        Ok(verifier)
    });
    match outcome {
        Ok(verifier) => match verifier.identify(body, headers) {
            Ok(event) => {
                println!("{} {} ({})", verifier.provider(), event.kind, event.id);
                200
            }
            Err(err) => {
                println!("unusable payload: {err}");
                err.status()
            }
        },
        Err(err) => {
            println!("rejected: {err}");
            err.status()
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verifiers: Vec<Box<dyn Verifier>> = vec![
        Box::new(Stripe::builder("whsec_example").build()?),
        Box::new(GitHub::builder("github-example").build()?),
        Box::new(Shopify::builder("shopify-example").build()?),
    ];
    let now = OffsetDateTime::now_utc();

    let stripe_body =
        br#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000}"#;
    let stripe = Headers::from_pairs(stripe_headers("whsec_example", stripe_body, now));
    assert_eq!(handle(&verifiers, stripe_body, &stripe), 200);

    let github_body = br#"{"action":"opened","issue":{"number":1}}"#;
    let github = Headers::from_pairs(github_headers(
        "github-example",
        github_body,
        "issues",
        "d-1",
    ));
    assert_eq!(handle(&verifiers, github_body, &github), 200);

    let shopify_body = br#"{"id":820982911946154508}"#;
    let shopify = Headers::from_pairs(shopify_headers(
        "shopify-example",
        shopify_body,
        "orders/create",
        "w-1",
    ));
    assert_eq!(handle(&verifiers, shopify_body, &shopify), 200);

    // The same Stripe headers on a tampered body: 401.
    assert_eq!(handle(&verifiers, br#"{"id":"evt_2"}"#, &stripe), 401);
    // No known signature header: 400.
    let err = detect_provider(&verifiers, &Headers::new()).unwrap_err();
    assert_eq!(err, VerifyError::UnknownProvider);
    assert_eq!(handle(&verifiers, b"{}", &Headers::new()), 400);
    Ok(())
}
