//! [`RabbitTopology`]: the exchanges and queues jobs go through.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::publish::{confirm_channel, name};
use super::RabbitError;

/// The names of what jobs go through, and how to declare them (everything
/// durable):
///
/// | name | what | default |
/// |---|---|---|
/// | `exchange` | direct exchange the sink publishes to | `{name}` |
/// | `queue` | work queue bound to it with `routing_key`; rejected messages go to the dead-letter exchange | `{name}.jobs` |
/// | `routing_key` | key binding the work queue | `job` |
/// | `retry_queue` | where a job waits out its backoff (per-message TTL), then returns through the exchange to the work queue | `{name}.retry` |
/// | `dead_letter_exchange` | fanout exchange of jobs that cannot succeed | `{name}.dead` |
/// | `dead_letter_queue` | durable queue bound to it, for you to read | `{name}.dead` |
///
/// ```
/// use hookgate::jobs::rabbitmq::RabbitTopology;
/// let topology = RabbitTopology::new("hookgate")?;
/// assert_eq!(topology.queue(), "hookgate.jobs");
/// assert_eq!(topology.dead_letter_queue(), "hookgate.dead");
/// assert!(RabbitTopology::new(&"x".repeat(250)).is_err()); // AMQP names stop at 255 bytes
/// # Ok::<(), hookgate::jobs::rabbitmq::RabbitError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitTopology {
    pub(super) exchange: ShortString,
    pub(super) queue: ShortString,
    pub(super) routing_key: ShortString,
    pub(super) retry_queue: ShortString,
    pub(super) dead_letter_exchange: ShortString,
    pub(super) dead_letter_queue: ShortString,
}

impl RabbitTopology {
    /// The topology named after `name` (see the table).
    ///
    /// # Errors
    /// [`RabbitError::NameTooLong`] when a derived name passes 255 bytes.
    pub fn new(base: &str) -> Result<Self, RabbitError> {
        Ok(Self {
            exchange: name(base)?,
            queue: name(&format!("{base}.jobs"))?,
            routing_key: name("job")?,
            retry_queue: name(&format!("{base}.retry"))?,
            dead_letter_exchange: name(&format!("{base}.dead"))?,
            dead_letter_queue: name(&format!("{base}.dead"))?,
        })
    }

    /// The exchange jobs are published to.
    pub fn exchange(&self) -> &str {
        self.exchange.as_str()
    }

    /// The work queue workers consume.
    pub fn queue(&self) -> &str {
        self.queue.as_str()
    }

    /// The queue where retried jobs wait out their backoff.
    pub fn retry_queue(&self) -> &str {
        self.retry_queue.as_str()
    }

    /// The dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> &str {
        self.dead_letter_exchange.as_str()
    }

    /// The queue holding dead-lettered jobs.
    pub fn dead_letter_queue(&self) -> &str {
        self.dead_letter_queue.as_str()
    }

    /// Declares every exchange, queue and binding on `channel` (idempotent:
    /// declaring what exists with the same settings does nothing).
    ///
    /// # Errors
    /// [`RabbitError::Declare`] naming what the broker refused.
    pub async fn declare(&self, channel: &Channel) -> Result<(), RabbitError> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let refused = |name: &ShortString| {
            let name = name.to_string();
            move |e: lapin::Error| RabbitError::Declare {
                name,
                source: Box::new(e),
            }
        };
        channel
            .exchange_declare(
                self.exchange.clone(),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await
            .map_err(refused(&self.exchange))?;
        channel
            .exchange_declare(
                self.dead_letter_exchange.clone(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await
            .map_err(refused(&self.dead_letter_exchange))?;
        let mut work = FieldTable::default();
        work.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_letter_exchange),
        );
        channel
            .queue_declare(self.queue.clone(), QueueDeclareOptions::durable(), work)
            .await
            .map_err(refused(&self.queue))?;
        channel
            .queue_bind(
                self.queue.clone(),
                self.exchange.clone(),
                self.routing_key.clone(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(refused(&self.queue))?;
        let mut retry = FieldTable::default();
        retry.insert("x-dead-letter-exchange".into(), long_string(&self.exchange));
        retry.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&self.routing_key),
        );
        channel
            .queue_declare(
                self.retry_queue.clone(),
                QueueDeclareOptions::durable(),
                retry,
            )
            .await
            .map_err(refused(&self.retry_queue))?;
        channel
            .queue_declare(
                self.dead_letter_queue.clone(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .map_err(refused(&self.dead_letter_queue))?;
        channel
            .queue_bind(
                self.dead_letter_queue.clone(),
                self.dead_letter_exchange.clone(),
                ShortString::default(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(refused(&self.dead_letter_queue))?;
        Ok(())
    }

    /// Connects to `uri`, declares everything ([`RabbitTopology::declare`])
    /// and closes the connection.
    ///
    /// # Errors
    /// [`RabbitError::Connect`] or [`RabbitError::Declare`].
    pub async fn declare_at(&self, uri: &str) -> Result<(), RabbitError> {
        let (connection, channel) = confirm_channel(uri).await?;
        let declared = self.declare(&channel).await;
        let _ = connection.close(200, ShortString::from("declared")).await;
        declared
    }
}

fn long_string(name: &ShortString) -> AMQPValue {
    AMQPValue::LongString(LongString::from(name.as_str()))
}
