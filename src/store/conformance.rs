//! A conformance suite for [`IdempotencyStore`] implementations: ours and yours.
//!
//! [`run`] drives a store through the whole protocol — claims, leases, fencing
//! tokens, release, changed bodies, retention, purge — and races real tokio tasks
//! against it: 32 concurrent claims of one key must give exactly one
//! [`Claim::Acquired`], and of a `complete` racing a `release` exactly one may win.
//! The first broken rule ends the run with a [`ConformanceFailure`] that names the
//! [`Check`] and what the store answered.
//!
//! The suite is safe to run again and again against a shared, real server: every
//! run uses fresh keys (prefixed with the time in nanoseconds and a counter) and
//! real, short durations (leases and retention of a few hundred milliseconds,
//! since a database keeps its own time). A run takes about 3 seconds.
//!
//! Call it from a test on tokio's multi-thread runtime (the races need threads):
//!
//! ```
//! use std::sync::Arc;
//! use hookgate::store::{conformance, MemoryStore};
//!
//! #[tokio::main(flavor = "multi_thread", worker_threads = 4)]
//! async fn main() {
//!     let store = Arc::new(MemoryStore::new());
//!     let report = match conformance::run(&store).await {
//!         Ok(report) => report,
//!         Err(failure) => panic!("{failure}"),
//!     };
//!     assert!(report.multi_thread());
//!     assert_eq!(report.checks().len(), conformance::Check::ALL.len());
//!     println!("{report}");
//! }
//! ```
//!
//! A store whose time is coarser than a few hundred milliseconds can widen the
//! durations with [`Suite`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Barrier;

use crate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};

/// Runs every check of the suite with the default [`Suite`] settings.
///
/// `store` is cloned into the spawned racing tasks: pass an `Arc` of your store
/// (`Arc<S>` implements [`IdempotencyStore`] for every store `S`).
///
/// # Panics
///
/// When not called from within a tokio runtime (it spawns tasks and sleeps).
pub async fn run<S>(store: &S) -> Result<Report, ConformanceFailure>
where
    S: IdempotencyStore + Clone + 'static,
{
    Suite::default().run(store).await
}

/// One rule of the protocol the suite checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// The first claim of a new key acquires it.
    FirstClaimAcquires,
    /// A claim while another holds an unexpired lease is `InFlight`, with an
    /// `until` about one lease from now.
    ClaimWhileLeased,
    /// After `complete`, a claim answers `Completed`, and the token can settle
    /// nothing any more.
    CompleteThenClaim,
    /// After `release`, the released token can settle nothing any more, and a
    /// claim acquires the key again with a larger token.
    ReleaseThenReclaim,
    /// A claim with another body takes a released key
    /// (`AcquiredBodyChanged`, with a larger token) and the key then holds the
    /// new body's fingerprint: after another release the first body is the
    /// changed one, and completed with it, it is a plain duplicate.
    OtherBodyAfterRelease,
    /// A claim with another body while a lease runs answers `InFlight` and
    /// changes nothing: the holder still completes the key with its body.
    OtherBodyWhileLeased,
    /// A claim with another body of a retained completed key answers
    /// `CompletedBodyChanged` and changes nothing: the first body is still a
    /// plain duplicate.
    OtherBodyAfterComplete,
    /// After its lease expires, a key is acquired again with a larger token.
    ExpiredLeaseReclaimable,
    /// A claim with another body takes a key whose lease expired
    /// (`AcquiredBodyChanged`, with a larger token), and the key then holds the
    /// new body's fingerprint.
    OtherBodyAfterExpiredLease,
    /// Once a newer attempt reclaimed an expired key, the older token is refused
    /// by `complete` and by `release`.
    StaleTokenRejected,
    /// After its retention passes, a completed key is new again.
    Retention,
    /// `purge_expired` removes completed keys past retention (or the store
    /// expires them on its own) and keeps live ones.
    PurgeExpired,
    /// Of many concurrent claims of one key (new, released, or with an expired
    /// lease), exactly one acquires.
    ClaimRace,
    /// Of `complete`, `complete` and `release` racing with one token, exactly one
    /// succeeds, and the key ends in the state of the winner.
    SettleRace,
}

impl Check {
    /// Every check, in the order they run.
    pub const ALL: [Check; 14] = [
        Check::FirstClaimAcquires,
        Check::ClaimWhileLeased,
        Check::CompleteThenClaim,
        Check::ReleaseThenReclaim,
        Check::OtherBodyAfterRelease,
        Check::OtherBodyWhileLeased,
        Check::OtherBodyAfterComplete,
        Check::ExpiredLeaseReclaimable,
        Check::OtherBodyAfterExpiredLease,
        Check::StaleTokenRejected,
        Check::Retention,
        Check::PurgeExpired,
        Check::ClaimRace,
        Check::SettleRace,
    ];

    /// The check's name in snake case, as printed in reports and failures.
    pub fn name(self) -> &'static str {
        match self {
            Check::FirstClaimAcquires => "first_claim_acquires",
            Check::ClaimWhileLeased => "claim_while_leased",
            Check::CompleteThenClaim => "complete_then_claim",
            Check::ReleaseThenReclaim => "release_then_reclaim",
            Check::OtherBodyAfterRelease => "other_body_after_release",
            Check::OtherBodyWhileLeased => "other_body_while_leased",
            Check::OtherBodyAfterComplete => "other_body_after_complete",
            Check::ExpiredLeaseReclaimable => "expired_lease_reclaimable",
            Check::OtherBodyAfterExpiredLease => "other_body_after_expired_lease",
            Check::StaleTokenRejected => "stale_token_rejected",
            Check::Retention => "retention",
            Check::PurgeExpired => "purge_expired",
            Check::ClaimRace => "claim_race",
            Check::SettleRace => "settle_race",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A check the store failed, and how.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {problem}")]
pub struct ConformanceFailure {
    check: Check,
    problem: Problem,
}

impl ConformanceFailure {
    /// The check that failed.
    pub fn check(&self) -> Check {
        self.check
    }

    /// What the store did wrong.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

/// What a store did wrong during a check; `step` says which call of the check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A store call failed where the protocol expects an answer.
    #[error("{step}: the store failed: {error}")]
    Store {
        /// The call.
        step: &'static str,
        /// The store's error.
        error: StoreError,
    },
    /// A claim gave the wrong answer.
    #[error("{step}: expected {expected}, the store answered {got:?}")]
    UnexpectedClaim {
        /// The call.
        step: &'static str,
        /// The answer the protocol requires.
        expected: &'static str,
        /// The store's answer.
        got: Claim,
    },
    /// `complete` or `release` accepted a token that no longer holds the key.
    #[error("{step}: expected StaleToken, but the store accepted token {token:?}")]
    StaleTokenAccepted {
        /// The call.
        step: &'static str,
        /// The token that should have been refused.
        token: FencingToken,
    },
    /// A new claim's token is not larger than an earlier claim's.
    #[error("{step}: token {later:?} is not larger than the earlier token {earlier:?}")]
    TokenNotIncreasing {
        /// The call.
        step: &'static str,
        /// The earlier claim's token.
        earlier: FencingToken,
        /// The new claim's token.
        later: FencingToken,
    },
    /// `InFlight { until }` is not about one lease after the claim.
    #[error(
        "{step}: InFlight until {until:?} is outside {earliest:?}..={latest:?} \
         (the lease from the claim's time, give or take the allowed clock skew)"
    )]
    ImplausibleUntil {
        /// The call.
        step: &'static str,
        /// The store's answer.
        until: SystemTime,
        /// The earliest plausible end of the lease.
        earliest: SystemTime,
        /// The latest plausible end of the lease.
        latest: SystemTime,
    },
    /// Concurrent claims of one key did not give exactly one `Acquired`.
    #[error(
        "round {round}, {kind}: {acquired} of {tasks} concurrent claims acquired the key \
         (expected exactly 1)"
    )]
    RaceWinners {
        /// The round of the race (0-based).
        round: usize,
        /// What the key was before the race: new, released, or with an expired lease.
        kind: &'static str,
        /// How many claims acquired the key.
        acquired: usize,
        /// How many claims raced.
        tasks: usize,
    },
    /// Racing `complete`/`release` calls with one token did not give exactly one success.
    #[error("round {round}: {succeeded} of {attempts} racing complete/release calls succeeded (expected exactly 1)")]
    SettleWinners {
        /// The round of the race (0-based).
        round: usize,
        /// How many calls succeeded.
        succeeded: usize,
        /// How many calls raced.
        attempts: usize,
    },
    /// A racing task panicked or was cancelled.
    #[error("{step}: a racing task failed: {error}")]
    Task {
        /// The call.
        step: &'static str,
        /// The task's failure.
        error: tokio::task::JoinError,
    },
}

/// What a successful run checked.
#[derive(Debug, Clone)]
pub struct Report {
    checks: Vec<(Check, Duration)>,
    multi_thread: bool,
    purged: u64,
}

impl Report {
    /// Every check that passed, with how long it took, in the order they ran.
    pub fn checks(&self) -> &[(Check, Duration)] {
        &self.checks
    }

    /// Whether the races ran on tokio's multi-thread runtime. On the current-thread
    /// runtime the racing tasks interleave only at `.await`s, which proves less.
    pub fn multi_thread(&self) -> bool {
        self.multi_thread
    }

    /// What `purge_expired` returned in [`Check::PurgeExpired`]: 0 is allowed (a store
    /// that expires keys on its own, or another run purged first) as long as the
    /// expired key was gone.
    pub fn purged(&self) -> u64 {
        self.purged
    }

    /// The total time of the checks.
    pub fn elapsed(&self) -> Duration {
        self.checks.iter().map(|(_, took)| *took).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runtime = if self.multi_thread {
            "multi-thread"
        } else {
            "current-thread"
        };
        writeln!(
            f,
            "{} checks passed in {:.2?} ({runtime} runtime, purge_expired returned {})",
            self.checks.len(),
            self.elapsed(),
            self.purged
        )?;
        for (check, took) in &self.checks {
            writeln!(f, "  ok  {check:<32} {took:.2?}")?;
        }
        Ok(())
    }
}

/// The suite's settings, for stores that need other durations or a lighter race.
///
/// ```
/// use std::time::Duration;
/// use hookgate::store::conformance::Suite;
/// let suite = Suite::new()
///     .short_lease(Duration::from_secs(2))
///     .short_retention(Duration::from_secs(2))
///     .key_prefix("ci-conformance");
/// # let _ = suite;
/// ```
#[derive(Debug, Clone)]
pub struct Suite {
    short_lease: Duration,
    short_retention: Duration,
    margin: Duration,
    clock_skew: Duration,
    race_tasks: usize,
    race_rounds: usize,
    key_prefix: String,
}

impl Default for Suite {
    fn default() -> Self {
        Self {
            short_lease: Duration::from_millis(250),
            short_retention: Duration::from_millis(250),
            margin: Duration::from_millis(250),
            clock_skew: Duration::from_secs(2),
            race_tasks: 32,
            race_rounds: 8,
            key_prefix: "hookgate-conformance".to_owned(),
        }
    }
}

/// Leases and retention for steps that must not expire while the check runs.
const LONG: Duration = Duration::from_secs(60);

/// Distinguishes the keys of runs started in the same nanosecond.
static RUNS: AtomicU64 = AtomicU64::new(0);

impl Suite {
    /// The default settings: 250 ms short leases and retention, waits of the
    /// duration plus 250 ms, 2 s allowed clock skew, 8 rounds of 32 racing claims,
    /// keys prefixed `hookgate-conformance`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lease of checks that wait for a lease to expire (default 250 ms).
    pub fn short_lease(mut self, lease: Duration) -> Self {
        self.short_lease = lease;
        self
    }

    /// The retention of checks that wait for retention to pass (default 250 ms).
    pub fn short_retention(mut self, retention: Duration) -> Self {
        self.short_retention = retention;
        self
    }

    /// How long past a lease's or retention's end the suite waits before it
    /// expects the key to be free (default 250 ms).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// How far the store's clock may differ from this process's clock when the
    /// suite checks `InFlight { until }` (default 2 s).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// How many tasks claim one key at once in [`Check::ClaimRace`] (default 32,
    /// at least 2).
    pub fn race_tasks(mut self, tasks: usize) -> Self {
        self.race_tasks = tasks.max(2);
        self
    }

    /// How many keys each race runs on (default 8, at least 1). The rounds of
    /// [`Check::ClaimRace`] cycle through a new key, a released key and a key
    /// whose lease expired.
    pub fn race_rounds(mut self, rounds: usize) -> Self {
        self.race_rounds = rounds.max(1);
        self
    }

    /// The prefix of every key the suite claims (default `hookgate-conformance`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Runs every check against `store`; see [`run`].
    ///
    /// # Panics
    ///
    /// When not called from within a tokio runtime (it spawns tasks and sleeps).
    pub async fn run<S>(&self, store: &S) -> Result<Report, ConformanceFailure>
    where
        S: IdempotencyStore + Clone + 'static,
    {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let ctx = Ctx {
            suite: self,
            store,
            run: format!(
                "{}:{nanos}-{}",
                self.key_prefix,
                RUNS.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let mut report = Report {
            checks: Vec::with_capacity(Check::ALL.len()),
            multi_thread: Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread,
            purged: 0,
        };
        for check in Check::ALL {
            let started = Instant::now();
            let outcome = match check {
                Check::FirstClaimAcquires => ctx.first_claim_acquires().await,
                Check::ClaimWhileLeased => ctx.claim_while_leased().await,
                Check::CompleteThenClaim => ctx.complete_then_claim().await,
                Check::ReleaseThenReclaim => ctx.release_then_reclaim().await,
                Check::OtherBodyAfterRelease => ctx.other_body_after_release().await,
                Check::OtherBodyWhileLeased => ctx.other_body_while_leased().await,
                Check::OtherBodyAfterComplete => ctx.other_body_after_complete().await,
                Check::ExpiredLeaseReclaimable => ctx.expired_lease_reclaimable().await,
                Check::OtherBodyAfterExpiredLease => ctx.other_body_after_expired_lease().await,
                Check::StaleTokenRejected => ctx.stale_token_rejected().await,
                Check::Retention => ctx.retention().await,
                Check::PurgeExpired => ctx.purge_expired().await.map(|purged| {
                    report.purged = purged;
                }),
                Check::ClaimRace => ctx.claim_race().await,
                Check::SettleRace => ctx.settle_race().await,
            };
            outcome.map_err(|problem| ConformanceFailure { check, problem })?;
            report.checks.push((check, started.elapsed()));
        }
        Ok(report)
    }
}

/// One run: the settings, the store, and the run's unique key prefix.
struct Ctx<'a, S> {
    suite: &'a Suite,
    store: &'a S,
    run: String,
}

/// Which settle call a step makes.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Complete(Duration),
    Release,
}

/// An answer a claim must give that acquires nothing.
#[derive(Debug, Clone, Copy)]
enum Expected {
    Completed,
    CompletedBodyChanged,
    InFlight,
}

impl Expected {
    /// The answer's name, for [`Problem::UnexpectedClaim`].
    fn name(self) -> &'static str {
        match self {
            Expected::Completed => "Completed",
            Expected::CompletedBodyChanged => "CompletedBodyChanged",
            Expected::InFlight => "InFlight",
        }
    }

    /// Whether the store's answer `got` is this one.
    fn matches(self, got: &Claim) -> bool {
        match self {
            Expected::Completed => *got == Claim::Completed,
            Expected::CompletedBodyChanged => *got == Claim::CompletedBodyChanged,
            Expected::InFlight => matches!(got, Claim::InFlight { .. }),
        }
    }
}

impl<S> Ctx<'_, S>
where
    S: IdempotencyStore + Clone + 'static,
{
    /// A key no other run or check uses.
    fn key(&self, check: Check, n: usize) -> String {
        format!("{}:{check}:{n}", self.run)
    }

    async fn claim(
        &self,
        step: &'static str,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, Problem> {
        self.store
            .claim(key, fingerprint, lease)
            .await
            .map_err(|error| Problem::Store { step, error })
    }

    /// Claims `key` with its usual body, which must be acquired (as
    /// `Acquired`) with a token larger than `after`.
    async fn acquire(
        &self,
        step: &'static str,
        key: &str,
        lease: Duration,
        after: Option<FencingToken>,
    ) -> Result<FencingToken, Problem> {
        self.acquire_with(step, key, USUAL, false, lease, after)
            .await
    }

    /// Claims `key` with the body `variant`, which must be acquired with a
    /// token larger than `after`: as `AcquiredBodyChanged` if `changed` (the
    /// key held another body), as `Acquired` if not.
    async fn acquire_with(
        &self,
        step: &'static str,
        key: &str,
        variant: u8,
        changed: bool,
        lease: Duration,
        after: Option<FencingToken>,
    ) -> Result<FencingToken, Problem> {
        let token = match self
            .claim(step, key, fingerprint(key, variant), lease)
            .await?
        {
            Claim::Acquired(token) if !changed => token,
            Claim::AcquiredBodyChanged(token) if changed => token,
            got if changed => return Err(unexpected(step, "AcquiredBodyChanged", got)),
            got => return Err(unexpected(step, "Acquired", got)),
        };
        match after {
            Some(earlier) if token <= earlier => Err(Problem::TokenNotIncreasing {
                step,
                earlier,
                later: token,
            }),
            _ => Ok(token),
        }
    }

    /// Claims `key` with the body `variant`; the answer must be `expected`.
    async fn expect(
        &self,
        step: &'static str,
        key: &str,
        variant: u8,
        expected: Expected,
    ) -> Result<(), Problem> {
        let got = self
            .claim(step, key, fingerprint(key, variant), LONG)
            .await?;
        if expected.matches(&got) {
            Ok(())
        } else {
            Err(unexpected(step, expected.name(), got))
        }
    }

    async fn settle(
        &self,
        step: &'static str,
        key: &str,
        token: FencingToken,
        how: Settle,
    ) -> Result<(), Problem> {
        settle(self.store, key, token, how)
            .await
            .map_err(|error| Problem::Store { step, error })
    }

    /// The settle call must fail with [`StoreError::StaleToken`].
    async fn expect_stale(
        &self,
        step: &'static str,
        key: &str,
        token: FencingToken,
        how: Settle,
    ) -> Result<(), Problem> {
        match settle(self.store, key, token, how).await {
            Err(StoreError::StaleToken { .. }) => Ok(()),
            Ok(()) => Err(Problem::StaleTokenAccepted { step, token }),
            Err(error) => Err(Problem::Store { step, error }),
        }
    }

    /// Claims `key` with a short lease and waits until the lease has
    /// expired, as a crashed attempt leaves it; returns the expired token.
    async fn abandoned_lease(&self, key: &str) -> Result<FencingToken, Problem> {
        let lease = self.suite.short_lease;
        let token = self
            .acquire("claim with a short lease", key, lease, None)
            .await?;
        self.pause(lease).await;
        Ok(token)
    }

    async fn pause(&self, duration: Duration) {
        tokio::time::sleep(duration + self.suite.margin).await;
    }

    async fn first_claim_acquires(&self) -> Result<(), Problem> {
        let key = self.key(Check::FirstClaimAcquires, 0);
        let token = self
            .acquire("first claim of a new key", &key, LONG, None)
            .await?;
        self.settle("complete", &key, token, Settle::Complete(LONG))
            .await
    }

    async fn claim_while_leased(&self) -> Result<(), Problem> {
        let key = self.key(Check::ClaimWhileLeased, 0);
        let before = SystemTime::now();
        let token = self.acquire("first claim", &key, LONG, None).await?;
        let step = "second claim while the lease runs";
        match self
            .claim(step, &key, fingerprint(&key, USUAL), LONG)
            .await?
        {
            Claim::InFlight { until } => {
                let skew = self.suite.clock_skew;
                let earliest = before + LONG - skew;
                let latest = SystemTime::now() + LONG + skew;
                if until < earliest || until > latest {
                    return Err(Problem::ImplausibleUntil {
                        step,
                        until,
                        earliest,
                        latest,
                    });
                }
            }
            got => return Err(unexpected(step, "InFlight", got)),
        }
        self.settle("complete", &key, token, Settle::Complete(LONG))
            .await
    }

    async fn complete_then_claim(&self) -> Result<(), Problem> {
        let key = self.key(Check::CompleteThenClaim, 0);
        let token = self.acquire("claim", &key, LONG, None).await?;
        self.settle("complete", &key, token, Settle::Complete(LONG))
            .await?;
        self.expect("claim after complete", &key, USUAL, Expected::Completed)
            .await?;
        self.expect_stale(
            "second complete with the same token",
            &key,
            token,
            Settle::Complete(LONG),
        )
        .await?;
        self.expect_stale("release after complete", &key, token, Settle::Release)
            .await?;
        self.expect(
            "claim after the refused settle calls",
            &key,
            USUAL,
            Expected::Completed,
        )
        .await
    }

    async fn release_then_reclaim(&self) -> Result<(), Problem> {
        let key = self.key(Check::ReleaseThenReclaim, 0);
        let first = self.acquire("claim", &key, LONG, None).await?;
        self.settle("release", &key, first, Settle::Release).await?;
        let step = "complete with the released token before any reclaim";
        self.expect_stale(step, &key, first, Settle::Complete(LONG))
            .await?;
        let step = "release again with the released token before any reclaim";
        self.expect_stale(step, &key, first, Settle::Release)
            .await?;
        let second = self
            .acquire("claim after release", &key, LONG, Some(first))
            .await?;
        self.expect_stale(
            "release again with the released token",
            &key,
            first,
            Settle::Release,
        )
        .await?;
        self.expect_stale(
            "complete with the released token",
            &key,
            first,
            Settle::Complete(LONG),
        )
        .await?;
        self.settle(
            "complete with the new token",
            &key,
            second,
            Settle::Complete(LONG),
        )
        .await?;
        self.expect("claim after complete", &key, USUAL, Expected::Completed)
            .await
    }

    async fn other_body_after_release(&self) -> Result<(), Problem> {
        let key = self.key(Check::OtherBodyAfterRelease, 0);
        let first = self.acquire("claim", &key, LONG, None).await?;
        self.settle("release", &key, first, Settle::Release).await?;
        let step = "other body after release";
        let second = self
            .acquire_with(step, &key, OTHER, true, LONG, Some(first))
            .await?;
        self.expect_stale(
            "complete with the released token",
            &key,
            first,
            Settle::Complete(LONG),
        )
        .await?;
        let step = "release the other body's attempt";
        self.settle(step, &key, second, Settle::Release).await?;
        // The key holds the other body now: the usual one is the changed one.
        let step = "usual body after the other body's release";
        let third = self
            .acquire_with(step, &key, USUAL, true, LONG, Some(second))
            .await?;
        self.settle("complete", &key, third, Settle::Complete(LONG))
            .await?;
        self.expect(
            "usual body after complete",
            &key,
            USUAL,
            Expected::Completed,
        )
        .await
    }

    async fn other_body_while_leased(&self) -> Result<(), Problem> {
        let key = self.key(Check::OtherBodyWhileLeased, 0);
        let token = self.acquire("claim", &key, LONG, None).await?;
        self.expect(
            "other body while the lease runs",
            &key,
            OTHER,
            Expected::InFlight,
        )
        .await?;
        let step = "complete by the holder";
        self.settle(step, &key, token, Settle::Complete(LONG))
            .await?;
        self.expect(
            "usual body after complete",
            &key,
            USUAL,
            Expected::Completed,
        )
        .await
    }

    async fn other_body_after_complete(&self) -> Result<(), Problem> {
        let key = self.key(Check::OtherBodyAfterComplete, 0);
        let token = self.acquire("claim", &key, LONG, None).await?;
        self.settle("complete", &key, token, Settle::Complete(LONG))
            .await?;
        for step in ["other body after complete", "other body again"] {
            self.expect(step, &key, OTHER, Expected::CompletedBodyChanged)
                .await?;
        }
        self.expect(
            "usual body after the other body's claims",
            &key,
            USUAL,
            Expected::Completed,
        )
        .await
    }

    async fn expired_lease_reclaimable(&self) -> Result<(), Problem> {
        let key = self.key(Check::ExpiredLeaseReclaimable, 0);
        let first = self.abandoned_lease(&key).await?;
        let second = self
            .acquire("claim after the lease expired", &key, LONG, Some(first))
            .await?;
        self.expect(
            "claim while the new lease runs",
            &key,
            USUAL,
            Expected::InFlight,
        )
        .await?;
        self.settle(
            "complete with the new token",
            &key,
            second,
            Settle::Complete(LONG),
        )
        .await
    }

    async fn other_body_after_expired_lease(&self) -> Result<(), Problem> {
        let key = self.key(Check::OtherBodyAfterExpiredLease, 0);
        let first = self.abandoned_lease(&key).await?;
        let step = "other body after the lease expired";
        let second = self
            .acquire_with(step, &key, OTHER, true, LONG, Some(first))
            .await?;
        self.expect_stale(
            "complete with the expired token",
            &key,
            first,
            Settle::Complete(LONG),
        )
        .await?;
        let step = "complete with the new token";
        self.settle(step, &key, second, Settle::Complete(LONG))
            .await?;
        // The key holds the other body now.
        let step = "other body after complete";
        self.expect(step, &key, OTHER, Expected::Completed).await?;
        self.expect(
            "usual body after complete",
            &key,
            USUAL,
            Expected::CompletedBodyChanged,
        )
        .await
    }

    async fn stale_token_rejected(&self) -> Result<(), Problem> {
        let key = self.key(Check::StaleTokenRejected, 0);
        let stale = self.abandoned_lease(&key).await?;
        let current = self
            .acquire("reclaim after the lease expired", &key, LONG, Some(stale))
            .await?;
        self.expect_stale(
            "complete with the expired token",
            &key,
            stale,
            Settle::Complete(LONG),
        )
        .await?;
        self.expect_stale(
            "release with the expired token",
            &key,
            stale,
            Settle::Release,
        )
        .await?;
        self.settle(
            "complete with the current token",
            &key,
            current,
            Settle::Complete(LONG),
        )
        .await?;
        self.expect("claim after complete", &key, USUAL, Expected::Completed)
            .await
    }

    async fn retention(&self) -> Result<(), Problem> {
        let key = self.key(Check::Retention, 0);
        let retention = self.suite.short_retention;
        let token = self.acquire("claim", &key, LONG, None).await?;
        self.settle(
            "complete with a short retention",
            &key,
            token,
            Settle::Complete(retention),
        )
        .await?;
        self.pause(retention).await;
        // The key is new again: even another body acquires it.
        let step = "claim with another body after retention";
        self.acquire_with(step, &key, OTHER, false, LONG, None)
            .await
            .map(drop)
    }

    async fn purge_expired(&self) -> Result<u64, Problem> {
        let expired = self.key(Check::PurgeExpired, 0);
        let retained = self.key(Check::PurgeExpired, 1);
        let in_flight = self.key(Check::PurgeExpired, 2);
        let retention = self.suite.short_retention;
        let token = self.acquire("claim", &expired, LONG, None).await?;
        self.settle(
            "complete with a short retention",
            &expired,
            token,
            Settle::Complete(retention),
        )
        .await?;
        let token = self.acquire("claim", &retained, LONG, None).await?;
        self.settle(
            "complete with a long retention",
            &retained,
            token,
            Settle::Complete(LONG),
        )
        .await?;
        self.acquire("claim", &in_flight, LONG, None).await?;
        self.pause(retention).await;
        let purged = self
            .store
            .purge_expired()
            .await
            .map_err(|error| Problem::Store {
                step: "purge_expired",
                error,
            })?;
        let step = "claim of the purged key with another body";
        self.acquire_with(step, &expired, OTHER, false, LONG, None)
            .await?;
        self.expect(
            "claim of a completed key within retention after purge",
            &retained,
            USUAL,
            Expected::Completed,
        )
        .await?;
        self.expect(
            "claim of an in-flight key after purge",
            &in_flight,
            USUAL,
            Expected::InFlight,
        )
        .await?;
        Ok(purged)
    }

    async fn claim_race(&self) -> Result<(), Problem> {
        // Rounds cycle through a new key, a released key and a key whose lease
        // expired. The expired ones are claimed first so their short leases run
        // out while the other rounds race.
        let rounds = self.suite.race_rounds;
        let lease = self.suite.short_lease;
        let leased_at = Instant::now();
        let mut earlier = vec![None; rounds];
        for round in (0..rounds).filter(|round| round % 3 == 2) {
            let key = self.key(Check::ClaimRace, round);
            let step = "claim with a short lease";
            earlier[round] = Some(self.acquire(step, &key, lease, None).await?);
        }
        for round in (0..rounds).filter(|round| round % 3 == 1) {
            let key = self.key(Check::ClaimRace, round);
            let token = self
                .acquire("claim before release", &key, LONG, None)
                .await?;
            self.settle("release", &key, token, Settle::Release).await?;
            earlier[round] = Some(token);
        }
        let order = (0..rounds)
            .filter(|round| round % 3 != 2)
            .chain((0..rounds).filter(|round| round % 3 == 2));
        for round in order {
            let kind = match round % 3 {
                0 => "a new key",
                1 => "a released key",
                _ => {
                    let expired = leased_at + lease + self.suite.margin;
                    tokio::time::sleep_until(expired.into()).await;
                    "a key whose lease expired"
                }
            };
            self.claim_race_round(round, kind, earlier[round]).await?;
        }
        Ok(())
    }

    /// Races `race_tasks` claims of round `round`'s key: exactly one may acquire
    /// it, with a token larger than `earlier`, the others see it in flight.
    async fn claim_race_round(
        &self,
        round: usize,
        kind: &'static str,
        earlier: Option<FencingToken>,
    ) -> Result<(), Problem> {
        let tasks = self.suite.race_tasks;
        let key = self.key(Check::ClaimRace, round);
        let step = "concurrent claims";
        let answers = race(tasks, |_| {
            let (store, key) = (self.store.clone(), key.clone());
            async move {
                let answer = store.claim(&key, fingerprint(&key, USUAL), LONG).await;
                answer.map_err(|error| Problem::Store { step, error })
            }
        })
        .await?;
        let mut winners = Vec::new();
        for answer in answers {
            match answer {
                Claim::Acquired(token) => winners.push(token),
                Claim::InFlight { .. } => {}
                got => return Err(unexpected(step, "Acquired or InFlight", got)),
            }
        }
        let [token] = winners[..] else {
            return Err(Problem::RaceWinners {
                round,
                kind,
                acquired: winners.len(),
                tasks,
            });
        };
        if let Some(earlier) = earlier.filter(|earlier| token <= *earlier) {
            return Err(Problem::TokenNotIncreasing {
                step,
                earlier,
                later: token,
            });
        }
        self.settle(
            "complete by the winner",
            &key,
            token,
            Settle::Complete(LONG),
        )
        .await
    }

    async fn settle_race(&self) -> Result<(), Problem> {
        let calls = [
            Settle::Complete(LONG),
            Settle::Release,
            Settle::Complete(LONG),
        ];
        for round in 0..self.suite.race_rounds {
            let key = self.key(Check::SettleRace, round);
            let token = self.acquire("claim", &key, LONG, None).await?;
            let step = "racing complete and release";
            let answers = race(calls.len(), |i| {
                let (store, key, how) = (self.store.clone(), key.clone(), calls[i]);
                async move {
                    match settle(&store, &key, token, how).await {
                        Ok(()) => Ok(Some(how)),
                        Err(StoreError::StaleToken { .. }) => Ok(None),
                        Err(error) => Err(Problem::Store { step, error }),
                    }
                }
            })
            .await?;
            let winners: Vec<Settle> = answers.into_iter().flatten().collect();
            match winners[..] {
                [Settle::Complete(_)] => {
                    self.expect("claim after complete won", &key, USUAL, Expected::Completed)
                        .await?
                }
                [Settle::Release] => {
                    let token = self
                        .acquire("claim after release won", &key, LONG, Some(token))
                        .await?;
                    self.settle("complete", &key, token, Settle::Complete(LONG))
                        .await?
                }
                _ => {
                    return Err(Problem::SettleWinners {
                        round,
                        succeeded: winners.len(),
                        attempts: calls.len(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// Spawns `tasks` tasks that start `call` at the same moment (behind a barrier)
/// and collects their answers in spawn order.
async fn race<T, F, Fut>(tasks: usize, call: F) -> Result<Vec<T>, Problem>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, Problem>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let (barrier, call) = (Arc::clone(&barrier), call(i));
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks);
    for handle in handles {
        let answer = handle.await.map_err(|error| Problem::Task {
            step: "racing task",
            error,
        })?;
        answers.push(answer?);
    }
    Ok(answers)
}

async fn settle<S: IdempotencyStore + ?Sized>(
    store: &S,
    key: &str,
    token: FencingToken,
    how: Settle,
) -> Result<(), StoreError> {
    match how {
        Settle::Complete(retention) => store.complete(key, token, retention).await,
        Settle::Release => {
            store
                .release(key, token, "hookgate conformance suite: deliberate release")
                .await
        }
    }
}

/// The variant of a key's usual body.
const USUAL: u8 = 0;

/// The variant of another body for the same key.
const OTHER: u8 = 1;

/// A fingerprint that differs per key and per `variant` ([`USUAL`] is the
/// key's usual body).
fn fingerprint(key: &str, variant: u8) -> Fingerprint {
    let mut bytes = key.as_bytes().to_vec();
    bytes.push(variant);
    Fingerprint::of(&bytes)
}

fn unexpected(step: &'static str, expected: &'static str, got: Claim) -> Problem {
    Problem::UnexpectedClaim {
        step,
        expected,
        got,
    }
}
