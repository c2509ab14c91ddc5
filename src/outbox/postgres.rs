//! The outbox in PostgreSQL: its tables, enqueue inside the completing
//! transaction, claims with `FOR UPDATE SKIP LOCKED`, fenced settles.

use deadpool_postgres::tokio_postgres;
use deadpool_postgres::Transaction;

use super::job::{ClaimedJob, Job};
use super::relay::Settle;
use super::tables::{OutboxTables, Statements};
use crate::store::durable::{unqualified, with_timeout};
use crate::store::postgres::PostgresStore;
use crate::store::StoreError;

/// The statements of the outbox `table` and its dead-letter table.
pub(super) fn statements(table: &str) -> Statements {
    let dead = format!("{table}_dead");
    let due_index = format!("{}_due", unqualified(table));
    let done_index = format!("{}_done", unqualified(table));
    let columns = "job_key, handler, provider, event_id, kind, occurred_at_ms, body";
    Statements {
        migrate: format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                job_key        text        NOT NULL PRIMARY KEY,
                handler        text        NOT NULL,
                provider       text        NOT NULL,
                event_id       text        NOT NULL,
                kind           text        NOT NULL,
                occurred_at_ms bigint,
                body           bytea       NOT NULL,
                state          text        NOT NULL CHECK (state IN ('pending', 'succeeded')),
                attempts       bigint      NOT NULL,
                claim_token    bigint      NOT NULL,
                available_at   timestamptz NOT NULL,
                last_error     text,
                created_at     timestamptz NOT NULL,
                finished_at    timestamptz
             );
             CREATE INDEX IF NOT EXISTS {due_index} ON {table} (available_at) WHERE state = 'pending';
             CREATE INDEX IF NOT EXISTS {done_index} ON {table} (finished_at) WHERE state = 'succeeded';
             CREATE TABLE IF NOT EXISTS {dead} (
                job_key        text        NOT NULL PRIMARY KEY,
                handler        text        NOT NULL,
                provider       text        NOT NULL,
                event_id       text        NOT NULL,
                kind           text        NOT NULL,
                occurred_at_ms bigint,
                body           bytea       NOT NULL,
                attempts       bigint      NOT NULL,
                reason         text        NOT NULL,
                error          text,
                dead_at        timestamptz NOT NULL
             );"
        ),
        // A job key is enqueued once: a completed key is never completed again.
        enqueue: format!(
            "INSERT INTO {table} ({columns}, state, attempts, claim_token, available_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, 0, now(), now())
             ON CONFLICT (job_key) DO NOTHING"
        ),
        // SKIP LOCKED: rows another relay is claiming right now are left to it.
        // Each claim is a new attempt with a new token and a lease.
        claim: format!(
            "UPDATE {table} AS o
                SET claim_token = o.claim_token + 1, attempts = o.attempts + 1,
                    available_at = now() + $2::bigint * interval '1 millisecond'
               FROM (SELECT job_key FROM {table}
                      WHERE state = 'pending' AND available_at <= now()
                      ORDER BY available_at LIMIT $1 FOR UPDATE SKIP LOCKED) AS due
              WHERE o.job_key = due.job_key
          RETURNING o.job_key, o.handler, o.provider, o.event_id, o.kind, o.occurred_at_ms,
                    o.body, o.attempts, o.claim_token"
        ),
        succeed: format!(
            "UPDATE {table} SET state = 'succeeded', finished_at = now(), last_error = NULL
              WHERE job_key = $1 AND claim_token = $2 AND state = 'pending'"
        ),
        retry: format!(
            "UPDATE {table} SET available_at = now() + $3::bigint * interval '1 millisecond',
                    last_error = $4
              WHERE job_key = $1 AND claim_token = $2 AND state = 'pending'"
        ),
        // One statement: the row leaves the outbox and enters the dead-letter
        // table together, or neither happens.
        bury: format!(
            "WITH moved AS (
                DELETE FROM {table} WHERE job_key = $1 AND claim_token = $2 AND state = 'pending'
                RETURNING {columns}
             )
             INSERT INTO {dead} ({columns}, attempts, reason, error, dead_at)
             SELECT {columns}, $5, $3, $4, now() FROM moved
             ON CONFLICT (job_key) DO NOTHING"
        ),
        #[cfg(feature = "sqlite")]
        bury_delete: String::new(),
        purge: format!(
            "DELETE FROM {table} WHERE job_key IN (
                SELECT job_key FROM {table}
                 WHERE state = 'succeeded'
                   AND finished_at <= now() - $1::bigint * interval '1 millisecond'
                 LIMIT 10000 FOR UPDATE SKIP LOCKED
             )"
        ),
    }
}

fn pg_error(err: tokio_postgres::Error) -> StoreError {
    StoreError::unavailable(err)
}

impl OutboxTables {
    /// Creates the tables once (an advisory lock serialises instances).
    pub(crate) async fn migrate_postgres(&self, store: &PostgresStore) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| {
                with_timeout(store.operation_timeout(), "outbox migration", async {
                    let mut client = store.pool().get().await.map_err(StoreError::unavailable)?;
                    let tx = client.transaction().await.map_err(pg_error)?;
                    tx.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('hookgate:' || $1::text))",
                        &[&&*self.table],
                    )
                    .await
                    .map_err(pg_error)?;
                    tx.batch_execute(&self.sql.migrate)
                        .await
                        .map_err(pg_error)?;
                    tx.commit().await.map_err(pg_error)
                })
            })
            .await
            .map(|_| ())
    }

    /// Inserts `jobs` in `tx`, the transaction that completes their event.
    pub(crate) async fn enqueue_postgres(
        &self,
        tx: &Transaction<'_>,
        jobs: &[Job],
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let insert = tx
            .prepare_cached(&self.sql.enqueue)
            .await
            .map_err(pg_error)?;
        for job in jobs {
            tx.execute(
                &insert,
                &[
                    &job.job_key,
                    &&*job.handler,
                    &job.provider,
                    &job.event_id,
                    &job.kind,
                    &job.occurred_at_ms,
                    &&job.body[..],
                ],
            )
            .await
            .map_err(pg_error)?;
        }
        Ok(())
    }

    /// Claims up to `batch` due jobs for `lease_ms`.
    pub(crate) async fn claim_postgres(
        &self,
        store: &PostgresStore,
        batch: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        self.migrate_postgres(store).await?;
        with_timeout(store.operation_timeout(), "outbox claim", async {
            let client = store.pool().get().await.map_err(StoreError::unavailable)?;
            let claim = client
                .prepare_cached(&self.sql.claim)
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&claim, &[&batch, &lease_ms])
                .await
                .map_err(pg_error)?;
            rows.into_iter()
                .map(|row| {
                    Ok(ClaimedJob::from_row(
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get(3)?,
                        row.try_get(4)?,
                        row.try_get(5)?,
                        row.try_get(6)?,
                        row.try_get(7)?,
                        row.try_get(8)?,
                    ))
                })
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(pg_error)
        })
        .await
    }

    /// Settles a claimed job if `claim_token` still holds it.
    pub(crate) async fn settle_postgres(
        &self,
        store: &PostgresStore,
        job_key: &str,
        claim_token: i64,
        settle: &Settle,
    ) -> Result<bool, StoreError> {
        with_timeout(store.operation_timeout(), "outbox settle", async {
            let client = store.pool().get().await.map_err(StoreError::unavailable)?;
            let changed = match settle {
                Settle::Succeed => {
                    let sql = client
                        .prepare_cached(&self.sql.succeed)
                        .await
                        .map_err(pg_error)?;
                    client.execute(&sql, &[&job_key, &claim_token]).await
                }
                Settle::Retry { delay_ms, error } => {
                    let sql = client
                        .prepare_cached(&self.sql.retry)
                        .await
                        .map_err(pg_error)?;
                    client
                        .execute(&sql, &[&job_key, &claim_token, delay_ms, error])
                        .await
                }
                Settle::Bury {
                    reason,
                    error,
                    attempts,
                } => {
                    let sql = client
                        .prepare_cached(&self.sql.bury)
                        .await
                        .map_err(pg_error)?;
                    client
                        .execute(&sql, &[&job_key, &claim_token, reason, error, attempts])
                        .await
                }
            };
            Ok(changed.map_err(pg_error)? == 1)
        })
        .await
    }

    /// Deletes succeeded jobs finished more than `older_than_ms` ago.
    pub(crate) async fn purge_postgres(
        &self,
        store: &PostgresStore,
        older_than_ms: i64,
    ) -> Result<u64, StoreError> {
        self.migrate_postgres(store).await?;
        let mut deleted = 0u64;
        loop {
            let removed = with_timeout(store.operation_timeout(), "outbox purge", async {
                let client = store.pool().get().await.map_err(StoreError::unavailable)?;
                let sql = client
                    .prepare_cached(&self.sql.purge)
                    .await
                    .map_err(pg_error)?;
                client
                    .execute(&sql, &[&older_than_ms])
                    .await
                    .map_err(pg_error)
            })
            .await?;
            deleted = deleted.saturating_add(removed);
            if removed < 10_000 {
                return Ok(deleted);
            }
        }
    }
}
