//! [`JobSink`]: where best-effort jobs are handed over, and its [`SinkError`].

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::message::JobMessage;
use crate::handler::BoxError;

/// Why a sink did not take a job.
///
/// The caller (an outbox relay, a worker handing a job on) decides from the
/// variant: a [`SinkError::Transient`] job is kept and sent again later, a
/// [`SinkError::Permanent`] one cannot be taken by this sink as it is and goes
/// to the dead letter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Sending again later may succeed: the broker is unreachable, the
    /// connection dropped before the broker confirmed, a confirm timed out.
    /// The broker may or may not hold the job: send it again (the job key
    /// lets the broker or the worker drop the copy).
    #[error("the job sink is unavailable, send again later: {0}")]
    Transient(#[source] BoxError),
    /// This job cannot be taken as it is: larger than the broker's message
    /// limit, refused by the broker's configuration (no stream for the
    /// subject, a missing exchange).
    #[error("the job sink refused the job: {0}")]
    Permanent(#[source] BoxError),
}

impl SinkError {
    /// A failure that may go away if the job is sent again later.
    pub fn transient(err: impl Into<BoxError>) -> Self {
        SinkError::Transient(err.into())
    }

    /// A failure that sending the same job again will not fix.
    pub fn permanent(err: impl Into<BoxError>) -> Self {
        SinkError::Permanent(err.into())
    }

    /// Whether sending again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

/// Where best-effort jobs are handed over: a broker (`jobs::nats::NatsSink`,
/// `jobs::rabbitmq::RabbitSink`), or your own queue.
///
/// `send` returning `Ok` means the job is stored where the sink promises to
/// keep it (a broker's publish acknowledgement or confirm): the caller may
/// then forget it. On `Err`, the job may still have arrived (a confirm lost
/// with the connection), so senders retry, and sinks and workers deduplicate
/// on [`JobMessage::key`].
///
/// A sink over your own queue, with [`async_trait`](crate::async_trait) (here
/// a vector standing in for it):
///
/// ```
/// use hookgate::async_trait;
/// use hookgate::jobs::{JobMessage, JobSink, SinkError};
/// use std::sync::Mutex;
///
/// #[derive(Debug, Default)]
/// struct MyQueue {
///     sent: Mutex<Vec<(String, Vec<u8>)>>,
/// }
///
/// #[async_trait]
/// impl JobSink for MyQueue {
///     async fn send(&self, job: &JobMessage) -> Result<(), SinkError> {
///         // A real queue's connection error would be `Err(SinkError::transient(err))`.
///         self.sent
///             .lock()
///             .map_err(|_| SinkError::transient("the queue lock is poisoned"))?
///             .push((job.key().to_owned(), job.encode()));
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let event = hookgate::Event::new("github", hookgate::Identity::new("d-1", "push"), &b"{}"[..]);
/// let job = JobMessage::new(&event, "notify", time::OffsetDateTime::now_utc());
/// let queue = MyQueue::default();
/// let sink: &dyn JobSink = &queue;
/// sink.send(&job).await?;
/// assert_eq!(queue.sent.lock().unwrap()[0].0, "github:d-1:notify");
/// # Ok(()) }
/// ```
///
/// `Arc<S>` and `Box<S>` (also of `dyn JobSink`) are sinks too. The trait uses
/// `async_trait` so that relays can hold `Arc<dyn JobSink>`.
#[async_trait]
pub trait JobSink: Send + Sync + fmt::Debug {
    /// Hands `job` over; `Ok` only once the sink holds it durably.
    async fn send(&self, job: &JobMessage) -> Result<(), SinkError>;
}

/// `Arc<S>` and `Box<S>` forward to the sink they hold.
macro_rules! forward_sink {
    ($($pointer:ident),*) => {$(
        #[async_trait]
        impl<S: JobSink + ?Sized> JobSink for $pointer<S> {
            async fn send(&self, job: &JobMessage) -> Result<(), SinkError> {
                (**self).send(job).await
            }
        }
    )*};
}

forward_sink!(Arc, Box);

// `JobSink` stays dyn-compatible: relays hold `Arc<dyn JobSink>`.
const _: Option<&dyn JobSink> = None;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variant_says_whether_to_send_again() {
        assert!(SinkError::transient("connection reset").is_transient());
        assert!(!SinkError::permanent("message too large").is_transient());
        assert_eq!(
            SinkError::permanent("message too large").to_string(),
            "the job sink refused the job: message too large"
        );
    }
}
