//! What the journal keeps of one delivery attempt.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::journal::JournalHeaders;
use crate::outcome::OutcomeKind;

/// The id of one journal record: 128 bits, ordered by creation time.
///
/// The first 48 bits are the Unix time in milliseconds when the record was
/// made, then a 16-bit counter of this process, then 64 random bits (the
/// layout of a UUIDv7 without its version bits), so ids sort by time, and two
/// instances never make the same id. Shown and parsed as 32 lowercase hex
/// digits.
///
/// ```
/// use hookgate::journal::JournalId;
/// let a = JournalId::generate();
/// let b = JournalId::generate();
/// assert!(a < b, "later ids sort after earlier ones");
/// assert_eq!(a.to_string().parse::<JournalId>()?, a);
/// # Ok::<(), hookgate::journal::InvalidJournalId>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JournalId(pub u128);

/// A journal id that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a journal id is 32 hexadecimal digits")]
pub struct InvalidJournalId;

impl JournalId {
    /// A new id, after every id this process made before.
    pub fn generate() -> Self {
        Self::generate_at(SystemTime::now())
    }

    /// A new id for a record made at `at` (time-ordered by `at`; ids made in
    /// one millisecond by this process are ordered by when they were made).
    pub fn generate_at(at: SystemTime) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SEED: OnceLock<u64> = OnceLock::new();
        let millis = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .min((1 << 48) - 1);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        // A random seed per process (the standard library's hash keys), and
        // a bijection of the counter under it: ids of one process never
        // repeat their 64 low bits, and another process's follow another
        // sequence.
        let seed = *SEED.get_or_init(|| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(0x6a09_e667_f3bc_c908);
            hasher.finish()
        });
        let random = mix(seed.wrapping_add(count.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        Self((millis << 80) | (u128::from(count & 0xffff) << 64) | u128::from(random))
    }

    /// When the id was made (to the millisecond).
    pub fn created_at(&self) -> SystemTime {
        let millis = (self.0 >> 80) as u64;
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// The 16 bytes, big-endian (so byte order is id order).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id of 16 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }
}

/// The finaliser of splitmix64: a bijection on 64 bits that spreads every
/// input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl fmt::Display for JournalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for JournalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JournalId({self})")
    }
}

impl FromStr for JournalId {
    type Err = InvalidJournalId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidJournalId);
        }
        u128::from_str_radix(s, 16)
            .map(Self)
            .map_err(|_| InvalidJournalId)
    }
}

/// Defines [`DeliveryStatus`] with its stable names, from one list.
macro_rules! statuses {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// How one delivery attempt ended (or stands), one per row of the
        /// status table, with a stable name for storage, filters and logs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum DeliveryStatus {
            $($(#[$doc])* $variant,)*
        }

        impl DeliveryStatus {
            /// Every status, in the order of the status table.
            pub const ALL: &'static [DeliveryStatus] = &[$(DeliveryStatus::$variant,)*];

            /// The stable name (`"processed"`, `"critical_failed"`, …).
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(DeliveryStatus::$variant => $name,)*
                }
            }
        }

        impl FromStr for DeliveryStatus {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(DeliveryStatus::$variant),)*
                    _ => Err(UnknownStatus(s.to_owned())),
                }
            }
        }
    };
}

statuses! {
    /// 413: the body was over the limit; nothing was read.
    TooLarge = "too_large",
    /// 400: no signature header, unknown provider, malformed header.
    Malformed = "malformed",
    /// 401: the signature or its timestamp did not hold.
    Unauthorized = "unauthorized",
    /// 503: the verifier could not get what it checks with in time (PayPal:
    /// the signing certificate's source failed or was too slow).
    VerifierUnavailable = "verifier_unavailable",
    /// 400: authentic, but the payload cannot be identified.
    Unusable = "unusable",
    /// 200: a duplicate of a completed event (or a replay the guard refused).
    Duplicate = "duplicate",
    /// 422: a completed event's id with another body, under the strict policy.
    FingerprintMismatch = "fingerprint_mismatch",
    /// 409: another attempt held the lease.
    InFlight = "in_flight",
    /// 200: no handler for the kind.
    Ignored = "ignored",
    /// 200: the provider's check of the endpoint (Slack's
    /// `url_verification`), answered with what it asked for.
    Handshake = "handshake",
    /// 200: the ordering guard found a newer event of the same object
    /// already processed; no handler ran.
    Stale = "stale",
    /// The attempt claimed the event and never finished: its `handle` future
    /// was dropped (the HTTP server cancelled the request, the process is
    /// ending). The provider's next delivery runs the work once the lease ends.
    Processing = "processing",
    /// 200: every critical handler succeeded.
    Processed = "processed",
    /// 500: a critical handler failed transiently, timed out, panicked, or the
    /// lease was lost; the key was released.
    CriticalFailed = "critical_failed",
    /// A critical handler failed permanently (200 when dead-lettered, 500
    /// otherwise).
    PermanentFailure = "permanent_failure",
    /// 503: the idempotency store failed or was too slow.
    StoreUnavailable = "store_unavailable",
    /// 503: the pipeline was shutting down.
    ShuttingDown = "shutting_down",
}

/// A status name that is not one of [`DeliveryStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery status `{0}`")]
pub struct UnknownStatus(pub String);

impl DeliveryStatus {
    /// The status of an outcome.
    pub fn of(kind: &OutcomeKind) -> Self {
        match kind {
            OutcomeKind::TooLarge { .. } => DeliveryStatus::TooLarge,
            OutcomeKind::VerificationFailed(err) if err.status() == 401 => {
                DeliveryStatus::Unauthorized
            }
            OutcomeKind::VerificationFailed(err) if err.status() == 503 => {
                DeliveryStatus::VerifierUnavailable
            }
            OutcomeKind::VerificationFailed(_) => DeliveryStatus::Malformed,
            OutcomeKind::Unusable(_) => DeliveryStatus::Unusable,
            OutcomeKind::Duplicate => DeliveryStatus::Duplicate,
            OutcomeKind::FingerprintMismatch => DeliveryStatus::FingerprintMismatch,
            OutcomeKind::InFlight { .. } => DeliveryStatus::InFlight,
            OutcomeKind::Ignored => DeliveryStatus::Ignored,
            OutcomeKind::Handshake(_) => DeliveryStatus::Handshake,
            OutcomeKind::Stale { .. } => DeliveryStatus::Stale,
            OutcomeKind::Processed { .. } => DeliveryStatus::Processed,
            OutcomeKind::CriticalFailed { .. } => DeliveryStatus::CriticalFailed,
            OutcomeKind::PermanentFailure { .. } => DeliveryStatus::PermanentFailure,
            OutcomeKind::StoreUnavailable(_) => DeliveryStatus::StoreUnavailable,
            OutcomeKind::ShuttingDown => DeliveryStatus::ShuttingDown,
        }
    }

    /// Whether the delivery's signature was verified: only such records keep a
    /// body and can be replayed.
    pub fn is_verified(&self) -> bool {
        !matches!(
            self,
            DeliveryStatus::TooLarge
                | DeliveryStatus::Malformed
                | DeliveryStatus::Unauthorized
                | DeliveryStatus::VerifierUnavailable
                | DeliveryStatus::ShuttingDown
        )
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where one best-effort job of a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BestEffortState {
    /// Registered, not settled yet.
    Pending,
    /// One of its attempts succeeded.
    Succeeded,
    /// It went to the dead letter (exhausted, permanent failure, overflow,
    /// abandoned at shutdown, dropped), or the dead letter refused it.
    DeadLettered,
}

impl BestEffortState {
    /// The stable name: `pending`, `succeeded` or `dead_lettered`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BestEffortState::Pending => "pending",
            BestEffortState::Succeeded => "succeeded",
            BestEffortState::DeadLettered => "dead_lettered",
        }
    }
}

impl FromStr for BestEffortState {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(BestEffortState::Pending),
            "succeeded" => Ok(BestEffortState::Succeeded),
            "dead_lettered" => Ok(BestEffortState::DeadLettered),
            _ => Err(UnknownStatus(s.to_owned())),
        }
    }
}

/// One best-effort handler's work for a journaled delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BestEffortJob {
    /// The handler's name.
    pub handler: String,
    /// Attempts started so far.
    pub attempts: u32,
    /// Where it stands.
    pub state: BestEffortState,
}

impl BestEffortJob {
    /// A job record.
    pub fn new(handler: impl Into<String>, attempts: u32, state: BestEffortState) -> Self {
        Self {
            handler: handler.into(),
            attempts,
            state,
        }
    }
}

/// How long the steps of one delivery took; `None` for a step it never
/// reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Durations {
    /// Verifying the signature.
    pub verify: Option<Duration>,
    /// Claiming the event in the idempotency store (the replay guard's
    /// registration included).
    pub claim: Option<Duration>,
    /// The critical handlers together.
    pub critical: Option<Duration>,
    /// The whole of `handle`, until the answer.
    pub total: Option<Duration>,
}

/// What the journal keeps of a verified delivery's body; see
/// [`JournalSettings::body_retention`](crate::journal::JournalSettings::body_retention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyRetention {
    /// The body (up to the size cap; a larger one keeps its SHA-256 digest
    /// only), so the delivery can be replayed. The default.
    #[default]
    Keep,
    /// Its SHA-256 digest only: the record can be matched with a body held
    /// elsewhere, never replayed.
    DigestOnly,
    /// Nothing of the body but its size.
    Drop,
}

/// One delivery attempt, as the journal keeps it.
///
/// Deliveries that fail verification (413, 400 malformed, 401) are recorded as
/// metadata only: the provider guessed from the headers, the reason, the body
/// size, never the body or a header value. Verified deliveries also keep the
/// headers of the provider's allowlist (never a signature, token or cookie
/// header) and their body as the [`BodyRetention`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalRecord {
    /// The record's id (time-ordered).
    pub id: JournalId,
    /// When `handle` received the delivery.
    pub received_at: SystemTime,
    /// The provider, detected or named (a guess for deliveries that failed
    /// verification; `None` when no provider was recognised). Shared with
    /// the pipeline's own name of the provider, as in
    /// [`Outcome::provider`](crate::Outcome::provider).
    pub provider: Option<Arc<str>>,
    /// The event's deduplication id, once identified.
    pub event_id: Option<String>,
    /// The event's kind, once identified.
    pub kind: Option<String>,
    /// The provider's id of this delivery, where it has one apart from the
    /// event id (GitHub's `X-GitHub-Delivery` is both; Shopify's
    /// `X-Shopify-Webhook-Id`).
    pub delivery_id: Option<String>,
    /// How the attempt ended.
    pub status: DeliveryStatus,
    /// The HTTP status answered.
    pub http_status: u16,
    /// The attempt number of this event (the claim's fencing token), for
    /// attempts that claimed it.
    pub attempt: Option<u64>,
    /// How long the steps took.
    pub durations: Durations,
    /// Why it failed, for the operator (a handler's error, the verification
    /// reason, the store's error); never a secret or a body byte.
    pub error: Option<String>,
    /// The best-effort jobs it started.
    pub best_effort: Vec<BestEffortJob>,
    /// The size of the body in bytes.
    pub body_size: u64,
    /// The SHA-256 of the body of a verified delivery under
    /// [`BodyRetention::DigestOnly`], or under [`BodyRetention::Keep`] when the
    /// body was over the size cap (a kept body is its own proof).
    pub body_digest: Option<[u8; 32]>,
    /// The body, under [`BodyRetention::Keep`] and within the size cap. Lists
    /// leave it out; [`Journal::get`](crate::journal::Journal::get) returns it.
    pub body: Option<Bytes>,
    /// The allowlisted headers of a verified delivery, as received.
    pub headers: JournalHeaders,
    /// The record this one replays, for a replay.
    pub replay_of: Option<JournalId>,
    /// When an operator marked it resolved.
    pub resolved_at: Option<SystemTime>,
}

impl JournalRecord {
    /// A record with the given id, time and status, and nothing else known.
    pub fn new(id: JournalId, received_at: SystemTime, status: DeliveryStatus) -> Self {
        Self {
            id,
            received_at,
            provider: None,
            event_id: None,
            kind: None,
            delivery_id: None,
            status,
            http_status: 0,
            attempt: None,
            durations: Durations::default(),
            error: None,
            best_effort: Vec::new(),
            body_size: 0,
            body_digest: None,
            body: None,
            headers: JournalHeaders::new(),
            replay_of: None,
            resolved_at: None,
        }
    }

    /// Whether it can be replayed: a verified delivery whose body was kept.
    pub fn is_replayable(&self) -> bool {
        self.status.is_verified() && self.body.is_some() && self.provider.is_some()
    }
}

/// One change to the journal, in a batch given to
/// [`Journal::write`](crate::journal::Journal::write).
// Most writes are records: boxing them would cost an allocation each, for
// the sake of the few best-effort updates.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JournalWrite {
    /// Inserts the record, or replaces the one with its id (a record is
    /// written again when its status changes, e.g. from `processing`). The
    /// replacement keeps the stored best-effort jobs and resolution.
    Record(JournalRecord),
    /// Sets one best-effort job of a record: replaces the job of that handler,
    /// or adds it. A record not (yet) stored is left alone.
    BestEffort {
        /// The record.
        id: JournalId,
        /// The job as it stands now.
        job: BestEffortJob,
    },
}

impl JournalWrite {
    /// The record this write is about.
    pub fn id(&self) -> JournalId {
        match self {
            JournalWrite::Record(record) => record.id,
            JournalWrite::BestEffort { id, .. } => *id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_unique() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let ids: Vec<JournalId> = (0..1000).map(|_| JournalId::generate_at(at)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "one ms, in order");
        assert_eq!(ids[0].created_at(), at);
        let later = JournalId::generate_at(at + Duration::from_millis(1));
        assert!(later > ids[999]);
        assert!(JournalId::generate_at(UNIX_EPOCH) < ids[0]);
    }

    #[test]
    fn the_random_bits_of_one_process_never_repeat() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let low: std::collections::HashSet<u64> = (0..200_000)
            .map(|_| JournalId::generate_at(at).0 as u64)
            .collect();
        assert_eq!(low.len(), 200_000);
        // Spread: about half the bits set, not a counter.
        let ones: u32 = low.iter().take(1000).map(|r| r.count_ones()).sum();
        assert!((28_000..36_000).contains(&ones), "{ones}");
        assert_eq!(mix(0), 0, "the finaliser fixes 0; the seed moves it");
        assert_ne!(mix(1), 1);
    }

    #[test]
    fn ids_parse_only_32_hex_digits() {
        let id = JournalId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "0123456789abcdef0011223344556677");
        assert_eq!("0123456789ABCDEF0011223344556677".parse(), Ok(id));
        for bad in [
            "",
            "0123",
            "+123456789abcdef0011223344556677",
            "0123456789abcdef001122334455667g",
        ] {
            assert_eq!(bad.parse::<JournalId>(), Err(InvalidJournalId), "{bad}");
        }
        assert_eq!(JournalId::from_bytes(id.to_bytes()), id);
    }

    #[test]
    fn statuses_round_trip_by_name() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(*status));
        }
        assert_eq!(DeliveryStatus::ALL.len(), 17);
        assert!("Processed".parse::<DeliveryStatus>().is_err());
        assert_eq!(
            format!("[{:<12}]", DeliveryStatus::Ignored),
            "[ignored     ]"
        );
        for state in [
            BestEffortState::Pending,
            BestEffortState::Succeeded,
            BestEffortState::DeadLettered,
        ] {
            assert_eq!(state.as_str().parse::<BestEffortState>(), Ok(state));
        }
    }
}
