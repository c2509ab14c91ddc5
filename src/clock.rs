//! Injectable time sources.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// A source of the current time (UTC), injected so tolerance windows, leases and
/// retention can be tested without waiting.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> OffsetDateTime;

    /// The current time in whole milliseconds since the Unix epoch (rounded
    /// down, negative before 1970), the same instant [`now`](Clock::now)
    /// reads. The stores count leases and retention in these; the default
    /// converts [`now`](Clock::now), and [`SystemClock`] and [`FixedClock`]
    /// read it without the calendar arithmetic an `OffsetDateTime` costs
    /// (twice per delivery in a store, once to build it and once to take it
    /// apart).
    fn now_unix_millis(&self) -> i64 {
        unix_millis(self.now())
    }
}

/// `at` in whole milliseconds since the epoch, rounded down.
fn unix_millis(at: OffsetDateTime) -> i64 {
    // `unix_timestamp` rounds down and `millisecond` counts up from there,
    // before 1970 too. An OffsetDateTime's seconds (years ±9999) times 1000
    // fit an i64 many times over.
    at.unix_timestamp()
        .saturating_mul(1000)
        .saturating_add(i64::from(at.millisecond()))
}

/// Forwards [`Clock`] through each pointer named.
macro_rules! forward_clock {
    ($($pointer:ty),*) => {$(
        impl<C: Clock + ?Sized> Clock for $pointer {
            fn now(&self) -> OffsetDateTime {
                (**self).now()
            }
            fn now_unix_millis(&self) -> i64 {
                (**self).now_unix_millis()
            }
        }
    )*};
}

forward_clock!(Arc<C>, Box<C>, &C);

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn now_unix_millis(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            // In u64 seconds and milliseconds: no 128-bit arithmetic.
            Ok(since) => i64::try_from(
                since
                    .as_secs()
                    .saturating_mul(1000)
                    .saturating_add(u64::from(since.subsec_millis())),
            )
            .unwrap_or(i64::MAX),
            // Before 1970: rounded down, away from the epoch.
            Err(before) => {
                let before = before.duration();
                let millis = i64::try_from(before.as_millis()).unwrap_or(i64::MAX);
                let partial = i64::from(before.subsec_nanos() % 1_000_000 != 0);
                millis.saturating_add(partial).saturating_neg()
            }
        }
    }
}

/// A clock that reads whatever it was set to; clones share the same time, so a
/// test can hand one to a pipeline and move time forward from outside.
///
/// It holds nanoseconds since the Unix epoch in an `i64`, so it reads times
/// from 1677-09-21 to 2262-04-11: setting or advancing it beyond that range
/// stops at the nearest end (it never wraps around).
///
/// ```
/// use hookgate::{Clock, FixedClock};
/// use std::time::Duration;
/// let clock = FixedClock::at_unix(1_700_000_000);
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(301));
/// assert_eq!(shared.now().unix_timestamp(), 1_700_000_301);
/// ```
#[derive(Clone)]
pub struct FixedClock {
    unix_nanos: Arc<AtomicI64>,
}

impl FixedClock {
    /// A clock reading `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        Self {
            unix_nanos: Arc::new(AtomicI64::new(to_nanos(at))),
        }
    }

    /// A clock reading the given Unix time in seconds.
    pub fn at_unix(seconds: i64) -> Self {
        Self {
            unix_nanos: Arc::new(AtomicI64::new(seconds.saturating_mul(1_000_000_000))),
        }
    }

    /// Sets the time every clone reads.
    pub fn set(&self, at: OffsetDateTime) {
        self.unix_nanos.store(to_nanos(at), Ordering::SeqCst);
    }

    /// Moves the time forward by `by`, stopping at the latest time the clock
    /// holds (2262-04-11).
    pub fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        // fetch_update retries on contention; the closure always returns Some.
        let _ = self
            .unix_nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(nanos))
            });
    }
}

/// `at` in nanoseconds since the epoch, clamped to what an `i64` holds.
fn to_nanos(at: OffsetDateTime) -> i64 {
    let nanos = at.unix_timestamp_nanos();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        let nanos = self.unix_nanos.load(Ordering::SeqCst);
        // Any i64 nanosecond count lies within OffsetDateTime's range (years 1677..2262).
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn now_unix_millis(&self) -> i64 {
        self.unix_nanos.load(Ordering::SeqCst).div_euclid(1_000_000)
    }
}

impl fmt::Debug for FixedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FixedClock").field(&self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A clock that only has `now`: the provided `now_unix_millis`.
    #[derive(Debug)]
    struct Only(OffsetDateTime);

    impl Clock for Only {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
    }

    proptest! {
        /// Every clock's milliseconds are its `now`, rounded down, across
        /// the whole range a `FixedClock` holds.
        #[test]
        fn milliseconds_are_now_rounded_down(nanos in any::<i64>()) {
            let clock = FixedClock::at_unix(0);
            clock.unix_nanos.store(nanos, Ordering::SeqCst);
            let expected = i128::from(nanos).div_euclid(1_000_000);
            prop_assert_eq!(i128::from(clock.now_unix_millis()), expected);
            prop_assert_eq!(i128::from(unix_millis(clock.now())), expected);
            let only = Only(clock.now());
            prop_assert_eq!(i128::from(only.now_unix_millis()), expected);
            prop_assert_eq!(i128::from(Arc::new(clock.clone()).now_unix_millis()), expected);
            let boxed: Box<dyn Clock> = Box::new(only);
            prop_assert_eq!(i128::from(boxed.now_unix_millis()), expected);
        }
    }

    #[test]
    fn the_system_clock_reads_the_same_milliseconds_as_its_now() {
        for _ in 0..1000 {
            let before = unix_millis(SystemClock.now());
            let millis = SystemClock.now_unix_millis();
            let after = unix_millis(SystemClock.now());
            assert!(
                before <= millis && millis <= after,
                "{before} {millis} {after}"
            );
        }
        // The extremes of an OffsetDateTime.
        let min = Only(time::PrimitiveDateTime::MIN.assume_utc());
        let max = Only(time::PrimitiveDateTime::MAX.assume_utc());
        assert_eq!(min.now_unix_millis(), min.0.unix_timestamp() * 1000);
        assert_eq!(max.now_unix_millis(), max.0.unix_timestamp() * 1000 + 999);
    }

    #[test]
    fn a_fixed_clock_debugs_as_the_time_it_reads() {
        let clock = FixedClock::at_unix(1_700_000_000);
        assert_eq!(
            format!("{clock:?}"),
            "FixedClock(2023-11-14 22:13:20.0 +00:00:00)"
        );
    }

    #[test]
    fn advancing_past_the_last_representable_time_stops_there() {
        let clock = FixedClock::at_unix(1_700_000_000);
        clock.advance(Duration::from_secs(300 * 365 * 24 * 3600));
        let last = clock.now();
        assert_eq!(last.year(), 2262, "{last}");
        clock.advance(Duration::from_nanos(1));
        clock.advance(Duration::MAX);
        assert_eq!(
            clock.now(),
            last,
            "it stays at the end, never wraps to 1677"
        );
        assert_eq!(last.unix_timestamp_nanos(), i128::from(i64::MAX));
    }

    #[test]
    fn setting_a_time_outside_the_range_clamps_to_the_nearest_end() {
        let clock = FixedClock::at_unix(0);
        // 1600-01-01 and 9999-01-01.
        clock.set(OffsetDateTime::from_unix_timestamp(-11_676_096_000).unwrap());
        assert_eq!(clock.now().year(), 1677);
        clock.set(OffsetDateTime::from_unix_timestamp(253_370_764_800).unwrap());
        assert_eq!(clock.now().year(), 2262);
        let min = FixedClock::at_unix(i64::MIN);
        assert_eq!(min.now().year(), 1677);
    }
}
