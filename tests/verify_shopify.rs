//! The Shopify verifier against `@shopify/shopify-api`'s webhook validation.

mod common;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use base64::Engine as _;
use common::{assert_raw_bytes_verify, assert_status, at, headers, replace, with, NOW};
use hookgate::testing::{
    shopify_headers, shopify_hmac, SHOPIFY_TEST_API_VERSION, SHOPIFY_TEST_SHOP,
};
use hookgate::{ConfigError, IdentifyError, Shopify, Verifier, VerifyError};

const SECRET: &str = "shpss_app_secret";
const BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
const HMAC: &str = "X-Shopify-Hmac-Sha256";
const WEBHOOK_ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";

fn shopify() -> Shopify {
    Shopify::builder(SECRET).build().unwrap()
}

fn signed(body: &[u8]) -> Vec<(String, String)> {
    shopify_headers(SECRET, body, "orders/create", WEBHOOK_ID)
}

fn err(value: &[u8], body: &[u8]) -> VerifyError {
    let e = shopify()
        .verify(
            body,
            &headers(replace(&signed(body), HMAC, Some(value))),
            at(NOW),
        )
        .unwrap_err();
    assert_status(&e);
    e
}

fn tag(secret: &str, body: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[test]
fn round_trip_verifies_and_identifies() {
    let pairs = with(
        &with(
            &with(
                &signed(BODY),
                "X-Shopify-Event-Id",
                "98880550-7158-44d4-b7cd-2c97c8a091b5",
            ),
            "X-Shopify-Triggered-At",
            "2023-03-29T18:00:27.877041743Z",
        ),
        "X-Shopify-Name",
        "my-webhook",
    );
    let h = headers(pairs);
    assert!(shopify().detect(&h));
    assert_eq!(shopify().provider(), "shopify");
    let verified = shopify().verify(BODY, &h, at(NOW)).unwrap();
    assert_eq!((verified.signed_at, verified.secret_index), (None, 0));
    let identity = shopify().identify(BODY, &h).unwrap();
    assert_eq!(identity.id, WEBHOOK_ID);
    assert_eq!(identity.kind, "orders/create");
    assert_eq!(identity.metadata("shop_domain"), Some(SHOPIFY_TEST_SHOP));
    assert_eq!(
        identity.metadata("api_version"),
        Some(SHOPIFY_TEST_API_VERSION)
    );
    assert_eq!(
        identity.metadata("event_id"),
        Some("98880550-7158-44d4-b7cd-2c97c8a091b5")
    );
    assert_eq!(
        identity.metadata("triggered_at"),
        Some("2023-03-29T18:00:27.877041743Z")
    );
    assert_eq!(identity.metadata("name"), Some("my-webhook"));
    assert_eq!(
        identity.occurred_at.map(|t| t.unix_timestamp()),
        Some(1_680_112_827)
    );
}

#[test]
fn the_event_id_is_metadata_never_the_dedup_id() {
    // One merchant action, two topics: same event id, two deliveries to keep.
    let first = with(
        &shopify_headers(SECRET, BODY, "orders/create", "w-1"),
        "X-Shopify-Event-Id",
        "e-1",
    );
    let second = with(
        &shopify_headers(SECRET, BODY, "orders/paid", "w-2"),
        "X-Shopify-Event-Id",
        "e-1",
    );
    let a = shopify().identify(BODY, &headers(first)).unwrap();
    let b = shopify().identify(BODY, &headers(second)).unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(a.metadata("event_id"), b.metadata("event_id"));
}

#[test]
fn identify_requires_the_headers_the_library_requires() {
    for name in [
        "X-Shopify-Topic",
        "X-Shopify-Shop-Domain",
        "X-Shopify-API-Version",
        "X-Shopify-Webhook-Id",
    ] {
        let h = headers(replace(&signed(BODY), name, None));
        assert!(shopify().verify(BODY, &h, at(NOW)).is_ok());
        assert_eq!(
            shopify().identify(BODY, &h),
            Err(IdentifyError::MissingHeader(name)),
            "{name}"
        );
        let empty = headers(replace(&signed(BODY), name, Some(b"")));
        assert_eq!(
            shopify().identify(BODY, &empty),
            Err(IdentifyError::MissingHeader(name)),
            "{name}"
        );
    }
    let twice = headers(with(&signed(BODY), "x-shopify-webhook-id", "other"));
    assert!(matches!(
        shopify().identify(BODY, &twice),
        Err(IdentifyError::MalformedHeader {
            header: "X-Shopify-Webhook-Id",
            ..
        })
    ));
    // An unparsable triggered-at is kept as metadata but dates nothing.
    let odd = headers(with(&signed(BODY), "X-Shopify-Triggered-At", "yesterday"));
    let identity = shopify().identify(BODY, &odd).unwrap();
    assert_eq!(
        (identity.occurred_at, identity.metadata("triggered_at")),
        (None, Some("yesterday"))
    );
}

#[test]
fn event_webhooks_use_the_unprefixed_headers() {
    let value = shopify_hmac(SECRET, BODY);
    let pairs = [
        ("shopify-hmac-sha256", value.as_str()),
        ("shopify-topic", "orders/create"),
        ("shopify-shop-domain", "shop.myshopify.com"),
        ("shopify-api-version", "2025-10"),
        ("shopify-webhook-id", "w-9"),
        ("shopify-event-id", "e-9"),
    ];
    let h = headers(pairs);
    assert!(shopify().detect(&h));
    assert!(shopify().verify(BODY, &h, at(NOW)).is_ok());
    let identity = shopify().identify(BODY, &h).unwrap();
    assert_eq!(
        (identity.id.as_str(), identity.kind.as_str()),
        ("w-9", "orders/create")
    );
    assert_eq!(identity.metadata("event_id"), Some("e-9"));
    // Event webhooks require the event id.
    let no_event = headers(
        pairs
            .iter()
            .copied()
            .filter(|(n, _)| *n != "shopify-event-id"),
    );
    assert_eq!(
        shopify().identify(BODY, &no_event),
        Err(IdentifyError::MissingHeader("shopify-event-id"))
    );
    // The library picks the event family whenever its HMAC header is present, so a
    // wrong unprefixed HMAC is not rescued by a correct classic one.
    let mixed = headers(with(
        &signed(BODY),
        "shopify-hmac-sha256",
        &shopify_hmac("other", BODY),
    ));
    assert!(matches!(
        shopify().verify(BODY, &mixed, at(NOW)),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn missing_empty_repeated_headers_and_empty_body() {
    let none = headers(replace(&signed(BODY), HMAC, None));
    assert!(!shopify().detect(&none));
    let e = shopify().verify(BODY, &none, at(NOW)).unwrap_err();
    assert_eq!(e, VerifyError::MissingHeader(HMAC));
    assert_status(&e);
    // The library treats an empty header value as missing.
    assert_eq!(err(b"", BODY), VerifyError::MissingHeader(HMAC));

    let twice = headers(with(
        &signed(BODY),
        "x-shopify-hmac-sha256",
        &shopify_hmac(SECRET, BODY),
    ));
    let e = shopify().verify(BODY, &twice, at(NOW)).unwrap_err();
    assert_eq!(e, VerifyError::RepeatedHeader(HMAC));
    assert_status(&e);

    assert_eq!(
        err(shopify_hmac(SECRET, b"").as_bytes(), b""),
        VerifyError::EmptyBody
    );
}

#[test]
fn only_the_canonical_padded_standard_base64_matches() {
    let t = tag(SECRET, BODY);
    let canonical = STANDARD.encode(t);
    assert_eq!(canonical, shopify_hmac(SECRET, BODY));
    for value in [
        STANDARD_NO_PAD.encode(t),
        hex::encode(t),
        format!("{canonical} "),
        format!(" {canonical}"),
        format!("{canonical}="),
    ] {
        assert!(
            matches!(
                err(value.as_bytes(), BODY),
                VerifyError::MalformedHeader { header: HMAC, .. }
            ),
            "{value}"
        );
    }
    let url_safe = URL_SAFE.encode(t);
    if url_safe != canonical {
        assert!(matches!(
            err(url_safe.as_bytes(), BODY),
            VerifyError::MalformedHeader { .. }
        ));
    }
    let other = STANDARD.encode(tag("other", BODY));
    assert_eq!(
        err(other.as_bytes(), BODY),
        VerifyError::SignatureMismatch {
            secret_has_whitespace: false
        }
    );
}

#[test]
fn header_name_is_case_insensitive() {
    let value = shopify_hmac(SECRET, BODY);
    for name in ["x-shopify-hmac-sha256", "X-SHOPIFY-HMAC-SHA256", HMAC] {
        assert!(
            shopify()
                .verify(BODY, &headers([(name, value.as_str())]), at(NOW))
                .is_ok(),
            "{name}"
        );
    }
}

#[test]
fn rotation_accepts_any_configured_secret() {
    let both = Shopify::builder("new").secret("old").build().unwrap();
    assert_eq!(both.secrets().len(), 2);
    for (secret, index) in [("new", 0), ("old", 1)] {
        let h = headers(shopify_headers(secret, BODY, "orders/create", "w"));
        assert_eq!(both.verify(BODY, &h, at(NOW)).unwrap().secret_index, index);
    }
}

#[test]
fn bodies_are_verified_as_raw_bytes() {
    assert_raw_bytes_verify(&shopify(), signed, Some(VerifyError::EmptyBody));
}

#[test]
fn empty_secrets_are_refused_at_build_time() {
    assert_eq!(
        Shopify::builder("ok")
            .secret(Vec::new())
            .build()
            .unwrap_err(),
        ConfigError::EmptySecret { index: 1 }
    );
}

#[test]
fn debug_output_never_shows_the_secret() {
    let shown = format!("{:?}", shopify());
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("secrets: 1"), "{shown}");
}
