//! The GitHub verifier against `@octokit/webhooks-methods`' `verify`.

mod common;

use common::{assert_raw_bytes_verify, assert_status, at, headers, replace, with, NOW};
use hookgate::testing::{github_headers, github_signature};
use hookgate::{ConfigError, GitHub, IdentifyError, SecretSet, Verifier, VerifyError};

const SECRET: &str = "gh-webhook-secret";
const BODY: &[u8] = br#"{"action":"opened","issue":{"number":1,"action":"inner"}}"#;
const SIG: &str = "X-Hub-Signature-256";

fn github() -> GitHub {
    GitHub::builder(SECRET).build().unwrap()
}

fn signed(body: &[u8]) -> Vec<(String, String)> {
    github_headers(
        SECRET,
        body,
        "issues",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    )
}

fn verify_value(value: &[u8], body: &[u8]) -> Result<hookgate::Verified, VerifyError> {
    github().verify(
        body,
        &headers(replace(&signed(body), SIG, Some(value))),
        at(NOW),
    )
}

fn err(value: &[u8], body: &[u8]) -> VerifyError {
    let e = verify_value(value, body).unwrap_err();
    assert_status(&e);
    e
}

#[test]
fn round_trip_verifies_and_identifies_with_action() {
    let h = headers(signed(BODY));
    let verified = github().verify(BODY, &h, at(NOW)).unwrap();
    assert_eq!((verified.signed_at, verified.secret_index), (None, 0));
    let identity = github().identify(BODY, &h).unwrap();
    assert_eq!(identity.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(identity.kind, "issues.opened");
    assert_eq!(identity.occurred_at, None);
    assert!(github().detect(&h));
    assert_eq!(github().provider(), "github");
}

#[test]
fn kind_is_the_event_alone_without_a_top_level_string_action() {
    for body in [
        &br#"{"ref":"refs/heads/main","commits":[{"action":"no"}]}"#[..],
        br#"{"action":7}"#,
        br#"{"action":""}"#,
        b"payload=%7B%22action%22%3A%22opened%22%7D",
        b"[]",
    ] {
        let h = headers(github_headers(SECRET, body, "push", "d"));
        assert!(github().verify(body, &h, at(NOW)).is_ok());
        assert_eq!(
            github().identify(body, &h).unwrap().kind,
            "push",
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn identify_needs_delivery_and_event_and_records_hook_metadata() {
    let pairs = signed(BODY);
    let no_delivery = headers(replace(&pairs, "X-GitHub-Delivery", None));
    assert_eq!(
        github().identify(BODY, &no_delivery),
        Err(IdentifyError::MissingHeader("X-GitHub-Delivery"))
    );
    let empty_event = headers(replace(&pairs, "X-GitHub-Event", Some(b"")));
    assert_eq!(
        github().identify(BODY, &empty_event),
        Err(IdentifyError::MissingHeader("X-GitHub-Event"))
    );
    let twice = headers(with(&pairs, "x-github-event", "push"));
    let e = github().identify(BODY, &twice).unwrap_err();
    assert!(
        matches!(
            e,
            IdentifyError::MalformedHeader {
                header: "X-GitHub-Event",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.status(), 400);
    let binary = headers(replace(&pairs, "X-GitHub-Delivery", Some(b"\xff")));
    assert!(matches!(
        github().identify(BODY, &binary),
        Err(IdentifyError::MalformedHeader { .. })
    ));

    let meta = with(
        &with(
            &with(&pairs, "X-GitHub-Hook-ID", "292430182"),
            "X-GitHub-Hook-Installation-Target-Type",
            "repository",
        ),
        "X-GitHub-Hook-Installation-Target-ID",
        "79929171",
    );
    let identity = github().identify(BODY, &headers(meta)).unwrap();
    assert_eq!(identity.metadata("hook_id"), Some("292430182"));
    assert_eq!(
        identity.metadata("installation_target_type"),
        Some("repository")
    );
    assert_eq!(
        identity.metadata("installation_target_id"),
        Some("79929171")
    );
    // Informational headers never fail a delivery: a repeated one is just left out.
    let repeated = with(
        &with(&pairs, "X-GitHub-Hook-ID", "1"),
        "X-GitHub-Hook-ID",
        "2",
    );
    assert_eq!(
        github()
            .identify(BODY, &headers(repeated))
            .unwrap()
            .metadata("hook_id"),
        None
    );
}

#[test]
fn sha1_header_alone_is_not_enough() {
    let sha1 = "sha1=d03207e4b030cf234e3447bac4d93add4c6643d8";
    let h = headers([("X-Hub-Signature", sha1)]);
    assert!(github().detect(&h));
    let e = github().verify(BODY, &h, at(NOW)).unwrap_err();
    assert_eq!(
        e,
        VerifyError::NoSupportedSignature {
            header: "X-Hub-Signature",
            scheme: "sha256"
        }
    );
    assert_status(&e);
    // With both headers the SHA-256 one decides.
    let both = headers(with(&signed(BODY), "X-Hub-Signature", sha1));
    assert!(github().verify(BODY, &both, at(NOW)).is_ok());
}

#[test]
fn missing_empty_repeated_headers_and_empty_body() {
    let none = headers(replace(&signed(BODY), SIG, None));
    assert!(!github().detect(&none));
    let e = github().verify(BODY, &none, at(NOW)).unwrap_err();
    assert_eq!(e, VerifyError::MissingHeader(SIG));
    assert_status(&e);
    assert_eq!(
        err(b"", BODY),
        VerifyError::MalformedHeader {
            header: SIG,
            reason: "the value is empty"
        }
    );

    let sig = github_signature(SECRET, BODY);
    let twice = headers(with(&signed(BODY), "x-hub-signature-256", &sig));
    let e = github().verify(BODY, &twice, at(NOW)).unwrap_err();
    assert_eq!(e, VerifyError::RepeatedHeader(SIG));
    assert_status(&e);

    // octokit throws on an empty payload, signed or not.
    let empty = github_signature(SECRET, b"");
    assert_eq!(err(empty.as_bytes(), b""), VerifyError::EmptyBody);
}

#[test]
fn the_value_must_be_exactly_sha256_and_lowercase_hex() {
    let sig = github_signature(SECRET, BODY);
    let hex = &sig["sha256=".len()..];
    let no_scheme = VerifyError::NoSupportedSignature {
        header: SIG,
        scheme: "sha256",
    };
    for value in [
        format!("SHA256={hex}"),
        format!("sha1={hex}"),
        hex.to_owned(),
        format!(" {sig}"),
    ] {
        assert_eq!(err(value.as_bytes(), BODY), no_scheme, "{value}");
    }
    for value in [
        format!("sha256={}", hex.to_uppercase()),
        format!("{sig} "),
        format!("sha256= {hex}"),
        format!("{sig}0"),
        sig[..sig.len() - 1].to_owned(),
        "sha256=".to_owned(),
    ] {
        assert!(
            matches!(
                err(value.as_bytes(), BODY),
                VerifyError::MalformedHeader { header: SIG, .. }
            ),
            "{value}"
        );
    }
    let mut other = hex.as_bytes().to_vec();
    other[0] = if other[0] == b'0' { b'1' } else { b'0' };
    let forged = [b"sha256=".as_slice(), &other].concat();
    assert_eq!(
        err(&forged, BODY),
        VerifyError::SignatureMismatch {
            secret_has_whitespace: false
        }
    );
}

#[test]
fn header_name_is_case_insensitive() {
    let sig = github_signature(SECRET, BODY);
    for name in [
        "x-hub-signature-256",
        "X-HUB-SIGNATURE-256",
        "X-Hub-Signature-256",
    ] {
        assert!(
            github()
                .verify(BODY, &headers([(name, sig.as_str())]), at(NOW))
                .is_ok(),
            "{name}"
        );
    }
}

#[test]
fn rotation_accepts_any_configured_secret() {
    let both = GitHub::builder(SecretSet::new("new"))
        .secret("old")
        .build()
        .unwrap();
    assert_eq!(both.secrets().len(), 2);
    for (secret, index) in [("new", 0), ("old", 1)] {
        let h = headers(github_headers(secret, BODY, "ping", "d"));
        assert_eq!(both.verify(BODY, &h, at(NOW)).unwrap().secret_index, index);
    }
    let h = headers(github_headers("neither", BODY, "ping", "d"));
    assert!(matches!(
        both.verify(BODY, &h, at(NOW)),
        Err(VerifyError::SignatureMismatch { .. })
    ));
}

#[test]
fn bodies_are_verified_as_raw_bytes() {
    assert_raw_bytes_verify(&github(), signed, Some(VerifyError::EmptyBody));
}

#[test]
fn empty_secrets_are_refused_at_build_time() {
    assert_eq!(
        GitHub::builder("").build().unwrap_err(),
        ConfigError::EmptySecret { index: 0 }
    );
}

#[test]
fn debug_output_never_shows_the_secret() {
    let shown = format!("{:?}", github());
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("secrets: 1"), "{shown}");
}
