//! Critical handlers that write in the database transaction which also marks
//! the event's key completed (features `postgres` and `sqlite`).
//!
//! A plain critical handler writes, returns `Ok`, and then the pipeline
//! completes the key in a second step: a crash or a store outage between the
//! two runs the handler again on the provider's retry (at-least-once). A
//! **transactional** handler receives the transaction hookgate opens on the
//! idempotency store's own database, and hookgate runs the completion of the
//! key in that same transaction, guarded by the attempt's fencing token, then
//! commits: the handler's writes and the completion commit together or not at
//! all.
//!
//! - PostgreSQL (feature `postgres`): register a `postgres::PostgresHandler`
//!   with `Registry::critical_in_postgres` and give the pipeline a
//!   `store::postgres::PostgresStore` (built on your own `deadpool-postgres`
//!   pool with `PostgresStore::from_pool`, or from a URL). The handler gets a
//!   `tokio_postgres::Transaction`.
//! - SQLite (feature `sqlite`): register a `sqlite::SqliteHandler` with
//!   `Registry::critical_in_sqlite` and give the pipeline a
//!   `store::sqlite::SqliteStore` on the database file that holds your
//!   tables. The handler gets a `rusqlite::Transaction` on one of the store's
//!   connections.
//!
//! A pipeline with transactional handlers and another store (or the other
//! database's store) is refused by
//! [`PipelineBuilder::build`](crate::PipelineBuilder::build) with
//! [`BuildError::TransactionalStore`](crate::BuildError::TransactionalStore).
//!
//! # The transaction, step by step
//! 1. The key is claimed as for any delivery (lease, fencing token).
//! 2. Plain critical handlers of the event run first, outside the transaction.
//! 3. hookgate opens a transaction on the store's database and **first**
//!    runs the completion `UPDATE … WHERE key = $1 AND token = $2 AND state =
//!    'leased'`. If it changes no row, a newer attempt owns the key (this
//!    attempt's lease expired and was taken over): the transaction is rolled
//!    back before any handler runs, and the delivery is answered 500
//!    [`CriticalFailure::LeaseLost`](crate::CriticalFailure::LeaseLost). If
//!    it changes the row, the transaction holds the key's row lock (SQLite:
//!    the write lock) until it ends, so no other attempt can take the key
//!    meanwhile: a claim after the lease ran out waits for this transaction
//!    and then finds the key completed (or released).
//! 4. The transactional handlers run in registration order on the
//!    transaction; with a [durable outbox](crate::outbox), the event's
//!    best-effort jobs are inserted too.
//! 5. `COMMIT`.
//!
//! Every failure before the commit rolls everything back: a handler error
//! (transient: answered 500 and the key released; permanent: the pipeline's
//! [`PermanentFailurePolicy`](crate::PermanentFailurePolicy)), a panic, the
//! critical deadline, a cut connection, or the pipeline's future being
//! dropped (tokio-postgres rolls back a dropped transaction, rusqlite a
//! dropped `Transaction`; a SQLite transaction runs on a blocking thread and
//! checks the deadline before it commits).
//!
//! # When the commit's outcome is unknown
//! The connection can break while `COMMIT` is on its way (or the pipeline's
//! future can be dropped then). hookgate cannot know whether the commit
//! happened, and answers 503 [`OutcomeKind::StoreUnavailable`](crate::OutcomeKind::StoreUnavailable).
//! Either way nothing is written twice:
//! - the commit happened: the business writes and the completion are both
//!   in; the provider's retry finds the key completed and is answered
//!   200 `Duplicate` without running anything;
//! - it did not: neither is in, the key is still leased with this attempt's
//!   token. hookgate asks the store to release it (fenced by the token; on
//!   PostgreSQL that release waits for the broken transaction's row lock, so
//!   it sees the final state and never releases a completed key); if the
//!   release fails too, the retry is answered 409 until the lease ends, then
//!   runs the handlers once more, on a database that holds none of the first
//!   attempt's writes.
//!
//! PostgreSQL keeps the row lock of a transaction whose client vanished
//! until it notices the connection is gone. On a network where connections
//! can die silently, set `idle_in_transaction_session_timeout` (and TCP
//! keepalives) so that such a transaction is ended and the key's retry does
//! not wait on it.
//!
//! # What is covered and what is not
//! Covered, exactly once across crashes, outages, duplicates and concurrent
//! instances: every write the transactional handlers make **through the
//! transaction they are given**, in the store's database, and the outbox
//! rows of the event's best-effort jobs.
//!
//! Not covered:
//! - anything a handler does outside that transaction: an HTTP call, an
//!   email, a message to a broker, a write on another connection or another
//!   database. Those run once per attempt, and an attempt can be rolled back
//!   after them (a later handler failed, the commit was cut): they are
//!   at-least-once, as with plain handlers. Put them in best-effort work (with
//!   the outbox they are enqueued in the same transaction) or make them
//!   idempotent by [`Event::key`](crate::Event::key);
//! - plain critical handlers of the same event: they run before the
//!   transaction and run again when it rolls back;
//! - the journal, statistics and the dead letter, which live elsewhere.
//!
//! A transactional handler must not commit, roll back or end the transaction
//! itself (the types do not let it): savepoints (`tx.savepoint()` in
//! rusqlite, `tx.transaction()` in tokio-postgres) are fine.

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::event::Event;
use crate::handler::{HandlerError, HandlerPanicked};
use crate::outbox::{Job, OutboxTables};
use crate::store::{FencingToken, StoreError};

/// A transactional critical handler, for one engine.
#[derive(Clone)]
pub(crate) enum TxHandler {
    /// Runs on a PostgreSQL transaction.
    #[cfg(feature = "postgres")]
    Postgres(Arc<dyn postgres::PostgresHandler>),
    /// Runs on an SQLite transaction.
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<dyn sqlite::SqliteHandler>),
}

impl TxHandler {
    /// The store type this handler needs, as error messages name it.
    pub(crate) fn needs(&self) -> &'static str {
        match *self {
            #[cfg(feature = "postgres")]
            TxHandler::Postgres(_) => "PostgresStore",
            #[cfg(feature = "sqlite")]
            TxHandler::Sqlite(_) => "SqliteStore",
        }
    }
}

/// A transactional handler with the name it was registered with.
#[derive(Clone)]
pub(crate) struct NamedTxHandler {
    pub(crate) name: Arc<str>,
    pub(crate) handler: TxHandler,
}

impl std::fmt::Debug for NamedTxHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NamedTxHandler").field(&self.name).finish()
    }
}

/// The database of the pipeline's idempotency store, when it is one that
/// can run transactions for handlers and the outbox.
#[derive(Clone, Debug)]
pub(crate) enum Engine {
    /// A PostgreSQL store.
    #[cfg(feature = "postgres")]
    Postgres(crate::store::postgres::PostgresStore),
    /// An SQLite store.
    #[cfg(feature = "sqlite")]
    Sqlite(crate::store::sqlite::SqliteStore),
}

impl Engine {
    /// The engine of `store`, if it is a [`PostgresStore`] or an
    /// [`SqliteStore`] (or an `Arc` of one).
    ///
    /// [`PostgresStore`]: crate::store::postgres::PostgresStore
    /// [`SqliteStore`]: crate::store::sqlite::SqliteStore
    #[allow(unused_variables)]
    pub(crate) fn of(store: &dyn Any) -> Option<Engine> {
        #[cfg(feature = "postgres")]
        {
            use crate::store::postgres::PostgresStore;
            if let Some(store) = store.downcast_ref::<PostgresStore>() {
                return Some(Engine::Postgres(store.clone()));
            }
            if let Some(store) = store.downcast_ref::<Arc<PostgresStore>>() {
                return Some(Engine::Postgres((**store).clone()));
            }
        }
        #[cfg(feature = "sqlite")]
        {
            use crate::store::sqlite::SqliteStore;
            if let Some(store) = store.downcast_ref::<SqliteStore>() {
                return Some(Engine::Sqlite(store.clone()));
            }
            if let Some(store) = store.downcast_ref::<Arc<SqliteStore>>() {
                return Some(Engine::Sqlite((**store).clone()));
            }
        }
        None
    }

    /// Whether `handler` runs on this engine.
    pub(crate) fn runs(&self, handler: &TxHandler) -> bool {
        #[allow(unreachable_patterns)]
        match (self, handler) {
            #[cfg(feature = "postgres")]
            (Engine::Postgres(_), TxHandler::Postgres(_)) => true,
            #[cfg(feature = "sqlite")]
            (Engine::Sqlite(_), TxHandler::Sqlite(_)) => true,
            _ => false,
        }
    }

    /// Runs `work` in one transaction: the fenced completion first, then the
    /// handlers, then the outbox rows, then the commit.
    pub(crate) async fn run(&self, work: Work<'_>) -> Result<(), TxFailure> {
        match self {
            #[cfg(feature = "postgres")]
            Engine::Postgres(store) => postgres::run(store, work).await,
            #[cfg(feature = "sqlite")]
            Engine::Sqlite(store) => sqlite::run(store, work).await,
        }
    }
}

/// What one transaction does.
pub(crate) struct Work<'a> {
    /// The claimed key.
    pub(crate) key: &'a str,
    /// The attempt's token.
    pub(crate) token: FencingToken,
    /// How long the completed key is kept.
    pub(crate) retention: Duration,
    /// The event.
    pub(crate) event: &'a Event,
    /// The transactional handlers, in order.
    pub(crate) handlers: Vec<NamedTxHandler>,
    /// The outbox and the jobs to enqueue in it, when there is one.
    pub(crate) outbox: Option<(&'a OutboxTables, Vec<Job>)>,
    /// When the transaction must have committed (SQLite checks it before
    /// committing; PostgreSQL's caller drops the future then).
    #[cfg(feature = "sqlite")]
    pub(crate) deadline: Option<std::time::Instant>,
}

/// Why a transaction did not commit (or may not have).
#[derive(Debug)]
pub(crate) enum TxFailure {
    /// A newer attempt holds the key: nothing ran, nothing was written.
    Stale(StoreError),
    /// A handler failed; rolled back.
    Handler {
        /// Its name.
        handler: Arc<str>,
        /// Its error.
        error: HandlerError,
    },
    /// A handler panicked; rolled back.
    Panic {
        /// Its name.
        handler: Arc<str>,
        /// The panic.
        panic: HandlerPanicked,
    },
    /// The deadline passed before the commit; rolled back (SQLite).
    #[cfg(feature = "sqlite")]
    Timeout {
        /// The handler that was running or last ran.
        handler: Arc<str>,
    },
    /// The database failed before the commit was sent: rolled back.
    Store(StoreError),
    /// The database failed while the commit was on its way: committed or not.
    CommitUnknown(StoreError),
}

/// The handler name for failures where no single handler is at fault.
#[cfg(feature = "sqlite")]
pub(crate) const NO_HANDLER: &str = "(transaction)";
