//! [`MemoryWatermarks`]: the watermarks of a [`MemoryStore`](crate::MemoryStore),
//! bounded, with retention.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::Watermark;

/// Bounded watermarks in the process: a map from object to its watermark
/// and the end of its retention (Unix ms), with the same entries ordered by
/// that end, so that making room evicts the watermark that would have
/// expired first, in O(log n).
#[derive(Debug)]
pub(crate) struct MemoryWatermarks {
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_object: HashMap<Box<str>, (Watermark, u64)>,
    by_expiry: BTreeSet<(u64, Box<str>)>,
}

impl MemoryWatermarks {
    /// Room for `capacity` objects (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Every change below keeps both indexes consistent before anything
        // that could panic (an allocation failure aborts), so the data of a
        // poisoned lock is used as is.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The watermark of `object` unless it expired by `now_ms`.
    pub(crate) fn get(&self, object: &str, now_ms: u64) -> Option<Watermark> {
        let entries = self.lock();
        match entries.by_object.get(object) {
            Some(&(mark, expires)) if expires > now_ms => Some(mark),
            _ => None,
        }
    }

    /// Raises the watermark of `object` to `at`, kept until `expires_ms` at
    /// least; returns the watermark after.
    pub(crate) fn advance(
        &self,
        object: &str,
        at: Watermark,
        now_ms: u64,
        expires_ms: u64,
    ) -> Watermark {
        let mut entries = self.lock();
        let entries = &mut *entries;
        if let Some((key, (mark, expires))) = entries.by_object.remove_entry(object) {
            entries.by_expiry.remove(&(expires, key.clone()));
            let (mark, expires) = if expires > now_ms {
                (mark.max(at), expires.max(expires_ms))
            } else {
                (at, expires_ms)
            };
            entries.by_expiry.insert((expires, key.clone()));
            entries.by_object.insert(key, (mark, expires));
            return mark;
        }
        while entries.by_object.len() >= self.capacity {
            let Some((_, evicted)) = entries.by_expiry.pop_first() else {
                break;
            };
            entries.by_object.remove(&evicted);
        }
        let key: Box<str> = object.into();
        entries.by_expiry.insert((expires_ms, key.clone()));
        entries.by_object.insert(key, (at, expires_ms));
        at
    }

    /// Deletes the watermarks expired by `now_ms`; returns how many.
    pub(crate) fn purge(&self, now_ms: u64) -> u64 {
        let mut entries = self.lock();
        let entries = &mut *entries;
        let mut purged = 0;
        while let Some((expires, _)) = entries.by_expiry.first() {
            if *expires > now_ms {
                break;
            }
            if let Some((_, key)) = entries.by_expiry.pop_first() {
                entries.by_object.remove(&key);
                purged += 1;
            }
        }
        purged
    }

    /// How many watermarks are held (expired ones not yet purged included).
    pub(crate) fn len(&self) -> usize {
        self.lock().by_object.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(ms: i64) -> Watermark {
        Watermark::from_unix_millis(ms)
    }

    #[test]
    fn advance_keeps_the_newest_and_the_longest_retention() {
        let marks = MemoryWatermarks::new(10);
        assert_eq!(marks.advance("a", mark(5), 0, 100), mark(5));
        assert_eq!(marks.advance("a", mark(3), 10, 50), mark(5));
        assert_eq!(marks.get("a", 99), Some(mark(5)));
        assert_eq!(marks.advance("a", mark(9), 20, 200), mark(9));
        assert_eq!(marks.get("a", 199), Some(mark(9)));
        assert_eq!(marks.get("a", 200), None);
        assert_eq!(marks.get("b", 0), None);
    }

    #[test]
    fn an_expired_watermark_is_replaced_even_by_an_older_time() {
        let marks = MemoryWatermarks::new(10);
        marks.advance("a", mark(50), 0, 100);
        assert_eq!(marks.advance("a", mark(10), 100, 300), mark(10));
        assert_eq!(marks.get("a", 250), Some(mark(10)));
    }

    #[test]
    fn a_full_map_evicts_the_first_to_expire() {
        let marks = MemoryWatermarks::new(2);
        marks.advance("late", mark(1), 0, 500);
        marks.advance("early", mark(1), 0, 100);
        marks.advance("new", mark(1), 0, 300);
        assert_eq!(marks.len(), 2);
        assert_eq!(marks.get("early", 0), None);
        assert_eq!(marks.get("late", 0), Some(mark(1)));
        assert_eq!(marks.get("new", 0), Some(mark(1)));
    }

    #[test]
    fn purge_deletes_exactly_the_expired() {
        let marks = MemoryWatermarks::new(10);
        marks.advance("a", mark(1), 0, 100);
        marks.advance("b", mark(1), 0, 200);
        marks.advance("c", mark(1), 0, 201);
        assert_eq!(marks.purge(200), 2);
        assert_eq!(marks.len(), 1);
        assert_eq!(marks.get("c", 200), Some(mark(1)));
        assert_eq!(marks.purge(200), 0);
    }
}
