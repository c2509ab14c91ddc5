//! [`MemoryStore`]: an in-process, sharded, bounded [`IdempotencyStore`].
//!
//! Use it for a single instance of a service, for tests, and as a reference for
//! the protocol. It deduplicates only within one process: several instances need
//! a shared (durable) store.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::clock::{Clock, SystemClock};
use crate::store::protocol::{self, Decision, Record, State};
use crate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};

/// Settled keys per chunk of a shard's eviction queue: the queue never holds more
/// than one partly filled chunk per shard, instead of a doubling buffer's slack.
const QUEUE_CHUNK: usize = 128;

/// Deadlines are clamped to the end of year 9999 so every one converts to a
/// [`SystemTime`] on every platform.
const MAX_DEADLINE_MS: u64 = 253_402_300_799_999;

/// Tokens are packed with a 2-bit state into 64 bits.
const MAX_TOKEN: u64 = (1 << 62) - 1;

/// Why a [`MemoryStore`] refused an operation. It reaches callers inside
/// [`StoreError::Unavailable`]; downcast the source to match on it.
///
/// ```
/// use hookgate::store::{MemoryStoreError, StoreError};
/// fn is_full(err: &StoreError) -> bool {
///     match err {
///         StoreError::Unavailable(inner) => matches!(
///             inner.downcast_ref::<MemoryStoreError>(),
///             Some(MemoryStoreError::Full { .. })
///         ),
///         _ => false,
///     }
/// }
/// # let _ = is_full;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryStoreError {
    /// The key's shard is full of in-flight keys (unexpired leases), which are never
    /// evicted, so a new key cannot be admitted.
    #[error(
        "memory store is full: all {shard_capacity} keys of the key's shard hold unexpired \
         leases (in-flight work is never evicted); raise the store's capacity or shorten the lease"
    )]
    Full {
        /// How many keys one shard holds at most.
        shard_capacity: usize,
    },
    /// The key's shard handed out its last fencing token (2^62 claims).
    #[error("memory store shard issued its last fencing token; build a new store")]
    TokensExhausted,
}

/// An in-process [`IdempotencyStore`]: sharded, bounded, with lease expiry,
/// fencing tokens and retention.
///
/// - **Sharded**: keys are spread over shards by hash, each behind its own
///   `std::sync::Mutex` held only for a few hash-table operations (never across an
///   `.await`: the methods are `async` for the trait, the work is synchronous).
/// - **Bounded**: each shard holds at most `capacity / shards` keys (rounded up).
///   When a shard is full, a completed key whose retention has passed makes room
///   first (the earliest deadline first, so short-lived keys never push out
///   longer-kept ones that are still live); then its **oldest settled** keys
///   (completed or released, in the order they were settled) are evicted; then
///   abandoned keys whose lease expired. An **in-flight** key (unexpired lease) is never evicted: if a
///   shard is full of them, `claim` fails with [`MemoryStoreError::Full`] inside
///   [`StoreError::Unavailable`] (status 503, so the provider retries; GitHub needs a redelivery) instead of
///   growing. Watch [`MemoryStore::evictions`]: an evicted completed key is
///   forgotten, so a late retry of it would run again.
/// - **Fencing**: tokens come from one counter per shard, so every claim of a key
///   gets a token larger than any given before for that key, even after the key
///   was evicted or expired.
/// - **Time** comes from the injected [`Clock`] at millisecond precision; a key is
///   expired once the clock reaches its deadline.
/// - **Memory**: keys are stored as a 96-bit xxh3 hash (seeded randomly per store),
///   never as strings, so a key's length costs nothing. A retained key costs 79 to
///   136 bytes of heap (measured), depending on how `capacity / shards` falls against
///   the hash table's power-of-two size: 115 at the default sizing, within the 128-byte
///   target, while unlucky per-shard capacities exceed that target by up to 8 bytes
///   (see the README). Two distinct
///   keys collide with probability about n² / 2⁹⁷ for n keys (below 10⁻¹⁷ for a
///   million keys); colliding keys would share one entry.
/// - A `complete` or `release` whose lease ran out still settles the key as long
///   as no newer attempt claimed it: the token is still the key's current claim.
/// - `purge_expired` visits every key, one shard lock at a time; call it every
///   few minutes, not per delivery. Expired keys count as absent without it.
/// - `release` does not keep its `reason`: log it where you release.
///
/// ```
/// use hookgate::store::{Claim, Fingerprint, IdempotencyStore, MemoryStore};
/// use hookgate::FixedClock;
/// use std::time::Duration;
///
/// # futures_util::FutureExt::now_or_never(async {
/// let clock = FixedClock::at_unix(1_700_000_000);
/// let store = MemoryStore::builder().capacity(10_000).shards(4).clock(clock.clone()).build();
/// let fp = Fingerprint::of(b"{\"id\":\"evt_1\"}");
/// let lease = Duration::from_secs(30);
///
/// let Claim::Acquired(token) = store.claim("stripe:evt_1", fp, lease).await? else {
///     unreachable!("a new key is acquired")
/// };
/// assert!(matches!(store.claim("stripe:evt_1", fp, lease).await?, Claim::InFlight { .. }));
/// store.complete("stripe:evt_1", token, Duration::from_secs(72 * 3600)).await?;
/// assert_eq!(store.claim("stripe:evt_1", fp, lease).await?, Claim::Completed);
///
/// clock.advance(Duration::from_secs(72 * 3600));
/// assert_eq!(store.purge_expired().await?, 1);
/// assert!(store.is_empty());
/// # Ok::<(), hookgate::StoreError>(())
/// # }).unwrap().unwrap();
/// ```
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    seed: u64,
    clock: Arc<dyn Clock>,
}

/// Settings for a [`MemoryStore`]; start from [`MemoryStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct MemoryStoreBuilder {
    capacity: usize,
    shards: usize,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    /// The most keys the store holds (default [`MemoryStore::DEFAULT_CAPACITY`]). Each shard
    /// holds `capacity / shards` keys rounded up, so the store's real capacity
    /// ([`MemoryStore::capacity`]) is a multiple of the shard count. A capacity of
    /// 0 is raised to 1.
    pub fn capacity(mut self, keys: usize) -> Self {
        self.capacity = keys.max(1);
        self
    }

    /// The number of shards (default [`MemoryStore::DEFAULT_SHARDS`]): more shards mean less
    /// lock contention between concurrent deliveries. Clamped to `1..=capacity`.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// The time source for leases and retention (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the store. Memory is allocated as keys arrive, not up front.
    pub fn build(self) -> MemoryStore {
        let shards = self.shards.min(self.capacity);
        let shard_capacity = self.capacity.div_ceil(shards);
        MemoryStore {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity,
            // A fresh random seed per store: keys chosen to collide in one store's
            // hash table cannot be precomputed.
            seed: std::collections::hash_map::RandomState::new().hash_one(0x686f_6f6b_u64),
            clock: self.clock,
        }
    }
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        Self {
            capacity: MemoryStore::DEFAULT_CAPACITY,
            shards: MemoryStore::DEFAULT_SHARDS,
            clock: Arc::new(SystemClock),
        }
    }
}

impl MemoryStore {
    /// The number of keys [`MemoryStore::new`] holds at most: about 115 MB when full.
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// The number of shards [`MemoryStore::new`] splits its keys into.
    pub const DEFAULT_SHARDS: usize = 16;

    /// A store with the defaults: [`MemoryStore::DEFAULT_CAPACITY`] keys in [`MemoryStore::DEFAULT_SHARDS`]
    /// shards, on the [`SystemClock`].
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set capacity, shards and clock.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// The most keys the store holds: the per-shard capacity times the shard count.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The number of keys held now: in flight, released, completed, and completed
    /// but past retention and not yet purged.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).entries.len())
            .sum()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of keys held by each shard, to observe how keys spread.
    pub fn shard_lens(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|shard| lock(shard).entries.len())
            .collect()
    }

    /// How many keys were evicted to make room since the store was built: live
    /// settled keys and abandoned leases (a completed key past its retention that
    /// makes room is not counted). Above zero means the capacity is smaller than
    /// the traffic of one retention period.
    pub fn evictions(&self) -> u64 {
        self.shards.iter().map(|shard| lock(shard).evictions).sum()
    }

    fn locate(&self, key: &str) -> (&Mutex<Shard>, KeyId) {
        let hash = xxh3_128_with_seed(key.as_bytes(), self.seed);
        // The top 32 bits choose the shard (multiply-shift, uniform for any count);
        // the other 96 bits identify the key inside it.
        let shard_bits = (hash >> 96) as u64;
        let index = (shard_bits * self.shards.len() as u64) >> 32;
        // index < shards.len() because shard_bits < 2^32.
        let shard = &self.shards[index as usize];
        (
            shard,
            KeyId {
                low: hash as u64,
                high: (hash >> 64) as u32,
            },
        )
    }

    fn now_ms(&self) -> u64 {
        let now = self.clock.now();
        // Seconds and milliseconds separately: no 128-bit division on the hot path.
        match u64::try_from(now.unix_timestamp()) {
            Ok(seconds) => seconds
                .saturating_mul(1000)
                .saturating_add(u64::from(now.millisecond()))
                .min(MAX_DEADLINE_MS),
            // Before 1970: every deadline is in the future of the epoch.
            Err(_) => 0,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sizes only: keys are hashes anyway, and their contents are not ours to print.
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("shards", &self.shards.len())
            .field("evictions", &self.evictions())
            .field("clock", &self.clock)
            .finish()
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let (shard, id) = self.locate(key);
        let now = self.now_ms();
        let mut shard = lock(shard);
        shard
            .claim(
                id,
                fingerprint,
                now,
                deadline(now, lease),
                self.shard_capacity,
            )
            .map_err(StoreError::unavailable)
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let (shard, id) = self.locate(key);
        let now = self.now_ms();
        let deadline = deadline(now, retention);
        let retention = deadline.saturating_sub(now);
        let settled = lock(shard).settle(id, token, State::Completed, deadline, retention);
        settled.then_some(()).ok_or_else(|| stale(key, token))
    }

    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        _reason: &str,
    ) -> Result<(), StoreError> {
        let (shard, id) = self.locate(key);
        let now = self.now_ms();
        let settled = lock(shard).settle(id, token, State::Released, now, 0);
        settled.then_some(()).ok_or_else(|| stale(key, token))
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = self.now_ms();
        let purged = self.shards.iter().map(|shard| lock(shard).purge(now)).sum();
        Ok(purged)
    }
}

fn stale(key: &str, token: FencingToken) -> StoreError {
    StoreError::StaleToken {
        key: key.to_owned(),
        token,
    }
}

/// Locks a shard. A panic while a shard was locked cannot leave it inconsistent:
/// every operation validates entries and queue items lazily, so the data of a
/// poisoned lock is used as is.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `now + duration` in milliseconds, the duration rounded up so a non-zero lease
/// never ends at once, clamped to [`MAX_DEADLINE_MS`].
fn deadline(now_ms: u64, duration: Duration) -> u64 {
    let ms = duration.as_nanos().div_ceil(1_000_000);
    now_ms
        .saturating_add(u64::try_from(ms).unwrap_or(u64::MAX))
        .min(MAX_DEADLINE_MS)
}

fn to_system_time(ms: u64) -> SystemTime {
    // ms <= MAX_DEADLINE_MS (year 9999), which every platform's SystemTime holds.
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// The identity of a key inside its shard: 96 bits of its xxh3-128 hash, packed
/// to 4-byte alignment so a hash-table slot is 44 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
struct KeyId {
    low: u64,
    high: u32,
}

impl Hash for KeyId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly distributed: hand the hash table 64 of the bits.
        state.write_u64(self.low);
    }
}

/// Passes a [`KeyId`]'s bits through as the table hash (no second hashing).
#[derive(Default)]
struct KeyIdHasher(u64);

impl Hasher for KeyIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than a KeyId is hashed: fold the bytes.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// One key's record: 32 bytes.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Entry {
    fingerprint: u128,
    /// Token shifted left by 2, state in the low 2 bits.
    token_and_state: u64,
    /// In flight: lease end; completed: retention end; released: release time.
    deadline_ms: u64,
}

impl Entry {
    fn new(fingerprint: Fingerprint, token: u64, state: State, deadline_ms: u64) -> Self {
        Self {
            fingerprint: fingerprint.0,
            token_and_state: token << 2
                | match state {
                    State::Leased => 0,
                    State::Completed => 1,
                    State::Released => 2,
                },
            deadline_ms,
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint(self.fingerprint)
    }

    fn token(&self) -> u64 {
        self.token_and_state >> 2
    }

    fn state(&self) -> State {
        match self.token_and_state & 0b11 {
            0 => State::Leased,
            1 => State::Completed,
            _ => State::Released,
        }
    }

    fn deadline(&self) -> u64 {
        self.deadline_ms
    }

    /// The entry as the claim rule reads it at `now_ms`.
    fn record(&self, now_ms: u64) -> Record {
        Record {
            fingerprint: self.fingerprint(),
            state: self.state(),
            expires_at: to_system_time(self.deadline()),
            expired: self.deadline() <= now_ms,
        }
    }

    fn is_expired_completion(&self, now_ms: u64) -> bool {
        self.state() == State::Completed && self.deadline() <= now_ms
    }

    fn is_abandoned_lease(&self, now_ms: u64) -> bool {
        self.state() == State::Leased && self.deadline() <= now_ms
    }
}

/// A settled key in eviction order: 20 bytes. It is current only while the key's
/// entry is still settled with the same token (tokens are unique per shard).
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Settled {
    key: KeyId,
    token: u64,
}

/// How many retentions a shard keeps in separate eviction queues.
const RETENTION_CLASSES: usize = 4;

/// A shard's settled keys in eviction order: one FIFO of [`Settled`] items per
/// retention (released keys are the retention 0). Keys settled with the same
/// retention expire in the order they were settled, so the front of each queue
/// holds its earliest deadline: looking at the fronts finds a key whose
/// retention has passed, or else the oldest settlement, without a scan. A
/// retention beyond the first [`RETENTION_CLASSES`] in use shares the queue of
/// the nearest one, whose order is then only approximately by deadline.
#[derive(Default)]
struct SettledQueues {
    /// Each queue with the retention (ms) of the keys it was assigned to.
    queues: [(u64, SettledQueue); RETENTION_CLASSES],
}

impl SettledQueues {
    fn len(&self) -> usize {
        self.queues.iter().map(|(_, queue)| queue.len()).sum()
    }

    /// Queues a key settled with `retention_ms`.
    fn push(&mut self, item: Settled, retention_ms: u64) {
        let index = self
            .queues
            .iter()
            .position(|(retention, _)| *retention == retention_ms)
            .or_else(|| self.queues.iter().position(|(_, queue)| queue.len() == 0))
            .unwrap_or_else(|| {
                // Every queue is in use for another retention: the nearest one.
                let distance =
                    |(retention, _): &(u64, SettledQueue)| retention.abs_diff(retention_ms);
                (0..RETENTION_CLASSES)
                    .min_by_key(|&i| distance(&self.queues[i]))
                    .unwrap_or(0)
            });
        let (retention, queue) = &mut self.queues[index];
        if queue.len() == 0 {
            *retention = retention_ms;
        }
        queue.push(item);
    }

    /// Takes the settled key to evict: one whose retention has passed (the
    /// earliest deadline first), or else the one settled longest ago. Items of
    /// keys reclaimed or removed since they were queued are dropped on the way.
    fn pop_victim(&mut self, entries: &EntryMap, now_ms: u64) -> Option<Settled> {
        let mut expired: Option<(usize, u64)> = None;
        let mut oldest: Option<(usize, u64)> = None;
        for (index, (retention, queue)) in self.queues.iter_mut().enumerate() {
            while let Some(item) = queue.front() {
                let Some(entry) = current(entries, &item) else {
                    queue.pop();
                    continue;
                };
                let deadline = entry.deadline();
                if entry.is_expired_completion(now_ms) && expired.is_none_or(|(_, d)| deadline < d)
                {
                    expired = Some((index, deadline));
                }
                let settled_at = match entry.state() {
                    State::Completed => deadline.saturating_sub(*retention),
                    State::Released | State::Leased => deadline,
                };
                if oldest.is_none_or(|(_, at)| settled_at < at) {
                    oldest = Some((index, settled_at));
                }
                break;
            }
        }
        let (index, _) = expired.or(oldest)?;
        self.queues[index].1.pop()
    }

    /// Keeps only the items `keep` accepts, in order.
    fn retain(&mut self, mut keep: impl FnMut(&Settled) -> bool) {
        for (_, queue) in &mut self.queues {
            queue.retain(&mut keep);
        }
    }
}

/// A FIFO of [`Settled`] items in fixed-size chunks, so its memory tracks its
/// length instead of doubling.
#[derive(Default)]
struct SettledQueue {
    chunks: VecDeque<Vec<Settled>>,
    /// Items already taken from the front chunk.
    head: usize,
    len: usize,
}

impl SettledQueue {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, item: Settled) {
        match self.chunks.back_mut() {
            Some(chunk) if chunk.len() < QUEUE_CHUNK => chunk.push(item),
            _ => {
                let mut chunk = Vec::with_capacity(QUEUE_CHUNK);
                chunk.push(item);
                self.chunks.push_back(chunk);
            }
        }
        self.len += 1;
    }

    fn front(&self) -> Option<Settled> {
        self.chunks.front()?.get(self.head).copied()
    }

    fn pop(&mut self) -> Option<Settled> {
        let front = self.chunks.front()?;
        let item = *front.get(self.head)?;
        self.head += 1;
        self.len -= 1;
        if self.head == QUEUE_CHUNK {
            self.chunks.pop_front();
            self.head = 0;
        }
        Some(item)
    }

    /// Keeps only the items `keep` accepts, in order.
    fn retain(&mut self, mut keep: impl FnMut(&Settled) -> bool) {
        let mut kept = SettledQueue::default();
        while let Some(item) = self.pop() {
            if keep(&item) {
                kept.push(item);
            }
        }
        *self = kept;
    }
}

type EntryMap = HashMap<KeyId, Entry, BuildHasherDefault<KeyIdHasher>>;

#[derive(Default)]
struct Shard {
    entries: EntryMap,
    /// Completed and released keys in eviction order; items of keys that were
    /// reclaimed or removed since are skipped when popped.
    settled: SettledQueues,
    /// The last token issued (0: none yet).
    last_token: u64,
    /// No lease in this shard ends before this (a lower bound; 0 when unknown).
    earliest_lease_ms: u64,
    evictions: u64,
}

impl Shard {
    fn claim(
        &mut self,
        id: KeyId,
        fingerprint: Fingerprint,
        now_ms: u64,
        lease_end_ms: u64,
        capacity: usize,
    ) -> Result<Claim, MemoryStoreError> {
        let previous = match self.entries.get(&id) {
            Some(entry) => {
                let record = entry.record(now_ms);
                if let Decision::Answer(answer) = protocol::decide(&record, fingerprint) {
                    return Ok(answer);
                }
                Some(record)
            }
            None => {
                self.make_room(now_ms, capacity)?;
                self.reserve_slot(capacity);
                None
            }
        };
        let token = self.last_token + 1;
        if token > MAX_TOKEN {
            return Err(MemoryStoreError::TokensExhausted);
        }
        self.last_token = token;
        self.earliest_lease_ms = self.earliest_lease_ms.min(lease_end_ms);
        self.entries.insert(
            id,
            Entry::new(fingerprint, token, State::Leased, lease_end_ms),
        );
        Ok(protocol::acquired(
            previous.as_ref(),
            fingerprint,
            FencingToken(token),
        ))
    }

    /// Settles the in-flight claim `token` of `id` with a `deadline_ms`
    /// `retention_ms` from now; false if the claim is not current.
    fn settle(
        &mut self,
        id: KeyId,
        token: FencingToken,
        state: State,
        deadline_ms: u64,
        retention_ms: u64,
    ) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        if entry.state() != State::Leased || entry.token() != token.0 {
            return false;
        }
        *entry = Entry::new(entry.fingerprint(), token.0, state, deadline_ms);
        self.settled.push(
            Settled {
                key: id,
                token: token.0,
            },
            retention_ms,
        );
        // Items of reclaimed keys pile up in the queue: drop them once they
        // outnumber the live keys, which keeps the cost amortised O(1).
        if self.settled.len() > 2 * self.entries.len() + QUEUE_CHUNK {
            let entries = &self.entries;
            self.settled.retain(|item| is_current(entries, item));
        }
        true
    }

    /// Ensures there is room for one more key: removes a completed key past its
    /// retention, or else evicts the oldest settled key, or else abandoned
    /// leases; never an in-flight key.
    fn make_room(&mut self, now_ms: u64, capacity: usize) -> Result<(), MemoryStoreError> {
        if self.entries.len() < capacity {
            return Ok(());
        }
        if let Some(item) = self.settled.pop_victim(&self.entries, now_ms) {
            if let Some(entry) = self.entries.remove(&{ item.key }) {
                // A key past retention is gone anyway: only live keys count.
                if !entry.is_expired_completion(now_ms) {
                    self.evictions += 1;
                }
            }
            return Ok(());
        }
        if now_ms >= self.earliest_lease_ms {
            let before = self.entries.len();
            self.entries
                .retain(|_, entry| !entry.is_abandoned_lease(now_ms));
            self.evictions += (before - self.entries.len()) as u64;
            self.earliest_lease_ms = self
                .entries
                .values()
                .filter(|entry| entry.state() == State::Leased)
                .map(Entry::deadline)
                .min()
                .unwrap_or(u64::MAX);
        }
        if self.entries.len() < capacity {
            Ok(())
        } else {
            Err(MemoryStoreError::Full {
                shard_capacity: capacity,
            })
        }
    }

    /// Keeps the table of a full shard at one size. Removals leave tombstones that
    /// use up the table's spare room; once it is gone, the standard table would
    /// double although the number of keys stays at the capacity. Instead, copy the
    /// keys into a fresh table sized for the capacity plus 1/8 (so this happens at
    /// most once per capacity/8 insertions: amortised O(1)).
    fn reserve_slot(&mut self, capacity: usize) {
        let full_table = capacity.saturating_add(capacity / 8);
        let len = self.entries.len();
        if len < self.entries.capacity() || len.saturating_mul(2) < full_table {
            // Room left, or still growing towards the full size: the usual doubling.
            return;
        }
        let mut fresh = EntryMap::with_capacity_and_hasher(full_table, Default::default());
        fresh.extend(self.entries.drain());
        self.entries = fresh;
    }

    /// Removes completed keys past retention; returns how many.
    fn purge(&mut self, now_ms: u64) -> u64 {
        let before = self.entries.len();
        self.entries
            .retain(|_, entry| !entry.is_expired_completion(now_ms));
        let purged = before - self.entries.len();
        if purged > 0 {
            let entries = &self.entries;
            self.settled.retain(|item| is_current(entries, item));
        }
        purged as u64
    }
}

/// Whether a queue item still names its key's current settlement.
fn is_current(entries: &EntryMap, item: &Settled) -> bool {
    current(entries, item).is_some()
}

/// The entry of a queue item's key, if the item still names its current
/// settlement.
fn current<'a>(entries: &'a EntryMap, item: &Settled) -> Option<&'a Entry> {
    entries
        .get(&{ item.key })
        .filter(|entry| entry.state() != State::Leased && entry.token() == { item.token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_compact() {
        assert_eq!(std::mem::size_of::<(KeyId, Entry)>(), 44);
        assert_eq!(std::mem::size_of::<Settled>(), 20);
    }

    #[test]
    fn queue_is_fifo_across_chunks_and_retain_keeps_order() {
        let mut queue = SettledQueue::default();
        let item = |n: u64| Settled {
            key: KeyId { low: n, high: 0 },
            token: n,
        };
        for n in 0..(3 * QUEUE_CHUNK as u64 + 5) {
            queue.push(item(n));
        }
        assert_eq!(queue.len(), 3 * QUEUE_CHUNK + 5);
        for n in 0..QUEUE_CHUNK as u64 + 1 {
            assert_eq!({ queue.pop().map(|i| i.token) }, Some(n));
        }
        queue.retain(|i| i.token % 2 == 0);
        let rest: Vec<u64> = std::iter::from_fn(|| queue.pop().map(|i| i.token)).collect();
        let expected: Vec<u64> = (QUEUE_CHUNK as u64 + 1..3 * QUEUE_CHUNK as u64 + 5)
            .filter(|n| n % 2 == 0)
            .collect();
        assert_eq!(rest, expected);
        assert_eq!(queue.len(), 0);
        assert!(queue.pop().is_none());
        queue.push(item(7));
        assert_eq!(queue.pop().map(|i| i.token), Some(7));
    }

    #[test]
    fn deadlines_round_up_and_clamp() {
        assert_eq!(deadline(1_000, Duration::from_micros(1)), 1_001);
        assert_eq!(deadline(1_000, Duration::ZERO), 1_000);
        assert_eq!(deadline(1_000, Duration::MAX), MAX_DEADLINE_MS);
        assert!(to_system_time(MAX_DEADLINE_MS) > UNIX_EPOCH);
    }

    #[test]
    fn queue_of_a_key_released_again_and_again_stays_bounded() {
        let mut shard = Shard::default();
        let id = KeyId { low: 7, high: 7 };
        for _ in 0..10_000 {
            let Ok(Claim::Acquired(token)) = shard.claim(id, Fingerprint(1), 0, 10, 4) else {
                panic!("a released key is acquired again");
            };
            assert!(shard.settle(id, token, State::Released, 0, 0));
        }
        assert_eq!(shard.entries.len(), 1);
        assert!(
            shard.settled.len() <= 2 + QUEUE_CHUNK,
            "{}",
            shard.settled.len()
        );
        let chunks: usize = shard
            .settled
            .queues
            .iter()
            .map(|(_, q)| q.chunks.len())
            .sum();
        assert!(chunks <= 2);
    }

    #[test]
    fn full_shard_table_keeps_its_size_under_churn() {
        let mut shard = Shard::default();
        // 76% of an 8,192-slot table: removals leave tombstones.
        let capacity = 6_250;
        for n in 0..3 * capacity as u64 {
            let hash = xxhash_rust::xxh3::xxh3_128(&n.to_le_bytes());
            let id = KeyId {
                low: hash as u64,
                high: (hash >> 64) as u32,
            };
            let Ok(Claim::Acquired(token)) = shard.claim(id, Fingerprint(1), 0, 10, capacity)
            else {
                panic!("a new key is acquired");
            };
            assert!(shard.settle(id, token, State::Completed, 100, 100));
        }
        assert_eq!(shard.entries.len(), capacity);
        assert_eq!(shard.evictions, 2 * capacity as u64);
        // The table a full shard needs (capacity + 1/8), not a doubled one.
        let sized = EntryMap::with_capacity_and_hasher(capacity + capacity / 8, Default::default());
        let (held, needed) = (shard.entries.capacity(), sized.capacity());
        assert!(held <= needed, "table for {held} keys, {needed} needed");
    }

    #[test]
    fn more_retentions_than_queues_share_the_nearest_queue_and_nothing_is_lost() {
        let mut shard = Shard::default();
        let capacity = 8;
        // Six retentions (ms), settled at time 0: two more than there are queues.
        let retentions = [50, 10, 40, 20, 45, 11];
        for (n, &retention) in retentions.iter().enumerate() {
            let id = KeyId {
                low: n as u64,
                high: 0,
            };
            let Ok(Claim::Acquired(token)) = shard.claim(id, Fingerprint(1), 0, 5, capacity) else {
                panic!("a new key is acquired");
            };
            assert!(shard.settle(id, token, State::Completed, retention, retention));
        }
        assert_eq!(shard.settled.len(), retentions.len());
        // At time 30 the keys kept for 10, 11 and 20 ms are past retention: all
        // three are taken before any live key, whatever queue they share.
        let mut taken = Vec::new();
        while let Some(item) = shard.settled.pop_victim(&shard.entries, 30) {
            let entry = shard.entries.remove(&{ item.key }).expect("a current item");
            taken.push(entry.deadline());
        }
        let (expired, live) = taken.split_at(3);
        let mut expired = expired.to_vec();
        expired.sort_unstable();
        assert_eq!(expired, [10, 11, 20], "{taken:?}");
        assert_eq!(live.len(), 3, "{taken:?}");
        assert!(shard.entries.is_empty());
    }

    #[test]
    fn token_counter_refuses_to_wrap() {
        let mut shard = Shard {
            last_token: MAX_TOKEN,
            ..Shard::default()
        };
        let id = KeyId { low: 1, high: 1 };
        assert_eq!(
            shard.claim(id, Fingerprint(1), 0, 10, 4),
            Err(MemoryStoreError::TokensExhausted)
        );
        assert!(shard.entries.is_empty());
    }
}
