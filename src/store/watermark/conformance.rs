//! A conformance suite for [`WatermarkStore`] implementations: ours and
//! yours.
//!
//! [`run`] checks, on fresh objects of a real store: an unknown object has
//! no watermark; `advance` never lowers a watermark and returns the one it
//! kept; equal times are kept; retention ends a watermark (then any time
//! replaces it) and a longer retention already set is not shortened; the
//! extreme watermarks round-trip; objects are independent; and 32 tasks
//! racing `advance` on one object leave the newest of their times. A run
//! takes about 2 seconds (retention is real time: a database keeps its own
//! clock), and is safe to repeat against a shared server.
//!
//! ```
//! use std::sync::Arc;
//! use hookgate::store::{watermark, MemoryStore};
//!
//! #[tokio::main(flavor = "multi_thread", worker_threads = 4)]
//! async fn main() {
//!     let store = Arc::new(MemoryStore::new());
//!     if let Err(failure) = watermark::conformance::run(&store).await {
//!         panic!("{failure}");
//!     }
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Barrier;

use super::{Watermark, WatermarkStore};
use crate::store::StoreError;

/// How long the short retention of the retention checks lasts.
const SHORT: Duration = Duration::from_millis(400);
/// How long a watermark that must outlive the checks is kept.
const LONG: Duration = Duration::from_secs(600);
/// How many tasks race `advance` on one object.
const RACERS: usize = 32;

/// A rule of [`WatermarkStore`] the store broke.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatermarkFailure {
    /// A call failed where the trait expects an answer.
    #[error("watermark check `{check}`: the store failed: {error}")]
    Store {
        /// The check.
        check: &'static str,
        /// The store's error.
        error: StoreError,
    },
    /// A call answered something the trait rules out.
    #[error("watermark check `{check}`: expected {expected}, the store answered {got}")]
    Unexpected {
        /// The check.
        check: &'static str,
        /// What the trait requires.
        expected: String,
        /// What the store answered.
        got: String,
    },
    /// A racing task panicked or was cancelled.
    #[error("watermark check `{check}`: a racing task failed: {error}")]
    Task {
        /// The check.
        check: &'static str,
        /// The task's error.
        error: tokio::task::JoinError,
    },
}

/// Distinguishes the objects of runs started in the same nanosecond.
static RUNS: AtomicU64 = AtomicU64::new(0);

fn mark(ms: i64) -> Watermark {
    Watermark::from_unix_millis(ms)
}

/// Runs every check against `store` (cloned into the racing tasks: pass an
/// `Arc` of your store).
///
/// # Panics
///
/// When not called from within a tokio runtime.
pub async fn run<S>(store: &S) -> Result<(), WatermarkFailure>
where
    S: WatermarkStore + Clone + 'static,
{
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let object = |name: &str| format!("conformance:{nanos}-{run}:{name}");
    let check = Checker { store };

    let unknown = object("unknown");
    check.read("unknown_object", &unknown, None).await?;

    let o = object("monotonic");
    check
        .advance("first_advance", &o, mark(1_000), LONG, mark(1_000))
        .await?;
    check.read("first_advance", &o, Some(mark(1_000))).await?;
    check
        .advance("older_is_kept_out", &o, mark(999), LONG, mark(1_000))
        .await?;
    check
        .read("older_is_kept_out", &o, Some(mark(1_000)))
        .await?;
    check
        .advance("equal_is_kept", &o, mark(1_000), LONG, mark(1_000))
        .await?;
    check
        .advance("newer_raises", &o, mark(2_000), LONG, mark(2_000))
        .await?;
    check.read("newer_raises", &o, Some(mark(2_000))).await?;
    check
        .read("objects_are_independent", &unknown, None)
        .await?;

    for (name, at) in [("min", Watermark::MIN), ("max", Watermark::MAX)] {
        let o = object(name);
        check
            .advance("extremes_round_trip", &o, at, LONG, at)
            .await?;
        check.read("extremes_round_trip", &o, Some(at)).await?;
    }

    let short = object("short");
    check
        .advance("retention", &short, mark(5_000), SHORT, mark(5_000))
        .await?;
    let kept = object("kept");
    check
        .advance("longer_retention_stays", &kept, mark(7), LONG, mark(7))
        .await?;
    check
        .advance("longer_retention_stays", &kept, mark(8), SHORT, mark(8))
        .await?;
    tokio::time::sleep(SHORT * 2).await;
    check.read("retention", &short, None).await?;
    check
        .advance("expired_is_replaced", &short, mark(10), LONG, mark(10))
        .await?;
    check
        .read("expired_is_replaced", &short, Some(mark(10)))
        .await?;
    check
        .read("longer_retention_stays", &kept, Some(mark(8)))
        .await?;

    check.race(&object("race")).await
}

struct Checker<'a, S> {
    store: &'a S,
}

impl<S: WatermarkStore + Clone + 'static> Checker<'_, S> {
    async fn read(
        &self,
        check: &'static str,
        object: &str,
        expected: Option<Watermark>,
    ) -> Result<(), WatermarkFailure> {
        let got = self
            .store
            .watermark(object)
            .await
            .map_err(|error| WatermarkFailure::Store { check, error })?;
        if got == expected {
            return Ok(());
        }
        Err(WatermarkFailure::Unexpected {
            check,
            expected: format!("watermark {expected:?}"),
            got: format!("{got:?}"),
        })
    }

    async fn advance(
        &self,
        check: &'static str,
        object: &str,
        at: Watermark,
        retention: Duration,
        expected: Watermark,
    ) -> Result<(), WatermarkFailure> {
        let got = self
            .store
            .advance(object, at, retention)
            .await
            .map_err(|error| WatermarkFailure::Store { check, error })?;
        if got == expected {
            return Ok(());
        }
        Err(WatermarkFailure::Unexpected {
            check,
            expected: format!("advance to {at:?} to answer {expected:?}"),
            got: format!("{got:?}"),
        })
    }

    /// 32 tasks advance one object at once, each to its own time in a
    /// shuffled order: each answer is at least its own time, and the
    /// watermark ends at the newest.
    async fn race(&self, object: &str) -> Result<(), WatermarkFailure> {
        const CHECK: &str = "advance_race";
        let barrier = Arc::new(Barrier::new(RACERS));
        let times: Vec<i64> = (0..RACERS as i64).map(|i| (i * 7919) % 101 + 1).collect();
        let newest = times.iter().copied().max().map_or(mark(0), mark);
        let handles: Vec<_> = times
            .iter()
            .map(|&ms| {
                let (store, barrier, object) =
                    (self.store.clone(), Arc::clone(&barrier), object.to_owned());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.advance(&object, mark(ms), LONG).await
                })
            })
            .collect();
        for (handle, ms) in handles.into_iter().zip(&times) {
            let answer = handle
                .await
                .map_err(|error| WatermarkFailure::Task {
                    check: CHECK,
                    error,
                })?
                .map_err(|error| WatermarkFailure::Store {
                    check: CHECK,
                    error,
                })?;
            if answer < mark(*ms) {
                return Err(WatermarkFailure::Unexpected {
                    check: CHECK,
                    expected: format!("an answer not older than {:?}", mark(*ms)),
                    got: format!("{answer:?}"),
                });
            }
        }
        self.read(CHECK, object, Some(newest)).await
    }
}
