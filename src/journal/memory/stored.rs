//! How [`MemoryJournal`](super::MemoryJournal) holds one record: small,
//! and its strings in one allocation.
//!
//! A journal keeps thousands of records and evicts the oldest, so every new
//! record is written over memory last touched thousands of records ago: out
//! of the cache. What a record costs is mostly how many bytes it takes, and
//! how many allocations (each one more cold line to read when it is freed).
//!
//! A [`JournalRecord`] is 480 bytes and holds its event id, kind, delivery id
//! and error in an allocation each, and its headers in one more. [`Stored`]
//! is 200 bytes: the four strings are appended to the headers' text (in its
//! spare capacity: the pipeline leaves room for them), with where each string
//! ends after them, so a record holds one allocation; the fields few records
//! have (a digest, the record replayed, a resolution) sit behind one box; the
//! durations are nanoseconds. The [`JournalRecord`] is built back when it is
//! read. The provider is shared with the pipeline.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::journal::query::Filtered;
use crate::journal::{
    BestEffortJob, DeliveryStatus, Durations, JournalHeaders, JournalId, JournalRecord,
};

/// One record, as the journal holds it.
pub(super) struct Stored {
    pub(super) id: JournalId,
    received_at: SystemTime,
    body: Option<Bytes>,
    pub(super) best_effort: Vec<BestEffortJob>,
    provider: Option<Arc<str>>,
    strings: Strings,
    attempt: Option<u64>,
    /// Verify, claim, critical and total, in nanoseconds; [`ABSENT`] for a
    /// step not reached.
    durations: [u64; 4],
    body_size: u64,
    rare: Option<Box<Rare>>,
    status: DeliveryStatus,
    http_status: u16,
}

/// A duration not measured.
const ABSENT: u64 = u64::MAX;

/// What few records have.
#[derive(Default)]
struct Rare {
    body_digest: Option<[u8; 32]>,
    replay_of: Option<JournalId>,
    resolved_at: Option<SystemTime>,
}

impl Rare {
    fn boxed(self) -> Option<Box<Rare>> {
        let empty =
            self.body_digest.is_none() && self.replay_of.is_none() && self.resolved_at.is_none();
        (!empty).then(|| Box::new(self))
    }
}

/// The optional strings of a record, in the order [`Strings::bytes`] holds
/// them after the headers.
#[derive(Clone, Copy)]
enum Field {
    EventId,
    Kind,
    DeliveryId,
    Error,
}

const FIELDS: usize = 4;

/// A record's strings, one after the other in one buffer.
struct Strings {
    /// The headers' names and values, then the [`Field`]s present, in
    /// order; then, as 4 little-endian bytes each, where each header name,
    /// each header value and each field ends (where it would end when absent).
    bytes: Vec<u8>,
    /// How many headers.
    headers: u32,
    /// Which fields are present, a bit per field.
    present: u8,
}

impl Strings {
    /// The fields, appended to the headers' text; a field that would take
    /// the text past 4 GiB is left out (ids, kinds and errors are short).
    fn new(headers: JournalHeaders, fields: [Option<&str>; FIELDS]) -> Self {
        let (text, header_ends) = headers.into_parts();
        let mut bytes = text.into_bytes();
        let len = fields.iter().flatten().map(|s| s.len()).sum::<usize>();
        bytes.reserve(len + 4 * (header_ends.len() + FIELDS));
        let mut ends = [0u32; FIELDS];
        let mut present = 0;
        for (i, field) in fields.iter().enumerate() {
            if let Some(field) = field {
                if u32::try_from(bytes.len() + field.len()).is_ok() {
                    bytes.extend_from_slice(field.as_bytes());
                    present |= 1 << i;
                }
            }
            // Checked just above, so within u32.
            ends[i] = bytes.len() as u32;
        }
        for end in header_ends.iter().chain(&ends) {
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        Self {
            bytes,
            headers: (header_ends.len() / 2) as u32,
            present,
        }
    }

    /// End number `i`: the header ends, then the field ends.
    fn end(&self, i: usize) -> usize {
        let ends = 2 * self.headers as usize + FIELDS;
        let at = self.bytes.len() - 4 * ends + 4 * i;
        let mut end = [0; 4];
        end.copy_from_slice(&self.bytes[at..at + 4]);
        u32::from_le_bytes(end) as usize
    }

    /// The text between two ends (valid UTF-8: whole strings were pushed).
    fn text(&self, start: usize, end: usize) -> &str {
        self.bytes
            .get(start..end)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }

    fn get(&self, field: Field) -> Option<&str> {
        let i = field as usize;
        let first = 2 * self.headers as usize;
        let start = match (first + i).checked_sub(1) {
            Some(before) => self.end(before),
            None => 0,
        };
        (self.present & (1 << i) != 0).then(|| self.text(start, self.end(first + i)))
    }

    fn owned(&self, field: Field) -> Option<String> {
        self.get(field).map(str::to_owned)
    }

    fn headers(&self) -> JournalHeaders {
        let n = self.headers as usize;
        let mut headers =
            JournalHeaders::with_capacity(if n == 0 { 0 } else { self.end(2 * n - 1) });
        let mut start = 0;
        for i in 0..n {
            let (name_end, value_end) = (self.end(2 * i), self.end(2 * i + 1));
            headers.push(self.text(start, name_end), self.text(name_end, value_end));
            start = value_end;
        }
        headers
    }
}

fn nanos(duration: Option<Duration>) -> u64 {
    duration.map_or(ABSENT, |d| d.as_nanos().min(u128::from(ABSENT - 1)) as u64)
}

fn duration(nanos: u64) -> Option<Duration> {
    (nanos != ABSENT).then(|| Duration::from_nanos(nanos))
}

impl Stored {
    /// The record `record`, its strings copied into one. Durations of 584
    /// years or more are kept as 584 years.
    pub(super) fn new(record: JournalRecord) -> Self {
        // Every field named, so a field added to records is not forgotten here.
        let JournalRecord {
            id,
            received_at,
            provider,
            event_id,
            kind,
            delivery_id,
            status,
            http_status,
            attempt,
            durations,
            error,
            best_effort,
            body_size,
            body_digest,
            body,
            headers,
            replay_of,
            resolved_at,
        } = record;
        let strings = Strings::new(
            headers,
            [
                event_id.as_deref(),
                kind.as_deref(),
                delivery_id.as_deref(),
                error.as_deref(),
            ],
        );
        let Durations {
            verify,
            claim,
            critical,
            total,
        } = durations;
        Self {
            id,
            received_at,
            body,
            best_effort,
            provider,
            strings,
            attempt,
            durations: [nanos(verify), nanos(claim), nanos(critical), nanos(total)],
            body_size,
            rare: Rare {
                body_digest,
                replay_of,
                resolved_at,
            }
            .boxed(),
            status,
            http_status,
        }
    }

    /// The record, with its body or without.
    pub(super) fn record(&self, with_body: bool) -> JournalRecord {
        let strings = &self.strings;
        let rare = self.rare.as_deref();
        let [verify, claim, critical, total] = self.durations.map(duration);
        let mut durations = Durations::default();
        (durations.verify, durations.claim) = (verify, claim);
        (durations.critical, durations.total) = (critical, total);
        JournalRecord {
            id: self.id,
            received_at: self.received_at,
            provider: self.provider.clone(),
            event_id: strings.owned(Field::EventId),
            kind: strings.owned(Field::Kind),
            delivery_id: strings.owned(Field::DeliveryId),
            status: self.status,
            http_status: self.http_status,
            attempt: self.attempt,
            durations,
            error: strings.owned(Field::Error),
            best_effort: self.best_effort.clone(),
            body_size: self.body_size,
            body_digest: rare.and_then(|r| r.body_digest),
            body: if with_body { self.body.clone() } else { None },
            headers: strings.headers(),
            replay_of: rare.and_then(|r| r.replay_of),
            resolved_at: self.resolved_at(),
        }
    }

    /// When an operator marked it resolved.
    pub(super) fn resolved_at(&self) -> Option<SystemTime> {
        self.rare.as_ref().and_then(|r| r.resolved_at)
    }

    /// Marks it resolved at `at`, or not resolved.
    pub(super) fn set_resolved_at(&mut self, at: Option<SystemTime>) {
        match (&mut self.rare, at) {
            (Some(rare), at) => rare.resolved_at = at,
            (None, None) => {}
            (rare @ None, Some(at)) => {
                *rare = Some(Box::new(Rare {
                    resolved_at: Some(at),
                    ..Rare::default()
                }));
            }
        }
    }

    /// How many bytes of body it holds.
    pub(super) fn body_len(&self) -> usize {
        self.body.as_ref().map_or(0, Bytes::len)
    }

    /// When the delivery was received.
    pub(super) fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// What a filter looks at.
    pub(super) fn filtered(&self) -> Filtered<'_> {
        Filtered {
            status: self.status,
            provider: self.provider.as_deref(),
            kind: self.strings.get(Field::Kind),
            event_id: self.strings.get(Field::EventId),
            received_at: self.received_at,
            resolved: self.resolved_at().is_some(),
        }
    }

    /// Its status.
    pub(super) fn status(&self) -> DeliveryStatus {
        self.status
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::journal::BestEffortState;

    fn full() -> JournalRecord {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut record = JournalRecord::new(JournalId(7), at, DeliveryStatus::CriticalFailed);
        record.provider = Some("shopify".into());
        record.event_id = Some(String::new());
        record.kind = Some("orders/paid — é".into());
        record.delivery_id = None;
        record.error = Some("critical handler `db` failed".into());
        record.http_status = 500;
        record.attempt = Some(2);
        record.durations.total = Some(Duration::from_millis(3));
        record.best_effort = vec![BestEffortJob::new("mail", 1, BestEffortState::Pending)];
        record.body_size = 4;
        record.body_digest = Some([1; 32]);
        record.body = Some(Bytes::from_static(b"{}\n\0"));
        record.headers = [
            ("X-Shopify-Topic", "orders/paid"),
            ("", ""),
            ("X-Émoji", "🦀"),
            ("X-Shopify-Topic", "again"),
        ]
        .into_iter()
        .collect();
        record.replay_of = Some(JournalId(3));
        record.resolved_at = Some(at + Duration::from_secs(60));
        record
    }

    #[test]
    fn a_record_comes_back_as_it_was_stored() {
        let record = full();
        let stored = Stored::new(record.clone());
        assert_eq!(stored.record(true), record);
        let without = stored.record(false);
        assert_eq!(without.body, None);
        assert_eq!(without.headers, record.headers);

        let bare = JournalRecord::new(JournalId(8), UNIX_EPOCH, DeliveryStatus::Malformed);
        assert_eq!(Stored::new(bare.clone()).record(true), bare);

        let mut only_error = bare.clone();
        only_error.error = Some("bad".into());
        only_error.headers = [("a", "b")].into_iter().collect();
        assert_eq!(Stored::new(only_error.clone()).record(true), only_error);
    }

    #[test]
    fn a_stored_record_stays_small() {
        // Each new record is written over cold memory: its size is its cost.
        assert!(std::mem::size_of::<Stored>() <= 208);
    }

    #[test]
    fn filters_see_the_stored_fields() {
        let stored = Stored::new(full());
        let seen = stored.filtered();
        assert_eq!(seen.provider, Some("shopify"));
        assert_eq!(seen.event_id, Some(""));
        assert_eq!(seen.kind, Some("orders/paid — é"));
        assert!(seen.resolved);
        assert_eq!(seen.status, DeliveryStatus::CriticalFailed);
    }

    proptest::proptest! {
        /// Whatever a record holds comes back: any strings, any number of
        /// headers, present or absent fields and durations, the rare fields.
        #[test]
        fn any_record_comes_back(
            headers in proptest::collection::vec((".{0,10}", ".{0,30}"), 0..20),
            fields in proptest::collection::vec(proptest::option::of(".{0,40}"), 4),
            durations in proptest::collection::vec(proptest::option::of(0u64..u64::MAX - 1), 4),
            attempt in proptest::option::of(proptest::num::u64::ANY),
            rare in (proptest::option::of(proptest::num::u128::ANY), proptest::bool::ANY, proptest::bool::ANY),
        ) {
            let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
            let mut record = JournalRecord::new(JournalId(9), at, DeliveryStatus::Processed);
            record.provider = Some("github".into());
            record.headers = headers.iter().cloned().collect();
            record.event_id.clone_from(&fields[0]);
            record.kind.clone_from(&fields[1]);
            record.delivery_id.clone_from(&fields[2]);
            record.error.clone_from(&fields[3]);
            let d = |i: usize| durations[i].map(Duration::from_nanos);
            record.durations.verify = d(0);
            record.durations.claim = d(1);
            record.durations.critical = d(2);
            record.durations.total = d(3);
            record.attempt = attempt;
            record.replay_of = rare.0.map(JournalId);
            record.body_digest = rare.1.then_some([3; 32]);
            record.resolved_at = rare.2.then_some(at);
            let stored = Stored::new(record.clone());
            proptest::prop_assert_eq!(stored.record(true), record.clone());
            let seen = stored.filtered();
            proptest::prop_assert_eq!(seen.event_id, record.event_id.as_deref());
            proptest::prop_assert_eq!(seen.kind, record.kind.as_deref());
            proptest::prop_assert_eq!(seen.resolved, rare.2);
        }
    }
}
