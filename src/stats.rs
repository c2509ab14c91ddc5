//! Counters of what the pipeline did, read as a plain snapshot.

use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// Defines [`Stats`] and its field-by-field sum from one list of counters, so
/// a new counter cannot be left out of the sum.
macro_rules! counters {
    ($(#[$sdoc:meta])* ; $($(#[$doc:meta])* $name:ident,)*) => {
        $(#[$sdoc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Stats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl AddAssign for Stats {
            fn add_assign(&mut self, other: Stats) {
                $(self.$name = self.$name.saturating_add(other.$name);)*
            }
        }
    };
}

counters! {
/// A snapshot of the pipeline's counters since it was built; see
/// [`Pipeline::stats`](crate::Pipeline::stats).
///
/// Delivery counters add up to the number of `handle` calls that returned.
///
/// Snapshots of several instances add up (`+`, `+=`, or `.sum()` over an
/// iterator), field by field, into the counters of the whole service.
///
/// ```
/// use hookgate::Stats;
/// let mut a = Stats::default();
/// a.processed = 2;
/// let mut b = Stats::default();
/// b.processed = 3;
/// b.best_effort_pending = 1;
/// let total: Stats = [a, b].into_iter().sum();
/// assert_eq!((total.processed, total.best_effort_pending), (5, 1));
/// ```
    ;
    /// 413: bodies over the limit.
    too_large,
    /// 400: not a well-formed signed delivery (or no known provider).
    bad_request,
    /// 401: signature or timestamp did not hold.
    unauthorized,
    /// 503: the verifier could not get what it checks with in time (PayPal:
    /// the signing certificate's source failed or was too slow).
    verifier_unavailable,
    /// 400: authentic but unusable payloads.
    unusable,
    /// 200: duplicates of completed events (replays refused by the replay
    /// guard included; see `replays`).
    duplicate,
    /// 422: a completed event's id with a different body, under
    /// [`FingerprintPolicy::Strict`](crate::FingerprintPolicy::Strict).
    fingerprint_mismatch,
    /// 409: another attempt held the lease.
    in_flight,
    /// 200: no handler for the kind.
    ignored,
    /// 200: the provider's checks of the endpoint (Slack's
    /// `url_verification`), answered with what they asked for.
    handshake,
    /// 200: events the [ordering guard](crate::ordering) found older than
    /// one already processed for the same object; no handler ran.
    stale,
    /// 200: critical work succeeded.
    processed,
    /// 500: critical transient failures, timeouts, panics and lost leases.
    critical_failed,
    /// Critical permanent failures (200 + dead letter, or 500 per policy).
    permanent_failure,
    /// 503: the idempotency store failed.
    store_unavailable,
    /// 503: deliveries refused during shutdown.
    shutting_down,
    /// Best-effort handler runs that finally succeeded.
    best_effort_succeeded,
    /// Best-effort retries (attempts after the first).
    best_effort_retries,
    /// Best-effort work sent to the dead letter (exhausted, permanent,
    /// abandoned at shutdown, refused by the pending bound, or dropped).
    best_effort_dead_lettered,
    /// Best-effort work refused because the pipeline already held its maximum of
    /// pending jobs; sent to the dead letter at once
    /// ([`DeadLetterReason::Overflow`](crate::DeadLetterReason::Overflow)).
    best_effort_overflow,
    /// Best-effort work whose [`BestEffort`](crate::BestEffort) was dropped before it settled; sent to
    /// the dead letter at once
    /// ([`DeadLetterReason::BestEffortDropped`](crate::DeadLetterReason::BestEffortDropped)).
    best_effort_dropped,
    /// Entries the dead letter refused (critical or best-effort).
    dead_letter_failures,
    /// Gauge at the time of the snapshot: best-effort jobs registered and not
    /// settled (running, waiting for a permit, sleeping before a retry, or not
    /// started), plus entries waiting to be sent to the dead letter; each part
    /// is bounded by
    /// [`PipelineBuilder::max_pending_best_effort`](crate::PipelineBuilder::max_pending_best_effort).
    best_effort_pending,
    /// Calls of the [`on_rejected`](crate::PipelineBuilder::on_rejected) hook
    /// that panicked (the panic was caught; the delivery was answered as usual).
    rejected_hook_panics,
    /// Attempts that ran the critical work for a body other than the one the
    /// event's previous, failed or abandoned, attempt had (the provider
    /// re-rendered the event between deliveries). Not a delivery counter: each
    /// such delivery is also counted by how it ended.
    body_changed,
    /// Duplicates of a completed event with a different body, answered 200
    /// under [`FingerprintPolicy::Lenient`](crate::FingerprintPolicy::Lenient)
    /// and handed to the `on_rejected` hook; also counted in `duplicate`.
    duplicate_body_changed,
    /// Deliveries the [replay guard](crate::PipelineBuilder::replay_guard)
    /// refused: a body already registered to another delivery id or kind. They
    /// were answered 200 `Duplicate` and are counted in `duplicate` too.
    replays,
    /// Writes the [journal](crate::journal) took: delivery records and
    /// updates of their best-effort jobs.
    journal_written,
    /// Writes the journal did not take (it failed, was slower than the
    /// answer budget and then the background writer's timeout, or the queue
    /// was full). The deliveries were answered as usual; only their records
    /// are missing.
    journal_dropped,
}

impl Add for Stats {
    type Output = Stats;

    fn add(mut self, other: Stats) -> Stats {
        self += other;
        self
    }
}

impl Sum for Stats {
    fn sum<I: Iterator<Item = Stats>>(iter: I) -> Stats {
        iter.fold(Stats::default(), Add::add)
    }
}

impl Stats {
    /// Total deliveries handled.
    pub fn deliveries(&self) -> u64 {
        self.too_large
            + self.bad_request
            + self.unauthorized
            + self.verifier_unavailable
            + self.unusable
            + self.duplicate
            + self.fingerprint_mismatch
            + self.in_flight
            + self.ignored
            + self.handshake
            + self.stale
            + self.processed
            + self.critical_failed
            + self.permanent_failure
            + self.store_unavailable
            + self.shutting_down
    }
}
