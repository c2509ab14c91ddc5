//! Per-provider limits and the policies that decide what a failure answers.

use std::time::Duration;

use super::builder::BuildError;
use crate::outcome::OutcomeKind;
use crate::rejected::RejectionReason;
use crate::verify::ProviderProfile;

/// Per-provider limits: how big a body may be, how long critical work may take,
/// how long a claim is held and how long a completed event is remembered.
///
/// The defaults come from the verifier's [`ProviderProfile`]
/// ([`Verifier::profile`](crate::Verifier::profile)); override them on the
/// [`PipelineBuilder`](crate::PipelineBuilder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderLimits {
    /// Largest accepted body in bytes. Defaults to the profile's
    /// [`body_limit`](ProviderProfile::body_limit): 25 MiB for GitHub (its
    /// payload cap), 1 MiB otherwise.
    pub body_limit: usize,
    /// Time the critical handlers get, together, before the attempt is
    /// cancelled and answered 500. It must leave room under the provider's own
    /// answer timeout. Defaults to 80 % of the profile's
    /// [`answer_within`](ProviderProfile::answer_within): 4 s for Shopify
    /// (answers within 5 s), 8 s for GitHub (10 s) and every other provider.
    pub critical_deadline: Duration,
    /// How long a claim holds the key; must be longer than the deadline so a
    /// live attempt never loses its key. Defaults to 3 × the deadline.
    pub lease: Duration,
    /// How long a completed event is remembered, which must cover the provider's
    /// retry or redelivery window. Defaults to the profile's
    /// [`retention`](ProviderProfile::retention): 30 days for GitHub (manual
    /// redelivery), 72 h otherwise (Stripe retries for 3 days).
    pub retention: Duration,
}

impl ProviderLimits {
    /// The defaults for a provider with this profile.
    pub fn from_profile(profile: &ProviderProfile) -> Self {
        let critical_deadline = profile.answer_within.mul_f64(0.8);
        Self {
            body_limit: profile.body_limit,
            critical_deadline,
            lease: critical_deadline.saturating_mul(3),
            retention: profile.retention,
        }
    }
}

/// What the pipeline does when a critical handler fails permanently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PermanentFailurePolicy {
    /// Send the event to the dead letter, record it as done and answer 200, so
    /// the provider stops retrying something that cannot succeed. The event is
    /// then only as safe as the dead letter: set a durable one with
    /// [`PipelineBuilder::dead_letter`](crate::PipelineBuilder::dead_letter) in
    /// production (the default [`MemoryDeadLetter`](crate::MemoryDeadLetter)
    /// lives in the process; read it with
    /// [`Pipeline::memory_dead_letter`](crate::Pipeline::memory_dead_letter)). If
    /// the dead letter refuses the entry, the key is released and the answer is
    /// 500 instead, so the provider keeps the event.
    #[default]
    DeadLetter,
    /// Release the key and answer 500, so the provider keeps retrying (useful when
    /// a fix can be deployed within the provider's retry window).
    Retry,
}

/// What the pipeline answers to a delivery whose event already completed with
/// another body (same id, different bytes: [`Claim::CompletedBodyChanged`](crate::Claim::CompletedBodyChanged)).
///
/// Providers re-render an event between deliveries (an endpoint's API version
/// changes; Stripe's `pending_webhooks` is a live count), so a different body
/// under a completed id is usually the same event, already handled. Either
/// way no handler runs, and the delivery goes to the
/// [`on_rejected`](crate::PipelineBuilder::on_rejected) hook with its body.
///
/// A retry after a *failed* attempt (the key released, or its lease expired)
/// runs whatever its body under either policy: the work was never done
/// ([`Stats::body_changed`](crate::Stats::body_changed) counts these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FingerprintPolicy {
    /// Answer 200 [`OutcomeKind::Duplicate`], so the provider stops sending it,
    /// count it in [`Stats::duplicate_body_changed`](crate::Stats::duplicate_body_changed)
    /// and hand it to the hook as [`RejectionReason::DuplicateBodyChanged`].
    #[default]
    Lenient,
    /// Answer 422 [`OutcomeKind::FingerprintMismatch`] (the provider retries
    /// where it retries at all) and hand it to the hook as
    /// [`RejectionReason::FingerprintMismatch`]: for hosts that treat a changed
    /// body under a known id as an error to look into.
    Strict,
}

impl FingerprintPolicy {
    /// How a delivery whose event completed with another body is answered
    /// under this policy, and why it is handed to the hook.
    pub(super) fn completed_body_changed(self) -> (OutcomeKind, RejectionReason) {
        match self {
            FingerprintPolicy::Lenient => (
                OutcomeKind::Duplicate,
                RejectionReason::DuplicateBodyChanged,
            ),
            FingerprintPolicy::Strict => (
                OutcomeKind::FingerprintMismatch,
                RejectionReason::FingerprintMismatch,
            ),
        }
    }
}

/// Limits set on the builder, for one provider or for all of them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LimitOverrides {
    pub(super) body_limit: Option<usize>,
    pub(super) critical_deadline: Option<Duration>,
    pub(super) lease: Option<Duration>,
    pub(super) retention: Option<Duration>,
}

impl LimitOverrides {
    /// These settings, falling back to `wider` (the settings for every provider)
    /// where unset.
    pub(super) fn or(self, wider: LimitOverrides) -> LimitOverrides {
        LimitOverrides {
            body_limit: self.body_limit.or(wider.body_limit),
            critical_deadline: self.critical_deadline.or(wider.critical_deadline),
            lease: self.lease.or(wider.lease),
            retention: self.retention.or(wider.retention),
        }
    }
}

/// The limits of `provider`: its profile's defaults under the settings made.
pub(super) fn resolve_limits(
    provider: &str,
    profile: &ProviderProfile,
    set: LimitOverrides,
) -> Result<ProviderLimits, BuildError> {
    let defaults = ProviderLimits::from_profile(profile);
    let critical_deadline = set.critical_deadline.unwrap_or(defaults.critical_deadline);
    let limits = ProviderLimits {
        body_limit: set.body_limit.unwrap_or(defaults.body_limit),
        critical_deadline,
        lease: set
            .lease
            .unwrap_or_else(|| critical_deadline.saturating_mul(3)),
        retention: set.retention.unwrap_or(defaults.retention),
    };
    if limits.body_limit == 0 {
        return Err(BuildError::Zero("body_limit"));
    }
    if limits.critical_deadline.is_zero() {
        return Err(BuildError::Zero("critical_deadline"));
    }
    if limits.retention.is_zero() {
        return Err(BuildError::Zero("retention"));
    }
    if limits.lease <= limits.critical_deadline {
        return Err(BuildError::LeaseNotLongerThanDeadline {
            provider: provider.to_owned(),
            lease: limits.lease,
            deadline: limits.critical_deadline,
        });
    }
    Ok(limits)
}
