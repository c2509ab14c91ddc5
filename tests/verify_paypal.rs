//! PayPal: the transmission signature over
//! `{transmission_id}|{transmission_time}|{webhook_id}|{crc32(body)}`, checked
//! with the certificate `paypal-cert-url` names, fetched through a
//! `CertificateSource`, chained to the trust anchors, named like PayPal's and
//! within its dates. Every rejection reason, rotation, caching, and the
//! pipeline's 503 when the source is down or slow.
#![cfg(feature = "paypal")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hookgate::testing::{PayPalTestPki, StaticCertificates};
use hookgate::verify::{CertificateProblem, CertificateSource, PayPal, TrustAnchors};
use hookgate::{ConfigError, Headers, Verified, Verifier, VerifyError};
use proptest::prelude::*;
use time::OffsetDateTime;

const URL: &str = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-df8cd2d5";
const OTHER_URL: &str = "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-2";
const WEBHOOK: &str = "1JE4291016473214C";
const OLD_WEBHOOK: &str = "8PT597110X687430L";
const BODY: &[u8] = br#"{"id":"WH-2WR32451HC0233532-67976317FL4543714","event_version":"1.0","create_time":"2026-11-01T10:49:03.439Z","resource_type":"capture","event_type":"PAYMENT.CAPTURE.COMPLETED","summary":"Payment completed for $ 7.47 USD","resource":{"id":"42311647XV020574X"}}"#;

fn pki() -> &'static PayPalTestPki {
    PayPalTestPki::shared()
}

fn anchors() -> TrustAnchors {
    TrustAnchors::from_pem(pki().root_pem()).unwrap()
}

fn source() -> Arc<StaticCertificates> {
    Arc::new(StaticCertificates::new([
        (URL, pki().chain_pem()),
        (OTHER_URL, pki().chain_pem()),
    ]))
}

fn verifier_with(source: impl CertificateSource + 'static) -> PayPal {
    PayPal::builder(WEBHOOK, source)
        .trust_anchors(anchors())
        .build()
        .unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn signed(url: &str, webhook: &str, body: &[u8]) -> Vec<(String, String)> {
    pki().headers(url, webhook, body, now())
}

/// `pairs` with header `name` replaced by `value`, or removed for `None`.
fn with(pairs: &[(String, String)], name: &str, value: Option<&str>) -> Headers {
    let mut out: Vec<(String, String)> = pairs
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    if let Some(value) = value {
        out.push((name.to_owned(), value.to_owned()));
    }
    Headers::from_pairs(out)
}

/// What the pipeline does: await the preparation, then verify.
async fn check(paypal: &PayPal, body: &[u8], headers: &Headers) -> Result<Verified, VerifyError> {
    let at = now();
    if let Some(prepare) = paypal.prepare(headers, at) {
        prepare.await?;
    }
    paypal.verify(body, headers, at)
}

fn untrusted(err: VerifyError) -> CertificateProblem {
    match err {
        VerifyError::CertificateUntrusted(problem) => {
            assert_eq!(VerifyError::CertificateUntrusted(problem).status(), 401);
            problem
        }
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }
}

#[tokio::test]
async fn a_signed_delivery_verifies_and_names_its_event() {
    let paypal = verifier_with(source());
    let pairs = signed(URL, WEBHOOK, BODY);
    let headers = Headers::from_pairs(pairs.clone());
    assert!(paypal.detect(&headers));
    assert!(!paypal.detect(&Headers::from_pairs([("X-Other", "1")])));
    let verified = check(&paypal, BODY, &headers).await.unwrap();
    assert_eq!(verified.secret_index, 0);
    let time = &pairs
        .iter()
        .find(|(n, _)| n == "PAYPAL-TRANSMISSION-TIME")
        .unwrap()
        .1;
    let signed_at =
        OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(verified.signed_at, Some(signed_at));
    let identity = paypal.identify(BODY, &headers).unwrap();
    assert_eq!(identity.id, "WH-2WR32451HC0233532-67976317FL4543714");
    assert_eq!(identity.kind, "PAYMENT.CAPTURE.COMPLETED");
    assert_eq!(
        identity.occurred_at.map(|t| t.unix_timestamp()),
        Some(1_793_530_143)
    );
    assert!(identity.metadata("transmission_id").is_some());
    assert_eq!(paypal.provider(), "paypal");
}

#[tokio::test]
async fn each_missing_header_is_named_and_nothing_is_fetched() {
    let source = source();
    let paypal = verifier_with(source.clone());
    let pairs = signed(URL, WEBHOOK, BODY);
    for name in [
        "paypal-transmission-id",
        "paypal-transmission-time",
        "paypal-transmission-sig",
        "paypal-cert-url",
        "paypal-auth-algo",
    ] {
        for value in [None, Some("")] {
            let headers = with(&pairs, name, value);
            assert!(paypal.prepare(&headers, now()).is_none(), "{name}");
            let err = paypal.verify(BODY, &headers, now()).unwrap_err();
            assert_eq!(err, VerifyError::MissingHeader(name), "{name} {value:?}");
            assert_eq!(err.status(), 400);
        }
    }
    assert_eq!(source.fetches(), 0);
}

#[tokio::test]
async fn a_repeated_header_is_refused() {
    let paypal = verifier_with(source());
    let mut pairs = signed(URL, WEBHOOK, BODY);
    pairs.push(("paypal-cert-url".to_owned(), OTHER_URL.to_owned()));
    let headers = Headers::from_pairs(pairs);
    assert!(paypal.prepare(&headers, now()).is_none());
    let err = paypal.verify(BODY, &headers, now()).unwrap_err();
    assert_eq!(err, VerifyError::RepeatedHeader("paypal-cert-url"));
}

#[tokio::test]
async fn another_algorithm_is_refused_by_name() {
    let source = source();
    let paypal = verifier_with(source.clone());
    let pairs = signed(URL, WEBHOOK, BODY);
    for algo in [
        "SHA1withRSA",
        "SHA512withRSA",
        "sha256withrsa",
        "SHA256withECDSA",
    ] {
        let headers = with(&pairs, "paypal-auth-algo", Some(algo));
        let err = check(&paypal, BODY, &headers).await.unwrap_err();
        assert_eq!(
            err,
            VerifyError::NoSupportedSignature {
                header: "paypal-auth-algo",
                scheme: "SHA256withRSA"
            },
            "{algo}"
        );
        assert_eq!(err.status(), 400);
    }
    assert_eq!(source.fetches(), 0);
}

#[tokio::test]
async fn certificate_urls_off_paypals_hosts_are_refused_unfetched() {
    let source = source();
    let paypal = verifier_with(source.clone());
    let pairs = signed(URL, WEBHOOK, BODY);
    for url in [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://evil.example/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
        "https://api.paypal.com@evil.example/v1/notifications/certs/CERT-1",
        "https://evil.example@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:443/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/notifications/certs/CERT-1?u=https://evil.example",
        "https://api.paypal.com/v1/notifications/certs/..%2F..%2Fevil",
        "https://api.paypal.com/v1/other/CERT-1",
        "https://www.paypal.com/v1/notifications/certs/CERT-1",
        "ftp://api.paypal.com/v1/notifications/certs/CERT-1",
    ] {
        let headers = with(&pairs, "paypal-cert-url", Some(url));
        assert!(paypal.prepare(&headers, now()).is_none(), "{url}");
        let err = paypal.verify(BODY, &headers, now()).unwrap_err();
        assert!(
            matches!(err, VerifyError::CertificateUrlRefused { .. }),
            "{url}: {err:?}"
        );
        assert_eq!(err.status(), 401);
    }
    assert_eq!(source.fetches(), 0, "no refused URL reaches the source");
}

#[tokio::test]
async fn a_certificate_that_does_not_chain_to_an_anchor_is_untrusted() {
    // A forger's certificate: PayPal's name on a self-signed certificate.
    let forged = verifier_with(StaticCertificates::new([(URL, pki().self_signed_pem())]));
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    let err = check(&forged, BODY, &headers).await.unwrap_err();
    assert_eq!(untrusted(err), CertificateProblem::NoTrustedChain);
    assert_eq!(
        forged.cached_certificates(),
        0,
        "nothing untrusted is cached"
    );
    // The signing certificate served without its intermediate: no path to the root.
    let alone = verifier_with(StaticCertificates::new([(URL, pki().leaf_pem())]));
    let err = check(&alone, BODY, &headers).await.unwrap_err();
    assert_eq!(untrusted(err), CertificateProblem::NoTrustedChain);
    // ... unless the intermediate is pinned as the anchor, as PayPal's SDKs do.
    let pinned = PayPal::builder(WEBHOOK, StaticCertificates::new([(URL, pki().leaf_pem())]))
        .trust_anchors(TrustAnchors::from_pem(pki().intermediate_pem()).unwrap())
        .build()
        .unwrap();
    check(&pinned, BODY, &headers).await.unwrap();
    // The served chain in another order still builds.
    let reversed = format!("{}{}", pki().intermediate_pem(), pki().leaf_pem());
    let reordered = verifier_with(StaticCertificates::new([(URL, reversed)]));
    let err = check(&reordered, BODY, &headers).await.unwrap_err();
    assert_eq!(
        untrusted(err),
        CertificateProblem::WrongSubject,
        "the first certificate is the signing one"
    );
    // Anchors that issued none of the chain (here the forger's certificate).
    let elsewhere = PayPal::builder(WEBHOOK, StaticCertificates::new([(URL, pki().chain_pem())]))
        .trust_anchors(TrustAnchors::from_pem(pki().self_signed_pem()).unwrap())
        .build()
        .unwrap();
    let err = check(&elsewhere, BODY, &headers).await.unwrap_err();
    assert_eq!(untrusted(err), CertificateProblem::NoTrustedChain);
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_untrusted() {
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    let day = time::Duration::days(1);
    let expired = pki().issue_chain(
        "messageverificationcerts.paypal.com",
        now() - 30 * day,
        now() - day,
    );
    let paypal = verifier_with(StaticCertificates::new([(URL, expired)]));
    let problem = untrusted(check(&paypal, BODY, &headers).await.unwrap_err());
    assert!(
        matches!(problem, CertificateProblem::Expired { .. }),
        "{problem:?}"
    );
    let early = pki().issue_chain(
        "messageverificationcerts.paypal.com",
        now() + day,
        now() + 30 * day,
    );
    let paypal = verifier_with(StaticCertificates::new([(URL, early)]));
    let problem = untrusted(check(&paypal, BODY, &headers).await.unwrap_err());
    assert!(
        matches!(problem, CertificateProblem::NotYetValid { .. }),
        "{problem:?}"
    );
}

#[tokio::test]
async fn a_cached_certificate_expires_with_its_not_after() {
    let soon = pki().issue_chain(
        "messageverificationcerts.paypal.com",
        now() - time::Duration::days(1),
        now() + time::Duration::hours(1),
    );
    let source = Arc::new(StaticCertificates::new([(URL, soon)]));
    let paypal = verifier_with(source.clone());
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    check(&paypal, BODY, &headers).await.unwrap();
    assert_eq!(source.fetches(), 1);
    let later = now() + time::Duration::hours(2);
    let err = paypal.verify(BODY, &headers, later).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CertificateUntrusted(CertificateProblem::Expired { .. })
        ),
        "{err:?}"
    );
    // Past its notAfter the entry no longer counts: the next delivery fetches again.
    let prepare = paypal.prepare(&headers, later).expect("a fresh fetch");
    let err = prepare.await.unwrap_err();
    assert!(matches!(
        err,
        VerifyError::CertificateUntrusted(CertificateProblem::Expired { .. })
    ));
    assert_eq!(source.fetches(), 2);
}

#[tokio::test]
async fn a_certificate_not_naming_paypal_is_untrusted() {
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    for cn in [
        "evil.example.com",
        "www.paypal.com",
        "messageverificationcerts.paypal.com.evil.example",
        "paypal.com",
    ] {
        let chain = pki().issue_chain(
            cn,
            now() - time::Duration::days(1),
            now() + time::Duration::days(1),
        );
        let paypal = verifier_with(StaticCertificates::new([(URL, chain)]));
        let problem = untrusted(check(&paypal, BODY, &headers).await.unwrap_err());
        assert_eq!(problem, CertificateProblem::WrongSubject, "{cn}");
    }
    // The sandbox certificate's name is PayPal's too.
    let sandbox = pki().issue_chain(
        "messageverificationcerts.sandbox.paypal.com",
        now() - time::Duration::days(1),
        now() + time::Duration::days(1),
    );
    let paypal = verifier_with(StaticCertificates::new([(URL, sandbox)]));
    check(&paypal, BODY, &headers).await.unwrap();
}

#[tokio::test]
async fn unreadable_or_oversized_documents_are_untrusted() {
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    for (document, expected) in [
        (
            b"<html>Service Unavailable</html>".to_vec(),
            CertificateProblem::Unreadable,
        ),
        (Vec::new(), CertificateProblem::Unreadable),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            CertificateProblem::Unreadable,
        ),
        (
            vec![b'A'; 70 * 1024],
            CertificateProblem::TooLarge { limit: 64 * 1024 },
        ),
        (
            pki().chain_pem().repeat(5).into_bytes(),
            CertificateProblem::TooManyCertificates { limit: 8 },
        ),
    ] {
        let paypal = verifier_with(StaticCertificates::new([(URL, document)]));
        let problem = untrusted(check(&paypal, BODY, &headers).await.unwrap_err());
        assert_eq!(problem, expected);
    }
}

#[tokio::test]
async fn tampering_and_the_wrong_webhook_fail_the_signature() {
    let paypal = verifier_with(source());
    let pairs = signed(URL, WEBHOOK, BODY);
    let headers = Headers::from_pairs(pairs.clone());
    check(&paypal, BODY, &headers).await.unwrap();
    let mismatch = VerifyError::SignatureMismatch {
        secret_has_whitespace: false,
    };
    // One byte of the body changed: its CRC-32 changes.
    let mut flipped = BODY.to_vec();
    flipped[10] ^= 0x01;
    assert_eq!(
        paypal.verify(&flipped, &headers, now()),
        Err(mismatch.clone())
    );
    // Signed for another webhook.
    let other = Headers::from_pairs(signed(URL, "OTHER-WEBHOOK", BODY));
    assert_eq!(check(&paypal, BODY, &other).await, Err(mismatch.clone()));
    // A verifier configured for another webhook.
    let wrong = PayPal::builder("OTHER-WEBHOOK", source())
        .trust_anchors(anchors())
        .build()
        .unwrap();
    assert_eq!(check(&wrong, BODY, &headers).await, Err(mismatch.clone()));
    // A signed header changed.
    let sig = &pairs
        .iter()
        .find(|(n, _)| n == "PAYPAL-TRANSMISSION-SIG")
        .unwrap()
        .1;
    for (name, value) in [
        (
            "paypal-transmission-id",
            "00000000-0000-4000-8000-000000000000".to_owned(),
        ),
        (
            "paypal-transmission-time",
            "2026-01-01T00:00:00Z".to_owned(),
        ),
        ("paypal-transmission-sig", {
            let mut bytes = base64_decode(sig);
            bytes[0] ^= 0x80;
            base64_encode(&bytes)
        }),
    ] {
        let tampered = with(&pairs, name, Some(&value));
        assert_eq!(
            paypal.verify(BODY, &tampered, now()),
            Err(mismatch.clone()),
            "{name}"
        );
    }
    // A signature that is not base64, or too long.
    for value in ["not base64 at all!", &"A".repeat(800)] {
        let garbled = with(&pairs, "paypal-transmission-sig", Some(value));
        let err = paypal.verify(BODY, &garbled, now()).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::MalformedHeader {
                    header: "paypal-transmission-sig",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Another key's signature (the self-signed forger's key is the leaf's own,
    // so use a signature of the right length made of zeros).
    let zeros = base64_encode(&[0u8; 256]);
    let zeroed = with(&pairs, "paypal-transmission-sig", Some(&zeros));
    assert_eq!(paypal.verify(BODY, &zeroed, now()), Err(mismatch));
}

/// The IEEE CRC-32 table (reflected polynomial 0xEDB88320).
fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (i, entry) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    table
}

/// Overwrites `body[pos..pos + 4]` so that the CRC-32 of `body` is `wanted`
/// (the classic CRC forcing: run the register back from the wanted value over
/// the suffix, forward over the prefix, and solve for the four bytes).
fn force_crc(body: &mut [u8], pos: usize, wanted: u32) {
    let table = crc_table();
    let mut reverse = [0u32; 256];
    for (i, entry) in table.iter().enumerate() {
        reverse[(entry >> 24) as usize] = (entry << 8) ^ i as u32;
    }
    let mut backward = wanted ^ 0xFFFF_FFFF;
    for &byte in body[pos + 4..].iter().rev() {
        backward = (backward << 8) ^ reverse[(backward >> 24) as usize] ^ u32::from(byte);
    }
    for _ in 0..4 {
        backward = (backward << 8) ^ reverse[(backward >> 24) as usize];
    }
    let mut forward = crc32fast::hash(&body[..pos]) ^ 0xFFFF_FFFF;
    for byte in &mut body[pos..pos + 4] {
        *byte = ((forward ^ backward) & 0xFF) as u8;
        forward >>= 8;
        backward >>= 8;
    }
}

#[tokio::test]
async fn crc32_binds_the_body_weakly_as_the_readme_warns() {
    // PayPal's signature covers the body through its CRC-32 only: a captured
    // transmission verifies with another body of the same CRC-32, here one
    // naming another event. This is why `signs_identity` is false and the
    // README points at `tolerance` and at reading the resource from PayPal.
    let paypal = verifier_with(source());
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    check(&paypal, BODY, &headers).await.unwrap();
    let wanted = crc32fast::hash(BODY);
    let forged = (0u32..)
        .map(|n| {
            let mut body = format!(
                r#"{{"id":"WH-FORGED-{n}","event_type":"PAYMENT.CAPTURE.COMPLETED","x":"0000"}}"#
            )
            .into_bytes();
            let pos = body.len() - 6;
            force_crc(&mut body, pos, wanted);
            body
        })
        .find(|body| {
            let forced = &body[body.len() - 6..body.len() - 2];
            forced.iter().all(|b| b.is_ascii_alphanumeric())
        })
        .unwrap();
    assert_eq!(crc32fast::hash(&forged), wanted);
    assert!(paypal.verify(&forged, &headers, now()).is_ok());
    let identity = paypal.identify(&forged, &headers).unwrap();
    assert!(identity.id.starts_with("WH-FORGED-"), "{}", identity.id);
    assert!(!paypal.profile().signs_identity);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn two_webhook_ids_rotate() {
    let paypal = PayPal::builder(WEBHOOK, source())
        .webhook_id(OLD_WEBHOOK)
        .trust_anchors(anchors())
        .build()
        .unwrap();
    assert_eq!(
        paypal.webhook_ids().collect::<Vec<_>>(),
        [WEBHOOK, OLD_WEBHOOK]
    );
    let new = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    assert_eq!(check(&paypal, BODY, &new).await.unwrap().secret_index, 0);
    let old = Headers::from_pairs(signed(URL, OLD_WEBHOOK, BODY));
    assert_eq!(check(&paypal, BODY, &old).await.unwrap().secret_index, 1);
    let neither = Headers::from_pairs(signed(URL, "RETIRED", BODY));
    assert!(matches!(
        check(&paypal, BODY, &neither).await,
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[tokio::test]
async fn each_certificate_url_is_fetched_once() {
    let source = source();
    let paypal = verifier_with(source.clone());
    for _ in 0..5 {
        let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
        check(&paypal, BODY, &headers).await.unwrap();
        assert!(
            paypal.prepare(&headers, now()).is_none(),
            "cached: nothing to wait for"
        );
    }
    assert_eq!(source.fetches(), 1);
    let other = Headers::from_pairs(signed(OTHER_URL, WEBHOOK, BODY));
    check(&paypal, BODY, &other).await.unwrap();
    check(&paypal, BODY, &other).await.unwrap();
    assert_eq!(source.fetches(), 2);
    assert_eq!(paypal.cached_certificates(), 2);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let urls: Vec<String> = (0..5)
        .map(|i| format!("https://api.paypal.com/v1/notifications/certs/CERT-{i}"))
        .collect();
    let source = Arc::new(StaticCertificates::new(
        urls.iter().map(|u| (u.clone(), pki().chain_pem())),
    ));
    let paypal = PayPal::builder(WEBHOOK, source.clone())
        .trust_anchors(anchors())
        .cache_capacity(2)
        .build()
        .unwrap();
    for url in &urls {
        let headers = Headers::from_pairs(signed(url, WEBHOOK, BODY));
        check(&paypal, BODY, &headers).await.unwrap();
        assert!(paypal.cached_certificates() <= 2);
    }
    assert_eq!(source.fetches(), 5);
}

#[tokio::test]
async fn verify_without_preparation_is_a_transient_failure() {
    let paypal = verifier_with(source());
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    let err = paypal.verify(BODY, &headers, now()).unwrap_err();
    assert_eq!(err, VerifyError::CertificateNotFetched);
    assert_eq!(err.status(), 503);
}

#[tokio::test]
async fn a_failing_source_is_a_transient_failure() {
    let paypal = verifier_with(Down::default());
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    let err = check(&paypal, BODY, &headers).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::CertificateUnavailable(_)),
        "{err:?}"
    );
    assert_eq!(err.status(), 503);
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[test]
fn only_paypal_prepares_and_box_and_arc_forward_it() {
    let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    let github = hookgate::GitHub::builder("secret").build().unwrap();
    let stripe = hookgate::Stripe::builder("whsec_x").build().unwrap();
    assert!(github.prepare(&headers, now()).is_none());
    assert!(stripe.prepare(&headers, now()).is_none());
    let boxed: Box<dyn Verifier> = Box::new(verifier_with(source()));
    assert!(
        boxed.prepare(&headers, now()).is_some(),
        "uncached: a fetch"
    );
    let shared: Arc<dyn Verifier> = Arc::new(verifier_with(source()));
    assert!(shared.prepare(&headers, now()).is_some());
}

#[test]
fn building_refuses_what_would_never_verify() {
    let empty = PayPal::builder("", source())
        .trust_anchors(anchors())
        .build();
    assert!(matches!(
        empty,
        Err(ConfigError::InvalidKey { index: 0, .. })
    ));
    let padded = PayPal::builder(WEBHOOK, source())
        .webhook_id(" WH ")
        .trust_anchors(anchors())
        .build();
    assert!(matches!(
        padded,
        Err(ConfigError::InvalidKey { index: 1, .. })
    ));
    let no_anchor = PayPal::builder(WEBHOOK, source()).build();
    assert!(matches!(
        no_anchor,
        Err(ConfigError::InvalidTrustAnchor { .. })
    ));
    assert!(matches!(
        TrustAnchors::from_pem("no PEM here"),
        Err(ConfigError::InvalidTrustAnchor { .. })
    ));
    let debug = format!("{:?}", verifier_with(source()));
    assert!(!debug.contains(WEBHOOK), "{debug}");
}

#[tokio::test]
async fn a_tolerance_bounds_the_transmission_time() {
    let paypal = PayPal::builder(WEBHOOK, source())
        .trust_anchors(anchors())
        .tolerance(Duration::from_secs(300))
        .build()
        .unwrap();
    let fresh = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
    check(&paypal, BODY, &fresh).await.unwrap();
    let old =
        Headers::from_pairs(pki().headers(URL, WEBHOOK, BODY, now() - time::Duration::minutes(6)));
    let err = check(&paypal, BODY, &old).await.unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::TimestampOutsideTolerance {
                tolerance_seconds: 300,
                ..
            }
        ),
        "{err:?}"
    );
    // Without a tolerance (the SDKs' behaviour) the same delivery verifies.
    check(&verifier_with(source()), BODY, &old).await.unwrap();
}

#[test]
fn identify_needs_an_id_and_an_event_type() {
    let paypal = verifier_with(source());
    let headers = Headers::new();
    for (body, missing) in [
        (&br#"{"event_type":"X"}"#[..], "id"),
        (br#"{"id":"WH-1"}"#, "event_type"),
        (br#"{"id":"","event_type":"X"}"#, "id"),
        (br#"{"id":7,"event_type":"X"}"#, "id"),
    ] {
        assert_eq!(
            paypal.identify(body, &headers).unwrap_err(),
            hookgate::IdentifyError::MissingField(missing)
        );
    }
    assert!(matches!(
        paypal.identify(b"{not json", &headers),
        Err(hookgate::IdentifyError::InvalidJson(_))
    ));
    // An escaped key is read as JSON.parse reads it; the last of a repeated key wins.
    let id = paypal
        .identify(
            br#"{"id":"WH-1","\u0069d":"WH-2","event_type":"X"}"#,
            &headers,
        )
        .unwrap()
        .id;
    assert_eq!(id, "WH-2");
}

/// A source that answers after `delay`, counting its fetches.
#[derive(Debug)]
struct Delayed {
    delay: Duration,
    document: Option<String>,
    fetches: AtomicUsize,
}

#[async_trait::async_trait]
impl CertificateSource for Delayed {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        match &self.document {
            Some(document) => Ok(document.clone().into_bytes()),
            None => Err("503 Service Unavailable".into()),
        }
    }
}

/// 16 deliveries naming one uncached certificate, raced on two threads.
async fn race(document: Option<String>) -> (Arc<Delayed>, Vec<Result<Verified, VerifyError>>) {
    let source = Arc::new(Delayed {
        delay: Duration::from_millis(100),
        document,
        fetches: AtomicUsize::new(0),
    });
    let paypal = Arc::new(verifier_with(source.clone()));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let paypal = paypal.clone();
            tokio::spawn(async move {
                let body = format!(r#"{{"id":"WH-{i}","event_type":"X"}}"#).into_bytes();
                let headers = Headers::from_pairs(signed(URL, WEBHOOK, &body));
                check(&paypal, &body, &headers).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    (source, results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_one_fetch() {
    let (source, results) = race(Some(pki().chain_pem())).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_one_failed_fetch() {
    let (source, results) = race(None).await;
    for result in &results {
        assert!(
            matches!(result, Err(VerifyError::CertificateUnavailable(_))),
            "{result:?}"
        );
    }
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
}

/// A source whose host is down.
#[derive(Debug, Default)]
struct Down {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl CertificateSource for Down {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err("connection refused".into())
    }
}

#[cfg(feature = "tokio")]
mod pipeline {
    use super::*;
    use hookgate::{handler_fn, HandlerError, MemoryStore, OutcomeKind, Pipeline, Registry};

    /// A source slower than any answer budget.
    #[derive(Debug)]
    struct Slow;

    #[async_trait::async_trait]
    impl CertificateSource for Slow {
        async fn fetch(
            &self,
            _url: &str,
        ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(PayPalTestPki::shared().chain_pem().into_bytes())
        }
    }

    fn pipeline_with(paypal: PayPal, runs: Arc<AtomicUsize>) -> Pipeline {
        let mut registry = Registry::new();
        registry.critical(
            "paypal",
            "PAYMENT.CAPTURE.*",
            "captures",
            handler_fn(move |_| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), HandlerError>(())
                }
            }),
        );
        Pipeline::builder()
            .verifier(paypal)
            .store(MemoryStore::new())
            .registry(registry)
            .answer_budget("paypal", Duration::from_millis(300))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_delivery_is_processed_once_and_its_retry_is_a_duplicate() {
        let runs = Arc::new(AtomicUsize::new(0));
        let source = source();
        let pipeline = pipeline_with(verifier_with(source.clone()), runs.clone());
        let first = pipeline
            .handle(BODY, &Headers::from_pairs(signed(URL, WEBHOOK, BODY)))
            .await;
        assert!(
            matches!(first.kind, OutcomeKind::Processed { .. }),
            "{first:?}"
        );
        assert_eq!(
            first.event_id.as_deref(),
            Some("WH-2WR32451HC0233532-67976317FL4543714")
        );
        // PayPal's retry: a new transmission (id, time, signature) of the same event.
        let retry = pki().headers(URL, WEBHOOK, BODY, now() + time::Duration::seconds(90));
        let again = pipeline.handle(BODY, &Headers::from_pairs(retry)).await;
        assert!(matches!(again.kind, OutcomeKind::Duplicate), "{again:?}");
        assert_eq!(again.status(), 200);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(source.fetches(), 1);
        // A forged delivery is 401 and runs nothing.
        let forged = pipeline
            .handle(BODY, &Headers::from_pairs(signed(URL, "OTHER", BODY)))
            .await;
        assert_eq!(forged.status(), 401);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        pipeline.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_failing_certificate_source_answers_503_so_paypal_retries() {
        let runs = Arc::new(AtomicUsize::new(0));
        let pipeline = pipeline_with(verifier_with(Down::default()), runs.clone());
        let outcome = pipeline
            .handle(BODY, &Headers::from_pairs(signed(URL, WEBHOOK, BODY)))
            .await;
        assert_eq!(outcome.status(), 503, "{outcome:?}");
        assert!(matches!(
            outcome.kind,
            OutcomeKind::VerificationFailed(VerifyError::CertificateUnavailable(_))
        ));
        assert_eq!(outcome.kind.name(), "verifier_unavailable");
        assert_eq!(outcome.body(), "temporarily unavailable: retry later");
        assert_eq!(pipeline.stats().verifier_unavailable, 1);
        assert_eq!(pipeline.stats().unauthorized, 0);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        // An untrusted certificate is 401, not 503.
        let forged = verifier_with(StaticCertificates::new([(URL, pki().self_signed_pem())]));
        let pipeline = pipeline_with(forged, runs.clone());
        let outcome = pipeline
            .handle(BODY, &Headers::from_pairs(signed(URL, WEBHOOK, BODY)))
            .await;
        assert_eq!(outcome.status(), 401, "{outcome:?}");
        assert_eq!(pipeline.stats().unauthorized, 1);
    }

    #[tokio::test]
    async fn the_journal_records_an_unavailable_certificate_as_verifier_unavailable() {
        use hookgate::journal::{DeliveryStatus, Journal, MemoryJournal};
        let journal = MemoryJournal::new();
        // Down after 50 ms, as a refused connection behind a slow resolver.
        let source = Delayed {
            delay: Duration::from_millis(50),
            document: None,
            fetches: AtomicUsize::new(0),
        };
        let pipeline = Pipeline::builder()
            .verifier(verifier_with(source))
            .store(MemoryStore::new())
            .journal(journal.clone())
            .build()
            .unwrap();
        let outcome = pipeline
            .handle(BODY, &Headers::from_pairs(signed(URL, WEBHOOK, BODY)))
            .await;
        assert!(pipeline.flush_journal(Duration::from_secs(5)).await);
        let record = journal
            .get(outcome.journal_id.expect("journaled"))
            .await
            .unwrap()
            .expect("written");
        assert_eq!(record.status, DeliveryStatus::VerifierUnavailable);
        assert_eq!(record.status.as_str(), "verifier_unavailable");
        assert!(!record.status.is_verified());
        assert_eq!(record.http_status, 503);
        assert_eq!(record.provider.as_deref(), Some("paypal"));
        let error = record.error.expect("a reason for the operator");
        assert!(error.contains("503 Service Unavailable"), "{error}");
        let verify = record
            .durations
            .verify
            .expect("the fetch is timed as verifying");
        assert!(verify >= Duration::from_millis(50), "{verify:?}");
        assert_eq!(record.body, None, "an unverified body is not kept");
    }

    #[tokio::test]
    async fn a_source_slower_than_the_answer_budget_answers_503() {
        let runs = Arc::new(AtomicUsize::new(0));
        let pipeline = pipeline_with(verifier_with(Slow), runs.clone());
        let started = std::time::Instant::now();
        let outcome = pipeline
            .handle(BODY, &Headers::from_pairs(signed(URL, WEBHOOK, BODY)))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the budget cut the wait"
        );
        assert_eq!(outcome.status(), 503, "{outcome:?}");
        assert!(matches!(
            outcome.kind,
            OutcomeKind::VerificationFailed(VerifyError::PreparationTimedOut { .. })
        ));
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }
}

/// A verifier whose certificate is already fetched, for the property tests.
fn prepared() -> &'static PayPal {
    static PREPARED: OnceLock<PayPal> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let paypal = verifier_with(source());
        let headers = Headers::from_pairs(signed(URL, WEBHOOK, BODY));
        runtime()
            .block_on(paypal.prepare(&headers, now()).expect("a first fetch"))
            .unwrap();
        paypal
    })
}

const CASES: u32 = 10_000;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

fn shared_source() -> Arc<StaticCertificates> {
    static SOURCE: OnceLock<Arc<StaticCertificates>> = OnceLock::new();
    SOURCE.get_or_init(source).clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn signing_then_verifying_round_trips(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        webhook in "[A-Z0-9]{1,24}",
        skew in -100_000i64..100_000,
    ) {
        let paypal = prepared();
        let at = now() + time::Duration::seconds(skew);
        let id = format!("tx-{skew}");
        let time = at.unix_timestamp().to_string();
        let sig = pki().sign(&id, &time, &webhook, &body);
        let headers = Headers::from_pairs([
            ("paypal-transmission-id", id.as_str()),
            ("paypal-transmission-time", time.as_str()),
            ("paypal-transmission-sig", sig.as_str()),
            ("paypal-cert-url", URL),
            ("paypal-auth-algo", "SHA256withRSA"),
        ]);
        // Fixed id first, the case's id second: a rotation where the old id matches.
        let rotating = PayPal::builder(WEBHOOK, shared_source())
            .webhook_id(webhook.as_str())
            .trust_anchors(anchors())
            .build()
            .unwrap();
        if let Some(prepare) = rotating.prepare(&headers, now()) {
            runtime().block_on(prepare).unwrap();
        }
        let expected = if webhook == WEBHOOK { 0 } else { 1 };
        prop_assert_eq!(rotating.verify(&body, &headers, now()).map(|v| v.secret_index), Ok(expected));
        prop_assert!(paypal.verify(&body, &headers, now()).is_err() || webhook == WEBHOOK);
    }

    #[test]
    fn any_byte_flip_in_body_or_header_fails(
        pick in 0usize..64,
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
        target in 0usize..3,
    ) {
        let paypal = prepared();
        let delivery = &deliveries()[pick % deliveries().len()];
        let flip = |bytes: &mut Vec<u8>| {
            let i = position.index(bytes.len());
            bytes[i] ^= 1 << bit;
        };
        let (mut body, mut id, mut time) = (delivery.body.clone(), delivery.id.clone().into_bytes(), delivery.time.clone().into_bytes());
        match target {
            0 => flip(&mut body),
            1 => flip(&mut id),
            _ => flip(&mut time),
        }
        let (Ok(id), Ok(time)) = (String::from_utf8(id), String::from_utf8(time)) else {
            // Not text: a header that never reaches the signature check.
            return Ok(());
        };
        let headers = Headers::from_pairs([
            ("paypal-transmission-id", id.as_str()),
            ("paypal-transmission-time", time.as_str()),
            ("paypal-transmission-sig", delivery.signature.as_str()),
            ("paypal-cert-url", URL),
            ("paypal-auth-algo", "SHA256withRSA"),
        ]);
        prop_assert!(paypal.verify(&body, &headers, now()).is_err());
    }

    #[test]
    fn any_byte_flip_in_the_signature_fails(
        pick in 0usize..64,
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let paypal = prepared();
        let delivery = &deliveries()[pick % deliveries().len()];
        let mut raw = base64_decode(&delivery.signature);
        let i = position.index(raw.len());
        raw[i] ^= 1 << bit;
        let sig = base64_encode(&raw);
        let headers = Headers::from_pairs([
            ("paypal-transmission-id", delivery.id.as_str()),
            ("paypal-transmission-time", delivery.time.as_str()),
            ("paypal-transmission-sig", sig.as_str()),
            ("paypal-cert-url", URL),
            ("paypal-auth-algo", "SHA256withRSA"),
        ]);
        prop_assert!(paypal.verify(&delivery.body, &headers, now()).is_err());
    }
}

/// A delivery signed once, outside the property loops.
struct Delivery {
    body: Vec<u8>,
    id: String,
    time: String,
    signature: String,
}

fn deliveries() -> &'static [Delivery] {
    static DELIVERIES: OnceLock<Vec<Delivery>> = OnceLock::new();
    DELIVERIES.get_or_init(|| {
        (0..64u32)
            .map(|i| {
                let body = format!(
                    r#"{{"id":"WH-{i}","event_type":"PAYMENT.CAPTURE.COMPLETED","pad":"{}"}}"#,
                    "x".repeat(i as usize * 7)
                )
                .into_bytes();
                let id = format!("{i:08x}-1111-4000-8000-000000000000");
                let time = format!("2026-12-0{}T10:00:{:02}Z", 1 + i % 9, i % 60);
                let signature = pki().sign(&id, &time, WEBHOOK, &body);
                let delivery = Delivery {
                    body,
                    id,
                    time,
                    signature,
                };
                // Each verifies unflipped, so a failure after a flip is the flip's.
                let headers = Headers::from_pairs([
                    ("paypal-transmission-id", delivery.id.as_str()),
                    ("paypal-transmission-time", delivery.time.as_str()),
                    ("paypal-transmission-sig", delivery.signature.as_str()),
                    ("paypal-cert-url", URL),
                    ("paypal-auth-algo", "SHA256withRSA"),
                ]);
                assert!(prepared().verify(&delivery.body, &headers, now()).is_ok());
                delivery
            })
            .collect()
    })
}
