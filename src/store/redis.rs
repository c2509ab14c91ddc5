//! [`RedisStore`]: the idempotency protocol in Redis (feature `redis`).
//!
//! Each key is one hash, `{prefix}{key}`, and each operation one Lua script, so
//! a claim reads and writes the hash atomically on the server. Scripts read the
//! server's clock (`TIME`), so instances whose clocks disagree still agree on
//! when a lease ends. Retention is a key TTL (`PEXPIRE`): Redis drops completed
//! keys on its own and [`RedisStore::purge_expired`] has nothing to do. Every
//! script touches a single key, so the store also works on Redis Cluster.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::OnceCell;

use super::durable::{
    self, corrupt, duration_ms, fingerprint_from_slice, from_unix_ms, settled, with_timeout,
    DurableSettings, Limits, StoreConfigError,
};
use super::protocol::{self, Decision, Record, State};
use super::{
    Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError, Watermark, WatermarkStore,
};

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "hookgate:idem:";

/// The default prefix of the ordering guard's watermark keys.
pub const DEFAULT_WATERMARK_PREFIX: &str = "hookgate:watermark:";

/// Sets `now` to the server's time in Unix milliseconds. Numbers are written
/// with `%.0f` so that large values never turn into exponent notation.
const NOW: &str = "
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function num(x) return string.format('%.0f', x) end
";

/// KEYS[1] key; ARGV[1] fingerprint (16 bytes), ARGV[2] lease ms, ARGV[3]
/// unsettled retention ms. Takes the key when `store::protocol::takes` says so
/// (released, or its lease or retention ended; the body plays no part) and
/// returns {taken (1 or 0), token, state, fp, exp, expired (1 or 0)}: the new
/// token and the record it replaced (state '' for a new key), or the record
/// that refused the claim, which Rust then answers by `protocol::decide`.
/// Returns {5, …} for a key that is not a hash or is unreadable.
const CLAIM: &str = "
local corrupt = {5, 0, '', '', 0, 0}
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'hash' and kind ~= 'none' then return corrupt end
local stored = redis.call('HMGET', KEYS[1], 'state', 'fp', 'token', 'exp')
local state, fp, token, exp = stored[1], stored[2], tonumber(stored[3]), tonumber(stored[4])
local expired = 0
if state then
  if not (fp and token and exp) or #fp ~= 16
     or (state ~= 'leased' and state ~= 'released' and state ~= 'completed') then
    return corrupt
  end
  if exp <= now then expired = 1 end
  if not (state == 'released' or expired == 1) then
    return {0, token, state, fp, exp, expired}
  end
elseif kind == 'hash' then
  return corrupt
else
  state, fp, token, exp = '', '', 0, 0
end
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'leased', 'fp', ARGV[1], 'token', num(token + 1), 'exp', num(now + lease))
redis.call('HDEL', KEYS[1], 'reason')
redis.call('PEXPIRE', KEYS[1], lease + tonumber(ARGV[3]))
return {1, token + 1, state, fp, exp, expired}
";

/// KEYS[1] key; ARGV[1] token, ARGV[2] retention ms, ARGV[3] unsettled
/// retention ms. Returns 1 if settled. A key completed with no retention is
/// already expired, but is kept for the unsettled retention so that its token
/// counter goes on: an older attempt's token can never match a new claim's.
const COMPLETE: &str = "
local stored = redis.call('HMGET', KEYS[1], 'state', 'token')
if stored[1] ~= 'leased' or stored[2] ~= ARGV[1] then return 0 end
local retention = tonumber(ARGV[2])
local keep = retention
if keep <= 0 then keep = tonumber(ARGV[3]) end
redis.call('HSET', KEYS[1], 'state', 'completed', 'exp', num(now + retention))
redis.call('HDEL', KEYS[1], 'reason')
redis.call('PEXPIRE', KEYS[1], keep)
return 1
";

/// KEYS[1] key; ARGV[1] token, ARGV[2] reason, ARGV[3] unsettled retention ms.
/// Returns 1 if settled.
const RELEASE: &str = "
local stored = redis.call('HMGET', KEYS[1], 'state', 'token')
if stored[1] ~= 'leased' or stored[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'released', 'reason', ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
";

/// KEYS[1] watermark key; ARGV[1] time (Unix ms), ARGV[2] retention ms.
/// Keeps the larger of the stored and the given time, with the longer of the
/// remaining and the given retention (a key TTL: an expired watermark is
/// gone, so any time replaces it). Returns {1, time kept} or {5, 0} for a key
/// that is not a string of digits.
const ADVANCE: &str = "
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'string' and kind ~= 'none' then return {5, 0} end
local at = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl < 1 then ttl = 1 end
local stored = redis.call('GET', KEYS[1])
if stored then
  local current = tonumber(stored)
  if current == nil or string.find(stored, '^-?%d+$') == nil then return {5, 0} end
  if current > at then at = current end
  local left = redis.call('PTTL', KEYS[1])
  if left > ttl then ttl = left end
end
redis.call('SET', KEYS[1], string.format('%.0f', at), 'PX', ttl)
return {1, at}
";

/// The claim script's reply: taken (1), not taken (0) or corrupt (5); the
/// token; the record's state, fingerprint, expiry (Unix ms) and whether it has
/// expired (1) by the server's clock.
type ClaimReply = (i64, i64, String, Vec<u8>, i64, i64);

/// The three scripts, hashed once per store.
struct Scripts {
    claim: Script,
    complete: Script,
    release: Script,
    advance: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            claim: Script::new(&format!("{NOW}{CLAIM}")),
            complete: Script::new(&format!("{NOW}{COMPLETE}")),
            release: Script::new(&format!("{NOW}{RELEASE}")),
            advance: Script::new(ADVANCE),
        }
    }
}

/// An [`IdempotencyStore`] in Redis, shared by every instance of a service.
///
/// Connect from a URL with [`RedisStore::connect`], or hand over your own
/// [`ConnectionManager`] with [`RedisStore::from_manager`]. Nothing connects
/// while building; the connection manager connects on first use and reconnects
/// by itself after the connection drops. Clones share the connection.
///
/// Key layout: one hash per key at `{prefix}{key}` with the fields `state`
/// (`leased`, `released` or `completed`), `fp` (16-byte fingerprint), `token`
/// (the attempt counter), `exp` (Unix ms: end of the lease, or of retention)
/// and `reason` (of the last release). A completed key expires with its
/// retention; leased and released keys expire after the lease plus
/// [`RedisStoreBuilder::unsettled_retention`].
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::store::redis::RedisStore;
/// use std::time::Duration;
///
/// let store = RedisStore::connect("redis://cache.internal:6379/")
///     .key_prefix("shop-webhooks:")
///     .operation_timeout(Duration::from_secs(1))
///     .build()?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Option<redis::Client>,
    connect_timeout: Duration,
    limits: Limits,
    manager: OnceCell<ConnectionManager>,
    prefix: String,
    watermark_prefix: String,
    scripts: Scripts,
}

/// Where a [`RedisStore`]'s connection comes from.
enum Source {
    Url(String),
    Manager(ConnectionManager),
}

/// Settings for a [`RedisStore`]; every setting has a production default.
#[must_use = "call `build()` to get the store"]
pub struct RedisStoreBuilder {
    source: Source,
    prefix: String,
    watermark_prefix: String,
    durable: DurableSettings,
}

impl RedisStore {
    /// Settings for a store that connects to the Redis server at `url`
    /// (`redis://[:password@]host:port/db`, or `rediss://` where your build of
    /// `redis` enables TLS).
    pub fn connect(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Url(url.into()))
    }

    /// Settings for a store that uses your existing connection manager (with its
    /// own timeouts and reconnect policy);
    /// [`RedisStoreBuilder::operation_timeout`] still bounds every operation.
    pub fn from_manager(manager: ConnectionManager) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Source::Manager(manager))
    }

    /// The prefix put before every key.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key of `object`'s watermark.
    pub fn watermark_key(&self, object: &str) -> String {
        format!("{}{object}", self.inner.watermark_prefix)
    }

    /// The Redis key a protocol key is stored at.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// The connection this store runs its scripts on, for maintenance beside
    /// the protocol (inspecting or deleting keys under
    /// [`RedisStore::key_prefix`], `INFO`, `DBSIZE`), as `PostgresStore::pool`
    /// gives the pool.
    ///
    /// It is a clone of the store's one [`ConnectionManager`]: commands sent on
    /// it share the store's multiplexed connection and reconnect as the store
    /// does. For a store built from a URL it is created on the first call to
    /// this or any operation (which is why this is `async`); that creates no
    /// connection yet, the manager connects on the first command. Blocking
    /// commands (`BLPOP`, `SUBSCRIBE`, …) on it would hold up the store's
    /// claims: open a connection of your own for those.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookgate::store::redis::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://cache.internal:6379/").build()?;
    /// let mut connection = store.connection().await?;
    /// let keys: u64 = redis::cmd("DBSIZE").query_async(&mut connection).await?;
    /// # let _ = keys; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the manager cannot be set up from the
    /// store's client.
    pub async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.manager().await
    }

    /// The connection manager, created on first use.
    async fn manager(&self) -> Result<ConnectionManager, StoreError> {
        let inner = &self.inner;
        inner
            .manager
            .get_or_try_init(|| async {
                let client = inner
                    .client
                    .clone()
                    .ok_or_else(|| StoreError::unavailable(NoConnection))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(inner.connect_timeout))
                    .set_response_timeout(Some(inner.limits.operation_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(StoreError::unavailable)
            })
            .await
            .cloned()
    }

    /// Runs `invocation` of one of the scripts within the operation timeout.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        with_timeout(self.inner.limits.operation_timeout, what, async {
            let mut manager = self.manager().await?;
            invocation
                .invoke_async(&mut manager)
                .await
                .map_err(StoreError::unavailable)
        })
        .await
    }
}

/// A store built from a manager always has one; reaching this is a bug.
#[derive(Debug, thiserror::Error)]
#[error("the Redis store has neither a client nor a connection manager")]
struct NoConnection;

impl RedisStoreBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            watermark_prefix: DEFAULT_WATERMARK_PREFIX.to_owned(),
            durable: DurableSettings::new(Self::DEFAULT_OPERATION_TIMEOUT),
        }
    }

    /// The prefix put before every key (default [`DEFAULT_KEY_PREFIX`]), so
    /// that several services or tests can share one Redis database. With Redis
    /// Cluster a `{hash tag}` in the prefix is not needed: each script touches
    /// one key.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The prefix put before the key of each object's
    /// [watermark](crate::store::watermark) (default
    /// [`DEFAULT_WATERMARK_PREFIX`]): a plain string key holding the time in
    /// Unix ms, with the retention as its TTL. Keep it apart from
    /// [`key_prefix`](Self::key_prefix).
    pub fn watermark_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.watermark_prefix = prefix.into();
        self
    }

    durable::durable_setters!(
        connect_timeout,
        operation_timeout(default 5 s, "reconnecting"),
        unsettled_retention("Redis drops it (a key TTL), by the server's clock"),
    );

    /// Checks the settings and returns the store; connects to nothing yet.
    pub fn build(self) -> Result<RedisStore, StoreConfigError> {
        // One multiplexed connection: there is no pool to size.
        let limits = self.durable.check(1, &[])?;
        let (client, manager) = match self.source {
            Source::Url(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|err| StoreConfigError::InvalidUrl(Box::new(err)))?;
                (Some(client), OnceCell::new())
            }
            Source::Manager(manager) => (None, OnceCell::new_with(Some(manager))),
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                connect_timeout: self.durable.connect_timeout,
                limits,
                manager,
                prefix: self.prefix,
                watermark_prefix: self.watermark_prefix,
                scripts: Scripts::new(),
            }),
        })
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out: it may hold a password.
        let source = match self.source {
            Source::Url(_) => "url",
            Source::Manager(_) => "manager",
        };
        let mut out = f.debug_struct("RedisStoreBuilder");
        out.field("source", &source)
            .field("prefix", &self.prefix)
            .field("watermark_prefix", &self.watermark_prefix);
        self.debug_durable(&mut out);
        out.finish()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("operation_timeout", &self.inner.limits.operation_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl IdempotencyStore for RedisStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let mut invocation = self.inner.scripts.claim.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(&fingerprint.to_bytes()[..])
            .arg(duration_ms(lease))
            .arg(self.inner.limits.unsettled_retention_ms);
        let reply: ClaimReply = self.invoke("Redis claim", invocation).await?;
        let (code, token, state, stored_fp, exp, expired) = reply;
        if code == 5 {
            return Err(corrupt(
                key,
                "not a hash, or a hash that lacks a field or has an unknown state",
            ));
        }
        let record = match state.as_str() {
            "" => None,
            state => Some(Record {
                fingerprint: fingerprint_from_slice(key, &stored_fp)?,
                state: State::parse(key, state)?,
                expires_at: from_unix_ms(exp),
                expired: expired == 1,
            }),
        };
        match (code, record) {
            (1, record) => {
                let token = u64::try_from(token)
                    .map_err(|_| corrupt(key, format!("negative token {token}")))?;
                Ok(protocol::acquired(
                    record.as_ref(),
                    fingerprint,
                    FencingToken(token),
                ))
            }
            (0, Some(record)) => match protocol::decide(&record, fingerprint) {
                Decision::Answer(answer) => Ok(answer),
                Decision::Take => Err(corrupt(
                    key,
                    "the claim script refused a key the claim rule takes",
                )),
            },
            (code, _) => Err(corrupt(key, format!("unexpected claim reply code {code}"))),
        }
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let mut invocation = self.inner.scripts.complete.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(token.0)
            .arg(duration_ms(retention))
            .arg(self.inner.limits.unsettled_retention_ms);
        let changed: i64 = self.invoke("Redis complete", invocation).await?;
        settled(key, token, changed == 1)
    }

    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut invocation = self.inner.scripts.release.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(token.0)
            .arg(reason)
            .arg(self.inner.limits.unsettled_retention_ms);
        let changed: i64 = self.invoke("Redis release", invocation).await?;
        settled(key, token, changed == 1)
    }

    /// Always `Ok(0)`: completed keys carry their retention as a Redis TTL and
    /// Redis deletes them itself.
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn watermarks(&self) -> Option<&dyn WatermarkStore> {
        Some(self)
    }
}

/// Watermarks as one string key per object at
/// `{watermark prefix}{object}`, the retention its TTL.
#[async_trait]
impl WatermarkStore for RedisStore {
    async fn watermark(&self, object: &str) -> Result<Option<Watermark>, StoreError> {
        let key = self.watermark_key(object);
        let stored: Option<String> = with_timeout(
            self.inner.limits.operation_timeout,
            "Redis watermark",
            async {
                let mut manager = self.manager().await?;
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut manager)
                    .await
                    .map_err(StoreError::unavailable)
            },
        )
        .await?;
        stored
            .map(|text| {
                text.parse::<i64>()
                    .map(Watermark::from_unix_millis)
                    .map_err(|_| corrupt(&key, "the watermark is not a whole number"))
            })
            .transpose()
    }

    async fn advance(
        &self,
        object: &str,
        at: Watermark,
        retention: Duration,
    ) -> Result<Watermark, StoreError> {
        let key = self.watermark_key(object);
        let mut invocation = self.inner.scripts.advance.prepare_invoke();
        invocation
            .key(&key)
            .arg(at.unix_millis())
            .arg(duration_ms(retention));
        let (code, kept): (i64, i64) = self.invoke("Redis advance", invocation).await?;
        match code {
            1 => Ok(Watermark::from_unix_millis(kept)),
            _ => Err(corrupt(&key, "the watermark key holds something else")),
        }
    }
}
