//! How failed best-effort work is retried: [`RetryPolicy`].
//!
//! Runtime-free: the policy computes delays; the pipeline's best-effort runner
//! sleeps them.

use std::time::Duration;

/// How best-effort work is retried.
///
/// The default makes 4 attempts: the first, then 3 retries about 2 s, 4 s and 8 s
/// later (±20 % jitter), each attempt cut off after 30 s.
///
/// ```
/// use hookgate::RetryPolicy;
/// use std::time::Duration;
/// let policy = RetryPolicy::default()
///     .with_max_attempts(5)
///     .with_initial_backoff(Duration::from_millis(100))
///     .with_attempt_timeout(Duration::from_secs(5));
/// assert_eq!(policy.nominal_delay(1), Duration::from_millis(100));
/// assert_eq!(policy.nominal_delay(3), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1). Default: 4.
    pub max_attempts: u32,
    /// Delay before the first retry. Default: 2 s.
    pub initial_backoff: Duration,
    /// Factor applied to the delay after each retry. Default: 2.0.
    pub multiplier: f64,
    /// Largest delay between two attempts. Default: 5 min.
    pub max_backoff: Duration,
    /// Each delay is spread uniformly over ±`jitter` of its nominal value
    /// (0.0 to 1.0), so many failing handlers do not retry in lockstep.
    /// Default: 0.2.
    pub jitter: f64,
    /// Time limit of one attempt; an attempt that passes it is cancelled and
    /// counts as a transient failure. Default: 30 s.
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

impl RetryPolicy {
    /// Sets the number of attempts, the first included (values below 1 mean 1).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the delay before the first retry.
    #[must_use]
    pub fn with_initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }

    /// Sets the growth factor of the delay (values below 1.0 mean 1.0).
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Sets the largest delay between two attempts.
    #[must_use]
    pub fn with_max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }

    /// Sets the jitter fraction (clamped to 0.0..=1.0).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Sets the time limit of one attempt.
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The delay before retry number `retry` (1 for the first retry) without
    /// jitter: `initial_backoff × multiplier^(retry-1)`, at most `max_backoff`.
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exponent);
        let secs = self.initial_backoff.as_secs_f64() * factor;
        let capped = secs.min(self.max_backoff.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.max_backoff)
    }

    /// The range the jittered delay before retry number `retry` falls in.
    pub fn delay_bounds(&self, retry: u32) -> (Duration, Duration) {
        let nominal = self.nominal_delay(retry).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let at = |secs: f64| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
        (at(nominal * (1.0 - jitter)), at(nominal * (1.0 + jitter)))
    }
}
