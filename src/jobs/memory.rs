//! [`MemoryJobSink`]: a sink that keeps jobs in the process, for tests.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::message::JobMessage;
use super::sink::{JobSink, SinkError};

/// A [`JobSink`] that keeps every job it is sent in memory, in order, for
/// tests of code that sends jobs (an outbox relay, your own forwarder).
///
/// Clones share the same jobs: keep a clone to read what was sent. It can be
/// told to fail the next sends ([`MemoryJobSink::fail_next`]) to test how the
/// sender handles a broker outage. Unbounded: not for production.
///
/// ```
/// use hookgate::jobs::{JobMessage, JobSink, MemoryJobSink, SinkError};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let event = hookgate::Event::new("stripe", hookgate::Identity::new("evt_1", "invoice.paid"), &b"{}"[..]);
/// let job = JobMessage::new(&event, "email", time::OffsetDateTime::now_utc());
/// let sink = MemoryJobSink::new();
///
/// sink.fail_next(1, || SinkError::transient("broker down"));
/// assert!(sink.send(&job).await.unwrap_err().is_transient());
/// sink.send(&job).await.unwrap();
/// assert_eq!(sink.jobs(), vec![job]);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryJobSink {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    jobs: Vec<JobMessage>,
    failures: Vec<SinkError>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("jobs", &self.jobs.len())
            .field("failures", &self.failures.len())
            .finish()
    }
}

impl MemoryJobSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; recover the data anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every job taken so far, in the order they were sent.
    pub fn jobs(&self) -> Vec<JobMessage> {
        self.state().jobs.clone()
    }

    /// Takes every job out of the sink.
    pub fn drain(&self) -> Vec<JobMessage> {
        std::mem::take(&mut self.state().jobs)
    }

    /// Makes the next `count` sends fail with the error `error` makes
    /// (nothing is kept for them).
    pub fn fail_next(&self, count: usize, mut error: impl FnMut() -> SinkError) {
        let mut state = self.state();
        for _ in 0..count {
            state.failures.push(error());
        }
    }
}

#[async_trait]
impl JobSink for MemoryJobSink {
    async fn send(&self, job: &JobMessage) -> Result<(), SinkError> {
        let mut state = self.state();
        if !state.failures.is_empty() {
            return Err(state.failures.remove(0));
        }
        state.jobs.push(job.clone());
        Ok(())
    }
}
