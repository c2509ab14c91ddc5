//! The Twilio verifier against the helper libraries' `RequestValidator`
//! (twilio-python, twilio-node, twilio-ruby, twilio-go) and their published
//! test vectors; naming; rotation; properties.

mod common;

use std::borrow::Cow;

use common::{at, NOW};
use hookgate::testing::{twilio_headers, twilio_json_url, twilio_signature};
use hookgate::{
    ConfigError, Headers, IdentifyError, SecretSet, Twilio, Verified, Verifier, VerifyError,
};
use proptest::prelude::*;

/// The auth token of the helper libraries' test suites.
const TOKEN: &str = "12345";
/// Their URL.
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const TARGET: &str = "/myapp.php?foo=1&bar=2";
/// Their parameters (twilio-python `tests/unit/test_request_validator.py`,
/// twilio-ruby `spec/security/request_validator_spec.rb`), form-encoded.
const PARAMS: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
/// Their expected signature of `URL` with `PARAMS`.
const EXPECTED: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
/// Their JSON body and its SHA-256.
const JSON_BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
const BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

const SIG: &str = "X-Twilio-Signature";

fn twilio() -> Twilio {
    Twilio::builder(TOKEN).build().unwrap()
}

/// A request to `target` with `Host: host` and this signature header.
fn request(host: &str, target: &str, signature: &str) -> Headers {
    Headers::from_pairs([("Host", host), (SIG, signature)]).with_request("POST", target)
}

fn verify_with(
    verifier: &Twilio,
    host: &str,
    target: &str,
    signature: &str,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    verifier.verify(body, &request(host, target, signature), at(NOW))
}

/// Checks the status an error gets: 400 malformed or missing, 401 forged.
fn status_of(err: &VerifyError) -> u16 {
    let expected = match err {
        VerifyError::SignatureMismatch { .. } | VerifyError::BodyDigestMismatch => 401,
        _ => 400,
    };
    assert_eq!(err.status(), expected, "{err:?}");
    expected
}

// ---------------------------------------------------------------- vectors

#[test]
fn the_helper_libraries_example_verifies() {
    assert_eq!(twilio_signature(TOKEN, URL, PARAMS), EXPECTED);
    // From the Host header with the default https scheme.
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, EXPECTED, PARAMS).is_ok());
    // From a public URL, whatever Host the proxy sends.
    let public = Twilio::builder(TOKEN)
        .public_url("https://mycompany.com")
        .build()
        .unwrap();
    assert!(verify_with(&public, "10.0.0.7:8080", TARGET, EXPECTED, PARAMS).is_ok());
    // Parameters in another order and otherwise encoded carry the same signature.
    let reencoded = b"To=%2B18005551212&From=%2B14158675309&Digits=%31234&Caller=%2b14158675309&CallSid=CA1234567890ABCDE";
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, EXPECTED, reencoded).is_ok());
    // But `+` is a space: an unencoded `+1415…` is another value.
    let plus_is_a_space = b"To=%2B18005551212&From=+14158675309&Digits=1234&Caller=%2B14158675309&CallSid=CA1234567890ABCDE";
    assert!(verify_with(
        &twilio(),
        "mycompany.com",
        TARGET,
        EXPECTED,
        plus_is_a_space
    )
    .is_err());
}

#[test]
fn port_variants_match_the_helper_libraries() {
    let http = Twilio::builder(TOKEN).scheme_http().build().unwrap();
    // twilio-python / twilio-ruby: "validation removes port on https" (any port).
    assert!(verify_with(&twilio(), "mycompany.com:1234", TARGET, EXPECTED, PARAMS).is_ok());
    // "validates http urls with ports": the signature of the URL with :1234.
    let http_1234 = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=";
    assert!(verify_with(&http, "mycompany.com:1234", TARGET, http_1234, PARAMS).is_ok());
    // "adds port 443 on https", "adds port 80 on http".
    let https_443 = "kvajT1Ptam85bY51eRf/AJRuM3w=";
    let http_80 = "0ZXoZLH/DfblKGATFgpif+LLRf4=";
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, https_443, PARAMS).is_ok());
    assert!(verify_with(&http, "mycompany.com", TARGET, http_80, PARAMS).is_ok());
    // twilio-node: signed with :443, received with or without it, and back.
    assert!(verify_with(&twilio(), "mycompany.com:443", TARGET, EXPECTED, PARAMS).is_ok());
    assert!(verify_with(&twilio(), "mycompany.com:443", TARGET, https_443, PARAMS).is_ok());
    // The scheme is part of what is signed, and the standard port is the scheme's.
    assert!(verify_with(&http, "mycompany.com", TARGET, EXPECTED, PARAMS).is_err());
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, http_80, PARAMS).is_err());
    assert!(verify_with(&http, "mycompany.com", TARGET, https_443, PARAMS).is_err());
    // A public URL with a port behaves the same way.
    for (base, signature) in [
        ("https://mycompany.com:443", EXPECTED),
        ("https://mycompany.com:443", https_443),
        ("https://mycompany.com", https_443),
        ("http://mycompany.com:1234", http_1234),
        ("http://mycompany.com", http_80),
    ] {
        let public = Twilio::builder(TOKEN).public_url(base).build().unwrap();
        assert!(
            verify_with(&public, "ignored", TARGET, signature, PARAMS).is_ok(),
            "{base} {signature}"
        );
    }
}

#[test]
fn twilio_go_vectors_verify() {
    // twilio-go `client/request_validator_test.go`: `Reason` sorts before
    // `ReasonConferenceEnded`.
    let body = b"Digits=1234&CallSid=CA1234567890ABCDE&To=%2B18005551212&Caller=%2B14158675309&From=%2B14158675309&ReasonConferenceEnded=test&Reason=Participant";
    let signature = "vOEb5UThFn24KEfnOFLQY2AE5FY=";
    assert_eq!(twilio_signature(TOKEN, URL, body), signature);
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, signature, body).is_ok());
    let sorted_wrongly = "95+Bu0JVPi0r/SsESZCVf0dWAjw=";
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, sorted_wrongly, body).is_err());
    let http = Twilio::builder(TOKEN).scheme_http().build().unwrap();
    let http_without_port = "n2xBNyzSW7rfYStDtOFiFMv7qNo=";
    assert!(verify_with(&http, "mycompany.com", TARGET, http_without_port, body).is_ok());
    assert!(verify_with(&http, "mycompany.com:1234", TARGET, http_without_port, body).is_ok());
    // A form body read as parameters.
    let form = b"property=value&boolean=true";
    let signature = "NBdBDr/T/lgjI+tlgpXjKZQZs/k=";
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, signature, form).is_ok());
}

#[test]
fn repeated_parameter_names_sort_their_values_and_drop_exact_repeats() {
    // twilio-python `test_compute_signature_duplicate_multi_dict` (and
    // twilio-node's `new Set(values)`, sorted).
    let body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
    let signature = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
    assert_eq!(twilio_signature(TOKEN, URL, body), signature);
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, signature, body).is_ok());
    let once = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, signature, once).is_ok());
    let first_only = b"Sid=CA123&SidAccount=AC123&Digits=5678";
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, signature, first_only).is_err());
}

#[test]
fn credentials_in_the_public_url_are_signed() {
    // twilio-ruby "should validate urls with credentials" / "with just username".
    for (base, signature) in [
        (
            "https://user:pass@mycompany.com",
            "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
        ),
        ("https://user@mycompany.com", "aZfj4hyX1MLZhSS6QIL18Vn2/RA="),
    ] {
        let builder = Twilio::builder(TOKEN).public_url(base);
        let printed = format!("{builder:?}");
        assert!(
            !printed.contains("user") && !printed.contains("pass"),
            "{printed}"
        );
        assert!(printed.contains("mycompany.com"), "{printed}");
        let public = builder.build().unwrap();
        assert!(verify_with(&public, "h", TARGET, signature, PARAMS).is_ok());
        assert!(!format!("{public:?}").contains("user"), "{public:?}");
        assert!(!format!("{public:?}").contains("pass"), "{public:?}");
    }
}

#[test]
fn json_bodies_are_signed_through_body_sha256() {
    let target = format!("{TARGET}&bodySHA256={BODY_HASH}");
    // twilio-python "validation of body succeeds", twilio-go "with json body".
    let signature = "a9nBmqA0ju/hNViExpshrM61xv4=";
    assert!(verify_with(&twilio(), "mycompany.com", &target, signature, JSON_BODY).is_ok());
    // twilio-ruby / twilio-go "with no other GET parameters".
    let target = format!("/myapp.php?bodySHA256={BODY_HASH}");
    let signature = "y77kIzt2vzLz71DgmJGsen2scGs=";
    assert!(verify_with(&twilio(), "mycompany.com", &target, signature, JSON_BODY).is_ok());
    assert_eq!(
        twilio_json_url("https://mycompany.com/myapp.php", JSON_BODY),
        format!("https://mycompany.com{target}")
    );
    // The body must hash to the signed digest.
    let changed = br#"{"property": "value", "boolean": false}"#;
    let err = verify_with(&twilio(), "mycompany.com", &target, signature, changed).unwrap_err();
    assert_eq!(err, VerifyError::BodyDigestMismatch);
    assert_eq!(status_of(&err), 401);
    // Without bodySHA256 a JSON body is read as (unsigned-looking) form
    // parameters: the URL-only signature does not cover it.
    let url_only = twilio_signature(TOKEN, URL, b"");
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, &url_only, b"").is_ok());
    assert!(matches!(
        verify_with(&twilio(), "mycompany.com", TARGET, &url_only, JSON_BODY),
        Err(VerifyError::SignatureMismatch { .. })
    ));
    // And a signature with bodySHA256 in the URL does not cover form parameters.
    let hashed = format!("{TARGET}&bodySHA256={BODY_HASH}");
    let json_signature = "a9nBmqA0ju/hNViExpshrM61xv4=";
    assert!(verify_with(&twilio(), "mycompany.com", &hashed, json_signature, PARAMS).is_err());
}

#[test]
fn sign_helpers_round_trip() {
    let url = "https://example.com/webhooks/twilio?tenant=7";
    let body = b"AccountSid=AC1&MessageSid=SM1&Body=Hello+there%21";
    let headers = Headers::from_pairs(twilio_headers("t", url, body))
        .with_request("POST", "/webhooks/twilio?tenant=7");
    let verifier = Twilio::builder("t").build().unwrap();
    assert_eq!(
        verifier
            .verify(body, &headers, at(NOW))
            .unwrap()
            .secret_index,
        0
    );
    assert_eq!(headers.get("host"), Ok(Some("example.com")));
    assert_eq!(
        headers.get("content-type"),
        Ok(Some("application/x-www-form-urlencoded"))
    );
    let json_url = twilio_json_url(url, b"[]");
    let headers = Headers::from_pairs(twilio_headers("t", &json_url, b"[]")).with_request(
        "POST",
        json_url.strip_prefix("https://example.com").unwrap(),
    );
    assert!(verifier.verify(b"[]", &headers, at(NOW)).is_ok());
    assert_eq!(headers.get("content-type"), Ok(Some("application/json")));
}

// ---------------------------------------------------------------- rejections

fn err(headers: Headers, body: &[u8]) -> VerifyError {
    let e = twilio().verify(body, &headers, at(NOW)).unwrap_err();
    status_of(&e);
    e
}

#[test]
fn every_rejection_has_its_own_reason_and_status() {
    let host = "mycompany.com";
    let signed = || request(host, TARGET, EXPECTED);
    assert!(twilio().verify(PARAMS, &signed(), at(NOW)).is_ok());

    let no_signature = Headers::from_pairs([("Host", host)]).with_request("POST", TARGET);
    assert_eq!(err(no_signature, PARAMS), VerifyError::MissingHeader(SIG));

    let repeated = Headers::from_pairs([("Host", host), (SIG, EXPECTED), (SIG, EXPECTED)])
        .with_request("POST", TARGET);
    assert_eq!(err(repeated, PARAMS), VerifyError::RepeatedHeader(SIG));

    for value in [
        "",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8==",
        " RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        "RSOYDt4T1cUTdK1PDd93_VVr8B8=",
        "RSOYDt4T1cUTdK1PDd93/VVr8B9=",
    ] {
        assert!(
            matches!(
                err(request(host, TARGET, value), PARAMS),
                VerifyError::MalformedHeader { header: SIG, .. }
            ),
            "{value:?}"
        );
    }
    // A 256-bit base64 signature is not Twilio's.
    let long = "4P0KMV9L3Z3Yrx9xmh9vO9eAhF1pP5pBJfjYBW4JaXc=";
    assert!(matches!(
        err(request(host, TARGET, long), PARAMS),
        VerifyError::MalformedHeader { header: SIG, .. }
    ));

    let no_target = Headers::from_pairs([("Host", host), (SIG, EXPECTED)]);
    assert_eq!(err(no_target, PARAMS), VerifyError::MissingRequestTarget);

    for target in ["myapp.php", "*", "/my app.php", "/myapp.php?x=é"] {
        assert!(
            matches!(
                err(request(host, target, EXPECTED), PARAMS),
                VerifyError::MalformedRequestTarget { .. }
            ),
            "{target:?}"
        );
    }

    let no_host = Headers::from_pairs([(SIG, EXPECTED)]).with_request("POST", TARGET);
    assert_eq!(err(no_host, PARAMS), VerifyError::MissingHeader("Host"));
    let two_hosts = Headers::from_pairs([("Host", host), ("Host", host), (SIG, EXPECTED)])
        .with_request("POST", TARGET);
    assert_eq!(err(two_hosts, PARAMS), VerifyError::RepeatedHeader("Host"));
    assert!(matches!(
        err(request("my company.com", TARGET, EXPECTED), PARAMS),
        VerifyError::MalformedHeader { header: "Host", .. }
    ));

    let twice = format!("{TARGET}&bodySHA256={BODY_HASH}&bodySHA256={BODY_HASH}");
    assert!(matches!(
        err(request(host, &twice, EXPECTED), JSON_BODY),
        VerifyError::MalformedRequestTarget { .. }
    ));
    let upper = format!("{TARGET}&bodySHA256={}", BODY_HASH.to_uppercase());
    assert!(matches!(
        err(request(host, &upper, EXPECTED), JSON_BODY),
        VerifyError::MalformedRequestTarget { .. }
    ));

    // A webhook rule's other algorithm is refused by name; HMAC-SHA1 is verified.
    let mut rule = signed();
    rule.append(
        "X-Twilio-Webhooks-Signature-Settings",
        "key=KS1,algorithm=HMAC_SHA256",
    );
    assert_eq!(
        err(rule, PARAMS),
        VerifyError::NoSupportedSignature {
            header: "X-Twilio-Webhooks-Signature-Settings",
            scheme: "algorithm=HMAC_SHA1"
        }
    );
    let mut rule = signed();
    rule.append(
        "X-Twilio-Webhooks-Signature-Settings",
        "key=KS1, algorithm=HMAC_SHA1",
    );
    assert!(twilio().verify(PARAMS, &rule, at(NOW)).is_ok());

    // Mismatches: another token, URL, query, parameter, or host.
    let other = Twilio::builder("54321").build().unwrap();
    let e = other.verify(PARAMS, &signed(), at(NOW)).unwrap_err();
    assert_eq!(
        e,
        VerifyError::SignatureMismatch {
            secret_has_whitespace: false
        }
    );
    assert_eq!(status_of(&e), 401);
    for (host, target, body) in [
        (host, "/myapp.php?foo=1&bar=3", PARAMS),
        (host, "/myapp.php?bar=2&foo=1", PARAMS),
        (host, "/myapp.php?foo=1&bar=2&", PARAMS),
        (host, "/myapp.php", PARAMS),
        (host, "/MyApp.php?foo=1&bar=2", PARAMS),
        ("mycompany.org", TARGET, PARAMS),
        (host, TARGET, &PARAMS[..PARAMS.len() - 1]),
        (host, TARGET, &b"CallSid=CA1234567890ABCDE"[..]),
        (host, TARGET, &b""[..]),
    ] {
        assert!(
            matches!(
                err(request(host, target, EXPECTED), body),
                VerifyError::SignatureMismatch { .. }
            ),
            "{host} {target}"
        );
    }
    // An added parameter, even an empty one, breaks the signature.
    let mut more = PARAMS.to_vec();
    more.extend_from_slice(b"&Extra=");
    assert!(matches!(
        err(signed(), &more),
        VerifyError::SignatureMismatch { .. }
    ));

    // The whitespace hint.
    let spaced = Twilio::builder(format!("{TOKEN}\n")).build().unwrap();
    assert_eq!(
        spaced.verify(PARAMS, &signed(), at(NOW)).unwrap_err(),
        VerifyError::SignatureMismatch {
            secret_has_whitespace: true
        }
    );
}

#[test]
fn bad_settings_are_refused_at_build_time() {
    assert_eq!(
        Twilio::builder("").build().unwrap_err(),
        ConfigError::EmptySecret { index: 0 }
    );
    assert_eq!(
        Twilio::builder("a").secret("").build().unwrap_err(),
        ConfigError::EmptySecret { index: 1 }
    );
    for url in [
        "mycompany.com",
        "https://mycompany.com/?a=1",
        "wss://x",
        " https://x",
    ] {
        assert!(
            matches!(
                Twilio::builder("a").public_url(url).build(),
                Err(ConfigError::InvalidPublicUrl { .. })
            ),
            "{url}"
        );
    }
}

#[test]
fn the_auth_token_never_prints() {
    let verifier = Twilio::builder("super-secret-token")
        .public_url("https://example.com/api")
        .build()
        .unwrap();
    let printed = format!("{verifier:?}");
    assert!(!printed.contains("super-secret-token"), "{printed}");
    assert!(printed.contains("example.com/api"), "{printed}");
    let builder = format!(
        "{:?}",
        Twilio::builder("super-secret-token").public_url("https://u:pw-secret@x y")
    );
    assert!(!builder.contains("pw-secret"), "{builder}");
    assert!(!builder.contains("super-secret-token"), "{builder}");
    let e = verifier
        .verify(PARAMS, &request("h", TARGET, EXPECTED), at(NOW))
        .unwrap_err();
    assert!(!e.to_string().contains("super-secret-token"));
    assert!(!format!("{e:?}").contains("super-secret-token"));
}

#[test]
fn rotation_accepts_every_token_of_the_set() {
    let set = SecretSet::new("new-token").with(TOKEN).with("older");
    let verifier = Twilio::builder(set).build().unwrap();
    let verified = verify_with(&verifier, "mycompany.com", TARGET, EXPECTED, PARAMS).unwrap();
    assert_eq!(verified.secret_index, 1);
    assert_eq!(verified.signed_at, None);
    let new = twilio_signature("new-token", URL, PARAMS);
    let verified = verify_with(&verifier, "mycompany.com", TARGET, &new, PARAMS).unwrap();
    assert_eq!(verified.secret_index, 0);
    // The port variants are tried for every token.
    let with_port = twilio_signature(
        "older",
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        PARAMS,
    );
    let verified = verify_with(&verifier, "mycompany.com", TARGET, &with_port, PARAMS).unwrap();
    assert_eq!(verified.secret_index, 2);
    let builder = Twilio::builder("new-token").secret(TOKEN).build().unwrap();
    assert_eq!(builder.secrets().len(), 2);
    assert!(verify_with(&builder, "mycompany.com", TARGET, EXPECTED, PARAMS).is_ok());
    let gone = Twilio::builder("new-token").build().unwrap();
    assert!(verify_with(&gone, "mycompany.com", TARGET, EXPECTED, PARAMS).is_err());
}

#[test]
fn detection_and_profile() {
    let verifier = twilio();
    assert_eq!(verifier.provider(), "twilio");
    assert!(verifier.detect(&request("h", "/", EXPECTED)));
    assert!(!verifier.detect(&Headers::from_pairs([("Host", "h")])));
    let profile = verifier.profile();
    assert_eq!(profile.answer_within, std::time::Duration::from_secs(15));
    assert!(!profile.retries);
    assert!(!profile.signs_identity);
    assert_eq!(profile.delivery_id_headers, ["i-twilio-idempotency-token"]);
    assert!(profile
        .journal_headers
        .contains(&"i-twilio-idempotency-token"));
    assert!(!profile.journal_headers.contains(&"x-twilio-signature"));
}

// ---------------------------------------------------------------- identify

fn identify(body: &[u8], token: Option<&str>) -> Result<hookgate::Identity, IdentifyError> {
    let mut headers = request("h", "/", EXPECTED);
    if let Some(token) = token {
        headers.append("I-Twilio-Idempotency-Token", token);
    }
    twilio().identify(body, &headers)
}

#[test]
fn the_idempotency_token_is_the_id_when_present() {
    let body = b"AccountSid=AC1&MessageSid=SM1&MessageStatus=sent";
    let identity = identify(body, Some("idem-1")).unwrap();
    assert_eq!(identity.id, "idem-1");
    assert_eq!(identity.kind, "message.status.sent");
    assert_eq!(identity.metadata("account_sid"), Some("AC1"));
}

#[test]
fn dedup_on_parameters_ignores_the_token() {
    let strict = Twilio::builder(TOKEN)
        .dedup_on_parameters()
        .build()
        .unwrap();
    let body = b"AccountSid=AC1&MessageSid=SM1&MessageStatus=sent";
    let mut headers = request("h", "/", EXPECTED);
    headers.append("I-Twilio-Idempotency-Token", "idem-1");
    let mut fresh = request("h", "/", EXPECTED);
    fresh.append("I-Twilio-Idempotency-Token", "idem-2");
    let first = strict.identify(body, &headers).unwrap();
    let replayed = strict
        .identify(
            b"MessageSid=SM1&AccountSid=AC1&MessageStatus=%73ent",
            &fresh,
        )
        .unwrap();
    assert_eq!(first.id, replayed.id);
    assert!(first.id.starts_with("SM1:"), "{}", first.id);
    assert_eq!(first.id, identify(body, None).unwrap().id);
    assert_eq!(twilio().identify(body, &fresh).unwrap().id, "idem-2");
    let json = br#"{"id":"EZ1","type":"t"}"#;
    assert_eq!(strict.identify(json, &headers).unwrap().id, "EZ1");
}

#[test]
fn without_a_token_retries_deduplicate_and_status_updates_do_not() {
    let sent = identify(b"AccountSid=AC1&MessageSid=SM1&MessageStatus=sent", None).unwrap();
    let again = identify(b"MessageStatus=sent&MessageSid=SM1&AccountSid=%41C1", None).unwrap();
    let delivered = identify(
        b"AccountSid=AC1&MessageSid=SM1&MessageStatus=delivered",
        None,
    )
    .unwrap();
    assert_eq!(sent.id, again.id, "the same parameters, however encoded");
    assert_ne!(sent.id, delivered.id);
    assert!(sent.id.starts_with("SM1:"), "{}", sent.id);
    assert_eq!(sent.id.len(), "SM1:".len() + 16);
    assert_eq!(delivered.kind, "message.status.delivered");
    // Two gather results of one call are two events.
    let first = identify(b"CallSid=CA1&CallStatus=in-progress&Digits=1", None).unwrap();
    let second = identify(b"CallSid=CA1&CallStatus=in-progress&Digits=2", None).unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(first.kind, "call");
}

#[test]
fn kinds_name_the_product_and_status() {
    for (body, kind, sid) in [
        (
            "SmsMessageSid=SM2&SmsSid=SM2&MessageSid=SM2&SmsStatus=received&Body=hi",
            "message",
            "SM2",
        ),
        ("SmsSid=SM3&SmsStatus=received", "message", "SM3"),
        (
            "MessageSid=SM4&MessageStatus=undelivered&ErrorCode=30003",
            "message.status.undelivered",
            "SM4",
        ),
        ("CallSid=CA1&CallStatus=ringing&From=%2B1555", "call", "CA1"),
        (
            "CallSid=CA1&CallStatus=completed&CallbackSource=call-progress-events&SequenceNumber=3",
            "call.status.completed",
            "CA1",
        ),
        (
            "CallSid=CA1&CallStatus=ringing&SequenceNumber=0",
            "call.status.ringing",
            "CA1",
        ),
        (
            "CallSid=CA1&RecordingSid=RE1&RecordingStatus=completed",
            "recording.completed",
            "RE1",
        ),
        ("CallSid=CA1&RecordingSid=RE1", "recording", "RE1"),
        (
            "CallSid=CA1&TranscriptionSid=TR1&TranscriptionStatus=completed",
            "transcription.completed",
            "TR1",
        ),
        (
            "CallSid=CA1&ConferenceSid=CF1&StatusCallbackEvent=participant-join&SequenceNumber=2",
            "conference.participant-join",
            "CF1",
        ),
        (
            "EventType=task.created&Sid=EV1&TaskSid=WT1",
            "task.created",
            "EV1",
        ),
        (
            "EventType=onMessageAdded&ConversationSid=CH1",
            "onMessageAdded",
            "",
        ),
        ("Foo=bar", "other", ""),
        ("", "other", ""),
    ] {
        let identity = identify(body.as_bytes(), None).unwrap();
        assert_eq!(identity.kind, kind, "{body}");
        if sid.is_empty() {
            assert_eq!(identity.id.len(), 16, "{}", identity.id);
        } else {
            assert!(
                identity.id.starts_with(&format!("{sid}:")),
                "{}",
                identity.id
            );
        }
    }
}

#[test]
fn json_bodies_are_named_by_their_cloudevents() {
    let event = br#"{"specversion":"1.0","type":"com.twilio.messaging.message.delivered","id":"EZ1","time":"2026-12-02T18:00:00.000Z","data":{}}"#;
    let identity = identify(event, None).unwrap();
    assert_eq!(identity.id, "EZ1");
    assert_eq!(identity.kind, "com.twilio.messaging.message.delivered");
    assert_eq!(
        identity.occurred_at.unwrap().unix_timestamp(),
        1_796_234_400
    );
    let token = identify(event, Some("idem")).unwrap();
    assert_eq!(
        (token.id.as_str(), token.kind.as_str()),
        ("idem", identity.kind.as_str())
    );
    // One event in an array is that event.
    let one = format!("[{}]", String::from_utf8_lossy(event));
    assert_eq!(identify(one.as_bytes(), None).unwrap().id, "EZ1");
    // A batch: one id for the set, the shared type or `batch`.
    let batch = br#" [{"id":"EZ1","type":"a"},{"id":"EZ2","type":"a"}]"#;
    let identity = identify(batch, None).unwrap();
    assert!(identity.id.starts_with("batch:2:"), "{}", identity.id);
    assert_eq!(identity.kind, "a");
    let reordered = br#"[{"id":"EZ2","type":"a"},{"id":"EZ1","type":"b"}]"#;
    let other = identify(reordered, None).unwrap();
    assert_ne!(other.id, identity.id);
    assert_eq!(other.kind, "batch");
    // Unusable payloads.
    assert_eq!(
        identify(br#"{"type":"x"}"#, None).unwrap_err(),
        IdentifyError::MissingField("id")
    );
    assert_eq!(identify(br#"{"id":"1"}"#, None).unwrap().kind, "event");
    assert!(matches!(
        identify(b"{", None),
        Err(IdentifyError::InvalidJson(_))
    ));
    assert!(matches!(
        identify(b"[]", None),
        Err(IdentifyError::Unsupported(_))
    ));
    assert!(matches!(
        identify(b"[1]", None),
        Err(IdentifyError::Unsupported(_))
    ));
}

// ---------------------------------------------------------------- properties

/// Decoded, sorted, de-duplicated parameters, as signed.
fn signed_params(body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    params.dedup();
    params
}

fn form_body(params: &[(String, String)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
        .into_bytes()
}

/// A path and query as a client sends them: visible ASCII.
fn target() -> impl Strategy<Value = String> {
    "/[!-~]{0,40}".prop_map(|t| t.replace('#', "%23"))
}

fn public() -> Twilio {
    Twilio::builder(SecretSet::new("older").with("tok"))
        .public_url("https://hooks.example.com")
        .build()
        .unwrap()
}

fn public_request(target: &str, signature: &str) -> Headers {
    Headers::from_pairs([(SIG, signature)]).with_request("POST", target)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn signing_then_verifying_round_trips(
        params in proptest::collection::vec(("\\PC{0,8}", "\\PC{0,24}"), 0..8),
        target in target(),
        token_index in 0usize..2,
    ) {
        let body = form_body(&params);
        let token = ["older", "tok"][token_index];
        let url = format!("https://hooks.example.com{target}");
        let signature = twilio_signature(token, &url, &body);
        let verified = public().verify(&body, &public_request(&target, &signature), at(NOW));
        let verified = verified.map_err(|e| TestCaseError::fail(format!("{e:?} {url}")))?;
        prop_assert_eq!(verified.secret_index, token_index);
    }

    #[test]
    fn a_flipped_byte_in_the_body_fails_unless_the_parameters_are_the_same(
        params in proptest::collection::vec(("[A-Za-z]{1,6}", "\\PC{0,16}"), 1..6),
        at_index in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let body = form_body(&params);
        let url = "https://hooks.example.com/twilio?x=1";
        let signature = twilio_signature("tok", url, &body);
        let mut flipped = body.clone();
        let i = at_index.index(flipped.len());
        flipped[i] ^= 1 << bit;
        let result = public().verify(&flipped, &public_request("/twilio?x=1", &signature), at(NOW));
        if signed_params(&flipped) == signed_params(&body) {
            // Twilio signs the decoded parameters (e.g. invalid UTF-8 decodes
            // to U+FFFD either way), not the bytes.
            prop_assert!(result.is_ok());
        } else {
            let is_mismatch = matches!(result, Err(VerifyError::SignatureMismatch { .. }));
            prop_assert!(is_mismatch, "{:?}", result);
        }
    }

    #[test]
    fn a_flipped_byte_in_the_url_or_the_signature_fails(
        params in proptest::collection::vec(("[A-Za-z]{1,6}", "\\PC{0,16}"), 0..4),
        target in target(),
        at_index in any::<prop::sample::Index>(),
        bit in 0u8..8,
        in_signature in any::<bool>(),
    ) {
        let body = form_body(&params);
        let url = format!("https://hooks.example.com{target}");
        let signature = twilio_signature("tok", &url, &body);
        let (mut target, mut signature) = (target.into_bytes(), signature.into_bytes());
        let bytes = if in_signature { &mut signature } else { &mut target };
        let i = at_index.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let target = String::from_utf8_lossy(&target).into_owned();
        let headers = Headers::from_pairs([(SIG, &signature[..])]).with_request("POST", &target);
        let result = public().verify(&body, &headers, at(NOW));
        prop_assert!(result.is_err(), "{:?} {}", result, target);
        status_of(&result.unwrap_err());
    }

    #[test]
    fn a_flipped_byte_in_a_json_body_fails(
        body in proptest::collection::vec(any::<u8>(), 1..256),
        at_index in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let url = twilio_json_url("https://hooks.example.com/events", &body);
        let target = url.strip_prefix("https://hooks.example.com").unwrap().to_owned();
        let signature = twilio_signature("tok", &url, &body);
        prop_assert!(public().verify(&body, &public_request(&target, &signature), at(NOW)).is_ok());
        let mut flipped = body.clone();
        let i = at_index.index(flipped.len());
        flipped[i] ^= 1 << bit;
        let result = public().verify(&flipped, &public_request(&target, &signature), at(NOW));
        prop_assert_eq!(result, Err(VerifyError::BodyDigestMismatch));
    }

    #[test]
    fn arbitrary_input_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        signature in proptest::collection::vec(any::<u8>(), 0..40),
        target in "\\PC{0,30}",
        host in proptest::option::of("\\PC{0,20}"),
        token in proptest::option::of("\\PC{0,12}"),
    ) {
        let mut headers = Headers::from_pairs([(SIG, &signature[..])]);
        if let Some(host) = &host {
            headers.append("Host", host);
        }
        if let Some(token) = &token {
            headers.append("I-Twilio-Idempotency-Token", token);
        }
        let with_target = headers.clone().with_request("POST", &target);
        for verifier in [twilio(), public()] {
            for headers in [&headers, &with_target] {
                if let Err(e) = verifier.verify(&body, headers, at(NOW)) {
                    status_of(&e);
                }
                let _ = verifier.identify(&body, headers);
            }
        }
    }
}

#[test]
fn the_signed_parameters_helper_matches_the_verifier_on_lossy_bodies() {
    // Invalid UTF-8 in a value decodes to U+FFFD, as web frameworks decode it:
    // two such bodies carry the same parameters and the same signature.
    let body = b"Body=%FF";
    let signature = twilio_signature(TOKEN, URL, body);
    assert!(verify_with(&twilio(), "mycompany.com", TARGET, &signature, b"Body=%FE").is_ok());
    assert_eq!(
        signed_params(b"Body=%FE"),
        vec![(
            "Body".to_owned(),
            Cow::<str>::Borrowed("\u{fffd}").into_owned()
        )]
    );
}

// ---------------------------------------------------------------- over HTTP

/// Twilio's requests through `hookgate::axum::routes` nested under
/// `/webhooks`, over real HTTP: the request line reaches the verifier as sent,
/// the public URL replaces what the server sees, and the dedup id holds.
#[cfg(feature = "axum")]
#[tokio::test]
async fn end_to_end_through_the_axum_routes() {
    use common::pipeline::{store, Tally};
    use common::server::{post, serve};
    use hookgate::{Pipeline, Registry};

    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("twilio", "message.*", "record", tally.handler());
    let twilio = Twilio::builder(SecretSet::new("auth-token"))
        .public_url("https://hooks.example.com")
        .build()
        .unwrap();
    let pipeline = Pipeline::builder()
        .verifier(twilio)
        .store(store())
        .registry(registry)
        .build()
        .unwrap();
    let app = axum::Router::new().nest("/webhooks", hookgate::axum::routes(pipeline.clone()));
    let server = serve(app).await;

    let target = "/webhooks/twilio?tenant=7&note=a%20b";
    let url = format!("https://hooks.example.com{target}");
    let sent = "AccountSid=AC1&MessageSid=SM1&MessageStatus=sent&To=%2B15551234567";
    let delivered = "AccountSid=AC1&MessageSid=SM1&MessageStatus=delivered&To=%2B15551234567";
    let signed = |body: &str| twilio_headers("auth-token", &url, body.as_bytes());

    let first = post(server.addr, target, &signed(sent), sent).await;
    assert_eq!((first.status, first.body.as_str()), (200, "ok"));
    // Twilio's repeat of the same request (here to the detecting route: the
    // URL, and so the signature, differ; the parameters do not).
    let detect_target = "/webhooks?tenant=7";
    let detect_url = format!("https://hooks.example.com{detect_target}");
    let again = twilio_headers("auth-token", &detect_url, sent.as_bytes());
    let second = post(server.addr, detect_target, &again, sent).await;
    assert_eq!(
        (second.status, second.body.as_str()),
        (200, "duplicate: already processed")
    );
    // The next status of the same message is another event.
    let third = post(server.addr, target, &signed(delivered), delivered).await;
    assert_eq!(third.status, 200);
    assert_eq!(tally.total(), 2);
    // With the idempotency token, Twilio's retries share it.
    let mut with_token = signed("MessageSid=SM2&MessageStatus=sent");
    with_token.push(("I-Twilio-Idempotency-Token".to_owned(), "idem-9".to_owned()));
    for _ in 0..2 {
        let answer = post(
            server.addr,
            target,
            &with_token,
            "MessageSid=SM2&MessageStatus=sent",
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    assert_eq!(tally.count("idem-9"), 1);
    // Tampering: another parameter value, another query, no signature.
    let forged = post(
        server.addr,
        target,
        &signed(sent),
        sent.replace("sent", "read"),
    )
    .await;
    assert_eq!(forged.status, 401);
    let other_query = post(
        server.addr,
        "/webhooks/twilio?tenant=8&note=a%20b",
        &signed(sent),
        sent,
    )
    .await;
    assert_eq!(other_query.status, 401);
    let unsigned = post(server.addr, target, &[], sent).await;
    assert_eq!(unsigned.status, 400);
    assert_eq!(tally.total(), 3);
    server.stop().await;
}

/// Without a public URL the server's own view is signed: the `Host` the
/// client sent (the harness sends `127.0.0.1`) over https.
#[cfg(feature = "axum")]
#[tokio::test]
async fn end_to_end_from_the_host_header() {
    use common::pipeline::{store, Tally};
    use common::server::{post, serve};
    use hookgate::{Pipeline, Registry};

    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("twilio", "call", "record", tally.handler());
    let pipeline = Pipeline::builder()
        .verifier(Twilio::builder("auth-token").build().unwrap())
        .store(store())
        .registry(registry)
        .build()
        .unwrap();
    let server =
        serve(axum::Router::new().nest("/webhooks", hookgate::axum::routes(pipeline))).await;
    let body = "CallSid=CA1&CallStatus=ringing&From=%2B15551234567";
    let mut headers = twilio_headers(
        "auth-token",
        "https://127.0.0.1/webhooks/twilio",
        body.as_bytes(),
    );
    headers.retain(|(name, _)| name != "Host"); // the harness sets it
    assert_eq!(
        post(server.addr, "/webhooks/twilio", &headers, body)
            .await
            .status,
        200
    );
    assert_eq!(tally.total(), 1);
    let http = twilio_headers(
        "auth-token",
        "http://127.0.0.1/webhooks/twilio",
        body.as_bytes(),
    );
    assert_eq!(
        post(server.addr, "/webhooks/twilio", &http[..1], body)
            .await
            .status,
        401
    );
    server.stop().await;
}
