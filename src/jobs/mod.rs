//! Best-effort jobs beyond one process: the [`JobMessage`] that carries one
//! job through a broker, its wire encoding, and the [`JobSink`] trait that
//! brokers implement.
//!
//! The pipeline's in-process runner stays the default for best-effort work.
//! To move that work to other machines, each job — one handler for one
//! verified event — becomes a [`JobMessage`]: a durable outbox relay or your
//! own code hands it to a [`JobSink`] (a broker), and workers on any machine
//! receive it, run the registered best-effort handler and acknowledge it.
//!
//! - [`JobMessage::key`] (`{provider}:{event_id}:{handler}`) is the same for
//!   every attempt and copy of a job: brokers deduplicate publishes on it and
//!   workers deduplicate runs on it.
//! - [`JobMessage::encode`] / [`JobMessage::decode`] use a versioned frame
//!   ([`WIRE_VERSION`]) with a JSON header and the raw body after it,
//!   untouched; hostile bytes give a [`DecodeError`], never a panic.
//! - [`SinkError`] says whether sending again may help.
//! - [`MemoryJobSink`] keeps jobs in memory, for tests.
//! - `JobRunner` (feature `tokio`) runs a received job's best-effort handler
//!   once per job key and says whether to acknowledge its message; the
//!   broker workers are built on it.
//! - `nats` (feature `nats`): `NatsSink`, `NatsStream`, `NatsWorker`.
//! - `rabbitmq` (feature `rabbitmq`): `RabbitSink`, `RabbitTopology`,
//!   `RabbitWorker`.

mod key;
mod memory;
mod message;
mod names;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "rabbitmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "rabbitmq")))]
pub mod rabbitmq;
#[cfg(feature = "tokio")]
mod runner;
mod sink;
mod wire;

pub use memory::MemoryJobSink;
pub use message::JobMessage;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use runner::{JobCounts, JobRunner, JobRunnerBuilder, JobRunnerError, UnknownHandler, Verdict};
pub use sink::{JobSink, SinkError};
pub use wire::{DecodeError, MAX_HEADER_LEN, WIRE_VERSION};
