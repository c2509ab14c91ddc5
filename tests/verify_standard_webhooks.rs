//! The Standard Webhooks verifier against the official `standardwebhooks`
//! libraries (Rust, Go, JavaScript, Python) and the Svix libraries wrapping them.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use base64::Engine as _;
use common::{assert_raw_bytes_verify, assert_status, at, headers, replace, with, NOW};
use hmac::{Hmac, Mac};
use hookgate::testing::{standard_webhooks_headers, standard_webhooks_signature};
use hookgate::{
    ConfigError, Headers, IdentifyError, SecretSet, StandardWebhooks, Verifier, VerifyError,
};
use proptest::prelude::*;
use serde::Deserialize;

/// The secret of the Standard Webhooks specification's and Svix's documented example.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const BODY: &[u8] =
    br#"{"type":"invoice.paid","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"in_1"}}"#;
const SIG: &str = "webhook-signature";
const TS: &str = "webhook-timestamp";
const MSG_ID: &str = "webhook-id";

fn verifier() -> StandardWebhooks {
    StandardWebhooks::builder(SECRET).build().unwrap()
}

fn signed(body: &[u8]) -> Vec<(String, String)> {
    standard_webhooks_headers(SECRET, ID, body, at(NOW))
}

/// The decoded key of a `whsec_` secret.
fn key(secret: &str) -> Vec<u8> {
    STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap()
}

/// `v1,<base64>` of the HMAC-SHA256 of `{id}.{timestamp}.{body}` with `key`,
/// the timestamp taken as the text given.
fn v1(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Verifies `body` with the three headers given (`webhook-` names) at `now`.
fn check(
    verifier: &StandardWebhooks,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<hookgate::Verified, VerifyError> {
    let h = headers([(MSG_ID, id), (TS, timestamp), (SIG, signature)]);
    let result = verifier.verify(body, &h, at(now));
    if let Err(e) = &result {
        assert_status(e);
    }
    result
}

fn err_with(pairs: Vec<(String, Vec<u8>)>, body: &[u8]) -> VerifyError {
    let e = verifier()
        .verify(body, &headers(pairs), at(NOW))
        .unwrap_err();
    assert_status(&e);
    e
}

/// The error for the signed delivery of `BODY` with `name` replaced by `value`.
fn err(name: &str, value: Option<&[u8]>) -> VerifyError {
    err_with(replace(&signed(BODY), name, value), BODY)
}

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

#[test]
fn round_trip_verifies_and_identifies() {
    let h = headers(signed(BODY));
    let v = verifier();
    assert!(v.detect(&h));
    assert_eq!(v.provider(), "standard-webhooks");
    let verified = v.verify(BODY, &h, at(NOW)).unwrap();
    assert_eq!(
        (verified.signed_at, verified.secret_index),
        (Some(at(NOW)), 0)
    );
    let identity = v.identify(BODY, &h).unwrap();
    assert_eq!(identity.id, ID);
    assert_eq!(identity.kind, "invoice.paid");
    assert_eq!(
        identity.occurred_at,
        Some(at(1_667_507_170) + Duration::from_micros(344_522))
    );
    assert_eq!(
        identity.metadata("webhook_timestamp"),
        Some(NOW.to_string().as_str())
    );
    assert_eq!(v.tolerance(), Some(Duration::from_secs(300)));
    assert_eq!(v.secrets().map(hookgate::SecretSet::len), Some(1));
}

#[test]
fn the_published_vectors_verify() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("data/vectors.json")).unwrap();
    let mut ran = 0;
    for case in cases.iter().filter(|c| c.provider == "standard") {
        let mut builder = StandardWebhooks::builder(case.secret.as_str());
        if let Some(tolerance) = case.tolerance_s {
            builder = builder.tolerance(Duration::from_secs(tolerance));
        }
        let v = builder.build().unwrap();
        let h = headers(case.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        assert!(v.detect(&h), "{}", case.source);
        let now = at(case.now.expect("the Standard Webhooks vector has a clock"));
        let verdict = v.verify(case.body.as_bytes(), &h, now);
        match case.expect.as_str() {
            "ok" => assert!(verdict.is_ok(), "{}: {verdict:?}", case.source),
            _ => assert!(verdict.is_err(), "{}", case.source),
        }
        ran += 1;
    }
    assert_eq!(ran, 1);
}

#[test]
fn the_vector_of_the_official_rust_libraries_signs_and_verifies() {
    // `test_sign` of `libraries/rust/src/lib.rs` and of svix's `rust/src/webhooks.rs`.
    let body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    let expected = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    assert_eq!(
        standard_webhooks_signature(OTHER_SECRET, id, body, at(1_649_367_553)),
        expected
    );
    let v = StandardWebhooks::builder(OTHER_SECRET).build().unwrap();
    assert!(check(&v, id, "1649367553", expected, body, 1_649_367_553).is_ok());
    // `test_no_verify`: a wrong signature of the right shape.
    assert_eq!(
        check(
            &v,
            id,
            "1649367553",
            "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=",
            body,
            1_649_367_553
        ),
        Err(VerifyError::SignatureMismatch {
            secret_has_whitespace: false
        })
    );
    // `test_verify_partial_signature`: `v1,` alone and the first 8 characters.
    for partial in ["v1,", &expected[..8]] {
        assert!(check(&v, id, "1649367553", partial, body, 1_649_367_553).is_err());
    }
    // `test_verify_with_multiple_signatures` / `test_no_verify_with_multiple_signatures`.
    let others = [
        "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
        "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=",
        "v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=",
    ];
    let with_valid = format!("{} {} {expected} {}", others[0], others[1], others[2]);
    assert!(check(&v, id, "1649367553", &with_valid, body, 1_649_367_553).is_ok());
    let without = others.join(" ");
    assert!(matches!(
        check(&v, id, "1649367553", &without, body, 1_649_367_553),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn every_missing_or_empty_header_is_named() {
    for name in [MSG_ID, TS, SIG] {
        assert_eq!(err(name, None), VerifyError::MissingHeader(name), "{name}");
        assert_eq!(
            err(name, Some(b"")),
            VerifyError::MissingHeader(name),
            "{name}"
        );
    }
    assert_eq!(
        verifier().verify(BODY, &Headers::new(), at(NOW)),
        Err(VerifyError::MissingHeader(MSG_ID))
    );
}

#[test]
fn repeated_and_non_text_headers_are_refused() {
    for name in [MSG_ID, TS, SIG] {
        let signed = signed(BODY);
        let value = &signed.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(
            err_with(replace(&with(&signed, name, value), "x", None), BODY),
            VerifyError::RepeatedHeader(name),
            "{name}"
        );
        assert_eq!(
            err(name, Some(b"msg\x01")),
            VerifyError::MalformedHeader {
                header: name,
                reason: "the value is not printable text"
            },
            "{name}"
        );
        assert!(matches!(
            err(name, Some(b"\xff\xfe")),
            VerifyError::MalformedHeader { .. }
        ));
    }
}

#[test]
fn timestamps_must_be_integers_as_the_rust_and_go_libraries_parse_them() {
    for bad in [
        "abc",
        " 1700000000",
        "1700000000 ",
        "1700000000.0",
        "1.7e9",
        "0x6553f100",
        "1_700_000_000",
        "+",
        "-",
        "9223372036854775808",
        "-9223372036854775809",
        "١٧٠٠٠٠٠٠٠٠",
    ] {
        assert_eq!(
            err(TS, Some(bad.as_bytes())),
            VerifyError::MalformedHeader {
                header: TS,
                reason: "expected an integer unix timestamp in seconds"
            },
            "{bad:?}"
        );
    }
}

#[test]
fn a_signed_timestamp_is_the_integer_not_its_text() {
    // The libraries sign `{timestamp}` of the parsed integer, so `+0017` signs as `17`.
    let k = key(SECRET);
    let v = verifier();
    let canonical = v1(&k, ID, "17", BODY);
    for text in ["17", "+17", "0017", "+0017"] {
        let verified = check(&v, ID, text, &canonical, BODY, 17).unwrap();
        assert_eq!(verified.signed_at, Some(at(17)), "{text}");
    }
    assert!(check(&v, ID, "+0017", &v1(&k, ID, "+0017", BODY), BODY, 17).is_err());
    let negative = v1(&k, ID, "-5", BODY);
    assert!(check(&v, ID, "-5", &negative, BODY, 0).is_ok());
    assert!(check(&v, ID, "-0005", &negative, BODY, 0).is_ok());
}

#[test]
fn tolerance_bounds_are_inclusive_on_both_sides() {
    let v = verifier();
    let sig = standard_webhooks_signature(SECRET, ID, BODY, at(NOW));
    let ts = NOW.to_string();
    for skew in [-300, -1, 0, 1, 300] {
        assert!(check(&v, ID, &ts, &sig, BODY, NOW + skew).is_ok(), "{skew}");
    }
    assert_eq!(
        check(&v, ID, &ts, &sig, BODY, NOW + 301),
        Err(VerifyError::TimestampOutsideTolerance {
            skew_seconds: 301,
            tolerance_seconds: 300
        })
    );
    assert_eq!(
        check(&v, ID, &ts, &sig, BODY, NOW - 301),
        Err(VerifyError::TimestampOutsideTolerance {
            skew_seconds: -301,
            tolerance_seconds: 300
        })
    );
    // Sub-second parts of the clock are ignored: whole seconds, as in the Rust
    // and JavaScript libraries.
    let h = headers(signed(BODY));
    let late = at(NOW + 300) + Duration::from_millis(999);
    assert!(v.verify(BODY, &h, late).is_ok());
    let early = at(NOW - 300) + Duration::from_millis(1);
    assert!(v.verify(BODY, &h, early).is_ok());
}

#[test]
fn the_window_is_checked_before_the_signature_as_the_libraries_do() {
    let v = verifier();
    let ts = NOW.to_string();
    assert!(matches!(
        check(&v, ID, &ts, "v1,forged", BODY, NOW + 10_000),
        Err(VerifyError::TimestampOutsideTolerance { .. })
    ));
    assert!(matches!(
        check(&v, ID, &ts, "v2,x", BODY, NOW - 10_000),
        Err(VerifyError::TimestampOutsideTolerance { .. })
    ));
}

#[test]
fn tolerance_is_configurable_and_can_be_skipped() {
    let sig = standard_webhooks_signature(SECRET, ID, BODY, at(NOW));
    let ts = NOW.to_string();
    let tight = StandardWebhooks::builder(SECRET)
        .tolerance(Duration::from_millis(10_999))
        .build()
        .unwrap();
    assert_eq!(tight.tolerance(), Some(Duration::from_millis(10_999)));
    assert!(check(&tight, ID, &ts, &sig, BODY, NOW + 10).is_ok());
    assert!(check(&tight, ID, &ts, &sig, BODY, NOW - 10).is_ok());
    assert_eq!(
        check(&tight, ID, &ts, &sig, BODY, NOW - 11),
        Err(VerifyError::TimestampOutsideTolerance {
            skew_seconds: -11,
            tolerance_seconds: 10
        })
    );
    let zero = StandardWebhooks::builder(SECRET)
        .tolerance(Duration::ZERO)
        .build()
        .unwrap();
    assert!(check(&zero, ID, &ts, &sig, BODY, NOW).is_ok());
    assert!(check(&zero, ID, &ts, &sig, BODY, NOW + 1).is_err());
    let skip = StandardWebhooks::builder(SECRET)
        .insecure_skip_timestamp_check()
        .build()
        .unwrap();
    assert_eq!(skip.tolerance(), None);
    assert!(check(&skip, ID, &ts, &sig, BODY, 0).is_ok());
    assert!(check(&skip, ID, &ts, &sig, BODY, i64::from(i32::MAX) * 100).is_ok());
    // The signature is still checked.
    assert!(matches!(
        check(&skip, ID, &ts, &sig, b"{}", 0),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn extreme_timestamps_never_overflow() {
    let k = key(SECRET);
    let v = verifier();
    let skip = StandardWebhooks::builder(SECRET)
        .insecure_skip_timestamp_check()
        .build()
        .unwrap();
    for t in [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX] {
        let text = t.to_string();
        let sig = v1(&k, ID, &text, BODY);
        let e = check(&v, ID, &text, &sig, BODY, NOW).unwrap_err();
        let VerifyError::TimestampOutsideTolerance { skew_seconds, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(skew_seconds.signum(), if t < NOW { 1 } else { -1 }, "{t}");
        let verified = check(&skip, ID, &text, &sig, BODY, NOW).unwrap();
        assert_eq!(verified.signed_at.is_some(), t == -1, "{t}");
    }
    for now in [
        time::OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT),
        time::OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX),
    ] {
        let e = v.verify(BODY, &headers(signed(BODY)), now).unwrap_err();
        assert!(matches!(e, VerifyError::TimestampOutsideTolerance { .. }));
    }
}

#[test]
fn signature_lists_match_any_v1_entry_and_ignore_the_rest() {
    let v = verifier();
    let ts = NOW.to_string();
    let good = standard_webhooks_signature(SECRET, ID, BODY, at(NOW));
    let wrong = standard_webhooks_signature(OTHER_SECRET, ID, BODY, at(NOW));
    let value = good.trim_start_matches("v1,");
    for header in [
        format!("{wrong} {good}"),
        format!("{good} {wrong}"),
        format!("v1a,{value} {good}"),
        format!("v2,{value} v0,{value} {good}"),
        format!("{good}  {wrong}"),
        format!(" {good}"),
        format!("{good} "),
        format!("junk {good}"),
        format!(",{value} {good}"),
        format!("{} {good}", [wrong.as_str(); 40].join(" ")),
    ] {
        assert!(check(&v, ID, &ts, &header, BODY, NOW).is_ok(), "{header}");
    }
}

#[test]
fn headers_without_a_v1_entry_hold_no_supported_signature() {
    let good = standard_webhooks_signature(SECRET, ID, BODY, at(NOW));
    let value = good.trim_start_matches("v1,");
    for header in [
        format!("v1a,{value}"),
        format!("v2,{value} v0,{value}"),
        format!("V1,{value}"),
        "v1".to_owned(),
        value.to_owned(),
        " ".to_owned(),
        format!("v1\t,{value}"),
    ] {
        assert_eq!(
            err(SIG, Some(header.as_bytes())),
            VerifyError::NoSupportedSignature {
                header: SIG,
                scheme: "v1"
            },
            "{header:?}"
        );
    }
}

#[test]
fn v1_values_match_only_as_canonical_padded_base64() {
    let good = standard_webhooks_signature(SECRET, ID, BODY, at(NOW));
    let value = good.trim_start_matches("v1,");
    let tag = STANDARD.decode(value).unwrap();
    let mismatch = VerifyError::SignatureMismatch {
        secret_has_whitespace: false,
    };
    for header in [
        format!("v1,{}", STANDARD_NO_PAD.encode(&tag)),
        format!("v1,{}", URL_SAFE.encode(&tag)),
        format!("v1,{value},"),
        format!("v1,{value},junk"), // the Go and JavaScript libraries accept this one
        format!("v1,{value}="),
        format!("v1,{value}\t"),
        format!("v1, {value}"),
        format!("v1,{}", hex::encode(&tag)),
        format!("v1,{}", value.to_lowercase()),
        "v1,".to_owned(),
        format!("v1,{value}").replace('=', "A"),
    ] {
        assert_ne!(header, good);
        assert_eq!(err(SIG, Some(header.as_bytes())), mismatch, "{header}");
    }
}

#[test]
fn any_change_to_body_id_timestamp_or_secret_is_a_mismatch() {
    let v = verifier();
    let ts = NOW.to_string();
    let sig = standard_webhooks_signature(SECRET, ID, BODY, at(NOW));
    let mismatch = Err(VerifyError::SignatureMismatch {
        secret_has_whitespace: false,
    });
    assert_eq!(check(&v, ID, &ts, &sig, b"{}", NOW), mismatch);
    assert_eq!(check(&v, "msg_other", &ts, &sig, BODY, NOW), mismatch);
    assert_eq!(
        check(&v, ID, &(NOW + 1).to_string(), &sig, BODY, NOW),
        mismatch
    );
    let other = StandardWebhooks::builder(OTHER_SECRET).build().unwrap();
    assert_eq!(check(&other, ID, &ts, &sig, BODY, NOW), mismatch);
}

#[test]
fn ids_containing_dots_are_accepted_as_the_libraries_accept_them() {
    // The specification asks senders never to put a `.` in an id, since
    // `{id}.{timestamp}.{body}` is then ambiguous; no library checks it.
    let v = verifier();
    let sig = standard_webhooks_signature(SECRET, "msg.1", BODY, at(NOW));
    assert!(check(&v, "msg.1", &NOW.to_string(), &sig, BODY, NOW).is_ok());
}

#[test]
fn rotation_accepts_every_secret_and_reports_which_matched() {
    let v = StandardWebhooks::builder(OTHER_SECRET)
        .secret(SECRET)
        .build()
        .unwrap();
    let h = headers(signed(BODY));
    assert_eq!(v.verify(BODY, &h, at(NOW)).unwrap().secret_index, 1);
    let from_set = StandardWebhooks::builder(SecretSet::new(SECRET).with(OTHER_SECRET))
        .build()
        .unwrap();
    assert_eq!(from_set.verify(BODY, &h, at(NOW)).unwrap().secret_index, 0);
    assert_eq!(from_set.secrets().map(SecretSet::len), Some(2));
    // The sender signs with both secrets during its rotation.
    let both = format!(
        "{} {}",
        standard_webhooks_signature(OTHER_SECRET, ID, BODY, at(NOW)),
        standard_webhooks_signature(SECRET, ID, BODY, at(NOW))
    );
    let only_new = StandardWebhooks::builder(OTHER_SECRET).build().unwrap();
    assert_eq!(
        check(&only_new, ID, &NOW.to_string(), &both, BODY, NOW)
            .unwrap()
            .secret_index,
        0
    );
    assert!(matches!(
        StandardWebhooks::builder("whsec_YWJj")
            .secret("whsec_ZGVm")
            .build()
            .unwrap()
            .verify(BODY, &h, at(NOW)),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn raw_secrets_are_used_as_given() {
    let raw = key(SECRET);
    let v = StandardWebhooks::builder_raw(raw.clone()).build().unwrap();
    let h = headers(signed(BODY));
    assert_eq!(v.verify(BODY, &h, at(NOW)).unwrap().secret_index, 0);
    // A `whsec_` text given as raw bytes is a different key.
    let text_as_raw = StandardWebhooks::builder_raw(SECRET).build().unwrap();
    assert!(text_as_raw.verify(BODY, &h, at(NOW)).is_err());
    // Mixed forms keep their order.
    let mixed = StandardWebhooks::builder(OTHER_SECRET)
        .raw_secret(b"unrelated".to_vec())
        .raw_secret(raw)
        .build()
        .unwrap();
    assert_eq!(mixed.verify(BODY, &h, at(NOW)).unwrap().secret_index, 2);
    // The whitespace hint is given for raw secrets only.
    let spaced = StandardWebhooks::builder_raw("raw secret\n")
        .build()
        .unwrap();
    assert_eq!(
        spaced.verify(BODY, &h, at(NOW)),
        Err(VerifyError::SignatureMismatch {
            secret_has_whitespace: true
        })
    );
    let raw_sig = standard_webhooks_signature("not base64!", ID, BODY, at(NOW));
    let raw_v = StandardWebhooks::builder_raw("not base64!")
        .build()
        .unwrap();
    assert!(check(&raw_v, ID, &NOW.to_string(), &raw_sig, BODY, NOW).is_ok());
}

#[test]
fn secrets_that_cannot_be_decoded_are_refused_at_build_time() {
    for (secret, index, reason) in [
        ("whsec_not base64", 0, None),
        ("whsec_YQ=", 0, None),
        ("whsec_-_-_", 0, None),
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
            0,
            Some("the secret has surrounding whitespace"),
        ),
        (
            " whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            0,
            Some("the secret has surrounding whitespace"),
        ),
    ] {
        let built = StandardWebhooks::builder(secret).build();
        let Err(ConfigError::InvalidKey {
            index: i,
            reason: r,
        }) = built
        else {
            panic!("{secret:?}: {built:?}")
        };
        assert_eq!(i, index);
        if let Some(reason) = reason {
            assert_eq!(r, reason);
        }
    }
    let second = StandardWebhooks::builder(SECRET).secret("whsec_%%").build();
    assert!(matches!(
        second,
        Err(ConfigError::InvalidKey { index: 1, .. })
    ));
    for empty in ["", "whsec_"] {
        assert_eq!(
            StandardWebhooks::builder(empty).build().unwrap_err(),
            ConfigError::EmptySecret { index: 0 }
        );
    }
    assert_eq!(
        StandardWebhooks::builder(SECRET)
            .raw_secret(Vec::new())
            .build()
            .unwrap_err(),
        ConfigError::EmptySecret { index: 1 }
    );
    // Unprefixed and unpadded secrets are accepted, as the libraries accept the
    // first (all of them) and the second (Python).
    let h = headers(signed(BODY));
    let unprefixed = StandardWebhooks::builder("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .build()
        .unwrap();
    assert!(unprefixed.verify(BODY, &h, at(NOW)).is_ok());
    let unpadded = format!(
        "whsec_{}",
        STANDARD_NO_PAD.encode(b"0123456789abcdefghijkl")
    );
    let padded = format!("whsec_{}", STANDARD.encode(b"0123456789abcdefghijkl"));
    assert_ne!(unpadded, padded);
    let sig = standard_webhooks_signature(&padded, ID, BODY, at(NOW));
    let v = StandardWebhooks::builder(unpadded.as_str())
        .build()
        .unwrap();
    assert!(check(&v, ID, &NOW.to_string(), &sig, BODY, NOW).is_ok());
}

#[test]
fn secrets_never_show_in_debug_or_errors() {
    let builder = StandardWebhooks::builder(SECRET).raw_secret("raw-secret-bytes");
    let text = format!("{builder:?}");
    let v = builder.build().unwrap();
    let text = format!("{text} {v:?}");
    let built = StandardWebhooks::builder("whsec_hunter2!")
        .build()
        .unwrap_err();
    let text = format!("{text} {built} {built:?}");
    for e in [
        err(SIG, Some(b"v1,xyz")),
        err(TS, Some(b"bad")),
        err(MSG_ID, None),
    ] {
        let text = format!("{text} {e} {e:?}");
        for secret in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "raw-secret-bytes",
            "hunter2",
        ] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

#[test]
fn svix_headers_are_read_instead_of_their_webhook_names() {
    let v = verifier();
    let sig = standard_webhooks_signature(SECRET, ID, BODY, at(NOW));
    let ts = NOW.to_string();
    let svix = headers([
        ("svix-id", ID),
        ("svix-timestamp", &ts),
        ("svix-signature", &sig),
    ]);
    assert!(v.detect(&svix));
    assert!(v.verify(BODY, &svix, at(NOW)).is_ok());
    assert_eq!(v.identify(BODY, &svix).unwrap().id, ID);
    // Both families, as Svix's unbranded-compatible senders send them.
    let both = headers(signed(BODY).into_iter().chain([
        ("Svix-Id".to_owned(), ID.to_owned()),
        ("Svix-Timestamp".to_owned(), ts.clone()),
        ("Svix-Signature".to_owned(), sig.clone()),
    ]));
    assert!(v.verify(BODY, &both, at(NOW)).is_ok());
    // Each `svix-` header wins over its `webhook-` name, one header at a time
    // (svix's JavaScript, Python and Rust `verify`).
    let other_id = "msg_svix";
    let svix_sig = standard_webhooks_signature(SECRET, other_id, BODY, at(NOW));
    let mixed = headers([
        (MSG_ID, ID),
        ("svix-id", other_id),
        (TS, ts.as_str()),
        (SIG, sig.as_str()),
        ("svix-signature", svix_sig.as_str()),
    ]);
    assert!(v.verify(BODY, &mixed, at(NOW)).is_ok());
    assert_eq!(v.identify(BODY, &mixed).unwrap().id, other_id);
    let only_id = headers([(MSG_ID, ID), ("svix-id", other_id), (TS, &ts), (SIG, &sig)]);
    assert!(matches!(
        v.verify(BODY, &only_id, at(NOW)),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    // An empty or repeated `svix-` header is not replaced by its `webhook-` one.
    let empty = headers(with(&signed(BODY), "svix-id", ""));
    assert_eq!(
        v.verify(BODY, &empty, at(NOW)),
        Err(VerifyError::MissingHeader("svix-id"))
    );
    let repeated = headers(with(
        &with(&signed(BODY), "svix-timestamp", &ts),
        "svix-timestamp",
        &ts,
    ));
    assert_eq!(
        v.verify(BODY, &repeated, at(NOW)),
        Err(VerifyError::RepeatedHeader("svix-timestamp"))
    );
    let bad = headers(with(&signed(BODY), "svix-signature", "v2,x"));
    assert_eq!(
        v.verify(BODY, &bad, at(NOW)),
        Err(VerifyError::NoSupportedSignature {
            header: "svix-signature",
            scheme: "v1"
        })
    );
    assert!(v.detect(&headers([("SVIX-SIGNATURE", "x")])));
    assert!(v.detect(&headers([("Webhook-Signature", "x")])));
    assert!(!v.detect(&headers([("webhook-id", "x"), ("svix-id", "y")])));
}

#[test]
fn bodies_are_verified_as_raw_bytes_and_may_be_empty() {
    // The Go library signs bytes; the empty body of a signed delivery verifies
    // in every official library.
    assert_raw_bytes_verify(
        &verifier(),
        |body| standard_webhooks_headers(SECRET, ID, body, at(NOW)),
        None,
    );
}

#[test]
fn identify_names_the_kind_from_the_body_type_or_untyped() {
    let v = verifier();
    let kind = |body: &[u8]| v.identify(body, &headers(signed(body))).map(|i| i.kind);
    assert_eq!(kind(br#"{"type":"user.created"}"#).unwrap(), "user.created");
    assert_eq!(
        kind(br#"{"data":{"type":"x"},"type":"a.b","type":"last"}"#).unwrap(),
        "last"
    );
    assert_eq!(kind(br#"{"t\u0079pe":"escaped"}"#).unwrap(), "escaped");
    for untyped in [
        &b""[..],
        b"plain text",
        b"a=1&b=2",
        b"<xml/>",
        b"42",
        br#"{"data":{"type":"nested"}}"#,
        br#"{"type":""}"#,
        br#"{"type":null}"#,
        br#"[{"type":"in.array"}]"#,
    ] {
        assert_eq!(kind(untyped).unwrap(), StandardWebhooks::UNTYPED_KIND);
    }
    for invalid in [
        &b"{"[..],
        b"{\"type\":\"a\"} x",
        b" [1,]",
        b"{\"a\":\"\xff\"}",
    ] {
        assert!(
            matches!(kind(invalid), Err(IdentifyError::InvalidJson(_))),
            "{}",
            String::from_utf8_lossy(invalid)
        );
    }
    let i = v
        .identify(
            br#"{"type":"a","timestamp":"not a date"}"#,
            &headers(signed(b"")),
        )
        .unwrap();
    assert_eq!(i.occurred_at, None);
    assert_eq!(
        v.identify(b"{}", &headers(replace(&signed(b"{}"), MSG_ID, None))),
        Err(IdentifyError::MissingHeader(MSG_ID))
    );
}

#[test]
fn the_profile_states_svix_delivery_facts() {
    let p = verifier().profile();
    assert_eq!(p.answer_within, Duration::from_secs(15));
    assert_eq!(p.retention, Duration::from_secs(96 * 3600));
    assert!(p.retention > Duration::from_secs(75 * 3600 + 35 * 60 + 5));
    assert!(p.retries && p.signs_identity && !p.kinds_carry_action);
    assert_eq!(p.body_limit, 1024 * 1024);
    for signature in [SIG, "svix-signature"] {
        assert!(!p.journal_headers.contains(&signature));
    }
    assert_eq!(p.delivery_id_headers, ["svix-id", "webhook-id"]);
    assert_eq!(
        StandardWebhooks::builder(SECRET)
            .provider_name("clerk")
            .build()
            .unwrap()
            .provider(),
        "clerk"
    );
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn a_pipeline_processes_once_and_deduplicates_by_webhook_id() {
    use hookgate::{handler_fn, HandlerError, MemoryStore, OutcomeKind, Pipeline, Registry};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let mut registry = Registry::new();
    registry.critical(
        "standard-webhooks",
        "invoice.*",
        "record",
        handler_fn(move |event| {
            let counter = counter.clone();
            async move {
                assert_eq!(event.id(), ID);
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }),
    );
    let pipeline = Pipeline::builder()
        .verifier(verifier())
        .store(MemoryStore::new())
        .registry(registry)
        .build()
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let first = headers(standard_webhooks_headers(SECRET, ID, BODY, now));
    let outcome = pipeline.handle(BODY, &first).await;
    assert!(
        matches!(outcome.kind, OutcomeKind::Processed { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.status(), 200);
    // Svix's retry: the same id, a new timestamp and signature.
    let retry = headers(standard_webhooks_headers(
        SECRET,
        ID,
        BODY,
        now - Duration::from_secs(60),
    ));
    let again = pipeline.handle(BODY, &retry).await;
    assert!(matches!(again.kind, OutcomeKind::Duplicate), "{again:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A forged delivery is refused before anything runs.
    let forged = headers(standard_webhooks_headers(OTHER_SECRET, "msg_2", BODY, now));
    assert_eq!(pipeline.handle(BODY, &forged).await.status(), 401);
    pipeline.shutdown(Duration::from_secs(1)).await;
}

const CASES: u32 = 10_000;

fn skip_window() -> StandardWebhooks {
    StandardWebhooks::builder(SECRET)
        .insecure_skip_timestamp_check()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn signing_then_verifying_round_trips(
        key in proptest::collection::vec(any::<u8>(), 1..64),
        id in "[!-~]{1,40}",
        timestamp in any::<i64>(),
        body in proptest::collection::vec(any::<u8>(), 0..128),
        skew in -300i64..=300,
    ) {
        let secret = format!("whsec_{}", STANDARD.encode(&key));
        let text = timestamp.to_string();
        let sig = v1(&key, &id, &text, &body);
        let v = StandardWebhooks::builder(secret.as_str()).build().unwrap();
        let raw = StandardWebhooks::builder_raw(key.clone()).build().unwrap();
        let now = timestamp.saturating_sub(skew).clamp(-377_705_116_800, 253_402_300_799);
        let h = headers([(MSG_ID, id.as_str()), (TS, text.as_str()), (SIG, sig.as_str())]);
        let expect_ok = now == timestamp.saturating_sub(skew);
        prop_assert_eq!(v.verify(&body, &h, at(now)).is_ok(), expect_ok);
        prop_assert_eq!(raw.verify(&body, &h, at(now)).is_ok(), expect_ok);
        if let Ok(at_ts) = time::OffsetDateTime::from_unix_timestamp(timestamp) {
            prop_assert_eq!(standard_webhooks_signature(&secret, &id, &body, at_ts), sig);
        }
    }

    #[test]
    fn any_single_byte_change_of_the_body_is_rejected(
        body in proptest::collection::vec(any::<u8>(), 1..96),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let h = headers(signed(&body));
        let v = verifier();
        prop_assert!(v.verify(&body, &h, at(NOW)).is_ok());
        let mut changed = body.clone();
        changed[index.index(body.len())] ^= flip;
        prop_assert!(v.verify(&changed, &h, at(NOW)).is_err());
    }

    #[test]
    fn any_single_byte_change_of_a_signed_header_is_rejected(
        which in 0usize..3,
        svix in any::<bool>(),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let v = skip_window();
        let mut pairs: Vec<(String, Vec<u8>)> = signed(&body)
            .into_iter()
            .map(|(n, value)| {
                let n = if svix { n.replace("webhook-", "svix-") } else { n };
                (n, value.into_bytes())
            })
            .collect();
        prop_assert!(v.verify(&body, &headers(pairs.clone()), at(NOW)).is_ok());
        let value = &mut pairs[which].1;
        let i = index.index(value.len());
        value[i] ^= flip;
        let result = v.verify(&body, &headers(pairs), at(NOW));
        prop_assert!(result.is_err(), "{:?}", result);
        if let Err(e) = result {
            assert_status(&e);
        }
    }

    #[test]
    fn arbitrary_header_bytes_never_panic(
        id in proptest::collection::vec(any::<u8>(), 0..48),
        timestamp in proptest::collection::vec(any::<u8>(), 0..24),
        signature in proptest::collection::vec(any::<u8>(), 0..200),
        svix in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let prefix = if svix { "svix-" } else { "webhook-" };
        let h = headers([
            (format!("{prefix}id"), id),
            (format!("{prefix}timestamp"), timestamp),
            (format!("{prefix}signature"), signature),
        ]);
        for v in [verifier(), skip_window()] {
            if let Err(e) = v.verify(&body, &h, at(NOW)) {
                assert_status(&e);
            }
            let _ = v.identify(&body, &h);
        }
    }

    #[test]
    fn signature_shaped_headers_never_panic_and_never_verify(
        signature in "((v1|v1a|v2| |,)(,[A-Za-z0-9+/= ,]{0,50})?( )?){0,8}",
        timestamp in "[-+]?[0-9]{0,21}",
    ) {
        let h = headers([(MSG_ID, ID), (TS, timestamp.as_str()), (SIG, signature.as_str())]);
        for v in [verifier(), skip_window()] {
            let result = v.verify(BODY, &h, at(NOW));
            prop_assert!(result.is_err());
            if let Err(e) = result {
                assert_status(&e);
            }
        }
    }
}

/// `v1a` (ed25519) signatures, with the `ed25519` feature.
#[cfg(feature = "ed25519")]
mod v1a {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    /// An independent vector: made with Python's `cryptography` (OpenSSL) from the
    /// seed 0x00..0x1f, over the specification's example message.
    const PUBLIC_KEY: &str = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    const SPEC_ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    const SPEC_TS: i64 = 1_674_087_231;
    const SPEC_BODY: &[u8] = br#"{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485"}}"#;
    const SPEC_SIG: &str = "v1a,9WMPN5fBW9vm1uGlvFzBO4lpdfFKN4AQCSr2vrWsFuOibXSOTWlcWrPRSWk+YpmD9fAwgYREKtLcYCyZrvXFBw==";

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn whpk(key: &SigningKey) -> String {
        format!("whpk_{}", STANDARD.encode(key.verifying_key().as_bytes()))
    }

    fn v1a(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut message = format!("{id}.{timestamp}.").into_bytes();
        message.extend_from_slice(body);
        format!("v1a,{}", STANDARD.encode(key.sign(&message).to_bytes()))
    }

    fn spec_check(
        v: &StandardWebhooks,
        signature: &str,
    ) -> Result<hookgate::Verified, VerifyError> {
        check(
            v,
            SPEC_ID,
            &SPEC_TS.to_string(),
            signature,
            SPEC_BODY,
            SPEC_TS,
        )
    }

    #[test]
    fn the_independent_vector_verifies_with_the_public_key_alone() {
        let seeded = SigningKey::from_bytes(&std::array::from_fn(|i| i as u8));
        assert_eq!(whpk(&seeded), PUBLIC_KEY);
        assert_eq!(v1a(&seeded, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
        let v = StandardWebhooks::builder_public_key(PUBLIC_KEY)
            .build()
            .unwrap();
        assert!(v.secrets().is_none());
        let verified = spec_check(&v, SPEC_SIG).unwrap();
        assert_eq!(
            (verified.secret_index, verified.signed_at),
            (0, Some(at(SPEC_TS)))
        );
        // The specification's header shape: a `v1` and a `v1a` entry.
        let hmac = v1(&key(SECRET), SPEC_ID, &SPEC_TS.to_string(), SPEC_BODY);
        assert!(spec_check(&v, &format!("{hmac} {SPEC_SIG}")).is_ok());
        // Unprefixed and unpadded keys are accepted, like secrets.
        let bare = PUBLIC_KEY.trim_start_matches("whpk_").trim_end_matches('=');
        assert!(spec_check(
            &StandardWebhooks::builder_public_key(bare).build().unwrap(),
            SPEC_SIG
        )
        .is_ok());
    }

    #[test]
    fn any_change_or_another_key_is_a_mismatch() {
        let v = StandardWebhooks::builder_public_key(PUBLIC_KEY)
            .build()
            .unwrap();
        let mismatch = Err(VerifyError::SignatureMismatch {
            secret_has_whitespace: false,
        });
        let ts = SPEC_TS.to_string();
        assert_eq!(check(&v, SPEC_ID, &ts, SPEC_SIG, b"{}", SPEC_TS), mismatch);
        assert_eq!(
            check(&v, "msg_other", &ts, SPEC_SIG, SPEC_BODY, SPEC_TS),
            mismatch
        );
        let other = signing_key(9);
        assert_eq!(
            spec_check(&v, &v1a(&other, SPEC_ID, SPEC_TS, SPEC_BODY)),
            mismatch
        );
        let value = SPEC_SIG.trim_start_matches("v1a,");
        let bytes = STANDARD.decode(value).unwrap();
        for malformed in [
            format!("v1a,{}", STANDARD_NO_PAD.encode(&bytes)),
            format!("v1a,{}", URL_SAFE.encode(&bytes)),
            format!("v1a,{value},"),
            format!("v1a,{}", &value[4..]),
            "v1a,".to_owned(),
        ] {
            assert_eq!(spec_check(&v, &malformed), mismatch, "{malformed}");
        }
        // Each byte of the signature matters.
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1;
            let header = format!("v1a,{}", STANDARD.encode(&flipped));
            assert_eq!(spec_check(&v, &header), mismatch, "byte {i}");
        }
    }

    #[test]
    fn schemes_without_a_configured_key_are_not_supported() {
        let keys_only = StandardWebhooks::builder_public_key(PUBLIC_KEY)
            .build()
            .unwrap();
        let hmac = v1(&key(SECRET), SPEC_ID, &SPEC_TS.to_string(), SPEC_BODY);
        assert_eq!(
            spec_check(&keys_only, &hmac),
            Err(VerifyError::NoSupportedSignature {
                header: SIG,
                scheme: "v1a"
            })
        );
        // Without public keys, `v1a` entries are unknown versions.
        let secrets_only = verifier();
        assert_eq!(
            spec_check(&secrets_only, SPEC_SIG),
            Err(VerifyError::NoSupportedSignature {
                header: SIG,
                scheme: "v1"
            })
        );
        let both = StandardWebhooks::builder(SECRET)
            .public_key(PUBLIC_KEY)
            .build()
            .unwrap();
        assert_eq!(
            spec_check(&both, "v2,x"),
            Err(VerifyError::NoSupportedSignature {
                header: SIG,
                scheme: "v1 or v1a"
            })
        );
        // The window still comes first.
        assert!(matches!(
            check(
                &keys_only,
                SPEC_ID,
                &SPEC_TS.to_string(),
                SPEC_SIG,
                SPEC_BODY,
                SPEC_TS + 301
            ),
            Err(VerifyError::TimestampOutsideTolerance {
                skew_seconds: 301,
                ..
            })
        ));
    }

    #[test]
    fn public_keys_are_numbered_after_the_secrets() {
        let (old, new) = (signing_key(1), signing_key(2));
        let v = StandardWebhooks::builder(OTHER_SECRET)
            .secret(SECRET)
            .public_key(whpk(&old))
            .public_key(whpk(&new))
            .build()
            .unwrap();
        let ts = NOW.to_string();
        let index =
            |signature: &str| check(&v, ID, &ts, signature, BODY, NOW).map(|v| v.secret_index);
        assert_eq!(index(&v1a(&new, ID, NOW, BODY)), Ok(3));
        assert_eq!(index(&v1a(&old, ID, NOW, BODY)), Ok(2));
        let hmac = standard_webhooks_signature(SECRET, ID, BODY, at(NOW));
        assert_eq!(
            index(&format!("{} {hmac}", v1a(&new, ID, NOW, BODY))),
            Ok(1)
        );
        let forged = v1a(&signing_key(3), ID, NOW, BODY);
        assert!(matches!(
            index(&forged),
            Err(VerifyError::SignatureMismatch { .. })
        ));
    }

    #[test]
    fn bad_public_keys_are_refused_at_build_time_with_their_index() {
        let weak = {
            let mut identity = [0u8; 32];
            identity[0] = 1;
            format!("whpk_{}", STANDARD.encode(identity))
        };
        for bad in [
            "whpk_not base64".to_owned(),
            format!("{PUBLIC_KEY}\n"),
            "whpk_AAAA".to_owned(),
            format!("whpk_{}", STANDARD.encode([0u8; 33])),
            weak,
        ] {
            let built = StandardWebhooks::builder(SECRET).public_key(&bad).build();
            assert!(
                matches!(built, Err(ConfigError::InvalidKey { index: 1, .. })),
                "{bad:?}: {built:?}"
            );
            let alone = StandardWebhooks::builder_public_key(&bad).build();
            assert!(
                matches!(alone, Err(ConfigError::InvalidKey { index: 0, .. })),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]

        #[test]
        fn ed25519_signing_then_verifying_round_trips_and_flips_fail(
            seed in any::<[u8; 32]>(),
            id in "[!-~]{1,40}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
            index in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let signing = SigningKey::from_bytes(&seed);
            let v = StandardWebhooks::builder_public_key(whpk(&signing))
                .insecure_skip_timestamp_check()
                .build()
                .unwrap();
            let sig = v1a(&signing, &id, NOW, &body);
            let ts = NOW.to_string();
            let h = headers([(MSG_ID, id.as_str()), (TS, ts.as_str()), (SIG, sig.as_str())]);
            prop_assert!(v.verify(&body, &h, at(NOW)).is_ok());
            let mut changed = body.clone();
            if changed.is_empty() {
                changed.push(flip);
            } else {
                changed[index.index(body.len())] ^= flip;
            }
            prop_assert!(v.verify(&changed, &h, at(NOW)).is_err());
        }
    }
}
