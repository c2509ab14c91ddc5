//! [`PostgresStore`]: the idempotency protocol in PostgreSQL (feature `postgres`).
//!
//! A claim is one statement: `INSERT … ON CONFLICT (event_key) DO UPDATE … WHERE
//! <the key may be taken> RETURNING token`. PostgreSQL locks the conflicting row
//! and re-checks the condition against its newest version, so of concurrent
//! claims from any number of instances exactly one acquires. Leases and
//! retention are measured with the server's `now()`, so instances whose clocks
//! disagree still agree on when a lease ends. A claim of a key that cannot be
//! taken (a duplicate of a completed or in-flight event) only reads: it writes
//! no row and waits for no commit.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::tokio_postgres::{self, NoTls};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;

use super::durable::{
    self, duration_ms, fingerprint_from_slice, from_unix_ms, settled, stale, token_from_i64,
    token_to_i64, unqualified, validate_table_name, with_timeout, DurableSettings, Limits,
    StoreConfigError,
};
use super::protocol::{self, Decision, Record, State};
use super::{
    Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError, Watermark, WatermarkStore,
};

/// The default table name.
pub const DEFAULT_TABLE: &str = "hookgate_idempotency";

/// How often a claim re-reads a key whose row changed between the statement's
/// snapshot and its conflict check (a concurrent insert or settle). Each retry
/// sees a newer snapshot, so one retry is almost always enough.
const CLAIM_ROUNDS: usize = 8;

/// An [`IdempotencyStore`] in a PostgreSQL table, shared by every instance of a
/// service.
///
/// Connect from a URL with [`PostgresStore::connect`] (a `deadpool-postgres`
/// pool without TLS is created for you), or hand over your own pool with
/// [`PostgresStore::from_pool`] (use that for TLS). Nothing connects while
/// building: the first operation creates the table if it does not exist (or call
/// [`PostgresStore::migrate`] at start-up to fail fast). Clones share the pool.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::store::postgres::PostgresStore;
/// use std::time::Duration;
///
/// let store = PostgresStore::connect("postgres://app@db.internal/app")
///     .table("webhook_keys")
///     .max_connections(16)
///     .operation_timeout(Duration::from_secs(2))
///     .build()?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    table: String,
    sql: std::sync::Arc<Statements>,
    limits: Limits,
    migrated: std::sync::Arc<OnceCell<()>>,
}

/// The SQL text of each operation, with the table name spliced in once.
#[derive(Debug)]
struct Statements {
    migrate: String,
    claim: String,
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
        let index = format!("{}_expires_at", unqualified(table));
        let unsettled_index = format!("{}_unsettled", unqualified(table));
        let marks = format!("{table}_watermarks");
        let marks_index = format!("{}_watermarks_expires_at", unqualified(table));
        Self {
            migrate: format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    event_key   text        NOT NULL PRIMARY KEY,
                    fingerprint bytea       NOT NULL,
                    state       text        NOT NULL CHECK (state IN ('leased', 'released', 'completed')),
                    token       bigint      NOT NULL,
                    expires_at  timestamptz NOT NULL,
                    reason      text,
                    updated_at  timestamptz NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS {index} ON {table} (expires_at) WHERE state = 'completed';
                 CREATE INDEX IF NOT EXISTS {unsettled_index} ON {table} (updated_at)
                    WHERE state <> 'completed';
                 CREATE TABLE IF NOT EXISTS {marks} (
                    object      text        NOT NULL PRIMARY KEY,
                    at_ms       bigint      NOT NULL,
                    expires_at  timestamptz NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS {marks_index} ON {marks} (expires_at);"
            ),
            watermark: format!(
                "SELECT at_ms FROM {marks} WHERE object = $1 AND expires_at > now()"
            ),
            // The row lock of ON CONFLICT serialises concurrent advances of
            // one object, and each keeps the larger time: an atomic maximum.
            // An expired watermark is replaced, whatever its time.
            advance: format!(
                "INSERT INTO {marks} AS cur (object, at_ms, expires_at)
                 VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
                 ON CONFLICT (object) DO UPDATE
                    SET at_ms = CASE WHEN cur.expires_at <= now() THEN EXCLUDED.at_ms
                                     ELSE GREATEST(cur.at_ms, EXCLUDED.at_ms) END,
                        expires_at = CASE WHEN cur.expires_at <= now() THEN EXCLUDED.expires_at
                                          ELSE GREATEST(cur.expires_at, EXCLUDED.expires_at) END
                 RETURNING at_ms"
            ),
            purge_watermarks: format!(
                "DELETE FROM {marks} WHERE object IN (
                    SELECT object FROM {marks} WHERE expires_at <= now()
                     LIMIT $1 FOR UPDATE SKIP LOCKED
                 )"
            ),
            // `current` reads the key as of the statement's snapshot. A key the
            // snapshot shows as not takeable (completed, leased) is answered
            // from it without writing or locking anything, so duplicates cost
            // no commit. Otherwise the INSERT runs, and ON CONFLICT re-checks
            // on the newest row version, under its lock, that the key may be
            // taken and is still the row the snapshot read (same token, state
            // and fingerprint: tokens grow with every claim), so the snapshot
            // tells exactly which record the claim replaced. The row comes back
            // only if this claim took the key; then the snapshot's columns
            // describe the record it replaced (none for a new key).
            claim: format!(
                "WITH current AS (
                    SELECT state, token, fingerprint, expires_at FROM {table} WHERE event_key = $1
                 ),
                 claimed AS (
                    INSERT INTO {table} AS cur
                        (event_key, fingerprint, state, token, expires_at, reason, updated_at)
                    SELECT $1::text, $2::bytea, 'leased', 1,
                           now() + $3::bigint * interval '1 millisecond', NULL, now()
                     WHERE NOT EXISTS (SELECT 1 FROM current WHERE NOT ({current_takeable}))
                    ON CONFLICT (event_key) DO UPDATE
                       SET fingerprint = EXCLUDED.fingerprint, state = 'leased', token = cur.token + 1,
                           expires_at = EXCLUDED.expires_at, reason = NULL, updated_at = now()
                     WHERE ({cur_takeable})
                       AND (cur.token, cur.state, cur.fingerprint)
                           = (SELECT token, state, fingerprint FROM current)
                    RETURNING cur.token
                 ),
                 previous AS (
                    SELECT state, token, fingerprint,
                           (extract(epoch FROM expires_at) * 1000)::bigint AS ms,
                           expires_at <= now() AS expired
                      FROM current
                 )
                 SELECT true, (SELECT state FROM previous), token, (SELECT fingerprint FROM previous),
                        (SELECT ms FROM previous), (SELECT expired FROM previous)
                   FROM claimed
                 UNION ALL
                 SELECT false, state, token, fingerprint, ms, expired
                   FROM previous
                  WHERE NOT EXISTS (SELECT 1 FROM claimed)",
                current_takeable = takeable("current"),
                cur_takeable = takeable("cur"),
            ),
            complete: format!(
                "UPDATE {table}
                    SET state = 'completed', expires_at = now() + $3::bigint * interval '1 millisecond',
                        reason = NULL, updated_at = now()
                  WHERE event_key = $1 AND token = $2 AND state = 'leased'"
            ),
            release: format!(
                "UPDATE {table} SET state = 'released', reason = $3, updated_at = now()
                  WHERE event_key = $1 AND token = $2 AND state = 'leased'"
            ),
            // SKIP LOCKED: a key being claimed right now is left for the next purge.
            purge: format!(
                "DELETE FROM {table} WHERE event_key IN (
                    SELECT event_key FROM {table}
                     WHERE state = 'completed' AND expires_at <= now()
                     LIMIT $1 FOR UPDATE SKIP LOCKED
                 )"
            ),
            // $2 is the unsettled retention in ms. A lease ends after its claim
            // (`updated_at <= expires_at`), so the range on `updated_at` finds
            // every candidate through the partial index.
            purge_unsettled: format!(
                "DELETE FROM {table} WHERE event_key IN (
                    SELECT event_key FROM {table}
                     WHERE state <> 'completed'
                       AND updated_at <= now() - $2::bigint * interval '1 millisecond'
                       AND (state = 'released'
                            OR expires_at <= now() - $2::bigint * interval '1 millisecond')
                     LIMIT $1 FOR UPDATE SKIP LOCKED
                 )"
            ),
        }
    }
}

/// `store::protocol::takes` in SQL: whether a claim takes the row `alias`
/// (released, or its lease or retention ended; the body plays no part). A row
/// this store cannot read (a fingerprint of another length, a negative token)
/// is never taken, so the claim reports it as corrupt instead of overwriting it.
fn takeable(alias: &str) -> String {
    format!(
        "({alias}.state = 'released' OR {alias}.expires_at <= now())
         AND octet_length({alias}.fingerprint) = 16 AND {alias}.token >= 0"
    )
}

/// Where a [`PostgresStore`]'s connections come from.
enum Source {
    Url(String),
    Pool(Pool),
}

/// Settings for a [`PostgresStore`]; every setting has a production default.
#[must_use = "call `build()` to get the store"]
pub struct PostgresStoreBuilder {
    source: Source,
    table: String,
    max_connections: usize,
    statement_timeout: Duration,
    durable: DurableSettings,
}

impl PostgresStore {
    /// Settings for a store that connects to the PostgreSQL server at `url`
    /// (`postgres://user:password@host:port/database?…`, or the key-value form),
    /// without TLS.
    pub fn connect(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(Source::Url(url.into()))
    }

    /// Settings for a store that uses your existing `deadpool-postgres` pool
    /// (with your TLS and connection settings). The pool's own size and
    /// timeouts apply; [`PostgresStoreBuilder::operation_timeout`] still bounds
    /// every operation.
    pub fn from_pool(pool: Pool) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(Source::Pool(pool))
    }

    /// Creates the table and its index if they do not exist. Idempotent, and
    /// safe to run from several instances at once (an advisory lock serialises
    /// them); operations run it on first use.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| {
                with_timeout(
                    self.limits.operation_timeout,
                    "PostgreSQL migration",
                    async {
                        let mut client = self.pool.get().await.map_err(StoreError::unavailable)?;
                        let tx = client.transaction().await.map_err(pg_error)?;
                        tx.execute(
                            "SELECT pg_advisory_xact_lock(hashtext('hookgate:' || $1::text))",
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

    /// The table this store keeps its keys in.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The pool this store runs its statements on.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The completion statement (`$1` key, `$2` token, `$3` retention in ms),
    /// for the transactional handlers that run it in their own transaction.
    pub(crate) fn complete_sql(&self) -> &str {
        &self.sql.complete
    }

    /// The most one operation may take.
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.limits.operation_timeout
    }

    /// Runs one settle statement; tells whether it changed the key's row.
    async fn settle(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        self.migrate().await?;
        with_timeout(self.limits.operation_timeout, what, async {
            let client = self.pool.get().await.map_err(StoreError::unavailable)?;
            let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
            let changed = client.execute(&statement, params).await.map_err(pg_error)?;
            Ok(changed == 1)
        })
        .await
    }
}

fn pg_error(err: tokio_postgres::Error) -> StoreError {
    StoreError::unavailable(err)
}

impl PostgresStoreBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            table: DEFAULT_TABLE.to_owned(),
            max_connections: 16,
            statement_timeout: Duration::from_secs(5),
            durable: DurableSettings::new(Self::DEFAULT_OPERATION_TIMEOUT),
        }
    }

    /// The table to keep keys in (default [`DEFAULT_TABLE`]): an identifier of
    /// 1 to 48 ASCII letters, digits or underscores, optionally `schema.`
    /// qualified. It is spliced into SQL, so nothing else is accepted.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// How many connections the pool may hold (default 16; URL only).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The server-side `statement_timeout` of each connection (default 5 s; URL
    /// only).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    durable::durable_setters!(
        connect_timeout,
        operation_timeout(default 10 s, "waiting for a pooled connection"),
        purge_batch_size,
        unsettled_retention(
            "[`IdempotencyStore::purge_expired`] deletes it, by the server's clock"
        ),
    );

    /// Checks the settings and returns the store; connects to nothing yet.
    pub fn build(self) -> Result<PostgresStore, StoreConfigError> {
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
        Ok(PostgresStore {
            pool,
            sql: std::sync::Arc::new(Statements::new(&self.table)),
            table: self.table,
            limits,
            migrated: std::sync::Arc::new(OnceCell::new()),
        })
    }
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out: it may hold a password.
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
        };
        let mut out = f.debug_struct("PostgresStoreBuilder");
        out.field("source", &source)
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("statement_timeout", &self.statement_timeout);
        self.debug_durable(&mut out);
        out.finish()
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .field("pool_size", &self.pool.status().max_size)
            .field("operation_timeout", &self.limits.operation_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.migrate().await?;
        let lease = duration_ms(lease);
        let fp = fingerprint.to_bytes();
        with_timeout(self.limits.operation_timeout, "PostgreSQL claim", async {
            let client = self.pool.get().await.map_err(StoreError::unavailable)?;
            let statement = client
                .prepare_cached(&self.sql.claim)
                .await
                .map_err(pg_error)?;
            for _ in 0..CLAIM_ROUNDS {
                let row = client
                    .query_opt(&statement, &[&key, &&fp[..], &lease])
                    .await
                    .map_err(pg_error)?;
                // No row: the key was inserted or purged after the snapshot; ask again.
                let Some(row) = row else { continue };
                let taken: bool = row.try_get(0).map_err(pg_error)?;
                let token = token_from_i64(key, row.try_get(2).map_err(pg_error)?)?;
                // The record as the snapshot read it: the one a taken claim
                // replaced (none for a new key), or the one that refused it.
                let record = match row.try_get::<_, Option<&str>>(1).map_err(pg_error)? {
                    None => None,
                    Some(state) => Some(Record {
                        fingerprint: fingerprint_from_slice(
                            key,
                            row.try_get(3).map_err(pg_error)?,
                        )?,
                        state: State::parse(key, state)?,
                        expires_at: from_unix_ms(row.try_get(4).map_err(pg_error)?),
                        expired: row.try_get(5).map_err(pg_error)?,
                    }),
                };
                if taken {
                    let token = FencingToken(token);
                    return Ok(protocol::acquired(record.as_ref(), fingerprint, token));
                }
                // A snapshot that says "take it" is older than the row the
                // conflict check saw (which refused): ask again.
                if let Some(Decision::Answer(answer)) =
                    record.map(|record| protocol::decide(&record, fingerprint))
                {
                    return Ok(answer);
                }
            }
            Err(StoreError::unavailable(Contention {
                key: key.to_owned(),
            }))
        })
        .await
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let Some(stored_token) = token_to_i64(token) else {
            return Err(stale(key, token));
        };
        let retention = duration_ms(retention);
        let changed = self
            .settle(
                "PostgreSQL complete",
                &self.sql.complete,
                &[&key, &stored_token, &retention],
            )
            .await?;
        settled(key, token, changed)
    }

    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        let Some(stored_token) = token_to_i64(token) else {
            return Err(stale(key, token));
        };
        let changed = self
            .settle(
                "PostgreSQL release",
                &self.sql.release,
                &[&key, &stored_token, &reason],
            )
            .await?;
        settled(key, token, changed)
    }

    /// Deletes completed keys whose retention has passed by the server's clock
    /// (uses the partial index on `expires_at`), then released keys and
    /// abandoned leases older than [`PostgresStoreBuilder::unsettled_retention`]
    /// (uses the partial index on `updated_at`), in batches of
    /// [`PostgresStoreBuilder::purge_batch_size`], each its own short
    /// transaction that skips rows being claimed at that moment. Returns how
    /// many keys it deleted. A lease is never deleted before it has ended.
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.migrate().await?;
        let completed = self
            .purge_batches(&self.sql.purge, &[&self.limits.purge_batch])
            .await?;
        let unsettled = self
            .purge_batches(
                &self.sql.purge_unsettled,
                &[
                    &self.limits.purge_batch,
                    &self.limits.unsettled_retention_ms,
                ],
            )
            .await?;
        // Expired watermarks go too; the count is of keys, as the trait says.
        self.purge_batches(&self.sql.purge_watermarks, &[&self.limits.purge_batch])
            .await?;
        Ok(completed.saturating_add(unsettled))
    }

    fn watermarks(&self) -> Option<&dyn WatermarkStore> {
        Some(self)
    }
}

/// Watermarks in the table `{table}_watermarks` (object, time in Unix ms,
/// end of retention by the server's clock), created by
/// [`PostgresStore::migrate`] with the keys' table.
#[async_trait]
impl WatermarkStore for PostgresStore {
    async fn watermark(&self, object: &str) -> Result<Option<Watermark>, StoreError> {
        self.migrate().await?;
        with_timeout(
            self.limits.operation_timeout,
            "PostgreSQL watermark",
            async {
                let client = self.pool.get().await.map_err(StoreError::unavailable)?;
                let statement = client
                    .prepare_cached(&self.sql.watermark)
                    .await
                    .map_err(pg_error)?;
                let row = client
                    .query_opt(&statement, &[&object])
                    .await
                    .map_err(pg_error)?;
                row.map(|row| row.try_get(0).map(Watermark::from_unix_millis))
                    .transpose()
                    .map_err(pg_error)
            },
        )
        .await
    }

    async fn advance(
        &self,
        object: &str,
        at: Watermark,
        retention: Duration,
    ) -> Result<Watermark, StoreError> {
        self.migrate().await?;
        let retention = duration_ms(retention);
        with_timeout(self.limits.operation_timeout, "PostgreSQL advance", async {
            let client = self.pool.get().await.map_err(StoreError::unavailable)?;
            let statement = client
                .prepare_cached(&self.sql.advance)
                .await
                .map_err(pg_error)?;
            let row = client
                .query_one(&statement, &[&object, &at.unix_millis(), &retention])
                .await
                .map_err(pg_error)?;
            row.try_get(0)
                .map(Watermark::from_unix_millis)
                .map_err(pg_error)
        })
        .await
    }
}

impl PostgresStore {
    /// Runs one purge statement (`$1` the batch size) until a batch deletes
    /// fewer rows than the batch size.
    async fn purge_batches(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        loop {
            let removed = with_timeout(self.limits.operation_timeout, "PostgreSQL purge", async {
                let client = self.pool.get().await.map_err(StoreError::unavailable)?;
                let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
                client.execute(&statement, params).await.map_err(pg_error)
            })
            .await?;
            deleted = deleted.saturating_add(removed);
            if removed < self.limits.purge_batch.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }
}

/// A claim kept meeting a row that changed under it.
#[derive(Debug, thiserror::Error)]
#[error("key `{key}` changed under {CLAIM_ROUNDS} claim attempts in a row")]
struct Contention {
    key: String,
}
