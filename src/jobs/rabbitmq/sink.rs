//! [`RabbitSink`]: persistent, confirmed publishes with the job key as
//! `message_id`.

use std::fmt;

use async_trait::async_trait;
use lapin::types::ShortString;
use lapin::{Channel, Connection};
use tokio::sync::Mutex;

use super::publish::{confirm_channel, publish};
use super::RabbitTopology;
use crate::jobs::{JobMessage, JobSink, SinkError};

/// A [`JobSink`] that publishes jobs to a [`RabbitTopology`]'s exchange.
///
/// Each job goes out in the wire encoding ([`JobMessage::encode`]) as a
/// persistent message (`delivery_mode` 2) whose `message_id` is the job key
/// (or `xxh3:<digest>` of a key over AMQP's 255 bytes), mandatory, on a
/// channel with publisher confirms: `send` returns `Ok` only once RabbitMQ
/// confirmed the message, which then survives a broker restart in the
/// durable work queue. RabbitMQ does not deduplicate publishes: a job sent
/// twice is delivered twice, and the worker's store runs it once.
///
/// The sink connects on first use and reconnects after any failure. Errors:
/// a job returned as unroutable (no queue bound: declare the topology) is
/// [`SinkError::Permanent`]; no connection, a nack, or a confirm that did
/// not come within 10 s is [`SinkError::Transient`].
///
/// ```no_run
/// use hookgate::jobs::rabbitmq::{RabbitSink, RabbitTopology};
/// use hookgate::jobs::{JobMessage, JobSink};
/// # async fn demo(job: JobMessage) -> Result<(), Box<dyn std::error::Error>> {
/// let uri = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// let topology = RabbitTopology::new("hookgate")?;
/// topology.declare_at(uri).await?;
/// let sink = RabbitSink::new(uri, &topology);
/// match sink.send(&job).await {
///     Ok(()) => {}                                  // confirmed: forget the job
///     Err(e) if e.is_transient() => { /* keep it, send again later */ }
///     Err(e) => return Err(e.into()),               // dead-letter it
/// }
/// # Ok(()) }
/// ```
pub struct RabbitSink {
    uri: String,
    exchange: ShortString,
    routing_key: ShortString,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl RabbitSink {
    /// A sink publishing to `topology`'s exchange on the broker at `uri`
    /// (`amqp://user:password@host:5672/%2f`). Nothing connects until the
    /// first send.
    pub fn new(uri: impl Into<String>, topology: &RabbitTopology) -> Self {
        Self {
            uri: uri.into(),
            exchange: topology.exchange.clone(),
            routing_key: topology.routing_key.clone(),
            channel: Mutex::new(None),
        }
    }

    /// The open channel, connecting first if there is none.
    async fn channel(&self) -> Result<Channel, SinkError> {
        let mut held = self.channel.lock().await;
        if let Some((connection, channel)) = held.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *held = None;
        let (connection, channel) = confirm_channel(&self.uri)
            .await
            .map_err(SinkError::transient)?;
        *held = Some((connection, channel.clone()));
        Ok(channel)
    }
}

#[async_trait]
impl JobSink for RabbitSink {
    async fn send(&self, job: &JobMessage) -> Result<(), SinkError> {
        let channel = self.channel().await?;
        let sent = publish(&channel, &self.exchange, &self.routing_key, job, None).await;
        if matches!(&sent, Err(e) if e.is_transient()) {
            // Start over on a fresh connection next time.
            let mut held = self.channel.lock().await;
            if held.as_ref().is_some_and(|(_, c)| c.id() == channel.id()) {
                *held = None;
            }
        }
        sent
    }
}

impl fmt::Debug for RabbitSink {
    /// The exchange and routing key; never the URI, which holds the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitSink")
            .field("exchange", &self.exchange.as_str())
            .field("routing_key", &self.routing_key.as_str())
            .finish_non_exhaustive()
    }
}
