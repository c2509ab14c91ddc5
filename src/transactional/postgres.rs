//! [`PostgresHandler`]: a critical handler that writes in the PostgreSQL
//! transaction completing the event's key (feature `postgres`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt;

/// The tokio-postgres crate hookgate is built with, so that your handler
/// names the same `Transaction` type.
pub use deadpool_postgres::tokio_postgres;
use tokio_postgres::Transaction;

use super::{NamedTxHandler, TxFailure, TxHandler, Work};
use crate::event::Event;
use crate::handler::{HandlerError, HandlerPanicked};
use crate::store::durable::{duration_ms, stale, token_to_i64};
use crate::store::postgres::PostgresStore;
use crate::store::StoreError;

/// A critical handler that writes through the transaction in which the
/// pipeline also completes the event's key: its writes and the completion
/// commit together or not at all. See [`transactional`](crate::transactional)
/// for what is covered and what is not.
///
/// Register it with
/// [`Registry::critical_in_postgres`](crate::Registry::critical_in_postgres);
/// the pipeline's store must be a
/// [`PostgresStore`] (on your own pool: [`PostgresStore::from_pool`]).
///
/// ```no_run
/// use hookgate::transactional::postgres::{tokio_postgres::Transaction, PostgresHandler};
/// use hookgate::{async_trait, Event, HandlerError};
///
/// struct RecordPayment;
///
/// #[async_trait]
/// impl PostgresHandler for RecordPayment {
///     async fn handle(&self, event: &Event, tx: &Transaction<'_>) -> Result<(), HandlerError> {
///         tx.execute(
///             "INSERT INTO payments (event_id, body) VALUES ($1, $2)",
///             &[&event.id(), &&event.body()[..]],
///         )
///         .await
///         .map_err(HandlerError::transient)?;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait PostgresHandler: Send + Sync {
    /// Does the work for `event` through `tx`. Return an error (or panic) to
    /// roll back everything the transaction wrote.
    async fn handle(&self, event: &Event, tx: &Transaction<'_>) -> Result<(), HandlerError>;
}

#[async_trait]
impl<H: PostgresHandler + ?Sized> PostgresHandler for Arc<H> {
    async fn handle(&self, event: &Event, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        (**self).handle(event, tx).await
    }
}

#[async_trait]
impl<H: PostgresHandler + ?Sized> PostgresHandler for Box<H> {
    async fn handle(&self, event: &Event, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        (**self).handle(event, tx).await
    }
}

// `PostgresHandler` stays dyn-compatible: the registry holds `Arc<dyn PostgresHandler>`.
const _: Option<&dyn PostgresHandler> = None;

impl TxHandler {
    /// A PostgreSQL handler.
    pub(crate) fn postgres(handler: impl PostgresHandler + 'static) -> Self {
        TxHandler::Postgres(Arc::new(handler))
    }
}

fn unavailable(err: tokio_postgres::Error) -> StoreError {
    StoreError::unavailable(err)
}

/// One transaction on `store`'s pool: the fenced completion, the handlers,
/// the outbox rows, the commit.
pub(crate) async fn run(store: &PostgresStore, work: Work<'_>) -> Result<(), TxFailure> {
    store.migrate().await.map_err(TxFailure::Store)?;
    if let Some((outbox, _)) = &work.outbox {
        outbox
            .migrate_postgres(store)
            .await
            .map_err(TxFailure::Store)?;
    }
    let Some(stored_token) = token_to_i64(work.token) else {
        return Err(TxFailure::Stale(stale(work.key, work.token)));
    };
    let retention = duration_ms(work.retention);
    let mut client = store
        .pool()
        .get()
        .await
        .map_err(|err| TxFailure::Store(StoreError::unavailable(err)))?;
    let tx = client
        .transaction()
        .await
        .map_err(|err| TxFailure::Store(unavailable(err)))?;
    // The fence first: from here the transaction holds the key's row lock.
    let complete = tx
        .prepare_cached(store.complete_sql())
        .await
        .map_err(|err| TxFailure::Store(unavailable(err)))?;
    let changed = tx
        .execute(&complete, &[&work.key, &stored_token, &retention])
        .await
        .map_err(|err| TxFailure::Store(unavailable(err)))?;
    if changed != 1 {
        // Dropping `tx` rolls back (nothing was written).
        return Err(TxFailure::Stale(stale(work.key, work.token)));
    }
    for NamedTxHandler { name, handler } in &work.handlers {
        #[allow(irrefutable_let_patterns)] // with `sqlite` off
        let TxHandler::Postgres(handler) = handler
        else {
            // The pipeline refuses to build with a handler of another engine.
            continue;
        };
        let run = AssertUnwindSafe(handler.handle(work.event, &tx)).catch_unwind();
        match run.await {
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
    if let Some((outbox, jobs)) = &work.outbox {
        outbox
            .enqueue_postgres(&tx, jobs)
            .await
            .map_err(TxFailure::Store)?;
    }
    // The server refusing the commit (a deferred constraint, a
    // serialisation failure) rolled it back; a connection that broke while
    // the commit was on its way leaves its outcome unknown.
    tx.commit().await.map_err(|err| {
        if err.as_db_error().is_some() {
            TxFailure::Store(unavailable(err))
        } else {
            TxFailure::CommitUnknown(unavailable(err))
        }
    })
}
