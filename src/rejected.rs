//! Authentic deliveries the pipeline did not process, handed to the host so that
//! none is silently dropped.
//!
//! A delivery whose signature verified is real: the provider sent it. When the
//! pipeline still does not run its handlers — its payload cannot be identified
//! (400), or its event already completed with a different body (200 as a
//! duplicate, or 422 under
//! [`FingerprintPolicy::Strict`](crate::FingerprintPolicy::Strict)) — the
//! provider may never send it in another form. A delivery the replay guard
//! refused (answered 200) comes here too: it is either an attack worth looking
//! into or a legitimate delivery whose body was byte-identical to an earlier
//! one. Register a hook with
//! [`PipelineBuilder::on_rejected`](crate::PipelineBuilder::on_rejected) to keep
//! these deliveries (body and headers included) for inspection or replay.
//!
//! Deliveries that fail verification (400 malformed, 401 bad signature) are not
//! passed on: anyone can send them, so storing them would let a stranger fill
//! your storage. They are counted in [`Stats`](crate::Stats).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::headers::Headers;
use crate::store::Watermark;
use crate::verify::IdentifyError;

/// Why an authentic delivery was not processed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionReason {
    /// 400: the payload cannot be identified (bad JSON, no id);
    /// [`OutcomeKind::Unusable`](crate::OutcomeKind::Unusable).
    Unusable(IdentifyError),
    /// 200: this event's critical work already succeeded with a different body,
    /// so the delivery was answered as a duplicate and no handler ran
    /// ([`OutcomeKind::Duplicate`](crate::OutcomeKind::Duplicate), under the
    /// default [`FingerprintPolicy::Lenient`](crate::FingerprintPolicy::Lenient)).
    /// Usually the provider re-rendered the event; compare the bodies if the
    /// difference matters to you.
    DuplicateBodyChanged,
    /// 422: this event's critical work already succeeded with a different
    /// body, and [`FingerprintPolicy::Strict`](crate::FingerprintPolicy::Strict)
    /// refuses it; no handler ran;
    /// [`OutcomeKind::FingerprintMismatch`](crate::OutcomeKind::FingerprintMismatch).
    FingerprintMismatch,
    /// 200: the [replay guard](crate::PipelineBuilder::replay_guard) found this
    /// body already registered to another delivery id or kind (for Shopify,
    /// also shop domain): someone sent a captured delivery again with fresh
    /// unsigned headers, or the provider sent byte-identical bodies for two
    /// deliveries. No handler ran; answered
    /// [`OutcomeKind::Duplicate`](crate::OutcomeKind::Duplicate) and counted
    /// in [`Stats::replays`](crate::Stats::replays).
    Replayed,
    /// 200: the [ordering guard](crate::ordering) found a newer event of the
    /// same object already processed; the event is recorded as done and no
    /// handler ran; [`OutcomeKind::Stale`](crate::OutcomeKind::Stale).
    Stale {
        /// The object's watermark key (`provider:object`).
        object: String,
        /// This event's time.
        at: Watermark,
        /// The newest event time already processed for the object.
        newest: Watermark,
    },
}

/// A delivery whose signature verified but whose handlers the pipeline did not
/// run, with everything needed to look into it or replay it.
#[derive(Clone)]
#[non_exhaustive]
pub struct RejectedDelivery {
    /// The provider whose verifier accepted the signature.
    pub provider: Arc<str>,
    /// Why it was not processed.
    pub reason: RejectionReason,
    /// The status the pipeline answers (400, 422, or 200 for a duplicate with
    /// a changed body or a replay).
    pub status: u16,
    /// The event's deduplication id, when it could be identified.
    pub event_id: Option<String>,
    /// The event's kind, when it could be identified.
    pub event_kind: Option<String>,
    /// The raw body, exactly as received (shared, not copied).
    pub body: Bytes,
    /// Every header of the delivery, as received.
    pub headers: Headers,
}

impl fmt::Debug for RejectedDelivery {
    /// Leaves the body out (it may be large and hold personal data).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectedDelivery")
            .field("provider", &self.provider)
            .field("reason", &self.reason)
            .field("status", &self.status)
            .field("event_id", &self.event_id)
            .field("event_kind", &self.event_kind)
            .field("body_len", &self.body.len())
            .field("headers", &self.headers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_the_body_out_and_says_how_long_it_is() {
        let rejected = RejectedDelivery {
            provider: "github".into(),
            reason: RejectionReason::Replayed,
            status: 200,
            event_id: Some("d-1".into()),
            event_kind: Some("issues.opened".into()),
            body: Bytes::from_static(b"{\"card\":\"4242424242424242\"}"),
            headers: Headers::from_pairs([("X-GitHub-Event", "issues")]),
        };
        let debug = format!("{rejected:?}");
        for part in [
            "RejectedDelivery",
            "github",
            "Replayed",
            "200",
            "d-1",
            "issues.opened",
            "body_len: 27",
            "X-GitHub-Event",
        ] {
            assert!(debug.contains(part), "{part} missing from {debug}");
        }
        assert!(!debug.contains("4242"), "{debug}");
    }
}
