//! [`SqliteStore`]: the idempotency protocol in an SQLite database (feature `sqlite`).
//!
//! Every claim runs in one `BEGIN IMMEDIATE` transaction, which takes SQLite's
//! write lock before reading, so concurrent claims of a key, from this process or
//! from other processes sharing the file, are serialised: exactly one acquires.
//! SQLite has no server, so leases and retention are measured with the store's
//! [`Clock`] (the process clock by default); instances sharing one file should
//! run on one host.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::durable::{
    self, duration_ms, fingerprint_from_slice, from_unix_ms, settled, stale, token_from_i64,
    token_to_i64, validate_table_name, with_timeout, DurableSettings, Limits, StoreConfigError,
};
use super::protocol::{self, Decision, Record, State};
use super::{
    Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError, Watermark, WatermarkStore,
};
use crate::clock::{Clock, SystemClock};

/// The default table name.
pub const DEFAULT_TABLE: &str = "hookgate_idempotency";

/// An [`IdempotencyStore`] in an SQLite database file, or in memory.
///
/// Build one with [`SqliteStore::file`] or [`SqliteStore::memory`]. Nothing is
/// opened while building: the first operation opens the database and creates the
/// table if it does not exist (or call [`SqliteStore::migrate`] at start-up).
/// Clones share the same connections.
///
/// Several `SqliteStore`s, in one process or several, may share one database
/// file: the file is put in WAL mode and every claim is one `BEGIN IMMEDIATE`
/// transaction, so claims stay atomic across all of them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::store::sqlite::SqliteStore;
/// use hookgate::{Claim, Fingerprint, IdempotencyStore};
/// use std::time::Duration;
///
/// let store = SqliteStore::memory().build()?;
/// let fp = Fingerprint::of(b"{}");
/// let Claim::Acquired(token) = store.claim("stripe:evt_1", fp, Duration::from_secs(30)).await? else {
///     panic!("a new key is acquired");
/// };
/// store.complete("stripe:evt_1", token, Duration::from_secs(72 * 3600)).await?;
/// assert_eq!(store.claim("stripe:evt_1", fp, Duration::from_secs(30)).await?, Claim::Completed);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    location: Location,
    table: String,
    sql: Statements,
    busy_timeout: Duration,
    limits: Limits,
    clock: Arc<dyn Clock>,
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

/// The SQL text of each operation, with the table name spliced in once.
struct Statements {
    migrate: String,
    select: String,
    insert: String,
    update_claim: String,
    complete: String,
    release: String,
    purge: String,
    purge_unsettled: String,
    watermark: String,
    advance: String,
    purge_watermarks: String,
}

impl Statements {
    fn new(table: &str) -> Self {
        Self {
            migrate: format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    event_key   TEXT    NOT NULL PRIMARY KEY,
                    fingerprint BLOB    NOT NULL,
                    state       TEXT    NOT NULL CHECK (state IN ('leased', 'released', 'completed')),
                    token       INTEGER NOT NULL,
                    expires_at  INTEGER NOT NULL,
                    reason      TEXT,
                    updated_at  INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at);
                 CREATE INDEX IF NOT EXISTS {table}_unsettled ON {table} (updated_at)
                    WHERE state <> 'completed';
                 CREATE TABLE IF NOT EXISTS {table}_watermarks (
                    object      TEXT    NOT NULL PRIMARY KEY,
                    at_ms       INTEGER NOT NULL,
                    expires_at  INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS {table}_watermarks_expires_at
                    ON {table}_watermarks (expires_at);"
            ),
            watermark: format!(
                "SELECT at_ms FROM {table}_watermarks WHERE object = ?1 AND expires_at > ?2"
            ),
            // One statement, so one write lock: concurrent advances of an
            // object each keep the larger time (an atomic maximum). ?2 the
            // time, ?3 the end of retention, ?4 now; an expired watermark is
            // replaced, whatever its time.
            advance: format!(
                "INSERT INTO {table}_watermarks AS cur (object, at_ms, expires_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (object) DO UPDATE
                    SET at_ms = CASE WHEN cur.expires_at <= ?4 THEN excluded.at_ms
                                     ELSE max(cur.at_ms, excluded.at_ms) END,
                        expires_at = CASE WHEN cur.expires_at <= ?4 THEN excluded.expires_at
                                          ELSE max(cur.expires_at, excluded.expires_at) END
                 RETURNING at_ms"
            ),
            purge_watermarks: format!(
                "DELETE FROM {table}_watermarks WHERE object IN (
                    SELECT object FROM {table}_watermarks WHERE expires_at <= ?1 LIMIT ?2
                 )"
            ),
            select: format!(
                "SELECT fingerprint, state, token, expires_at FROM {table} WHERE event_key = ?1"
            ),
            insert: format!(
                "INSERT INTO {table} (event_key, fingerprint, state, token, expires_at, reason, updated_at)
                 VALUES (?1, ?2, 'leased', ?3, ?4, NULL, ?5)"
            ),
            update_claim: format!(
                "UPDATE {table} SET fingerprint = ?2, state = 'leased', token = ?3,
                    expires_at = ?4, reason = NULL, updated_at = ?5
                 WHERE event_key = ?1"
            ),
            complete: format!(
                "UPDATE {table} SET state = 'completed', expires_at = ?3, reason = NULL, updated_at = ?4
                 WHERE event_key = ?1 AND token = ?2 AND state = 'leased'"
            ),
            release: format!(
                "UPDATE {table} SET state = 'released', reason = ?3, updated_at = ?4
                 WHERE event_key = ?1 AND token = ?2 AND state = 'leased'"
            ),
            purge: format!(
                "DELETE FROM {table} WHERE event_key IN (
                    SELECT event_key FROM {table}
                     WHERE state = 'completed' AND expires_at <= ?1 LIMIT ?2
                 )"
            ),
            // ?1 is now minus the unsettled retention. A lease ends after its
            // claim (`updated_at <= expires_at`), so the range on `updated_at`
            // finds every candidate through the partial index; the term
            // `state <> 'completed'` repeats the index's condition word for word,
            // which SQLite needs to use a partial index.
            purge_unsettled: format!(
                "DELETE FROM {table} WHERE event_key IN (
                    SELECT event_key FROM {table}
                     WHERE state <> 'completed' AND updated_at <= ?1
                       AND (state = 'released' OR expires_at <= ?1)
                     LIMIT ?2
                 )"
            ),
        }
    }
}

/// Settings for a [`SqliteStore`]; every setting has a production default.
#[derive(Clone)]
#[must_use = "call `build()` to get the store"]
pub struct SqliteStoreBuilder {
    location: Location,
    table: String,
    max_connections: usize,
    busy_timeout: Duration,
    durable: DurableSettings,
    clock: Arc<dyn Clock>,
}

impl SqliteStore {
    /// Settings for a store in the database file at `path` (created if missing).
    pub fn file(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder::new(Location::File(path.as_ref().to_path_buf()))
    }

    /// Settings for a store in a private in-memory database, gone when the last
    /// clone of the store is dropped. It uses a single connection.
    pub fn memory() -> SqliteStoreBuilder {
        SqliteStoreBuilder::new(Location::Memory)
    }

    /// Creates the table and its index if they do not exist. Idempotent, and
    /// safe to run from several instances at once; operations run it on first
    /// use, so calling it is only needed to fail fast at start-up.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.inner
            .migrated
            .get_or_try_init(|| async {
                let inner = Arc::clone(&self.inner);
                self.run(move |conn| {
                    conn.execute_batch(&inner.sql.migrate)
                        .map_err(StoreError::unavailable)
                })
                .await
            })
            .await
            .map(|_| ())
    }

    /// The table this store keeps its keys in.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Runs `op` on a pooled connection on tokio's blocking pool, within the
    /// operation timeout. The connection goes back to the pool when `op`
    /// returns, even if the caller stopped waiting.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        with_timeout(
            self.inner.limits.operation_timeout,
            "SQLite operation",
            async move {
                let permit = Arc::clone(&inner.permits)
                    .acquire_owned()
                    .await
                    .map_err(StoreError::unavailable)?;
                let task = tokio::task::spawn_blocking(move || inner.with_connection(permit, op));
                task.await.map_err(StoreError::unavailable)?
            },
        )
        .await
    }

    /// Completes or releases `key` if `token` holds its lease.
    async fn settle(
        &self,
        key: &str,
        token: FencingToken,
        settle: Settle,
    ) -> Result<(), StoreError> {
        self.migrate().await?;
        let Some(stored_token) = token_to_i64(token) else {
            return Err(stale(key, token));
        };
        let inner = Arc::clone(&self.inner);
        let owned_key = key.to_owned();
        let changed = self
            .run(move |conn| {
                let now = clock_ms(&*inner.clock);
                let (sql, value) = match settle {
                    Settle::Complete { retention_ms } => (
                        &inner.sql.complete,
                        Value::Integer(now.saturating_add(retention_ms)),
                    ),
                    Settle::Release { reason } => (&inner.sql.release, Value::Text(reason)),
                };
                conn.prepare_cached(sql)
                    .and_then(|mut update| {
                        update.execute(rusqlite::params![owned_key, stored_token, value, now])
                    })
                    .map_err(sql_error)
            })
            .await?;
        settled(key, token, changed == 1)
    }

    fn now_ms(&self) -> i64 {
        clock_ms(&*self.inner.clock)
    }

    /// Runs `op` on one of the store's connections (on tokio's blocking
    /// pool, within the operation timeout) once the table exists: the
    /// transactional handlers and the outbox share the store's connections.
    /// `op` runs to its end even when the caller stops waiting.
    pub(crate) async fn run_migrated<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.migrate().await?;
        self.run(op).await
    }

    /// The completion statement (`?1` key, `?2` token, `?3` end of retention
    /// in Unix ms, `?4` now in Unix ms).
    pub(crate) fn complete_sql(&self) -> &str {
        &self.inner.sql.complete
    }

    /// The store's clock in Unix milliseconds.
    pub(crate) fn clock_ms(&self) -> i64 {
        self.now_ms()
    }
}

fn clock_ms(clock: &dyn Clock) -> i64 {
    clock.now_unix_millis()
}

impl Inner {
    /// Blocking: takes an idle connection (or opens one, as the permit allows),
    /// runs `op`, and puts the connection back.
    fn with_connection<T>(
        &self,
        permit: OwnedSemaphorePermit,
        op: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().map(|mut idle| idle.pop());
        let mut conn = match idle {
            Ok(Some(conn)) => conn,
            Ok(None) => self.open().map_err(StoreError::unavailable)?,
            Err(_) => return Err(StoreError::unavailable(PoisonedPool)),
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
                // WAL lets readers run beside the writer; NORMAL sync is durable
                // against process crashes and costs no fsync per commit.
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn
            }
            Location::Memory => Connection::open_in_memory()?,
        };
        Ok(conn)
    }
}

/// What a settle writes besides the state: `?3` of its statement.
enum Settle {
    /// Retention from now, as the new `expires_at`.
    Complete { retention_ms: i64 },
    /// Why the attempt failed, as `reason`.
    Release { reason: String },
}

/// A thread panicked while holding the connection list.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite connection pool was poisoned by a panic")]
struct PoisonedPool;

impl SqliteStoreBuilder {
    fn new(location: Location) -> Self {
        Self {
            location,
            table: DEFAULT_TABLE.to_owned(),
            max_connections: 1,
            busy_timeout: Duration::from_secs(5),
            durable: DurableSettings::new(Self::DEFAULT_OPERATION_TIMEOUT),
            clock: Arc::new(SystemClock),
        }
    }

    /// The table to keep keys in (default [`DEFAULT_TABLE`]): 1 to 48 ASCII
    /// letters, digits or underscores, not starting with a digit.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// How many connections the store may open (default 1). Every operation
    /// writes and SQLite runs one writer at a time, so further connections
    /// mostly add lock waits (measured in `benches/stores.rs`: 16 concurrent
    /// claims ran 1.7 times faster on one connection than on four). An
    /// in-memory store always uses one: each in-memory connection is its own
    /// database.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// How long a write waits for another connection's lock before failing
    /// with [`StoreError::Unavailable`] (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    durable::durable_setters!(
        operation_timeout(default 10 s, "waiting for a connection"),
        purge_batch_size,
        unsettled_retention(
            "[`IdempotencyStore::purge_expired`] deletes it, by the store's clock"
        ),
    );

    /// The clock leases and retention are measured with (default
    /// [`SystemClock`]). Instances sharing a file must read the same time.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and returns the store; opens nothing yet.
    pub fn build(self) -> Result<SqliteStore, StoreConfigError> {
        validate_table_name(&self.table, false)?;
        let limits = self
            .durable
            .check(self.max_connections, &[("busy", self.busy_timeout)])?;
        let connections = match self.location {
            Location::File(_) => self.max_connections,
            Location::Memory => 1,
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                sql: Statements::new(&self.table),
                location: self.location,
                table: self.table,
                busy_timeout: self.busy_timeout,
                limits,
                clock: self.clock,
                idle: Mutex::new(Vec::with_capacity(connections)),
                permits: Arc::new(Semaphore::new(connections)),
                migrated: OnceCell::new(),
            }),
        })
    }
}

impl fmt::Debug for SqliteStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("SqliteStoreBuilder");
        out.field("location", &self.location)
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("busy_timeout", &self.busy_timeout);
        self.debug_durable(&mut out);
        out.field("clock", &self.clock).finish()
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.inner.location)
            .field("table", &self.inner.table)
            .field("busy_timeout", &self.inner.busy_timeout)
            .field("operation_timeout", &self.inner.limits.operation_timeout)
            .finish_non_exhaustive()
    }
}

fn sql_error(err: rusqlite::Error) -> StoreError {
    StoreError::unavailable(err)
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.migrate().await?;
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        let lease = duration_ms(lease);
        self.run(move |conn| {
            let now = clock_ms(&*inner.clock);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            let stored = tx
                .prepare_cached(&inner.sql.select)
                .and_then(|mut select| {
                    select
                        .query_row([&key], |row| {
                            Ok((
                                row.get::<_, Vec<u8>>(0)?,
                                row.get::<_, String>(1)?,
                                row.get::<_, i64>(2)?,
                                row.get::<_, i64>(3)?,
                            ))
                        })
                        .optional()
                })
                .map_err(sql_error)?;
            let (previous, token, sql) = match stored {
                None => (None, FencingToken(1), &inner.sql.insert),
                Some((stored_fp, state, token, expires_at)) => {
                    let record = Record {
                        fingerprint: fingerprint_from_slice(&key, &stored_fp)?,
                        state: State::parse(&key, &state)?,
                        expires_at: from_unix_ms(expires_at),
                        expired: expires_at <= now,
                    };
                    if let Decision::Answer(answer) = protocol::decide(&record, fingerprint) {
                        return Ok(answer);
                    }
                    let next = token_from_i64(&key, token)?.saturating_add(1);
                    (Some(record), FencingToken(next), &inner.sql.update_claim)
                }
            };
            let stored_token = token_to_i64(token)
                .ok_or_else(|| durable::corrupt(&key, "token counter exhausted"))?;
            tx.prepare_cached(sql)
                .and_then(|mut write| {
                    write.execute(rusqlite::params![
                        key,
                        &fingerprint.to_bytes()[..],
                        stored_token,
                        now.saturating_add(lease),
                        now
                    ])
                })
                .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            Ok(protocol::acquired(previous.as_ref(), fingerprint, token))
        })
        .await
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let retention_ms = duration_ms(retention);
        self.settle(key, token, Settle::Complete { retention_ms })
            .await
    }

    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        let reason = reason.to_owned();
        self.settle(key, token, Settle::Release { reason }).await
    }

    /// Deletes completed keys whose retention has passed (uses the index on
    /// `expires_at`), then released keys and abandoned leases older than
    /// [`SqliteStoreBuilder::unsettled_retention`] (uses the partial index on
    /// `updated_at`), in batches of [`SqliteStoreBuilder::purge_batch_size`],
    /// each its own transaction, so claims run between batches. Returns how
    /// many keys it deleted. A lease is never deleted before it has ended.
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.migrate().await?;
        let now = self.now_ms();
        let unsettled_before = now.saturating_sub(self.inner.limits.unsettled_retention_ms);
        let completed = self.purge_batches(Purge::Completed, now).await?;
        let unsettled = self
            .purge_batches(Purge::Unsettled, unsettled_before)
            .await?;
        // Expired watermarks go too; the count is of keys, as the trait says.
        self.purge_batches(Purge::Watermarks, now).await?;
        Ok(completed.saturating_add(unsettled))
    }

    fn watermarks(&self) -> Option<&dyn WatermarkStore> {
        Some(self)
    }
}

/// Watermarks in the table `{table}_watermarks` (object, time in Unix ms,
/// end of retention in Unix ms by the store's clock), created by
/// [`SqliteStore::migrate`] with the keys' table.
#[async_trait]
impl WatermarkStore for SqliteStore {
    async fn watermark(&self, object: &str) -> Result<Option<Watermark>, StoreError> {
        self.migrate().await?;
        let inner = Arc::clone(&self.inner);
        let object = object.to_owned();
        self.run(move |conn| {
            let now = clock_ms(&*inner.clock);
            conn.prepare_cached(&inner.sql.watermark)
                .and_then(|mut select| {
                    select
                        .query_row(rusqlite::params![object, now], |row| row.get::<_, i64>(0))
                        .optional()
                })
                .map(|at| at.map(Watermark::from_unix_millis))
                .map_err(sql_error)
        })
        .await
    }

    async fn advance(
        &self,
        object: &str,
        at: Watermark,
        retention: Duration,
    ) -> Result<Watermark, StoreError> {
        self.migrate().await?;
        let inner = Arc::clone(&self.inner);
        let object = object.to_owned();
        let retention = duration_ms(retention);
        self.run(move |conn| {
            let now = clock_ms(&*inner.clock);
            let expires = now.saturating_add(retention);
            conn.prepare_cached(&inner.sql.advance)
                .and_then(|mut upsert| {
                    upsert.query_row(
                        rusqlite::params![object, at.unix_millis(), expires, now],
                        |row| row.get::<_, i64>(0),
                    )
                })
                .map(Watermark::from_unix_millis)
                .map_err(sql_error)
        })
        .await
    }
}

/// Which rows a purge statement deletes.
#[derive(Clone, Copy)]
enum Purge {
    /// Completed rows whose retention ended by the cut-off.
    Completed,
    /// Released rows settled, and leases ended, by the cut-off.
    Unsettled,
    /// Watermarks whose retention ended by the cut-off.
    Watermarks,
}

impl SqliteStore {
    /// Runs one purge statement in batches until a batch deletes fewer rows
    /// than the batch size; `cutoff` (Unix ms) is its `?1`.
    async fn purge_batches(&self, which: Purge, cutoff: i64) -> Result<u64, StoreError> {
        let batch = self.inner.limits.purge_batch;
        let mut deleted = 0u64;
        loop {
            let inner = Arc::clone(&self.inner);
            let removed = self
                .run(move |conn| {
                    let sql = match which {
                        Purge::Completed => &inner.sql.purge,
                        Purge::Unsettled => &inner.sql.purge_unsettled,
                        Purge::Watermarks => &inner.sql.purge_watermarks,
                    };
                    conn.prepare_cached(sql)
                        .and_then(|mut delete| delete.execute([cutoff, batch]))
                        .map_err(sql_error)
                })
                .await?;
            let removed = u64::try_from(removed).unwrap_or(u64::MAX);
            deleted = deleted.saturating_add(removed);
            if removed < batch.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }
}
