//! What happened to a delivery, and what to answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::handler::HandlerError;
use crate::store::{StoreError, Watermark};
use crate::verify::{Handshake, IdentifyError, VerifyError};

/// The result of handling one delivery: plain data your HTTP layer turns into a
/// response with [`Outcome::status`] and [`Outcome::body`].
///
/// Only a 2xx status tells the provider the delivery is done; every other status
/// makes it retry where it retries at all (Stripe, Shopify; GitHub never retries
/// on its own: failed deliveries wait for a redelivery).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outcome {
    /// What happened, one variant per row of the status table.
    pub kind: OutcomeKind,
    /// The provider, once detected.
    pub provider: Option<Arc<str>>,
    /// The event's deduplication id, once identified.
    pub event_id: Option<String>,
    /// The event's kind, once identified.
    pub event_kind: Option<String>,
    /// How many critical handlers this call started, the one that failed or
    /// ran out of time included. 0 when none ran in this call: the delivery
    /// was answered before the claim (refused, ignored, a duplicate, in
    /// flight elsewhere, the store unavailable), or no critical handler is
    /// registered for its kind.
    pub critical_handlers: usize,
    /// How long the critical handlers took together in this call. `Some`
    /// exactly when this call claimed the event and reached its critical
    /// handlers (even when none is registered for its kind); `None` otherwise.
    pub critical_elapsed: Option<Duration>,
    /// The id of this delivery's record in the pipeline's
    /// [journal](crate::journal), when it has one.
    pub journal_id: Option<crate::journal::JournalId>,
}

/// What happened to a delivery. Each variant is one row of the status table in
/// the crate documentation, with the status it answers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// 413: the body is larger than the provider's limit; nothing was parsed.
    TooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// 400 (not a well-formed signed delivery, unknown provider), 401 (bad
    /// signature, timestamp outside tolerance, untrusted signing certificate)
    /// or 503 (the signing certificate could not be fetched in time: the
    /// provider retries); see [`VerifyError::status`]. The reason is for your
    /// logs; the response body does not reveal it.
    VerificationFailed(VerifyError),
    /// 400: the delivery is authentic but its payload cannot be identified (bad
    /// JSON, no id).
    Unusable(IdentifyError),
    /// 200: this event's critical work already succeeded; no handler ran. Also
    /// the answer when it succeeded with a different body, under the default
    /// [`FingerprintPolicy::Lenient`](crate::FingerprintPolicy::Lenient) (then
    /// counted in [`Stats::duplicate_body_changed`](crate::Stats::duplicate_body_changed)
    /// and handed to the `on_rejected` hook).
    Duplicate,
    /// 422: this event's critical work already succeeded with a different body
    /// and [`FingerprintPolicy::Strict`](crate::FingerprintPolicy::Strict)
    /// refuses it; no handler ran.
    FingerprintMismatch,
    /// 409: another attempt at this event holds the lease; a later delivery
    /// (the provider's retry, or a redelivery for GitHub, which never retries on
    /// its own) finds it completed or claimable.
    InFlight {
        /// When the other attempt's lease expires.
        until: SystemTime,
    },
    /// 200: no handler is registered for this kind.
    Ignored,
    /// 200: the provider checked the endpoint (Slack's `url_verification`)
    /// and gets the answer it asked for ([`Verifier::handshake`](crate::Verifier::handshake)):
    /// [`crate::http::response`] (the `http` feature) sends the handshake's
    /// body and content type instead of [`OutcomeKind::body`]. Nothing was
    /// identified, claimed or run.
    Handshake(Handshake),
    /// 200: the [ordering guard](crate::ordering) found a newer event of the
    /// same object already processed; the key is completed and no handler
    /// ran.
    Stale {
        /// This event's time.
        at: Watermark,
        /// The newest event time already processed for its object.
        newest: Watermark,
    },
    /// 200: every critical handler succeeded and the event is recorded as done;
    /// best-effort work starts now.
    Processed {
        /// How many best-effort handlers were started.
        best_effort: usize,
    },
    /// 500: a critical handler failed in a way a retry may fix; the key was
    /// released so the next delivery (the provider's retry, or a redelivery for
    /// GitHub, which never retries on its own) runs the work again.
    CriticalFailed {
        /// The handler that failed (or was running when the deadline passed).
        handler: Arc<str>,
        /// How it failed.
        failure: CriticalFailure,
    },
    /// A critical handler failed permanently. With
    /// [`PermanentFailurePolicy::DeadLetter`](crate::PermanentFailurePolicy::DeadLetter)
    /// (the default) the event went to the dead letter, is recorded as done and the
    /// answer is 200; with [`PermanentFailurePolicy::Retry`](crate::PermanentFailurePolicy::Retry),
    /// or when the dead letter refused it, the key is released and the answer is 500.
    PermanentFailure {
        /// The handler that failed.
        handler: Arc<str>,
        /// Its error.
        error: Arc<HandlerError>,
        /// Whether the event is in the dead letter and recorded as done.
        dead_lettered: bool,
    },
    /// 503: the idempotency store failed, or did not answer within the
    /// provider's answer budget (the error then holds an
    /// [`AnswerBudgetSpent`]). Nothing is known to be recorded as done: when
    /// the claim failed no handler ran; when completing the key failed the
    /// handlers ran, and a later delivery finds out whether the key was
    /// recorded (200 `Duplicate`) or not (the work runs again, at the latest
    /// once this attempt's lease has ended). No event is lost either way.
    StoreUnavailable(Arc<StoreError>),
    /// 503: the pipeline is shutting down and takes no new deliveries.
    ShuttingDown,
}

/// How a critical handler failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CriticalFailure {
    /// It returned [`HandlerError::Transient`].
    Transient(Arc<HandlerError>),
    /// The critical handlers did not finish within the time they had (the
    /// provider's critical deadline, or less when the answer budget left less)
    /// and were cancelled; it holds that time.
    Timeout(Duration),
    /// It panicked; the panic was caught.
    Panic(String),
    /// Every handler succeeded, but the attempt's lease had expired and a newer
    /// attempt holds the key (the store refused the stale fencing token). The newer
    /// attempt settles the key; this one must not answer 2xx.
    LeaseLost(Arc<StoreError>),
}

/// A call to the idempotency store that did not answer within what was left
/// of the provider's [answer budget](crate::ProviderLimits::answer_budget):
/// the pipeline stopped waiting for it and answered 503
/// ([`OutcomeKind::StoreUnavailable`], whose [`StoreError::Unavailable`] holds
/// this error). Each variant holds the provider's answer budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerBudgetSpent {
    /// The claim did not answer in time: no handler ran. If the store took the
    /// key after all (only its reply was late), later deliveries get 409 until
    /// that lease ends, then the next one runs the work.
    #[error("the idempotency store did not answer the claim within the {0:?} answer budget")]
    Claim(Duration),
    /// Completing the key did not answer in time, after every critical handler
    /// succeeded: the key may or may not be recorded as done, so the answer is
    /// not 2xx. The key is not released (a completion still on its way may
    /// land): a later delivery gets 200 `Duplicate` if it did, otherwise 409
    /// until this attempt's lease ends, then runs the work again.
    #[error("the idempotency store did not complete the key within the {0:?} answer budget")]
    Complete(Duration),
    /// Reading or raising the [ordering guard](crate::ordering)'s watermark
    /// did not answer in time: the key was released (a later delivery runs
    /// the work; after a late raise the handlers may have run already).
    #[error("the idempotency store did not answer for the ordering watermark within the {0:?} answer budget")]
    Watermark(Duration),
}

impl OutcomeKind {
    /// The HTTP status of this outcome.
    pub fn status(&self) -> u16 {
        match self {
            OutcomeKind::TooLarge { .. } => 413,
            OutcomeKind::VerificationFailed(err) => err.status(),
            OutcomeKind::Unusable(err) => err.status(),
            OutcomeKind::Duplicate
            | OutcomeKind::Ignored
            | OutcomeKind::Handshake(_)
            | OutcomeKind::Stale { .. }
            | OutcomeKind::Processed { .. } => 200,
            OutcomeKind::FingerprintMismatch => 422,
            OutcomeKind::InFlight { .. } => 409,
            OutcomeKind::CriticalFailed { .. } => 500,
            OutcomeKind::PermanentFailure { dead_lettered, .. } => {
                if *dead_lettered {
                    200
                } else {
                    500
                }
            }
            OutcomeKind::StoreUnavailable(_) | OutcomeKind::ShuttingDown => 503,
        }
    }

    /// A stable short name of the variant (`"processed"`, `"duplicate"`, …), for
    /// logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            OutcomeKind::TooLarge { .. } => "too_large",
            OutcomeKind::VerificationFailed(err) if err.status() == 401 => "unauthorized",
            OutcomeKind::VerificationFailed(err) if err.status() == 503 => "verifier_unavailable",
            OutcomeKind::VerificationFailed(_) => "bad_request",
            OutcomeKind::Unusable(_) => "unusable",
            OutcomeKind::Duplicate => "duplicate",
            OutcomeKind::FingerprintMismatch => "fingerprint_mismatch",
            OutcomeKind::InFlight { .. } => "in_flight",
            OutcomeKind::Ignored => "ignored",
            OutcomeKind::Handshake(_) => "handshake",
            OutcomeKind::Stale { .. } => "stale",
            OutcomeKind::Processed { .. } => "processed",
            OutcomeKind::CriticalFailed { .. } => "critical_failed",
            OutcomeKind::PermanentFailure { .. } => "permanent_failure",
            OutcomeKind::StoreUnavailable(_) => "store_unavailable",
            OutcomeKind::ShuttingDown => "shutting_down",
        }
    }

    /// A short response body that is safe to send back: it names the situation,
    /// never the internal reason (no signature detail, handler error or store error).
    pub fn body(&self) -> &'static str {
        match self {
            OutcomeKind::TooLarge { .. } => "payload too large",
            OutcomeKind::VerificationFailed(err) if err.status() == 401 => "invalid signature",
            OutcomeKind::VerificationFailed(err) if err.status() == 503 => {
                "temporarily unavailable: retry later"
            }
            OutcomeKind::VerificationFailed(_) => "not a signed webhook delivery",
            OutcomeKind::Unusable(_) => "unusable payload",
            OutcomeKind::Duplicate => "duplicate: already processed",
            OutcomeKind::FingerprintMismatch => "event id already used with a different body",
            OutcomeKind::InFlight { .. } => "already being processed: retry later",
            OutcomeKind::Ignored => "ignored: no handler for this event",
            OutcomeKind::Handshake(_) => "ok",
            OutcomeKind::Stale { .. } => "stale: a newer event was already processed",
            OutcomeKind::Processed { .. } => "ok",
            OutcomeKind::CriticalFailed { .. } => "processing failed: retry later",
            OutcomeKind::PermanentFailure {
                dead_lettered: true,
                ..
            } => "accepted",
            OutcomeKind::PermanentFailure { .. } => "processing failed",
            OutcomeKind::StoreUnavailable(_) | OutcomeKind::ShuttingDown => {
                "temporarily unavailable: retry later"
            }
        }
    }
}

impl Outcome {
    #[cfg(feature = "tokio")]
    pub(crate) fn new(kind: OutcomeKind) -> Self {
        Self {
            kind,
            provider: None,
            event_id: None,
            event_kind: None,
            critical_handlers: 0,
            critical_elapsed: None,
            journal_id: None,
        }
    }

    /// The HTTP status to answer with; see [`OutcomeKind::status`].
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// A short response body that is safe to send back; see [`OutcomeKind::body`].
    pub fn body(&self) -> &'static str {
        self.kind.body()
    }

    /// Whether the status is 2xx: the provider considers the delivery done.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status())
    }
}
