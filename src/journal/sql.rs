//! What the SQL journals ([`SqliteJournal`](super::sqlite::SqliteJournal) and
//! [`PostgresJournal`](super::postgres::PostgresJournal)) share: the columns
//! and how a row decodes into a record, the JSON of best-effort jobs and
//! headers, the statements of lists and counts, purges in batches, the
//! rounding of times to the unit stored, the errors of unreadable rows, the
//! operation timeout, and the builders' shared setters.
//!
//! Each backend reads its own column types (a [`Cells`] implementation) and
//! spells its own parameters (a [`Dialect`]); the logic on top is here once.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::query::{JournalFilter, JournalQuery};
use super::record::{
    BestEffortJob, BestEffortState, DeliveryStatus, Durations, JournalId, JournalRecord,
};
use super::JournalError;
use super::JournalHeaders;
use crate::store::durable::with_timeout;
use crate::store::StoreError;

/// The columns of a record in the order [`decode`] reads them; `get` adds
/// `body` after them, lists leave it out.
pub(super) const COLUMNS: &str = "id, received_at, provider, event_id, kind, delivery_id, status, \
     http_status, attempt, verify_us, claim_us, critical_us, total_us, error, best_effort, \
     body_size, body_digest, headers, replay_of, resolved_at";

/// Runs `op` within `limit`, an overrun being [`JournalError::Unavailable`]
/// (the stores' timeout, whose error is carried over).
pub(super) async fn timed<T>(
    limit: Duration,
    what: &'static str,
    op: impl Future<Output = Result<T, JournalError>>,
) -> Result<T, JournalError> {
    match with_timeout(limit, what, async { Ok(op.await) }).await {
        Ok(result) => result,
        Err(StoreError::Unavailable(err)) => Err(JournalError::Unavailable(err)),
        Err(other) => Err(JournalError::unavailable(other)),
    }
}

/// `at` in whole `unit_nanos` since the Unix epoch, rounded down (or up,
/// `round_up`); 0 for times before 1970.
pub(super) fn units_since_epoch(at: SystemTime, unit_nanos: u128, round_up: bool) -> u128 {
    let nanos = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since_epoch| since_epoch.as_nanos());
    nanos / unit_nanos + u128::from(round_up && !nanos.is_multiple_of(unit_nanos))
}

/// `duration` in whole microseconds, saturating.
pub(super) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A count or size as a signed 64-bit column value, saturating.
pub(super) fn u64_to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A [`JournalError::Corrupt`] naming the record (when its id could be read)
/// and the column.
pub(super) fn corrupt(
    id: Option<JournalId>,
    field: &str,
    problem: impl fmt::Display,
) -> JournalError {
    match id {
        Some(id) => JournalError::Corrupt(format!("record {id}: `{field}` {problem}")),
        None => JournalError::Corrupt(format!("a record's `{field}` {problem}")),
    }
}

pub(super) fn parse_status(
    id: Option<JournalId>,
    name: &str,
) -> Result<DeliveryStatus, JournalError> {
    name.parse()
        .map_err(|_| corrupt(id, "status", format!("holds an unknown status `{name}`")))
}

/// One best-effort job as stored.
#[derive(Serialize, Deserialize)]
struct StoredJob<'a> {
    handler: Cow<'a, str>,
    attempts: u32,
    state: Cow<'a, str>,
}

/// The `best_effort` column of `jobs`: a JSON array of `{"handler",
/// "attempts", "state"}` objects.
pub(super) fn encode_jobs(jobs: &[BestEffortJob]) -> Result<String, serde_json::Error> {
    let stored: Vec<StoredJob<'_>> = jobs
        .iter()
        .map(|job| StoredJob {
            handler: job.handler.as_str().into(),
            attempts: job.attempts,
            state: job.state.as_str().into(),
        })
        .collect();
    serde_json::to_string(&stored)
}

pub(super) fn decode_jobs(
    id: Option<JournalId>,
    text: &str,
) -> Result<Vec<BestEffortJob>, JournalError> {
    let stored: Vec<StoredJob<'_>> = serde_json::from_str(text).map_err(|err| {
        corrupt(
            id,
            "best_effort",
            format!("is not a JSON list of jobs: {err}"),
        )
    })?;
    stored
        .into_iter()
        .map(|job| {
            let state: BestEffortState = job.state.parse().map_err(|_| {
                corrupt(
                    id,
                    "best_effort",
                    format!("holds an unknown job state `{}`", job.state),
                )
            })?;
            Ok(BestEffortJob::new(job.handler, job.attempts, state))
        })
        .collect()
}

/// The `headers` column: a JSON array of `[name, value]` pairs.
pub(super) fn encode_headers(headers: &JournalHeaders) -> Result<String, serde_json::Error> {
    serde_json::to_string(headers)
}

pub(super) fn decode_headers(
    id: Option<JournalId>,
    text: &str,
) -> Result<JournalHeaders, JournalError> {
    serde_json::from_str(text).map_err(|err| {
        corrupt(
            id,
            "headers",
            format!("is not a JSON list of [name, value] pairs: {err}"),
        )
    })
}

/// Sets `job` among `jobs`: replaces the job of its handler, or adds it.
pub(super) fn set_job(jobs: &mut Vec<BestEffortJob>, job: &BestEffortJob) {
    match jobs.iter_mut().find(|stored| stored.handler == job.handler) {
        Some(stored) => *stored = job.clone(),
        None => jobs.push(job.clone()),
    }
}

/// How a backend spells the parameters of a list or a count.
pub(super) trait Dialect {
    /// One parameter value.
    type Param;
    /// What a parameter's number follows in the SQL text (`?1`, `$1`).
    const PLACEHOLDER: char;
    /// A text value.
    fn text(value: &str) -> Self::Param;
    /// A 64-bit integer value.
    fn int(value: i64) -> Self::Param;
    /// A time as the journal stores it, rounded up to the unit stored.
    fn time_ceil(at: SystemTime) -> Self::Param;
    /// An id as stored (16 bytes).
    fn id(id: JournalId) -> Self::Param;
    /// The condition that `status` is one of `names` (at least one, each
    /// once), its parameters added with `params`.
    fn status_in(names: &[&'static str], params: &mut Params<Self::Param>) -> String;
}

/// The parameters of a statement, numbered from 1 in the order added.
pub(super) struct Params<P> {
    values: Vec<P>,
    placeholder: char,
}

impl<P> Params<P> {
    fn new<D: Dialect<Param = P>>() -> Self {
        Self {
            values: Vec::new(),
            placeholder: D::PLACEHOLDER,
        }
    }

    /// Adds `value`; its placeholder.
    pub(super) fn add(&mut self, value: P) -> String {
        self.values.push(value);
        format!("{}{}", self.placeholder, self.values.len())
    }
}

/// The statement of a [`list`](super::Journal::list) of `query` from
/// `table`, with its parameters: the records of [`COLUMNS`] after the cursor,
/// newest first, one more than [`JournalQuery::page_size`] to tell whether
/// another page follows (see [`JournalPage::from_fetched`](super::JournalPage::from_fetched)).
pub(super) fn list_statement<D: Dialect>(
    table: &str,
    query: &JournalQuery,
) -> (String, Vec<D::Param>) {
    let mut params = Params::new::<D>();
    let conditions = where_clause::<D>(&query.filter, query.after.map(|c| c.0), &mut params);
    let limit = params.add(D::int(
        i64::try_from(query.page_size() + 1).unwrap_or(i64::MAX),
    ));
    let sql = format!("SELECT {COLUMNS} FROM {table}{conditions} ORDER BY id DESC LIMIT {limit}");
    (sql, params.values)
}

/// The statement of the [`counts`](super::Journal::counts) of `filter` in
/// `table`, with its parameters: rows of a status name and its count.
pub(super) fn counts_statement<D: Dialect>(
    table: &str,
    filter: &JournalFilter,
) -> (String, Vec<D::Param>) {
    let mut params = Params::new::<D>();
    let conditions = where_clause::<D>(filter, None, &mut params);
    let sql = format!("SELECT status, count(*) FROM {table}{conditions} GROUP BY status");
    (sql, params.values)
}

/// The `WHERE` clause of `filter` (and `id < after`), empty when nothing
/// narrows, its parameters added to `params`. Each condition is the column
/// form of a term of [`JournalFilter::matches`], on the stored values.
fn where_clause<D: Dialect>(
    filter: &JournalFilter,
    after: Option<JournalId>,
    params: &mut Params<D::Param>,
) -> String {
    let mut conditions: Vec<String> = Vec::new();
    if !filter.statuses.is_empty() {
        let names: BTreeSet<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        let names: Vec<&'static str> = names.into_iter().collect();
        conditions.push(D::status_in(&names, params));
    }
    for (column, value) in [
        ("provider", &filter.provider),
        ("kind", &filter.kind),
        ("event_id", &filter.event_id),
    ] {
        if let Some(value) = value {
            let p = params.add(D::text(value));
            conditions.push(format!("{column} = {p}"));
        }
    }
    // Stored times are whole units (milliseconds, microseconds):
    // `stored >= since` holds exactly when `stored >= ceil(since)`, and
    // `stored < until` when `stored < ceil(until)`.
    if let Some(since) = filter.since {
        let p = params.add(D::time_ceil(since));
        conditions.push(format!("received_at >= {p}"));
    }
    if let Some(until) = filter.until {
        let p = params.add(D::time_ceil(until));
        conditions.push(format!("received_at < {p}"));
    }
    if filter.unresolved {
        conditions.push("resolved_at IS NULL".to_owned());
    }
    if let Some(after) = after {
        let p = params.add(D::id(after));
        conditions.push(format!("id < {p}"));
    }
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// Runs `delete_batch` (a statement deleting at most `batch` records) until
/// it deletes fewer than that; how many it deleted in all.
pub(super) async fn purge_in_batches<F, Fut>(
    batch: i64,
    mut delete_batch: F,
) -> Result<u64, JournalError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, JournalError>>,
{
    let mut deleted = 0u64;
    loop {
        let removed = delete_batch().await?;
        deleted = deleted.saturating_add(removed);
        if removed < batch.unsigned_abs() {
            return Ok(deleted);
        }
    }
}

/// The cells of one row, read with the types the journal writes; anything
/// else is a [`JournalError::Corrupt`] naming the record and column. Each
/// backend reads its own column types.
pub(super) trait Cells {
    /// The record the row holds, once its id is read, for the errors.
    fn record(&self) -> Option<JournalId>;

    /// Names `id` in the errors from here on.
    fn set_record(&mut self, id: JournalId);

    /// A nullable text column.
    fn text(&self, col: usize, field: &str) -> Result<Option<String>, JournalError>;

    /// A text column the journal never writes NULL.
    fn required_str(&self, col: usize, field: &str) -> Result<&str, JournalError>;

    /// A nullable 64-bit integer column.
    fn int(&self, col: usize, field: &str) -> Result<Option<i64>, JournalError>;

    /// A nullable time column.
    fn time(&self, col: usize, field: &str) -> Result<Option<SystemTime>, JournalError>;

    /// A nullable bytes column.
    fn bytes(&self, col: usize, field: &str) -> Result<Option<&[u8]>, JournalError>;

    /// A time column the journal never writes NULL.
    fn required_time(&self, col: usize, field: &str) -> Result<SystemTime, JournalError> {
        let time = self.time(col, field)?;
        self.required(time, field)
    }

    /// The HTTP status column, never written NULL.
    fn http_status(&self, col: usize) -> Result<i64, JournalError> {
        let status = self.int(col, "http_status")?;
        self.required(status, "http_status")
    }

    /// `value`, or that the column is NULL.
    fn required<T>(&self, value: Option<T>, field: &str) -> Result<T, JournalError> {
        value.ok_or_else(|| corrupt(self.record(), field, "is NULL"))
    }

    /// A nullable integer column that is never negative.
    fn uint(&self, col: usize, field: &str) -> Result<Option<u64>, JournalError> {
        self.int(col, field)?
            .map(|n| {
                u64::try_from(n)
                    .map_err(|_| corrupt(self.record(), field, format!("is negative ({n})")))
            })
            .transpose()
    }

    /// A nullable duration column, in microseconds.
    fn micros(&self, col: usize, field: &str) -> Result<Option<Duration>, JournalError> {
        Ok(self.uint(col, field)?.map(Duration::from_micros))
    }

    /// A nullable bytes column of exactly `N` bytes.
    fn array<const N: usize>(
        &self,
        col: usize,
        field: &str,
    ) -> Result<Option<[u8; N]>, JournalError> {
        self.bytes(col, field)?
            .map(|bytes| {
                <[u8; N]>::try_from(bytes).map_err(|_| {
                    corrupt(
                        self.record(),
                        field,
                        format!("has {} bytes, expected {N}", bytes.len()),
                    )
                })
            })
            .transpose()
    }

    /// The id column (16 bytes, never NULL).
    fn id(&self, col: usize) -> Result<JournalId, JournalError> {
        match self.array::<16>(col, "id")? {
            Some(bytes) => Ok(JournalId::from_bytes(bytes)),
            None => Err(corrupt(None, "id", "is NULL")),
        }
    }
}

/// A record from a row of [`COLUMNS`] (and `body` after them, `with_body`).
pub(super) fn decode(
    mut cells: impl Cells,
    with_body: bool,
) -> Result<JournalRecord, JournalError> {
    let id = cells.id(0)?;
    cells.set_record(id);
    let status = parse_status(Some(id), cells.required_str(6, "status")?)?;
    let mut record = JournalRecord::new(id, cells.required_time(1, "received_at")?, status);
    record.provider = cells.text(2, "provider")?.map(Arc::from);
    record.event_id = cells.text(3, "event_id")?;
    record.kind = cells.text(4, "kind")?;
    record.delivery_id = cells.text(5, "delivery_id")?;
    let http_status = cells.http_status(7)?;
    record.http_status = u16::try_from(http_status).map_err(|_| {
        corrupt(
            Some(id),
            "http_status",
            format!("is out of range ({http_status})"),
        )
    })?;
    record.attempt = cells.uint(8, "attempt")?;
    record.durations = Durations {
        verify: cells.micros(9, "verify_us")?,
        claim: cells.micros(10, "claim_us")?,
        critical: cells.micros(11, "critical_us")?,
        total: cells.micros(12, "total_us")?,
    };
    record.error = cells.text(13, "error")?;
    record.best_effort = decode_jobs(Some(id), cells.required_str(14, "best_effort")?)?;
    let body_size = cells.uint(15, "body_size")?;
    record.body_size = cells.required(body_size, "body_size")?;
    record.body_digest = cells.array::<32>(16, "body_digest")?;
    record.headers = decode_headers(Some(id), cells.required_str(17, "headers")?)?;
    record.replay_of = cells
        .array::<16>(18, "replay_of")?
        .map(JournalId::from_bytes);
    record.resolved_at = cells.time(19, "resolved_at")?;
    if with_body {
        record.body = cells.bytes(20, "body")?.map(bytes::Bytes::copy_from_slice);
    }
    Ok(record)
}

/// The setters of the durable settings a journal's builder offers (its
/// `durable` field), written once, and a `debug_durable` method that adds
/// those settings, and only those, to the builder's `Debug` output; as
/// `durable_setters!` does for the stores. Expands inside the builder's
/// `impl`.
///
/// Each setting is named with what its docs need from the journal:
/// `connect_timeout`, `operation_timeout("what it includes")` (which also
/// defines `DEFAULT_OPERATION_TIMEOUT`, 10 s) and `purge_batch_size`.
macro_rules! journal_setters {
    (@setter connect_timeout) => {
        /// How long opening a connection may take (default 5 s; URL only).
        pub fn connect_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.durable.connect_timeout = timeout;
            self
        }
    };
    (@setter operation_timeout($includes:literal)) => {
        /// The default operation timeout.
        const DEFAULT_OPERATION_TIMEOUT: ::std::time::Duration =
            ::std::time::Duration::from_secs(10);

        #[doc = concat!(
            "The most one operation may take, ", $includes, " included, before it \
             fails with [`JournalError::Unavailable`](crate::journal::JournalError::Unavailable) \
             (default 10 s)."
        )]
        pub fn operation_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.durable.operation_timeout = timeout;
            self
        }
    };
    (@setter purge_batch_size) => {
        /// How many records one purge statement deletes (default 10,000), each
        /// batch its own short transaction so that writes never wait behind a
        /// long purge; [`Journal::purge_before`](crate::journal::Journal::purge_before)
        /// runs batches until none is left.
        pub fn purge_batch_size(mut self, size: usize) -> Self {
            self.durable.purge_batch_size = size;
            self
        }
    };
    ($($setting:ident $(($($arg:tt)*))?),* $(,)?) => {
        $($crate::journal::sql::journal_setters!(@setter $setting $(($($arg)*))?);)*

        /// Adds the durable settings this builder offers to `out`.
        fn debug_durable(&self, out: &mut ::std::fmt::DebugStruct<'_, '_>) {
            $(out.field(stringify!($setting), &self.durable.$setting);)*
        }
    };
}
pub(super) use journal_setters;
