//! Properties of every verifier: a single changed byte of the body or of the
//! signature header is always rejected, and no header value makes a parser panic.

mod common;

use common::{at, headers, NOW};
use hookgate::testing::{github_signature, shopify_hmac, stripe_signature};
use hookgate::{GitHub, Shopify, Stripe, Verifier};
use proptest::prelude::*;

const CASES: u32 = 10_000;
const SECRET: &str = "whsec_property_secret";

fn verifiers() -> [(Box<dyn Verifier>, &'static str); 3] {
    [
        (
            Box::new(Stripe::builder(SECRET).build().unwrap()),
            "Stripe-Signature",
        ),
        (
            Box::new(GitHub::builder(SECRET).build().unwrap()),
            "X-Hub-Signature-256",
        ),
        (
            Box::new(Shopify::builder(SECRET).build().unwrap()),
            "X-Shopify-Hmac-Sha256",
        ),
    ]
}

/// The valid signature header value of each provider for `body`.
fn signature(provider: &str, body: &[u8]) -> Vec<u8> {
    match provider {
        "stripe" => stripe_signature(SECRET, body, at(NOW)),
        "github" => github_signature(SECRET, body),
        _ => shopify_hmac(SECRET, body),
    }
    .into_bytes()
}

fn verifies(verifier: &dyn Verifier, header: &str, value: &[u8], body: &[u8]) -> bool {
    verifier
        .verify(body, &headers([(header, value)]), at(NOW))
        .is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_single_byte_change_of_the_body_is_rejected(
        body in proptest::collection::vec(any::<u8>(), 1..64),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        for (verifier, header) in verifiers() {
            let value = signature(verifier.provider(), &body);
            prop_assert!(verifies(&*verifier, header, &value, &body));
            let mut changed = body.clone();
            let i = index.index(changed.len());
            changed[i] ^= flip;
            prop_assert!(!verifies(&*verifier, header, &value, &changed));
        }
    }

    #[test]
    fn any_single_byte_change_of_the_signature_is_rejected(
        body in proptest::collection::vec(any::<u8>(), 1..64),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        for (verifier, header) in verifiers() {
            let mut value = signature(verifier.provider(), &body);
            let i = index.index(value.len());
            value[i] ^= flip;
            prop_assert!(!verifies(&*verifier, header, &value, &body), "{}", String::from_utf8_lossy(&value));
        }
    }

    #[test]
    fn arbitrary_header_bytes_never_panic(
        value in proptest::collection::vec(any::<u8>(), 0..160),
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        for (verifier, header) in verifiers() {
            let h = headers([(header, value.as_slice())]);
            let _ = verifier.verify(&body, &h, at(NOW));
            let _ = verifier.identify(&body, &h);
        }
    }

    #[test]
    fn stripe_shaped_headers_never_panic(value in "((t|v1|v0|T| t|x)(=[-+ 0-9a-f.eE]{0,70})?,?){0,6}") {
        let stripe = Stripe::builder(SECRET).build().unwrap();
        let strict = Stripe::builder(SECRET)
            .max_future_skew(std::time::Duration::from_secs(1))
            .require_plain_timestamp()
            .build()
            .unwrap();
        let h = headers([("Stripe-Signature", value.as_str())]);
        let _ = stripe.verify(b"{}", &h, at(NOW));
        let _ = strict.verify(b"{}", &h, at(NOW));
    }

    #[test]
    fn github_and_shopify_shaped_headers_never_panic(
        hex in "(sha256=|sha1=|SHA256=)?[0-9a-fA-F =]{0,70}",
        b64 in "[A-Za-z0-9+/=_ -]{0,50}",
    ) {
        let github = GitHub::builder(SECRET).build().unwrap();
        let shopify = Shopify::builder(SECRET).build().unwrap();
        let _ = github.verify(b"{}", &headers([("X-Hub-Signature-256", hex.as_str())]), at(NOW));
        let _ = shopify.verify(b"{}", &headers([("X-Shopify-Hmac-Sha256", b64.as_str())]), at(NOW));
    }

    #[test]
    fn arbitrary_bodies_never_panic_identify(
        body in proptest::collection::vec(any::<u8>(), 0..96),
        json in r#"\{("(id|type|action|created|object|x)":("[a-z.]{0,8}"|-?[0-9]{1,20}|\[\]|\{\}|null),?){0,5}\}"#,
    ) {
        for (verifier, _) in verifiers() {
            let h = headers([
                ("X-GitHub-Delivery", "d"), ("X-GitHub-Event", "push"),
                ("X-Shopify-Topic", "t"), ("X-Shopify-Webhook-Id", "w"),
                ("X-Shopify-Shop-Domain", "s"), ("X-Shopify-API-Version", "v"),
            ]);
            let _ = verifier.identify(&body, &h);
            let _ = verifier.identify(json.as_bytes(), &h);
        }
    }
}
