//! The Slack verifier against the official SDKs (python-slack-sdk's
//! `SignatureVerifier`, Bolt for JavaScript's `verifySlackRequest`, slack-go's
//! `SecretsVerifier`), and how it names Events API, interactivity and slash
//! command requests.

mod common;

use std::time::Duration;

use common::{assert_raw_bytes_verify, assert_status, at, headers, replace, with, NOW};
use hmac::{Hmac, Mac};
use hookgate::testing::{slack_headers, slack_signature};
use hookgate::{ConfigError, Headers, IdentifyError, SecretSet, Slack, Verifier, VerifyError};
use proptest::prelude::*;

/// The signing secret of Slack's "Verifying requests from Slack" guide (and
/// python-slack-sdk's test), with its slash command request.
const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const DOC_TIMESTAMP: &str = "1531420618";
const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const DOC_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

const SECRET: &str = "e2b7c1a94f0d3e5b8a6c7d9f01234567";
const OTHER_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const SIG: &str = "X-Slack-Signature";
const TS: &str = "X-Slack-Request-Timestamp";

/// An Events API delivery of a `message` event with a subtype.
const EVENT: &[u8] = br#"{"token":"XXYYZZ","team_id":"T0001","api_app_id":"A0001","event":{"type":"message","subtype":"channel_join","channel":"C1","user":"U1","text":"<@U1> has joined the channel","ts":"1700000000.000100"},"type":"event_callback","authorizations":[{"team_id":"T0001","is_bot":true}],"event_id":"Ev0PV52K21","event_time":1700000000,"event_context":"EC12345"}"#;

fn verifier() -> Slack {
    Slack::builder(SECRET).build().unwrap()
}

fn skip_window() -> Slack {
    Slack::builder(SECRET)
        .insecure_skip_timestamp_check()
        .build()
        .unwrap()
}

fn signed(body: &[u8]) -> Vec<(String, String)> {
    slack_headers(SECRET, body, at(NOW))
}

/// `v0=<hex>` of the HMAC-SHA256 of `v0:{timestamp}:{body}` with `secret`,
/// the timestamp taken as the text given (computed here, not by hookgate).
fn v0(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verifies `body` with these two header values at `now`.
fn check(
    verifier: &Slack,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<hookgate::Verified, VerifyError> {
    let result = verifier.verify(body, &headers([(TS, timestamp), (SIG, signature)]), at(now));
    if let Err(e) = &result {
        assert_status(e);
    }
    result
}

/// The error for the signed delivery of `EVENT` with `name` replaced by `value`.
fn err(name: &str, value: Option<&[u8]>) -> VerifyError {
    let e = verifier()
        .verify(
            EVENT,
            &headers(replace(&signed(EVENT), name, value)),
            at(NOW),
        )
        .unwrap_err();
    assert_status(&e);
    e
}

fn malformed(header: &'static str) -> impl Fn(&VerifyError) -> bool {
    move |e| matches!(e, VerifyError::MalformedHeader { header: h, .. } if *h == header)
}

#[test]
fn the_documented_request_verifies_and_signs() {
    let slack = Slack::builder(DOC_SECRET).build().unwrap();
    let now: i64 = DOC_TIMESTAMP.parse().unwrap();
    let verified = check(
        &slack,
        DOC_TIMESTAMP,
        DOC_SIGNATURE,
        DOC_BODY.as_bytes(),
        now,
    )
    .unwrap();
    assert_eq!(verified.signed_at, Some(at(now)));
    assert_eq!(verified.secret_index, 0);
    assert_eq!(
        slack_signature(DOC_SECRET, DOC_BODY.as_bytes(), at(now)),
        DOC_SIGNATURE
    );
    assert_eq!(
        v0(DOC_SECRET.as_bytes(), DOC_TIMESTAMP, DOC_BODY.as_bytes()),
        DOC_SIGNATURE
    );
    // python-slack-sdk's own negative case: the body with "------" appended.
    let changed = format!("{DOC_BODY}------");
    assert!(matches!(
        check(
            &slack,
            DOC_TIMESTAMP,
            DOC_SIGNATURE,
            changed.as_bytes(),
            now
        ),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    // And its expiration case: the same request checked today.
    assert!(matches!(
        check(
            &slack,
            DOC_TIMESTAMP,
            DOC_SIGNATURE,
            DOC_BODY.as_bytes(),
            NOW
        ),
        Err(VerifyError::TimestampOutsideTolerance { .. })
    ));
}

#[test]
fn round_trip_verifies_and_identifies() {
    let h = headers(signed(EVENT));
    let v = verifier();
    assert_eq!(v.provider(), "slack");
    assert!(v.detect(&h));
    assert!(!v.detect(&headers([(TS, "1")])));
    let verified = v.verify(EVENT, &h, at(NOW)).unwrap();
    assert_eq!(verified.signed_at, Some(at(NOW)));
    assert!(v.handshake(EVENT, &h).is_none());
    let identity = v.identify(EVENT, &h).unwrap();
    assert_eq!(identity.id, "Ev0PV52K21");
    assert_eq!(identity.kind, "message.channel_join");
    assert_eq!(identity.occurred_at, Some(at(1_700_000_000)));
    assert_eq!(identity.metadata("team_id"), Some("T0001"));
    assert_eq!(identity.metadata("api_app_id"), Some("A0001"));
    assert_eq!(identity.metadata("retry_num"), None);
}

#[test]
fn every_missing_header_is_named() {
    assert_eq!(err(SIG, None), VerifyError::MissingHeader(SIG));
    assert_eq!(err(TS, None), VerifyError::MissingHeader(TS));
    let e = verifier()
        .verify(EVENT, &Headers::new(), at(NOW))
        .unwrap_err();
    assert_eq!(e, VerifyError::MissingHeader(SIG));
    // Header names match case-insensitively.
    let lower: Vec<_> = signed(EVENT)
        .into_iter()
        .map(|(n, v)| (n.to_lowercase(), v))
        .collect();
    assert!(verifier().verify(EVENT, &headers(lower), at(NOW)).is_ok());
}

#[test]
fn repeated_headers_are_refused() {
    let pairs = signed(EVENT);
    for name in [SIG, TS] {
        let value = pairs.iter().find(|(n, _)| n == name).unwrap().1.clone();
        // Even the same value twice: slack-go would read the first, Bolt refuses.
        let twice = with(&pairs, name, &value);
        let e = verifier()
            .verify(EVENT, &headers(twice), at(NOW))
            .unwrap_err();
        assert_eq!(e, VerifyError::RepeatedHeader(name));
        assert_status(&e);
    }
}

#[test]
fn signatures_must_be_v0_and_64_lowercase_hex_digits() {
    let good = pairs_value(SIG);
    assert!(malformed(SIG)(&err(SIG, Some(b""))));
    let hex = good.strip_prefix("v0=").unwrap();
    // slack-go trims an optional `v0=` and accepts a bare hex value: we do not.
    assert_eq!(
        err(SIG, Some(hex.as_bytes())),
        VerifyError::NoSupportedSignature {
            header: SIG,
            scheme: "v0"
        }
    );
    for other in [
        format!("v1={hex}"),
        format!("V0={hex}"),
        format!("v0:{hex}"),
        format!(" v0={hex}"),
    ] {
        assert!(
            matches!(
                err(SIG, Some(other.as_bytes())),
                VerifyError::NoSupportedSignature { .. }
            ),
            "{other}"
        );
    }
    for bad in [
        // slack-go decodes uppercase hex; Node's and Python's digests are lowercase.
        format!("v0={}", hex.to_uppercase()),
        // Bolt splits on `=` and ignores whatever follows a second one.
        format!("{good}=anything"),
        format!("{good}0"),
        good[..good.len() - 1].to_owned(),
        format!("{good} "),
        format!("v0= {hex}"),
        "v0=".to_owned(),
        format!("v0={}", "g".repeat(64)),
    ] {
        assert!(malformed(SIG)(&err(SIG, Some(bad.as_bytes()))), "{bad}");
    }
    assert!(malformed(SIG)(&err(SIG, Some(b"v0=\xff\xfe"))));
}

fn pairs_value(name: &str) -> String {
    signed(EVENT)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
}

#[test]
fn timestamps_must_be_ascii_digits() {
    // Python's int() accepts the first four, Go's ParseInt the signs, JavaScript's
    // Number() white space, hex, exponents and fractions.
    for bad in [
        " 1700000000",
        "1700000000 ",
        "+1700000000",
        "1_700_000_000",
        "-1700000000",
        "1700000000.0",
        "17e8",
        "0x6553f100",
        "",
        "abc",
        "١٧٠٠٠٠٠٠٠٠",
        "99999999999999999999",
    ] {
        // Signed over the very text, so only the format can fail.
        let sig = v0(SECRET.as_bytes(), bad, EVENT);
        let e = check(&skip_window(), bad, &sig, EVENT, NOW).unwrap_err();
        assert!(malformed(TS)(&e), "{bad:?}: {e:?}");
    }
    assert!(malformed(TS)(&err(TS, Some(b"\xff"))));
}

#[test]
fn the_timestamp_is_signed_as_its_text() {
    // Leading zeros are accepted (Python and Go parse them) and signed as sent,
    // as Python and Go sign them; Bolt would sign the number `1700000000`.
    let text = "01700000000";
    let sig = v0(SECRET.as_bytes(), text, EVENT);
    let verified = check(&verifier(), text, &sig, EVENT, NOW).unwrap();
    assert_eq!(verified.signed_at, Some(at(NOW)));
    let as_number = v0(SECRET.as_bytes(), "1700000000", EVENT);
    assert!(matches!(
        check(&verifier(), text, &as_number, EVENT, NOW),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn tolerance_bounds_are_inclusive_on_both_sides() {
    let v = verifier();
    let ts = NOW.to_string();
    let sig = v0(SECRET.as_bytes(), &ts, EVENT);
    for skew in [0, 1, 299, 300, -1, -299, -300] {
        assert!(check(&v, &ts, &sig, EVENT, NOW + skew).is_ok(), "{skew}");
    }
    for (skew, expected) in [(301, 301), (-301, -301), (86_400, 86_400)] {
        assert_eq!(
            check(&v, &ts, &sig, EVENT, NOW + skew).unwrap_err(),
            VerifyError::TimestampOutsideTolerance {
                skew_seconds: expected,
                tolerance_seconds: 300
            },
            "{skew}"
        );
    }
    // The clock counts whole seconds: 300.9 s old is 300 s old.
    let late = at(NOW + 300) + Duration::from_millis(900);
    assert!(v
        .verify(
            EVENT,
            &headers([(TS, ts.as_str()), (SIG, sig.as_str())]),
            late
        )
        .is_ok());
}

#[test]
fn the_window_is_checked_before_the_signature_as_the_sdks_do() {
    let ts = (NOW - 301).to_string();
    let wrong = v0(OTHER_SECRET.as_bytes(), &ts, EVENT);
    assert!(matches!(
        check(&verifier(), &ts, &wrong, EVENT, NOW),
        Err(VerifyError::TimestampOutsideTolerance { .. })
    ));
    // But a malformed signature is reported first (400 before 401).
    assert!(malformed(SIG)(
        &check(&verifier(), &ts, "v0=00", EVENT, NOW).unwrap_err()
    ));
}

#[test]
fn tolerance_is_configurable_and_can_be_skipped() {
    let tight = Slack::builder(SECRET)
        .tolerance(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(tight.tolerance(), Some(Duration::from_secs(60)));
    assert_eq!(verifier().tolerance(), Some(Slack::DEFAULT_TOLERANCE));
    let ts = NOW.to_string();
    let sig = v0(SECRET.as_bytes(), &ts, EVENT);
    for (skew, ok) in [
        (59, true),
        (60, true),
        (61, false),
        (-60, true),
        (-61, false),
    ] {
        assert_eq!(
            check(&tight, &ts, &sig, EVENT, NOW + skew).is_ok(),
            ok,
            "{skew}"
        );
    }
    let zero = Slack::builder(SECRET)
        .tolerance(Duration::ZERO)
        .build()
        .unwrap();
    assert!(check(&zero, &ts, &sig, EVENT, NOW).is_ok());
    assert!(check(&zero, &ts, &sig, EVENT, NOW + 1).is_err());
    let skip = skip_window();
    assert_eq!(skip.tolerance(), None);
    assert!(check(&skip, &ts, &sig, EVENT, NOW + 10 * 365 * 86_400).is_ok());
    // The signature still counts.
    assert!(check(&skip, &ts, &v0(b"x", &ts, EVENT), EVENT, NOW).is_err());
}

#[test]
fn extreme_timestamps_never_overflow() {
    for ts in ["0", "9223372036854775807", "253402300799", "253402300800"] {
        let sig = v0(SECRET.as_bytes(), ts, EVENT);
        let e = check(&verifier(), ts, &sig, EVENT, NOW).unwrap_err();
        assert!(
            matches!(e, VerifyError::TimestampOutsideTolerance { .. }),
            "{ts}"
        );
        // Without the window the signature decides; `signed_at` is `None` out of range.
        let verified = check(&skip_window(), ts, &sig, EVENT, NOW).unwrap();
        assert_eq!(
            verified.signed_at.is_some(),
            ts.len() < 19 && ts != "253402300800",
            "{ts}"
        );
    }
    let e = check(
        &verifier(),
        "9223372036854775807",
        &v0(SECRET.as_bytes(), "9223372036854775807", EVENT),
        EVENT,
        i64::from(i32::MIN),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        VerifyError::TimestampOutsideTolerance {
            skew_seconds: i64::MIN,
            ..
        }
    ));
}

#[test]
fn any_change_to_body_timestamp_or_secret_is_a_mismatch() {
    let ts = NOW.to_string();
    let sig = v0(SECRET.as_bytes(), &ts, EVENT);
    let mut body = EVENT.to_vec();
    body[10] ^= 1;
    for (timestamp, body) in [(ts.as_str(), &body[..]), (&*(NOW - 1).to_string(), EVENT)] {
        assert!(matches!(
            check(&verifier(), timestamp, &sig, body, NOW),
            Err(VerifyError::SignatureMismatch { .. })
        ));
    }
    let other = Slack::builder(OTHER_SECRET).build().unwrap();
    assert_eq!(
        check(&other, &ts, &sig, EVENT, NOW).unwrap_err(),
        VerifyError::SignatureMismatch {
            secret_has_whitespace: false
        }
    );
    // The signed bytes are exactly `v0:{ts}:{body}`.
    for wrong in [format!("v0:{ts}"), format!("v0.{ts}:"), format!("{ts}:")] {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(wrong.as_bytes());
        mac.update(EVENT);
        let sig = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
        assert!(
            check(&verifier(), &ts, &sig, EVENT, NOW).is_err(),
            "{wrong}"
        );
    }
}

#[test]
fn rotation_accepts_every_secret_and_reports_which_matched() {
    let v = Slack::builder(OTHER_SECRET).secret(SECRET).build().unwrap();
    assert_eq!(v.secrets().len(), 2);
    let ts = NOW.to_string();
    for (secret, index) in [(OTHER_SECRET, 0), (SECRET, 1)] {
        let sig = v0(secret.as_bytes(), &ts, EVENT);
        assert_eq!(
            check(&v, &ts, &sig, EVENT, NOW).unwrap().secret_index,
            index
        );
    }
    let set = SecretSet::new(SECRET).with(OTHER_SECRET);
    let v = Slack::builder(set).build().unwrap();
    let sig = v0(OTHER_SECRET.as_bytes(), &ts, EVENT);
    assert_eq!(check(&v, &ts, &sig, EVENT, NOW).unwrap().secret_index, 1);
    let sig = v0(b"retired", &ts, EVENT);
    assert!(matches!(
        check(&v, &ts, &sig, EVENT, NOW),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn empty_secrets_are_refused_and_whitespace_is_hinted() {
    assert_eq!(
        Slack::builder("").build().unwrap_err(),
        ConfigError::EmptySecret { index: 0 }
    );
    assert_eq!(
        Slack::builder(SECRET).secret("").build().unwrap_err(),
        ConfigError::EmptySecret { index: 1 }
    );
    let padded = Slack::builder(format!("{SECRET}\n")).build().unwrap();
    let e = padded
        .verify(EVENT, &headers(signed(EVENT)), at(NOW))
        .unwrap_err();
    assert_eq!(
        e,
        VerifyError::SignatureMismatch {
            secret_has_whitespace: true
        }
    );
    assert!(e.to_string().contains("whitespace"), "{e}");
}

#[test]
fn secrets_never_show_in_debug_or_errors() {
    let v = Slack::builder(SECRET).secret(OTHER_SECRET).build().unwrap();
    let builder = Slack::builder(SECRET);
    let h = headers(signed(b"{}"));
    let shown = format!(
        "{v:?} {builder:?} {:?} {}",
        v.verify(EVENT, &h, at(NOW)).unwrap_err(),
        v.verify(EVENT, &h, at(NOW)).unwrap_err()
    );
    for secret in [SECRET, OTHER_SECRET] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let expected = slack_signature(SECRET, EVENT, at(NOW));
    assert!(!shown.contains(&expected[3..]), "{shown}");
}

#[test]
fn bodies_are_verified_as_raw_bytes_and_may_be_empty() {
    // The SDKs sign `v0:{ts}:` for an empty body; Bolt would sign a lossy
    // UTF-8 re-encoding of invalid bytes, Python would raise on them.
    assert_raw_bytes_verify(&verifier(), signed, None);
    let h = headers(signed(b""));
    assert!(verifier().verify(b"", &h, at(NOW)).is_ok());
    assert!(matches!(
        verifier().identify(b"", &h),
        Err(IdentifyError::Unsupported(_))
    ));
}

fn identify(body: &[u8]) -> Result<hookgate::Identity, IdentifyError> {
    identify_with(body, &[])
}

fn identify_with(body: &[u8], extra: &[(&str, &str)]) -> Result<hookgate::Identity, IdentifyError> {
    let mut pairs = signed(body);
    for (name, value) in extra {
        pairs.push(((*name).to_owned(), (*value).to_owned()));
    }
    let h = headers(pairs);
    let v = verifier();
    v.verify(body, &h, at(NOW)).unwrap();
    assert!(v.handshake(body, &h).is_none());
    v.identify(body, &h)
}

fn digest(body: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
}

#[test]
fn events_are_named_by_event_id_and_the_inner_type() {
    let body = br#"{"type":"event_callback","event_id":"Ev1","team_id":"T1","event":{"type":"app_mention","text":"hi","subtype":""},"event_time":1700000123}"#;
    let identity = identify(body).unwrap();
    assert_eq!(
        (identity.id.as_str(), identity.kind.as_str()),
        ("Ev1", "app_mention")
    );
    assert_eq!(identity.occurred_at, Some(at(1_700_000_123)));
    assert_eq!(identity.metadata("team_id"), Some("T1"));
    assert_eq!(identity.metadata("api_app_id"), None);
    // A subtype refines the kind; a non-string one does not.
    let body = br#"{"type":"event_callback","event_id":"Ev2","event":{"subtype":"bot_message","type":"message"}}"#;
    assert_eq!(identify(body).unwrap().kind, "message.bot_message");
    let body =
        br#"{"type":"event_callback","event_id":"Ev3","event":{"type":"message","subtype":7}}"#;
    assert_eq!(identify(body).unwrap().kind, "message");
    // Nested `type`s elsewhere are not the kind; escaped keys are read as keys.
    let body = br#"{"event":{"item":{"type":"message"},"t\u0079pe":"reaction_added"},"type":"event_callback","event_id":"Ev4"}"#;
    assert_eq!(identify(body).unwrap().kind, "reaction_added");
    // A non-integer event_time is no time.
    let body = br#"{"type":"event_callback","event_id":"Ev5","event":{"type":"x"},"event_time":"1700000000"}"#;
    assert_eq!(identify(body).unwrap().occurred_at, None);
}

#[test]
fn events_without_an_id_or_an_inner_type_are_unusable() {
    for (body, field) in [
        (
            &br#"{"type":"event_callback","event":{"type":"x"}}"#[..],
            "event_id",
        ),
        (
            br#"{"type":"event_callback","event_id":"","event":{"type":"x"}}"#,
            "event_id",
        ),
        (
            br#"{"type":"event_callback","event_id":3,"event":{"type":"x"}}"#,
            "event_id",
        ),
        (
            br#"{"type":"event_callback","event_id":"Ev1"}"#,
            "event.type",
        ),
        (
            br#"{"type":"event_callback","event_id":"Ev1","event":"x"}"#,
            "event.type",
        ),
        (
            br#"{"type":"event_callback","event_id":"Ev1","event":{"type":""}}"#,
            "event.type",
        ),
        (br#"{"event_id":"Ev1","event":{"type":"x"}}"#, "type"),
        (br#"{"type":5}"#, "type"),
        (b"[1,2]", "type"),
    ] {
        let e = identify(body).unwrap_err();
        assert_eq!(
            e,
            IdentifyError::MissingField(field),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(e.status(), 400);
    }
    for body in [
        &b"{\"type\":\"event_callback\""[..],
        b"{\"a\":\"\xff\"}",
        b"{} x",
        b"[1,]",
    ] {
        assert!(matches!(identify(body), Err(IdentifyError::InvalidJson(_))));
    }
}

#[test]
fn other_envelope_types_fall_back_to_the_body_digest() {
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","type":"app_rate_limited","team_id":"T123456","minute_rate_limited":1518467820,"api_app_id":"A123456"}"#;
    let identity = identify(body).unwrap();
    assert_eq!(identity.kind, "app_rate_limited");
    assert_eq!(identity.id, digest(body));
    assert_eq!(identity.metadata("team_id"), Some("T123456"));
    assert_eq!(identity.metadata("api_app_id"), Some("A123456"));
    // With an event_id, that is the id.
    let body = br#"{"type":"future_type","event_id":"Ev9"}"#;
    let identity = identify(body).unwrap();
    assert_eq!(
        (identity.id.as_str(), identity.kind.as_str()),
        ("Ev9", "future_type")
    );
}

#[test]
fn retries_are_recorded_from_slacks_headers() {
    let retry = [
        ("X-Slack-Retry-Num", "2"),
        ("X-Slack-Retry-Reason", "http_timeout"),
    ];
    let identity = identify_with(EVENT, &retry).unwrap();
    assert_eq!(identity.id, "Ev0PV52K21");
    assert_eq!(identity.metadata("retry_num"), Some("2"));
    assert_eq!(identity.metadata("retry_reason"), Some("http_timeout"));
    // Metadata never fails a delivery: a repeated or empty header is left out.
    let odd = [
        ("X-Slack-Retry-Num", "1"),
        ("x-slack-retry-num", "2"),
        ("X-Slack-Retry-Reason", ""),
    ];
    let identity = identify_with(EVENT, &odd).unwrap();
    assert_eq!(identity.metadata("retry_num"), None);
    assert_eq!(identity.metadata("retry_reason"), None);
    // On forms too.
    let identity = identify_with(DOC_BODY.as_bytes(), &retry).unwrap();
    assert_eq!(identity.metadata("retry_num"), Some("2"));
}

/// A form body `payload=<json, urlencoded>`.
fn interactivity(json: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", json)
        .finish()
        .into_bytes()
}

#[test]
fn interactivity_payloads_are_named_by_type_and_routing_id() {
    for (json, id, kind, team) in [
        (
            r#"{"type":"block_actions","team":{"id":"T9","domain":"x"},"api_app_id":"A9","trigger_id":"1.2.abc","actions":[{"action_id":"approve","block_id":"b"},{"action_id":"second"}]}"#,
            "1.2.abc",
            "block_actions.approve",
            Some("T9"),
        ),
        (
            r#"{"type":"view_submission","trigger_id":"3.4.def","view":{"id":"V1","callback_id":"new_ticket"}}"#,
            "3.4.def",
            "view_submission.new_ticket",
            None,
        ),
        (
            r#"{"type":"shortcut","callback_id":"open_modal","trigger_id":"5.6.ghi","team":{"id":"T1"}}"#,
            "5.6.ghi",
            "shortcut.open_modal",
            Some("T1"),
        ),
        (
            r#"{"type":"message_action","callback_id":"save","trigger_id":"7.8.jkl"}"#,
            "7.8.jkl",
            "message_action.save",
            None,
        ),
        (
            r#"{"type":"block_actions","trigger_id":"9.9.z","actions":[]}"#,
            "9.9.z",
            "block_actions",
            None,
        ),
    ] {
        let body = interactivity(json);
        let identity = identify(&body).unwrap();
        assert_eq!(
            (identity.id.as_str(), identity.kind.as_str()),
            (id, kind),
            "{json}"
        );
        assert_eq!(identity.metadata("team_id"), team);
    }
    // Without a trigger_id (view_closed, block_suggestion): the body digest.
    for (json, kind) in [
        (
            r#"{"type":"view_closed","view":{"callback_id":"new_ticket"},"is_cleared":false}"#,
            "view_closed.new_ticket",
        ),
        (
            r#"{"type":"block_suggestion","action_id":"pick_user","value":"jo"}"#,
            "block_suggestion.pick_user",
        ),
        (r#"{"type":"something_new"}"#, "something_new"),
    ] {
        let body = interactivity(json);
        let identity = identify(&body).unwrap();
        assert_eq!(
            (identity.id.clone(), identity.kind.as_str()),
            (digest(&body), kind)
        );
    }
    // `+` and percent escapes as browsers encode forms.
    let body = b"payload=%7B%22type%22%3A%22shortcut%22%2C%22callback_id%22%3A%22a+b%22%7D";
    assert_eq!(identify(body).unwrap().kind, "shortcut.a b");
}

#[test]
fn unusable_interactivity_payloads_are_refused() {
    assert!(matches!(
        identify(&interactivity("{not json")),
        Err(IdentifyError::InvalidJson(_))
    ));
    assert!(matches!(
        identify(b"payload="),
        Err(IdentifyError::InvalidJson(_))
    ));
    for json in [
        r#"{"trigger_id":"1"}"#,
        r#"{"type":""}"#,
        r#"[{"type":"x"}]"#,
        "3",
    ] {
        assert_eq!(
            identify(&interactivity(json)).unwrap_err(),
            IdentifyError::MissingField("payload.type"),
            "{json}"
        );
    }
    let mut twice = interactivity(r#"{"type":"a"}"#);
    twice.extend_from_slice(b"&");
    twice.extend_from_slice(&interactivity(r#"{"type":"b"}"#));
    assert!(matches!(
        identify(&twice),
        Err(IdentifyError::Unsupported(_))
    ));
}

#[test]
fn slash_commands_are_named_by_command_and_trigger_id() {
    let identity = identify(DOC_BODY.as_bytes()).unwrap();
    assert_eq!(
        identity.id,
        "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    );
    assert_eq!(identity.kind, "slash_command./webhook-collect");
    assert!(identity.kind.starts_with(Slack::SLASH_COMMAND_KIND));
    assert_eq!(identity.metadata("team_id"), Some("T1DC2JH3J"));
    let body = b"command=%2Fdeploy&text=prod&team_id=T2&api_app_id=A2";
    let identity = identify(body).unwrap();
    assert_eq!(
        (identity.id.clone(), identity.kind.as_str()),
        (digest(body), "slash_command./deploy")
    );
    assert_eq!(identity.metadata("api_app_id"), Some("A2"));
    assert_eq!(
        identify(b"command=&trigger_id=1").unwrap_err(),
        IdentifyError::MissingField("command")
    );
    assert!(matches!(
        identify(b"command=%2Fa&command=%2Fb"),
        Err(IdentifyError::Unsupported(_))
    ));
}

#[test]
fn other_forms_are_unsupported() {
    for body in [
        &b"token=x&team_id=T1"[..],
        b"hello",
        b"ssl_check=0",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(identify(body), Err(IdentifyError::Unsupported(_))),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

const CHALLENGE: &str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";

fn url_verification() -> String {
    format!(
        r#"{{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"{CHALLENGE}","type":"url_verification"}}"#
    )
}

#[test]
fn url_verification_and_ssl_check_are_handshakes() {
    let v = verifier();
    let h = Headers::new();
    let answer = v.handshake(url_verification().as_bytes(), &h).unwrap();
    assert_eq!(answer.body, CHALLENGE.as_bytes());
    assert_eq!(answer.content_type, "text/plain; charset=utf-8");
    // Escaped as JSON allows; the challenge decoded.
    let escaped = br#"{"type":"url_verific\u0061tion","challenge":"a\/b"}"#;
    assert_eq!(v.handshake(escaped, &h).unwrap().body, "a/b".as_bytes());
    for not_one in [
        &br#"{"type":"url_verification"}"#[..],
        br#"{"type":"url_verification","challenge":""}"#,
        br#"{"type":"url_verification","challenge":5}"#,
        br#"{"type":"event_callback","challenge":"x","event_id":"url_verification"}"#,
        br#"{"type":"url_verification","challenge":"x""#,
        b"[\"url_verification\"]",
    ] {
        assert!(
            v.handshake(not_one, &h).is_none(),
            "{}",
            String::from_utf8_lossy(not_one)
        );
    }
    assert!(matches!(
        v.identify(br#"{"type":"url_verification"}"#, &h),
        Err(IdentifyError::Unsupported(_))
    ));
    // Slack's `ssl_check` of a slash command URL gets an empty 200.
    let answer = v.handshake(b"ssl_check=1&token=abc", &h).unwrap();
    assert!(answer.body.is_empty());
    for not_one in [
        &b"ssl_check=0"[..],
        b"ssl_check=1&command=%2Fx",
        b"ssl_check=1&payload=%7B%7D",
    ] {
        assert!(v.handshake(not_one, &h).is_none());
    }
    assert!(matches!(
        v.identify(b"ssl_check=1", &h),
        Err(IdentifyError::Unsupported(_))
    ));
}

#[test]
fn the_profile_states_slacks_delivery_facts() {
    let p = verifier().profile();
    assert_eq!(p.answer_within, Duration::from_secs(3));
    assert_eq!(p.retention, Duration::from_secs(3600));
    assert_eq!(p.body_limit, 1024 * 1024);
    assert!(p.retries && p.signs_identity && p.kinds_carry_action);
    assert!(p.identity_metadata.is_empty());
    assert!(p.delivery_id_headers.is_empty());
    assert!(p.journal_headers.contains(&"x-slack-retry-num"));
    assert!(!p
        .journal_headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case(SIG)));
}

#[cfg(feature = "tokio")]
mod pipeline {
    use super::*;
    use hookgate::{
        handler_fn, Event, FixedClock, HandlerError, MemoryStore, OutcomeKind, Pipeline, Registry,
    };
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// A pipeline routing `message` (and so `message.*` subtypes) and
    /// everything else to counting handlers, at the fixed clock `NOW`.
    fn pipeline(seen: Arc<Mutex<Vec<Event>>>, any: Arc<AtomicU64>) -> Pipeline {
        let mut registry = Registry::new();
        registry.critical(
            "slack",
            "message",
            "messages",
            handler_fn(move |event| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(event);
                    Ok::<(), HandlerError>(())
                }
            }),
        );
        registry.critical(
            "slack",
            "slash_command",
            "commands",
            handler_fn(move |_| {
                let any = any.clone();
                async move {
                    any.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), HandlerError>(())
                }
            }),
        );
        Pipeline::builder()
            .verifier(verifier())
            .store(MemoryStore::new())
            .registry(registry)
            .clock(FixedClock::at_unix(NOW))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn an_event_is_processed_once_and_slacks_retry_is_a_duplicate() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(AtomicU64::new(0));
        let pipeline = pipeline(seen.clone(), commands.clone());
        let first = pipeline.handle(EVENT, &headers(signed(EVENT))).await;
        assert!(
            matches!(first.kind, OutcomeKind::Processed { .. }),
            "{first:?}"
        );
        assert_eq!(first.status(), 200);
        assert_eq!(first.event_id.as_deref(), Some("Ev0PV52K21"));
        // Slack's retry: the same event, re-signed 60 s later, with its retry headers.
        let mut retry = slack_headers(SECRET, EVENT, at(NOW - 60));
        retry.push(("X-Slack-Retry-Num".to_owned(), "1".to_owned()));
        retry.push(("X-Slack-Retry-Reason".to_owned(), "http_timeout".to_owned()));
        let again = pipeline.handle(EVENT, &headers(retry)).await;
        assert!(matches!(again.kind, OutcomeKind::Duplicate), "{again:?}");
        assert_eq!(again.status(), 200);
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].kind(), "message.channel_join");
            assert_eq!(seen[0].metadata("team_id"), Some("T0001"));
        }
        // A slash command routes by its own kind.
        let command = pipeline
            .handle(DOC_BODY, &headers(signed(DOC_BODY.as_bytes())))
            .await;
        assert!(
            matches!(command.kind, OutcomeKind::Processed { .. }),
            "{command:?}"
        );
        assert_eq!(commands.load(Ordering::SeqCst), 1);
        // A forged or stale delivery is refused before anything runs.
        let forged = headers(slack_headers(OTHER_SECRET, EVENT, at(NOW)));
        assert_eq!(pipeline.handle(EVENT, &forged).await.status(), 401);
        let stale = headers(slack_headers(SECRET, EVENT, at(NOW - 301)));
        assert_eq!(pipeline.handle(EVENT, &stale).await.status(), 401);
        // The pipeline's answer budget is 80 % of Slack's 3 s.
        pipeline.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn url_verification_is_answered_with_its_challenge_once_signed() {
        let any = Arc::new(AtomicU64::new(0));
        let mut registry = Registry::new();
        let counter = any.clone();
        registry.critical(
            "slack",
            "*",
            "all",
            handler_fn(move |_| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), HandlerError>(())
                }
            }),
        );
        let pipeline = Pipeline::builder()
            .verifier(verifier())
            .store(MemoryStore::new())
            .registry(registry)
            .clock(FixedClock::at_unix(NOW))
            .build()
            .unwrap();
        let body = url_verification();
        let outcome = pipeline
            .handle(body.clone(), &headers(signed(body.as_bytes())))
            .await;
        assert_eq!(outcome.status(), 200);
        match &outcome.kind {
            OutcomeKind::Handshake(answer) => assert_eq!(answer.body, CHALLENGE.as_bytes()),
            other => panic!("{other:?}"),
        }
        assert_eq!(outcome.event_id, None, "nothing is identified or claimed");
        assert_eq!(any.load(Ordering::SeqCst), 0);
        // Twice is still a handshake: nothing was claimed.
        let again = pipeline
            .handle(body.clone(), &headers(signed(body.as_bytes())))
            .await;
        assert!(matches!(again.kind, OutcomeKind::Handshake(_)), "{again:?}");
        assert_eq!(pipeline.stats().handshake, 2);
        // Unsigned or forged, it is refused like any delivery.
        assert_eq!(
            pipeline
                .handle(body.clone(), &Headers::new())
                .await
                .status(),
            400
        );
        let forged = headers(slack_headers(OTHER_SECRET, body.as_bytes(), at(NOW)));
        let refused = pipeline.handle(body.clone(), &forged).await;
        assert_eq!(refused.status(), 401);
        assert!(!matches!(refused.kind, OutcomeKind::Handshake(_)));
        assert_eq!(any.load(Ordering::SeqCst), 0);
        pipeline.shutdown(Duration::from_secs(1)).await;
    }
}

const CASES: u32 = 10_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn signing_then_verifying_round_trips(
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        timestamp in 0i64..=253_402_300_799,
        body in proptest::collection::vec(any::<u8>(), 0..128),
        skew in -300i64..=300,
    ) {
        let text = timestamp.to_string();
        let sig = v0(&secret, &text, &body);
        let v = Slack::builder(secret.clone()).build().unwrap();
        let h = headers([(TS, text.as_bytes()), (SIG, sig.as_bytes())]);
        let now = (timestamp - skew).clamp(-377_705_116_800, 253_402_300_799);
        let expect_ok = now == timestamp - skew;
        prop_assert_eq!(v.verify(&body, &h, at(now)).is_ok(), expect_ok);
        prop_assert_eq!(slack_signature(&secret, &body, at(timestamp)), sig);
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
        let result = v.verify(&changed, &h, at(NOW));
        prop_assert!(matches!(result, Err(VerifyError::SignatureMismatch { .. })), "{:?}", result);
    }

    #[test]
    fn any_single_byte_change_of_a_signed_header_is_rejected(
        which in 0usize..2,
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let v = skip_window();
        let mut pairs: Vec<(String, Vec<u8>)> = signed(&body)
            .into_iter()
            .map(|(n, value)| (n, value.into_bytes()))
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
    fn arbitrary_headers_and_bodies_never_panic(
        timestamp in proptest::collection::vec(any::<u8>(), 0..24),
        signature in proptest::collection::vec(any::<u8>(), 0..80),
        retry in proptest::collection::vec(any::<u8>(), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let h = headers([
            (TS, timestamp),
            (SIG, signature),
            ("X-Slack-Retry-Num", retry),
        ]);
        for v in [verifier(), skip_window()] {
            if let Err(e) = v.verify(&body, &h, at(NOW)) {
                assert_status(&e);
            }
            let _ = v.handshake(&body, &h);
            if let Err(e) = v.identify(&body, &h) {
                prop_assert_eq!(e.status(), 400);
            }
        }
    }

    #[test]
    fn shaped_headers_never_verify_a_forgery(
        signature in "(v0|v1|V0|)(=)?[0-9a-fA-F=]{0,70}",
        timestamp in "[-+ ]?[0-9]{0,21}[ ._]?",
    ) {
        let h = headers([(TS, timestamp.as_str()), (SIG, signature.as_str())]);
        for v in [verifier(), skip_window()] {
            let result = v.verify(EVENT, &h, at(NOW));
            prop_assert!(result.is_err());
            if let Err(e) = result {
                assert_status(&e);
            }
        }
    }

    #[test]
    fn slack_shaped_bodies_identify_or_fail_with_a_typed_error(
        json in r#"\{("(type|event_id|event|subtype|challenge|trigger_id|team_id)":("[a-z_]{0,12}"|[0-9]{1,3}|\{("(type|subtype)":"[a-z_]{0,8}",?){0,2}\}|null),?){0,6}\}"#,
        form in r#"((payload|command|trigger_id|ssl_check|team_id|x)=[%0-9A-Za-z+]{0,12}&?){0,5}"#,
    ) {
        let v = verifier();
        let h = Headers::new();
        for body in [json.as_bytes(), form.as_bytes(), &interactivity(&json)[..]] {
            let _ = v.handshake(body, &h);
            match v.identify(body, &h) {
                Ok(identity) => {
                    prop_assert!(!identity.id.is_empty());
                    prop_assert!(!identity.kind.is_empty());
                }
                Err(e) => prop_assert_eq!(e.status(), 400),
            }
        }
    }
}
