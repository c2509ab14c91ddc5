//! [`SqliteJournal`]: the delivery journal in an SQLite database (feature
//! `sqlite`).
//!
//! One row per record, in one table (default [`DEFAULT_TABLE`]):
//!
//! | column | type | holds |
//! |---|---|---|
//! | `id` | `BLOB`, primary key | the [`JournalId`], 16 bytes big-endian, so byte order is id order |
//! | `received_at` | `INTEGER` | when the delivery was received, Unix milliseconds |
//! | `provider`, `event_id`, `kind`, `delivery_id` | `TEXT`, nullable | as in [`JournalRecord`] |
//! | `status` | `TEXT` | the [`DeliveryStatus::as_str`](super::DeliveryStatus::as_str) name |
//! | `http_status` | `INTEGER` | the HTTP status answered |
//! | `attempt` | `INTEGER`, nullable | the attempt number (fencing token) |
//! | `verify_us`, `claim_us`, `critical_us`, `total_us` | `INTEGER`, nullable | the [`Durations`](super::Durations), in microseconds |
//! | `error` | `TEXT`, nullable | why it failed |
//! | `best_effort` | `TEXT` | a JSON array of `{"handler", "attempts", "state"}` objects, `state` a [`BestEffortState::as_str`](super::BestEffortState::as_str) name |
//! | `body_size` | `INTEGER` | the body's size in bytes |
//! | `body_digest` | `BLOB`, nullable | the body's SHA-256, 32 bytes |
//! | `body` | `BLOB`, nullable | the body |
//! | `headers` | `TEXT` | a JSON array of `[name, value]` pairs |
//! | `replay_of` | `BLOB`, nullable | the id of the record this one replays, 16 bytes |
//! | `resolved_at` | `INTEGER`, nullable | when it was marked resolved, Unix milliseconds |
//!
//! and these indexes, each for the queries named:
//!
//! - the primary key on `id`: [`get`](Journal::get),
//!   [`mark_resolved`](Journal::mark_resolved), best-effort updates, and the
//!   newest-first walk of every [`list`](Journal::list) (`ORDER BY id DESC`,
//!   the cursor being `id < cursor`, which keeps pages stable while records
//!   are added);
//! - `<table>_received_at` on `received_at`:
//!   [`purge_before`](Journal::purge_before), and `since`/`until` filters;
//! - `<table>_status` on `(status, id)`: lists of some statuses (the failed
//!   deliveries an operator looks for), newest first, and
//!   [`counts`](Journal::counts);
//! - `<table>_event` on `(provider, event_id)`: the deliveries of one event.
//!
//! Times are kept to the millisecond and durations to the microsecond (times
//! before 1970 are kept as 1970); filters compare the times as stored. A row
//! this journal cannot read (an unknown status name, bad JSON, a blob of the
//! wrong length, a value of the wrong type) is reported as
//! [`JournalError::Corrupt`], naming the record and the column.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::query::{JournalFilter, JournalPage, JournalQuery, StatusCounts};
use super::record::{JournalId, JournalRecord, JournalWrite};
use super::sql::{
    corrupt, counts_statement, decode, decode_jobs, encode_headers, encode_jobs, journal_setters,
    list_statement, micros, parse_status, purge_in_batches, set_job, timed, u64_to_i64,
    units_since_epoch, Cells, Dialect, Params, COLUMNS,
};
use super::{Journal, JournalError};
use crate::store::durable::{validate_table_name, DurableSettings, Limits, StoreConfigError};

/// The default table name.
pub const DEFAULT_TABLE: &str = "hookgate_journal";

/// A [`Journal`] in an SQLite database file, or in memory.
///
/// Build one with [`SqliteJournal::file`] or [`SqliteJournal::memory`].
/// Nothing is opened while building: the first operation opens the database
/// and creates the table if it does not exist (or call
/// [`SqliteJournal::migrate`] at start-up). Clones share the same
/// connections. The schema is in the [module docs](self).
///
/// A batch of writes is one `BEGIN IMMEDIATE` transaction on prepared
/// statements. Several journals, in one process or several, may share one
/// database file (also with a [`SqliteStore`](crate::store::sqlite::SqliteStore),
/// in its own table): the file is put in WAL mode, so lists read beside the
/// writer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::journal::sqlite::SqliteJournal;
/// use hookgate::journal::{
///     DeliveryStatus, Journal, JournalFilter, JournalId, JournalQuery, JournalRecord, JournalWrite,
/// };
/// use std::time::SystemTime;
///
/// let journal = SqliteJournal::memory().build()?;
/// let mut record = JournalRecord::new(JournalId::generate(), SystemTime::now(), DeliveryStatus::CriticalFailed);
/// record.provider = Some("github".into());
/// record.http_status = 500;
/// record.body = Some(bytes::Bytes::from_static(b"{}"));
/// journal.write(vec![JournalWrite::Record(record.clone())]).await?;
///
/// let stored = journal.get(record.id).await?.expect("written");
/// assert_eq!(stored.body.as_deref(), Some(&b"{}"[..]));
/// let failed = JournalFilter { statuses: vec![DeliveryStatus::CriticalFailed], ..JournalFilter::default() };
/// let page = journal.list(&JournalQuery::new(failed.clone())).await?;
/// assert_eq!(page.records[0].id, record.id);
/// assert_eq!(page.records[0].body, None, "lists leave bodies out");
/// assert!(journal.mark_resolved(record.id, SystemTime::now()).await?);
/// assert_eq!(journal.counts(&failed).await?.get(&DeliveryStatus::CriticalFailed), Some(&1));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteJournal {
    inner: Arc<Inner>,
}

struct Inner {
    location: Location,
    table: String,
    sql: Statements,
    busy_timeout: Duration,
    limits: Limits,
    /// Open connections not in use.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection that may exist.
    permits: Arc<Semaphore>,
    migrated: OnceCell<()>,
}

#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    Memory,
}

/// The SQL text of each fixed operation, with the table name spliced in once.
struct Statements {
    migrate: String,
    upsert: String,
    select_jobs: String,
    update_jobs: String,
    get: String,
    mark_resolved: String,
    purge: String,
}

impl Statements {
    fn new(table: &str) -> Self {
        Self {
            migrate: format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    id          BLOB    NOT NULL PRIMARY KEY,
                    received_at INTEGER NOT NULL,
                    provider    TEXT,
                    event_id    TEXT,
                    kind        TEXT,
                    delivery_id TEXT,
                    status      TEXT    NOT NULL,
                    http_status INTEGER NOT NULL,
                    attempt     INTEGER,
                    verify_us   INTEGER,
                    claim_us    INTEGER,
                    critical_us INTEGER,
                    total_us    INTEGER,
                    error       TEXT,
                    best_effort TEXT    NOT NULL DEFAULT '[]',
                    body_size   INTEGER NOT NULL,
                    body_digest BLOB,
                    body        BLOB,
                    headers     TEXT    NOT NULL DEFAULT '[]',
                    replay_of   BLOB,
                    resolved_at INTEGER
                 );
                 CREATE INDEX IF NOT EXISTS {table}_received_at ON {table} (received_at);
                 CREATE INDEX IF NOT EXISTS {table}_status ON {table} (status, id);
                 CREATE INDEX IF NOT EXISTS {table}_event ON {table} (provider, event_id);"
            ),
            // A record written again replaces the stored one but keeps its
            // resolution, and its jobs when the new record lists none (`[]`
            // is how an empty list is encoded).
            upsert: format!(
                "INSERT INTO {table} (id, received_at, provider, event_id, kind, delivery_id,
                    status, http_status, attempt, verify_us, claim_us, critical_us, total_us,
                    error, best_effort, body_size, body_digest, body, headers, replay_of,
                    resolved_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21)
                 ON CONFLICT (id) DO UPDATE SET
                    received_at = excluded.received_at, provider = excluded.provider,
                    event_id = excluded.event_id, kind = excluded.kind,
                    delivery_id = excluded.delivery_id, status = excluded.status,
                    http_status = excluded.http_status, attempt = excluded.attempt,
                    verify_us = excluded.verify_us, claim_us = excluded.claim_us,
                    critical_us = excluded.critical_us, total_us = excluded.total_us,
                    error = excluded.error,
                    best_effort = CASE WHEN excluded.best_effort = '[]'
                        THEN {table}.best_effort ELSE excluded.best_effort END,
                    body_size = excluded.body_size, body_digest = excluded.body_digest,
                    body = excluded.body, headers = excluded.headers,
                    replay_of = excluded.replay_of,
                    resolved_at = COALESCE(excluded.resolved_at, {table}.resolved_at)"
            ),
            select_jobs: format!("SELECT best_effort FROM {table} WHERE id = ?1"),
            update_jobs: format!("UPDATE {table} SET best_effort = ?2 WHERE id = ?1"),
            get: format!("SELECT {COLUMNS}, body FROM {table} WHERE id = ?1"),
            mark_resolved: format!("UPDATE {table} SET resolved_at = ?2 WHERE id = ?1"),
            purge: format!(
                "DELETE FROM {table} WHERE rowid IN (
                    SELECT rowid FROM {table} WHERE received_at < ?1 LIMIT ?2
                 )"
            ),
        }
    }
}

/// Settings for a [`SqliteJournal`]; every setting has a production default.
#[derive(Clone)]
#[must_use = "call `build()` to get the journal"]
pub struct SqliteJournalBuilder {
    location: Location,
    table: String,
    max_connections: usize,
    busy_timeout: Duration,
    durable: DurableSettings,
}

impl SqliteJournal {
    /// Settings for a journal in the database file at `path` (created if
    /// missing).
    pub fn file(path: impl AsRef<Path>) -> SqliteJournalBuilder {
        SqliteJournalBuilder::new(Location::File(path.as_ref().to_path_buf()))
    }

    /// Settings for a journal in a private in-memory database, gone when the
    /// last clone of the journal is dropped. It uses a single connection.
    pub fn memory() -> SqliteJournalBuilder {
        SqliteJournalBuilder::new(Location::Memory)
    }

    /// Creates the table and its indexes if they do not exist. Idempotent,
    /// and safe to run from several instances at once; operations run it on
    /// first use, so calling it is only needed to fail fast at start-up.
    pub async fn migrate(&self) -> Result<(), JournalError> {
        self.inner
            .migrated
            .get_or_try_init(|| async {
                let inner = Arc::clone(&self.inner);
                self.run("SQLite journal migration", move |conn| {
                    conn.execute_batch(&inner.sql.migrate).map_err(sql_error)
                })
                .await
            })
            .await
            .map(|_| ())
    }

    /// The table this journal keeps its records in.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Runs `op` on a pooled connection on tokio's blocking pool, within the
    /// operation timeout. The connection goes back to the pool when `op`
    /// returns, even if the caller stopped waiting.
    async fn run<T, F>(&self, what: &'static str, op: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, JournalError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        timed(self.inner.limits.operation_timeout, what, async move {
            let permit = Arc::clone(&inner.permits)
                .acquire_owned()
                .await
                .map_err(JournalError::unavailable)?;
            let task = tokio::task::spawn_blocking(move || inner.with_connection(permit, op));
            task.await.map_err(JournalError::unavailable)?
        })
        .await
    }

    /// Migrates, then runs `op` as [`run`](Self::run) does.
    async fn migrated<T, F>(&self, what: &'static str, op: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T, JournalError> + Send + 'static,
    {
        self.migrate().await?;
        let inner = Arc::clone(&self.inner);
        self.run(what, move |conn| op(&inner, conn)).await
    }
}

impl Inner {
    /// Blocking: takes an idle connection (or opens one, as the permit
    /// allows), runs `op`, and puts the connection back.
    fn with_connection<T>(
        &self,
        permit: OwnedSemaphorePermit,
        op: impl FnOnce(&mut Connection) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let idle = self.idle.lock().map(|mut idle| idle.pop());
        let mut conn = match idle {
            Ok(Some(conn)) => conn,
            Ok(None) => self.open().map_err(sql_error)?,
            Err(_) => return Err(JournalError::unavailable(PoisonedPool)),
        };
        let result = op(&mut conn);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        drop(permit);
        result
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = match &self.location {
            Location::File(path) => {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_CREATE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(self.busy_timeout)?;
                // WAL lets lists run beside the writer; NORMAL sync is durable
                // against process crashes and costs no fsync per commit.
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn
            }
            Location::Memory => Connection::open_in_memory()?,
        };
        // The fixed statements plus the shapes of lists and counts in use.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Blocking: applies `batch` in order in one transaction.
    fn write(&self, conn: &mut Connection, batch: &[JournalWrite]) -> Result<(), JournalError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        for write in batch {
            match write {
                JournalWrite::Record(record) => {
                    let mut upsert = tx.prepare_cached(&self.sql.upsert).map_err(sql_error)?;
                    let id = record.id.to_bytes();
                    let replay_of = record.replay_of.map(JournalId::to_bytes);
                    let d = &record.durations;
                    let jobs = encode_jobs(&record.best_effort)
                        .map_err(|err| sql_error(json_error(err)))?;
                    let headers = encode_headers(&record.headers)
                        .map_err(|err| sql_error(json_error(err)))?;
                    upsert
                        .execute(rusqlite::params![
                            &id[..],
                            time_ms(record.received_at),
                            record.provider.as_deref(),
                            record.event_id,
                            record.kind,
                            record.delivery_id,
                            record.status.as_str(),
                            i64::from(record.http_status),
                            record.attempt.map(u64_to_i64),
                            d.verify.map(micros),
                            d.claim.map(micros),
                            d.critical.map(micros),
                            d.total.map(micros),
                            record.error,
                            jobs,
                            u64_to_i64(record.body_size),
                            record.body_digest.as_ref().map(|d| &d[..]),
                            record.body.as_deref(),
                            headers,
                            replay_of.as_ref().map(|r| &r[..]),
                            record.resolved_at.map(time_ms),
                        ])
                        .map_err(sql_error)?;
                }
                JournalWrite::BestEffort { id, job } => {
                    let key = id.to_bytes();
                    let stored = tx
                        .prepare_cached(&self.sql.select_jobs)
                        .and_then(|mut select| {
                            select
                                .query_row([&key[..]], |row| row.get::<_, Value>(0))
                                .optional()
                        })
                        .map_err(sql_error)?;
                    // A record not (yet) stored is left alone.
                    let Some(stored) = stored else { continue };
                    let text = match &stored {
                        Value::Text(text) => text.as_str(),
                        other => {
                            return Err(corrupt(
                                Some(*id),
                                "best_effort",
                                format!("holds {} instead of text", value_kind(other.into())),
                            ))
                        }
                    };
                    let mut jobs = decode_jobs(Some(*id), text)?;
                    set_job(&mut jobs, job);
                    tx.prepare_cached(&self.sql.update_jobs)
                        .and_then(|mut update| {
                            let jobs = encode_jobs(&jobs).map_err(json_error)?;
                            update.execute(rusqlite::params![&key[..], jobs])
                        })
                        .map_err(sql_error)?;
                }
            }
        }
        tx.commit().map_err(sql_error)
    }
}

/// A thread panicked while holding the connection list.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite connection pool was poisoned by a panic")]
struct PoisonedPool;

impl SqliteJournalBuilder {
    fn new(location: Location) -> Self {
        Self {
            location,
            table: DEFAULT_TABLE.to_owned(),
            max_connections: 2,
            busy_timeout: Duration::from_secs(5),
            durable: DurableSettings::new(Self::DEFAULT_OPERATION_TIMEOUT),
        }
    }

    /// The table to keep records in (default [`DEFAULT_TABLE`]): 1 to 48
    /// ASCII letters, digits or underscores, not starting with a digit. It is
    /// spliced into SQL, so nothing else is accepted.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// How many connections the journal may open (default 2: the writer, and
    /// a list or a `get` beside it, which WAL mode lets run at once). SQLite
    /// runs one writer at a time, so more connections mostly add lock waits.
    /// An in-memory journal always uses one: each in-memory connection is its
    /// own database.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// How long a write waits for another connection's lock before failing
    /// with [`JournalError::Unavailable`] (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    journal_setters!(
        operation_timeout("waiting for a connection"),
        purge_batch_size
    );

    /// Checks the settings and returns the journal; opens nothing yet.
    pub fn build(self) -> Result<SqliteJournal, StoreConfigError> {
        validate_table_name(&self.table, false)?;
        let limits = self
            .durable
            .check(self.max_connections, &[("busy", self.busy_timeout)])?;
        let connections = match self.location {
            Location::File(_) => self.max_connections,
            Location::Memory => 1,
        };
        Ok(SqliteJournal {
            inner: Arc::new(Inner {
                sql: Statements::new(&self.table),
                location: self.location,
                table: self.table,
                busy_timeout: self.busy_timeout,
                limits,
                idle: Mutex::new(Vec::with_capacity(connections)),
                permits: Arc::new(Semaphore::new(connections)),
                migrated: OnceCell::new(),
            }),
        })
    }
}

impl fmt::Debug for SqliteJournalBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("SqliteJournalBuilder");
        out.field("location", &self.location)
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("busy_timeout", &self.busy_timeout);
        self.debug_durable(&mut out);
        out.finish()
    }
}

impl fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteJournal")
            .field("location", &self.inner.location)
            .field("table", &self.inner.table)
            .field("busy_timeout", &self.inner.busy_timeout)
            .field("operation_timeout", &self.inner.limits.operation_timeout)
            .finish_non_exhaustive()
    }
}

fn sql_error(err: rusqlite::Error) -> JournalError {
    JournalError::unavailable(err)
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.migrated("SQLite journal write", move |inner, conn| {
            inner.write(conn, &batch)
        })
        .await
    }

    async fn get(&self, id: JournalId) -> Result<Option<JournalRecord>, JournalError> {
        self.migrated("SQLite journal get", move |inner, conn| {
            let mut select = conn.prepare_cached(&inner.sql.get).map_err(sql_error)?;
            let mut rows = select.query([&id.to_bytes()[..]]).map_err(sql_error)?;
            match rows.next().map_err(sql_error)? {
                Some(row) => decode_row(row, true).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError> {
        let size = query.page_size();
        let (sql, params) = list_statement::<Self>(&self.inner.table, query);
        let fetched = self
            .migrated("SQLite journal list", move |_, conn| {
                let mut select = conn.prepare_cached(&sql).map_err(sql_error)?;
                let mut rows = select
                    .query(rusqlite::params_from_iter(params))
                    .map_err(sql_error)?;
                let mut records = Vec::with_capacity(size + 1);
                while let Some(row) = rows.next().map_err(sql_error)? {
                    records.push(decode_row(row, false)?);
                }
                Ok(records)
            })
            .await?;
        Ok(JournalPage::from_fetched(fetched, size))
    }

    async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError> {
        let (sql, params) = counts_statement::<Self>(&self.inner.table, filter);
        self.migrated("SQLite journal counts", move |_, conn| {
            let mut select = conn.prepare_cached(&sql).map_err(sql_error)?;
            let mut rows = select
                .query(rusqlite::params_from_iter(params))
                .map_err(sql_error)?;
            let mut counts = StatusCounts::new();
            while let Some(row) = rows.next().map_err(sql_error)? {
                let cells = SqliteCells { row, id: None };
                let status = parse_status(None, cells.required_str(0, "status")?)?;
                let n = cells.required(cells.uint(1, "count")?, "count")?;
                *counts.entry(status).or_default() += n;
            }
            Ok(counts)
        })
        .await
    }

    async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError> {
        let changed = self
            .migrated("SQLite journal mark_resolved", move |inner, conn| {
                conn.prepare_cached(&inner.sql.mark_resolved)
                    .and_then(|mut update| {
                        update.execute(rusqlite::params![&id.to_bytes()[..], time_ms(at)])
                    })
                    .map_err(sql_error)
            })
            .await?;
        Ok(changed > 0)
    }

    /// Deletes the records received before `before` (by the index on
    /// `received_at`), in batches of [`SqliteJournalBuilder::purge_batch_size`],
    /// each its own transaction, so writes run between batches.
    async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError> {
        let cutoff = time_ms_ceil(before);
        let batch = self.inner.limits.purge_batch;
        purge_in_batches(batch, || async move {
            let removed = self
                .migrated("SQLite journal purge", move |inner, conn| {
                    conn.prepare_cached(&inner.sql.purge)
                        .and_then(|mut delete| delete.execute([cutoff, batch]))
                        .map_err(sql_error)
                })
                .await?;
            Ok(u64::try_from(removed).unwrap_or(u64::MAX))
        })
        .await
    }
}

impl Dialect for SqliteJournal {
    type Param = Value;
    const PLACEHOLDER: char = '?';

    fn text(value: &str) -> Value {
        Value::Text(value.to_owned())
    }

    fn int(value: i64) -> Value {
        Value::Integer(value)
    }

    fn time_ceil(at: SystemTime) -> Value {
        Value::Integer(time_ms_ceil(at))
    }

    fn id(id: JournalId) -> Value {
        Value::Blob(id.to_bytes().to_vec())
    }

    /// `status IN (?1, ?2, …)`, a parameter a name.
    fn status_in(names: &[&'static str], params: &mut Params<Value>) -> String {
        let list: Vec<String> = names
            .iter()
            .map(|name| params.add(Self::text(name)))
            .collect();
        format!("status IN ({})", list.join(", "))
    }
}

/// `at` in whole Unix milliseconds, rounded down (1970 for earlier times).
fn time_ms(at: SystemTime) -> i64 {
    i64::try_from(units_since_epoch(at, 1_000_000, false)).unwrap_or(i64::MAX)
}

/// `at` in whole Unix milliseconds, rounded up (1970 for earlier times).
fn time_ms_ceil(at: SystemTime) -> i64 {
    i64::try_from(units_since_epoch(at, 1_000_000, true)).unwrap_or(i64::MAX)
}

/// A JSON column that could not be encoded, as a parameter error.
fn json_error(err: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(err.into())
}

fn value_kind(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

/// The cells of one row, read with SQLite's storage classes: `INTEGER`
/// numbers and Unix milliseconds, `TEXT` and `BLOB`.
struct SqliteCells<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    id: Option<JournalId>,
}

impl SqliteCells<'_, '_> {
    fn value(&self, col: usize, field: &str) -> Result<ValueRef<'_>, JournalError> {
        self.row
            .get_ref(col)
            .map_err(|err| corrupt(self.id, field, format!("cannot be read: {err}")))
    }

    fn wrong_type(&self, field: &str, value: ValueRef<'_>, expected: &str) -> JournalError {
        corrupt(
            self.id,
            field,
            format!("holds {} instead of {expected}", value_kind(value)),
        )
    }

    fn str(&self, col: usize, field: &str) -> Result<Option<&str>, JournalError> {
        match self.value(col, field)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| corrupt(self.id, field, "is not valid UTF-8")),
            other => Err(self.wrong_type(field, other, "text")),
        }
    }
}

impl Cells for SqliteCells<'_, '_> {
    fn record(&self) -> Option<JournalId> {
        self.id
    }

    fn set_record(&mut self, id: JournalId) {
        self.id = Some(id);
    }

    fn text(&self, col: usize, field: &str) -> Result<Option<String>, JournalError> {
        Ok(self.str(col, field)?.map(str::to_owned))
    }

    fn required_str(&self, col: usize, field: &str) -> Result<&str, JournalError> {
        let text = self.str(col, field)?;
        self.required(text, field)
    }

    fn int(&self, col: usize, field: &str) -> Result<Option<i64>, JournalError> {
        match self.value(col, field)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(n) => Ok(Some(n)),
            other => Err(self.wrong_type(field, other, "an integer")),
        }
    }

    fn time(&self, col: usize, field: &str) -> Result<Option<SystemTime>, JournalError> {
        self.uint(col, field)?
            .map(|ms| {
                UNIX_EPOCH
                    .checked_add(Duration::from_millis(ms))
                    .ok_or_else(|| corrupt(self.id, field, format!("is out of range ({ms} ms)")))
            })
            .transpose()
    }

    fn bytes(&self, col: usize, field: &str) -> Result<Option<&[u8]>, JournalError> {
        match self.value(col, field)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(bytes) => Ok(Some(bytes)),
            other => Err(self.wrong_type(field, other, "a blob")),
        }
    }
}

/// A record from a row of [`COLUMNS`] (and `body` after them, `with_body`).
fn decode_row(row: &rusqlite::Row<'_>, with_body: bool) -> Result<JournalRecord, JournalError> {
    decode(SqliteCells { row, id: None }, with_body)
}
