//! Best-effort jobs through NATS JetStream (feature `nats`, async-nats).
//!
//! - [`NatsStream`] creates (or finds) the JetStream stream that holds the
//!   jobs: file storage, work-queue retention, a duplicate window.
//! - [`NatsSink`] publishes each [`JobMessage`](super::JobMessage) with its
//!   job key as `Nats-Msg-Id` and waits for JetStream's acknowledgement, so a
//!   job sent twice within the stream's duplicate window is stored once.
//! - [`NatsWorker`] pulls jobs from a durable consumer and runs them through
//!   a [`JobRunner`](super::JobRunner): acknowledged only after the handler
//!   succeeded (or the job was dead-lettered), put back with a delay (`NAK`)
//!   for a retry, deduplicated on the job key in the runner's store.
//! - [`NatsDeadLetter`] keeps jobs that cannot succeed in a JetStream
//!   subject of their own, with the reason and last error as headers.
//!
//! ```no_run
//! use hookgate::jobs::nats::{async_nats, NatsSink, NatsStream, NatsWorker};
//! use hookgate::jobs::{JobMessage, JobRunner, JobSink};
//! use hookgate::{handler_fn, Event, HandlerError, Identity, MemoryStore, Registry};
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("127.0.0.1:4222").await?;
//! let jetstream = async_nats::jetstream::new(client);
//! NatsStream::new("HOOKGATE_JOBS", "hookgate.jobs").create_or_get(&jetstream).await?;
//!
//! // Producer side (an outbox relay does this for you).
//! let sink = NatsSink::new(jetstream.clone(), "hookgate.jobs");
//! let event = Event::new("stripe", Identity::new("evt_1", "invoice.paid"), &b"{}"[..]);
//! sink.send(&JobMessage::new(&event, "email", time::OffsetDateTime::now_utc())).await?;
//!
//! // Worker side, on any machine: the same best-effort handlers, a shared store.
//! let mut registry = Registry::new();
//! registry.best_effort("stripe", "invoice.*", "email", handler_fn(|_| async { Ok::<(), HandlerError>(()) }));
//! let runner = JobRunner::builder(registry, MemoryStore::new()).build()?;
//! let worker = NatsWorker::builder(jetstream, "HOOKGATE_JOBS", "workers", runner).build().await?;
//! worker.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod dead_letter;
mod sink;
mod stream;
mod worker;

/// The async-nats crate hookgate is built with, so your client is of the
/// same version.
pub use async_nats;

pub use dead_letter::{NatsDeadLetter, ERROR_HEADER, REASON_HEADER};
pub use sink::NatsSink;
pub use stream::NatsStream;
pub use worker::{NatsWorker, NatsWorkerBuilder};

use crate::handler::BoxError;

/// A JetStream stream or consumer could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsSetupError {
    /// Creating or reading the stream failed (is JetStream enabled on the
    /// server? does an existing stream of that name have other subjects?).
    #[error("could not create or read the JetStream stream `{stream}`: {source}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// What the server or client said.
        #[source]
        source: BoxError,
    },
    /// Creating or reading the durable consumer failed.
    #[error("could not create or read the JetStream consumer `{consumer}` on stream `{stream}`: {source}")]
    Consumer {
        /// The stream's name.
        stream: String,
        /// The consumer's durable name.
        consumer: String,
        /// What the server or client said.
        #[source]
        source: BoxError,
    },
}
