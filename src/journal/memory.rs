//! [`MemoryJournal`]: a bounded journal in the process.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;

use super::query::{JournalFilter, JournalPage, JournalQuery, StatusCounts};
use super::record::{JournalId, JournalRecord, JournalWrite};
use super::{Journal, JournalError};

/// A journal in the process: the newest records, up to a number of records
/// and of body bytes; the oldest go first when either is reached (counted by
/// [`MemoryJournal::evicted`]). Gone when the process ends: for tests, and for
/// a look at recent traffic; use a durable journal to recover failed
/// deliveries after a restart.
///
/// Clones share the same records.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), hookgate::journal::JournalError> {
/// use hookgate::journal::{DeliveryStatus, Journal, JournalId, JournalQuery, JournalRecord, JournalWrite, MemoryJournal};
/// use std::time::SystemTime;
///
/// let journal = MemoryJournal::with_limits(2, 1024);
/// for _ in 0..3 {
///     let record = JournalRecord::new(JournalId::generate(), SystemTime::now(), DeliveryStatus::Processed);
///     journal.write(vec![JournalWrite::Record(record)]).await?;
/// }
/// assert_eq!(journal.list(&JournalQuery::default()).await?.records.len(), 2);
/// assert_eq!(journal.evicted(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryJournal {
    inner: Arc<Inner>,
}

struct Inner {
    max_records: usize,
    max_body_bytes: usize,
    state: Mutex<State>,
    evicted: AtomicU64,
}

#[derive(Default)]
struct State {
    records: BTreeMap<JournalId, JournalRecord>,
    body_bytes: usize,
}

impl State {
    fn body_len(record: &JournalRecord) -> usize {
        record.body.as_ref().map_or(0, |b| b.len())
    }

    fn insert(&mut self, mut record: JournalRecord) {
        if let Some(old) = self.records.remove(&record.id) {
            self.body_bytes -= Self::body_len(&old);
            // A record written again keeps what was added to it meanwhile.
            if record.best_effort.is_empty() {
                record.best_effort = old.best_effort;
            }
            record.resolved_at = record.resolved_at.or(old.resolved_at);
        }
        self.body_bytes += Self::body_len(&record);
        self.records.insert(record.id, record);
    }

    fn remove_oldest(&mut self) -> bool {
        match self.records.pop_first() {
            Some((_, old)) => {
                self.body_bytes -= Self::body_len(&old);
                true
            }
            None => false,
        }
    }
}

impl Default for MemoryJournal {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryJournal {
    /// A journal of up to 10,000 records and 64 MiB of bodies.
    pub fn new() -> Self {
        Self::with_limits(10_000, 64 * 1024 * 1024)
    }

    /// A journal of up to `max_records` records (at least 1) and
    /// `max_body_bytes` bytes of bodies.
    pub fn with_limits(max_records: usize, max_body_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_records: max_records.max(1),
                max_body_bytes,
                state: Mutex::new(State::default()),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock; recover the data anyway.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.state().records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.state().records.is_empty()
    }

    /// How many records were removed to make room, oldest first.
    pub fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError> {
        let mut state = self.state();
        for write in batch {
            match write {
                JournalWrite::Record(record) => state.insert(record),
                JournalWrite::BestEffort { id, job } => {
                    if let Some(record) = state.records.get_mut(&id) {
                        match record
                            .best_effort
                            .iter_mut()
                            .find(|j| j.handler == job.handler)
                        {
                            Some(stored) => *stored = job,
                            None => record.best_effort.push(job),
                        }
                    }
                }
            }
        }
        while state.records.len() > self.inner.max_records
            || state.body_bytes > self.inner.max_body_bytes
        {
            if !state.remove_oldest() {
                break;
            }
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn get(&self, id: JournalId) -> Result<Option<JournalRecord>, JournalError> {
        Ok(self.state().records.get(&id).cloned())
    }

    async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError> {
        let size = query.page_size();
        let state = self.state();
        let newest_first = match query.after {
            Some(cursor) => state.records.range(..cursor.0),
            None => state.records.range(..),
        };
        let fetched = newest_first
            .rev()
            .map(|(_, record)| record)
            .filter(|record| query.filter.matches(record))
            .take(size + 1)
            .map(|record| {
                let mut record = record.clone();
                record.body = None;
                record
            })
            .collect();
        Ok(JournalPage::from_fetched(fetched, size))
    }

    async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError> {
        let mut counts = StatusCounts::new();
        for record in self.state().records.values() {
            if filter.matches(record) {
                *counts.entry(record.status).or_default() += 1;
            }
        }
        Ok(counts)
    }

    async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError> {
        Ok(match self.state().records.get_mut(&id) {
            Some(record) => {
                record.resolved_at = Some(at);
                true
            }
            None => false,
        })
    }

    async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError> {
        let mut state = self.state();
        let old: Vec<JournalId> = state
            .records
            .values()
            .filter(|r| r.received_at < before)
            .map(|r| r.id)
            .collect();
        for id in &old {
            if let Some(record) = state.records.remove(id) {
                state.body_bytes -= State::body_len(&record);
            }
        }
        Ok(old.len() as u64)
    }
}

impl fmt::Debug for MemoryJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryJournal")
            .field("records", &state.records.len())
            .field("body_bytes", &state.body_bytes)
            .field("max_records", &self.inner.max_records)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .field("evicted", &self.evicted())
            .finish()
    }
}
