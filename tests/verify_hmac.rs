//! The generic `Hmac` verifier: every setting, every rejection reason,
//! rotation, a pipeline end to end, and properties over any input.

use std::time::Duration;

use hmac::{Hmac as HmacOf, Mac};
use hookgate::verify::{HmacConfigError, TemplateError};
use hookgate::{
    ConfigError, DedupKey, Headers, Hmac, IdentifyError, SignatureEncoding, Verifier, VerifyError,
};
use sha2::{Sha256, Sha512};
use time::OffsetDateTime;

const NOW: i64 = 1_700_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

fn acme() -> Hmac {
    Hmac::builder("acme", "acme-secret")
        .signature_header("Acme-Signature")
        .prefix("v1=")
        .encoding(SignatureEncoding::Base64)
        .template("{timestamp}.{id}.{body}")
        .id_header("Acme-Id")
        .timestamp_header("Acme-Timestamp", Duration::from_secs(300))
        .kind_pointer("/type")
        .build()
        .unwrap()
}

/// The tag computed independently of the verifier, with the `hmac` crate.
fn reference_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <HmacOf<Sha256>>::new_from_slice(secret).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn acme_headers(body: &[u8], at: i64, id: &str) -> Headers {
    use base64::Engine as _;
    let message = [at.to_string().as_bytes(), b".", id.as_bytes(), b".", body].concat();
    let tag = base64::engine::general_purpose::STANDARD
        .encode(reference_sha256(b"acme-secret", &message));
    Headers::from_pairs([
        ("Acme-Signature", format!("v1={tag}")),
        ("Acme-Timestamp", at.to_string()),
        ("Acme-Id", id.to_owned()),
    ])
}

#[test]
fn a_template_signed_delivery_verifies_and_is_named() {
    let body = br#"{"type":"invoice.paid","n":1}"#;
    let headers = acme_headers(body, NOW, "ev_1");
    let acme = acme();
    assert!(acme.detect(&headers));
    let verified = acme.verify(body, &headers, now()).unwrap();
    assert_eq!(verified.secret_index, 0);
    assert_eq!(verified.signed_at, Some(now()));
    let identity = acme.identify(body, &headers).unwrap();
    assert_eq!(
        (identity.id.as_str(), identity.kind.as_str()),
        ("ev_1", "invoice.paid")
    );
    assert_eq!(identity.occurred_at, Some(now()));
    // `sign` agrees with the reference.
    let signed = acme.sign(0, body, &headers).unwrap();
    assert_eq!(
        headers.get("acme-signature").unwrap().unwrap(),
        format!("v1={signed}")
    );
}

#[test]
fn every_rejection_reason() {
    let acme = acme();
    let body = br#"{"type":"x"}"#;
    let good = acme_headers(body, NOW, "ev_1");
    let with = |name: &str, value: &str| {
        let mut pairs: Vec<(String, Vec<u8>)> = good
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect();
        if !value.is_empty() {
            pairs.push((name.to_owned(), value.as_bytes().to_vec()));
        }
        Headers::from_pairs(pairs)
    };
    let verify = |headers: &Headers| acme.verify(body, headers, now()).unwrap_err();

    assert_eq!(
        verify(&with("Acme-Signature", "")),
        VerifyError::MissingHeader("Acme-Signature")
    );
    let mut twice = good.clone();
    twice.append("acme-signature", "v1=x");
    assert_eq!(
        verify(&twice),
        VerifyError::RepeatedHeader("Acme-Signature")
    );
    assert!(matches!(
        verify(&with("Acme-Signature", "v2=abc")),
        VerifyError::NoSupportedSignature {
            header: "Acme-Signature",
            ..
        }
    ));
    assert!(matches!(
        verify(&with("Acme-Signature", "v1=not base64!")),
        VerifyError::MalformedHeader {
            header: "Acme-Signature",
            ..
        }
    ));
    // Right encoding, wrong length (a SHA-1-sized tag).
    assert!(matches!(
        verify(&with("Acme-Signature", "v1=AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
        VerifyError::MalformedHeader { .. }
    ));
    assert_eq!(
        verify(&with("Acme-Timestamp", "")),
        VerifyError::MissingHeader("Acme-Timestamp")
    );
    assert!(matches!(
        verify(&with("Acme-Timestamp", "+1700000000")),
        VerifyError::MalformedHeader {
            header: "Acme-Timestamp",
            ..
        }
    ));
    assert_eq!(
        verify(&with("Acme-Id", "")),
        VerifyError::MissingHeader("Acme-Id")
    );
    // A body other than the signed one, and another id in the template.
    assert!(matches!(
        acme.verify(br#"{"type":"y"}"#, &good, now()).unwrap_err(),
        VerifyError::SignatureMismatch {
            secret_has_whitespace: false
        }
    ));
    assert!(matches!(
        verify(&with("Acme-Id", "ev_2")),
        VerifyError::SignatureMismatch { .. }
    ));
    for err in [
        verify(&with("Acme-Signature", "")),
        acme.verify(b"{}", &good, now()).unwrap_err(),
    ] {
        assert!(matches!(err.status(), 400 | 401));
    }
}

#[test]
fn the_tolerance_holds_on_both_sides_inclusively() {
    let acme = acme();
    let body = b"{\"type\":\"x\"}";
    for (offset, ok) in [
        (-301, false),
        (-300, true),
        (0, true),
        (300, true),
        (301, false),
    ] {
        let headers = acme_headers(body, NOW + offset, "ev");
        let result = acme.verify(body, &headers, now());
        assert_eq!(result.is_ok(), ok, "offset {offset}: {result:?}");
        if let Err(err) = result {
            assert!(matches!(
                err,
                VerifyError::TimestampOutsideTolerance { skew_seconds, tolerance_seconds: 300 }
                    if skew_seconds == -offset
            ));
            assert_eq!(err.status(), 401);
        }
    }
}

#[test]
fn rotation_several_signatures_sha512_and_encodings() {
    let rotated = Hmac::builder("rot", "new-secret")
        .secret("old-secret")
        .signature_header("X-Sig")
        .several_signatures(b',')
        .id_header("X-Id")
        .build()
        .unwrap();
    let body = b"payload";
    let old = hex::encode(reference_sha256(b"old-secret", body));
    let headers = Headers::from_pairs([("X-Sig", format!("deadbeef,{old}")), ("X-Id", "1".into())]);
    // A malformed candidate among several is still refused as malformed.
    assert!(matches!(
        rotated.verify(body, &headers, now()).unwrap_err(),
        VerifyError::MalformedHeader { .. }
    ));
    let other = hex::encode(reference_sha256(b"unknown", body));
    let headers = Headers::from_pairs([
        ("X-Sig", format!("{other},{}", old.to_uppercase())),
        ("X-Id", "1".into()),
    ]);
    assert_eq!(
        rotated.verify(body, &headers, now()).unwrap().secret_index,
        1
    );

    let sha512 = Hmac::builder("big", "k")
        .signature_header("X-Sig")
        .prefix("sha512=")
        .sha512()
        .encoding(SignatureEncoding::Base64Url)
        .dedup(DedupKey::BodyDigest)
        .build()
        .unwrap();
    let mut mac = <HmacOf<Sha512>>::new_from_slice(b"k").unwrap();
    mac.update(body);
    use base64::Engine as _;
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let headers = Headers::from_pairs([("X-Sig", format!("sha512={tag}"))]);
    sha512.verify(body, &headers, now()).unwrap();
    let identity = sha512.identify(body, &headers).unwrap();
    assert!(identity.id.starts_with("sha256:"));
    assert_eq!(identity.kind, "event");
}

#[test]
fn sha1_only_through_the_insecure_opt_in() {
    // RFC 2202, test case 2: HMAC-SHA1 with key "Jefe".
    let body = b"what do ya want for nothing?";
    let rfc = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
    let builder = || {
        Hmac::builder("legacy", "Jefe")
            .signature_header("X-Sig")
            .dedup(DedupKey::BodyDigest)
    };
    let sha1 = builder().insecure_sha1().build().unwrap();
    let headers = Headers::from_pairs([("X-Sig", rfc)]);
    assert_eq!(sha1.verify(body, &headers, now()).unwrap().secret_index, 0);
    assert_eq!(sha1.sign(0, body, &headers).unwrap(), rfc);
    // A flipped bit is a mismatch; a SHA-256-sized tag is malformed for SHA-1.
    let flipped = Headers::from_pairs([("X-Sig", rfc.replace("effc", "effd"))]);
    assert!(matches!(
        sha1.verify(body, &flipped, now()).unwrap_err(),
        VerifyError::SignatureMismatch { .. }
    ));
    let sha256_tag = hex::encode(reference_sha256(b"Jefe", body));
    let long = Headers::from_pairs([("X-Sig", sha256_tag.clone())]);
    assert!(matches!(
        sha1.verify(body, &long, now()).unwrap_err(),
        VerifyError::MalformedHeader { .. }
    ));
    // Without the opt-in the same SHA-1 signature is refused as malformed
    // (a 20-byte tag is not a SHA-256 one) and SHA-256 is what verifies.
    let default = builder().build().unwrap();
    assert!(matches!(
        default.verify(body, &headers, now()).unwrap_err(),
        VerifyError::MalformedHeader { .. }
    ));
    default.verify(body, &long, now()).unwrap();
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let base = || {
        Hmac::builder("x", "k")
            .signature_header("X-Sig")
            .id_header("X-Id")
    };
    assert_eq!(
        Hmac::builder("x", "k")
            .id_header("X-Id")
            .build()
            .unwrap_err(),
        HmacConfigError::NoSignatureHeader
    );
    assert_eq!(
        Hmac::builder("x", "")
            .signature_header("X-Sig")
            .id_header("X-Id")
            .build()
            .unwrap_err(),
        HmacConfigError::Secret(ConfigError::EmptySecret { index: 0 })
    );
    assert_eq!(
        Hmac::builder("x", "k")
            .signature_header(" ")
            .id_header("X-Id")
            .build()
            .unwrap_err(),
        HmacConfigError::EmptyHeaderName("signature")
    );
    assert_eq!(
        Hmac::builder("x", "k")
            .signature_header("X-Sig")
            .build()
            .unwrap_err(),
        HmacConfigError::NoId
    );
    assert_eq!(
        base().dedup(DedupKey::ProviderDefault).build().unwrap_err(),
        HmacConfigError::NoId
    );
    assert_eq!(
        base().template("{timestamp}{body}").build().unwrap_err(),
        HmacConfigError::Template(TemplateError::NoHeaderFor("timestamp"))
    );
    assert_eq!(
        Hmac::builder("x", "k")
            .signature_header("X-Sig")
            .dedup(DedupKey::BodyDigest)
            .template("{id}{body}")
            .build()
            .unwrap_err(),
        HmacConfigError::Template(TemplateError::NoHeaderFor("id"))
    );
    assert_eq!(
        base().template("{id}").build().unwrap_err(),
        HmacConfigError::Template(TemplateError::NoBody)
    );
    assert_eq!(
        base()
            .timestamp_header("X-T", Duration::from_millis(500))
            .build()
            .unwrap_err(),
        HmacConfigError::ZeroTolerance
    );
    assert!(matches!(
        base()
            .dedup(DedupKey::json_pointer("id"))
            .build()
            .unwrap_err(),
        HmacConfigError::DedupKey(_)
    ));
}

#[test]
fn identify_failures_and_kind_sources() {
    let v = Hmac::builder("x", "k")
        .signature_header("X-Sig")
        .id_header("X-Id")
        .kind_header("X-Kind")
        .build()
        .unwrap();
    let headers = Headers::from_pairs([("X-Id", "1"), ("X-Kind", "ping")]);
    assert_eq!(v.identify(b"", &headers).unwrap().kind, "ping");
    assert!(matches!(
        v.identify(b"", &Headers::from_pairs([("X-Id", "1")])),
        Err(IdentifyError::DedupKey(_))
    ));
    assert!(matches!(
        v.identify(b"", &Headers::from_pairs([("X-Kind", "ping")])),
        Err(IdentifyError::DedupKey(_))
    ));
    let pointer = Hmac::builder("x", "k")
        .signature_header("X-Sig")
        .id_header("X-Id")
        .kind_pointer("/event/type")
        .kind("ignored: the last kind setting wins")
        .kind_pointer("/event/type")
        .build()
        .unwrap();
    let id = Headers::from_pairs([("X-Id", "1")]);
    assert_eq!(
        pointer
            .identify(br#"{"event":{"type":"a.b"}}"#, &id)
            .unwrap()
            .kind,
        "a.b"
    );
    assert!(matches!(
        pointer.identify(b"{", &id),
        Err(IdentifyError::InvalidJson(_))
    ));
    assert!(matches!(
        pointer.identify(br#"{"event":{"type":7}}"#, &id),
        Err(IdentifyError::DedupKey(_))
    ));
}

#[test]
fn the_secret_never_shows() {
    let v = Hmac::builder("x", "super-secret-value")
        .signature_header("X-Sig")
        .id_header("X-Id")
        .build()
        .unwrap();
    let debug = format!("{v:?} {:?}", Hmac::builder("x", "super-secret-value"));
    assert!(!debug.contains("super-secret"), "{debug}");
    let err = v
        .verify(
            b"x",
            &Headers::from_pairs([("X-Sig", "00".repeat(32))]),
            now(),
        )
        .unwrap_err();
    assert!(!err.to_string().contains("super-secret"));
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn a_pipeline_processes_then_dedupes() {
    use hookgate::{handler_fn, HandlerError, MemoryStore, OutcomeKind, Pipeline, Registry};
    let mut registry = Registry::new();
    registry.critical(
        "acme",
        "invoice.*",
        "record",
        handler_fn(|_| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = Pipeline::builder()
        .verifier(acme())
        .store(MemoryStore::new())
        .registry(registry)
        .clock(hookgate::FixedClock::new(now()))
        .build()
        .unwrap();
    let body = br#"{"type":"invoice.paid"}"#;
    let headers = acme_headers(body, NOW, "ev_9");
    let first = pipeline.handle(&body[..], &headers).await;
    assert!(
        matches!(first.kind, OutcomeKind::Processed { .. }),
        "{:?}",
        first.kind
    );
    assert_eq!(first.provider.as_deref(), Some("acme"));
    let again = pipeline.handle(&body[..], &headers).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn verifier() -> Hmac {
        Hmac::builder("p", "prop-secret")
            .signature_header("X-Sig")
            .prefix("sha256=")
            .template("{timestamp}:{header:X-Shop}:{body}")
            .id_header("X-Id")
            .timestamp_header("X-T", Duration::from_secs(300))
            .build()
            .unwrap()
    }

    fn signed(v: &Hmac, body: &[u8], shop: &str) -> Headers {
        let mut headers = Headers::from_pairs([
            ("X-T", NOW.to_string()),
            ("X-Shop", shop.to_owned()),
            ("X-Id", "1".to_owned()),
        ]);
        let tag = v.sign(0, body, &headers).unwrap();
        headers.append("X-Sig", format!("sha256={tag}"));
        headers
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn signing_then_verifying_round_trips(body in proptest::collection::vec(any::<u8>(), 0..256), shop in "[a-z.]{1,20}") {
            let v = verifier();
            let headers = signed(&v, &body, &shop);
            prop_assert!(v.verify(&body, &headers, now()).is_ok());
        }

        #[test]
        fn any_flipped_byte_fails(
            body in proptest::collection::vec(any::<u8>(), 1..128),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
            target in 0usize..3,
        ) {
            let v = verifier();
            let headers = signed(&v, &body, "shop.example");
            if target == 2 {
                // Hex is read in either case: a case flip of a digit
                // `a`-`f` is the same signature.
                let sig = headers.get_bytes("x-sig").unwrap().unwrap();
                let byte = sig[at.index(sig.len())];
                prop_assume!(!(bit == 5 && byte.is_ascii_alphabetic() && byte.to_ascii_lowercase() <= b'f' && byte.is_ascii_hexdigit()));
            }
            let flip = |bytes: &mut Vec<u8>| {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            };
            let (body, headers) = match target {
                0 => {
                    let mut body = body.clone();
                    flip(&mut body);
                    (body, headers)
                }
                _ => {
                    let name = if target == 1 { "x-shop" } else { "x-sig" };
                    let pairs: Vec<(String, Vec<u8>)> = headers
                        .iter()
                        .map(|(n, v)| {
                            let mut v = v.to_vec();
                            if n.eq_ignore_ascii_case(name) {
                                flip(&mut v);
                            }
                            (n.to_owned(), v)
                        })
                        .collect();
                    (body.clone(), Headers::from_pairs(pairs))
                }
            };
            prop_assert!(v.verify(&body, &headers, now()).is_err());
        }

        #[test]
        fn arbitrary_headers_never_panic(sig in "\\PC{0,100}", t in "\\PC{0,20}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let v = verifier();
            let headers = Headers::from_pairs([("X-Sig", sig), ("X-T", t), ("X-Shop", "s".into()), ("X-Id", "1".into())]);
            let _ = v.verify(&body, &headers, now());
            let _ = v.identify(&body, &headers);
        }
    }
}
