//! Counters of what the pipeline did, read as a plain snapshot.
// The recorder is fed by the pipeline, which needs the `tokio` feature.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::outcome::OutcomeKind;

/// A snapshot of the pipeline's counters since it was built; see
/// [`Pipeline::stats`](crate::Pipeline::stats).
///
/// Delivery counters add up to the number of `handle` calls that returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// 413: bodies over the limit.
    pub too_large: u64,
    /// 400: not a well-formed signed delivery (or no known provider).
    pub bad_request: u64,
    /// 401: signature or timestamp did not hold.
    pub unauthorized: u64,
    /// 400: authentic but unusable payloads.
    pub unusable: u64,
    /// 200: duplicates of completed events.
    pub duplicate: u64,
    /// 422: same id, different body.
    pub fingerprint_mismatch: u64,
    /// 409: another attempt held the lease.
    pub in_flight: u64,
    /// 200: no handler for the kind.
    pub ignored: u64,
    /// 200: critical work succeeded.
    pub processed: u64,
    /// 500: critical transient failures, timeouts, panics and lost leases.
    pub critical_failed: u64,
    /// Critical permanent failures (200 + dead letter, or 500 per policy).
    pub permanent_failure: u64,
    /// 503: the idempotency store failed.
    pub store_unavailable: u64,
    /// 503: deliveries refused during shutdown.
    pub shutting_down: u64,
    /// Best-effort handler runs that finally succeeded.
    pub best_effort_succeeded: u64,
    /// Best-effort retries (attempts after the first).
    pub best_effort_retries: u64,
    /// Best-effort work sent to the dead letter (exhausted, permanent,
    /// abandoned at shutdown, refused by the pending bound, or dropped).
    pub best_effort_dead_lettered: u64,
    /// Best-effort work refused because the pipeline already held its maximum of
    /// pending jobs; sent to the dead letter at once
    /// ([`DeadLetterReason::Overflow`](crate::DeadLetterReason::Overflow)).
    pub best_effort_overflow: u64,
    /// Best-effort work whose `FollowUp` was dropped before it settled; sent to
    /// the dead letter at once
    /// ([`DeadLetterReason::FollowUpDropped`](crate::DeadLetterReason::FollowUpDropped)).
    pub best_effort_dropped: u64,
    /// Entries the dead letter refused (critical or best-effort).
    pub dead_letter_failures: u64,
    /// Gauge at the time of the snapshot: best-effort jobs registered and not
    /// settled (running, waiting for a permit, sleeping before a retry, or not
    /// started), plus entries waiting to be sent to the dead letter; each part
    /// is bounded by
    /// [`PipelineBuilder::max_pending_best_effort`](crate::PipelineBuilder::max_pending_best_effort).
    pub best_effort_pending: u64,
    /// Calls of the [`on_rejected`](crate::PipelineBuilder::on_rejected) hook
    /// that panicked (the panic was caught; the delivery was answered as usual).
    pub rejected_hook_panics: u64,
}

impl Stats {
    /// Total deliveries handled.
    pub fn deliveries(&self) -> u64 {
        self.too_large
            + self.bad_request
            + self.unauthorized
            + self.unusable
            + self.duplicate
            + self.fingerprint_mismatch
            + self.in_flight
            + self.ignored
            + self.processed
            + self.critical_failed
            + self.permanent_failure
            + self.store_unavailable
            + self.shutting_down
    }
}

const KINDS: usize = 13;

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    deliveries: [AtomicU64; KINDS],
    pub(crate) best_effort_succeeded: AtomicU64,
    pub(crate) best_effort_retries: AtomicU64,
    pub(crate) best_effort_dead_lettered: AtomicU64,
    pub(crate) best_effort_overflow: AtomicU64,
    pub(crate) best_effort_dropped: AtomicU64,
    pub(crate) dead_letter_failures: AtomicU64,
    pub(crate) rejected_hook_panics: AtomicU64,
}

fn slot(kind: &OutcomeKind) -> usize {
    match kind {
        OutcomeKind::TooLarge { .. } => 0,
        OutcomeKind::Rejected(err) if err.status() == 401 => 2,
        OutcomeKind::Rejected(_) => 1,
        OutcomeKind::Unusable(_) => 3,
        OutcomeKind::Duplicate => 4,
        OutcomeKind::FingerprintMismatch => 5,
        OutcomeKind::InFlight { .. } => 6,
        OutcomeKind::Ignored => 7,
        OutcomeKind::Processed { .. } => 8,
        OutcomeKind::CriticalFailed { .. } => 9,
        OutcomeKind::PermanentFailure { .. } => 10,
        OutcomeKind::StoreUnavailable(_) => 11,
        OutcomeKind::ShuttingDown => 12,
    }
}

impl Recorder {
    pub(crate) fn delivery(&self, kind: &OutcomeKind) {
        self.deliveries[slot(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let d = |i: usize| self.deliveries[i].load(Ordering::Relaxed);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            too_large: d(0),
            bad_request: d(1),
            unauthorized: d(2),
            unusable: d(3),
            duplicate: d(4),
            fingerprint_mismatch: d(5),
            in_flight: d(6),
            ignored: d(7),
            processed: d(8),
            critical_failed: d(9),
            permanent_failure: d(10),
            store_unavailable: d(11),
            shutting_down: d(12),
            best_effort_succeeded: load(&self.best_effort_succeeded),
            best_effort_retries: load(&self.best_effort_retries),
            best_effort_dead_lettered: load(&self.best_effort_dead_lettered),
            best_effort_overflow: load(&self.best_effort_overflow),
            best_effort_dropped: load(&self.best_effort_dropped),
            dead_letter_failures: load(&self.dead_letter_failures),
            best_effort_pending: 0,
            rejected_hook_panics: load(&self.rejected_hook_panics),
        }
    }
}
