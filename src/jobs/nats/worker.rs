//! [`NatsWorker`]: a durable pull consumer running jobs through a
//! [`JobRunner`].

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Context, Message};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::NatsSetupError;
use crate::jobs::{JobMessage, JobRunner, Verdict};

/// Runs jobs from a JetStream stream: a durable pull consumer (created if
/// missing) whose messages go through a [`JobRunner`].
///
/// For each message:
/// - it is decoded ([`JobMessage::decode_bytes`]); bytes that are not a job
///   are terminated (`TERM`: never delivered again) and counted in
///   [`NatsWorker::undecodable`];
/// - its attempt is the message's own attempt plus JetStream's redeliveries
///   of it (a delivery put back because the job was busy elsewhere counts
///   too);
/// - the runner's [`Verdict`] decides: a final one (succeeded, already done,
///   dead-lettered) is acknowledged, and the worker waits for the server to
///   confirm the acknowledgement; a retry or a busy job is put back with
///   `NAK` and the verdict's delay.
///
/// The consumer's `ack_wait` is the runner's [lease](JobRunner::lease), and
/// the worker restarts it (`+WPI`) when a job starts: a message is delivered
/// again only when its worker neither acknowledged nor put it back within the
/// lease (it crashed, or its connection dropped), and by then the job key's
/// lease has ended too. Its `max_deliver` is unlimited:
/// the runner, not the server, decides when a job is exhausted, so no job is
/// left undelivered without reaching the dead letter.
///
/// Connection loss is survived: async-nats reconnects, the pull is
/// restarted, and an acknowledgement lost on the way only means one more
/// delivery, which the runner's store answers `AlreadyDone`.
pub struct NatsWorker {
    runner: Arc<JobRunner>,
    consumer: PullConsumer,
    concurrency: usize,
    undecodable: Arc<AtomicU64>,
    stream: String,
    durable: String,
}

/// Settings of a [`NatsWorker`].
#[must_use = "call `.build().await` to get the worker"]
pub struct NatsWorkerBuilder {
    jetstream: Context,
    stream: String,
    durable: String,
    runner: JobRunner,
    filter_subject: Option<String>,
    concurrency: usize,
}

impl NatsWorker {
    /// A worker on the durable consumer `durable` of `stream`, running jobs
    /// through `runner`. Workers that share a durable name share its
    /// messages (each message goes to one of them).
    pub fn builder(
        jetstream: Context,
        stream: impl Into<String>,
        durable: impl Into<String>,
        runner: JobRunner,
    ) -> NatsWorkerBuilder {
        NatsWorkerBuilder {
            jetstream,
            stream: stream.into(),
            durable: durable.into(),
            runner,
            filter_subject: None,
            concurrency: 16,
        }
    }

    /// The runner (its counts say what the worker did).
    pub fn runner(&self) -> &JobRunner {
        &self.runner
    }

    /// Messages that were not job messages, terminated so far.
    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// Pulls and runs jobs until `shutdown` completes, then stops pulling and
    /// waits for the jobs it is running to settle their messages. Dropping
    /// the returned future (or aborting its task) stops at once, like a
    /// crash: unsettled messages are delivered again after `ack_wait`.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut running = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        'pull: loop {
            let messages = self
                .consumer
                .stream()
                .max_messages_per_batch(self.concurrency)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(10))
                .messages()
                .await;
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(_) => {
                    // No connection yet: try again shortly, unless told to stop.
                    let pause = pin!(tokio::time::sleep(Duration::from_millis(500)));
                    if let Either::Left(_) = select(shutdown.as_mut(), pause).await {
                        break 'pull;
                    }
                    continue 'pull;
                }
            };
            loop {
                // Finished tasks are collected as they end.
                while running.try_join_next().is_some() {}
                let permit = match select(
                    shutdown.as_mut(),
                    pin!(Arc::clone(&permits).acquire_owned()),
                )
                .await
                {
                    Either::Left(_) => break 'pull,
                    // The semaphore is never closed.
                    Either::Right((permit, _)) => permit.ok(),
                };
                let next = match select(shutdown.as_mut(), messages.next()).await {
                    Either::Left(_) => break 'pull,
                    Either::Right((next, _)) => next,
                };
                match next {
                    Some(Ok(message)) => {
                        let runner = Arc::clone(&self.runner);
                        let undecodable = Arc::clone(&self.undecodable);
                        running.spawn(async move {
                            handle(&runner, &undecodable, message).await;
                            drop(permit);
                        });
                    }
                    // A missed heartbeat or a passing pull error: keep reading.
                    Some(Err(_)) => {}
                    // The pull ended (connection lost, consumer deleted): start
                    // again, after a pause so a server that keeps ending it is
                    // not hammered.
                    None => {
                        let pause = pin!(tokio::time::sleep(Duration::from_millis(200)));
                        if let Either::Left(_) = select(shutdown.as_mut(), pause).await {
                            break 'pull;
                        }
                        continue 'pull;
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
    }
}

/// Runs one message's job and settles the message.
async fn handle(runner: &JobRunner, undecodable: &AtomicU64, message: Message) {
    let job = match JobMessage::decode_bytes(message.payload.clone()) {
        Ok(job) => job,
        Err(_) => {
            undecodable.fetch_add(1, Ordering::Relaxed);
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    // The message may have waited in the pull buffer: restart its ack_wait
    // so the whole lease covers the run.
    let _ = message.ack_with(AckKind::Progress).await;
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    let redeliveries = u32::try_from(delivered.saturating_sub(1)).unwrap_or(u32::MAX);
    let attempt = job.attempt().saturating_add(redeliveries);
    match runner.run(&job, attempt).await {
        verdict if verdict.is_final() => {
            // A lost acknowledgement means one more delivery, answered
            // `AlreadyDone`.
            let _ = message.double_ack().await;
        }
        Verdict::Retry { after } | Verdict::Busy { after } => {
            let _ = message.ack_with(AckKind::Nak(Some(after))).await;
        }
        // Every other verdict is final.
        _ => {}
    }
}

impl NatsWorkerBuilder {
    /// Takes only the stream's messages on this subject (wildcards allowed).
    /// Defaults to every subject of the stream.
    pub fn filter_subject(mut self, subject: impl Into<String>) -> Self {
        self.filter_subject = Some(subject.into());
        self
    }

    /// How many jobs run at once (and how many messages are pulled ahead).
    /// Defaults to 16; 0 is taken as 1.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Creates the durable consumer if it does not exist, and the worker.
    ///
    /// # Errors
    /// [`NatsSetupError`] when the stream is missing or the server refuses
    /// the consumer (an existing consumer of that name with other settings).
    pub async fn build(self) -> Result<NatsWorker, NatsSetupError> {
        let stream =
            self.jetstream
                .get_stream(&self.stream)
                .await
                .map_err(|e| NatsSetupError::Stream {
                    stream: self.stream.clone(),
                    source: Box::new(e),
                })?;
        let config = pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.runner.lease(),
            max_deliver: -1,
            filter_subject: self.filter_subject.unwrap_or_default(),
            max_ack_pending: i64::try_from(self.concurrency.saturating_mul(4)).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&self.durable, config)
            .await
            .map_err(|e| NatsSetupError::Consumer {
                stream: self.stream.clone(),
                consumer: self.durable.clone(),
                source: Box::new(e),
            })?;
        Ok(NatsWorker {
            runner: Arc::new(self.runner),
            consumer,
            concurrency: self.concurrency,
            undecodable: Arc::default(),
            stream: self.stream,
            durable: self.durable,
        })
    }
}

impl fmt::Debug for NatsWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsWorker")
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("concurrency", &self.concurrency)
            .field("runner", &self.runner)
            .field("undecodable", &self.undecodable())
            .finish()
    }
}

impl fmt::Debug for NatsWorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsWorkerBuilder")
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("filter_subject", &self.filter_subject)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}
