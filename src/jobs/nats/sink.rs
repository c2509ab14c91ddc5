//! [`NatsSink`]: JetStream publish with the job key as `Nats-Msg-Id`.

use std::fmt;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use async_trait::async_trait;

use crate::jobs::{JobMessage, JobSink, SinkError};

/// A [`JobSink`] that publishes jobs to a JetStream subject.
///
/// Each job goes out in the wire encoding ([`JobMessage::encode`]) with its
/// [key](JobMessage::key) as `Nats-Msg-Id`, and `send` returns only once
/// JetStream acknowledged the publish: the job is then stored in the stream.
/// A second publish of the same key within the stream's duplicate window is
/// acknowledged without being stored again, so a sender may retry freely.
///
/// Errors: a job larger than the server's `max_payload` is
/// [`SinkError::Permanent`]; everything else (no connection, no stream yet,
/// an acknowledgement that did not come in time) is [`SinkError::Transient`].
///
/// ```no_run
/// use hookgate::jobs::nats::{async_nats, NatsSink};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let jetstream = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
/// let sink = NatsSink::new(jetstream, "hookgate.jobs");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsSink {
    jetstream: Context,
    subject: String,
}

impl NatsSink {
    /// Publishes to `subject` (a subject of a stream made with
    /// [`NatsStream`](super::NatsStream), or your own).
    pub fn new(jetstream: Context, subject: impl Into<String>) -> Self {
        Self {
            jetstream,
            subject: subject.into(),
        }
    }

    /// The subject jobs are published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

#[async_trait]
impl JobSink for NatsSink {
    async fn send(&self, job: &JobMessage) -> Result<(), SinkError> {
        let publish = PublishMessage::build()
            .payload(job.encode().into())
            .message_id(job.key());
        let ack = self
            .jetstream
            .send_publish(self.subject.clone(), publish)
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => SinkError::permanent(e),
                _ => SinkError::transient(e),
            })?;
        ack.await.map_err(SinkError::transient)?;
        Ok(())
    }
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}
