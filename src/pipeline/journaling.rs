//! Writing the journal from the pipeline: each write offered to the journal
//! at once first (an in-process journal takes it), else a bounded queue with
//! a background batch writer for ordinary records and a write before the
//! answer for the verified deliveries answered non-2xx; and the records
//! themselves.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use smallvec::SmallVec;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::attempt::describe;
use super::monitor::Count;
use super::recorder::Recorder;
use super::Provider;
use crate::headers::Headers;
use crate::journal::{
    BestEffortJob, BestEffortState, BodyRetention, DeliveryStatus, Durations, Journal,
    JournalHeaders, JournalId, JournalRecord, JournalSettings, JournalWrite,
};
use crate::outcome::{Outcome, OutcomeKind};

/// How long the background writer waits for one batch before it counts the
/// batch as dropped and goes on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The pipeline's side of its journal.
pub(super) struct Journaling {
    journal: Arc<dyn Journal>,
    settings: JournalSettings,
    sender: mpsc::Sender<JournalWrite>,
    /// Taken by the writer task when it starts (at the first delivery).
    receiver: Mutex<Option<mpsc::Receiver<JournalWrite>>>,
    /// Whether the writer task runs.
    started: AtomicBool,
    queue: Arc<QueueState>,
    stats: Arc<Recorder>,
}

/// What the writer task and the flushing shutdown share.
#[derive(Default)]
struct QueueState {
    /// Writes queued and neither written nor dropped yet.
    queued: AtomicUsize,
    /// Notified whenever `queued` may have reached 0.
    idle: Notify,
}

impl QueueState {
    fn done(&self, n: usize) {
        if self.queued.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
    }
}

impl Journaling {
    pub(super) fn new(
        journal: Arc<dyn Journal>,
        settings: JournalSettings,
        stats: Arc<Recorder>,
    ) -> Arc<Self> {
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        Arc::new(Self {
            journal,
            settings,
            sender,
            receiver: Mutex::new(Some(receiver)),
            started: AtomicBool::new(false),
            queue: Arc::default(),
            stats,
        })
    }

    pub(super) fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Starts the background writer on the current runtime, once.
    pub(super) fn start(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let mut receiver = self.receiver.lock().unwrap_or_else(PoisonError::into_inner);
        if receiver.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(receiver) = receiver.take() else {
            return;
        };
        self.started.store(true, Ordering::Release);
        let journal = Arc::clone(&self.journal);
        let queue = Arc::clone(&self.queue);
        let stats = Arc::clone(&self.stats);
        let batch_size = self.settings.batch_size.max(1);
        runtime.spawn(write_batches(journal, receiver, queue, stats, batch_size));
    }

    /// Writes at once when the journal can ([`Journal::write_at_once`]),
    /// through the queue otherwise.
    pub(super) fn submit(&self, write: JournalWrite) {
        if let Some(write) = self.offer(write) {
            self.enqueue(write);
        }
    }

    /// Offers `write` to the journal to take at once, counting it written if
    /// taken; the write given back otherwise.
    fn offer(&self, write: JournalWrite) -> Option<JournalWrite> {
        let given_back = self.journal.write_at_once(write);
        if given_back.is_none() {
            Recorder::bump(&self.stats.journal_written);
        }
        given_back
    }

    /// Queues a write for the background writer; counts it as dropped when
    /// the queue is full.
    fn enqueue(&self, write: JournalWrite) {
        self.queue.queued.fetch_add(1, Ordering::AcqRel);
        if self.sender.try_send(write).is_err() {
            Recorder::bump(&self.stats.journal_dropped);
            self.stats.monitor.count(Count::JournalDrops, 1);
            super::observe::journal_dropped(1);
            self.queue.done(1);
        }
    }

    /// Writes `record` now, until `until` at the latest; when the journal
    /// fails or is too slow, queues it for the background writer instead.
    pub(super) async fn write_now(&self, record: JournalRecord, until: Option<Instant>) {
        let record = match self.offer(JournalWrite::Record(record)) {
            None => return,
            Some(JournalWrite::Record(record)) => record,
            Some(other) => return self.enqueue(other),
        };
        // The journal takes the batch; the copy is queued if it fails (only
        // verified deliveries answered non-2xx come here).
        let fallback = JournalWrite::Record(record.clone());
        let write = self.journal.write(vec![JournalWrite::Record(record)]);
        let written = match until {
            Some(until) => tokio::time::timeout_at(until, write).await.ok(),
            None => Some(write.await),
        };
        if let Some(Ok(())) = written {
            Recorder::bump(&self.stats.journal_written);
            return;
        }
        self.enqueue(fallback);
    }

    /// Waits up to `deadline` until every queued write is written or dropped;
    /// whether the queue emptied.
    pub(super) async fn flush(&self, deadline: Duration) -> bool {
        let drained = async {
            loop {
                let idle = self.queue.idle.notified();
                if self.queue.queued.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(deadline, drained).await.is_ok()
    }

    /// A tag for the best-effort jobs of record `id`.
    pub(super) fn tag(self: &Arc<Self>, id: JournalId) -> JournalTag {
        JournalTag {
            journaling: Arc::clone(self),
            id,
        }
    }

    /// The record of one delivery attempt; takes the delivery's body and
    /// event id and kind over rather than copying them (the delivery is
    /// done with them).
    pub(super) fn record(&self, delivery: &mut Delivery<'_>, outcome: &Outcome) -> JournalRecord {
        let status = DeliveryStatus::of(&outcome.kind);
        let mut record = JournalRecord::new(delivery.id, delivery.received_at, status);
        record.provider = delivery.provider.map(|p| Arc::clone(&p.name));
        match delivery.event.take() {
            // The copies the delivery made when it claimed the event.
            Some((id, kind))
                if outcome.event_id.as_ref() == Some(&id)
                    && outcome.event_kind.as_ref() == Some(&kind) =>
            {
                (record.event_id, record.kind) = (Some(id), Some(kind));
            }
            _ => {
                record.event_id.clone_from(&outcome.event_id);
                record.kind.clone_from(&outcome.event_kind);
            }
        }
        record.http_status = outcome.status();
        record.attempt = delivery.attempt;
        record.durations = Durations {
            verify: delivery.verify,
            claim: delivery.claim,
            critical: outcome.critical_elapsed,
            total: delivery.total.or_else(|| Some(delivery.started.elapsed())),
        };
        record.error = describe(&outcome.kind);
        record.best_effort = delivery
            .best_effort
            .iter()
            .map(|handler| BestEffortJob::new(&**handler, 0, BestEffortState::Pending))
            .collect();
        record.body_size = match outcome.kind {
            // Refused unread (`Pipeline::refuse_too_large`): the size known.
            OutcomeKind::TooLarge { size, .. } => size as u64,
            _ => delivery.body.len() as u64,
        };
        record.replay_of = delivery.replay_of;
        if status.is_verified() {
            self.keep_verified(&mut record, delivery);
        }
        record
    }

    /// The body and the allowlisted headers of a verified delivery.
    fn keep_verified(&self, record: &mut JournalRecord, delivery: &mut Delivery<'_>) {
        // One pass over the headers: the allowlisted ones, and the value of
        // the first delivery-id header of the profile's list that is present.
        // The kept ones are noted first, so their text takes one allocation
        // of the right size.
        let (listed, id_headers): (&[Box<str>], &[&str]) =
            delivery.provider.map_or((&[], &[]), |p| {
                (&p.journal_headers, p.profile.delivery_id_headers)
            });
        let mut delivery_id: Option<(usize, &[u8])> = None;
        let mut kept_headers: SmallVec<[(&str, &[u8]); 16]> = SmallVec::new();
        for (name, value) in delivery.headers.iter() {
            if let Some(rank) = id_headers.iter().position(|h| h.eq_ignore_ascii_case(name)) {
                if delivery_id.is_none_or(|(best, _)| rank < best) {
                    delivery_id = Some((rank, value));
                }
            }
            if listed.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                kept_headers.push((name, value));
            }
        }
        // Room for the record's other strings too: `MemoryJournal` appends
        // them (and where each string ends) to the headers' text, so a kept
        // record is one allocation.
        let others = [&record.event_id, &record.kind, &record.error]
            .into_iter()
            .flatten()
            .map(String::len)
            .sum::<usize>()
            + delivery_id.map_or(0, |(_, value)| value.len());
        // And for where each string ends, 4 bytes each.
        let ends = 4 * (2 * kept_headers.len() + 4);
        record.headers = JournalHeaders::from_received(&kept_headers, others + ends);
        record.delivery_id = delivery_id.map(|(_, value)| text(value).into_owned());
        match self.settings.body_retention {
            BodyRetention::Drop => {}
            BodyRetention::DigestOnly => record.body_digest = Some(digest(&delivery.body)),
            // The body itself, shared (not copied); a digest only when it is
            // over the cap (hashing every kept body would cost as much as
            // verifying it).
            BodyRetention::Keep if delivery.body.len() <= self.settings.max_body_bytes => {
                record.body = Some(std::mem::take(&mut delivery.body));
            }
            BodyRetention::Keep => record.body_digest = Some(digest(&delivery.body)),
        }
    }
}

/// A header value as text, invalid UTF-8 replaced.
fn text(value: &[u8]) -> Cow<'_, str> {
    // Checked in one pass first: header values are nearly always valid.
    match std::str::from_utf8(value) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value),
    }
}

fn digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The background writer: takes up to `batch_size` queued writes at a time
/// and hands them to the journal; a batch that fails or times out is counted
/// as dropped. Ends when the pipeline is gone.
async fn write_batches(
    journal: Arc<dyn Journal>,
    mut receiver: mpsc::Receiver<JournalWrite>,
    queue: Arc<QueueState>,
    stats: Arc<Recorder>,
    batch_size: usize,
) {
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        if receiver.recv_many(&mut batch, batch_size).await == 0 {
            return;
        }
        // The journal takes this batch; the next one starts from a buffer of
        // the same size.
        let n = batch.len();
        let taken = std::mem::replace(&mut batch, Vec::with_capacity(n));
        let written = tokio::time::timeout(WRITE_TIMEOUT, journal.write(taken)).await;
        let counter = if matches!(written, Ok(Ok(()))) {
            &stats.journal_written
        } else {
            stats.monitor.count(Count::JournalDrops, n as u64);
            super::observe::journal_dropped(n as u64);
            &stats.journal_dropped
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        queue.done(n);
    }
}

/// What the pipeline learns about one delivery on its way, for its record.
/// With no journal it only carries `timed: false` and stays empty.
pub(super) struct Delivery<'a> {
    /// Whether steps are timed and facts collected (a journal is set).
    pub(super) timed: bool,
    pub(super) id: JournalId,
    pub(super) received_at: SystemTime,
    pub(super) started: Instant,
    pub(super) provider: Option<&'a Provider>,
    pub(super) body: Bytes,
    pub(super) headers: &'a Headers,
    pub(super) verify: Option<Duration>,
    pub(super) claim: Option<Duration>,
    /// The whole of `handle`, once answered (when anything needs it).
    pub(super) total: Option<Duration>,
    /// The claim's token, once the event is claimed.
    pub(super) attempt: Option<u64>,
    /// The event's id and kind, once claimed.
    pub(super) event: Option<(String, String)>,
    /// The best-effort handlers started.
    pub(super) best_effort: Vec<Arc<str>>,
    pub(super) replay_of: Option<JournalId>,
    /// For the best-effort jobs, so each job's end updates the record.
    pub(super) tag: Option<JournalTag>,
}

/// Journals one delivery: [`Watch::finish`] writes its record once it is
/// answered; dropped before that (the `handle` future was dropped), it
/// queues a `processing` record for an attempt that had claimed its event.
pub(super) struct Watch<'a> {
    journaling: Option<&'a Arc<Journaling>>,
    pub(super) delivery: Delivery<'a>,
    done: bool,
}

impl<'a> Watch<'a> {
    pub(super) fn new(
        journaling: Option<&'a Arc<Journaling>>,
        started: Instant,
        provider: Option<&'a Provider>,
        body: &Bytes,
        headers: &'a Headers,
        replay_of: Option<JournalId>,
    ) -> Self {
        let journaled = journaling.is_some();
        let timed = journaled || super::observe::TIMES_STEPS;
        if let Some(journaling) = journaling {
            journaling.start();
        }
        let (id, received_at, body) = if journaled {
            let now = SystemTime::now();
            (JournalId::generate_at(now), now, body.clone())
        } else {
            (JournalId(0), SystemTime::UNIX_EPOCH, Bytes::new())
        };
        let tag = journaling.map(|j| j.tag(id));
        Self {
            journaling,
            delivery: Delivery {
                timed,
                id,
                received_at,
                started,
                provider,
                body,
                headers,
                verify: None,
                claim: None,
                total: None,
                attempt: None,
                event: None,
                best_effort: Vec::new(),
                replay_of,
                tag,
            },
            done: false,
        }
    }

    /// The id of the delivery's record, when journaled.
    pub(super) fn journal_id(&self) -> Option<JournalId> {
        self.journaling.map(|_| self.delivery.id)
    }

    /// Writes the record of the answered delivery: through the queue (or at
    /// once, for a journal that takes it) here, or, for a verified delivery
    /// answered non-2xx, by the returned write, which the caller awaits
    /// before answering (it gives up at `answer_by`). Notes the record's id
    /// in the outcome.
    ///
    /// Not `async` itself: the write before the answer is rare and its
    /// future is large, and every future awaiting this one would carry its
    /// size (and copy it whenever it moves); boxed, only that write pays.
    pub(super) fn finish(
        mut self,
        outcome: &mut Outcome,
        answer_by: Option<Instant>,
    ) -> Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>> {
        self.done = true;
        let journaling = self.journaling?;
        outcome.journal_id = Some(self.delivery.id);
        let record = journaling.record(&mut self.delivery, outcome);
        if !outcome.is_success() && record.status.is_verified() {
            return Some(Box::pin(journaling.write_now(record, answer_by)));
        }
        journaling.submit(JournalWrite::Record(record));
        None
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let (Some(journaling), false) = (self.journaling, self.done) else {
            return;
        };
        if self.delivery.attempt.is_none() {
            return;
        }
        let mut outcome = Outcome::new(OutcomeKind::Ignored);
        if let Some((id, kind)) = self.delivery.event.take() {
            outcome.event_id = Some(id);
            outcome.event_kind = Some(kind);
        }
        let mut record = journaling.record(&mut self.delivery, &outcome);
        record.status = DeliveryStatus::Processing;
        record.http_status = 0;
        record.error = Some("the attempt was dropped before it was answered".to_owned());
        journaling.submit(JournalWrite::Record(record));
    }
}

/// Ties best-effort jobs to their delivery's record: each job's end updates
/// it.
#[derive(Clone)]
pub(super) struct JournalTag {
    journaling: Arc<Journaling>,
    id: JournalId,
}

impl JournalTag {
    /// Records how the job of `handler` ended.
    pub(super) fn settled(&self, handler: &str, attempts: u32, state: BestEffortState) {
        self.journaling.submit(JournalWrite::BestEffort {
            id: self.id,
            job: BestEffortJob::new(handler, attempts, state),
        });
    }
}
