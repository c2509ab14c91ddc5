//! [`RabbitWorker`]: consumes the work queue with manual acks and runs jobs
//! through a [`JobRunner`].

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::Channel;
use tokio::task::JoinSet;

use super::publish::{confirm_channel, publish};
use super::{RabbitError, RabbitTopology};
use crate::jobs::{JobMessage, JobRunner, Verdict};

/// Runs jobs from a [`RabbitTopology`]'s work queue.
///
/// It consumes with manual acknowledgements and a prefetch limit, and for
/// each delivery:
/// - decodes it ([`JobMessage::decode_bytes`]); bytes that are not a job are
///   rejected into the dead-letter queue and counted in
///   [`RabbitWorker::undecodable`];
/// - runs it through the [`JobRunner`] at the message's own attempt, and
///   settles it by the [`Verdict`]: acknowledged when it succeeded or was
///   already done; rejected (`requeue: false`) into the dead-letter queue
///   once the runner's dead letter holds it; for a retry, republished to the
///   retry queue at the next attempt with the backoff as its TTL, then
///   acknowledged; for a busy job, republished the same way at the same
///   attempt. A republish that is not confirmed puts the delivery back
///   (`nack`, requeue) instead.
///
/// Retries therefore count exactly (the attempt travels in the message), and
/// a crash costs no attempt. The retry queue holds messages in order:
/// a job behind a longer backoff waits for it (delays stretch, nothing is
/// lost).
///
/// A worker that crashes or loses its connection leaves its unacknowledged
/// deliveries to RabbitMQ, which delivers them again; the runner's store
/// answers `AlreadyDone` for those that finished, and waits out the lease of
/// those that were running. The worker reconnects by itself.
pub struct RabbitWorker {
    uri: String,
    topology: RabbitTopology,
    runner: Arc<JobRunner>,
    prefetch: u16,
    undecodable: Arc<AtomicU64>,
}

/// Settings of a [`RabbitWorker`].
#[must_use = "call `.build()` to get the worker"]
pub struct RabbitWorkerBuilder {
    uri: String,
    topology: RabbitTopology,
    runner: JobRunner,
    prefetch: u16,
}

impl RabbitWorker {
    /// A worker on `topology`'s work queue at `uri`, running jobs through
    /// `runner`. Workers on one queue share its messages.
    pub fn builder(
        uri: impl Into<String>,
        topology: &RabbitTopology,
        runner: JobRunner,
    ) -> RabbitWorkerBuilder {
        RabbitWorkerBuilder {
            uri: uri.into(),
            topology: topology.clone(),
            runner,
            prefetch: 16,
        }
    }

    /// The runner (its counts say what the worker did).
    pub fn runner(&self) -> &JobRunner {
        &self.runner
    }

    /// Deliveries that were not job messages, rejected so far.
    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    /// Consumes and runs jobs until `shutdown` completes, then stops
    /// consuming and waits for the jobs it is running to settle their
    /// deliveries. Reconnects after a lost connection. Dropping the returned
    /// future (or aborting its task) closes the connection at once, like a
    /// crash: unacknowledged deliveries go back to the queue.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let mut running = JoinSet::new();
        'connect: loop {
            let session = match self.connect().await {
                Ok(session) => session,
                Err(_) => {
                    let pause = pin!(tokio::time::sleep(Duration::from_millis(500)));
                    if let Either::Left(_) = select(shutdown.as_mut(), pause).await {
                        break 'connect;
                    }
                    continue 'connect;
                }
            };
            let (_connection, publisher, mut consumer) = session;
            loop {
                while running.try_join_next().is_some() {}
                let next = match select(shutdown.as_mut(), consumer.next()).await {
                    Either::Left(_) => break 'connect,
                    Either::Right((next, _)) => next,
                };
                match next {
                    Some(Ok(delivery)) => {
                        let runner = Arc::clone(&self.runner);
                        let undecodable = Arc::clone(&self.undecodable);
                        let publisher = publisher.clone();
                        let retry_queue = self.topology.retry_queue.clone();
                        running.spawn(async move {
                            handle(&runner, &undecodable, &publisher, &retry_queue, delivery).await;
                        });
                    }
                    // The channel or connection failed: connect again, after a
                    // pause so a broker that keeps closing it is not hammered.
                    Some(Err(_)) | None => {
                        let pause = pin!(tokio::time::sleep(Duration::from_millis(200)));
                        if let Either::Left(_) = select(shutdown.as_mut(), pause).await {
                            break 'connect;
                        }
                        continue 'connect;
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// A connection, a confirm channel for retries, and the consumer.
    async fn connect(&self) -> Result<(lapin::Connection, Channel, lapin::Consumer), RabbitError> {
        let (connection, publisher) = confirm_channel(&self.uri).await?;
        let failed = |e: lapin::Error| RabbitError::Connect(Box::new(e));
        let channel = connection.create_channel().await.map_err(failed)?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(failed)?;
        let consumer = channel
            .basic_consume(
                self.topology.queue.clone(),
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(failed)?;
        Ok((connection, publisher, consumer))
    }
}

/// Runs one delivery's job and settles the delivery.
async fn handle(
    runner: &JobRunner,
    undecodable: &AtomicU64,
    publisher: &Channel,
    retry_queue: &ShortString,
    delivery: Delivery,
) {
    let Delivery { data, acker, .. } = delivery;
    let job = match JobMessage::decode_bytes(Bytes::from(data)) {
        Ok(job) => job,
        Err(_) => {
            undecodable.fetch_add(1, Ordering::Relaxed);
            let _ = acker.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let attempt = job.attempt();
    let (again, after) = match runner.run(&job, attempt).await {
        Verdict::DeadLettered { .. } => {
            // Into the dead-letter exchange; the runner's dead letter has it too.
            let _ = acker.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
        verdict if verdict.is_final() => {
            // A lost ack means one more delivery, answered `AlreadyDone`.
            let _ = acker.ack(BasicAckOptions::default()).await;
            return;
        }
        Verdict::Retry { after } => (job.with_attempt(attempt.saturating_add(1)), after),
        Verdict::Busy { after } => (job, after),
        // Every other verdict is final.
        _ => return,
    };
    let default_exchange = ShortString::default();
    match publish(
        publisher,
        &default_exchange,
        retry_queue,
        &again,
        Some(after),
    )
    .await
    {
        Ok(()) => {
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        Err(_) => {
            let _ = acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
        }
    }
}

impl RabbitWorkerBuilder {
    /// How many deliveries may be unacknowledged at once (RabbitMQ's
    /// prefetch), which is also how many jobs run at once. Defaults to 16;
    /// 0 is taken as 1.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// The worker; it connects when it runs.
    pub fn build(self) -> RabbitWorker {
        RabbitWorker {
            uri: self.uri,
            topology: self.topology,
            runner: Arc::new(self.runner),
            prefetch: self.prefetch,
            undecodable: Arc::default(),
        }
    }
}

impl fmt::Debug for RabbitWorker {
    /// The queue and settings; never the URI, which holds the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitWorker")
            .field("queue", &self.topology.queue())
            .field("prefetch", &self.prefetch)
            .field("runner", &self.runner)
            .field("undecodable", &self.undecodable())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RabbitWorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitWorkerBuilder")
            .field("queue", &self.topology.queue())
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}
