//! The delivery journal: what arrived, how each attempt ended, and what an
//! operator needs to find and replay the deliveries that failed.
//!
//! With a journal set ([`PipelineBuilder::journal`](crate::PipelineBuilder::journal)),
//! the pipeline writes one [`JournalRecord`] per delivery attempt: when it was
//! received, the provider, event id, kind and delivery id, the status and the
//! HTTP status answered, the attempt number, how long each step took, the
//! error, the best-effort jobs and how they ended, and for verified deliveries
//! the allowlisted headers and the body (see [`BodyRetention`]). Deliveries
//! that fail verification are recorded as metadata only: anyone can send
//! those, so their bytes are never stored.
//!
//! Journaling never changes an answer. Ordinary records are written in
//! batches by a background task, off the hot path, through a bounded queue
//! (an in-process journal such as [`MemoryJournal`] takes each write at once
//! instead, see [`Journal::write_at_once`]); a
//! verified delivery answered non-2xx (the ones someone must find and replay)
//! is written before its answer, within what is left of the provider's answer
//! budget. When the journal is slow or down, records are counted as dropped
//! ([`Stats::journal_dropped`](crate::Stats::journal_dropped)) and the delivery
//! is answered as before. A crash between an answer and the batched write of
//! its record loses that record only.
//!
//! Implementations: [`MemoryJournal`] (bounded, in the process), and behind the
//! store features `sqlite::SqliteJournal` (`sqlite`) and
//! `postgres::PostgresJournal` (`postgres`). Your own journal implements
//! [`Journal`]:
//!
//! ```
//! use hookgate::async_trait;
//! use hookgate::journal::{
//!     Journal, JournalError, JournalId, JournalPage, JournalQuery, JournalFilter, JournalWrite,
//!     MemoryJournal, StatusCounts,
//! };
//! use std::time::SystemTime;
//!
//! /// Forwards to a memory journal and counts the writes.
//! #[derive(Debug, Default)]
//! struct Counting {
//!     inner: MemoryJournal,
//!     writes: std::sync::atomic::AtomicUsize,
//! }
//!
//! #[async_trait]
//! impl Journal for Counting {
//!     async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError> {
//!         self.writes.fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
//!         self.inner.write(batch).await
//!     }
//!     async fn get(&self, id: JournalId) -> Result<Option<hookgate::journal::JournalRecord>, JournalError> {
//!         self.inner.get(id).await
//!     }
//!     async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError> {
//!         self.inner.list(query).await
//!     }
//!     async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError> {
//!         self.inner.counts(filter).await
//!     }
//!     async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError> {
//!         self.inner.mark_resolved(id, at).await
//!     }
//!     async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError> {
//!         self.inner.purge_before(before).await
//!     }
//! }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

mod headers;
mod memory;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod query;
mod record;
mod settings;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

pub use headers::{JournalHeaders, JournalHeadersIter};
pub use memory::MemoryJournal;
pub use query::{JournalCursor, JournalFilter, JournalPage, JournalQuery, StatusCounts};
pub use record::{
    BestEffortJob, BestEffortState, BodyRetention, DeliveryStatus, Durations, InvalidJournalId,
    JournalId, JournalRecord, JournalWrite, UnknownStatus,
};
pub use settings::JournalSettings;

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The journal cannot be reached or failed to answer.
    #[error("journal unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The journal holds data it cannot read (e.g. written by another
    /// program).
    #[error("journal holds an unreadable record: {0}")]
    Corrupt(String),
}

impl JournalError {
    /// Wraps a backend error as [`JournalError::Unavailable`].
    pub fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        JournalError::Unavailable(err.into())
    }
}

/// Storage for delivery records, with the queries operators need.
///
/// Every method is one round trip to the storage; the pipeline calls
/// [`write`](Journal::write) only, from its background writer and, for
/// verified deliveries answered non-2xx, before the answer. The rest serves
/// the operations API ([`Pipeline::replay`](crate::Pipeline::replay) and your
/// own tools).
#[async_trait]
pub trait Journal: Send + Sync + fmt::Debug {
    /// Applies a batch of writes in order (all of them, or report an error:
    /// the pipeline counts the whole batch as dropped). A record written
    /// again replaces the stored one, so writing a batch twice is harmless.
    /// The batch is handed over, so a journal that keeps records in memory
    /// or sends them to another thread takes them without a copy.
    async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError>;

    /// Applies one write at once, without waiting, when this journal can;
    /// gives it back untouched when it cannot, which is the default. The
    /// pipeline offers every write here first and queues the ones given
    /// back for its background writer ([`write`](Journal::write)). An
    /// in-process journal such as [`MemoryJournal`] takes them all, so its
    /// records skip the queue, the writer task and the batch. A journal that
    /// does I/O keeps the default: this is called on the delivery's path and
    /// must never block.
    fn write_at_once(&self, write: JournalWrite) -> Option<JournalWrite> {
        Some(write)
    }

    /// The record with this id, its body included.
    async fn get(&self, id: JournalId) -> Result<Option<JournalRecord>, JournalError>;

    /// A page of the records matching the query's filter, newest first,
    /// without their bodies (see [`JournalPage`]).
    async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError>;

    /// How many records matching `filter` have each status.
    async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError>;

    /// Marks a record resolved at `at` (an operator dealt with it); `false`
    /// when there is no such record.
    async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError>;

    /// Deletes the records received before `before`; how many it deleted.
    async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError>;
}

/// Forwards [`Journal`] through each smart pointer named.
macro_rules! forward_journal {
    ($($pointer:ident),*) => {$(
        #[async_trait]
        impl<J: Journal + ?Sized> Journal for $pointer<J> {
            async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError> {
                (**self).write(batch).await
            }
            fn write_at_once(&self, write: JournalWrite) -> Option<JournalWrite> {
                (**self).write_at_once(write)
            }
            async fn get(&self, id: JournalId) -> Result<Option<JournalRecord>, JournalError> {
                (**self).get(id).await
            }
            async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError> {
                (**self).list(query).await
            }
            async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError> {
                (**self).counts(filter).await
            }
            async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError> {
                (**self).mark_resolved(id, at).await
            }
            async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError> {
                (**self).purge_before(before).await
            }
        }
    )*};
}

forward_journal!(Arc, Box);

// `Journal` stays dyn-compatible: the pipeline holds `Arc<dyn Journal>`.
const _: Option<&dyn Journal> = None;
