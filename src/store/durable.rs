//! What the durable stores (SQLite, PostgreSQL, Redis) share besides the claim
//! rule (in `protocol`): the configuration error, table-name validation,
//! timeouts, and the conversions between Rust values and stored ones.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{FencingToken, Fingerprint, StoreError};

/// Why a durable store's builder refused its settings. Nothing is connected or
/// opened while building, so these are all mistakes in the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreConfigError {
    /// The table name is not a plain SQL identifier.
    #[error("invalid table name `{0}`: use 1 to {MAX_TABLE_NAME} ASCII letters, digits or underscores, not starting with a digit (PostgreSQL also accepts one `schema.` qualifier)")]
    InvalidTableName(String),
    /// The connection URL cannot be parsed. The URL itself is not repeated, as it
    /// may hold a password.
    #[error("invalid connection URL: {0}")]
    InvalidUrl(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection pool or client could not be set up from the settings.
    #[error("cannot set up the store's connections: {0}")]
    Pool(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A pool of zero connections cannot serve anything.
    #[error("the connection pool size must be at least 1")]
    ZeroPoolSize,
    /// A purge that deletes zero keys per batch would never finish.
    #[error("the purge batch size must be at least 1")]
    ZeroPurgeBatch,
    /// A timeout of zero would fail every operation.
    #[error("the {0} timeout must be longer than zero")]
    ZeroTimeout(&'static str),
}

/// Longest table name accepted: leaves room for the `_expires_at` index suffix
/// within PostgreSQL's 63-byte identifier limit.
pub(crate) const MAX_TABLE_NAME: usize = 48;

/// Checks that `name` is a plain identifier (letters, digits, `_`, not starting
/// with a digit), or with `allow_schema` two of them joined by one dot. Table
/// names are spliced into SQL text, so nothing else is allowed.
pub(crate) fn validate_table_name(name: &str, allow_schema: bool) -> Result<(), StoreConfigError> {
    let is_identifier = |part: &str| {
        !part.is_empty()
            && part.len() <= MAX_TABLE_NAME
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !part.as_bytes()[0].is_ascii_digit()
    };
    let valid = match name.split_once('.') {
        Some((schema, table)) => allow_schema && is_identifier(schema) && is_identifier(table),
        None => is_identifier(name),
    };
    if valid {
        Ok(())
    } else {
        Err(StoreConfigError::InvalidTableName(name.to_owned()))
    }
}

/// Refuses a pool of zero connections and any zero duration among `settings`
/// (named for the error message).
fn require_nonzero(
    pool_size: usize,
    settings: &[(&'static str, Duration)],
) -> Result<(), StoreConfigError> {
    if pool_size == 0 {
        return Err(StoreConfigError::ZeroPoolSize);
    }
    match settings.iter().find(|(_, duration)| duration.is_zero()) {
        Some((name, _)) => Err(StoreConfigError::ZeroTimeout(name)),
        None => Ok(()),
    }
}

/// How many keys one purge statement deletes by default: each batch is its own
/// short transaction, so claims are never held up behind a long purge.
const DEFAULT_PURGE_BATCH: usize = 10_000;

/// How long a released key or an abandoned lease is kept by default: 72 h, the
/// span over which Stripe retries a failed delivery, so a late retry still
/// finds its key's token counter; attempts nobody retries do not pile up.
const DEFAULT_UNSETTLED_RETENTION: Duration = Duration::from_secs(72 * 3600);

/// How long opening a connection may take by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings the durable stores share, as their builders hold them. A
/// store offers the ones that apply to it through [`durable_setters!`]; the
/// others keep their defaults, which [`DurableSettings::check`] accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DurableSettings {
    /// How long opening a connection may take (PostgreSQL and Redis, from a URL).
    pub(crate) connect_timeout: Duration,
    /// The most one operation may take.
    pub(crate) operation_timeout: Duration,
    /// How many keys one purge statement deletes (SQL stores).
    pub(crate) purge_batch_size: usize,
    /// How long a released key or an abandoned lease is kept.
    pub(crate) unsettled_retention: Duration,
}

impl DurableSettings {
    /// The defaults, with the store's own default `operation_timeout`.
    pub(crate) const fn new(operation_timeout: Duration) -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            operation_timeout,
            purge_batch_size: DEFAULT_PURGE_BATCH,
            unsettled_retention: DEFAULT_UNSETTLED_RETENTION,
        }
    }

    /// Checks these settings together with the store's own `pool_size` and
    /// `timeouts` (checked first, named for the error message), and returns
    /// what the store's operations read.
    pub(crate) fn check(
        &self,
        pool_size: usize,
        timeouts: &[(&'static str, Duration)],
    ) -> Result<Limits, StoreConfigError> {
        let shared = [
            ("connect", self.connect_timeout),
            ("operation", self.operation_timeout),
            ("unsettled retention", self.unsettled_retention),
        ];
        let all: Vec<_> = timeouts.iter().copied().chain(shared).collect();
        require_nonzero(pool_size, &all)?;
        let purge_batch = match self.purge_batch_size {
            0 => return Err(StoreConfigError::ZeroPurgeBatch),
            n => i64::try_from(n).unwrap_or(i64::MAX),
        };
        Ok(Limits {
            operation_timeout: self.operation_timeout,
            purge_batch,
            unsettled_retention_ms: duration_ms(self.unsettled_retention),
        })
    }
}

/// What a durable store's operations read from its checked settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The most one operation may take (see [`with_timeout`]).
    pub(crate) operation_timeout: Duration,
    /// How many keys one purge statement deletes (at least 1).
    pub(crate) purge_batch: i64,
    /// How long a released key or an abandoned lease is kept, in milliseconds.
    pub(crate) unsettled_retention_ms: i64,
}

/// The setters of the [`DurableSettings`] a store's builder offers, in one
/// place so that their docs are written once, and a `debug_durable` method
/// that adds those settings, and only those, to the builder's `Debug` output.
/// Expands inside the builder's `impl`; the builder keeps the settings in a
/// field named `durable`.
///
/// Each setting is named with what its docs need from the store:
/// `connect_timeout`, `operation_timeout(default SECS s, "what it includes")`
/// (which also defines `DEFAULT_OPERATION_TIMEOUT`), `purge_batch_size` and
/// `unsettled_retention("who deletes the key, by whose clock")`.
macro_rules! durable_setters {
    (@setter connect_timeout) => {
        /// How long opening a connection may take (default 5 s; URL only).
        pub fn connect_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.durable.connect_timeout = timeout;
            self
        }
    };
    (@setter operation_timeout(default $secs:literal s, $includes:literal)) => {
        /// The store's default operation timeout, as its docs state it.
        const DEFAULT_OPERATION_TIMEOUT: ::std::time::Duration =
            ::std::time::Duration::from_secs($secs);

        #[doc = concat!(
            "The most one operation may take, ", $includes, " included, before it \
             fails with [`StoreError::Unavailable`](crate::store::StoreError::Unavailable) \
             (default ", stringify!($secs), " s)."
        )]
        pub fn operation_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.durable.operation_timeout = timeout;
            self
        }
    };
    (@setter purge_batch_size) => {
        /// How many keys one purge statement deletes (default 10,000), each
        /// batch its own short transaction so that claims never wait behind
        /// a long purge;
        /// [`IdempotencyStore::purge_expired`](crate::store::IdempotencyStore::purge_expired)
        /// runs batches until none is left.
        pub fn purge_batch_size(mut self, size: usize) -> Self {
            self.durable.purge_batch_size = size;
            self
        }
    };
    (@setter unsettled_retention($deleted:literal)) => {
        #[doc = concat!(
            "How long a released key, or a lease that ended without being settled, \
             is kept before ", $deleted, " (default 72 h): a released key from its \
             release, an abandoned lease from the end of its lease. Without it every \
             attempt that failed and was never retried would keep its key forever; \
             with it, a delivery retried later than this is treated as new (its \
             fencing tokens start again at 1)."
        )]
        pub fn unsettled_retention(mut self, retention: ::std::time::Duration) -> Self {
            self.durable.unsettled_retention = retention;
            self
        }
    };
    ($($setting:ident $(($($arg:tt)*))?),* $(,)?) => {
        $($crate::store::durable::durable_setters!(@setter $setting $(($($arg)*))?);)*

        /// Adds the shared durable settings this builder offers to `out`.
        fn debug_durable(&self, out: &mut ::std::fmt::DebugStruct<'_, '_>) {
            $(out.field(stringify!($setting), &self.durable.$setting);)*
        }
    };
}
pub(crate) use durable_setters;

/// The unqualified part of a table name (`schema.table` → `table`), for naming
/// its index.
pub(crate) fn unqualified(table: &str) -> &str {
    table.rsplit('.').next().unwrap_or(table)
}

/// Leases and retentions are stored in milliseconds and capped at 100 years so
/// that `now + duration` cannot overflow any backend's time type.
pub(crate) const MAX_DURATION_MS: i64 = 100 * 366 * 24 * 60 * 60 * 1000;

/// `duration` in whole milliseconds, capped at [`MAX_DURATION_MS`].
pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).map_or(MAX_DURATION_MS, |ms| ms.min(MAX_DURATION_MS))
}

/// The instant `ms` Unix milliseconds (negative values clamp to the epoch).
pub(crate) fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Runs `op`, turning an overrun of `limit` into [`StoreError::Unavailable`], so
/// that a store that stops answering fails the delivery with 503 instead of
/// hanging it.
pub(crate) async fn with_timeout<T>(
    limit: Duration,
    what: &'static str,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, op).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::unavailable(Timeout { what, limit })),
    }
}

/// An operation of a durable store took longer than its configured timeout.
#[derive(Debug, thiserror::Error)]
#[error("{what} did not finish within {limit:?}")]
pub(crate) struct Timeout {
    what: &'static str,
    limit: Duration,
}

/// A [`StoreError::Corrupt`] for `key`.
pub(crate) fn corrupt(key: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// A [`StoreError::StaleToken`] for `key`.
pub(crate) fn stale(key: &str, token: FencingToken) -> StoreError {
    StoreError::StaleToken {
        key: key.to_owned(),
        token,
    }
}

/// The result of a settle (complete or release): `changed` tells whether the
/// token still held the key's current claim.
pub(crate) fn settled(key: &str, token: FencingToken, changed: bool) -> Result<(), StoreError> {
    if changed {
        Ok(())
    } else {
        Err(stale(key, token))
    }
}

/// A stored fingerprint from its 16 bytes.
pub(crate) fn fingerprint_from_slice(key: &str, bytes: &[u8]) -> Result<Fingerprint, StoreError> {
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| {
        corrupt(
            key,
            format!("fingerprint has {} bytes, expected 16", bytes.len()),
        )
    })?;
    Ok(Fingerprint::from_bytes(bytes))
}

/// A stored token (a signed 64-bit column) as a fencing token.
pub(crate) fn token_from_i64(key: &str, token: i64) -> Result<u64, StoreError> {
    u64::try_from(token).map_err(|_| corrupt(key, format!("negative token {token}")))
}

/// A fencing token as a signed 64-bit column value. Tokens come from the store
/// itself, so one beyond `i64::MAX` cannot hold any key: it maps to `None`.
pub(crate) fn token_to_i64(token: FencingToken) -> Option<i64> {
    i64::try_from(token.0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["hookgate_keys", "_t", "T1", "a".repeat(48).as_str()] {
            assert!(validate_table_name(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "keys; drop table x",
            "a-b",
            "\"quoted\"",
            "a.b",
            "sch.",
            &"a".repeat(49),
        ] {
            assert!(
                matches!(
                    validate_table_name(bad, false),
                    Err(StoreConfigError::InvalidTableName(_))
                ),
                "{bad}"
            );
        }
        assert!(validate_table_name("app.hookgate_keys", true).is_ok());
        assert!(validate_table_name("a.b.c", true).is_err());
        assert!(validate_table_name(".b", true).is_err());
        assert_eq!(unqualified("app.keys"), "keys");
        assert_eq!(unqualified("keys"), "keys");
    }

    #[test]
    fn shared_settings_are_checked_with_the_stores_own() {
        let defaults = DurableSettings::new(Duration::from_secs(10));
        let limits = defaults.check(1, &[]).ok();
        assert_eq!(limits.map(|l| l.purge_batch), Some(10_000));
        assert_eq!(
            limits.map(|l| l.unsettled_retention_ms),
            Some(72 * 3600 * 1000)
        );
        assert!(matches!(
            defaults.check(0, &[]),
            Err(StoreConfigError::ZeroPoolSize)
        ));
        // The store's own timeouts are checked first.
        let zero_operation = DurableSettings::new(Duration::ZERO);
        assert!(matches!(
            zero_operation.check(1, &[("busy", Duration::ZERO)]),
            Err(StoreConfigError::ZeroTimeout("busy"))
        ));
        assert!(matches!(
            zero_operation.check(1, &[("busy", Duration::from_secs(1))]),
            Err(StoreConfigError::ZeroTimeout("operation"))
        ));
        let huge_batch = DurableSettings {
            purge_batch_size: usize::MAX,
            ..defaults
        };
        assert_eq!(
            huge_batch.check(1, &[]).ok().map(|l| l.purge_batch),
            Some(i64::MAX)
        );
        let zero_batch = DurableSettings {
            purge_batch_size: 0,
            ..defaults
        };
        assert!(matches!(
            zero_batch.check(1, &[]),
            Err(StoreConfigError::ZeroPurgeBatch)
        ));
    }

    #[test]
    fn durations_are_capped_milliseconds() {
        assert_eq!(duration_ms(Duration::from_micros(2_500)), 2);
        assert_eq!(duration_ms(Duration::MAX), MAX_DURATION_MS);
        // The cap lies beyond any retention a provider needs: 99 years pass whole.
        let years_99 = Duration::from_secs(99 * 366 * 86_400);
        assert_eq!(duration_ms(years_99), 99 * 366 * 86_400 * 1000);
        assert_eq!(MAX_DURATION_MS, 100 * 366 * 86_400 * 1000);
        assert_eq!(
            from_unix_ms(1_234).duration_since(UNIX_EPOCH).ok(),
            Some(Duration::from_millis(1_234))
        );
        assert_eq!(from_unix_ms(-5), UNIX_EPOCH);
    }

    #[test]
    fn stored_values_are_checked() {
        assert!(matches!(
            fingerprint_from_slice("k", &[0; 15]),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            fingerprint_from_slice("k", &Fingerprint(9).to_bytes()).ok(),
            Some(Fingerprint(9))
        );
        assert!(matches!(
            token_from_i64("k", -1),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(token_to_i64(FencingToken(u64::MAX)), None);
    }
}
