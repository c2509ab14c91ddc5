//! Is the receiver healthy? [`Pipeline::health`](crate::Pipeline::health)
//! reads the pipeline's in-process counters and latency histogram over a
//! recent window and checks them against [`HealthThresholds`].
//!
//! The checks teams ask for: recent critical failures, the success rate, the
//! duplicate rate, the in-flight backlog and the oldest unsettled attempt,
//! processing time p50 / p95 / p99, the best-effort dead-letter rate and
//! journal drops. Each threshold has a documented default; each breach is a
//! [`HealthAlert`] with its severity and a one-line recommendation. The
//! report costs nothing per delivery beyond counter bumps: it is computed
//! when asked for.

use std::fmt;
use std::time::Duration;

/// The overall verdict: the worst severity among the alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    /// No threshold is breached.
    Healthy,
    /// A warning threshold is breached: look into it.
    Degraded,
    /// A critical threshold is breached: deliveries are failing or stuck.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How bad one breach is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertSeverity {
    /// Makes the report [`HealthStatus::Degraded`].
    Warning,
    /// Makes the report [`HealthStatus::Unhealthy`].
    Critical,
}

/// One breached threshold.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthAlert {
    /// The check, by a stable name: `critical_failures`, `success_rate`,
    /// `duplicate_rate`, `in_flight`, `oldest_unsettled`, `processing_p95`,
    /// `processing_p99`, `dead_letter_rate`, `journal_drops`.
    pub check: &'static str,
    /// How bad.
    pub severity: AlertSeverity,
    /// What was measured and the threshold, e.g. `"success rate 62.5 % below 90 %"`.
    pub measured: String,
    /// What to do about it, in one line.
    pub recommendation: &'static str,
}

/// The thresholds [`Pipeline::health`](crate::Pipeline::health) checks; set
/// with [`PipelineBuilder::health_thresholds`](crate::PipelineBuilder::health_thresholds).
/// Rates are fractions (0.9 = 90 %) of the deliveries in the window; a rate
/// is only judged once the window holds [`min_deliveries`](Self::min_deliveries).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthThresholds {
    /// Deliveries a window needs before its rates are judged. Defaults to 20.
    pub min_deliveries: u64,
    /// Critical failures (500s: transient errors, timeouts, panics, lost
    /// leases; and 503s from the store) in the window that make a warning.
    /// Defaults to 1.
    pub critical_failures_warning: u64,
    /// Critical failures in the window that make it critical. Defaults to 10.
    pub critical_failures_critical: u64,
    /// Share of verified deliveries answered 2xx below which it is a warning.
    /// Defaults to 0.95.
    pub success_rate_warning: f64,
    /// Share of verified deliveries answered 2xx below which it is critical.
    /// Defaults to 0.80.
    pub success_rate_critical: f64,
    /// Share of duplicates above which it is a warning (the provider retries
    /// a lot: answers too slow, or 2xx not reaching it). Defaults to 0.30.
    pub duplicate_rate_warning: f64,
    /// Attempts holding a claim right now above which it is a warning.
    /// Defaults to 100.
    pub in_flight_warning: u64,
    /// Age of the oldest attempt still holding its claim above which it is
    /// critical (handlers stuck past every deadline). Defaults to 60 s.
    pub oldest_unsettled_critical: Duration,
    /// p95 processing time (whole `handle` of deliveries that ran their
    /// critical handlers) above which it is a warning. Defaults to 2 s.
    pub processing_p95_warning: Duration,
    /// p99 processing time above which it is critical. Defaults to 5 s
    /// (Shopify's answer time).
    pub processing_p99_critical: Duration,
    /// Share of ended best-effort jobs that went to the dead letter above
    /// which it is a warning. Defaults to 0.05.
    pub dead_letter_rate_warning: f64,
    /// Journal writes dropped in the window that make a warning. Defaults to 1.
    pub journal_drops_warning: u64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            min_deliveries: 20,
            critical_failures_warning: 1,
            critical_failures_critical: 10,
            success_rate_warning: 0.95,
            success_rate_critical: 0.80,
            duplicate_rate_warning: 0.30,
            in_flight_warning: 100,
            oldest_unsettled_critical: Duration::from_secs(60),
            processing_p95_warning: Duration::from_secs(2),
            processing_p99_critical: Duration::from_secs(5),
            dead_letter_rate_warning: 0.05,
            journal_drops_warning: 1,
        }
    }
}

/// What the pipeline did over a recent window, and the verdict.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthReport {
    /// The verdict: the worst severity among `alerts`.
    pub status: HealthStatus,
    /// The window the counts cover (the one asked for, capped at
    /// [`HealthReport::MAX_WINDOW`], rounded up to whole 15 s slots).
    pub window: Duration,
    /// Deliveries answered in the window.
    pub deliveries: u64,
    /// Verified deliveries (past signature checks) answered in the window.
    pub verified: u64,
    /// Share of verified deliveries answered 2xx; `None` without any.
    pub success_rate: Option<f64>,
    /// Share of deliveries that were duplicates; `None` without any delivery.
    pub duplicate_rate: Option<f64>,
    /// 500s and store 503s in the window.
    pub critical_failures: u64,
    /// Attempts holding a claim right now.
    pub in_flight: u64,
    /// How long the oldest attempt still holding its claim has run.
    pub oldest_unsettled: Option<Duration>,
    /// Processing time percentiles (p50, p95, p99) of the deliveries in the
    /// window that ran their critical handlers; `None` without any. Read from
    /// a log-linear histogram: within 6.25 % of the true value.
    pub processing: Option<[Duration; 3]>,
    /// Best-effort jobs that ended in the window, succeeded or dead-lettered.
    pub best_effort_ended: u64,
    /// Share of those that went to the dead letter; `None` without any.
    pub dead_letter_rate: Option<f64>,
    /// Journal writes dropped in the window.
    pub journal_drops: u64,
    /// Every breached threshold.
    pub alerts: Vec<HealthAlert>,
}

impl HealthReport {
    /// The longest window a report covers: 1 hour.
    pub const MAX_WINDOW: Duration = Duration::from_secs(60 * 60);
}
