//! `Headers` built from an `http::HeaderMap` (feature `http`): every value kept,
//! repeated ones included, raw bytes untouched, names case-insensitive.
#![cfg(feature = "http")]

use hookgate::{testing, GitHub, HeaderError, Headers, Verifier, VerifyError};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use time::OffsetDateTime;

fn map(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_bytes(value).expect("valid header value"),
        );
    }
    map
}

#[test]
fn repeated_values_and_raw_bytes_are_kept() {
    let headers = Headers::from(&map(&[
        ("x-shopify-topic", b"orders/create"),
        ("x-forwarded-for", b"10.0.0.1"),
        ("x-forwarded-for", b"10.0.0.2"),
        ("x-opaque", b"caf\xe9"),
    ]));
    assert_eq!(headers.len(), 4);
    assert_eq!(headers.get("X-Shopify-Topic"), Ok(Some("orders/create")));
    let forwarded: Vec<&[u8]> = headers.get_all("X-Forwarded-For").collect();
    assert_eq!(forwarded, vec![&b"10.0.0.1"[..], b"10.0.0.2"]);
    assert!(matches!(
        headers.get("x-forwarded-for"),
        Err(HeaderError::Repeated(_))
    ));
    assert_eq!(headers.get_bytes("x-opaque"), Ok(Some(&b"caf\xe9"[..])));
    assert!(matches!(
        headers.get("x-opaque"),
        Err(HeaderError::NotText(_))
    ));
}

#[test]
fn a_delivery_verifies_through_a_header_map() {
    let secret = "It's a Secret to Everybody";
    let body = br#"{"action":"opened","issue":{"number":7}}"#;
    let mut map = HeaderMap::new();
    for (name, value) in testing::github_headers(secret, body, "issues", "d-1") {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid name"),
            HeaderValue::from_str(&value).expect("valid value"),
        );
    }
    let github = GitHub::builder(secret).build().expect("valid secret");
    let now = OffsetDateTime::now_utc();
    let headers = Headers::from(&map);
    assert!(github.detect(&headers));
    assert!(github.verify(body, &headers, now).is_ok());
    let identity = github.identify(body, &headers).expect("identifiable");
    assert_eq!(
        (identity.id.as_str(), identity.kind.as_str()),
        ("d-1", "issues.opened")
    );

    // A signature header sent twice reaches the verifier as two values and is refused.
    let signature = map["x-hub-signature-256"].clone();
    map.append("x-hub-signature-256", signature);
    let headers = Headers::from(&map);
    assert_eq!(
        github.verify(body, &headers, now),
        Err(VerifyError::RepeatedHeader("X-Hub-Signature-256"))
    );
}

#[test]
fn request_parts_carry_the_method_and_the_target_as_received() {
    let (parts, ()) = http::Request::post("/hooks/twilio?To=%2B1555&Body=a+b")
        .header("Host", "example.com")
        .body(())
        .unwrap()
        .into_parts();
    let headers = Headers::from(&parts);
    assert_eq!(headers.method(), Some("POST"));
    assert_eq!(
        headers.request_target(),
        Some("/hooks/twilio?To=%2B1555&Body=a+b")
    );
    assert_eq!(headers.get("host"), Ok(Some("example.com")));
    // The query (which may carry tokens) stays out of Debug.
    let debug = format!("{headers:?}");
    assert!(
        debug.contains("/hooks/twilio") && !debug.contains("1555"),
        "{debug}"
    );

    // A client that sent the absolute form: the whole URL.
    let (parts, ()) = http::Request::put("https://example.com:8443/a?b=c")
        .body(())
        .unwrap()
        .into_parts();
    let headers = Headers::from(&parts);
    assert_eq!(headers.method(), Some("PUT"));
    assert_eq!(
        headers.request_target(),
        Some("https://example.com:8443/a?b=c")
    );

    // From a bare HeaderMap, or pairs: no request line.
    assert_eq!(
        Headers::from(&map(&[("host", b"x")])).request_target(),
        None
    );
    assert_eq!(Headers::new().method(), None);
    // The request line is part of equality.
    assert_ne!(Headers::new(), Headers::new().with_request("POST", "/"));
}
