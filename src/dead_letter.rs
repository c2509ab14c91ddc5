//! Where work that could not be done goes: the [`DeadLetter`] trait, its
//! entries, and the in-process [`MemoryDeadLetter`].
//!
//! Work ends here when it cannot succeed: a critical handler's permanent error
//! (under [`PermanentFailurePolicy::DeadLetter`](crate::PermanentFailurePolicy::DeadLetter)),
//! best-effort work whose retries are exhausted or that failed permanently, work
//! still pending when shutdown gives up, work refused because too much was
//! pending, and the unfinished work of a dropped [`BestEffort`](crate::BestEffort).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::event::Event;
use crate::handler::{BoxError, HandlerError};

/// Why work ended in the dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// A best-effort handler failed on every attempt the policy allowed.
    RetriesExhausted,
    /// A best-effort handler returned [`HandlerError::Permanent`]; not retried.
    Permanent,
    /// A critical handler returned [`HandlerError::Permanent`] and the pipeline's
    /// policy acknowledges such events (200) after dead-lettering them.
    CriticalPermanent,
    /// The work was still pending when shutdown's deadline passed — it was
    /// cancelled, and none of it completed — or arrived after shutdown had
    /// given up.
    ShutDown,
    /// The pipeline already held its maximum of pending best-effort jobs
    /// ([`PipelineBuilder::max_pending_best_effort`](crate::PipelineBuilder::max_pending_best_effort)):
    /// the work was never started and went here at once.
    Overflow,
    /// The [`BestEffort`](crate::BestEffort) holding the work was dropped (or the task running it
    /// aborted) before the work settled.
    BestEffortDropped,
}

/// Work that could not be done, with everything needed to look into it or
/// replay it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetterEntry {
    /// The event (body included).
    pub event: Event,
    /// The name the handler was registered with.
    pub handler: Arc<str>,
    /// Attempts started, including one cut short by shutdown or by dropping
    /// the work (0 when none started).
    pub attempts: u32,
    /// Why the work ended here.
    pub reason: DeadLetterReason,
    /// The last error, when an attempt was made.
    pub error: Option<Arc<HandlerError>>,
}

impl DeadLetterEntry {
    /// An entry for `event`, whose `handler` (its registered name) failed after
    /// `attempts` attempts, for `reason`, with the last `error` if any. The
    /// pipeline builds these; build your own to test a [`DeadLetter`].
    pub fn new(
        event: Event,
        handler: Arc<str>,
        attempts: u32,
        reason: DeadLetterReason,
        error: Option<Arc<HandlerError>>,
    ) -> Self {
        Self {
            event,
            handler,
            attempts,
            reason,
            error,
        }
    }

    /// The event's provider.
    pub fn provider(&self) -> &str {
        self.event.provider()
    }

    /// The event's deduplication id.
    pub fn event_id(&self) -> &str {
        self.event.id()
    }
}

/// A dead letter could not store an entry.
#[derive(Debug, thiserror::Error)]
#[error("the dead letter refused an entry: {0}")]
pub struct DeadLetterError(#[source] pub BoxError);

impl DeadLetterError {
    /// Wraps the sink's own error.
    pub fn new(err: impl Into<BoxError>) -> Self {
        Self(err.into())
    }
}

/// Where work that could not be done goes: your table, queue or alerting.
///
/// Production services should send entries somewhere durable (a database table,
/// a queue): the pipeline's default is an in-process [`MemoryDeadLetter`], which
/// is lost when the process ends.
///
/// `send` returning `Ok` means the entry is stored: for a critical event the
/// pipeline then records it as done and answers 200. When `send` fails:
/// - for a critical event, the pipeline releases the key and answers 500
///   ([`OutcomeKind::PermanentFailure`](crate::OutcomeKind::PermanentFailure) with
///   `dead_lettered: false`), so the provider keeps the event: it retries, or
///   (GitHub) lists it as failed for redelivery;
/// - for best-effort work (the critical work already succeeded and was
///   answered), nobody else holds the entry: the failure is counted in
///   [`Stats::dead_letter_failures`](crate::Stats::dead_letter_failures) and in the
///   `BestEffortReport` / `ShutdownReport`, and the entry is dropped. A sink that
///   can refuse should therefore alert on its own refusals.
///
/// A dead letter that keeps what a replay needs in your own storage (here a
/// vector standing in for a table), implemented with
/// [`async_trait`](crate::async_trait):
///
/// ```
/// use hookgate::{async_trait, DeadLetter, DeadLetterEntry, DeadLetterError};
/// use std::sync::Mutex;
///
/// #[derive(Debug, Default)]
/// struct FailedWorkTable {
///     rows: Mutex<Vec<(String, String, String, Vec<u8>)>>,
/// }
///
/// #[async_trait]
/// impl DeadLetter for FailedWorkTable {
///     async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
///         // Keep the provider, event id, handler and raw body: enough to replay.
///         let row = (
///             entry.provider().to_owned(),
///             entry.event_id().to_owned(),
///             entry.handler.to_string(),
///             entry.event.body().to_vec(),
///         );
///         // A real table's insert error would be `Err(DeadLetterError::new(err))`.
///         self.rows
///             .lock()
///             .map_err(|_| DeadLetterError::new("the table lock is poisoned"))?
///             .push(row);
///         Ok(())
///     }
/// }
/// # let _ = FailedWorkTable::default();
/// ```
///
/// `Arc<D>` and `Box<D>` (also of `dyn DeadLetter`) are dead letters too. The
/// trait uses `async_trait` because the pipeline keeps its sink as
/// `Arc<dyn DeadLetter>`, which a trait with a native `async fn` cannot be.
#[async_trait]
pub trait DeadLetter: Send + Sync + fmt::Debug {
    /// Stores one entry; `Ok` only once it is stored.
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError>;
}

/// `Arc<D>` and `Box<D>` forward to the dead letter they hold.
macro_rules! forward_dead_letter {
    ($($pointer:ident),*) => {$(
        #[async_trait]
        impl<D: DeadLetter + ?Sized> DeadLetter for $pointer<D> {
            async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
                (**self).send(entry).await
            }
        }
    )*};
}

forward_dead_letter!(Arc, Box);

// `DeadLetter` stays dyn-compatible: the pipeline holds `Arc<dyn DeadLetter>`.
const _: Option<&dyn DeadLetter> = None;

/// An in-memory, bounded [`DeadLetter`] for tests, examples and small services;
/// the pipeline's default (read it with
/// [`Pipeline::memory_dead_letter`](crate::Pipeline::memory_dead_letter)).
///
/// Clones share the same entries, so keep a clone to read what the pipeline
/// sent, and [`drain`](MemoryDeadLetter::drain) it regularly. When full it
/// refuses new entries rather than forgetting old ones: a critical permanent
/// failure is then answered 500 (the provider keeps the event) until you drain
/// it, and refused best-effort work is counted in
/// [`Stats::dead_letter_failures`](crate::Stats::dead_letter_failures).
/// Entries live only as long as the process: set a durable [`DeadLetter`] in
/// production.
///
/// It is bounded twice, since each entry keeps its event's body (up to 25 MiB
/// for GitHub): by a number of entries and by the bytes of their bodies (a body
/// shared by several entries counts once per entry).
#[derive(Clone)]
pub struct MemoryDeadLetter {
    held: Arc<Mutex<Held>>,
    capacity: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Held {
    entries: VecDeque<DeadLetterEntry>,
    bytes: usize,
}

/// [`MemoryDeadLetter`] is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the in-memory dead letter is full (at most {capacity} entries and {max_bytes} bytes of bodies): read and clear it with `MemoryDeadLetter::drain`")]
#[non_exhaustive]
pub struct DeadLetterFull {
    /// Its capacity in entries.
    pub capacity: usize,
    /// Its capacity in body bytes.
    pub max_bytes: usize,
}

impl Default for MemoryDeadLetter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDeadLetter {
    /// The default limit on the bytes of the bodies held: 256 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;

    /// A dead letter holding up to 10,000 entries and
    /// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) of bodies.
    pub fn new() -> Self {
        Self::with_capacity(10_000)
    }

    /// A dead letter holding up to `capacity` entries and
    /// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) of bodies.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_limits(capacity, Self::DEFAULT_MAX_BYTES)
    }

    /// A dead letter holding up to `capacity` entries whose bodies total at
    /// most `max_bytes`.
    pub fn with_limits(capacity: usize, max_bytes: usize) -> Self {
        Self {
            held: Arc::new(Mutex::new(Held::default())),
            capacity,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // The lock is never held across a panic-prone call; recover the data anyway.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the entries, oldest first.
    pub fn entries(&self) -> Vec<DeadLetterEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// Removes and returns every entry, oldest first, making room for new ones.
    pub fn drain(&self) -> Vec<DeadLetterEntry> {
        let mut held = self.lock();
        held.bytes = 0;
        held.entries.drain(..).collect()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// Bytes of the bodies held (a shared body counts once per entry).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[async_trait]
impl DeadLetter for MemoryDeadLetter {
    async fn send(&self, entry: DeadLetterEntry) -> Result<(), DeadLetterError> {
        let mut held = self.lock();
        let size = entry.event.body().len();
        let bytes = held.bytes.saturating_add(size);
        if held.entries.len() >= self.capacity || bytes > self.max_bytes {
            return Err(DeadLetterError::new(DeadLetterFull {
                capacity: self.capacity,
                max_bytes: self.max_bytes,
            }));
        }
        held.bytes = bytes;
        held.entries.push_back(entry);
        Ok(())
    }
}

impl fmt::Debug for MemoryDeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.lock();
        f.debug_struct("MemoryDeadLetter")
            .field("len", &held.entries.len())
            .field("capacity", &self.capacity)
            .field("bytes", &held.bytes)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}
