//! The Stripe verifier against stripe-node's `Webhooks` rules.

mod common;

use std::time::Duration;

use common::{assert_raw_bytes_verify, assert_status, at, headers, NOW};
use hookgate::testing::{stripe_headers, stripe_signature};
use hookgate::{ConfigError, IdentifyError, SecretSet, Stripe, Verified, Verifier, VerifyError};

const SECRET: &str = "whsec_test_secret";
const BODY: &[u8] =
    br#"{"id":"evt_1","object":"event","type":"checkout.session.completed","created":1699999990}"#;

fn stripe() -> Stripe {
    Stripe::builder(SECRET).build().unwrap()
}

/// `v1=` hex of the MAC over `{t_text}.{body}`, for headers the helpers cannot make.
fn v1(secret: &str, t_text: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn verify_value(
    stripe: &Stripe,
    value: &str,
    body: &[u8],
    now: i64,
) -> Result<Verified, VerifyError> {
    stripe.verify(body, &headers([("Stripe-Signature", value)]), at(now))
}

fn err(stripe: &Stripe, value: &str, body: &[u8], now: i64) -> VerifyError {
    let err = verify_value(stripe, value, body, now).unwrap_err();
    assert_status(&err);
    err
}

#[test]
fn round_trip_verifies_and_identifies() {
    let h = headers(stripe_headers(SECRET, BODY, at(NOW)));
    let verified = stripe().verify(BODY, &h, at(NOW)).unwrap();
    assert_eq!(verified.signed_at, Some(at(NOW)));
    assert_eq!(verified.secret_index, 0);
    let identity = stripe().identify(BODY, &h).unwrap();
    assert_eq!(identity.id, "evt_1");
    assert_eq!(identity.kind, "checkout.session.completed");
    assert_eq!(identity.occurred_at, Some(at(1_699_999_990)));
    assert!(identity.metadata.is_empty());
    assert!(stripe().detect(&h));
    assert_eq!(stripe().provider(), "stripe");
}

#[test]
fn works_behind_box_dyn_verifier() {
    let boxed: Box<dyn Verifier> = Box::new(stripe());
    let h = headers(stripe_headers(SECRET, BODY, at(NOW)));
    assert!(boxed.verify(BODY, &h, at(NOW)).is_ok());
    assert_eq!(boxed.identify(BODY, &h).unwrap().id, "evt_1");
}

#[test]
fn rotation_accepts_old_and_new_secrets_and_two_v1_values() {
    let both = Stripe::builder(SecretSet::new("whsec_new").with("whsec_old"))
        .build()
        .unwrap();
    let by_old = stripe_signature("whsec_old", BODY, at(NOW));
    let by_new = stripe_signature("whsec_new", BODY, at(NOW));
    assert_eq!(
        verify_value(&both, &by_old, BODY, NOW)
            .unwrap()
            .secret_index,
        1
    );
    assert_eq!(
        verify_value(&both, &by_new, BODY, NOW)
            .unwrap()
            .secret_index,
        0
    );

    // While Stripe rolls a secret it sends one v1 per secret; either may be ours.
    let t = NOW.to_string();
    let rolling = format!(
        "t={t},v1={},v1={}",
        v1("whsec_old", &t, BODY),
        v1("whsec_new", &t, BODY)
    );
    let only_new = Stripe::builder("whsec_new").build().unwrap();
    let only_old = Stripe::builder("whsec_old").build().unwrap();
    assert!(verify_value(&only_new, &rolling, BODY, NOW).is_ok());
    assert!(verify_value(&only_old, &rolling, BODY, NOW).is_ok());
    let other = Stripe::builder("whsec_other").build().unwrap();
    assert!(matches!(
        err(&other, &rolling, BODY, NOW),
        VerifyError::SignatureMismatch { .. }
    ));

    // The builder adds secrets too.
    let added = Stripe::builder("whsec_new")
        .secret("whsec_old")
        .build()
        .unwrap();
    assert_eq!(added.secrets().len(), 2);
    assert_eq!(
        verify_value(&added, &by_old, BODY, NOW)
            .unwrap()
            .secret_index,
        1
    );
}

#[test]
fn entries_may_come_in_any_order_and_unknown_schemes_are_ignored() {
    let t = NOW.to_string();
    let good = v1(SECRET, &t, BODY);
    let bad = "0".repeat(64);
    for value in [
        format!("v1={good},t={t}"),
        format!("t={t},v0={bad},v1={good}"),
        format!("v0={bad},v1={bad},t={t},v1={good},x=y,=,"),
        format!("t=1,v1={good},t={t}"), // the last t wins, as in stripe-node's reduce
    ] {
        assert!(
            verify_value(&stripe(), &value, BODY, NOW).is_ok(),
            "{value}"
        );
    }
    assert_eq!(
        err(&stripe(), &format!("t={t},v0={good}"), BODY, NOW),
        VerifyError::NoSupportedSignature {
            header: "Stripe-Signature",
            scheme: "v1"
        }
    );
}

#[test]
fn tolerance_boundary_is_inclusive_and_default_300_seconds() {
    let value = stripe_signature(SECRET, BODY, at(NOW));
    assert!(verify_value(&stripe(), &value, BODY, NOW + 300).is_ok());
    let late = err(&stripe(), &value, BODY, NOW + 301);
    assert_eq!(
        late,
        VerifyError::TimestampOutsideTolerance {
            skew_seconds: 301,
            tolerance_seconds: 300
        }
    );
    assert!(
        late.to_string()
            .contains("signed 301 s before now (tolerance 300 s)"),
        "{late}"
    );

    let ten = Stripe::builder(SECRET)
        .tolerance(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(verify_value(&ten, &value, BODY, NOW + 10).is_ok());
    assert_eq!(
        err(&ten, &value, BODY, NOW + 11),
        VerifyError::TimestampOutsideTolerance {
            skew_seconds: 11,
            tolerance_seconds: 10
        }
    );
    // Whole seconds: 10.9 s behaves as 10 s since ages are whole seconds.
    let fractional = Stripe::builder(SECRET)
        .tolerance(Duration::from_millis(10_900))
        .build()
        .unwrap();
    assert!(verify_value(&fractional, &value, BODY, NOW + 10).is_ok());
    assert!(verify_value(&fractional, &value, BODY, NOW + 11).is_err());

    let zero = Stripe::builder(SECRET)
        .tolerance(Duration::ZERO)
        .build()
        .unwrap();
    assert!(verify_value(&zero, &value, BODY, NOW).is_ok());
    assert!(verify_value(&zero, &value, BODY, NOW + 1).is_err());

    let skip = Stripe::builder(SECRET)
        .insecure_skip_timestamp_check()
        .build()
        .unwrap();
    assert!(verify_value(&skip, &value, BODY, NOW + 10 * 365 * 86_400).is_ok());
}

#[test]
fn future_timestamps_pass_by_default_and_fail_with_max_future_skew() {
    let value = stripe_signature(SECRET, BODY, at(NOW + 3600));
    // stripe-node only checks the age (`timestampAge > tolerance`).
    assert!(verify_value(&stripe(), &value, BODY, NOW).is_ok());
    let strict = Stripe::builder(SECRET)
        .max_future_skew(Duration::from_secs(60))
        .build()
        .unwrap();
    assert!(verify_value(&strict, &value, BODY, NOW + 3600 - 60).is_ok());
    let e = err(&strict, &value, BODY, NOW + 3600 - 61);
    assert_eq!(
        e,
        VerifyError::TimestampOutsideTolerance {
            skew_seconds: -61,
            tolerance_seconds: 60
        }
    );
    assert!(e.to_string().contains("signed 61 s after now"), "{e}");
    // The past side still uses the tolerance.
    assert!(verify_value(&strict, &value, BODY, NOW + 3600 + 300).is_ok());
    assert!(verify_value(&strict, &value, BODY, NOW + 3600 + 301).is_err());
}

#[test]
fn signature_is_checked_before_the_timestamp() {
    let forged = format!("t={NOW},v1={}", "a".repeat(64));
    assert!(matches!(
        err(&stripe(), &forged, BODY, NOW + 10_000),
        VerifyError::SignatureMismatch { .. }
    ));
}

#[test]
fn header_name_is_case_insensitive() {
    let value = stripe_signature(SECRET, BODY, at(NOW));
    for name in [
        "stripe-signature",
        "STRIPE-SIGNATURE",
        "Stripe-Signature",
        "sTrIpE-sIgNaTuRe",
    ] {
        let h = headers([(name, value.as_str())]);
        assert!(stripe().detect(&h));
        assert!(stripe().verify(BODY, &h, at(NOW)).is_ok(), "{name}");
    }
}

#[test]
fn repeated_header_is_refused_even_when_one_copy_is_valid() {
    let value = stripe_signature(SECRET, BODY, at(NOW));
    let h = headers([
        ("Stripe-Signature", value.as_str()),
        ("stripe-signature", value.as_str()),
    ]);
    let e = stripe().verify(BODY, &h, at(NOW)).unwrap_err();
    assert_eq!(e, VerifyError::RepeatedHeader("Stripe-Signature"));
    assert_status(&e);
}

#[test]
fn missing_empty_and_malformed_headers() {
    let e = stripe()
        .verify(BODY, &headers([("X-Other", "1")]), at(NOW))
        .unwrap_err();
    assert_eq!(e, VerifyError::MissingHeader("Stripe-Signature"));
    assert_status(&e);
    assert!(!stripe().detect(&headers([("X-Other", "1")])));

    let malformed = |reason| VerifyError::MalformedHeader {
        header: "Stripe-Signature",
        reason,
    };
    assert_eq!(
        err(&stripe(), "", BODY, NOW),
        malformed("the value is empty")
    );
    let good = v1(SECRET, &NOW.to_string(), BODY);
    for value in [
        format!("v1={good}"),
        format!("t=-1,v1={good}"),
        format!("T={NOW},v1={good}"),
        "   ".into(),
    ] {
        assert_eq!(
            err(&stripe(), &value, BODY, NOW),
            malformed("no `t=` timestamp"),
            "{value}"
        );
    }
    // stripe-node throws on a bare `v1` entry even when another v1 matches.
    assert_eq!(
        err(&stripe(), &format!("t={NOW},v1={good},v1"), BODY, NOW),
        malformed("a `v1` entry has no `=` and no value")
    );
    assert_eq!(
        err(&stripe(), &format!("t={NOW},v0={good}"), BODY, NOW),
        VerifyError::NoSupportedSignature {
            header: "Stripe-Signature",
            scheme: "v1"
        }
    );
}

#[test]
fn whitespace_and_letter_case_follow_stripe_node() {
    let t = NOW.to_string();
    let good = v1(SECRET, &t, BODY);
    // Keys are compared exactly: " v1" and "V1" are other schemes.
    for value in [format!("t={t}, v1={good}"), format!("t={t},V1={good}")] {
        assert!(
            matches!(
                err(&stripe(), &value, BODY, NOW),
                VerifyError::NoSupportedSignature { .. }
            ),
            "{value}"
        );
    }
    // Values are compared as text with the lowercase hex digest.
    for value in [
        format!("t={t},v1={}", good.to_uppercase()),
        format!("t={t},v1={good} "),
        format!("t={t},v1= {good}"),
        format!("t={t},v1={}", &good[..63]),
        format!("t={t},v1={good}0"),
        format!("t={t},v1="),
    ] {
        assert!(
            matches!(
                err(&stripe(), &value, BODY, NOW),
                VerifyError::SignatureMismatch { .. }
            ),
            "{value}"
        );
    }
    // A v1 value ends at the next '=' (JavaScript's split), so a suffix after it is ignored.
    assert!(verify_value(&stripe(), &format!("t={t},v1={good}=ignored"), BODY, NOW).is_ok());
}

#[test]
fn timestamp_is_read_like_parse_int_and_signed_as_javascript_prints_it() {
    let signed = v1(SECRET, &NOW.to_string(), BODY);
    for t_text in [
        " 1700000000",
        "01700000000",
        "+1700000000",
        "1700000000.9",
        "1700000000abc",
        "\t1700000000",
    ] {
        let value = format!("t={t_text},v1={signed}");
        let verified =
            verify_value(&stripe(), &value, BODY, NOW).unwrap_or_else(|e| panic!("{t_text}: {e}"));
        assert_eq!(verified.signed_at, Some(at(NOW)));
    }
    // A `t` parseInt cannot read is NaN: the SDK signs "NaN.{body}" and its age check
    // never fails (NaN > tolerance is false). The default matches; nothing is dated.
    let nan = format!("t=abc,v1={}", v1(SECRET, "NaN", BODY));
    let verified = verify_value(&stripe(), &nan, BODY, NOW).unwrap();
    assert_eq!(verified.signed_at, None);
    // Huge values are signed the way JavaScript prints them.
    let huge = format!("t=1000000000000000000000,v1={}", v1(SECRET, "1e+21", BODY));
    assert!(verify_value(&stripe(), &huge, BODY, NOW).is_ok());
    let negative = format!("t=-5,v1={}", v1(SECRET, "-5", BODY));
    assert!(matches!(
        err(&stripe(), &negative, BODY, NOW),
        VerifyError::TimestampOutsideTolerance { .. }
    ));
}

#[test]
fn bodies_are_verified_as_raw_bytes() {
    // stripe-node accepts an empty Buffer, so a signed empty body verifies.
    assert_raw_bytes_verify(
        &stripe(),
        |body| stripe_headers(SECRET, body, at(NOW)),
        None,
    );
}

#[test]
fn identify_reads_the_envelope_and_reports_unusable_payloads() {
    let h = headers(stripe_headers(SECRET, b"", at(NOW)));
    let id = |body: &[u8]| stripe().identify(body, &h);
    assert!(matches!(id(b"hello"), Err(IdentifyError::InvalidJson(_))));
    assert!(matches!(id(b""), Err(IdentifyError::InvalidJson(_))));
    assert_eq!(
        id(br#"{"type":"a"}"#),
        Err(IdentifyError::MissingField("id"))
    );
    assert_eq!(
        id(br#"{"id":7,"type":"a"}"#),
        Err(IdentifyError::MissingField("id"))
    );
    assert_eq!(
        id(br#"{"id":"","type":"a"}"#),
        Err(IdentifyError::MissingField("id"))
    );
    assert_eq!(
        id(br#"{"id":"evt"}"#),
        Err(IdentifyError::MissingField("type"))
    );
    assert_eq!(id(br#"[1]"#), Err(IdentifyError::MissingField("id")));
    let thin = id(
        br#"{"id":"evt_t","object":"v2.core.event","type":"x","created":"2024-01-01T00:00:00Z"}"#,
    );
    assert!(matches!(thin, Err(IdentifyError::Unsupported(_))));
    assert_eq!(thin.unwrap_err().status(), 400);

    let identity =
        id(br#"{"type":"a.b","data":{"id":"inner"},"id":"evt_9","created":"soon"}"#).unwrap();
    assert_eq!(
        (
            identity.id.as_str(),
            identity.kind.as_str(),
            identity.occurred_at
        ),
        ("evt_9", "a.b", None)
    );
    // Escaped keys and values are read as JSON.parse reads them.
    let identity = id(br#"{"i\u0064":"evt_\u0031","type":"x"}"#).unwrap();
    assert_eq!(identity.id, "evt_1");
}

#[test]
fn errors_explain_without_leaking_secrets() {
    let with_newline = Stripe::builder("whsec_leaky\n").build().unwrap();
    let value = stripe_signature("whsec_other", BODY, at(NOW));
    let e = err(&with_newline, &value, BODY, NOW);
    assert_eq!(
        e,
        VerifyError::SignatureMismatch {
            secret_has_whitespace: true
        }
    );
    let text = e.to_string();
    assert!(
        text.contains("raw request body") && text.contains("whitespace"),
        "{text}"
    );
    let expected = v1("whsec_leaky\n", &NOW.to_string(), BODY);
    for shown in [text.clone(), format!("{e:?}"), format!("{with_newline:?}")] {
        assert!(
            !shown.contains("whsec_leaky") && !shown.contains(&expected),
            "{shown}"
        );
    }
    let plain = err(&stripe(), &value, BODY, NOW);
    assert_eq!(
        plain,
        VerifyError::SignatureMismatch {
            secret_has_whitespace: false
        }
    );
    assert!(!plain.to_string().contains("whitespace"));
}

#[test]
fn empty_secrets_are_refused_at_build_time() {
    let e = Stripe::builder("whsec_ok").secret("").build().unwrap_err();
    assert_eq!(e, ConfigError::EmptySecret { index: 1 });
    assert!(e.to_string().contains("#1"));
}

#[test]
fn every_v1_value_is_considered_however_many_there_are() {
    let t = NOW.to_string();
    let both = Stripe::builder("whsec_new")
        .secret("whsec_old")
        .build()
        .unwrap();
    let wrong: Vec<String> = (0..6)
        .map(|i| format!("v1={}", format!("{i:x}").repeat(64)))
        .collect();
    for position in [0, 3, 6] {
        let mut entries = wrong.clone();
        entries.insert(position, format!("v1={}", v1("whsec_old", &t, BODY)));
        let value = format!("t={t},{}", entries.join(","));
        let verified =
            verify_value(&both, &value, BODY, NOW).unwrap_or_else(|e| panic!("{position}: {e}"));
        assert_eq!(verified.secret_index, 1);
    }
    let value = format!("t={t},{}", wrong.join(","));
    assert!(matches!(
        err(&both, &value, BODY, NOW),
        VerifyError::SignatureMismatch { .. }
    ));
}

#[test]
fn require_plain_timestamp_refuses_what_parse_int_tolerates() {
    let strict = Stripe::builder(SECRET)
        .require_plain_timestamp()
        .build()
        .unwrap();
    let signed = v1(SECRET, &NOW.to_string(), BODY);
    assert!(verify_value(&strict, &format!("t={NOW},v1={signed}"), BODY, NOW).is_ok());
    // The last `t` decides, as for the default reading.
    assert!(verify_value(&strict, &format!("t=x,t={NOW},v1={signed}"), BODY, NOW).is_ok());
    let nan = v1(SECRET, "NaN", BODY);
    for value in [
        format!("t= {NOW},v1={signed}"),
        format!("t={NOW}abc,v1={signed}"),
        format!("t=+{NOW},v1={signed}"),
        format!("t=abc,v1={nan}"),
        format!("t=,v1={nan}"),
        format!("t,v1={nan}"),
        format!("t={NOW},v1={signed},t={NOW}.0"),
    ] {
        assert_eq!(
            err(&strict, &value, BODY, NOW),
            VerifyError::MalformedHeader {
                header: "Stripe-Signature",
                reason: "the `t=` timestamp is not plain decimal digits"
            },
            "{value}"
        );
        // The default (stripe-node's reading) accepts every one of them.
        assert!(
            verify_value(&stripe(), &value, BODY, NOW).is_ok(),
            "{value}"
        );
    }
}
