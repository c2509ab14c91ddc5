//! [`SqliteHandler`]: a critical handler that writes in the SQLite
//! transaction completing the event's key (feature `sqlite`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The rusqlite crate hookgate is built with, so that your handler names the
/// same `Transaction` type.
pub use rusqlite;
use rusqlite::{Transaction, TransactionBehavior};

use super::{NamedTxHandler, TxFailure, TxHandler, Work, NO_HANDLER};
use crate::event::Event;
use crate::handler::{HandlerError, HandlerPanicked};
use crate::store::durable::{duration_ms, stale, token_to_i64};
use crate::store::sqlite::SqliteStore;
use crate::store::StoreError;

/// A critical handler that writes through the SQLite transaction in which the
/// pipeline also completes the event's key: its writes and the completion
/// commit together or not at all. See [`transactional`](crate::transactional)
/// for what is covered and what is not.
///
/// rusqlite is synchronous: the handler runs on tokio's blocking pool, on
/// one of the [`SqliteStore`]'s connections, inside a `BEGIN IMMEDIATE`
/// transaction (SQLite's write lock is held until it ends). A closure
/// `Fn(&Event, &Transaction<'_>) -> Result<(), HandlerError>` is a handler.
///
/// The critical deadline cannot interrupt a blocking call: a handler that
/// overruns it finishes, and the transaction is then rolled back instead of
/// committed (answered 500, timeout).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::store::sqlite::SqliteStore;
/// use hookgate::transactional::sqlite::rusqlite::Transaction;
/// use hookgate::{testing, Event, GitHub, HandlerError, Headers, Pipeline, Registry};
///
/// let dir = std::env::temp_dir().join(format!("hookgate-doc-{}.db", std::process::id()));
/// let store = SqliteStore::file(&dir).build()?;
/// let mut registry = Registry::new();
/// registry.critical_in_sqlite("github", "push", "record_push", |event: &Event, tx: &Transaction<'_>| {
///     tx.execute_batch("CREATE TABLE IF NOT EXISTS pushes (delivery TEXT NOT NULL)")
///         .and_then(|()| tx.execute("INSERT INTO pushes (delivery) VALUES (?1)", [event.id()]))
///         .map_err(HandlerError::transient)?;
///     Ok(())
/// });
/// let pipeline = Pipeline::builder()
///     .verifier(GitHub::builder("secret").build()?)
///     .store(store)
///     .registry(registry)
///     .build()?;
/// let headers = Headers::from_pairs(testing::github_headers("secret", b"{}", "push", "d-1"));
/// assert_eq!(pipeline.handle(&b"{}"[..], &headers).await.status(), 200);
/// # drop(pipeline);
/// # let _ = std::fs::remove_file(&dir);
/// # Ok(()) }
/// ```
pub trait SqliteHandler: Send + Sync {
    /// Does the work for `event` through `tx`. Return an error (or panic) to
    /// roll back everything the transaction wrote.
    fn handle(&self, event: &Event, tx: &Transaction<'_>) -> Result<(), HandlerError>;
}

impl<F> SqliteHandler for F
where
    F: Fn(&Event, &Transaction<'_>) -> Result<(), HandlerError> + Send + Sync,
{
    fn handle(&self, event: &Event, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        self(event, tx)
    }
}

// `SqliteHandler` stays dyn-compatible: the registry holds `Arc<dyn SqliteHandler>`.
const _: Option<&dyn SqliteHandler> = None;

impl TxHandler {
    /// An SQLite handler.
    pub(crate) fn sqlite(handler: impl SqliteHandler + 'static) -> Self {
        TxHandler::Sqlite(Arc::new(handler))
    }
}

fn unavailable(err: rusqlite::Error) -> StoreError {
    StoreError::unavailable(err)
}

/// One `BEGIN IMMEDIATE` transaction on one of `store`'s connections: the
/// fenced completion, the handlers, the outbox rows, the commit (unless the
/// deadline passed).
pub(crate) async fn run(store: &SqliteStore, work: Work<'_>) -> Result<(), TxFailure> {
    if let Some((outbox, _)) = &work.outbox {
        outbox
            .migrate_sqlite(store)
            .await
            .map_err(TxFailure::Store)?;
    }
    let Some(stored_token) = token_to_i64(work.token) else {
        return Err(TxFailure::Stale(stale(work.key, work.token)));
    };
    let retention = duration_ms(work.retention);
    let key = work.key.to_owned();
    let token = work.token;
    let event = work.event.clone();
    let handlers = work.handlers;
    let outbox = work.outbox.map(|(tables, jobs)| (tables.clone(), jobs));
    let deadline = work.deadline;
    let complete_sql = store.complete_sql().to_owned();
    let clock = store.clone();
    let ran = store
        .run_migrated(move |conn| {
            let now = clock.clock_ms();
            Ok(in_transaction(
                conn,
                &complete_sql,
                (
                    &key,
                    token,
                    stored_token,
                    now,
                    now.saturating_add(retention),
                ),
                &event,
                &handlers,
                outbox.as_ref().map(|(tables, jobs)| (tables, &jobs[..])),
                deadline,
            ))
        })
        .await;
    match ran {
        Ok(result) => result,
        // The operation timed out or the blocking task failed: the closure
        // may still commit.
        Err(err) => Err(TxFailure::CommitUnknown(err)),
    }
}

/// The key, token, stored token, now and end of retention of a completion.
type Fence<'a> = (&'a str, crate::store::FencingToken, i64, i64, i64);

/// The blocking part of [`run`].
fn in_transaction(
    conn: &mut rusqlite::Connection,
    complete_sql: &str,
    (key, token, stored_token, now, expires_at): Fence<'_>,
    event: &Event,
    handlers: &[NamedTxHandler],
    outbox: Option<(&crate::outbox::OutboxTables, &[crate::outbox::Job])>,
    deadline: Option<std::time::Instant>,
) -> Result<(), TxFailure> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| TxFailure::Store(unavailable(err)))?;
    let changed = tx
        .prepare_cached(complete_sql)
        .and_then(|mut update| {
            update.execute(rusqlite::params![key, stored_token, expires_at, now])
        })
        .map_err(|err| TxFailure::Store(unavailable(err)))?;
    if changed != 1 {
        return Err(TxFailure::Stale(stale(key, token)));
    }
    let mut last: Arc<str> = NO_HANDLER.into();
    for NamedTxHandler { name, handler } in handlers {
        #[allow(irrefutable_let_patterns)] // with `postgres` off
        let TxHandler::Sqlite(handler) = handler
        else {
            // The pipeline refuses to build with a handler of another engine.
            continue;
        };
        last = name.clone();
        match catch_unwind(AssertUnwindSafe(|| handler.handle(event, &tx))) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                return Err(TxFailure::Handler {
                    handler: name.clone(),
                    error,
                })
            }
            Err(payload) => {
                return Err(TxFailure::Panic {
                    handler: name.clone(),
                    panic: HandlerPanicked::from_payload(&*payload),
                })
            }
        }
    }
    if let Some((tables, jobs)) = outbox {
        tables
            .enqueue_sqlite(&tx, jobs, now)
            .map_err(TxFailure::Store)?;
    }
    if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
        return Err(TxFailure::Timeout { handler: last });
    }
    // SQLite answers a failed COMMIT with an error and leaves the
    // transaction rolled back (or still open, then rolled back on drop).
    tx.commit()
        .map_err(|err| TxFailure::Store(unavailable(err)))
}
