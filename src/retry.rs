//! How failed best-effort work is retried: [`RetryPolicy`].
//!
//! Runtime-free: the policy computes delays; the pipeline's best-effort runner
//! sleeps them.

use std::time::Duration;

/// How best-effort work is retried: plain settings, each field documented
/// with its default. Start from [`RetryPolicy::default`] and set the fields
/// you need.
///
/// Nothing is adjusted behind your back: [`PipelineBuilder::build`] refuses a
/// policy that cannot work with
/// [`BuildError::InvalidRetryPolicy`], naming the field (see
/// [`RetryPolicy::check`]). Extreme but valid values (a backoff of
/// [`Duration::MAX`], `u32::MAX` attempts, a multiplier of `f64::MAX`) are
/// fine: delays saturate, they never overflow.
///
/// The default makes 4 attempts: the first, then 3 retries about 2 s, 4 s and 8 s
/// later (±20 % jitter), each attempt cut off after 30 s.
///
/// ```
/// use hookgate::RetryPolicy;
/// use std::time::Duration;
/// let mut policy = RetryPolicy::default();
/// policy.max_attempts = 5;
/// policy.initial_backoff = Duration::from_millis(100);
/// policy.attempt_timeout = Duration::from_secs(5);
/// assert_eq!(policy.check(), Ok(()));
/// assert_eq!(policy.nominal_delay(1), Duration::from_millis(100));
/// assert_eq!(policy.nominal_delay(3), Duration::from_millis(400));
/// ```
///
/// [`PipelineBuilder::build`]: crate::PipelineBuilder::build
/// [`BuildError::InvalidRetryPolicy`]: crate::BuildError::InvalidRetryPolicy
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total, the first included; at least 1. Defaults to 4.
    pub max_attempts: u32,
    /// Delay before the first retry; zero retries at once. Defaults to 2 s.
    pub initial_backoff: Duration,
    /// Factor applied to the delay after each retry: a finite number of at
    /// least 1.0 (1.0 keeps the delay constant). Defaults to 2.0.
    pub multiplier: f64,
    /// Largest delay between two attempts, before jitter. Defaults to 5 min.
    pub max_backoff: Duration,
    /// Each delay is spread uniformly over ±`jitter` of its nominal value, so
    /// many failing handlers do not retry in lockstep: from 0.0 (no jitter)
    /// to 1.0. Defaults to 0.2.
    pub jitter: f64,
    /// Time limit of one attempt, greater than zero; an attempt that passes
    /// it is cancelled and counts as a transient failure. Defaults to 30 s.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(300),
            jitter: 0.2,
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// A [`RetryPolicy`] field that cannot work, found by [`RetryPolicy::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the retry policy's `{field}` {requirement}")]
#[non_exhaustive]
pub struct RetryPolicyError {
    /// The field, as named in [`RetryPolicy`]: `max_attempts`, `multiplier`,
    /// `jitter` or `attempt_timeout`.
    pub field: &'static str,
    /// What the field must be.
    pub requirement: &'static str,
}

impl RetryPolicy {
    /// Checks that every field can work: `max_attempts` at least 1,
    /// `multiplier` finite and at least 1.0, `jitter` within 0.0..=1.0, and
    /// `attempt_timeout` above zero. The pipeline builder runs it.
    ///
    /// # Errors
    /// The first field that cannot work.
    pub fn check(&self) -> Result<(), RetryPolicyError> {
        let refuse = |field, requirement| Err(RetryPolicyError { field, requirement });
        if self.max_attempts == 0 {
            return refuse(
                "max_attempts",
                "must be at least 1 (the first attempt counts)",
            );
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return refuse(
                "multiplier",
                "must be a finite number of at least 1.0 (delays never shrink)",
            );
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return refuse("jitter", "must be between 0.0 and 1.0");
        }
        if self.attempt_timeout.is_zero() {
            return refuse(
                "attempt_timeout",
                "must be greater than zero (every attempt would time out)",
            );
        }
        Ok(())
    }

    /// The delay before retry number `retry` (1 for the first retry) without
    /// jitter: `initial_backoff × multiplier^(retry-1)`, at most
    /// `max_backoff` (retry 0 is taken as 1). Saturates instead of
    /// overflowing; never panics.
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        if retry <= 1 {
            return self.initial_backoff.min(self.max_backoff);
        }
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        saturating_secs(secs).min(self.max_backoff)
    }

    /// The range the jittered delay before retry number `retry` falls in:
    /// the nominal delay ± `jitter` of it. Saturates instead of overflowing;
    /// never panics.
    pub fn delay_bounds(&self, retry: u32) -> (Duration, Duration) {
        let nominal = self.nominal_delay(retry);
        let spread = saturating_secs(nominal.as_secs_f64() * self.jitter);
        (
            nominal.saturating_sub(spread),
            nominal.saturating_add(spread),
        )
    }

    /// The delay before retry number `retry` for `unit`, a uniform draw in
    /// `[0, 1)` (values outside are taken as the nearest end): within
    /// [`delay_bounds`](Self::delay_bounds). Never panics.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let (low, high) = self.delay_bounds(retry);
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let offset = saturating_secs((high - low).as_secs_f64() * unit);
        low.saturating_add(offset).min(high)
    }
}

/// `secs` as a duration: zero for NaN or negative values, [`Duration::MAX`]
/// past it.
fn saturating_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}
