//! Injectable time sources.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time (UTC), injected so tolerance windows, leases and
/// retention can be tested without waiting.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that reads whatever it was set to; clones share the same time, so a
/// test can hand one to a pipeline and move time forward from outside.
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

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.unix_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

fn to_nanos(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        let nanos = self.unix_nanos.load(Ordering::SeqCst);
        // Any i64 nanosecond count lies within OffsetDateTime's range (years 1677..2262).
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Debug for FixedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FixedClock").field(&self.now()).finish()
    }
}
