//! What the pipeline tells `tracing` (feature `tracing`) and `metrics`
//! (feature `metrics`): one span per delivery and per handler run, a warning
//! for every answer someone should look at, and counters, histograms and
//! gauges. Without the features every function here is a no-op the compiler
//! removes. Spans and metrics carry names, ids, kinds, statuses and
//! durations: never a body byte, a header value, a secret or a signature.
//!
//! Metric names (labels in braces):
//! - `hookgate_deliveries_total{provider, outcome}` (counter; `outcome` is
//!   [`OutcomeKind::name`](crate::OutcomeKind::name));
//! - `hookgate_delivery_duration_seconds{provider}`,
//!   `hookgate_verify_duration_seconds{provider}`,
//!   `hookgate_claim_duration_seconds{provider}`,
//!   `hookgate_critical_duration_seconds{provider}` (histograms);
//! - `hookgate_in_flight` (gauge: attempts holding a claim);
//! - `hookgate_best_effort_pending` (gauge: best-effort jobs registered and
//!   not ended);
//! - `hookgate_best_effort_jobs_total{handler, result}` (counter; `result` is
//!   `succeeded` or `dead_lettered`);
//! - `hookgate_journal_dropped_total` (counter).

use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "metrics")]
mod keys;

use super::journaling::Delivery;
use crate::outcome::Outcome;

/// The span of one delivery (a `tracing::Span` with the feature, nothing
/// without it).
#[cfg(feature = "tracing")]
pub(super) type Span = tracing::Span;

/// The span of one delivery (a `tracing::Span` with the feature, nothing
/// without it).
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Clone)]
pub(super) struct Span;

/// Whether steps must be timed for tracing or metrics.
pub(super) const TIMES_STEPS: bool = cfg!(any(feature = "tracing", feature = "metrics"));

/// Opens the span of a delivery to `provider` (if detected); `replay_of` for
/// a replay.
pub(super) fn delivery_span(provider: Option<&str>, replay: bool) -> Span {
    #[cfg(feature = "tracing")]
    {
        tracing::info_span!(
            "hookgate.delivery",
            provider = provider.unwrap_or("unknown"),
            replay,
            event_id = tracing::field::Empty,
            kind = tracing::field::Empty,
            status = tracing::field::Empty,
            outcome = tracing::field::Empty,
            attempt = tracing::field::Empty,
            journal_id = tracing::field::Empty,
            verify_us = tracing::field::Empty,
            claim_us = tracing::field::Empty,
            critical_us = tracing::field::Empty,
            total_us = tracing::field::Empty,
        )
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (provider, replay);
        Span
    }
}

/// Runs `future` inside `span`. The future is pinned where the caller built
/// it (a delivery's future is large: moving it into a wrapper would copy it).
pub(super) async fn in_span<F: Future>(span: &Span, future: Pin<&mut F>) -> F::Output {
    #[cfg(feature = "tracing")]
    {
        use tracing::Instrument;
        future.instrument(span.clone()).await
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = span;
        future.await
    }
}

/// Runs one handler's `future` inside a span of its own.
pub(super) async fn handler<F: Future>(
    name: &str,
    role: &'static str,
    attempt: u32,
    future: F,
) -> F::Output {
    #[cfg(feature = "tracing")]
    {
        use tracing::Instrument;
        let span = tracing::info_span!("hookgate.handler", handler = name, role, attempt);
        future.instrument(span).await
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (name, role, attempt);
        future.await
    }
}

/// Records how a delivery ended: the span's fields, a warning for answers
/// that need a look (every 5xx, and every 4xx but 409, which a later
/// delivery settles), and the metrics.
pub(super) fn delivered(span: &Span, delivery: &Delivery<'_>, outcome: &Outcome) {
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = (span, delivery, outcome);
    #[cfg(all(feature = "metrics", not(feature = "tracing")))]
    let _ = span;
    #[cfg(feature = "tracing")]
    {
        let micros = |d: Option<std::time::Duration>| d.map(|d| d.as_micros() as u64);
        let total = delivery.total.unwrap_or_else(|| delivery.started.elapsed());
        span.record("status", outcome.status());
        span.record("outcome", outcome.kind.name());
        if let Some(id) = &outcome.event_id {
            span.record("event_id", id.as_str());
        }
        if let Some(kind) = &outcome.event_kind {
            span.record("kind", kind.as_str());
        }
        if let Some(attempt) = delivery.attempt {
            span.record("attempt", attempt);
        }
        if let Some(id) = outcome.journal_id {
            span.record("journal_id", tracing::field::display(id));
        }
        if let Some(us) = micros(delivery.verify) {
            span.record("verify_us", us);
        }
        if let Some(us) = micros(delivery.claim) {
            span.record("claim_us", us);
        }
        if let Some(us) = micros(outcome.critical_elapsed) {
            span.record("critical_us", us);
        }
        span.record("total_us", total.as_micros() as u64);
        let status = outcome.status();
        if status >= 500 || (400..500).contains(&status) && status != 409 {
            let _entered = span.enter();
            let reason = super::attempt::describe(&outcome.kind);
            tracing::warn!(
                status,
                outcome = outcome.kind.name(),
                reason = reason.as_deref().unwrap_or(""),
                "webhook delivery answered {status}"
            );
        }
    }
    #[cfg(feature = "metrics")]
    {
        let provider = delivery.provider.map_or("unknown", |p| &*p.name);
        let keys = keys::delivery_keys(provider, outcome.kind.name());
        keys::count(&keys.deliveries, 1);
        let durations = [
            delivery.total.or_else(|| Some(delivery.started.elapsed())),
            delivery.verify,
            delivery.claim,
            outcome.critical_elapsed,
        ];
        for (key, duration) in keys.seconds.iter().zip(durations) {
            if let Some(duration) = duration {
                keys::record(key, duration.as_secs_f64());
            }
        }
    }
}

/// An attempt took (`+1`) or gave up (`-1`) its claim.
pub(super) fn in_flight(delta: f64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("hookgate_in_flight").increment(delta);
    #[cfg(not(feature = "metrics"))]
    let _ = delta;
}

/// Best-effort jobs were registered.
pub(super) fn best_effort_registered(jobs: usize) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("hookgate_best_effort_pending").increment(jobs as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = jobs;
}

/// A registered best-effort job ended.
pub(super) fn best_effort_ended(handler: &str, succeeded: bool) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("hookgate_best_effort_pending").decrement(1.0);
        let result = if succeeded {
            "succeeded"
        } else {
            "dead_lettered"
        };
        keys::count(keys::job_key(handler, result), 1);
    }
    #[cfg(feature = "tracing")]
    if !succeeded {
        tracing::warn!(handler, "best-effort job ended in the dead letter");
    }
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = (handler, succeeded);
}

/// Journal writes were dropped.
pub(super) fn journal_dropped(writes: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("hookgate_journal_dropped_total").increment(writes);
    #[cfg(feature = "tracing")]
    tracing::warn!(
        writes,
        "journal writes dropped: the journal is down, slow or its queue is full"
    );
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = writes;
}
