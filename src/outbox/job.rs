//! One best-effort job as the outbox stores it, and as a relay claims it.

use std::sync::Arc;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::event::Event;
use crate::verify::Identity;

/// A job to enqueue: one best-effort handler for one event.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// `{claimed key}/{handler}`: unique per job.
    pub(crate) job_key: String,
    pub(crate) handler: Arc<str>,
    pub(crate) provider: String,
    pub(crate) event_id: String,
    pub(crate) kind: String,
    /// When the event happened, in Unix milliseconds.
    pub(crate) occurred_at_ms: Option<i64>,
    pub(crate) body: Bytes,
}

impl Job {
    /// The job of `handler` for `event`, claimed under `key`.
    pub(crate) fn new(key: &str, handler: Arc<str>, event: &Event) -> Self {
        Self {
            job_key: job_key(key, &handler),
            provider: event.provider().to_owned(),
            event_id: event.id().to_owned(),
            kind: event.kind().to_owned(),
            occurred_at_ms: event
                .occurred_at()
                .and_then(|at| i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()),
            body: event.body().clone(),
            handler,
        }
    }
}

/// The key of the job of `handler` for the event claimed under `key`.
pub(crate) fn job_key(key: &str, handler: &str) -> String {
    format!("{key}/{handler}")
}

/// A job a relay claimed: its key and claim token (which fence its settle),
/// the attempt this claim is, and the event rebuilt from its row.
#[derive(Debug, Clone)]
pub(crate) struct ClaimedJob {
    pub(crate) job_key: String,
    pub(crate) handler: String,
    pub(crate) event: Event,
    /// This attempt's number (1 for the first).
    pub(crate) attempt: u32,
    pub(crate) claim_token: i64,
}

impl ClaimedJob {
    /// A claimed job from the columns of its row.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_row(
        job_key: String,
        handler: String,
        provider: String,
        event_id: String,
        kind: String,
        occurred_at_ms: Option<i64>,
        body: Vec<u8>,
        attempt: i64,
        claim_token: i64,
    ) -> Self {
        let mut identity = Identity::new(event_id, kind);
        identity.occurred_at = occurred_at_ms.and_then(|ms| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        });
        Self {
            job_key,
            handler,
            event: Event::new(provider, identity, body),
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            claim_token,
        }
    }
}
