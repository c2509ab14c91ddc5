//! The live counters behind [`Stats`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::monitor::Monitor;
use crate::outcome::OutcomeKind;
use crate::stats::Stats;

const KINDS: usize = 16;

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(super) struct Recorder {
    deliveries: [AtomicU64; KINDS],
    pub(super) best_effort_succeeded: AtomicU64,
    pub(super) best_effort_retries: AtomicU64,
    pub(super) best_effort_dead_lettered: AtomicU64,
    pub(super) best_effort_overflow: AtomicU64,
    pub(super) best_effort_dropped: AtomicU64,
    pub(super) dead_letter_failures: AtomicU64,
    pub(super) rejected_hook_panics: AtomicU64,
    pub(super) body_changed: AtomicU64,
    pub(super) duplicate_body_changed: AtomicU64,
    pub(super) replays: AtomicU64,
    pub(super) journal_written: AtomicU64,
    pub(super) journal_dropped: AtomicU64,
    /// The recent-window counters behind the health report.
    pub(super) monitor: Monitor,
}

fn slot(kind: &OutcomeKind) -> usize {
    match kind {
        OutcomeKind::TooLarge { .. } => 0,
        OutcomeKind::VerificationFailed(err) if err.status() == 401 => 2,
        OutcomeKind::VerificationFailed(err) if err.status() == 503 => 15,
        OutcomeKind::VerificationFailed(_) => 1,
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
        OutcomeKind::Stale { .. } => 13,
        OutcomeKind::Handshake(_) => 14,
    }
}

impl Recorder {
    pub(super) fn delivery(&self, kind: &OutcomeKind) {
        self.deliveries[slot(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Stats {
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
            stale: d(13),
            handshake: d(14),
            verifier_unavailable: d(15),
            best_effort_succeeded: load(&self.best_effort_succeeded),
            best_effort_retries: load(&self.best_effort_retries),
            best_effort_dead_lettered: load(&self.best_effort_dead_lettered),
            best_effort_overflow: load(&self.best_effort_overflow),
            best_effort_dropped: load(&self.best_effort_dropped),
            dead_letter_failures: load(&self.dead_letter_failures),
            best_effort_pending: 0,
            rejected_hook_panics: load(&self.rejected_hook_panics),
            body_changed: load(&self.body_changed),
            duplicate_body_changed: load(&self.duplicate_body_changed),
            replays: load(&self.replays),
            journal_written: load(&self.journal_written),
            journal_dropped: load(&self.journal_dropped),
        }
    }
}
