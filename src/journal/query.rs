//! Finding records: filters, pages and cursors.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use super::record::{DeliveryStatus, InvalidJournalId, JournalId, JournalRecord};

/// Which records a list or a count covers; every field narrows it, and the
/// default covers every record.
///
/// ```
/// use hookgate::journal::{DeliveryStatus, JournalFilter};
/// let failed_github = JournalFilter {
///     statuses: vec![DeliveryStatus::CriticalFailed, DeliveryStatus::StoreUnavailable],
///     provider: Some("github".into()),
///     unresolved: true,
///     ..JournalFilter::default()
/// };
/// # let _ = failed_github;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Records with one of these statuses. Defaults to empty: any status.
    pub statuses: Vec<DeliveryStatus>,
    /// Records of this provider. Defaults to any.
    pub provider: Option<String>,
    /// Records of this event kind (exact). Defaults to any.
    pub kind: Option<String>,
    /// Records of this event id (exact). Defaults to any.
    pub event_id: Option<String>,
    /// Records received at or after this time. Defaults to no bound.
    pub since: Option<SystemTime>,
    /// Records received before this time. Defaults to no bound.
    pub until: Option<SystemTime>,
    /// Only records not marked resolved. Defaults to `false`.
    pub unresolved: bool,
}

impl JournalFilter {
    /// Whether `record` passes the filter (the rule every journal applies).
    pub fn matches(&self, record: &JournalRecord) -> bool {
        self.matches_fields(&Filtered {
            status: record.status,
            provider: record.provider.as_deref(),
            kind: record.kind.as_deref(),
            event_id: record.event_id.as_deref(),
            received_at: record.received_at,
            resolved: record.resolved_at.is_some(),
        })
    }

    /// [`matches`](Self::matches) on the fields a filter looks at, for a
    /// journal that does not hold its records as [`JournalRecord`]s.
    pub(crate) fn matches_fields(&self, record: &Filtered<'_>) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&record.status))
            && self
                .provider
                .as_deref()
                .is_none_or(|p| record.provider == Some(p))
            && self.kind.as_deref().is_none_or(|k| record.kind == Some(k))
            && self
                .event_id
                .as_deref()
                .is_none_or(|e| record.event_id == Some(e))
            && self.since.is_none_or(|since| record.received_at >= since)
            && self.until.is_none_or(|until| record.received_at < until)
            && (!self.unresolved || !record.resolved)
    }
}

/// What [`JournalFilter::matches`] looks at of a record.
pub(crate) struct Filtered<'a> {
    pub(crate) status: DeliveryStatus,
    pub(crate) provider: Option<&'a str>,
    pub(crate) kind: Option<&'a str>,
    pub(crate) event_id: Option<&'a str>,
    pub(crate) received_at: SystemTime,
    pub(crate) resolved: bool,
}

/// Where a page ends: pass it back as [`JournalQuery::after`] for the next
/// one. Shown and parsed as text, for URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JournalCursor(pub JournalId);

impl fmt::Display for JournalCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JournalCursor {
    type Err = InvalidJournalId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JournalCursor)
    }
}

/// One page of a list: the records matching a filter, newest first, after a
/// cursor.
///
/// Pages are stable while records are added: a record is in exactly one page
/// of a walk from the first page to the last, and records added during the
/// walk (newer than its first page) are not in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalQuery {
    /// Which records.
    pub filter: JournalFilter,
    /// The most records a page holds. Defaults to 50; journals cap it at
    /// [`JournalQuery::MAX_LIMIT`].
    pub limit: usize,
    /// Continue after this cursor (the previous page's
    /// [`JournalPage::next`]). Defaults to `None`: the newest records.
    pub after: Option<JournalCursor>,
}

impl Default for JournalQuery {
    fn default() -> Self {
        Self {
            filter: JournalFilter::default(),
            limit: 50,
            after: None,
        }
    }
}

impl JournalQuery {
    /// The largest page: 1,000 records.
    pub const MAX_LIMIT: usize = 1000;

    /// The first page of records matching `filter`.
    pub fn new(filter: JournalFilter) -> Self {
        Self {
            filter,
            ..Self::default()
        }
    }

    /// The page size to use: the limit, at least 1 and at most
    /// [`MAX_LIMIT`](Self::MAX_LIMIT).
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

/// A page of records, newest first, without their bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalPage {
    /// The records (each with `body` left out).
    pub records: Vec<JournalRecord>,
    /// The cursor of the next page, `None` on the last.
    pub next: Option<JournalCursor>,
}

impl JournalPage {
    /// A page from up to `page_size + 1` records, newest first, fetched to
    /// tell whether another page follows.
    pub fn from_fetched(mut records: Vec<JournalRecord>, page_size: usize) -> Self {
        let next = if records.len() > page_size {
            records.truncate(page_size);
            records.last().map(|r| JournalCursor(r.id))
        } else {
            None
        };
        for record in &mut records {
            record.body = None;
        }
        Self { records, next }
    }
}

/// How many records have each status (statuses with none are left out).
pub type StatusCounts = std::collections::BTreeMap<DeliveryStatus, u64>;
