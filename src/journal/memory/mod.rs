//! [`MemoryJournal`]: a bounded journal in the process.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use smallvec::SmallVec;

use super::query::{JournalFilter, JournalPage, JournalQuery, StatusCounts};
use super::record::{BestEffortJob, JournalId, JournalRecord, JournalWrite};
use super::{Journal, JournalError};
use stored::Stored;

mod stored;

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
    /// In id order, oldest first. Ids are time-ordered and records arrive
    /// mostly newest last, so a new record is almost always pushed at the back
    /// and the oldest is popped from the front, without moving the others.
    records: VecDeque<Stored>,
    body_bytes: usize,
}

impl State {
    /// Where the record `id` is (`Ok`), or where it would go (`Err`).
    fn find(&self, id: JournalId) -> Result<usize, usize> {
        match self.records.back() {
            None => Err(0),
            // The common case: a record newer than every stored one.
            Some(newest) if newest.id < id => Err(self.records.len()),
            Some(_) => self.records.binary_search_by(|r| r.id.cmp(&id)),
        }
    }

    fn get(&self, id: JournalId) -> Option<&Stored> {
        self.find(id).ok().map(|i| &self.records[i])
    }

    fn get_mut(&mut self, id: JournalId) -> Option<&mut Stored> {
        self.find(id).ok().map(|i| &mut self.records[i])
    }

    /// Stores `record`; the record it replaces, if any.
    fn insert(&mut self, mut record: Stored) -> Option<Stored> {
        self.body_bytes += record.body_len();
        match self.find(record.id) {
            Ok(i) => {
                let stored = &mut self.records[i];
                self.body_bytes -= stored.body_len();
                // A record written again keeps what was added to it meanwhile.
                if record.best_effort.is_empty() {
                    record.best_effort = std::mem::take(&mut stored.best_effort);
                }
                record.set_resolved_at(record.resolved_at().or(stored.resolved_at()));
                Some(std::mem::replace(stored, record))
            }
            Err(i) => {
                self.records.insert(i, record);
                None
            }
        }
    }

    fn remove_oldest(&mut self) -> Option<Stored> {
        let old = self.records.pop_front()?;
        self.body_bytes -= old.body_len();
        Some(old)
    }
}

/// A [`JournalWrite`], its record repacked.
// As in `JournalWrite`: most writes are records.
#[allow(clippy::large_enum_variant)]
enum Write {
    Record(Stored),
    BestEffort(JournalId, BestEffortJob),
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

impl MemoryJournal {
    /// Applies `writes` in order under the lock; what they replace or evict,
    /// to be dropped once the lock is released (freeing old bodies keeps no
    /// reader waiting).
    fn apply(&self, writes: impl IntoIterator<Item = Write>) -> SmallVec<[Stored; 2]> {
        let mut gone = SmallVec::new();
        let mut state = self.state();
        for write in writes {
            match write {
                Write::Record(record) => gone.extend(state.insert(record)),
                Write::BestEffort(id, job) => {
                    if let Some(record) = state.get_mut(id) {
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
        let mut evicted = 0;
        while state.records.len() > self.inner.max_records
            || state.body_bytes > self.inner.max_body_bytes
        {
            let Some(old) = state.remove_oldest() else {
                break;
            };
            gone.push(old);
            evicted += 1;
        }
        drop(state);
        self.inner.evicted.fetch_add(evicted, Ordering::Relaxed);
        gone
    }
}

impl From<JournalWrite> for Write {
    /// Repacks a record (before the lock is taken: copying strings keeps no
    /// reader waiting).
    fn from(write: JournalWrite) -> Self {
        match write {
            JournalWrite::Record(record) => Write::Record(Stored::new(record)),
            JournalWrite::BestEffort { id, job } => Write::BestEffort(id, job),
        }
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError> {
        let batch: Vec<Write> = batch.into_iter().map(Write::from).collect();
        drop(self.apply(batch));
        Ok(())
    }

    /// Always at once: a write is a few copies under a lock held for
    /// microseconds, cheaper than queueing it for a writer task.
    fn write_at_once(&self, write: JournalWrite) -> Option<JournalWrite> {
        drop(self.apply([Write::from(write)]));
        None
    }

    async fn get(&self, id: JournalId) -> Result<Option<JournalRecord>, JournalError> {
        Ok(self.state().get(id).map(|stored| stored.record(true)))
    }

    async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError> {
        let size = query.page_size();
        let state = self.state();
        let end = match query.after {
            Some(cursor) => state.records.partition_point(|r| r.id < cursor.0),
            None => state.records.len(),
        };
        let fetched = state
            .records
            .range(..end)
            .rev()
            .filter(|stored| query.filter.matches_fields(&stored.filtered()))
            .take(size + 1)
            .map(|stored| stored.record(false))
            .collect();
        Ok(JournalPage::from_fetched(fetched, size))
    }

    async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError> {
        let mut counts = StatusCounts::new();
        for stored in &self.state().records {
            if filter.matches_fields(&stored.filtered()) {
                *counts.entry(stored.status()).or_default() += 1;
            }
        }
        Ok(counts)
    }

    async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError> {
        Ok(match self.state().get_mut(id) {
            Some(record) => {
                record.set_resolved_at(Some(at));
                true
            }
            None => false,
        })
    }

    async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError> {
        let mut state = self.state();
        let (count, bytes) = (state.records.len(), state.body_bytes);
        let mut freed = 0;
        state.records.retain(|stored| {
            let kept = stored.received_at() >= before;
            if !kept {
                freed += stored.body_len();
            }
            kept
        });
        state.body_bytes = bytes - freed;
        Ok((count - state.records.len()) as u64)
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;

    use super::*;
    use crate::journal::{BestEffortJob, BestEffortState, DeliveryStatus, JournalCursor};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn record(secs: u64, body: usize) -> JournalRecord {
        let mut record = JournalRecord::new(
            JournalId::generate_at(at(secs)),
            at(secs),
            DeliveryStatus::Processed,
        );
        record.body = Some(Bytes::from(vec![b'x'; body]));
        record
    }

    async fn write(journal: &MemoryJournal, records: &[&JournalRecord]) {
        let batch = records
            .iter()
            .map(|r| JournalWrite::Record((*r).clone()))
            .collect();
        journal.write(batch).await.unwrap();
    }

    async fn ids(journal: &MemoryJournal, after: Option<JournalId>) -> Vec<JournalId> {
        let query = JournalQuery {
            after: after.map(JournalCursor),
            ..JournalQuery::default()
        };
        let page = journal.list(&query).await.unwrap();
        page.records.into_iter().map(|r| r.id).collect()
    }

    #[tokio::test]
    async fn records_written_out_of_id_order_are_kept_in_id_order() {
        let journal = MemoryJournal::new();
        let (a, b, c, d) = (record(1, 0), record(2, 0), record(3, 0), record(4, 0));
        write(&journal, &[&c, &a]).await;
        write(&journal, &[&d, &b]).await;
        assert_eq!(ids(&journal, None).await, [d.id, c.id, b.id, a.id]);
        assert_eq!(ids(&journal, Some(c.id)).await, [b.id, a.id]);
        // A cursor between stored ids, and past either end.
        assert_eq!(
            ids(&journal, Some(JournalId(b.id.0 + 1))).await,
            [b.id, a.id]
        );
        assert_eq!(ids(&journal, Some(a.id)).await, []);
        assert_eq!(ids(&journal, Some(JournalId(u128::MAX))).await.len(), 4);
        for r in [&a, &b, &c, &d] {
            assert_eq!(journal.get(r.id).await.unwrap().as_ref(), Some(r));
        }
        assert_eq!(journal.get(JournalId(b.id.0 + 1)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_record_written_again_in_the_middle_is_replaced_in_place() {
        let journal = MemoryJournal::new();
        let (a, b, c) = (record(1, 10), record(2, 20), record(3, 30));
        write(&journal, &[&a, &b, &c]).await;
        let job = BestEffortJob::new("email", 1, BestEffortState::Succeeded);
        journal
            .write(vec![JournalWrite::BestEffort {
                id: b.id,
                job: job.clone(),
            }])
            .await
            .unwrap();
        assert!(journal.mark_resolved(b.id, at(9)).await.unwrap());
        let mut again = b.clone();
        again.status = DeliveryStatus::CriticalFailed;
        again.body = Some(Bytes::from(vec![b'y'; 25]));
        write(&journal, &[&again]).await;
        let stored = journal.get(b.id).await.unwrap().unwrap();
        assert_eq!(stored.status, DeliveryStatus::CriticalFailed);
        assert_eq!(
            (stored.best_effort, stored.resolved_at),
            (vec![job], Some(at(9)))
        );
        assert_eq!(ids(&journal, None).await, [c.id, b.id, a.id]);
        assert_eq!(journal.state().body_bytes, 10 + 25 + 30);
        assert_eq!(journal.evicted(), 0);
    }

    #[tokio::test]
    async fn the_lowest_ids_are_evicted_whatever_the_order_of_writes() {
        let journal = MemoryJournal::with_limits(3, 100);
        let records: Vec<_> = (0..5).map(|i| record(i, 30)).collect();
        // Newest first: each write evicts what is then the oldest.
        for r in records.iter().rev() {
            write(&journal, &[r]).await;
        }
        assert_eq!(
            ids(&journal, None).await,
            [records[4].id, records[3].id, records[2].id]
        );
        assert_eq!((journal.len(), journal.evicted()), (3, 2));
        // Over the body cap: 4 × 30 > 100, so the oldest goes.
        let mut newest = record(9, 30);
        newest.body = Some(Bytes::from(vec![b'z'; 60]));
        write(&journal, &[&newest]).await;
        assert_eq!(ids(&journal, None).await, [newest.id, records[4].id]);
        assert_eq!(journal.state().body_bytes, 90);
        assert_eq!(journal.evicted(), 4);
    }

    #[tokio::test]
    async fn purging_frees_the_body_bytes_of_the_purged_records() {
        let journal = MemoryJournal::with_limits(10, 100);
        let records: Vec<_> = (0..3).map(|i| record(i, 30)).collect();
        write(&journal, &records.iter().collect::<Vec<_>>()).await;
        assert_eq!(journal.purge_before(at(2)).await.unwrap(), 2);
        assert_eq!(ids(&journal, None).await, [records[2].id]);
        assert_eq!(journal.state().body_bytes, 30);
        let later: Vec<_> = (3..5).map(|i| record(i, 30)).collect();
        write(&journal, &later.iter().collect::<Vec<_>>()).await;
        assert_eq!((journal.len(), journal.evicted()), (3, 0));
    }
}
