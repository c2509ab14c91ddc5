//! The claim step: which key a delivery claims, and what each answer of the
//! store comes to.

use std::sync::Arc;

use bytes::Bytes;

use super::key::ClaimKey;
use super::recorder::Recorder;
use super::replay::{self, Registration};
use super::{Pipeline, Provider};
use crate::headers::Headers;
use crate::journal::JournalId;
use crate::outcome::{Outcome, OutcomeKind};
use crate::rejected::RejectionReason;
use crate::store::{Claim, FencingToken, Fingerprint};
use crate::verify::Identity;

/// Which key an attempt claims.
#[derive(Debug, Clone, Copy)]
pub(super) enum ClaimMode {
    /// The event's key `provider:event_id`: the critical work runs once.
    Once,
    /// A forced replay of journal record `.0`: a key of its own,
    /// `provider:event_id#replay:<record>`, so the work runs again even when
    /// the event is completed, still at most once for this replay, and the
    /// replay guard is skipped.
    Forced(JournalId),
}

impl Pipeline {
    /// Claims the event `provider:event_id` of a routed delivery with the
    /// body's fingerprint, after registering the body under the replay guard.
    /// `Ok` holds the key and the token of an attempt to run; `Err` is the
    /// answer when there is nothing to run: a duplicate (with a changed body
    /// per the [`FingerprintPolicy`](super::FingerprintPolicy), or a replay,
    /// both reported), an attempt in flight, or a store failure.
    pub(super) async fn claim(
        &self,
        provider: &Provider,
        outcome: &Outcome,
        identity: &Identity,
        body: &Bytes,
        headers: &Headers,
        mode: ClaimMode,
    ) -> Result<(ClaimKey, FencingToken), OutcomeKind> {
        let inner = &*self.inner;
        let unavailable = |err| OutcomeKind::StoreUnavailable(Arc::new(err));
        if provider.replay_guard && matches!(mode, ClaimMode::Once) {
            let registration = replay::register(
                &*inner.store,
                &provider.name,
                &provider.profile,
                &provider.limits,
                identity,
                body,
            )
            .await;
            match registration.map_err(unavailable)? {
                Registration::Owner => {}
                Registration::Replayed => {
                    Recorder::bump(&inner.stats.replays);
                    let reason = RejectionReason::Replayed;
                    self.reject(outcome, Some(identity), reason, body, headers);
                    return Err(OutcomeKind::Duplicate);
                }
                Registration::Busy { until } => return Err(OutcomeKind::InFlight { until }),
            }
        }
        let key = match mode {
            ClaimMode::Once => ClaimKey::event(&provider.name, &identity.id),
            ClaimMode::Forced(record) => {
                let replay = format!("#replay:{record}");
                ClaimKey::joined(&[&provider.name, ":", &identity.id, &replay])
            }
        };
        let fingerprint = Fingerprint::of(body);
        let lease = provider.limits.lease;
        let claim = match inner.store.claim_now(&key, fingerprint, lease) {
            Some(claim) => claim,
            None => inner.store.claim(&key, fingerprint, lease).await,
        };
        match claim.map_err(unavailable)? {
            Claim::Acquired(token) => Ok((key, token)),
            Claim::AcquiredBodyChanged(token) => {
                Recorder::bump(&inner.stats.body_changed);
                Ok((key, token))
            }
            Claim::Completed => Err(OutcomeKind::Duplicate),
            Claim::CompletedBodyChanged => {
                let (kind, reason) = inner.fingerprint_policy.completed_body_changed();
                if let OutcomeKind::Duplicate = kind {
                    Recorder::bump(&inner.stats.duplicate_body_changed);
                }
                self.reject(outcome, Some(identity), reason, body, headers);
                Err(kind)
            }
            Claim::InFlight { until } => Err(OutcomeKind::InFlight { until }),
        }
    }
}
