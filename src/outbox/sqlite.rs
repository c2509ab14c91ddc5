//! The outbox in SQLite: its tables, enqueue inside the completing
//! transaction, claims as one `UPDATE … RETURNING` under the write lock,
//! fenced settles. Times are Unix milliseconds by the store's clock.

use rusqlite::{Transaction, TransactionBehavior};

use super::job::{ClaimedJob, Job};
use super::relay::Settle;
use super::tables::{OutboxTables, Statements};
use crate::store::sqlite::SqliteStore;
use crate::store::StoreError;

/// The statements of the outbox `table` and its dead-letter table.
pub(super) fn statements(table: &str) -> Statements {
    let dead = format!("{table}_dead");
    let columns = "job_key, handler, provider, event_id, kind, occurred_at_ms, body";
    Statements {
        migrate: format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                job_key        TEXT    NOT NULL PRIMARY KEY,
                handler        TEXT    NOT NULL,
                provider       TEXT    NOT NULL,
                event_id       TEXT    NOT NULL,
                kind           TEXT    NOT NULL,
                occurred_at_ms INTEGER,
                body           BLOB    NOT NULL,
                state          TEXT    NOT NULL CHECK (state IN ('pending', 'succeeded')),
                attempts       INTEGER NOT NULL,
                claim_token    INTEGER NOT NULL,
                available_at   INTEGER NOT NULL,
                last_error     TEXT,
                created_at     INTEGER NOT NULL,
                finished_at    INTEGER
             );
             CREATE INDEX IF NOT EXISTS {table}_due ON {table} (available_at) WHERE state = 'pending';
             CREATE INDEX IF NOT EXISTS {table}_done ON {table} (finished_at) WHERE state = 'succeeded';
             CREATE TABLE IF NOT EXISTS {dead} (
                job_key        TEXT    NOT NULL PRIMARY KEY,
                handler        TEXT    NOT NULL,
                provider       TEXT    NOT NULL,
                event_id       TEXT    NOT NULL,
                kind           TEXT    NOT NULL,
                occurred_at_ms INTEGER,
                body           BLOB    NOT NULL,
                attempts       INTEGER NOT NULL,
                reason         TEXT    NOT NULL,
                error          TEXT,
                dead_at        INTEGER NOT NULL
             );"
        ),
        // ?8 is now.
        enqueue: format!(
            "INSERT INTO {table} ({columns}, state, attempts, claim_token, available_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, 0, ?8, ?8)
             ON CONFLICT (job_key) DO NOTHING"
        ),
        // ?1 now, ?2 end of the lease, ?3 batch size. One statement under
        // SQLite's write lock: no two relays claim one row.
        claim: format!(
            "UPDATE {table}
                SET claim_token = claim_token + 1, attempts = attempts + 1, available_at = ?2
              WHERE job_key IN (SELECT job_key FROM {table}
                                 WHERE state = 'pending' AND available_at <= ?1
                                 ORDER BY available_at LIMIT ?3)
          RETURNING job_key, handler, provider, event_id, kind, occurred_at_ms, body,
                    attempts, claim_token"
        ),
        // ?3 now.
        succeed: format!(
            "UPDATE {table} SET state = 'succeeded', finished_at = ?3, last_error = NULL
              WHERE job_key = ?1 AND claim_token = ?2 AND state = 'pending'"
        ),
        // ?3 when it is due again, ?4 the error.
        retry: format!(
            "UPDATE {table} SET available_at = ?3, last_error = ?4
              WHERE job_key = ?1 AND claim_token = ?2 AND state = 'pending'"
        ),
        // ?3 reason, ?4 error, ?5 now, ?6 attempts started; followed by
        // `bury_delete` in one transaction.
        bury: format!(
            "INSERT OR IGNORE INTO {dead} ({columns}, attempts, reason, error, dead_at)
             SELECT {columns}, ?6, ?3, ?4, ?5 FROM {table}
              WHERE job_key = ?1 AND claim_token = ?2 AND state = 'pending'"
        ),
        bury_delete: format!(
            "DELETE FROM {table} WHERE job_key = ?1 AND claim_token = ?2 AND state = 'pending'"
        ),
        // ?1 the newest finish time to delete.
        purge: format!("DELETE FROM {table} WHERE state = 'succeeded' AND finished_at <= ?1"),
    }
}

fn sql_error(err: rusqlite::Error) -> StoreError {
    StoreError::unavailable(err)
}

impl OutboxTables {
    /// Creates the tables once.
    pub(crate) async fn migrate_sqlite(&self, store: &SqliteStore) -> Result<(), StoreError> {
        self.migrated
            .get_or_try_init(|| async {
                let sql = self.sql.clone();
                store
                    .run_migrated(move |conn| conn.execute_batch(&sql.migrate).map_err(sql_error))
                    .await
            })
            .await
            .map(|_| ())
    }

    /// Inserts `jobs` in `tx`, the transaction that completes their event.
    pub(crate) fn enqueue_sqlite(
        &self,
        tx: &Transaction<'_>,
        jobs: &[Job],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut insert = tx.prepare_cached(&self.sql.enqueue).map_err(sql_error)?;
        for job in jobs {
            insert
                .execute(rusqlite::params![
                    job.job_key,
                    &*job.handler,
                    job.provider,
                    job.event_id,
                    job.kind,
                    job.occurred_at_ms,
                    &job.body[..],
                    now,
                ])
                .map_err(sql_error)?;
        }
        Ok(())
    }

    /// Claims up to `batch` due jobs for `lease_ms`.
    pub(crate) async fn claim_sqlite(
        &self,
        store: &SqliteStore,
        batch: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        self.migrate_sqlite(store).await?;
        let sql = self.sql.clone();
        let clock = store.clone();
        store
            .run_migrated(move |conn| {
                let now = clock.clock_ms();
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql_error)?;
                let jobs = {
                    let mut claim = tx.prepare_cached(&sql.claim).map_err(sql_error)?;
                    let rows = claim
                        .query_map(
                            rusqlite::params![now, now.saturating_add(lease_ms), batch],
                            |row| {
                                Ok(ClaimedJob::from_row(
                                    row.get(0)?,
                                    row.get(1)?,
                                    row.get(2)?,
                                    row.get(3)?,
                                    row.get(4)?,
                                    row.get(5)?,
                                    row.get(6)?,
                                    row.get(7)?,
                                    row.get(8)?,
                                ))
                            },
                        )
                        .map_err(sql_error)?;
                    rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)?
                };
                tx.commit().map_err(sql_error)?;
                Ok(jobs)
            })
            .await
    }

    /// Settles a claimed job if `claim_token` still holds it.
    pub(crate) async fn settle_sqlite(
        &self,
        store: &SqliteStore,
        job_key: &str,
        claim_token: i64,
        settle: &Settle,
    ) -> Result<bool, StoreError> {
        let sql = self.sql.clone();
        let clock = store.clone();
        let job_key = job_key.to_owned();
        let settle = settle.clone();
        store
            .run_migrated(move |conn| {
                let now = clock.clock_ms();
                let changed = match settle {
                    Settle::Succeed => conn
                        .prepare_cached(&sql.succeed)
                        .and_then(|mut s| s.execute(rusqlite::params![job_key, claim_token, now])),
                    Settle::Retry { delay_ms, error } => {
                        conn.prepare_cached(&sql.retry).and_then(|mut s| {
                            let due = now.saturating_add(delay_ms);
                            s.execute(rusqlite::params![job_key, claim_token, due, error])
                        })
                    }
                    Settle::Bury {
                        reason,
                        error,
                        attempts,
                    } => {
                        let tx = conn
                            .transaction_with_behavior(TransactionBehavior::Immediate)
                            .map_err(sql_error)?;
                        tx.prepare_cached(&sql.bury)
                            .and_then(|mut s| {
                                s.execute(rusqlite::params![
                                    job_key,
                                    claim_token,
                                    reason,
                                    error,
                                    now,
                                    attempts
                                ])
                            })
                            .and_then(|_| {
                                tx.prepare_cached(&sql.bury_delete).and_then(|mut s| {
                                    s.execute(rusqlite::params![job_key, claim_token])
                                })
                            })
                            .and_then(|deleted| tx.commit().map(|()| deleted))
                    }
                };
                Ok(changed.map_err(sql_error)? == 1)
            })
            .await
    }

    /// Deletes succeeded jobs finished more than `older_than_ms` ago.
    pub(crate) async fn purge_sqlite(
        &self,
        store: &SqliteStore,
        older_than_ms: i64,
    ) -> Result<u64, StoreError> {
        self.migrate_sqlite(store).await?;
        let sql = self.sql.clone();
        let clock = store.clone();
        store
            .run_migrated(move |conn| {
                let before = clock.clock_ms().saturating_sub(older_than_ms);
                let deleted = conn
                    .prepare_cached(&sql.purge)
                    .and_then(|mut s| s.execute([before]))
                    .map_err(sql_error)?;
                Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
            })
            .await
    }
}
