//! [`PostgresJournal`]: the delivery journal in PostgreSQL (feature
//! `postgres`).
//!
//! One row per record, in one table (default [`DEFAULT_TABLE`], optionally
//! `schema.` qualified):
//!
//! | column | type | holds |
//! |---|---|---|
//! | `id` | `bytea`, primary key | the [`JournalId`], 16 bytes big-endian, so byte order is id order |
//! | `received_at` | `timestamptz` | when the delivery was received |
//! | `provider`, `event_id`, `kind`, `delivery_id` | `text`, nullable | as in [`JournalRecord`] |
//! | `status` | `text` | the [`DeliveryStatus::as_str`](super::DeliveryStatus::as_str) name |
//! | `http_status` | `integer` | the HTTP status answered |
//! | `attempt` | `bigint`, nullable | the attempt number (fencing token) |
//! | `verify_us`, `claim_us`, `critical_us`, `total_us` | `bigint`, nullable | the [`Durations`](super::Durations), in microseconds |
//! | `error` | `text`, nullable | why it failed |
//! | `best_effort` | `text` | a JSON array of `{"handler", "attempts", "state"}` objects, `state` a [`BestEffortState::as_str`](super::BestEffortState::as_str) name |
//! | `body_size` | `bigint` | the body's size in bytes |
//! | `body_digest` | `bytea`, nullable | the body's SHA-256, 32 bytes |
//! | `body` | `bytea`, nullable | the body |
//! | `headers` | `text` | a JSON array of `[name, value]` pairs |
//! | `replay_of` | `bytea`, nullable | the id of the record this one replays, 16 bytes |
//! | `resolved_at` | `timestamptz`, nullable | when it was marked resolved |
//!
//! and these indexes, each for the queries named:
//!
//! - the primary key on `id`: [`get`](Journal::get),
//!   [`mark_resolved`](Journal::mark_resolved), best-effort updates, the
//!   upserts of [`write`](Journal::write), and the newest-first walk of every
//!   [`list`](Journal::list) (`ORDER BY id DESC`, the cursor being
//!   `id < cursor`, which keeps pages stable while records are added);
//! - `<table>_received_at` on `received_at`:
//!   [`purge_before`](Journal::purge_before), and `since`/`until` filters;
//! - `<table>_status` on `(status, id)`: lists of some statuses (the failed
//!   deliveries an operator looks for), newest first, and
//!   [`counts`](Journal::counts);
//! - `<table>_event` on `(provider, event_id)`: the deliveries of one event.
//!
//! A batch of writes is one statement, `INSERT … SELECT * FROM unnest($1, …)
//! ON CONFLICT (id) DO UPDATE`, whatever its size (one prepared statement, one
//! round trip, its own transaction). A batch that also updates best-effort
//! jobs is one transaction: it locks the rows those updates name
//! (`SELECT … FOR UPDATE`), folds the batch in order with them, then writes
//! the records and the jobs, one statement each.
//!
//! Times are kept to the microsecond, between 1970 and the year 9999, and
//! durations to the microsecond; filters compare the times as stored. A row
//! this journal cannot read (an unknown status name, bad JSON, a `bytea` of
//! the wrong length, a column of another type) is reported as
//! [`JournalError::Corrupt`], naming the record and the column.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::tokio_postgres::types::{FromSql, ToSql};
use deadpool_postgres::tokio_postgres::{self, NoTls, Row};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;

use super::query::{JournalFilter, JournalPage, JournalQuery, StatusCounts};
use super::record::{BestEffortJob, JournalId, JournalRecord, JournalWrite};
use super::sql::{
    corrupt, counts_statement, decode, decode_jobs, encode_headers, encode_jobs, journal_setters,
    list_statement, micros, parse_status, purge_in_batches, set_job, timed, u64_to_i64,
    units_since_epoch, Cells, Dialect, Params, COLUMNS,
};
use super::{Journal, JournalError};
use crate::store::durable::{
    duration_ms, unqualified, validate_table_name, DurableSettings, Limits, StoreConfigError,
};

/// The default table name.
pub const DEFAULT_TABLE: &str = "hookgate_journal";

/// The most body bytes one upsert statement carries: a batch of large bodies
/// is split into several statements (in one transaction), far below
/// PostgreSQL's 1 GiB message limit.
const MAX_STATEMENT_BYTES: usize = 32 * 1024 * 1024;

/// The latest time stored: 9999-12-31 23:59:59 UTC, in Unix seconds.
const MAX_TIME_SECS: u64 = 253_402_300_799;

/// A [`Journal`] in a PostgreSQL table, shared by every instance of a service.
///
/// Connect from a URL with [`PostgresJournal::builder`] (a `deadpool-postgres`
/// pool without TLS is created for you), or hand over your own pool with
/// [`PostgresJournal::from_pool`] (use that for TLS). Nothing connects while
/// building: the first operation creates the table if it does not exist (or
/// call [`PostgresJournal::migrate`] at start-up to fail fast). Clones share
/// the pool. The schema is in the [module docs](self).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::journal::postgres::PostgresJournal;
/// use hookgate::journal::{DeliveryStatus, Journal, JournalFilter, JournalQuery};
/// use std::time::Duration;
///
/// let journal = PostgresJournal::builder("postgres://app@db.internal/app")
///     .table("ops.webhook_journal")
///     .max_connections(4)
///     .operation_timeout(Duration::from_secs(2))
///     .build()?;
/// journal.migrate().await?;
/// let failed = JournalFilter {
///     statuses: vec![DeliveryStatus::CriticalFailed, DeliveryStatus::StoreUnavailable],
///     unresolved: true,
///     ..JournalFilter::default()
/// };
/// for record in journal.list(&JournalQuery::new(failed)).await?.records {
///     println!("{} {:?} {:?}", record.id, record.event_id, record.error);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresJournal {
    pool: Pool,
    table: String,
    sql: Arc<Statements>,
    limits: Limits,
    migrated: Arc<OnceCell<()>>,
}

/// The SQL text of each fixed operation, with the table name spliced in once.
#[derive(Debug)]
struct Statements {
    migrate: String,
    upsert: String,
    lock_jobs: String,
    set_jobs: String,
    get: String,
    mark_resolved: String,
    purge: String,
}

impl Statements {
    fn new(table: &str) -> Self {
        let name = unqualified(table);
        Self {
            migrate: format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    id          bytea       NOT NULL PRIMARY KEY,
                    received_at timestamptz NOT NULL,
                    provider    text,
                    event_id    text,
                    kind        text,
                    delivery_id text,
                    status      text        NOT NULL,
                    http_status integer     NOT NULL,
                    attempt     bigint,
                    verify_us   bigint,
                    claim_us    bigint,
                    critical_us bigint,
                    total_us    bigint,
                    error       text,
                    best_effort text        NOT NULL DEFAULT '[]',
                    body_size   bigint      NOT NULL,
                    body_digest bytea,
                    body        bytea,
                    headers     text        NOT NULL DEFAULT '[]',
                    replay_of   bytea,
                    resolved_at timestamptz
                 );
                 CREATE INDEX IF NOT EXISTS {name}_received_at ON {table} (received_at);
                 CREATE INDEX IF NOT EXISTS {name}_status ON {table} (status, id);
                 CREATE INDEX IF NOT EXISTS {name}_event ON {table} (provider, event_id);"
            ),
            // One row per record of the batch (each id once, see `Plan`). A
            // record written again replaces the stored one but keeps its
            // resolution, and its jobs when the new record lists none (`[]` is
            // how an empty list is encoded).
            upsert: format!(
                "INSERT INTO {table} AS cur (id, received_at, provider, event_id, kind,
                    delivery_id, status, http_status, attempt, verify_us, claim_us, critical_us,
                    total_us, error, best_effort, body_size, body_digest, body, headers,
                    replay_of, resolved_at)
                 SELECT * FROM unnest($1::bytea[], $2::timestamptz[], $3::text[], $4::text[],
                    $5::text[], $6::text[], $7::text[], $8::integer[], $9::bigint[],
                    $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::text[],
                    $15::text[], $16::bigint[], $17::bytea[], $18::bytea[], $19::text[],
                    $20::bytea[], $21::timestamptz[])
                 ON CONFLICT (id) DO UPDATE SET
                    received_at = EXCLUDED.received_at, provider = EXCLUDED.provider,
                    event_id = EXCLUDED.event_id, kind = EXCLUDED.kind,
                    delivery_id = EXCLUDED.delivery_id, status = EXCLUDED.status,
                    http_status = EXCLUDED.http_status, attempt = EXCLUDED.attempt,
                    verify_us = EXCLUDED.verify_us, claim_us = EXCLUDED.claim_us,
                    critical_us = EXCLUDED.critical_us, total_us = EXCLUDED.total_us,
                    error = EXCLUDED.error,
                    best_effort = CASE WHEN EXCLUDED.best_effort = '[]'
                        THEN cur.best_effort ELSE EXCLUDED.best_effort END,
                    body_size = EXCLUDED.body_size, body_digest = EXCLUDED.body_digest,
                    body = EXCLUDED.body, headers = EXCLUDED.headers,
                    replay_of = EXCLUDED.replay_of,
                    resolved_at = COALESCE(EXCLUDED.resolved_at, cur.resolved_at)"
            ),
            lock_jobs: format!(
                "SELECT id, best_effort FROM {table} WHERE id = ANY($1::bytea[])
                  ORDER BY id FOR UPDATE"
            ),
            set_jobs: format!(
                "UPDATE {table} AS cur SET best_effort = v.best_effort
                   FROM unnest($1::bytea[], $2::text[]) AS v (id, best_effort)
                  WHERE cur.id = v.id"
            ),
            get: format!("SELECT {COLUMNS}, body FROM {table} WHERE id = $1"),
            mark_resolved: format!("UPDATE {table} SET resolved_at = $2 WHERE id = $1"),
            // SKIP LOCKED: a record being written right now is left for the
            // next purge.
            purge: format!(
                "DELETE FROM {table} WHERE id IN (
                    SELECT id FROM {table} WHERE received_at < $1
                     LIMIT $2 FOR UPDATE SKIP LOCKED
                 )"
            ),
        }
    }
}

/// Where a [`PostgresJournal`]'s connections come from.
enum Source {
    Url(String),
    Pool(Pool),
}

/// Settings for a [`PostgresJournal`]; every setting has a production
/// default.
#[must_use = "call `build()` to get the journal"]
pub struct PostgresJournalBuilder {
    source: Source,
    table: String,
    max_connections: usize,
    statement_timeout: Duration,
    durable: DurableSettings,
}

impl PostgresJournal {
    /// Settings for a journal that connects to the PostgreSQL server at `url`
    /// (`postgres://user:password@host:port/database?…`, or the key-value
    /// form), without TLS.
    pub fn builder(url: impl Into<String>) -> PostgresJournalBuilder {
        PostgresJournalBuilder::new(Source::Url(url.into()))
    }

    /// Settings for a journal that uses your existing `deadpool-postgres` pool
    /// (with your TLS and connection settings). The pool's own size and
    /// timeouts apply; [`PostgresJournalBuilder::operation_timeout`] still
    /// bounds every operation.
    pub fn from_pool(pool: Pool) -> PostgresJournalBuilder {
        PostgresJournalBuilder::new(Source::Pool(pool))
    }

    /// Creates the table and its indexes if they do not exist. Idempotent, and
    /// safe to run from several instances at once (an advisory lock serialises
    /// them); operations run it on first use.
    pub async fn migrate(&self) -> Result<(), JournalError> {
        self.migrated
            .get_or_try_init(|| {
                timed(
                    self.limits.operation_timeout,
                    "PostgreSQL journal migration",
                    async {
                        let mut client = self.client().await?;
                        let tx = client.transaction().await.map_err(pg_error)?;
                        tx.execute(
                            "SELECT pg_advisory_xact_lock(hashtext('hookgate-journal:' || $1::text))",
                            &[&self.table],
                        )
                        .await
                        .map_err(pg_error)?;
                        tx.batch_execute(&self.sql.migrate)
                            .await
                            .map_err(pg_error)?;
                        tx.commit().await.map_err(pg_error)
                    },
                )
            })
            .await
            .map(|_| ())
    }

    /// The table this journal keeps its records in.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The pool this journal runs its statements on.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, JournalError> {
        self.pool.get().await.map_err(JournalError::unavailable)
    }

    /// Migrates, then runs `op` within the operation timeout.
    async fn run<T>(
        &self,
        what: &'static str,
        op: impl Future<Output = Result<T, JournalError>>,
    ) -> Result<T, JournalError> {
        self.migrate().await?;
        timed(self.limits.operation_timeout, what, op).await
    }

    /// Writes `rows` (each id once) with one upsert statement.
    async fn upsert(
        &self,
        client: &impl GenericClient,
        rows: &[Upsert<'_>],
    ) -> Result<(), JournalError> {
        let ids: Vec<[u8; 16]> = rows.iter().map(|r| r.record.id.to_bytes()).collect();
        let replays: Vec<Option<[u8; 16]>> = rows
            .iter()
            .map(|r| r.record.replay_of.map(JournalId::to_bytes))
            .collect();
        let mut jobs = Vec::with_capacity(rows.len());
        let mut headers = Vec::with_capacity(rows.len());
        for row in rows {
            jobs.push(encode_jobs(&row.best_effort).map_err(JournalError::unavailable)?);
            headers.push(encode_headers(&row.record.headers).map_err(JournalError::unavailable)?);
        }
        let column = |f: fn(&Upsert<'_>) -> Option<Duration>| -> Vec<Option<i64>> {
            rows.iter().map(|r| f(r).map(micros)).collect()
        };
        let id: Vec<&[u8]> = ids.iter().map(|b| &b[..]).collect();
        let received_at: Vec<SystemTime> = rows
            .iter()
            .map(|r| pg_time(r.record.received_at, false))
            .collect();
        let text = |f: fn(&JournalRecord) -> &Option<String>| -> Vec<Option<&str>> {
            rows.iter().map(|r| f(r.record).as_deref()).collect()
        };
        let status: Vec<&str> = rows.iter().map(|r| r.record.status.as_str()).collect();
        let http_status: Vec<i32> = rows
            .iter()
            .map(|r| i32::from(r.record.http_status))
            .collect();
        let attempt: Vec<Option<i64>> = rows
            .iter()
            .map(|r| r.record.attempt.map(u64_to_i64))
            .collect();
        let body_size: Vec<i64> = rows
            .iter()
            .map(|r| u64_to_i64(r.record.body_size))
            .collect();
        let body_digest: Vec<Option<&[u8]>> = rows
            .iter()
            .map(|r| r.record.body_digest.as_ref().map(|d| &d[..]))
            .collect();
        let body: Vec<Option<&[u8]>> = rows.iter().map(|r| r.record.body.as_deref()).collect();
        let replay_of: Vec<Option<&[u8]>> =
            replays.iter().map(|r| r.as_ref().map(|b| &b[..])).collect();
        let resolved_at: Vec<Option<SystemTime>> = rows
            .iter()
            .map(|r| r.resolved_at.map(|t| pg_time(t, false)))
            .collect();
        let statement = client
            .prepare_cached(&self.sql.upsert)
            .await
            .map_err(pg_error)?;
        client
            .execute(
                &statement,
                &[
                    &id,
                    &received_at,
                    &rows
                        .iter()
                        .map(|r| r.record.provider.as_deref())
                        .collect::<Vec<_>>(),
                    &text(|r| &r.event_id),
                    &text(|r| &r.kind),
                    &text(|r| &r.delivery_id),
                    &status,
                    &http_status,
                    &attempt,
                    &column(|r| r.record.durations.verify),
                    &column(|r| r.record.durations.claim),
                    &column(|r| r.record.durations.critical),
                    &column(|r| r.record.durations.total),
                    &text(|r| &r.error),
                    &jobs,
                    &body_size,
                    &body_digest,
                    &body,
                    &headers,
                    &replay_of,
                    &resolved_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// Locks the stored records among `ids` for this transaction; their jobs.
    async fn lock_jobs(
        &self,
        client: &impl GenericClient,
        ids: &[JournalId],
    ) -> Result<HashMap<JournalId, Vec<BestEffortJob>>, JournalError> {
        let keys: Vec<[u8; 16]> = ids.iter().map(|id| id.to_bytes()).collect();
        let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let statement = client
            .prepare_cached(&self.sql.lock_jobs)
            .await
            .map_err(pg_error)?;
        let rows = client.query(&statement, &[&keys]).await.map_err(pg_error)?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in &rows {
            let mut cells = PgCells { row, id: None };
            let id = cells.id(0)?;
            cells.set_record(id);
            let jobs = decode_jobs(Some(id), cells.required_str(1, "best_effort")?)?;
            stored.insert(id, jobs);
        }
        Ok(stored)
    }

    /// Sets the jobs of stored records.
    async fn set_jobs(
        &self,
        client: &impl GenericClient,
        jobs: &[(JournalId, Vec<BestEffortJob>)],
    ) -> Result<(), JournalError> {
        let keys: Vec<[u8; 16]> = jobs.iter().map(|(id, _)| id.to_bytes()).collect();
        let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let lists = jobs
            .iter()
            .map(|(_, list)| encode_jobs(list))
            .collect::<Result<Vec<String>, _>>()
            .map_err(JournalError::unavailable)?;
        let statement = client
            .prepare_cached(&self.sql.set_jobs)
            .await
            .map_err(pg_error)?;
        client
            .execute(&statement, &[&keys, &lists])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// Applies `batch` as [`Journal::write`] says, on one connection.
    async fn write_batch(&self, batch: &[JournalWrite]) -> Result<(), JournalError> {
        let mut touched: Vec<JournalId> = batch
            .iter()
            .filter_map(|write| match write {
                JournalWrite::BestEffort { id, .. } => Some(*id),
                JournalWrite::Record(_) => None,
            })
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let mut client = self.client().await?;
        if touched.is_empty() {
            let plan = Plan::new(batch, HashMap::new());
            let chunks = plan.chunks();
            if let [only] = chunks.as_slice() {
                // One statement is a transaction of its own: one round trip.
                return self.upsert(&client, only).await;
            }
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        let jobs = if touched.is_empty() {
            HashMap::new()
        } else {
            let mut stored = self.lock_jobs(&tx, &touched).await?;
            touched.iter().map(|id| (*id, stored.remove(id))).collect()
        };
        let plan = Plan::new(batch, jobs);
        for chunk in plan.chunks() {
            self.upsert(&tx, chunk).await?;
        }
        if !plan.jobs_only.is_empty() {
            self.set_jobs(&tx, &plan.jobs_only).await?;
        }
        tx.commit().await.map_err(pg_error)
    }
}

fn pg_error(err: tokio_postgres::Error) -> JournalError {
    JournalError::unavailable(err)
}

/// A record's row as a batch leaves it: the last record written with its id,
/// with the jobs and resolution the writes before it kept.
struct Upsert<'a> {
    record: &'a JournalRecord,
    best_effort: Cow<'a, [BestEffortJob]>,
    resolved_at: Option<SystemTime>,
}

/// A batch folded into one row per record, so that each statement touches a
/// row once and the result is that of applying the writes in order.
struct Plan<'a> {
    /// The rows to upsert, in id order (the order rows are locked in).
    upserts: Vec<Upsert<'a>>,
    /// The jobs of stored records the batch updates without writing them.
    jobs_only: Vec<(JournalId, Vec<BestEffortJob>)>,
}

impl<'a> Plan<'a> {
    /// Folds `batch`; `jobs` holds, for each record a best-effort update of
    /// the batch names, its stored jobs (`None` when it is not stored), read
    /// under a lock.
    fn new(
        batch: &'a [JournalWrite],
        mut jobs: HashMap<JournalId, Option<Vec<BestEffortJob>>>,
    ) -> Self {
        let mut upserts: HashMap<JournalId, Upsert<'a>> = HashMap::new();
        for write in batch {
            match write {
                JournalWrite::Record(record) => {
                    let written = Cow::Borrowed(record.best_effort.as_slice());
                    let merged = match upserts.remove(&record.id) {
                        Some(previous) => Upsert {
                            record,
                            best_effort: if record.best_effort.is_empty() {
                                previous.best_effort
                            } else {
                                written
                            },
                            resolved_at: record.resolved_at.or(previous.resolved_at),
                        },
                        None => Upsert {
                            record,
                            best_effort: written,
                            resolved_at: record.resolved_at,
                        },
                    };
                    // A record updated by this batch: its jobs are known in
                    // full from here on.
                    if let Some(current) = jobs.get_mut(&record.id) {
                        let next = if record.best_effort.is_empty() {
                            current.take().unwrap_or_default()
                        } else {
                            record.best_effort.clone()
                        };
                        *current = Some(next);
                    }
                    upserts.insert(record.id, merged);
                }
                JournalWrite::BestEffort { id, job } => {
                    // A record not (yet) stored is left alone.
                    if let Some(Some(current)) = jobs.get_mut(id) {
                        set_job(current, job);
                    }
                }
            }
        }
        let mut upserts: Vec<Upsert<'a>> = upserts
            .into_values()
            .map(|mut upsert| {
                if let Some(Some(current)) = jobs.remove(&upsert.record.id) {
                    upsert.best_effort = Cow::Owned(current);
                }
                upsert
            })
            .collect();
        upserts.sort_unstable_by_key(|upsert| upsert.record.id);
        let mut jobs_only: Vec<(JournalId, Vec<BestEffortJob>)> = jobs
            .into_iter()
            .filter_map(|(id, current)| current.map(|list| (id, list)))
            .collect();
        jobs_only.sort_unstable_by_key(|(id, _)| *id);
        Self { upserts, jobs_only }
    }

    /// The upserts in runs of at most [`MAX_STATEMENT_BYTES`] of bodies (at
    /// least one row each); none for a batch of updates only.
    fn chunks(&self) -> Vec<&[Upsert<'a>]> {
        let mut chunks = Vec::new();
        let mut start = 0;
        let mut bytes = 0usize;
        for (i, upsert) in self.upserts.iter().enumerate() {
            let size = upsert.record.body.as_ref().map_or(0, |b| b.len()) + 256;
            if i > start && bytes + size > MAX_STATEMENT_BYTES {
                chunks.push(&self.upserts[start..i]);
                start = i;
                bytes = 0;
            }
            bytes += size;
        }
        if start < self.upserts.len() {
            chunks.push(&self.upserts[start..]);
        }
        chunks
    }
}

impl PostgresJournalBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            table: DEFAULT_TABLE.to_owned(),
            max_connections: 8,
            statement_timeout: Duration::from_secs(5),
            durable: DurableSettings::new(Self::DEFAULT_OPERATION_TIMEOUT),
        }
    }

    /// The table to keep records in (default [`DEFAULT_TABLE`]): an
    /// identifier of 1 to 48 ASCII letters, digits or underscores, optionally
    /// `schema.` qualified. It is spliced into SQL, so nothing else is
    /// accepted.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// How many connections the pool may hold (default 8; URL only). The
    /// pipeline writes from one background task (and, for deliveries answered
    /// non-2xx, before the answer); the rest serve operators' queries.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The server-side `statement_timeout` of each connection (default 5 s;
    /// URL only).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    journal_setters!(
        connect_timeout,
        operation_timeout("waiting for a pooled connection"),
        purge_batch_size,
    );

    /// Checks the settings and returns the journal; connects to nothing yet.
    pub fn build(self) -> Result<PostgresJournal, StoreConfigError> {
        validate_table_name(&self.table, true)?;
        let limits = self.durable.check(
            self.max_connections,
            &[("statement", self.statement_timeout)],
        )?;
        let connect_timeout = self.durable.connect_timeout;
        let pool = match self.source {
            Source::Pool(pool) => pool,
            Source::Url(url) => {
                let mut config: tokio_postgres::Config = url
                    .parse()
                    .map_err(|err| StoreConfigError::InvalidUrl(Box::new(err)))?;
                config.connect_timeout(connect_timeout);
                let statement_timeout = format!(
                    "-c statement_timeout={}",
                    duration_ms(self.statement_timeout)
                );
                let options = match config.get_options() {
                    Some(existing) => format!("{existing} {statement_timeout}"),
                    None => statement_timeout,
                };
                config.options(&options);
                if config.get_application_name().is_none() {
                    config.application_name("hookgate");
                }
                let manager = Manager::from_config(
                    config,
                    NoTls,
                    ManagerConfig {
                        recycling_method: RecyclingMethod::Fast,
                    },
                );
                Pool::builder(manager)
                    .max_size(self.max_connections)
                    .wait_timeout(Some(limits.operation_timeout))
                    .create_timeout(Some(connect_timeout))
                    .recycle_timeout(Some(connect_timeout))
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(|err| StoreConfigError::Pool(Box::new(err)))?
            }
        };
        Ok(PostgresJournal {
            pool,
            sql: Arc::new(Statements::new(&self.table)),
            table: self.table,
            limits,
            migrated: Arc::new(OnceCell::new()),
        })
    }
}

impl fmt::Debug for PostgresJournalBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out: it may hold a password.
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
        };
        let mut out = f.debug_struct("PostgresJournalBuilder");
        out.field("source", &source)
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("statement_timeout", &self.statement_timeout);
        self.debug_durable(&mut out);
        out.finish()
    }
}

impl fmt::Debug for PostgresJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresJournal")
            .field("table", &self.table)
            .field("pool_size", &self.pool.status().max_size)
            .field("operation_timeout", &self.limits.operation_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Journal for PostgresJournal {
    async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run("PostgreSQL journal write", self.write_batch(&batch))
            .await
    }

    async fn get(&self, id: JournalId) -> Result<Option<JournalRecord>, JournalError> {
        self.run("PostgreSQL journal get", async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&self.sql.get)
                .await
                .map_err(pg_error)?;
            let row = client
                .query_opt(&statement, &[&&id.to_bytes()[..]])
                .await
                .map_err(pg_error)?;
            row.map(|row| decode_row(&row, true)).transpose()
        })
        .await
    }

    async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError> {
        let size = query.page_size();
        let (sql, params) = list_statement::<Self>(&self.table, query);
        let rows = self
            .run("PostgreSQL journal list", self.query(&sql, &params))
            .await?;
        let fetched = rows
            .iter()
            .map(|row| decode_row(row, false))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JournalPage::from_fetched(fetched, size))
    }

    async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError> {
        let (sql, params) = counts_statement::<Self>(&self.table, filter);
        let rows = self
            .run("PostgreSQL journal counts", self.query(&sql, &params))
            .await?;
        let mut counts = StatusCounts::new();
        for row in &rows {
            let cells = PgCells { row, id: None };
            let status = parse_status(None, cells.required_str(0, "status")?)?;
            let n: i64 = cells.get(1, "count")?;
            *counts.entry(status).or_default() += n.unsigned_abs();
        }
        Ok(counts)
    }

    async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError> {
        self.run("PostgreSQL journal mark_resolved", async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&self.sql.mark_resolved)
                .await
                .map_err(pg_error)?;
            let changed = client
                .execute(&statement, &[&&id.to_bytes()[..], &pg_time(at, false)])
                .await
                .map_err(pg_error)?;
            Ok(changed > 0)
        })
        .await
    }

    /// Deletes the records received before `before` (by the index on
    /// `received_at`), in batches of
    /// [`PostgresJournalBuilder::purge_batch_size`], each its own short
    /// transaction that skips records being written at that moment.
    async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError> {
        let cutoff = pg_time(before, true);
        let batch = self.limits.purge_batch;
        purge_in_batches(batch, || {
            self.run("PostgreSQL journal purge", async move {
                let client = self.client().await?;
                let statement = client
                    .prepare_cached(&self.sql.purge)
                    .await
                    .map_err(pg_error)?;
                client
                    .execute(&statement, &[&cutoff, &batch])
                    .await
                    .map_err(pg_error)
            })
        })
        .await
    }
}

/// A parameter of a list or a count.
type Param = Box<dyn ToSql + Sync + Send>;

impl PostgresJournal {
    /// Runs one list or count statement.
    async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>, JournalError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        let params: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        client.query(&statement, &params).await.map_err(pg_error)
    }
}

impl Dialect for PostgresJournal {
    type Param = Param;
    const PLACEHOLDER: char = '$';

    fn text(value: &str) -> Param {
        Box::new(value.to_owned())
    }

    fn int(value: i64) -> Param {
        Box::new(value)
    }

    fn time_ceil(at: SystemTime) -> Param {
        Box::new(pg_time(at, true))
    }

    fn id(id: JournalId) -> Param {
        Box::new(id.to_bytes().to_vec())
    }

    /// `status = ANY($1::text[])`, one array parameter.
    fn status_in(names: &[&'static str], params: &mut Params<Param>) -> String {
        let p = params.add(Box::new(names.to_vec()));
        format!("status = ANY({p}::text[])")
    }
}

/// `at` in whole microseconds, rounded down (or up, `round_up`), within what
/// is stored: 1970 to the year 9999.
fn pg_time(at: SystemTime, round_up: bool) -> SystemTime {
    let us = u64::try_from(units_since_epoch(at, 1_000, round_up))
        .unwrap_or(u64::MAX)
        .min(MAX_TIME_SECS * 1_000_000);
    UNIX_EPOCH + Duration::from_micros(us)
}

/// The cells of one row, read with the column types of the schema (a column
/// of another type, or a NULL where none is written, cannot be read).
struct PgCells<'r> {
    row: &'r Row,
    id: Option<JournalId>,
}

impl<'r> PgCells<'r> {
    fn get<T: FromSql<'r>>(&self, col: usize, field: &str) -> Result<T, JournalError> {
        self.row
            .try_get(col)
            .map_err(|err| corrupt(self.id, field, format!("cannot be read: {err}")))
    }
}

impl Cells for PgCells<'_> {
    fn record(&self) -> Option<JournalId> {
        self.id
    }

    fn set_record(&mut self, id: JournalId) {
        self.id = Some(id);
    }

    fn text(&self, col: usize, field: &str) -> Result<Option<String>, JournalError> {
        self.get(col, field)
    }

    fn required_str(&self, col: usize, field: &str) -> Result<&str, JournalError> {
        self.get(col, field)
    }

    fn int(&self, col: usize, field: &str) -> Result<Option<i64>, JournalError> {
        self.get(col, field)
    }

    fn time(&self, col: usize, field: &str) -> Result<Option<SystemTime>, JournalError> {
        self.get(col, field)
    }

    fn bytes(&self, col: usize, field: &str) -> Result<Option<&[u8]>, JournalError> {
        self.get(col, field)
    }

    /// `timestamptz NOT NULL`.
    fn required_time(&self, col: usize, field: &str) -> Result<SystemTime, JournalError> {
        self.get(col, field)
    }

    /// `integer NOT NULL`, 32 bits.
    fn http_status(&self, col: usize) -> Result<i64, JournalError> {
        self.get::<i32>(col, "http_status").map(i64::from)
    }
}

/// A record from a row of [`COLUMNS`] (and `body` after them, `with_body`).
fn decode_row(row: &Row, with_body: bool) -> Result<JournalRecord, JournalError> {
    decode(PgCells { row, id: None }, with_body)
}
