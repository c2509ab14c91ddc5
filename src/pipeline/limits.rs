//! Per-provider limits and the policies that decide what a failure answers.

use std::time::Duration;

use super::build_error::BuildError;
use crate::outcome::OutcomeKind;
use crate::rejected::RejectionReason;
use crate::verify::ProviderProfile;

/// Per-provider limits: how big a body may be, how long the answer may take and
/// how that time is shared, how long a claim is held and how long a completed
/// event is remembered.
///
/// The defaults come from the verifier's [`ProviderProfile`]
/// ([`Verifier::profile`](crate::Verifier::profile)); override them on the
/// [`PipelineBuilder`](crate::PipelineBuilder).
///
/// # The answer budget
/// From the moment `handle` starts (verification included) the claim, the
/// critical handlers and the completion of the key must end within
/// [`answer_budget`](ProviderLimits::answer_budget), so the provider gets its
/// answer before it gives up. The claim, then the critical handlers (for at
/// most their [`critical_deadline`](ProviderLimits::critical_deadline)), then
/// the dead letter when a handler failed permanently, may use the budget up to
/// the [`settle_reserve`](ProviderLimits::settle_reserve); completing the key
/// (or releasing it after a failure) gets what is left. A claim that does not
/// answer in time is answered 503
/// (no handler ran); a completion that does not answer in time is answered 503
/// too, never 2xx: the key may or may not be recorded as done, and the
/// provider's retry finds out (200 `Duplicate` if it was, 409 until the lease
/// ends and then a new attempt if it was not), so no event is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderLimits {
    /// Largest accepted body in bytes. Defaults to the profile's
    /// [`body_limit`](ProviderProfile::body_limit): 25 MiB for GitHub (its
    /// payload cap), 1 MiB otherwise.
    pub body_limit: usize,
    /// Time from the start of `handle` to the answer, for a delivery that gets
    /// to run its critical handlers: claim, handlers and completion together.
    /// Store calls that would overrun it are abandoned and answered 503. It
    /// stays below the provider's answer time to leave room for what happens
    /// outside `handle` (connecting, TLS, reading the body, writing the
    /// answer). Defaults to 80 % of the profile's
    /// [`answer_within`](ProviderProfile::answer_within): 4 s for Shopify
    /// (answers within 5 s), 8 s for GitHub (10 s) and every other provider.
    pub answer_budget: Duration,
    /// The part of the answer budget kept back from the claim and the critical
    /// handlers for settling the key (completing it, or releasing it after a
    /// failure), so handlers that run long still leave the store time to
    /// record their success. Defaults to 1/8 of the answer budget: 500 ms for
    /// Shopify, 1 s for GitHub and every other provider.
    pub settle_reserve: Duration,
    /// Longest time the critical handlers get, together, before the attempt is
    /// cancelled and answered 500. They never get more than the answer budget
    /// leaves them after the claim and before the settle reserve, so this
    /// matters only when it is shorter. Defaults to the answer budget.
    pub critical_deadline: Duration,
    /// How long a claim holds the key; must be longer than the answer budget
    /// and the critical deadline, so a live attempt never loses its key.
    /// Defaults to 3 × the longer of the two.
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
        let answer_budget = default_budget(profile.answer_within);
        Self {
            body_limit: profile.body_limit,
            answer_budget,
            settle_reserve: default_reserve(answer_budget),
            critical_deadline: answer_budget,
            lease: default_lease(answer_budget, answer_budget),
            retention: profile.retention,
        }
    }
}

/// 80 % of the provider's answer time (exact, and without overflow for any
/// duration). The 20 % left covers what happens around `handle`: the
/// provider's connection and TLS handshake, reading the body (a 25 MiB GitHub
/// payload takes about 2 s at 100 Mbit/s), the host's routing and writing the
/// answer; 1 s for Shopify, 2 s for GitHub.
fn default_budget(answer_within: Duration) -> Duration {
    answer_within - answer_within / 5
}

/// 1/8 of the budget: far more than a healthy store needs to settle a key
/// (one statement or script, a few milliseconds), enough for a loaded one.
fn default_reserve(answer_budget: Duration) -> Duration {
    answer_budget / 8
}

/// 3 × the longer of the budget and the deadline, saturating.
fn default_lease(answer_budget: Duration, critical_deadline: Duration) -> Duration {
    answer_budget.max(critical_deadline).saturating_mul(3)
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
    pub(super) answer_budget: Option<Duration>,
    pub(super) settle_reserve: Option<Duration>,
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
            answer_budget: self.answer_budget.or(wider.answer_budget),
            settle_reserve: self.settle_reserve.or(wider.settle_reserve),
            critical_deadline: self.critical_deadline.or(wider.critical_deadline),
            lease: self.lease.or(wider.lease),
            retention: self.retention.or(wider.retention),
        }
    }
}

/// The limits of `provider`: its profile's defaults under the settings made.
/// Derived defaults (reserve, deadline, lease) follow the settings they derive
/// from.
pub(super) fn resolve_limits(
    provider: &str,
    profile: &ProviderProfile,
    set: LimitOverrides,
) -> Result<ProviderLimits, BuildError> {
    let answer_budget = set
        .answer_budget
        .unwrap_or_else(|| default_budget(profile.answer_within));
    let critical_deadline = set.critical_deadline.unwrap_or(answer_budget);
    let limits = ProviderLimits {
        body_limit: set.body_limit.unwrap_or(profile.body_limit),
        answer_budget,
        settle_reserve: set
            .settle_reserve
            .unwrap_or_else(|| default_reserve(answer_budget)),
        critical_deadline,
        lease: set
            .lease
            .unwrap_or_else(|| default_lease(answer_budget, critical_deadline)),
        retention: set.retention.unwrap_or(profile.retention),
    };
    check(provider, &limits)?;
    Ok(limits)
}

/// Refuses limits that cannot work: zero sizes and times, a reserve that
/// leaves the claim and the handlers nothing, a lease a live attempt could
/// outlast.
fn check(provider: &str, limits: &ProviderLimits) -> Result<(), BuildError> {
    if limits.body_limit == 0 {
        return Err(BuildError::Zero("body_limit"));
    }
    for (name, value) in [
        ("answer_budget", limits.answer_budget),
        ("critical_deadline", limits.critical_deadline),
        ("retention", limits.retention),
    ] {
        if value.is_zero() {
            return Err(BuildError::Zero(name));
        }
    }
    if limits.settle_reserve >= limits.answer_budget {
        return Err(BuildError::ReserveNotShorterThanBudget {
            provider: provider.to_owned(),
            reserve: limits.settle_reserve,
            budget: limits.answer_budget,
        });
    }
    if limits.lease <= limits.critical_deadline {
        return Err(BuildError::LeaseNotLongerThanDeadline {
            provider: provider.to_owned(),
            lease: limits.lease,
            deadline: limits.critical_deadline,
        });
    }
    if limits.lease <= limits.answer_budget {
        return Err(BuildError::LeaseNotLongerThanBudget {
            provider: provider.to_owned(),
            lease: limits.lease,
            budget: limits.answer_budget,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_answer_time() {
        let profile = ProviderProfile {
            answer_within: Duration::from_secs(5),
            ..ProviderProfile::default()
        };
        let limits = ProviderLimits::from_profile(&profile);
        assert_eq!(limits.answer_budget, Duration::from_secs(4));
        assert_eq!(limits.settle_reserve, Duration::from_millis(500));
        assert_eq!(limits.critical_deadline, Duration::from_secs(4));
        assert_eq!(limits.lease, Duration::from_secs(12));
        assert_eq!(
            resolve_limits("p", &profile, LimitOverrides::default()).ok(),
            Some(limits)
        );
    }

    #[test]
    fn extreme_answer_times_derive_without_overflow() {
        for answer_within in [Duration::MAX, Duration::from_nanos(1), Duration::ZERO] {
            let profile = ProviderProfile {
                answer_within,
                ..ProviderProfile::default()
            };
            let limits = ProviderLimits::from_profile(&profile);
            assert!(limits.answer_budget <= answer_within);
            assert!(limits.settle_reserve <= limits.answer_budget);
            let _ = resolve_limits("p", &profile, LimitOverrides::default());
        }
    }
}
