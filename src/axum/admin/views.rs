//! The JSON shapes the admin routes answer, built from the journal's and the
//! health report's types (which stay free of serde).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::health::{AlertSeverity, HealthReport};
use crate::journal::{JournalPage, JournalRecord};
use crate::outcome::Outcome;
use crate::pipeline::BestEffortReport;

/// `GET /deliveries`: a page of records, newest first.
#[derive(Serialize)]
pub(super) struct PageView {
    records: Vec<RecordView>,
    /// The `cursor` of the next page; `null` on the last.
    next: Option<String>,
}

impl From<&JournalPage> for PageView {
    fn from(page: &JournalPage) -> Self {
        Self {
            records: page.records.iter().map(RecordView::from).collect(),
            next: page.next.map(|cursor| cursor.to_string()),
        }
    }
}

/// One record, without its body or headers.
#[derive(Serialize)]
pub(super) struct RecordView {
    id: String,
    received_at: Option<String>,
    received_at_ms: i64,
    provider: Option<String>,
    event_id: Option<String>,
    kind: Option<String>,
    delivery_id: Option<String>,
    status: &'static str,
    http_status: u16,
    attempt: Option<u64>,
    durations_ms: DurationsView,
    error: Option<String>,
    best_effort: Vec<JobView>,
    body_size: u64,
    body_digest: Option<String>,
    replay_of: Option<String>,
    resolved_at: Option<String>,
}

impl From<&JournalRecord> for RecordView {
    fn from(record: &JournalRecord) -> Self {
        let durations = &record.durations;
        Self {
            id: record.id.to_string(),
            received_at: rfc3339(record.received_at),
            received_at_ms: unix_millis(record.received_at),
            provider: record.provider.as_deref().map(str::to_owned),
            event_id: record.event_id.clone(),
            kind: record.kind.clone(),
            delivery_id: record.delivery_id.clone(),
            status: record.status.as_str(),
            http_status: record.http_status,
            attempt: record.attempt,
            durations_ms: DurationsView {
                verify: durations.verify.map(millis),
                claim: durations.claim.map(millis),
                critical: durations.critical.map(millis),
                total: durations.total.map(millis),
            },
            error: record.error.clone(),
            best_effort: record
                .best_effort
                .iter()
                .map(|job| JobView {
                    handler: job.handler.clone(),
                    attempts: job.attempts,
                    state: job.state.as_str(),
                })
                .collect(),
            body_size: record.body_size,
            body_digest: record.body_digest.map(hex::encode),
            replay_of: record.replay_of.map(|id| id.to_string()),
            resolved_at: record.resolved_at.and_then(rfc3339),
        }
    }
}

#[derive(Serialize)]
struct DurationsView {
    verify: Option<f64>,
    claim: Option<f64>,
    critical: Option<f64>,
    total: Option<f64>,
}

#[derive(Serialize)]
struct JobView {
    handler: String,
    attempts: u32,
    state: &'static str,
}

/// `GET /deliveries/{id}`: one record with its allowlisted headers and its
/// body: as text when it is UTF-8 (`body_encoding: "utf8"`), otherwise
/// base64 (`"base64"`); both `null` when the body was not kept.
#[derive(Serialize)]
pub(super) struct RecordDetailView {
    #[serde(flatten)]
    record: RecordView,
    replayable: bool,
    headers: Vec<[String; 2]>,
    body_encoding: Option<&'static str>,
    body: Option<String>,
}

impl From<&JournalRecord> for RecordDetailView {
    fn from(record: &JournalRecord) -> Self {
        let (body_encoding, body) = match &record.body {
            None => (None, None),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => (Some("utf8"), Some(text.to_owned())),
                Err(_) => (
                    Some("base64"),
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                ),
            },
        };
        Self {
            record: RecordView::from(record),
            replayable: record.is_replayable(),
            headers: record
                .headers
                .iter()
                .map(|(name, value)| [name.to_owned(), value.to_owned()])
                .collect(),
            body_encoding,
            body,
        }
    }
}

/// `POST /deliveries/{id}/replay`: how the replay ended.
#[derive(Serialize)]
pub(super) struct ReplayView {
    replay_of: String,
    journal_id: Option<String>,
    forced: bool,
    http_status: u16,
    outcome: &'static str,
    provider: Option<String>,
    event_id: Option<String>,
    event_kind: Option<String>,
}

impl ReplayView {
    pub(super) fn new(
        replay_of: crate::journal::JournalId,
        forced: bool,
        outcome: &Outcome,
    ) -> Self {
        Self {
            replay_of: replay_of.to_string(),
            journal_id: outcome.journal_id.map(|id| id.to_string()),
            forced,
            http_status: outcome.status(),
            outcome: outcome.kind.name(),
            provider: outcome.provider.as_deref().map(str::to_owned),
            event_id: outcome.event_id.clone(),
            event_kind: outcome.event_kind.clone(),
        }
    }
}

/// `POST /dead-letter/{id}/retry`: the jobs started again, and with
/// `wait=true` how they ended.
#[derive(Serialize)]
pub(super) struct RetryView {
    pub(super) journal_id: String,
    pub(super) jobs: usize,
    pub(super) refused: usize,
    pub(super) report: Option<ReportView>,
}

#[derive(Serialize)]
pub(super) struct ReportView {
    succeeded: usize,
    dead_lettered: usize,
    dead_letter_refused: usize,
    abandoned: usize,
    refused: usize,
}

impl From<BestEffortReport> for ReportView {
    fn from(report: BestEffortReport) -> Self {
        Self {
            succeeded: report.succeeded,
            dead_lettered: report.dead_lettered,
            dead_letter_refused: report.dead_letter_refused,
            abandoned: report.abandoned,
            refused: report.refused,
        }
    }
}

/// `GET /health`: the report.
#[derive(Serialize)]
pub(super) struct HealthView {
    status: &'static str,
    window_secs: u64,
    deliveries: u64,
    verified: u64,
    success_rate: Option<f64>,
    duplicate_rate: Option<f64>,
    critical_failures: u64,
    in_flight: u64,
    oldest_unsettled_ms: Option<f64>,
    processing_ms: Option<PercentilesView>,
    best_effort_ended: u64,
    dead_letter_rate: Option<f64>,
    journal_drops: u64,
    alerts: Vec<AlertView>,
}

#[derive(Serialize)]
struct PercentilesView {
    p50: f64,
    p95: f64,
    p99: f64,
}

#[derive(Serialize)]
struct AlertView {
    check: &'static str,
    severity: &'static str,
    measured: String,
    recommendation: &'static str,
}

impl From<&HealthReport> for HealthView {
    fn from(report: &HealthReport) -> Self {
        Self {
            status: report.status.as_str(),
            window_secs: report.window.as_secs(),
            deliveries: report.deliveries,
            verified: report.verified,
            success_rate: report.success_rate.filter(|r| r.is_finite()),
            duplicate_rate: report.duplicate_rate.filter(|r| r.is_finite()),
            critical_failures: report.critical_failures,
            in_flight: report.in_flight,
            oldest_unsettled_ms: report.oldest_unsettled.map(millis),
            processing_ms: report.processing.map(|[p50, p95, p99]| PercentilesView {
                p50: millis(p50),
                p95: millis(p95),
                p99: millis(p99),
            }),
            best_effort_ended: report.best_effort_ended,
            dead_letter_rate: report.dead_letter_rate.filter(|r| r.is_finite()),
            journal_drops: report.journal_drops,
            alerts: report
                .alerts
                .iter()
                .map(|alert| AlertView {
                    check: alert.check,
                    severity: match alert.severity {
                        AlertSeverity::Warning => "warning",
                        AlertSeverity::Critical => "critical",
                    },
                    measured: alert.measured.clone(),
                    recommendation: alert.recommendation,
                })
                .collect(),
        }
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Milliseconds since the Unix epoch (negative before it), saturating.
fn unix_millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |m| -m),
    }
}

/// RFC 3339 in UTC; `None` for a time RFC 3339 cannot show (before year 0 or
/// after 9999, which only a corrupt record holds).
fn rfc3339(at: SystemTime) -> Option<String> {
    let nanos = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).ok()?,
        Err(before) => -i128::try_from(before.duration().as_nanos()).ok()?,
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_both_forms_and_never_panic() {
        let at = UNIX_EPOCH + Duration::from_millis(1_769_860_800_250);
        assert_eq!(rfc3339(at).as_deref(), Some("2026-01-31T12:00:00.25Z"));
        assert_eq!(unix_millis(at), 1_769_860_800_250);
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far), None);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_millis(5)), -5);
    }
}
