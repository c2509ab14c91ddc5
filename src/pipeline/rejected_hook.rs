//! The host's hook for authentic deliveries whose handlers did not run.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::headers::Headers;
use crate::outcome::{Outcome, OutcomeKind};
use crate::rejected::{RejectedDelivery, RejectionReason};
use crate::verify::Identity;

/// The host's hook for rejected deliveries; see
/// [`PipelineBuilder::on_rejected`](crate::PipelineBuilder::on_rejected).
#[derive(Clone)]
pub(super) struct RejectedHook(Arc<dyn Fn(RejectedDelivery) + Send + Sync>);

impl RejectedHook {
    pub(super) fn new(hook: impl Fn(RejectedDelivery) + Send + Sync + 'static) -> Self {
        Self(Arc::new(hook))
    }

    /// Hands the delivery (`outcome` so far, the event's `identity` when the
    /// outcome does not carry it yet, `body`, `headers`) to the hook with
    /// `reason` and the status it is answered with; false if the hook
    /// panicked. Nothing is handed over before the provider is known.
    pub(super) fn deliver(
        &self,
        outcome: &Outcome,
        identity: Option<&Identity>,
        reason: RejectionReason,
        body: &Bytes,
        headers: &Headers,
    ) -> bool {
        let status = match &reason {
            RejectionReason::Unusable(err) => err.status(),
            RejectionReason::DuplicateBodyChanged => OutcomeKind::Duplicate.status(),
            RejectionReason::FingerprintMismatch => OutcomeKind::FingerprintMismatch.status(),
            RejectionReason::Replayed => OutcomeKind::Duplicate.status(),
            RejectionReason::Stale { at, newest, .. } => OutcomeKind::Stale {
                at: *at,
                newest: *newest,
            }
            .status(),
        };
        let Some(provider) = outcome.provider.clone() else {
            return true;
        };
        self.call(RejectedDelivery {
            provider,
            reason,
            status,
            event_id: identity.map_or_else(|| outcome.event_id.clone(), |i| Some(i.id.clone())),
            event_kind: identity
                .map_or_else(|| outcome.event_kind.clone(), |i| Some(i.kind.clone())),
            body: body.clone(),
            headers: headers.clone(),
        })
    }

    /// Calls the hook; a panic in it is caught so it cannot change the answer.
    fn call(&self, rejected: RejectedDelivery) -> bool {
        let hook = &self.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(rejected))).is_ok()
    }
}

impl fmt::Debug for RejectedHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RejectedHook")
    }
}
