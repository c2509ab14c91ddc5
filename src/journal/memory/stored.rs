//! How [`MemoryJournal`](super::MemoryJournal) holds one record: the
//! record's strings in one allocation.
//!
//! A [`JournalRecord`] holds each string (provider, event id, kind, delivery
//! id, error, every header name and value) in an allocation of its own:
//! thirteen for a Shopify delivery. A journal that keeps thousands of records
//! pays for each of them twice, in memory and when the record is evicted and
//! every one of those cold allocations is freed. [`Stored`] keeps them one
//! after the other in one string, and builds the [`JournalRecord`] back when
//! it is read.

use std::time::SystemTime;

use bytes::Bytes;

use crate::journal::query::Filtered;
use crate::journal::{BestEffortJob, DeliveryStatus, Durations, JournalId, JournalRecord};

/// One record, as the journal holds it.
pub(super) struct Stored {
    pub(super) id: JournalId,
    received_at: SystemTime,
    status: DeliveryStatus,
    http_status: u16,
    attempt: Option<u64>,
    durations: Durations,
    pub(super) best_effort: Vec<BestEffortJob>,
    body_size: u64,
    body_digest: Option<[u8; 32]>,
    body: Option<Bytes>,
    replay_of: Option<JournalId>,
    pub(super) resolved_at: Option<SystemTime>,
    strings: Strings,
}

/// The optional strings of a record, in the order [`Strings::text`] holds
/// them.
#[derive(Clone, Copy)]
enum Field {
    Provider,
    EventId,
    Kind,
    DeliveryId,
    Error,
}

const FIELDS: usize = 5;

/// A record's strings, one after the other in one string.
struct Strings {
    /// The [`Field`]s present, in order, then each header's name and value.
    text: Box<str>,
    /// Where each field ends in `text` (where it would end when absent).
    ends: [usize; FIELDS],
    /// Which fields are present, a bit per field.
    present: u8,
    /// Where each header name and each header value ends in `text`.
    header_ends: Box<[usize]>,
}

impl Strings {
    fn new(fields: [Option<&str>; FIELDS], headers: &[(String, String)]) -> Self {
        let len = fields.iter().flatten().map(|s| s.len()).sum::<usize>()
            + headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>();
        let mut text = String::with_capacity(len);
        let mut ends = [0; FIELDS];
        let mut present = 0;
        for (i, field) in fields.iter().enumerate() {
            if let Some(field) = field {
                text.push_str(field);
                present |= 1 << i;
            }
            ends[i] = text.len();
        }
        let mut header_ends = Vec::with_capacity(2 * headers.len());
        for (name, value) in headers {
            text.push_str(name);
            header_ends.push(text.len());
            text.push_str(value);
            header_ends.push(text.len());
        }
        Self {
            text: text.into_boxed_str(),
            ends,
            present,
            header_ends: header_ends.into_boxed_slice(),
        }
    }

    fn get(&self, field: Field) -> Option<&str> {
        let i = field as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        // The ends are those of whole strings pushed: char boundaries.
        (self.present & (1 << i) != 0).then(|| &self.text[start..self.ends[i]])
    }

    fn owned(&self, field: Field) -> Option<String> {
        self.get(field).map(str::to_owned)
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut start = self.ends[FIELDS - 1];
        self.header_ends
            .chunks_exact(2)
            .map(|ends| {
                let name = self.text[start..ends[0]].to_owned();
                let value = self.text[ends[0]..ends[1]].to_owned();
                start = ends[1];
                (name, value)
            })
            .collect()
    }
}

impl Stored {
    /// The record `record`, its strings copied into one.
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
            [
                provider.as_deref(),
                event_id.as_deref(),
                kind.as_deref(),
                delivery_id.as_deref(),
                error.as_deref(),
            ],
            &headers,
        );
        Self {
            id,
            received_at,
            status,
            http_status,
            attempt,
            durations,
            best_effort,
            body_size,
            body_digest,
            body,
            replay_of,
            resolved_at,
            strings,
        }
    }

    /// The record, with its body or without.
    pub(super) fn record(&self, with_body: bool) -> JournalRecord {
        let strings = &self.strings;
        JournalRecord {
            id: self.id,
            received_at: self.received_at,
            provider: strings.owned(Field::Provider),
            event_id: strings.owned(Field::EventId),
            kind: strings.owned(Field::Kind),
            delivery_id: strings.owned(Field::DeliveryId),
            status: self.status,
            http_status: self.http_status,
            attempt: self.attempt,
            durations: self.durations,
            error: strings.owned(Field::Error),
            best_effort: self.best_effort.clone(),
            body_size: self.body_size,
            body_digest: self.body_digest,
            body: if with_body { self.body.clone() } else { None },
            headers: strings.headers(),
            replay_of: self.replay_of,
            resolved_at: self.resolved_at,
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
            provider: self.strings.get(Field::Provider),
            kind: self.strings.get(Field::Kind),
            event_id: self.strings.get(Field::EventId),
            received_at: self.received_at,
            resolved: self.resolved_at.is_some(),
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
        record.headers = vec![
            ("X-Shopify-Topic".into(), "orders/paid".into()),
            (String::new(), String::new()),
            ("X-Émoji".into(), "🦀".into()),
            ("X-Shopify-Topic".into(), "again".into()),
        ];
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
        only_error.headers = vec![("a".into(), "b".into())];
        assert_eq!(Stored::new(only_error.clone()).record(true), only_error);
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
}
