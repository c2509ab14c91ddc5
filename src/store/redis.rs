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
    corrupt, duration_ms, from_unix_ms, require_nonzero, settled, with_timeout, StoreConfigError,
    DEFAULT_UNSETTLED_RETENTION,
};
use super::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "hookgate:idem:";

/// Sets `now` to the server's time in Unix milliseconds. Numbers are written
/// with `%.0f` so that large values never turn into exponent notation.
const NOW: &str = "
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function num(x) return string.format('%.0f', x) end
";

/// KEYS[1] key; ARGV[1] fingerprint (16 bytes), ARGV[2] lease ms, ARGV[3]
/// unsettled retention ms. Returns {1, token} acquired, {2, until ms} in flight,
/// {3} completed, {4} fingerprint mismatch, {5} not a hash or unreadable.
const CLAIM: &str = "
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'hash' and kind ~= 'none' then return {5} end
local stored = redis.call('HMGET', KEYS[1], 'state', 'fp', 'token', 'exp')
local state, fp, token, exp = stored[1], stored[2], tonumber(stored[3]), tonumber(stored[4])
if state then
  if not (fp and token and exp)
     or (state ~= 'leased' and state ~= 'released' and state ~= 'completed') then
    return {5}
  end
  local expired = exp <= now
  if not (state == 'completed' and expired) then
    if fp ~= ARGV[1] then return {4} end
    if state == 'completed' then return {3} end
    if state == 'leased' and not expired then return {2, exp} end
  end
elseif kind == 'hash' then
  return {5}
else
  token = 0
end
token = token + 1
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'leased', 'fp', ARGV[1], 'token', num(token), 'exp', num(now + lease))
redis.call('HDEL', KEYS[1], 'reason')
redis.call('PEXPIRE', KEYS[1], lease + tonumber(ARGV[3]))
return {1, token}
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

/// The three scripts, hashed once per store.
struct Scripts {
    claim: Script,
    complete: Script,
    release: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            claim: Script::new(&format!("{NOW}{CLAIM}")),
            complete: Script::new(&format!("{NOW}{COMPLETE}")),
            release: Script::new(&format!("{NOW}{RELEASE}")),
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
    operation_timeout: Duration,
    manager: OnceCell<ConnectionManager>,
    prefix: String,
    unsettled_retention_ms: i64,
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
    connect_timeout: Duration,
    operation_timeout: Duration,
    unsettled_retention: Duration,
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

    /// The Redis key a protocol key is stored at.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
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
                    .set_response_timeout(Some(inner.operation_timeout))
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
        with_timeout(self.inner.operation_timeout, what, async {
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
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            unsettled_retention: DEFAULT_UNSETTLED_RETENTION,
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

    /// How long opening the connection may take (default 5 s; URL only).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The most one operation may take, reconnecting included, before it fails
    /// with [`StoreError::Unavailable`] (default 5 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How long a leased (past its lease) or released key is kept before Redis
    /// drops it (default 72 h). Without it an attempt that never settled would
    /// keep its key forever; with it, a delivery retried later than this is
    /// treated as new.
    pub fn unsettled_retention(mut self, retention: Duration) -> Self {
        self.unsettled_retention = retention;
        self
    }

    /// Checks the settings and returns the store; connects to nothing yet.
    pub fn build(self) -> Result<RedisStore, StoreConfigError> {
        // One multiplexed connection: there is no pool to size.
        require_nonzero(
            1,
            &[
                ("connect", self.connect_timeout),
                ("operation", self.operation_timeout),
                ("unsettled retention", self.unsettled_retention),
            ],
        )?;
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
                connect_timeout: self.connect_timeout,
                operation_timeout: self.operation_timeout,
                manager,
                prefix: self.prefix,
                unsettled_retention_ms: duration_ms(self.unsettled_retention),
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
        f.debug_struct("RedisStoreBuilder")
            .field("source", &source)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("unsettled_retention", &self.unsettled_retention)
            .finish()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("operation_timeout", &self.inner.operation_timeout)
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
            .arg(self.inner.unsettled_retention_ms);
        let reply: Vec<i64> = self.invoke("Redis claim", invocation).await?;
        match reply.as_slice() {
            [1, token] => u64::try_from(*token)
                .map(|token| Claim::Acquired(FencingToken(token)))
                .map_err(|_| corrupt(key, format!("negative token {token}"))),
            [2, until] => Ok(Claim::InFlight {
                until: from_unix_ms(*until),
            }),
            [3] => Ok(Claim::Completed),
            [4] => Ok(Claim::FingerprintMismatch),
            [5] => Err(corrupt(
                key,
                "not a hash, or a hash that lacks a field or has an unknown state",
            )),
            other => Err(corrupt(key, format!("unexpected claim reply {other:?}"))),
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
            .arg(self.inner.unsettled_retention_ms);
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
            .arg(self.inner.unsettled_retention_ms);
        let changed: i64 = self.invoke("Redis release", invocation).await?;
        settled(key, token, changed == 1)
    }

    /// Always `Ok(0)`: completed keys carry their retention as a Redis TTL and
    /// Redis deletes them itself.
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}
