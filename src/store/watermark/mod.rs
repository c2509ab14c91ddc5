//! Watermarks for the [ordering guard](crate::ordering): per object, the
//! newest event time whose critical work succeeded.
//!
//! A watermark store answers two questions, both about one object key (such
//! as `stripe:sub_123`): how new is the newest event already processed for
//! it ([`WatermarkStore::watermark`]), and raising that to a newer event's
//! time, never lowering it ([`WatermarkStore::advance`], an atomic maximum:
//! of concurrent advances the newest wins, whatever their order). Every
//! built-in [`IdempotencyStore`](super::IdempotencyStore) is one too, in
//! the same database: [`MemoryStore`](super::MemoryStore) in the process,
//! the SQLite and PostgreSQL stores in a table of their own beside the keys'
//! (`{table}_watermarks`), the Redis store as one key per object
//! (`{watermark prefix}{object}`). Each watermark is kept for a retention
//! (the provider's retention of completed keys, which covers its retries),
//! refreshed by every advance; past it, the object is unknown again.

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod conformance;
mod memory;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;

pub(crate) use memory::MemoryWatermarks;

/// An event time as a watermark holds it: whole milliseconds since the Unix
/// epoch, within the years -9999 to 9999 (so that every backend, Redis's
/// Lua numbers included, holds it exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(i64);

impl Watermark {
    /// The earliest watermark: 1 January of the year -9999, 00:00 UTC.
    pub const MIN: Watermark = Watermark(-377_705_116_800_000);
    /// The latest watermark: 31 December 9999, 23:59:59.999 UTC.
    pub const MAX: Watermark = Watermark(253_402_300_799_999);

    /// The watermark of `millis` milliseconds since the Unix epoch, clamped
    /// to [`Watermark::MIN`]..=[`Watermark::MAX`].
    pub fn from_unix_millis(millis: i64) -> Self {
        Watermark(millis.clamp(Self::MIN.0, Self::MAX.0))
    }

    /// The watermark of a point in time, truncated to the millisecond
    /// (towards the past) and clamped to the range.
    pub fn from_time(at: OffsetDateTime) -> Self {
        let millis = at.unix_timestamp_nanos().div_euclid(1_000_000);
        Self::from_unix_millis(i64::try_from(millis).unwrap_or(if millis < 0 {
            i64::MIN
        } else {
            i64::MAX
        }))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// The watermark as a point in time (always representable).
    pub fn to_time(self) -> OffsetDateTime {
        let nanos = i128::from(self.0) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.to_time();
        match at.format(&time::format_description::well_known::Rfc3339) {
            Ok(text) => f.pad(&text),
            Err(_) => write!(f, "{} ms since the Unix epoch", self.0),
        }
    }
}

/// Storage for the watermarks of the [ordering guard](crate::ordering),
/// shared by every instance of a service. See the [module](self).
///
/// `advance` must be atomic: the watermark after any set of concurrent
/// advances is the newest of them (and of the watermark before). Run
/// `conformance::run` (feature `tokio`) against your own implementation.
#[async_trait]
pub trait WatermarkStore: Send + Sync + fmt::Debug {
    /// The newest event time processed for `object`, or `None` when none is
    /// known (never advanced, or its retention passed).
    async fn watermark(&self, object: &str) -> Result<Option<Watermark>, StoreError>;

    /// Raises the watermark of `object` to `at` unless it is newer already,
    /// and keeps it for `retention` from now (a longer retention already set
    /// stays); returns the watermark after the call, never older than `at`.
    /// A watermark past its retention counts as absent.
    async fn advance(
        &self,
        object: &str,
        at: Watermark,
        retention: Duration,
    ) -> Result<Watermark, StoreError>;
}

/// Forwards [`WatermarkStore`] through each smart pointer named.
macro_rules! forward_watermarks {
    ($($pointer:ident),*) => {$(
        #[async_trait]
        impl<S: WatermarkStore + ?Sized> WatermarkStore for $pointer<S> {
            async fn watermark(&self, object: &str) -> Result<Option<Watermark>, StoreError> {
                (**self).watermark(object).await
            }
            async fn advance(
                &self,
                object: &str,
                at: Watermark,
                retention: Duration,
            ) -> Result<Watermark, StoreError> {
                (**self).advance(object, at, retention).await
            }
        }
    )*};
}

forward_watermarks!(Arc, Box);

// Dyn-compatible, as the pipeline holds `&dyn WatermarkStore`.
const _: Option<&dyn WatermarkStore> = None;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_to_the_millisecond_towards_the_past() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_999_999).unwrap();
        let mark = Watermark::from_time(at);
        assert_eq!(mark.unix_millis(), 1_700_000_000_123);
        let before = OffsetDateTime::from_unix_timestamp_nanos(-1).unwrap();
        assert_eq!(Watermark::from_time(before).unix_millis(), -1);
        assert_eq!(
            mark.to_time(),
            OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_000_000).unwrap()
        );
    }

    #[test]
    fn extreme_values_are_clamped_and_round_trip() {
        assert_eq!(Watermark::from_unix_millis(i64::MAX), Watermark::MAX);
        assert_eq!(Watermark::from_unix_millis(i64::MIN), Watermark::MIN);
        for mark in [
            Watermark::MIN,
            Watermark::MAX,
            Watermark::from_unix_millis(0),
        ] {
            assert_eq!(Watermark::from_time(mark.to_time()), mark);
        }
        assert_eq!(Watermark::MAX.to_string(), "9999-12-31T23:59:59.999Z");
        // Exactly representable as a double (Redis's Lua numbers).
        assert!(Watermark::MIN.unix_millis().unsigned_abs() < 1 << 53);
        assert!(Watermark::MAX.unix_millis().unsigned_abs() < 1 << 53);
    }
}
