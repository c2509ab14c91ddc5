//! [`NatsStream`]: the JetStream stream that holds jobs.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::NatsSetupError;

/// Settings of the JetStream stream that holds jobs; public fields, each
/// documented with its default.
///
/// ```
/// use hookgate::jobs::nats::NatsStream;
/// use std::time::Duration;
/// let mut stream = NatsStream::new("HOOKGATE_JOBS", "hookgate.jobs");
/// stream.duplicate_window = Duration::from_secs(3600);
/// assert_eq!(stream.subjects, ["hookgate.jobs"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsStream {
    /// The stream's name (no spaces, `.`, `*` or `>`).
    pub name: String,
    /// The subjects it stores. Defaults to the one given to [`NatsStream::new`].
    pub subjects: Vec<String>,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a second publish
    /// of it: cover the longest time a producer may send the same job again
    /// (an outbox relay retrying after a lost acknowledgement). Defaults to
    /// 10 min (the server's own default is 2 min).
    pub duplicate_window: Duration,
    /// How long an unprocessed job is kept; `Duration::ZERO` keeps it until
    /// it is acknowledged. Defaults to 7 days.
    pub max_age: Duration,
    /// Keep messages in memory instead of files (lost if the server
    /// restarts: for tests). Defaults to `false` (file storage).
    pub memory_storage: bool,
}

impl NatsStream {
    /// A stream named `name` holding the jobs published on `subject`.
    pub fn new(name: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subjects: vec![subject.into()],
            duplicate_window: Duration::from_secs(600),
            max_age: Duration::from_secs(7 * 24 * 3600),
            memory_storage: false,
        }
    }

    /// Creates the stream with work-queue retention (a job is removed once a
    /// worker acknowledges it), or returns it if it exists.
    ///
    /// # Errors
    /// [`NatsSetupError::Stream`] when the server refuses or cannot be reached.
    pub async fn create_or_get(
        &self,
        jetstream: &jetstream::Context,
    ) -> Result<stream::Stream, NatsSetupError> {
        let config = stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            retention: stream::RetentionPolicy::WorkQueue,
            storage: if self.memory_storage {
                stream::StorageType::Memory
            } else {
                stream::StorageType::File
            },
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            ..Default::default()
        };
        jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|e| NatsSetupError::Stream {
                stream: self.name.clone(),
                source: Box::new(e),
            })
    }
}
