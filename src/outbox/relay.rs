//! [`Relay`]: claims due outbox jobs, runs their best-effort handlers under
//! the retry policy, and settles them.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, Either};
use futures_util::FutureExt;
use time::OffsetDateTime;

use super::job::ClaimedJob;
use super::settings::{OutboxConfigError, OutboxSettings};
use super::tables::OutboxTables;
use crate::handler::{HandlerPanicked, HandlerTimedOut};
use crate::jobs::{JobMessage, JobSink};
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::store::durable::duration_ms;
use crate::store::StoreError;
use crate::transactional::Engine;

/// Runs the jobs of a durable [outbox](crate::outbox): claims due rows with a
/// lease, runs each job's best-effort handler (found by the name it was
/// registered with) under the [`RetryPolicy`], and settles it — succeeded,
/// due again after the policy's backoff with jitter, or moved to the
/// dead-letter table `{table}_dead` when its attempts are exhausted, it
/// failed permanently, or no handler of its name is registered any more.
///
/// Get one from [`Pipeline::relay`](crate::Pipeline::relay), or build one
/// apart from any pipeline (a worker process) with `Relay::postgres` /
/// `Relay::sqlite`. Run as many relays as you like, in as many processes, on
/// one outbox: see [`outbox`](crate::outbox) for what that guarantees. A relay
/// is stopped by dropping the future of [`Relay::run`] (abort its task);
/// the jobs it held come back when their lease ends.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    tables: OutboxTables,
    registry: Registry,
    policy: RetryPolicy,
    settings: OutboxSettings,
    rng: AtomicU64,
    /// Where jobs are forwarded instead of run, when set.
    sink: Option<Arc<dyn JobSink>>,
}

/// What one [`Relay::run_once`] did: each claimed job is counted in exactly
/// one of the other fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayRound {
    /// Jobs claimed.
    pub claimed: usize,
    /// Jobs whose handler succeeded, settled as succeeded.
    pub succeeded: usize,
    /// Jobs whose attempt failed and that are due again after a backoff.
    pub retried: usize,
    /// Jobs moved to the dead-letter table.
    pub dead_lettered: usize,
    /// Jobs this relay could not settle because its lease ran out and
    /// another claim took them (the newer claim settles them).
    pub lease_lost: usize,
    /// Jobs whose settle failed (the database did not answer): they come back
    /// when their lease ends.
    pub unsettled: usize,
}

/// How a claimed job is settled.
#[derive(Debug, Clone)]
pub(crate) enum Settle {
    /// The handler succeeded.
    Succeed,
    /// Due again in `delay_ms`.
    Retry { delay_ms: i64, error: String },
    /// To the dead-letter table, after `attempts` attempts started.
    Bury {
        reason: String,
        error: String,
        attempts: i64,
    },
}

impl Relay {
    /// A relay on `tables` of `engine`, with settings already checked.
    pub(crate) fn new(
        engine: Engine,
        tables: OutboxTables,
        registry: Registry,
        policy: RetryPolicy,
        settings: OutboxSettings,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Self {
            inner: Arc::new(Inner {
                engine,
                tables,
                registry,
                policy,
                settings,
                rng: AtomicU64::new(seed),
                sink: None,
            }),
        }
    }

    /// This relay, forwarding each job to `sink` (a broker, see
    /// [`jobs`](crate::jobs)) as a [`JobMessage`] instead of running its
    /// handler: a job the sink holds (`Ok`) is settled as succeeded, a
    /// [`SinkError::Transient`](crate::jobs::SinkError::Transient) is retried
    /// under the retry policy, a
    /// [`SinkError::Permanent`](crate::jobs::SinkError::Permanent) goes to the
    /// dead-letter table. Each send is cut off after the policy's
    /// `attempt_timeout`. A job whose relay dies between the sink's `Ok` and
    /// the settle is sent again: the message's [key](JobMessage::key) is the
    /// same for every send, so the broker or the worker deduplicates it.
    ///
    /// The message key is `provider:event_id:handler`; jobs of a forced
    /// [replay](crate::Pipeline::replay) carry the same key as the original
    /// job, so a broker that deduplicates on it may drop them.
    #[must_use]
    pub fn forward_to(self, sink: impl JobSink + 'static) -> Self {
        let Inner {
            engine,
            tables,
            registry,
            policy,
            settings,
            rng,
            ..
        } = &*self.inner;
        Self {
            inner: Arc::new(Inner {
                engine: engine.clone(),
                tables: tables.clone(),
                registry: registry.clone(),
                policy: *policy,
                settings: settings.clone(),
                rng: AtomicU64::new(rng.load(Ordering::Relaxed)),
                sink: Some(Arc::new(sink)),
            }),
        }
    }

    fn standalone(
        engine: Engine,
        registry: Registry,
        policy: RetryPolicy,
        settings: OutboxSettings,
    ) -> Result<Self, OutboxConfigError> {
        settings.check(&policy)?;
        let tables = OutboxTables::new(&settings.table, &engine)?;
        Ok(Self::new(engine, tables, registry, policy, settings))
    }

    /// A relay apart from any pipeline, on the outbox in `store`'s database,
    /// running the best-effort handlers of `registry` under `policy`.
    ///
    /// # Errors
    /// Settings that cannot work ([`OutboxSettings::check`]).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(
        store: crate::store::postgres::PostgresStore,
        registry: Registry,
        policy: RetryPolicy,
        settings: OutboxSettings,
    ) -> Result<Self, OutboxConfigError> {
        Self::standalone(Engine::Postgres(store), registry, policy, settings)
    }

    /// A relay apart from any pipeline, on the outbox in `store`'s database,
    /// running the best-effort handlers of `registry` under `policy`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookgate::outbox::{OutboxSettings, Relay};
    /// use hookgate::store::sqlite::SqliteStore;
    /// use hookgate::{handler_fn, testing, GitHub, HandlerError, Headers, OutcomeKind, Pipeline, Registry, RetryPolicy};
    ///
    /// let path = std::env::temp_dir().join(format!("hookgate-relay-doc-{}.db", std::process::id()));
    /// let mut registry = Registry::new();
    /// registry.best_effort("github", "push", "notify", handler_fn(|_| async { Ok::<(), HandlerError>(()) }));
    ///
    /// // The receiver writes the job in the transaction that completes the key…
    /// let pipeline = Pipeline::builder()
    ///     .verifier(GitHub::builder("secret").build()?)
    ///     .store(SqliteStore::file(&path).build()?)
    ///     .registry(registry.clone())
    ///     .outbox(OutboxSettings::default())
    ///     .build()?;
    /// let headers = Headers::from_pairs(testing::github_headers("secret", b"{}", "push", "d-1"));
    /// let outcome = pipeline.handle(&b"{}"[..], &headers).await;
    /// assert!(matches!(outcome.kind, OutcomeKind::Processed { best_effort: 1 }));
    ///
    /// // …and a relay (here in the same process; any process on the file) runs it.
    /// let relay = Relay::sqlite(
    ///     SqliteStore::file(&path).build()?,
    ///     registry,
    ///     RetryPolicy::default(),
    ///     OutboxSettings::default(),
    /// )?;
    /// let round = relay.run_once().await?;
    /// assert_eq!((round.claimed, round.succeeded), (1, 1));
    /// # drop(pipeline);
    /// # for suffix in ["", "-wal", "-shm"] { let _ = std::fs::remove_file(format!("{}{suffix}", path.display())); }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Settings that cannot work ([`OutboxSettings::check`]).
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(
        store: crate::store::sqlite::SqliteStore,
        registry: Registry,
        policy: RetryPolicy,
        settings: OutboxSettings,
    ) -> Result<Self, OutboxConfigError> {
        Self::standalone(Engine::Sqlite(store), registry, policy, settings)
    }

    /// The outbox table this relay claims from.
    pub fn table(&self) -> &str {
        &self.inner.tables.table
    }

    /// The dead-letter table this relay moves exhausted jobs to (`{table}_dead`).
    pub fn dead_letter_table(&self) -> &str {
        &self.inner.tables.dead
    }

    /// Creates the outbox tables if they do not exist (operations do it on
    /// first use; call it to fail fast at start-up).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let Inner { engine, tables, .. } = &*self.inner;
        match engine {
            #[cfg(feature = "postgres")]
            Engine::Postgres(store) => tables.migrate_postgres(store).await,
            #[cfg(feature = "sqlite")]
            Engine::Sqlite(store) => tables.migrate_sqlite(store).await,
        }
    }

    /// Claims up to [`OutboxSettings::batch_size`] due jobs, runs them at
    /// once, and settles each.
    ///
    /// # Errors
    /// The claim failed (nothing was run).
    pub async fn run_once(&self) -> Result<RelayRound, StoreError> {
        let jobs = self.claim().await?;
        let mut round = RelayRound {
            claimed: jobs.len(),
            ..RelayRound::default()
        };
        let ends = future::join_all(jobs.into_iter().map(|job| self.run_job(job)));
        for end in ends.await {
            match end {
                End::Settled(Settle::Succeed) => round.succeeded += 1,
                End::Settled(Settle::Retry { .. }) => round.retried += 1,
                End::Settled(Settle::Bury { .. }) => round.dead_lettered += 1,
                End::LeaseLost => round.lease_lost += 1,
                End::Unsettled => round.unsettled += 1,
            }
        }
        Ok(round)
    }

    /// Runs rounds until the future is dropped: at once again after a full
    /// batch, after [`OutboxSettings::poll_interval`] otherwise (and after a
    /// database failure).
    pub async fn run(self) {
        loop {
            match self.run_once().await {
                Ok(round) if round.claimed >= self.inner.settings.batch_size => {}
                Ok(_) | Err(_) => tokio::time::sleep(self.inner.settings.poll_interval).await,
            }
        }
    }

    /// Runs rounds as [`Relay::run`] does until `stop` resolves, then lets
    /// the round in progress finish (its jobs settle) and returns.
    pub async fn run_until(&self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let round = self.run_once().await;
            let full =
                matches!(round, Ok(round) if round.claimed >= self.inner.settings.batch_size);
            let pause = if full {
                Duration::ZERO
            } else {
                self.inner.settings.poll_interval
            };
            let sleep = std::pin::pin!(tokio::time::sleep(pause));
            if let Either::Left(_) = future::select(stop.as_mut(), sleep).await {
                return;
            }
        }
    }

    /// Deletes jobs that succeeded more than `older_than` ago; returns how
    /// many. Dead-letter rows stay until you delete them.
    pub async fn purge_succeeded(&self, older_than: Duration) -> Result<u64, StoreError> {
        let Inner { engine, tables, .. } = &*self.inner;
        let older_than = duration_ms(older_than);
        match engine {
            #[cfg(feature = "postgres")]
            Engine::Postgres(store) => tables.purge_postgres(store, older_than).await,
            #[cfg(feature = "sqlite")]
            Engine::Sqlite(store) => tables.purge_sqlite(store, older_than).await,
        }
    }

    async fn claim(&self) -> Result<Vec<ClaimedJob>, StoreError> {
        let Inner {
            engine,
            tables,
            settings,
            ..
        } = &*self.inner;
        let batch = i64::try_from(settings.batch_size).unwrap_or(i64::MAX);
        let lease = duration_ms(settings.lease);
        match engine {
            #[cfg(feature = "postgres")]
            Engine::Postgres(store) => tables.claim_postgres(store, batch, lease).await,
            #[cfg(feature = "sqlite")]
            Engine::Sqlite(store) => tables.claim_sqlite(store, batch, lease).await,
        }
    }

    /// One attempt of `job`, and its settle.
    async fn run_job(&self, job: ClaimedJob) -> End {
        let policy = &self.inner.policy;
        let attempts = i64::from(job.attempt);
        let handler = self.inner.registry.best_effort_named(&job.handler);
        let settle = match handler {
            // The last attempt allowed was started by a relay that stopped
            // before settling it: no attempt beyond the policy's.
            _ if job.attempt > policy.max_attempts => Settle::Bury {
                reason: "retries_exhausted".to_owned(),
                error: "the last attempt's relay stopped before settling it".to_owned(),
                attempts: attempts - 1,
            },
            _ if self.inner.sink.is_some() => self.forward(&job).await,
            None => Settle::Bury {
                reason: "no_handler".to_owned(),
                error: format!(
                    "no best-effort handler named `{}` is registered",
                    job.handler
                ),
                attempts,
            },
            Some(handler) => {
                let run = AssertUnwindSafe(handler.handler().handle(&job.event)).catch_unwind();
                match tokio::time::timeout(policy.attempt_timeout, run).await {
                    Ok(Ok(Ok(()))) => Settle::Succeed,
                    Ok(Ok(Err(err))) if !err.is_transient() => Settle::Bury {
                        reason: "permanent".to_owned(),
                        error: err.to_string(),
                        attempts,
                    },
                    Ok(Ok(Err(err))) => self.retry_or_bury(&job, err.to_string()),
                    Ok(Err(panic)) => {
                        let panic = HandlerPanicked::from_payload(&*panic);
                        self.retry_or_bury(&job, panic.to_string())
                    }
                    Err(_) => {
                        let timeout = HandlerTimedOut {
                            after: policy.attempt_timeout,
                        };
                        self.retry_or_bury(&job, timeout.to_string())
                    }
                }
            }
        };
        let Inner { engine, tables, .. } = &*self.inner;
        let (key, token) = (&job.job_key, job.claim_token);
        let settled = match engine {
            #[cfg(feature = "postgres")]
            Engine::Postgres(store) => tables.settle_postgres(store, key, token, &settle).await,
            #[cfg(feature = "sqlite")]
            Engine::Sqlite(store) => tables.settle_sqlite(store, key, token, &settle).await,
        };
        match settled {
            Ok(true) => End::Settled(settle),
            Ok(false) => End::LeaseLost,
            Err(_) => End::Unsettled,
        }
    }

    /// Hands `job` to the relay's sink within the attempt timeout.
    async fn forward(&self, job: &ClaimedJob) -> Settle {
        let Some(sink) = &self.inner.sink else {
            return self.retry_or_bury(job, "no sink".to_owned());
        };
        let policy = &self.inner.policy;
        let message = JobMessage::new(&job.event, &job.handler, OffsetDateTime::now_utc())
            .with_attempt(job.attempt);
        match tokio::time::timeout(policy.attempt_timeout, sink.send(&message)).await {
            Ok(Ok(())) => Settle::Succeed,
            Ok(Err(err)) if !err.is_transient() => Settle::Bury {
                reason: "sink_refused".to_owned(),
                error: err.to_string(),
                attempts: i64::from(job.attempt),
            },
            Ok(Err(err)) => self.retry_or_bury(job, err.to_string()),
            Err(_) => {
                let timeout = HandlerTimedOut {
                    after: policy.attempt_timeout,
                };
                self.retry_or_bury(job, timeout.to_string())
            }
        }
    }

    /// A failed attempt: due again after the policy's delay, or to the dead
    /// letter once it was the last attempt.
    fn retry_or_bury(&self, job: &ClaimedJob, error: String) -> Settle {
        let policy = &self.inner.policy;
        if job.attempt >= policy.max_attempts {
            return Settle::Bury {
                reason: "retries_exhausted".to_owned(),
                error,
                attempts: i64::from(job.attempt),
            };
        }
        let delay = policy.delay(job.attempt, self.unit());
        Settle::Retry {
            delay_ms: duration_ms(delay),
            error,
        }
    }

    /// A uniform number in [0, 1) for jitter (splitmix64).
    fn unit(&self) -> f64 {
        let mut z = self
            .inner
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How one claimed job ended for this relay.
enum End {
    Settled(Settle),
    LeaseLost,
    Unsettled,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("engine", &self.inner.engine)
            .field("table", &self.inner.tables.table)
            .field("settings", &self.inner.settings)
            .field("policy", &self.inner.policy)
            .field("sink", &self.inner.sink)
            .finish_non_exhaustive()
    }
}
