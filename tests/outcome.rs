//! Every `OutcomeKind`: the status it answers, its stable name (metrics
//! labels, logs) and the body it is safe to send back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hookgate::store::Watermark;
use hookgate::{
    CriticalFailure, HandlerError, IdentifyError, OutcomeKind, StoreError, VerifyError,
};

#[test]
fn every_kind_has_its_status_name_and_body() {
    let handler: Arc<str> = "db".into();
    let cases: Vec<(OutcomeKind, u16, &str, &str)> = vec![
        (
            OutcomeKind::TooLarge { size: 2, limit: 1 },
            413,
            "too_large",
            "payload too large",
        ),
        (
            OutcomeKind::VerificationFailed(VerifyError::SignatureMismatch {
                secret_has_whitespace: false,
            }),
            401,
            "unauthorized",
            "invalid signature",
        ),
        (
            OutcomeKind::VerificationFailed(VerifyError::TimestampOutsideTolerance {
                skew_seconds: 301,
                tolerance_seconds: 300,
            }),
            401,
            "unauthorized",
            "invalid signature",
        ),
        (
            OutcomeKind::VerificationFailed(VerifyError::UnknownProvider),
            400,
            "bad_request",
            "not a signed webhook delivery",
        ),
        (
            OutcomeKind::VerificationFailed(VerifyError::MissingHeader("Stripe-Signature")),
            400,
            "bad_request",
            "not a signed webhook delivery",
        ),
        (
            OutcomeKind::Unusable(IdentifyError::MissingField("id")),
            400,
            "unusable",
            "unusable payload",
        ),
        (
            OutcomeKind::Duplicate,
            200,
            "duplicate",
            "duplicate: already processed",
        ),
        (
            OutcomeKind::FingerprintMismatch,
            422,
            "fingerprint_mismatch",
            "event id already used with a different body",
        ),
        (
            OutcomeKind::InFlight {
                until: SystemTime::UNIX_EPOCH,
            },
            409,
            "in_flight",
            "already being processed: retry later",
        ),
        (
            OutcomeKind::Ignored,
            200,
            "ignored",
            "ignored: no handler for this event",
        ),
        (
            OutcomeKind::Handshake(hookgate::verify::Handshake::text("challenge")),
            200,
            "handshake",
            "ok",
        ),
        (
            OutcomeKind::Stale {
                at: Watermark::from_unix_millis(1),
                newest: Watermark::from_unix_millis(2),
            },
            200,
            "stale",
            "stale: a newer event was already processed",
        ),
        (
            OutcomeKind::Processed { best_effort: 2 },
            200,
            "processed",
            "ok",
        ),
        (
            OutcomeKind::CriticalFailed {
                handler: handler.clone(),
                failure: CriticalFailure::Timeout(Duration::from_secs(8)),
            },
            500,
            "critical_failed",
            "processing failed: retry later",
        ),
        (
            OutcomeKind::PermanentFailure {
                handler: handler.clone(),
                error: Arc::new(HandlerError::permanent("bad")),
                dead_lettered: true,
            },
            200,
            "permanent_failure",
            "accepted",
        ),
        (
            OutcomeKind::PermanentFailure {
                handler,
                error: Arc::new(HandlerError::permanent("bad")),
                dead_lettered: false,
            },
            500,
            "permanent_failure",
            "processing failed",
        ),
        (
            OutcomeKind::StoreUnavailable(Arc::new(StoreError::unavailable("down"))),
            503,
            "store_unavailable",
            "temporarily unavailable: retry later",
        ),
        (
            OutcomeKind::ShuttingDown,
            503,
            "shutting_down",
            "temporarily unavailable: retry later",
        ),
    ];
    for (kind, status, name, body) in cases {
        assert_eq!(
            (kind.status(), kind.name(), kind.body()),
            (status, name, body),
            "{kind:?}"
        );
    }
}

#[test]
fn a_handshake_keeps_its_challenge_out_of_debug() {
    let handshake = hookgate::verify::Handshake::text("s3cr3t-challenge");
    let debug = format!("{:?}", OutcomeKind::Handshake(handshake.clone()));
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("body_len: 16"), "{debug}");
    assert_eq!(handshake.content_type, "text/plain; charset=utf-8");
    assert_eq!(
        hookgate::verify::Handshake::json("{}").content_type,
        "application/json"
    );
}
