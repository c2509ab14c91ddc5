//! Best-effort jobs through RabbitMQ (feature `rabbitmq`, lapin).
//!
//! - [`RabbitTopology`] names and declares what the jobs go through: a
//!   durable direct exchange, the durable work queue bound to it, a retry
//!   queue whose messages wait out their backoff and then return to the work
//!   queue, and a dead-letter exchange with its queue.
//! - [`RabbitSink`] publishes each [`JobMessage`](super::JobMessage) as a
//!   persistent message (`delivery_mode` 2) with the job key as `message_id`,
//!   on a channel with publisher confirms: `send` returns once the broker
//!   confirmed it.
//! - [`RabbitWorker`] consumes the work queue with manual acknowledgements
//!   and runs each job through a [`JobRunner`](super::JobRunner):
//!   acknowledged only after the handler succeeded, republished to the retry
//!   queue for a retry, rejected into the dead-letter queue when exhausted,
//!   deduplicated on the job key in the runner's store.
//!
//! ```no_run
//! use hookgate::jobs::rabbitmq::{RabbitSink, RabbitTopology, RabbitWorker};
//! use hookgate::jobs::{JobMessage, JobRunner, JobSink};
//! use hookgate::{handler_fn, Event, HandlerError, Identity, MemoryStore, Registry};
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let uri = "amqp://guest:guest@127.0.0.1:5672/%2f";
//! let topology = RabbitTopology::new("hookgate")?;
//! topology.declare_at(uri).await?;
//!
//! // Producer side (an outbox relay does this for you).
//! let sink = RabbitSink::new(uri, &topology);
//! let event = Event::new("stripe", Identity::new("evt_1", "invoice.paid"), &b"{}"[..]);
//! sink.send(&JobMessage::new(&event, "email", time::OffsetDateTime::now_utc())).await?;
//!
//! // Worker side, on any machine: the same best-effort handlers, a shared store.
//! let mut registry = Registry::new();
//! registry.best_effort("stripe", "invoice.*", "email", handler_fn(|_| async { Ok::<(), HandlerError>(()) }));
//! let runner = JobRunner::builder(registry, MemoryStore::new()).build()?;
//! let worker = RabbitWorker::builder(uri, &topology, runner).build();
//! worker.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod publish;
mod sink;
mod topology;
mod worker;

/// The lapin crate hookgate is built with.
pub use lapin;

pub use sink::RabbitSink;
pub use topology::RabbitTopology;
pub use worker::{RabbitWorker, RabbitWorkerBuilder};

use crate::handler::BoxError;

/// RabbitMQ could not be reached or refused the topology.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RabbitError {
    /// A name longer than AMQP's 255-byte limit.
    #[error("`{name}…` is longer than AMQP's limit of 255 bytes for names")]
    NameTooLong {
        /// The first 32 characters of the name.
        name: String,
    },
    /// Connecting or opening a channel failed.
    #[error("could not connect to RabbitMQ: {0}")]
    Connect(#[source] BoxError),
    /// Declaring an exchange, a queue or a binding failed (an existing one
    /// with other settings?).
    #[error("could not declare `{name}`: {source}")]
    Declare {
        /// The exchange or queue.
        name: String,
        /// What the broker said.
        #[source]
        source: BoxError,
    },
}
