//! [`NatsDeadLetter`]: dead-lettered jobs published to a JetStream subject.

use std::fmt;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use async_trait::async_trait;
use time::OffsetDateTime;

use crate::dead_letter::{DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterReason};
use crate::jobs::JobMessage;

/// Header naming why the job was dead-lettered: `retries_exhausted`,
/// `permanent`, `critical_permanent`, `shut_down`, `overflow`,
/// `best_effort_dropped`.
pub const REASON_HEADER: &str = "Hookgate-Dead-Letter-Reason";

/// Header holding the last error's message (line breaks replaced by spaces,
/// at most 1024 bytes), when there was one.
pub const ERROR_HEADER: &str = "Hookgate-Dead-Letter-Error";

/// A [`DeadLetter`] that publishes each entry to a JetStream subject (a
/// stream of its own, e.g. made with [`NatsStream`](super::NatsStream)), so
/// exhausted jobs stay in NATS beside the work stream, where you can read,
/// inspect and republish them.
///
/// Each entry is a [`JobMessage`] in the wire encoding (its attempt is the
/// entry's attempt count), with [`REASON_HEADER`] and [`ERROR_HEADER`], and
/// `Nats-Msg-Id` `{job key}:dead`, so an entry sent twice (a worker that
/// crashed after sending it) is stored once within the duplicate window.
/// `send` returns `Ok` only once JetStream acknowledged the publish; until
/// then the worker keeps the job's message.
///
/// ```no_run
/// use hookgate::jobs::nats::{async_nats, NatsDeadLetter, NatsStream};
/// use hookgate::jobs::JobRunner;
/// use hookgate::{MemoryStore, Registry};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let jetstream = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
/// NatsStream::new("HOOKGATE_DEAD", "hookgate.dead").create_or_get(&jetstream).await?;
/// let runner = JobRunner::builder(Registry::new(), MemoryStore::new())
///     .dead_letter(NatsDeadLetter::new(jetstream, "hookgate.dead"))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsDeadLetter {
    jetstream: Context,
    subject: String,
}

impl NatsDeadLetter {
    /// Publishes entries to `subject`.
    pub fn new(jetstream: Context, subject: impl Into<String>) -> Self {
        Self {
            jetstream,
            subject: subject.into(),
        }
    }
}

/// The reason's header value.
fn reason_name(reason: DeadLetterReason) -> &'static str {
    match reason {
        DeadLetterReason::RetriesExhausted => "retries_exhausted",
        DeadLetterReason::Permanent => "permanent",
        DeadLetterReason::CriticalPermanent => "critical_permanent",
        DeadLetterReason::ShutDown => "shut_down",
        DeadLetterReason::Overflow => "overflow",
        DeadLetterReason::BestEffortDropped => "best_effort_dropped",
    }
}

/// `text` as one header line of at most 1024 bytes.
fn header_text(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > 1024 {
        let mut end = 1024;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

#[async_trait]
impl DeadLetter for NatsDeadLetter {
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
        let job = JobMessage::new(&entry.event, &entry.handler, OffsetDateTime::now_utc())
            .with_attempt(entry.attempts);
        let mut publish = PublishMessage::build()
            .payload(job.encode().into())
            .message_id(format!("{}:dead", job.key()))
            .header(REASON_HEADER, reason_name(entry.reason));
        if let Some(error) = &entry.error {
            publish = publish.header(ERROR_HEADER, header_text(&error.to_string()).as_str());
        }
        let ack = self
            .jetstream
            .send_publish(self.subject.clone(), publish)
            .await
            .map_err(DeadLetterError::new)?;
        ack.await.map_err(DeadLetterError::new)?;
        Ok(())
    }
}

impl fmt::Debug for NatsDeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDeadLetter")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_one_bounded_line() {
        assert_eq!(header_text("smtp\r\ntimeout"), "smtp  timeout");
        let long = "é".repeat(600);
        let line = header_text(&long);
        assert!(line.len() <= 1024 && line.chars().all(|c| c == 'é'));
    }

    #[test]
    fn every_reason_has_a_stable_name() {
        assert_eq!(
            reason_name(DeadLetterReason::RetriesExhausted),
            "retries_exhausted"
        );
        assert_eq!(reason_name(DeadLetterReason::Permanent), "permanent");
        assert_eq!(
            reason_name(DeadLetterReason::BestEffortDropped),
            "best_effort_dropped"
        );
    }
}
