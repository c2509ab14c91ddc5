//! [`MemoryStore`]: an in-process, sharded, bounded [`IdempotencyStore`].
//!
//! Use it for a single instance of a service, for tests, and as a reference for
//! the protocol. It deduplicates only within one process: several instances need
//! a shared (durable) store.
//!
//! Each shard is an open-addressing table (linear probing, deletion by backward
//! shift, so removals never leave tombstones and a full shard never rebuilds its
//! table) whose slots are also threaded on doubly linked lists: one per lease
//! length for in-flight keys, one per retention for settled keys. Keys with one
//! lease or retention end in the order they were claimed or settled, so the
//! fronts of these lists are the eviction candidates: making room, settling and
//! reclaiming are O(1) with no scan and nothing stale left behind.

use std::fmt;
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::clock::{Clock, SystemClock};
use crate::store::protocol::{self, Decision, Record, State};
use crate::store::watermark::{MemoryWatermarks, Watermark, WatermarkStore};
use crate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};

/// Deadlines are clamped to the end of year 9999 so every one converts to a
/// [`SystemTime`] on every platform.
const MAX_DEADLINE_MS: u64 = 253_402_300_799_999;

/// Tokens are packed with a 2-bit state into 64 bits.
const MAX_TOKEN: u64 = (1 << 62) - 1;

/// How many lease lengths a shard keeps in separate lists of in-flight keys.
const LEASE_CLASSES: usize = 8;

/// How many retentions a shard keeps in separate lists of settled keys
/// (released keys are the retention 0).
const RETENTION_CLASSES: usize = 8;

/// The lists of in-flight keys, then those of settled keys.
const LEASE_LISTS: Range<usize> = 0..LEASE_CLASSES;
const SETTLED_LISTS: Range<usize> = LEASE_CLASSES..LEASE_CLASSES + RETENTION_CLASSES;

/// "No slot" in a list link.
const NIL: u32 = u32::MAX;

/// The smallest table a shard allocates.
const MIN_BUCKETS: usize = 8;

/// Slots a `purge_expired` visits per shard lock, so a purge never holds a
/// shard for long.
const PURGE_BATCH: usize = 4096;

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
/// - **A cheap handle**: clones share the same keys (an `Arc` inside), like the
///   durable stores' handles. Hand clones of one store to several pipelines (or
///   to every instance of a service that runs in one process) so they
///   deduplicate against each other; a store built separately shares nothing.
/// - **Sharded**: keys are spread over shards by hash, each behind its own
///   `std::sync::Mutex` held only for a few table operations (never across an
///   `.await`: the methods are `async` for the trait, the work is synchronous).
/// - **Bounded**: each shard holds at most `capacity / shards` keys (rounded up).
///   When a shard is full, a completed key whose retention has passed makes room
///   first (the earliest deadline first, so short-lived keys never push out
///   longer-kept ones that are still live); then its **oldest settled** key
///   (completed or released, in the order they were settled) is evicted; then an
///   abandoned key whose lease expired (the earliest expiry first). One key makes
///   room per new key. An **in-flight** key (unexpired lease) is never evicted:
///   if a shard is full of them, `claim` fails with [`MemoryStoreError::Full`]
///   inside [`StoreError::Unavailable`] (status 503, so the provider retries;
///   GitHub needs a redelivery) instead of growing. Watch
///   [`MemoryStore::evictions`]: an evicted completed key is forgotten, so a
///   late retry of it would run again.
/// - **Steady cost**: finding what to evict looks only at the front of one list
///   per lease length and per retention, never at the whole shard, so making
///   room costs the same in a full shard of any size. Keys of one length
///   end in claim (or settle) order; a shard keeps up to 8 lease lengths and 8
///   retentions (released keys count as one) in their own lists, and a further
///   length shares the list of the nearest one, where keys are then found only
///   approximately in deadline order (an abandoned lease behind a longer one
///   makes room once the longer one has ended). A clock set backwards has the
///   same effect. While a shard fills up for the first time, its table is
///   rebuilt 1.5 times larger each time it is 3/4 full: a pause proportional to
///   the keys it holds, 24 times for a default shard, the last one moving
///   52,000 keys in a few milliseconds (more shards make each pause shorter).
///   Once a shard has held its capacity, its table keeps its size and no
///   operation scans or rebuilds it.
/// - **Fencing**: tokens come from one counter per shard, so every claim of a key
///   gets a token larger than any given before for that key, even after the key
///   was evicted or expired.
/// - **Time** comes from the injected [`Clock`] at millisecond precision; a key is
///   expired once the clock reaches its deadline.
/// - **Memory**: keys are stored as a 96-bit xxh3 hash (seeded randomly per store),
///   never as strings, so a key's length costs nothing. A slot costs 52 bytes and
///   a full shard's table has 5/3 slots per key: a retained key costs about 87
///   bytes of heap in a full store whatever its sizing, and at most 104 while the
///   store grows (measured, see the README). Two distinct keys collide with
///   probability about n² / 2⁹⁷ for n keys (below 10⁻¹⁷ for a million keys);
///   colliding keys would share one entry.
/// - **Limits**: at most [`MemoryStore::MAX_SHARDS`] shards of at most
///   [`MemoryStore::MAX_SHARD_CAPACITY`] keys each; the builder clamps larger
///   settings to these, never panics.
/// - A `complete` or `release` whose lease ran out still settles the key as long
///   as no newer attempt claimed it: the token is still the key's current claim.
/// - `purge_expired` visits every key, a few thousand at a time per shard lock
///   (a key that a concurrent claim moves meanwhile may wait for the next
///   purge); call it every few minutes, not per delivery. Expired keys count as
///   absent without it.
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
/// // A clone is the same store: the key is in flight there too.
/// let shared = store.clone();
/// assert!(matches!(shared.claim("stripe:evt_1", fp, lease).await?, Claim::InFlight { .. }));
/// store.complete("stripe:evt_1", token, Duration::from_secs(72 * 3600)).await?;
/// assert_eq!(shared.claim("stripe:evt_1", fp, lease).await?, Claim::Completed);
///
/// clock.advance(Duration::from_secs(72 * 3600));
/// assert_eq!(store.purge_expired().await?, 1);
/// assert!(shared.is_empty());
/// # Ok::<(), hookgate::StoreError>(())
/// # }).unwrap().unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    seed: u64,
    clock: Arc<dyn Clock>,
    /// The ordering guard's watermarks, apart from the keys.
    watermarks: MemoryWatermarks,
}

/// Settings for a [`MemoryStore`]; start from [`MemoryStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct MemoryStoreBuilder {
    capacity: usize,
    shards: usize,
    watermark_capacity: usize,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    /// The most keys the store holds. Each shard holds `capacity / shards` keys
    /// rounded up, so the store's real capacity ([`MemoryStore::capacity`]) is a
    /// multiple of the shard count. A capacity of 0 is raised to 1; one beyond
    /// `shards` × [`MemoryStore::MAX_SHARD_CAPACITY`] is lowered to that.
    /// Defaults to [`MemoryStore::DEFAULT_CAPACITY`].
    pub fn capacity(mut self, keys: usize) -> Self {
        self.capacity = keys.max(1);
        self
    }

    /// The number of shards: more shards mean less lock contention between
    /// concurrent deliveries. Clamped to `1..=`[`MemoryStore::MAX_SHARDS`], and
    /// to the capacity (a shard holds at least one key). Defaults to
    /// [`MemoryStore::DEFAULT_SHARDS`].
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.clamp(1, MemoryStore::MAX_SHARDS);
        self
    }

    /// The most objects whose [watermark](crate::store::watermark) the store
    /// keeps for the ordering guard (at least 1); when full, the watermark
    /// that would expire first makes room. Defaults to
    /// [`MemoryStore::DEFAULT_WATERMARK_CAPACITY`].
    pub fn watermark_capacity(mut self, objects: usize) -> Self {
        self.watermark_capacity = objects.max(1);
        self
    }

    /// The time source for leases and retention. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the store. Memory is allocated as keys arrive, not up front.
    pub fn build(self) -> MemoryStore {
        // The setters keep capacity >= 1 and shards in 1..=MAX_SHARDS.
        let capacity = self.capacity;
        let shards = self.shards.min(capacity);
        let shard_capacity = capacity
            .div_ceil(shards)
            .min(MemoryStore::MAX_SHARD_CAPACITY);
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| Mutex::new(Shard::new(shard_capacity)))
                    .collect(),
                shard_capacity,
                // A fresh random seed per store: keys chosen to collide in one
                // store's tables cannot be precomputed.
                seed: std::collections::hash_map::RandomState::new().hash_one(0x686f_6f6b_u64),
                clock: self.clock,
                watermarks: MemoryWatermarks::new(self.watermark_capacity),
            }),
        }
    }
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        Self {
            capacity: MemoryStore::DEFAULT_CAPACITY,
            shards: MemoryStore::DEFAULT_SHARDS,
            watermark_capacity: MemoryStore::DEFAULT_WATERMARK_CAPACITY,
            clock: Arc::new(SystemClock),
        }
    }
}

impl MemoryStore {
    /// The number of keys [`MemoryStore::new`] holds at most: about 87 MB when full.
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// The number of shards [`MemoryStore::new`] splits its keys into.
    pub const DEFAULT_SHARDS: usize = 16;

    /// The number of objects whose [watermark](crate::store::watermark)
    /// [`MemoryStore::new`] keeps at most for the ordering guard.
    pub const DEFAULT_WATERMARK_CAPACITY: usize = 100_000;

    /// The most shards a store has: [`MemoryStoreBuilder::shards`] lowers larger
    /// counts to this.
    pub const MAX_SHARDS: usize = 4096;

    /// The most keys one shard holds: [`MemoryStoreBuilder::capacity`] lowers a
    /// per-shard share beyond this to it (a shard's table addresses its slots
    /// with 32 bits).
    pub const MAX_SHARD_CAPACITY: usize = 2_000_000_000;

    /// A store with the defaults: [`MemoryStore::DEFAULT_CAPACITY`] keys in [`MemoryStore::DEFAULT_SHARDS`]
    /// shards, on the [`SystemClock`].
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set capacity, shards and clock.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// The most keys the store holds: the per-shard capacity times the shard
    /// count (saturating at `usize::MAX` on platforms where it would not fit).
    pub fn capacity(&self) -> usize {
        self.inner
            .shard_capacity
            .saturating_mul(self.inner.shards.len())
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The number of keys held now: in flight, released, completed, and completed
    /// but past retention and not yet purged.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|shard| lock(shard).len).sum()
    }

    /// The number of [watermarks](crate::store::watermark) held now (expired
    /// ones not yet purged included).
    pub fn watermark_count(&self) -> usize {
        self.inner.watermarks.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of keys held by each shard, to observe how keys spread.
    pub fn shard_lens(&self) -> Vec<usize> {
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).len)
            .collect()
    }

    /// How many keys were evicted to make room since the store was built: live
    /// settled keys and abandoned leases (a completed key past its retention that
    /// makes room is not counted). Above zero means the capacity is smaller than
    /// the traffic of one retention period.
    pub fn evictions(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).evictions)
            .sum()
    }

    fn locate(&self, key: &str) -> (&Mutex<Shard>, KeyId) {
        let hash = twox_hash::XxHash3_128::oneshot_with_seed(self.inner.seed, key.as_bytes());
        let (index, id) = split(hash, self.inner.shards.len());
        (&self.inner.shards[index], id)
    }

    /// `claim`, which never waits: the async method and `claim_now` both.
    fn claim_at_once(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let (shard, id) = self.locate(key);
        let now = self.now_ms();
        let mut shard = lock(shard);
        shard
            .claim(id, fingerprint, now, deadline(now, lease))
            .map_err(StoreError::unavailable)
    }

    /// `complete`, which never waits: the async method and `complete_now` both.
    fn complete_at_once(
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

    fn now_ms(&self) -> u64 {
        // Before 1970: every deadline is in the future of the epoch.
        u64::try_from(self.inner.clock.now_unix_millis())
            .unwrap_or(0)
            .min(MAX_DEADLINE_MS)
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
            .field("shards", &self.shard_count())
            .field("evictions", &self.evictions())
            .field("clock", &self.inner.clock)
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
        self.claim_at_once(key, fingerprint, lease)
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.complete_at_once(key, token, retention)
    }

    fn claim_now(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Option<Result<Claim, StoreError>> {
        Some(self.claim_at_once(key, fingerprint, lease))
    }

    fn complete_now(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Option<Result<(), StoreError>> {
        Some(self.complete_at_once(key, token, retention))
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
        let mut purged = 0;
        for shard in self.inner.shards.iter() {
            // A batch per lock: claims of this shard wait for one batch at most.
            let mut next = Some(0);
            while let Some(start) = next {
                let (rest, count) = lock(shard).purge(start, PURGE_BATCH, now);
                purged += count;
                next = rest;
            }
        }
        // Expired watermarks go too; the count is of keys, as the trait says.
        self.inner.watermarks.purge(now);
        Ok(purged)
    }

    fn watermarks(&self) -> Option<&dyn WatermarkStore> {
        Some(self)
    }
}

/// Watermarks apart from the keys, bounded by
/// [`MemoryStoreBuilder::watermark_capacity`]: when full, the watermark
/// that would expire first is evicted (forgetting it lets an older event of
/// that object run, as if the guard were off for it).
#[async_trait]
impl WatermarkStore for MemoryStore {
    async fn watermark(&self, object: &str) -> Result<Option<Watermark>, StoreError> {
        Ok(self.inner.watermarks.get(object, self.now_ms()))
    }

    async fn advance(
        &self,
        object: &str,
        at: Watermark,
        retention: Duration,
    ) -> Result<Watermark, StoreError> {
        let now = self.now_ms();
        let expires = deadline(now, retention);
        Ok(self.inner.watermarks.advance(object, at, now, expires))
    }
}

fn stale(key: &str, token: FencingToken) -> StoreError {
    StoreError::StaleToken {
        key: key.to_owned(),
        token,
    }
}

/// Locks a shard. The only panic possible while a shard is locked is a table
/// too large for the platform's address space, raised before anything changed,
/// so the data of a poisoned lock is consistent and used as is.
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

/// Splits a key's 128-bit hash: the top 32 bits choose one of `shards` shards
/// (multiply-shift, uniform for any count), the other 96 bits identify the key
/// inside it.
fn split(hash: u128, shards: usize) -> (usize, KeyId) {
    let shard_bits = (hash >> 96) as u64;
    // < shards because shard_bits < 2^32; no overflow as shards <= MAX_SHARDS.
    let index = (shard_bits * shards as u64) >> 32;
    let id = KeyId {
        low: hash as u64,
        high: (hash >> 64) as u32,
    };
    (index as usize, id)
}

/// The identity of a key inside its shard: 96 bits of its xxh3-128 hash, packed
/// to 4-byte alignment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, packed(4))]
struct KeyId {
    low: u64,
    high: u32,
}

/// One key's record: 32 bytes.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Entry {
    fingerprint: u128,
    /// Token shifted left by 2, state in the low 2 bits; 0 marks an empty slot
    /// (tokens start at 1).
    token_and_state: u64,
    /// In flight: lease end; completed: retention end; released: release time.
    deadline_ms: u64,
}

impl Entry {
    const EMPTY: Entry = Entry {
        fingerprint: 0,
        token_and_state: 0,
        deadline_ms: 0,
    };

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

    fn is_empty(&self) -> bool {
        self.token_and_state == 0
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

/// A table slot: a key, its record, and its neighbours in its list (slot
/// indices, [`NIL`] at the ends): 52 bytes.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Slot {
    key: KeyId,
    entry: Entry,
    prev: u32,
    next: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        key: KeyId { low: 0, high: 0 },
        entry: Entry::EMPTY,
        prev: NIL,
        next: NIL,
    };
}

/// A list of keys in the order they joined it, all in flight (lease lists) or
/// all settled (settled lists); `duration_ms` is the lease or retention it was
/// opened for.
#[derive(Clone, Copy)]
struct List {
    duration_ms: u64,
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        duration_ms: 0,
        head: NIL,
        tail: NIL,
    };
}

/// The lists a key in `state` belongs to.
fn lists_of(state: State) -> Range<usize> {
    match state {
        State::Leased => LEASE_LISTS,
        State::Completed | State::Released => SETTLED_LISTS,
    }
}

/// A slot index as a list link.
fn link(index: usize) -> u32 {
    // Tables have fewer than u32::MAX slots (see `full_buckets`).
    index as u32
}

/// The slot a list link names, if any.
fn slot_of(link: u32) -> Option<usize> {
    (link != NIL).then_some(link as usize)
}

/// The table size of a full shard: 5/3 slots per key (load 0.6), so a lookup
/// probes about two slots, and at least one slot always stays empty.
fn full_buckets(capacity: usize) -> usize {
    let capacity = capacity as u64;
    let buckets = (capacity * 5).div_ceil(3).max(capacity + 1);
    // capacity <= MAX_SHARD_CAPACITY, so buckets < u32::MAX and fits usize.
    usize::try_from(buckets).unwrap_or(usize::MAX)
}

struct Shard {
    /// Open addressing with linear probing; a key's home slot is its position
    /// in hash order (multiply-shift of its low 64 bits).
    slots: Vec<Slot>,
    len: usize,
    capacity: usize,
    /// Lease lists, then settled lists (see [`lists_of`]).
    lists: [List; LEASE_CLASSES + RETENTION_CLASSES],
    /// The last token issued (0: none yet).
    last_token: u64,
    evictions: u64,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
            capacity,
            lists: [List::EMPTY; LEASE_CLASSES + RETENTION_CLASSES],
            last_token: 0,
            evictions: 0,
        }
    }

    fn claim(
        &mut self,
        id: KeyId,
        fingerprint: Fingerprint,
        now_ms: u64,
        lease_end_ms: u64,
    ) -> Result<Claim, MemoryStoreError> {
        let found = self.find(id);
        // The one claim rule every store follows (`store::protocol`).
        let previous = match found.map(|index| self.slots[index].entry.record(now_ms)) {
            Some(record) => match protocol::decide(&record, fingerprint) {
                Decision::Answer(answer) => return Ok(answer),
                Decision::Take => Some(record),
            },
            None => None,
        };
        let token = self.last_token + 1;
        if token > MAX_TOKEN {
            return Err(MemoryStoreError::TokensExhausted);
        }
        let entry = Entry::new(fingerprint, token, State::Leased, lease_end_ms);
        let lease_ms = lease_end_ms.saturating_sub(now_ms);
        match found {
            Some(index) => {
                self.unlink(index);
                self.slots[index].entry = entry;
                let list = self.list_for(State::Leased, lease_ms);
                self.link_back(index, list);
            }
            None => {
                self.make_room(now_ms)?;
                let list = self.list_for(State::Leased, lease_ms);
                self.insert(id, entry, list);
            }
        }
        self.last_token = token;
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
        let Some(index) = self.find(id) else {
            return false;
        };
        let entry = self.slots[index].entry;
        if entry.state() != State::Leased || entry.token() != token.0 {
            return false;
        }
        self.unlink(index);
        self.slots[index].entry = Entry::new(entry.fingerprint(), token.0, state, deadline_ms);
        let list = self.list_for(state, retention_ms);
        self.link_back(index, list);
        true
    }

    /// Ensures there is room for one more key: removes a completed key past its
    /// retention, or else evicts the oldest settled key, or else an abandoned
    /// lease; never an in-flight key.
    fn make_room(&mut self, now_ms: u64) -> Result<(), MemoryStoreError> {
        if self.len < self.capacity {
            return Ok(());
        }
        let Some((index, live)) = self.victim(now_ms) else {
            return Err(MemoryStoreError::Full {
                shard_capacity: self.capacity,
            });
        };
        self.remove(index);
        // A key past retention is gone anyway: only live keys count.
        if live {
            self.evictions += 1;
        }
        Ok(())
    }

    /// The slot to evict, and whether its key was live: among the fronts of the
    /// settled lists, a completion past its retention (the earliest deadline
    /// first), or else the one settled longest ago; else, among the fronts of
    /// the lease lists, the lease that ended first, if one has.
    fn victim(&self, now_ms: u64) -> Option<(usize, bool)> {
        let mut expired: Option<(usize, u64)> = None;
        let mut oldest: Option<(usize, u64)> = None;
        for list in &self.lists[SETTLED_LISTS] {
            let Some(index) = slot_of(list.head) else {
                continue;
            };
            let entry = self.slots[index].entry;
            let deadline = entry.deadline();
            if entry.is_expired_completion(now_ms) && expired.is_none_or(|(_, d)| deadline < d) {
                expired = Some((index, deadline));
            }
            let settled_at = match entry.state() {
                State::Completed => deadline.saturating_sub(list.duration_ms),
                State::Released | State::Leased => deadline,
            };
            if oldest.is_none_or(|(_, at)| settled_at < at) {
                oldest = Some((index, settled_at));
            }
        }
        if let Some((index, _)) = expired {
            return Some((index, false));
        }
        if let Some((index, _)) = oldest {
            return Some((index, true));
        }
        let mut abandoned: Option<(usize, u64)> = None;
        for list in &self.lists[LEASE_LISTS] {
            let Some(index) = slot_of(list.head) else {
                continue;
            };
            let entry = self.slots[index].entry;
            let deadline = entry.deadline();
            if entry.is_abandoned_lease(now_ms) && abandoned.is_none_or(|(_, d)| deadline < d) {
                abandoned = Some((index, deadline));
            }
        }
        abandoned.map(|(index, _)| (index, true))
    }

    /// Removes completed keys past retention among the slots from `start`, at
    /// most `budget` of them; returns where to go on (None: done) and how many
    /// were removed.
    fn purge(&mut self, start: usize, budget: usize, now_ms: u64) -> (Option<usize>, u64) {
        let end = start.saturating_add(budget).min(self.slots.len());
        let mut index = start;
        let mut purged = 0;
        while index < end {
            let entry = self.slots[index].entry;
            if !entry.is_empty() && entry.is_expired_completion(now_ms) {
                // The removal may shift a later key into this slot: look again.
                self.remove(index);
                purged += 1;
            } else {
                index += 1;
            }
        }
        ((end < self.slots.len()).then_some(end), purged)
    }

    /// The list for a key entering `state` with a lease or retention of
    /// `duration_ms`: the one opened for that duration, or else an empty one
    /// (opened for it), or else the one of the nearest duration.
    fn list_for(&mut self, state: State, duration_ms: u64) -> usize {
        let range = lists_of(state);
        let lists = &self.lists[range.clone()];
        let offset = lists
            .iter()
            .position(|list| list.duration_ms == duration_ms)
            .or_else(|| lists.iter().position(|list| list.head == NIL))
            .unwrap_or_else(|| {
                (0..lists.len())
                    .min_by_key(|&i| lists[i].duration_ms.abs_diff(duration_ms))
                    .unwrap_or(0)
            });
        let list = &mut self.lists[range.start + offset];
        if list.head == NIL {
            list.duration_ms = duration_ms;
        }
        range.start + offset
    }

    /// The slot holding `id`, if any.
    fn find(&self, id: KeyId) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut index = self.home(id);
        loop {
            let slot = &self.slots[index];
            if slot.entry.is_empty() {
                return None;
            }
            if slot.key == id {
                return Some(index);
            }
            index = self.after(index);
        }
    }

    /// Where probing for `id` starts: its position in hash order.
    fn home(&self, id: KeyId) -> usize {
        ((u128::from(id.low) * self.slots.len() as u128) >> 64) as usize
    }

    /// The slot after `index`, wrapping around.
    fn after(&self, index: usize) -> usize {
        if index + 1 == self.slots.len() {
            0
        } else {
            index + 1
        }
    }

    /// Puts an absent key into a free slot at the back of `list`; the caller
    /// made room for it. Returns its slot.
    fn insert(&mut self, id: KeyId, entry: Entry, list: usize) -> usize {
        let buckets = self.slots.len();
        // Grow at 3/4 full, until the table has the size of a full shard.
        if buckets < full_buckets(self.capacity) && (self.len + 1) * 4 > buckets * 3 {
            self.grow();
        }
        let index = self.free_slot(id);
        self.slots[index] = Slot {
            key: id,
            entry,
            prev: NIL,
            next: NIL,
        };
        self.len += 1;
        self.link_back(index, list);
        index
    }

    /// The first empty slot from `id`'s home on.
    fn free_slot(&self, id: KeyId) -> usize {
        let mut index = self.home(id);
        while !self.slots[index].entry.is_empty() {
            index = self.after(index);
        }
        index
    }

    /// Moves every key into a table about 1.5 times larger, keeping each list's
    /// order. A table's sizes are a full shard's size times (2/3)^k, so the
    /// last growth ends exactly at that size (load 0.6 once full).
    ///
    /// Keys move in slot order, not list order: a key's home is its position
    /// in hash order in either table, so both tables are walked front to back
    /// (a list walk would read and write both at random, two cache misses per
    /// key of a table far larger than the cache). The lists are then relinked
    /// through a map from old slots to new ones (4 bytes a slot).
    fn grow(&mut self) {
        let mut buckets = full_buckets(self.capacity);
        while buckets / 3 * 2 > self.slots.len() && buckets / 3 * 2 >= MIN_BUCKETS {
            buckets = buckets / 3 * 2;
        }
        let old = std::mem::replace(&mut self.slots, vec![Slot::EMPTY; buckets]);
        let mut moved = vec![NIL; old.len()];
        for (from, slot) in old.iter().enumerate() {
            if slot.entry.is_empty() {
                continue;
            }
            let index = self.free_slot(slot.key);
            self.slots[index] = *slot;
            moved[from] = link(index);
        }
        let to = |link: u32| slot_of(link).map_or(NIL, |from| moved[from]);
        for slot in &mut self.slots {
            if !slot.entry.is_empty() {
                slot.prev = to(slot.prev);
                slot.next = to(slot.next);
            }
        }
        for list in &mut self.lists {
            list.head = to(list.head);
            list.tail = to(list.tail);
        }
    }

    /// Empties slot `index` (unlinking its key), shifting later keys of its
    /// probe run back so no lookup is cut short and no tombstone is left.
    fn remove(&mut self, index: usize) {
        self.unlink(index);
        let mut hole = index;
        let mut at = index;
        loop {
            at = self.after(at);
            if self.slots[at].entry.is_empty() {
                break;
            }
            let home = self.home(self.slots[at].key);
            // The key at `at` stays if its home lies cyclically in (hole, at].
            let stays = if hole <= at {
                hole < home && home <= at
            } else {
                hole < home || home <= at
            };
            if !stays {
                self.slots[hole] = self.slots[at];
                self.relink(at, hole);
                hole = at;
            }
        }
        self.slots[hole] = Slot::EMPTY;
        self.len -= 1;
    }

    /// Appends slot `index` to `list`.
    fn link_back(&mut self, index: usize, list: usize) {
        let tail = self.lists[list].tail;
        self.slots[index].prev = tail;
        self.slots[index].next = NIL;
        match slot_of(tail) {
            Some(tail) => self.slots[tail].next = link(index),
            None => self.lists[list].head = link(index),
        }
        self.lists[list].tail = link(index);
    }

    /// Takes slot `index` out of its list (its key stays in the table).
    fn unlink(&mut self, index: usize) {
        let Slot {
            prev, next, entry, ..
        } = self.slots[index];
        let lists = lists_of(entry.state());
        match slot_of(prev) {
            Some(prev) => self.slots[prev].next = next,
            None => {
                if let Some(list) = self.lists[lists.clone()]
                    .iter_mut()
                    .find(|list| list.head == link(index))
                {
                    list.head = next;
                }
            }
        }
        match slot_of(next) {
            Some(next) => self.slots[next].prev = prev,
            None => {
                if let Some(list) = self.lists[lists]
                    .iter_mut()
                    .find(|list| list.tail == link(index))
                {
                    list.tail = prev;
                }
            }
        }
    }

    /// Points the neighbours of the key just moved from slot `from` to slot
    /// `to` at its new slot.
    fn relink(&mut self, from: usize, to: usize) {
        let Slot {
            prev, next, entry, ..
        } = self.slots[to];
        let lists = lists_of(entry.state());
        match slot_of(prev) {
            Some(prev) => self.slots[prev].next = link(to),
            None => {
                if let Some(list) = self.lists[lists.clone()]
                    .iter_mut()
                    .find(|list| list.head == link(from))
                {
                    list.head = link(to);
                }
            }
        }
        match slot_of(next) {
            Some(next) => self.slots[next].prev = link(to),
            None => {
                if let Some(list) = self.lists[lists]
                    .iter_mut()
                    .find(|list| list.tail == link(from))
                {
                    list.tail = link(to);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> KeyId {
        let hash = twox_hash::XxHash3_128::oneshot(&n.to_le_bytes());
        split(hash, 1).1
    }

    fn acquire(shard: &mut Shard, key: KeyId, now_ms: u64, lease_ms: u64) -> FencingToken {
        match shard.claim(key, Fingerprint(1), now_ms, now_ms + lease_ms) {
            Ok(Claim::Acquired(token)) => token,
            other => panic!("expected Acquired, got {other:?}"),
        }
    }

    /// Every structural promise of a shard: each key is found where it sits,
    /// `len` counts the keys, every key is on exactly one list of its state's
    /// kind (so nothing stale is ever queued: the lists hold exactly the live
    /// keys), and the links agree in both directions.
    fn check(shard: &Shard) {
        let occupied: Vec<usize> = (0..shard.slots.len())
            .filter(|&i| !shard.slots[i].entry.is_empty())
            .collect();
        assert_eq!(occupied.len(), shard.len, "len counts the keys");
        assert!(shard.len <= shard.capacity);
        for &index in &occupied {
            let key = shard.slots[index].key;
            assert_eq!(
                shard.find(key),
                Some(index),
                "each key is found at its slot"
            );
        }
        let mut on_lists = vec![0u32; shard.slots.len()];
        for (number, list) in shard.lists.iter().enumerate() {
            let mut prev = NIL;
            let mut next = list.head;
            while let Some(index) = slot_of(next) {
                let slot = shard.slots[index];
                assert!(!slot.entry.is_empty(), "lists hold keys only");
                assert!(lists_of(slot.entry.state()).contains(&number));
                assert_eq!({ slot.prev }, prev, "back link of slot {index}");
                on_lists[index] += 1;
                prev = link(index);
                next = slot.next;
            }
            assert_eq!(list.tail, prev, "tail of list {number}");
        }
        for (index, (slot, lists)) in shard.slots.iter().zip(&on_lists).enumerate() {
            let expected = u32::from(!slot.entry.is_empty());
            assert_eq!(*lists, expected, "slot {index} is on one list");
        }
    }

    #[test]
    fn records_are_compact() {
        assert_eq!(std::mem::size_of::<KeyId>(), 12);
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        assert_eq!(std::mem::size_of::<Slot>(), 52);
    }

    #[test]
    fn deadlines_round_up_and_clamp() {
        assert_eq!(deadline(1_000, Duration::from_micros(1)), 1_001);
        assert_eq!(deadline(1_000, Duration::ZERO), 1_000);
        assert_eq!(deadline(1_000, Duration::MAX), MAX_DEADLINE_MS);
        assert!(to_system_time(MAX_DEADLINE_MS) > UNIX_EPOCH);
    }

    #[test]
    fn a_key_id_keeps_96_bits_of_the_hash_and_the_shard_takes_the_top_32() {
        let hash: u128 = 0x9123_4567_89ab_cdef_0011_2233_4455_6677;
        let (shard, key) = split(hash, 16);
        assert_eq!(shard, 9, "the top 4 bits of 16 shards");
        assert_eq!({ key.low }, 0x0011_2233_4455_6677);
        assert_eq!({ key.high }, 0x89ab_cdef);
        // Keys that differ only in bits 64..96 share a shard but are distinct.
        let (other_shard, other) = split(hash ^ (1 << 64) ^ (1 << 95), 16);
        assert_eq!(other_shard, shard);
        assert_ne!(other, key);
        assert_eq!(split(u128::MAX, 16).0, 15);
        assert_eq!(split(u128::MAX, MemoryStore::MAX_SHARDS).0, 4095);
    }

    #[test]
    fn keys_that_differ_only_in_their_high_bits_are_distinct() {
        let mut shard = Shard::new(4);
        let a = KeyId { low: 42, high: 1 };
        let b = KeyId { low: 42, high: 2 };
        let token = acquire(&mut shard, a, 0, 10);
        assert!(shard.settle(a, token, State::Completed, 100, 100));
        // Same low 64 bits (so the same home slot), other high bits: a new key.
        acquire(&mut shard, b, 0, 10);
        assert_eq!(shard.len, 2);
        assert_eq!(shard.claim(a, Fingerprint(1), 0, 10), Ok(Claim::Completed));
        check(&shard);
    }

    #[test]
    fn the_last_token_is_issued_then_the_counter_refuses_to_wrap() {
        // MAX_TOKEN is the largest token the packed record holds.
        let packed = Entry::new(Fingerprint(1), MAX_TOKEN, State::Released, 0);
        assert_eq!(
            (packed.token(), packed.state()),
            (MAX_TOKEN, State::Released)
        );
        let beyond = Entry::new(Fingerprint(1), MAX_TOKEN + 1, State::Released, 0);
        assert_ne!(beyond.token(), MAX_TOKEN + 1);

        let mut shard = Shard::new(4);
        shard.last_token = MAX_TOKEN - 1;
        let last = acquire(&mut shard, id(1), 0, 10);
        assert_eq!(last, FencingToken(MAX_TOKEN));
        assert!(shard.settle(id(1), last, State::Completed, 100, 100));
        assert_eq!(
            shard.claim(id(2), Fingerprint(1), 0, 10),
            Err(MemoryStoreError::TokensExhausted)
        );
        assert_eq!(shard.len, 1, "nothing was admitted");
        check(&shard);
    }

    #[test]
    fn a_full_shard_never_resizes_its_table() {
        // Capacities around a power of two and the default per-shard share.
        for capacity in [1, 2, 7, 6_250, 8_192, 62_500] {
            let mut shard = Shard::new(capacity);
            for n in 0..3 * capacity as u64 {
                let token = acquire(&mut shard, id(n), n, 10);
                let retention = 1 << 40;
                assert!(shard.settle(id(n), token, State::Completed, n + retention, retention));
            }
            assert_eq!(shard.len, capacity);
            assert_eq!(shard.evictions, 2 * capacity as u64);
            assert_eq!(shard.slots.len(), full_buckets(capacity), "{capacity}");
            // Every key but the last `capacity` was evicted, oldest first.
            for n in 0..3 * capacity as u64 {
                let kept = n >= 2 * capacity as u64;
                assert_eq!(shard.find(id(n)).is_some(), kept, "{capacity}: key {n}");
            }
            check(&shard);
        }
    }

    #[test]
    fn tables_grow_by_half_to_the_size_of_a_full_shard() {
        assert_eq!(full_buckets(1), 2);
        assert_eq!(full_buckets(3), 5);
        assert_eq!(full_buckets(62_500), 104_167);
        let max = full_buckets(MemoryStore::MAX_SHARD_CAPACITY);
        assert!(max < NIL as usize, "slot indices fit a link");
        let mut shard = Shard::new(1_000);
        let mut sizes = Vec::new();
        for n in 0..1_000 {
            acquire(&mut shard, id(n), 0, 10);
            if sizes.last() != Some(&shard.slots.len()) {
                sizes.push(shard.slots.len());
            }
        }
        assert_eq!(
            sizes,
            [8, 12, 18, 28, 42, 64, 96, 144, 218, 328, 492, 740, 1_110, 1_667]
        );
        check(&shard);
    }

    #[test]
    fn a_table_grows_when_the_next_key_would_fill_more_than_three_quarters() {
        let mut shard = Shard::new(1_000);
        for n in 0..6 {
            acquire(&mut shard, id(n), 0, 10);
        }
        assert_eq!(shard.slots.len(), 8, "6 keys fit 8 slots");
        acquire(&mut shard, id(6), 0, 10);
        assert_eq!(shard.slots.len(), 12, "a 7th does not");
    }

    #[test]
    fn expired_completions_make_room_earliest_deadline_first() {
        let mut shard = Shard::new(4);
        // Retentions 30, 10 and 20 ms in three lists, then a live key.
        for (n, retention) in [(0, 30), (1, 10), (2, 20), (3, 1_000)] {
            let token = acquire(&mut shard, id(n), 0, 5);
            assert!(shard.settle(id(n), token, State::Completed, retention, retention));
        }
        let mut order = Vec::new();
        while let Some((index, live)) = shard.victim(40) {
            order.push((shard.slots[index].entry.deadline(), live));
            shard.remove(index);
        }
        assert_eq!(
            order,
            [(10, false), (20, false), (30, false), (1_000, true)]
        );
    }

    #[test]
    fn a_length_beyond_the_lists_joins_the_list_of_the_nearest_length() {
        let mut shard = Shard::new(16);
        let retentions = [100, 200, 300, 400, 500, 600, 700, 800];
        for (n, retention) in retentions.into_iter().enumerate() {
            let token = acquire(&mut shard, id(n as u64), 0, 5);
            assert!(shard.settle(id(n as u64), token, State::Completed, retention, retention));
        }
        let shared = shard.list_for(State::Completed, 210);
        assert_eq!(shard.lists[shared].duration_ms, 200);
        let shared = shard.list_for(State::Completed, 790);
        assert_eq!(shard.lists[shared].duration_ms, 800);
        // An exact length keeps its own list, even while that list is empty.
        let lease = shard.list_for(State::Leased, 5);
        assert_eq!(shard.lists[lease].duration_ms, 5);
        assert_eq!(shard.lists[lease].head, NIL, "every key was settled");
    }

    #[test]
    fn growing_keeps_every_list_in_order() {
        let mut shard = Shard::new(100);
        // Settled in the order 0..100, with two retentions interleaved.
        for n in 0..100 {
            let token = acquire(&mut shard, id(n), n, 1_000);
            let retention = if n % 2 == 0 { 10_000 } else { 20_000 };
            assert!(shard.settle(id(n), token, State::Completed, n + retention, retention));
        }
        check(&shard);
        // Full: each new key evicts the oldest settlement left.
        for n in 0..100 {
            let victim = shard
                .victim(200)
                .map(|(index, live)| (shard.slots[index].key, live));
            assert_eq!(victim, Some((id(n), true)), "eviction {n}");
            acquire(&mut shard, id(1_000 + n), 200, 1_000);
        }
        check(&shard);
    }

    #[test]
    fn abandoned_leases_make_room_one_per_claim_in_expiry_order() {
        let mut shard = Shard::new(3);
        // Two lease lengths: deadlines 30, 11, 31 (claimed at 0, 1, 1).
        acquire(&mut shard, id(0), 0, 30);
        acquire(&mut shard, id(1), 1, 10);
        acquire(&mut shard, id(2), 1, 30);
        assert_eq!(
            shard.claim(id(3), Fingerprint(1), 10, 100),
            Err(MemoryStoreError::Full { shard_capacity: 3 })
        );
        acquire(&mut shard, id(3), 30, 100); // 11 and 30 ended: 11 goes
        assert!(shard.find(id(1)).is_none());
        assert!(
            shard.find(id(0)).is_some(),
            "one lease makes room per claim"
        );
        acquire(&mut shard, id(4), 30, 100);
        assert!(shard.find(id(0)).is_none());
        assert_eq!(shard.evictions, 2);
        assert_eq!(
            shard.claim(id(5), Fingerprint(1), 30, 100),
            Err(MemoryStoreError::Full { shard_capacity: 3 }),
            "the lease ending at 31 is still running"
        );
        check(&shard);
    }

    #[test]
    fn more_retentions_than_lists_share_the_nearest_list_and_nothing_is_lost() {
        let mut shard = Shard::new(12);
        // Ten retentions (ms), settled at time 0: two more than there are lists.
        let retentions = [50, 10, 40, 20, 45, 11, 60, 70, 80, 90];
        for (n, &retention) in retentions.iter().enumerate() {
            let token = acquire(&mut shard, id(n as u64), 0, 5);
            assert!(shard.settle(id(n as u64), token, State::Completed, retention, retention));
        }
        check(&shard);
        // At time 30 the keys kept for 10, 11 and 20 ms are past retention: all
        // three are taken before any live key, whatever list they share.
        let mut taken = Vec::new();
        while let Some((index, _)) = shard.victim(30) {
            taken.push(shard.slots[index].entry.deadline());
            shard.remove(index);
            check(&shard);
        }
        let (expired, live) = taken.split_at(3);
        let mut expired = expired.to_vec();
        expired.sort_unstable();
        assert_eq!(expired, [10, 11, 20], "{taken:?}");
        assert_eq!(live.len(), 7, "{taken:?}");
        assert_eq!(shard.len, 0);
    }

    #[test]
    fn purge_in_batches_removes_exactly_the_expired_completions() {
        let mut shard = Shard::new(500);
        for n in 0..500 {
            let token = acquire(&mut shard, id(n), 0, 1_000);
            match n % 3 {
                0 => assert!(shard.settle(id(n), token, State::Completed, 10, 10)),
                1 => assert!(shard.settle(id(n), token, State::Released, 0, 0)),
                _ => {}
            }
        }
        let mut purged = 0;
        let mut next = Some(0);
        while let Some(start) = next {
            let (rest, count) = shard.purge(start, 7, 10);
            purged += count;
            next = rest;
            check(&shard);
        }
        assert_eq!(purged, 167);
        assert_eq!(shard.len, 333);
        assert!((0..500).all(|n| shard.find(id(n)).is_some() == (n % 3 != 0)));
    }

    /// Random operations on a small shard keep every structural promise.
    mod random {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Op {
            Claim {
                key: u8,
                lease: u64,
            },
            Settle {
                key: u8,
                completed: bool,
                retention: u64,
            },
            Advance(u64),
            Purge {
                budget: usize,
            },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..24u8, 1..12u64).prop_map(|(key, lease)| Op::Claim { key, lease }),
                3 => (0..24u8, any::<bool>(), 0..12u64)
                    .prop_map(|(key, completed, retention)| Op::Settle { key, completed, retention }),
                2 => (0..6u64).prop_map(Op::Advance),
                1 => (1..8usize).prop_map(|budget| Op::Purge { budget }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn shard_structure_survives_any_operations(
                capacity in 1..12usize,
                ops in prop::collection::vec(op(), 1..200),
            ) {
                let mut shard = Shard::new(capacity);
                let mut now = 0;
                let mut tokens = [FencingToken(0); 24];
                for op in ops {
                    match op {
                        Op::Claim { key, lease } => {
                            let answer = shard.claim(id(key.into()), Fingerprint(1), now, now + lease);
                            if let Ok(Claim::Acquired(token)) = answer {
                                prop_assert!(token > tokens[usize::from(key)]);
                                tokens[usize::from(key)] = token;
                            }
                        }
                        Op::Settle { key, completed, retention } => {
                            let token = tokens[usize::from(key)];
                            let (state, deadline) = if completed {
                                (State::Completed, now + retention)
                            } else {
                                (State::Released, now)
                            };
                            let retention = if completed { retention } else { 0 };
                            shard.settle(id(key.into()), token, state, deadline, retention);
                        }
                        Op::Advance(ms) => now += ms,
                        Op::Purge { budget } => {
                            let mut next = Some(0);
                            while let Some(start) = next {
                                next = shard.purge(start, budget, now).0;
                            }
                            let left = shard.slots.iter().any(|slot| {
                                slot.entry.is_expired_completion(now) && !slot.entry.is_empty()
                            });
                            prop_assert!(!left, "a purge leaves no expired completion");
                        }
                    }
                    check(&shard);
                }
            }
        }
    }

    /// The answer of a memory store's future, which is ready at once.
    fn at_once<T>(future: impl std::future::Future<Output = T>) -> T {
        futures_util::FutureExt::now_or_never(future).expect("the memory store never waits")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// `claim_now` / `complete_now` (the pipeline's fast path) decide
        /// exactly as the async `claim` / `complete`, through leases that
        /// expire, retention, body changes and eviction.
        #[test]
        fn the_immediate_answers_are_the_async_ones(
            ops in proptest::collection::vec((0u8..4, 0u8..5, 0u8..2, 0u64..3), 1..120),
        ) {
            use crate::clock::FixedClock;
            let clocks = [FixedClock::at_unix(1_700_000_000), FixedClock::at_unix(1_700_000_000)];
            let stores = clocks
                .clone()
                .map(|clock| MemoryStore::builder().capacity(3).shards(1).clock(clock).build());
            let mut tokens: [std::collections::HashMap<u8, FencingToken>; 2] = Default::default();
            for (op, key, body, duration) in ops {
                let name = format!("p:{key}");
                let fingerprint = Fingerprint(u128::from(body));
                let span = Duration::from_secs(1 + 10 * duration);
                match op {
                    0 | 1 => {
                        let sync = stores[0].claim_now(&name, fingerprint, span).expect("answered");
                        let r#async = at_once(stores[1].claim(&name, fingerprint, span));
                        proptest::prop_assert_eq!(format!("{sync:?}"), format!("{async:?}"));
                        if let Ok(claim) = sync {
                            if let Some(token) = claim.token() {
                                tokens[0].insert(key, token);
                            }
                        }
                        if let Ok(claim) = r#async {
                            if let Some(token) = claim.token() {
                                tokens[1].insert(key, token);
                            }
                        }
                    }
                    2 => {
                        let sync = tokens[0].get(&key).map(|&token| {
                            stores[0].complete_now(&name, token, span).expect("answered")
                        });
                        let r#async = tokens[1]
                            .get(&key)
                            .map(|&token| at_once(stores[1].complete(&name, token, span)));
                        proptest::prop_assert_eq!(format!("{sync:?}"), format!("{async:?}"));
                    }
                    _ => {
                        for clock in &clocks {
                            clock.advance(span);
                        }
                    }
                }
            }
        }
    }
}
