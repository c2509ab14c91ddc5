//! The conformance suite itself: a simple correct store passes it, and every
//! deliberately broken store fails it at the check that names its flaw.
#![cfg(feature = "tokio")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use hookgate::store::conformance::{self, Check, Problem};
use hookgate::store::{Claim, FencingToken, Fingerprint, IdempotencyStore, StoreError};

/// One way to break the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    AlwaysAcquire,
    UntilIgnoresLease,
    /// Never reports another body: `Acquired` and `Completed` only.
    IgnoreFingerprint,
    /// The rule before bodies could change between attempts: another body is
    /// refused whatever the key's state (as `CompletedBodyChanged`).
    OldFingerprintRule,
    /// Takes a released or expired key for another body, but keeps the first
    /// body's fingerprint.
    KeepFirstFingerprint,
    /// Takes a key in flight when the body differs.
    TakeOtherBodyInFlight,
    /// Answers `Completed` to another body of a completed key.
    CompletedIgnoresBody,
    /// Refuses another body once a lease expired (as `CompletedBodyChanged`).
    RefuseOtherBodyAfterExpiry,
    /// Reports another body as changed even past retention.
    ChangedAfterRetention,
    AcceptAnyTokenInFlight,
    AcceptTokenAfterSettle,
    AcceptReleasedToken,
    RestartTokensOnRelease,
    LeasesNeverExpire,
    KeepCompletedForever,
    PurgeEverything,
    NonAtomicClaim,
    NonAtomicReclaim,
    NonAtomicSettle,
}

#[derive(Debug, Clone, Copy)]
enum State {
    InFlight(Instant),
    Completed(Instant),
    Released,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    fingerprint: Fingerprint,
    token: u64,
    state: State,
}

/// A claim that takes the key: the record it replaces (none for a new key),
/// and whether it is reported as another body.
#[derive(Debug, Clone, Copy, Default)]
struct Take {
    previous: Option<Record>,
    changed: bool,
}

/// A deliberately plain store (one mutex, string keys, a global token counter)
/// built independently of `MemoryStore`, with an optional flaw.
#[derive(Debug)]
struct ToyStore {
    flaw: Flaw,
    records: Mutex<HashMap<String, Record>>,
    tokens: Mutex<u64>,
    /// Every lease and retention the store was given.
    durations: Mutex<Vec<Duration>>,
}

impl ToyStore {
    fn new(flaw: Flaw) -> Arc<Self> {
        Arc::new(Self {
            flaw,
            records: Mutex::new(HashMap::new()),
            tokens: Mutex::new(0),
            durations: Mutex::new(Vec::new()),
        })
    }

    fn next_token(&self, previous: Option<u64>) -> u64 {
        if self.flaw == Flaw::RestartTokensOnRelease {
            return previous.map_or(1, |_| 1);
        }
        let mut tokens = self.tokens.lock().unwrap();
        *tokens += 1;
        *tokens
    }

    /// The answer to a claim of `record` with `fingerprint`, or `Err` when the
    /// claim takes the key.
    fn decide(&self, record: Option<Record>, fingerprint: Fingerprint) -> Result<Claim, Take> {
        let now = Instant::now();
        let Some(record) = record else {
            return Err(Take::default());
        };
        let other = record.fingerprint != fingerprint && self.flaw != Flaw::IgnoreFingerprint;
        let take = Take {
            previous: Some(record),
            changed: other,
        };
        if self.flaw == Flaw::AlwaysAcquire {
            return Err(take);
        }
        if other && self.flaw == Flaw::OldFingerprintRule {
            let expired = matches!(record.state, State::Completed(until) if until <= now);
            if !expired {
                return Ok(Claim::CompletedBodyChanged);
            }
        }
        match record.state {
            State::Completed(until) if until <= now && self.flaw != Flaw::KeepCompletedForever => {
                Err(Take {
                    changed: other && self.flaw == Flaw::ChangedAfterRetention,
                    ..take
                })
            }
            State::Completed(_) if other && self.flaw != Flaw::CompletedIgnoresBody => {
                Ok(Claim::CompletedBodyChanged)
            }
            State::Completed(_) => Ok(Claim::Completed),
            State::InFlight(_) if other && self.flaw == Flaw::TakeOtherBodyInFlight => Err(take),
            State::InFlight(until) if until > now || self.flaw == Flaw::LeasesNeverExpire => {
                let until = if self.flaw == Flaw::UntilIgnoresLease {
                    SystemTime::now()
                } else {
                    SystemTime::now() + (until - now)
                };
                Ok(Claim::InFlight { until })
            }
            State::InFlight(_) if other && self.flaw == Flaw::RefuseOtherBodyAfterExpiry => {
                Ok(Claim::CompletedBodyChanged)
            }
            State::InFlight(_) | State::Released => Err(take),
        }
    }

    fn acquire(
        &self,
        records: &mut HashMap<String, Record>,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
        take: Take,
    ) -> Claim {
        let previous = take.previous.map(|record| record.token);
        let token = FencingToken(self.next_token(previous));
        let fingerprint = match take.previous {
            Some(record) if self.flaw == Flaw::KeepFirstFingerprint => record.fingerprint,
            _ => fingerprint,
        };
        let state = State::InFlight(Instant::now() + lease);
        records.insert(
            key.to_owned(),
            Record {
                fingerprint,
                token: token.0,
                state,
            },
        );
        if take.changed {
            Claim::AcquiredBodyChanged(token)
        } else {
            Claim::Acquired(token)
        }
    }

    async fn settle(&self, key: &str, token: FencingToken, next: State) -> Result<(), StoreError> {
        if self.flaw == Flaw::NonAtomicSettle {
            // Check under one lock, write under another: the race the suite must catch.
            let record =
                self.check_settle(self.records.lock().unwrap().get(key).copied(), key, token)?;
            tokio::task::yield_now().await;
            self.records.lock().unwrap().insert(
                key.to_owned(),
                Record {
                    state: next,
                    ..record
                },
            );
            return Ok(());
        }
        // A correct store checks and writes atomically.
        let mut records = self.records.lock().unwrap();
        let record = self.check_settle(records.get(key).copied(), key, token)?;
        records.insert(
            key.to_owned(),
            Record {
                state: next,
                ..record
            },
        );
        Ok(())
    }

    /// Whether `token` may settle the key's `current` record (as the flaw allows).
    fn check_settle(
        &self,
        current: Option<Record>,
        key: &str,
        token: FencingToken,
    ) -> Result<Record, StoreError> {
        let stale = || StoreError::StaleToken {
            key: key.to_owned(),
            token,
        };
        let record = current.ok_or_else(stale)?;
        let in_flight = matches!(record.state, State::InFlight(_));
        let token_ok =
            record.token == token.0 || (self.flaw == Flaw::AcceptAnyTokenInFlight && in_flight);
        let state_ok = in_flight
            || self.flaw == Flaw::AcceptTokenAfterSettle
            || (self.flaw == Flaw::AcceptReleasedToken && matches!(record.state, State::Released));
        if token_ok && state_ok {
            Ok(record)
        } else {
            Err(stale())
        }
    }
}

#[async_trait]
impl IdempotencyStore for ToyStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        self.durations.lock().unwrap().push(lease);
        if matches!(self.flaw, Flaw::NonAtomicClaim | Flaw::NonAtomicReclaim) {
            // Decide under one lock, write under another: the race the suite must
            // catch (NonAtomicReclaim: only for keys that exist already).
            let current = self.records.lock().unwrap().get(key).copied();
            let take = match self.decide(current, fingerprint) {
                Ok(answer) => return Ok(answer),
                Err(take) => take,
            };
            if take.previous.is_none() && self.flaw == Flaw::NonAtomicReclaim {
                let mut records = self.records.lock().unwrap();
                return match self.decide(records.get(key).copied(), fingerprint) {
                    Ok(answer) => Ok(answer),
                    Err(take) => Ok(self.acquire(&mut records, key, fingerprint, lease, take)),
                };
            }
            tokio::task::yield_now().await;
            return Ok(self.acquire(
                &mut self.records.lock().unwrap(),
                key,
                fingerprint,
                lease,
                take,
            ));
        }
        let mut records = self.records.lock().unwrap();
        match self.decide(records.get(key).copied(), fingerprint) {
            Ok(answer) => Ok(answer),
            Err(take) => Ok(self.acquire(&mut records, key, fingerprint, lease, take)),
        }
    }

    async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.durations.lock().unwrap().push(retention);
        self.settle(key, token, State::Completed(Instant::now() + retention))
            .await
    }

    async fn release(
        &self,
        key: &str,
        token: FencingToken,
        _reason: &str,
    ) -> Result<(), StoreError> {
        self.settle(key, token, State::Released).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let mut records = self.records.lock().unwrap();
        let before = records.len();
        let now = Instant::now();
        records.retain(|_, record| match record.state {
            _ if self.flaw == Flaw::PurgeEverything => false,
            State::Completed(until) => until > now,
            _ => true,
        });
        Ok((before - records.len()) as u64)
    }
}

/// Runs the suite on a store with `flaw`, which must fail; returns the failure.
async fn failure_of(flaw: Flaw) -> conformance::ConformanceFailure {
    match conformance::run(&ToyStore::new(flaw)).await {
        Ok(report) => panic!("a store with flaw {flaw:?} passed the suite:\n{report}"),
        Err(failure) => {
            let message = failure.to_string();
            assert!(message.contains(failure.check().name()), "{message}");
            failure
        }
    }
}

macro_rules! broken_store_fails {
    ($($name:ident: $flaw:expr => $check:expr, $problem:pat,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let failure = failure_of($flaw).await;
            assert_eq!(failure.check(), $check, "{failure}");
            assert!(matches!(failure.problem(), $problem), "{failure}");
        }
    )*};
}

broken_store_fails! {
    always_acquiring_store_fails: Flaw::AlwaysAcquire
        => Check::ClaimWhileLeased, Problem::UnexpectedClaim { got: Claim::Acquired(_), .. },
    until_without_lease_fails: Flaw::UntilIgnoresLease
        => Check::ClaimWhileLeased, Problem::ImplausibleUntil { .. },
    store_ignoring_fingerprints_fails: Flaw::IgnoreFingerprint
        => Check::OtherBodyAfterRelease, Problem::UnexpectedClaim {
            step: "other body after release", got: Claim::Acquired(_), ..
        },
    store_refusing_another_body_after_release_fails: Flaw::OldFingerprintRule
        => Check::OtherBodyAfterRelease, Problem::UnexpectedClaim {
            step: "other body after release", got: Claim::CompletedBodyChanged, ..
        },
    store_keeping_the_first_fingerprint_fails: Flaw::KeepFirstFingerprint
        => Check::OtherBodyAfterRelease, Problem::UnexpectedClaim {
            step: "usual body after the other body's release", got: Claim::Acquired(_), ..
        },
    store_taking_a_leased_key_for_another_body_fails: Flaw::TakeOtherBodyInFlight
        => Check::OtherBodyWhileLeased, Problem::UnexpectedClaim {
            got: Claim::AcquiredBodyChanged(_), ..
        },
    store_hiding_another_body_of_a_completed_key_fails: Flaw::CompletedIgnoresBody
        => Check::OtherBodyAfterComplete, Problem::UnexpectedClaim {
            got: Claim::Completed, ..
        },
    store_refusing_another_body_after_expiry_fails: Flaw::RefuseOtherBodyAfterExpiry
        => Check::OtherBodyAfterExpiredLease, Problem::UnexpectedClaim {
            got: Claim::CompletedBodyChanged, ..
        },
    store_reporting_another_body_past_retention_fails: Flaw::ChangedAfterRetention
        => Check::Retention, Problem::UnexpectedClaim {
            got: Claim::AcquiredBodyChanged(_), ..
        },
    store_accepting_any_token_in_flight_fails: Flaw::AcceptAnyTokenInFlight
        => Check::ReleaseThenReclaim, Problem::StaleTokenAccepted { .. },
    store_settling_twice_fails: Flaw::AcceptTokenAfterSettle
        => Check::CompleteThenClaim, Problem::StaleTokenAccepted { .. },
    store_settling_a_released_key_fails: Flaw::AcceptReleasedToken
        => Check::ReleaseThenReclaim, Problem::StaleTokenAccepted { .. },
    store_restarting_tokens_fails: Flaw::RestartTokensOnRelease
        => Check::ReleaseThenReclaim, Problem::TokenNotIncreasing { .. },
    store_with_endless_leases_fails: Flaw::LeasesNeverExpire
        => Check::ExpiredLeaseReclaimable, Problem::UnexpectedClaim { got: Claim::InFlight { .. }, .. },
    store_without_retention_fails: Flaw::KeepCompletedForever
        => Check::Retention, Problem::UnexpectedClaim { .. },
    store_purging_live_keys_fails: Flaw::PurgeEverything
        => Check::PurgeExpired, Problem::UnexpectedClaim { .. },
    store_with_racy_claim_fails: Flaw::NonAtomicClaim
        => Check::ClaimRace, Problem::RaceWinners { .. },
    store_with_racy_reclaim_fails: Flaw::NonAtomicReclaim
        => Check::ClaimRace, Problem::RaceWinners { kind: "a released key" | "a key whose lease expired", .. },
    store_with_racy_settle_fails: Flaw::NonAtomicSettle
        => Check::SettleRace, Problem::SettleWinners { .. },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_correct_store_passes() {
    let store = ToyStore::new(Flaw::None);
    let report = conformance::run(&store)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(report.checks().len(), Check::ALL.len());
    assert!(report.multi_thread());
    assert!(report.purged() >= 1, "the toy store purges: {report}");
    // Every check is reported, in order, by name.
    let text = report.to_string();
    for check in Check::ALL {
        assert!(text.contains(check.name()), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_suite_can_run_again_on_the_same_store() {
    let store = ToyStore::new(Flaw::None);
    conformance::run(&store)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    let keys_after_first = store.records.lock().unwrap().len();
    conformance::run(&store)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    // The second run used fresh keys: nothing of the first run was reused.
    assert!(store.records.lock().unwrap().len() > keys_after_first);
}

#[tokio::test(flavor = "current_thread")]
async fn current_thread_runtime_is_reported() {
    let report = conformance::Suite::new()
        .race_rounds(2)
        .run(&ToyStore::new(Flaw::None))
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    assert!(!report.multi_thread());
    assert!(report.to_string().contains("current-thread"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_settings_are_used() {
    let store = ToyStore::new(Flaw::None);
    let report = conformance::Suite::new()
        .short_lease(Duration::from_millis(50))
        .short_retention(Duration::from_millis(50))
        .margin(Duration::from_millis(50))
        .race_tasks(4)
        .race_rounds(2)
        .key_prefix("custom-prefix")
        .run(&store)
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(report.checks().len(), Check::ALL.len());
    let records = store.records.lock().unwrap();
    assert!(records.keys().all(|key| key.starts_with("custom-prefix:")));
    let durations = store.durations.lock().unwrap();
    assert_eq!(durations.iter().min(), Some(&Duration::from_millis(50)));
    // 2 rounds of each race: claim_race and settle_race keys.
    assert_eq!(
        records
            .keys()
            .filter(|key| key.contains(":claim_race:"))
            .count(),
        2
    );
    assert_eq!(
        records
            .keys()
            .filter(|key| key.contains(":settle_race:"))
            .count(),
        2
    );
}
