//! The counters behind [`Pipeline::health`](crate::Pipeline::health): what
//! happened in each recent 15 s slot (an hour of them), a latency histogram
//! per slot, and the attempts holding a claim right now. Recording is a few
//! relaxed atomic increments, no lock. Time is tokio's (paused in tests).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::health::{AlertSeverity, HealthAlert, HealthReport, HealthStatus, HealthThresholds};
use crate::outcome::OutcomeKind;

/// The length of one slot.
const SLOT: Duration = Duration::from_secs(15);
/// Slots a report may cover: one hour.
const WINDOW_SLOTS: u64 = 240;
/// Slots kept: the window and the slot being filled, with room to spare.
const SLOTS: usize = 256;
/// Histogram buckets: 16 exact ones below 16 µs, then 8 per power of two up
/// to 2^41 µs (25 days; longer values land in the last bucket).
const BUCKETS: usize = 16 + 37 * 8;
/// Attempts whose start is tracked for the oldest-unsettled check; more run
/// untracked (they are still counted in `in_flight`).
const TRACKED: usize = 256;

/// What a slot counts, by index.
#[derive(Debug, Clone, Copy)]
pub(super) enum Count {
    Deliveries,
    Verified,
    VerifiedSuccess,
    Duplicates,
    CriticalFailures,
    BestEffortSucceeded,
    BestEffortDeadLettered,
    JournalDrops,
}

const COUNTS: usize = 8;

struct Slot {
    /// The number of the slot it holds, plus one (0: never used).
    tag: AtomicU64,
    counts: [AtomicU64; COUNTS],
    histogram: [AtomicU64; BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            tag: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            histogram: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The health counters of one pipeline.
pub(super) struct Monitor {
    base: Instant,
    slots: Box<[Slot]>,
    in_flight: AtomicU64,
    /// Start of each tracked attempt, in µs since `base` plus one (0: free).
    starts: Box<[AtomicU64]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Monitor {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
            in_flight: AtomicU64::new(0),
            starts: (0..TRACKED).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicUsize::new(0),
        }
    }
}

/// The histogram bucket of `micros`.
fn bucket(micros: u64) -> usize {
    if micros < 16 {
        return micros as usize;
    }
    let octave = (63 - micros.leading_zeros()).min(40);
    let sub = if octave == 40 && micros >> 41 != 0 {
        7
    } else {
        (micros >> (octave - 3)) & 7
    };
    16 + (octave as usize - 4) * 8 + sub as usize
}

/// The middle of bucket `index`, in µs.
fn bucket_middle(index: usize) -> f64 {
    if index < 16 {
        return index as f64;
    }
    let octave = (index - 16) / 8 + 4;
    let sub = ((index - 16) % 8) as u64;
    let width = 1u64 << (octave - 3);
    ((8 + sub) * width) as f64 + width as f64 / 2.0
}

impl Monitor {
    fn slot_number(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_secs() / SLOT.as_secs()
    }

    /// The slot counting `at`, cleared first if it held an older slot;
    /// `None` for an instant whose slot was already reused.
    fn slot(&self, at: Instant) -> Option<&Slot> {
        let number = self.slot_number(at);
        let slot = &self.slots[number as usize % SLOTS];
        let tag = number + 1;
        let seen = slot.tag.load(Ordering::Acquire);
        if seen == tag {
            return Some(slot);
        }
        if seen > tag {
            return None;
        }
        // The first to see the new slot clears it; a count or two racing the
        // clearing may be lost (the report is approximate at slot edges).
        if slot
            .tag
            .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            for count in &slot.counts {
                count.store(0, Ordering::Relaxed);
            }
            for bucket in &slot.histogram {
                bucket.store(0, Ordering::Relaxed);
            }
        }
        Some(slot)
    }

    /// Counts `n` more of `what`, now.
    pub(super) fn count(&self, what: Count, n: u64) {
        if let Some(slot) = self.slot(Instant::now()) {
            slot.counts[what as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts a delivery answered with `kind` that started at `started`;
    /// `processing` is how long it took, for one that ran its critical
    /// handlers.
    pub(super) fn delivery(
        &self,
        started: Instant,
        kind: &OutcomeKind,
        processing: Option<Duration>,
    ) {
        let Some(slot) = self.slot(started) else {
            return;
        };
        let bump = |what: Count| slot.counts[what as usize].fetch_add(1, Ordering::Relaxed);
        bump(Count::Deliveries);
        let verified = !matches!(
            kind,
            OutcomeKind::TooLarge { .. }
                | OutcomeKind::VerificationFailed(_)
                | OutcomeKind::ShuttingDown
        );
        if verified {
            bump(Count::Verified);
            if (200..300).contains(&kind.status()) {
                bump(Count::VerifiedSuccess);
            }
        }
        match kind {
            OutcomeKind::Duplicate => {
                bump(Count::Duplicates);
            }
            OutcomeKind::CriticalFailed { .. } | OutcomeKind::StoreUnavailable(_) => {
                bump(Count::CriticalFailures);
            }
            OutcomeKind::PermanentFailure {
                dead_lettered: false,
                ..
            } => {
                bump(Count::CriticalFailures);
            }
            _ => {}
        }
        if let Some(processing) = processing {
            let micros = u64::try_from(processing.as_micros()).unwrap_or(u64::MAX);
            slot.histogram[bucket(micros)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An attempt of a delivery that started at `started` took its claim; it
    /// counts as in flight until the guard is dropped.
    pub(super) fn claimed(&self, started: Instant) -> InFlightGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        super::observe::in_flight(1.0);
        let since = u64::try_from(started.saturating_duration_since(self.base).as_micros())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let tracked = (0..4).map(|i| (first + i) % TRACKED).find(|&i| {
            self.starts[i]
                .compare_exchange(0, since, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        InFlightGuard {
            monitor: self,
            tracked,
        }
    }

    /// The report over the last `window`.
    pub(super) fn report(&self, window: Duration, thresholds: &HealthThresholds) -> HealthReport {
        let now = Instant::now();
        let slots = window
            .as_secs()
            .div_ceil(SLOT.as_secs())
            .clamp(1, WINDOW_SLOTS);
        let current = self.slot_number(now);
        let oldest = current.saturating_sub(slots - 1);
        let mut counts = [0u64; COUNTS];
        let mut histogram = [0u64; BUCKETS];
        for slot in self.slots.iter() {
            let tag = slot.tag.load(Ordering::Acquire);
            if tag == 0 || tag - 1 < oldest || tag - 1 > current {
                continue;
            }
            for (sum, count) in counts.iter_mut().zip(&slot.counts) {
                *sum += count.load(Ordering::Relaxed);
            }
            for (sum, bucket) in histogram.iter_mut().zip(&slot.histogram) {
                *sum += bucket.load(Ordering::Relaxed);
            }
        }
        let get = |what: Count| counts[what as usize];
        let rate = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let elapsed = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX);
        let oldest_unsettled = self
            .starts
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&s| s != 0)
            .min()
            .map(|since| Duration::from_micros(elapsed.saturating_sub(since - 1)));
        let best_effort_ended =
            get(Count::BestEffortSucceeded) + get(Count::BestEffortDeadLettered);
        let mut report = HealthReport {
            status: HealthStatus::Healthy,
            window: SLOT * slots as u32,
            deliveries: get(Count::Deliveries),
            verified: get(Count::Verified),
            success_rate: rate(get(Count::VerifiedSuccess), get(Count::Verified)),
            duplicate_rate: rate(get(Count::Duplicates), get(Count::Deliveries)),
            critical_failures: get(Count::CriticalFailures),
            in_flight,
            oldest_unsettled,
            processing: percentiles(&histogram),
            best_effort_ended,
            dead_letter_rate: rate(get(Count::BestEffortDeadLettered), best_effort_ended),
            journal_drops: get(Count::JournalDrops),
            alerts: Vec::new(),
        };
        report.alerts = alerts(&report, thresholds);
        report.status = match report.alerts.iter().map(|a| a.severity).max() {
            None => HealthStatus::Healthy,
            Some(AlertSeverity::Warning) => HealthStatus::Degraded,
            Some(AlertSeverity::Critical) => HealthStatus::Unhealthy,
        };
        report
    }
}

/// p50, p95 and p99 of a histogram, `None` when it is empty.
fn percentiles(histogram: &[u64; BUCKETS]) -> Option<[Duration; 3]> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let at = |p: f64| {
        let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in histogram.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_secs_f64(bucket_middle(index) / 1e6);
            }
        }
        Duration::from_secs_f64(bucket_middle(BUCKETS - 1) / 1e6)
    };
    Some([at(0.50), at(0.95), at(0.99)])
}

fn percent(rate: f64) -> String {
    format!("{:.1} %", rate * 100.0)
}

/// Every threshold the report breaches.
fn alerts(report: &HealthReport, t: &HealthThresholds) -> Vec<HealthAlert> {
    let mut alerts = Vec::new();
    let mut alert = |check, severity, measured: String, recommendation| {
        alerts.push(HealthAlert {
            check,
            severity,
            measured,
            recommendation,
        });
    };
    let failures = report.critical_failures;
    if failures >= t.critical_failures_warning.max(1) {
        let severity = if failures >= t.critical_failures_critical {
            AlertSeverity::Critical
        } else {
            AlertSeverity::Warning
        };
        alert(
            "critical_failures",
            severity,
            format!("{failures} critical failures (500/503) in the last {:?}", report.window),
            "read the journal's critical_failed records; replay GitHub deliveries once the cause is fixed (GitHub never retries)",
        );
    }
    let judged = report.deliveries >= t.min_deliveries;
    if let (true, Some(rate)) = (judged, report.success_rate) {
        if rate < t.success_rate_critical {
            alert(
                "success_rate",
                AlertSeverity::Critical,
                format!("success rate {} below {}", percent(rate), percent(t.success_rate_critical)),
                "most verified deliveries fail: check the store and the critical handlers' dependencies",
            );
        } else if rate < t.success_rate_warning {
            alert(
                "success_rate",
                AlertSeverity::Warning,
                format!(
                    "success rate {} below {}",
                    percent(rate),
                    percent(t.success_rate_warning)
                ),
                "some verified deliveries fail: look at the errors of the failed records",
            );
        }
    }
    if let (true, Some(rate)) = (judged, report.duplicate_rate) {
        if rate > t.duplicate_rate_warning {
            alert(
                "duplicate_rate",
                AlertSeverity::Warning,
                format!("duplicate rate {} above {}", percent(rate), percent(t.duplicate_rate_warning)),
                "providers are retrying often: check that answers reach them within their answer time",
            );
        }
    }
    if report.in_flight > t.in_flight_warning {
        alert(
            "in_flight",
            AlertSeverity::Warning,
            format!(
                "{} attempts hold a claim, above {}",
                report.in_flight, t.in_flight_warning
            ),
            "critical handlers are slow or blocked: check their dependencies and the deadlines",
        );
    }
    if let Some(oldest) = report.oldest_unsettled {
        if oldest > t.oldest_unsettled_critical {
            alert(
                "oldest_unsettled",
                AlertSeverity::Critical,
                format!("an attempt has held its claim for {oldest:?}, above {:?}", t.oldest_unsettled_critical),
                "a critical handler is stuck past every deadline (blocking the thread?): find it in a thread dump",
            );
        }
    }
    if let Some([_, p95, p99]) = report.processing {
        if p99 > t.processing_p99_critical {
            alert(
                "processing_p99",
                AlertSeverity::Critical,
                format!("p99 processing time {p99:?} above {:?}", t.processing_p99_critical),
                "deliveries come close to the providers' answer time: move slow work to best-effort handlers",
            );
        } else if p95 > t.processing_p95_warning {
            alert(
                "processing_p95",
                AlertSeverity::Warning,
                format!("p95 processing time {p95:?} above {:?}", t.processing_p95_warning),
                "critical handlers are getting slow: profile them, or move work to best-effort handlers",
            );
        }
    }
    if let Some(rate) = report.dead_letter_rate {
        if rate > t.dead_letter_rate_warning {
            alert(
                "dead_letter_rate",
                AlertSeverity::Warning,
                format!("{} of best-effort jobs dead-lettered, above {}", percent(rate), percent(t.dead_letter_rate_warning)),
                "a best-effort dependency is failing: read the dead letter and retry once it is back",
            );
        }
    }
    if report.journal_drops >= t.journal_drops_warning.max(1) {
        alert(
            "journal_drops",
            AlertSeverity::Warning,
            format!("{} journal writes dropped", report.journal_drops),
            "the journal is down, slow or its queue is full: failed deliveries may not be findable",
        );
    }
    alerts
}

/// An attempt holding its claim; counted in flight until dropped.
pub(super) struct InFlightGuard<'a> {
    monitor: &'a Monitor,
    tracked: Option<usize>,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.monitor.in_flight.fetch_sub(1, Ordering::Relaxed);
        super::observe::in_flight(-1.0);
        if let Some(i) = self.tracked {
            self.monitor.starts[i].store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_within_one_eighth() {
        let mut last = 0;
        for micros in (0..100_000u64).chain([1 << 40, (1 << 41) - 1, 1 << 41, u64::MAX]) {
            let index = bucket(micros);
            assert!(index < BUCKETS, "{micros}");
            assert!(
                index >= last || micros > 100_000,
                "buckets grow with the value"
            );
            last = index;
            if (16..1 << 41).contains(&micros) {
                let middle = bucket_middle(index);
                let error = (middle - micros as f64).abs() / micros as f64;
                assert!(error <= 0.0625 + 1e-9, "{micros}: {middle} ({error})");
            } else if micros < 16 {
                assert_eq!(bucket_middle(index), micros as f64);
            }
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_pick_the_ranked_bucket() {
        let mut histogram = [0u64; BUCKETS];
        histogram[bucket(10)] = 50;
        histogram[bucket(1000)] = 45;
        histogram[bucket(100_000)] = 5;
        let [p50, p95, p99] = percentiles(&histogram).unwrap();
        assert_eq!(p50, Duration::from_micros(10));
        assert!((960..=1040).contains(&p95.as_micros()), "{p95:?}");
        assert!((94_000..=106_000).contains(&p99.as_micros()), "{p99:?}");
        assert_eq!(percentiles(&[0; BUCKETS]), None);
    }
}
