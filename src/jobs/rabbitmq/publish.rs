//! Publishing one job message with a confirm, shared by the sink and the
//! worker's retries.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::RabbitError;
use crate::jobs::{JobMessage, SinkError};

/// How long a confirm may take before the publish counts as failed.
pub(super) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Content type of job messages.
const CONTENT_TYPE: &str = "application/vnd.hookgate.job";

/// An AMQP name, or [`RabbitError::NameTooLong`].
pub(super) fn name(text: &str) -> Result<ShortString, RabbitError> {
    ShortString::try_new(text).map_err(|_| RabbitError::NameTooLong {
        name: text.chars().take(32).collect(),
    })
}

/// The job key, or for a key over AMQP's 255 bytes its xxh3-128 digest:
/// `xxh3:<32 hex digits>`.
fn message_id(job: &JobMessage) -> ShortString {
    ShortString::try_new(job.key()).unwrap_or_else(|_| {
        let digest = twox_hash::XxHash3_128::oneshot(job.key().as_bytes());
        // 37 bytes: always a valid short string.
        ShortString::try_new(format!("xxh3:{digest:032x}")).unwrap_or_default()
    })
}

/// Connects to `uri` and opens a channel with publisher confirms.
pub(super) async fn confirm_channel(uri: &str) -> Result<(Connection, Channel), RabbitError> {
    let connect = Connection::connect(uri, ConnectionProperties::default());
    let connection = tokio::time::timeout(CONFIRM_TIMEOUT, connect)
        .await
        .map_err(|_| RabbitError::Connect("the connection did not open within 10 s".into()))?
        .map_err(|e| RabbitError::Connect(Box::new(e)))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| RabbitError::Connect(Box::new(e)))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| RabbitError::Connect(Box::new(e)))?;
    Ok((connection, channel))
}

/// Publishes `job` persistently to `exchange` with `routing_key`, mandatory
/// (an unroutable job is returned, not dropped), optionally expiring after
/// `expiration` (the retry queue's backoff), and waits for the confirm.
pub(super) async fn publish(
    channel: &Channel,
    exchange: &ShortString,
    routing_key: &ShortString,
    job: &JobMessage,
    expiration: Option<Duration>,
) -> Result<(), SinkError> {
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(message_id(job))
        .with_content_type(ShortString::from(CONTENT_TYPE));
    if let Some(after) = expiration {
        let millis = after.as_millis().max(1).to_string();
        properties = properties.with_expiration(ShortString::from(millis));
    }
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let payload = job.encode();
    let confirm = async {
        channel
            .basic_publish(
                exchange.clone(),
                routing_key.clone(),
                options,
                &payload,
                properties,
            )
            .await?
            .await
    };
    match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
        Err(_) => Err(SinkError::transient("RabbitMQ did not confirm the publish within 10 s")),
        Ok(Err(e)) => Err(SinkError::transient(e)),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(SinkError::permanent(format!(
            "RabbitMQ returned the job as unroutable: no queue is bound to exchange `{exchange}` with routing key `{routing_key}` (declare the topology first)"
        ))),
        Ok(Ok(Confirmation::Nack(_))) => Err(SinkError::transient("RabbitMQ refused the publish (nack)")),
        Ok(Ok(Confirmation::NotRequested)) => Err(SinkError::transient(
            "the channel has no publisher confirms: the publish is not known to be stored",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::verify::Identity;

    fn job(id: &str) -> JobMessage {
        let event = Event::new("github", Identity::new(id, "push"), &b"{}"[..]);
        JobMessage::new(&event, "notify", time::OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn the_message_id_is_the_key_or_its_digest_past_255_bytes() {
        assert_eq!(message_id(&job("d-1")).as_str(), "github:d-1:notify");
        let long = job(&"x".repeat(300));
        let id = message_id(&long);
        assert!(
            id.as_str().starts_with("xxh3:") && id.as_str().len() == 37,
            "{id}"
        );
        assert_ne!(id, message_id(&job(&"y".repeat(300))));
        assert_eq!(id, message_id(&long.clone().with_attempt(3)));
    }

    #[test]
    fn names_over_255_bytes_are_refused_not_panicked_on() {
        assert!(name(&"q".repeat(255)).is_ok());
        assert!(matches!(
            name(&"q".repeat(256)),
            Err(RabbitError::NameTooLong { name }) if name.len() == 32
        ));
    }
}
