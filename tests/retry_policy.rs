//! `RetryPolicy`: plain fields checked by `PipelineBuilder::build`, and delays
//! that saturate on extreme values instead of panicking.

mod common;

use std::time::Duration;

use hookgate::RetryPolicy;
use proptest::prelude::*;

const CASES: u32 = 10_000;

fn policy(
    max_attempts: u32,
    initial_backoff: Duration,
    multiplier: f64,
    max_backoff: Duration,
    jitter: f64,
    attempt_timeout: Duration,
) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    policy.max_attempts = max_attempts;
    policy.initial_backoff = initial_backoff;
    policy.multiplier = multiplier;
    policy.max_backoff = max_backoff;
    policy.jitter = jitter;
    policy.attempt_timeout = attempt_timeout;
    policy
}

/// Any duration, with the extremes often.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        (0u64..1_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// Every multiplier `check` accepts, the extremes often.
fn multiplier() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0),
        Just(f64::MAX),
        Just(1.0 + f64::EPSILON),
        1.0..10.0f64,
        1.0..f64::MAX,
    ]
}

fn jitter() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64]
}

fn attempts() -> impl Strategy<Value = u32> {
    prop_oneof![Just(1), Just(u32::MAX), any::<u32>().prop_map(|n| n.max(1))]
}

fn valid_policy() -> impl Strategy<Value = RetryPolicy> {
    (
        attempts(),
        duration(),
        multiplier(),
        duration(),
        jitter(),
        duration().prop_map(|d| d.max(Duration::from_nanos(1))),
    )
        .prop_map(|(a, i, m, x, j, t)| policy(a, i, m, x, j, t))
}

fn retry() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(2), Just(u32::MAX), any::<u32>()]
}

fn unit() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(1.0 - f64::EPSILON),
        0.0..1.0f64,
        any::<f64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Extreme but valid policies are accepted, and their delays saturate:
    /// ordered, capped, never a panic.
    #[test]
    fn valid_policies_give_ordered_saturating_delays(
        policy in valid_policy(),
        retry in retry(),
        unit in unit(),
    ) {
        prop_assert_eq!(policy.check(), Ok(()));
        let nominal = policy.nominal_delay(retry);
        let (low, high) = policy.delay_bounds(retry);
        let delay = policy.delay(retry, unit);
        prop_assert!(nominal <= policy.max_backoff);
        prop_assert!(low <= nominal && nominal <= high, "{low:?} {nominal:?} {high:?}");
        prop_assert!(low <= delay && delay <= high, "{low:?} {delay:?} {high:?}");
        if retry <= 1 {
            prop_assert_eq!(nominal, policy.initial_backoff.min(policy.max_backoff));
        }
        if policy.jitter == 0.0 {
            prop_assert_eq!((low, high), (nominal, nominal));
        }
    }

    /// Whatever the fields hold — NaN, infinities, negative factors — the
    /// delay functions return instead of panicking, and `check` says which
    /// field cannot work.
    #[test]
    fn any_policy_is_checked_and_never_panics(
        max_attempts in any::<u32>(),
        initial in duration(),
        multiplier in any::<f64>(),
        max_backoff in duration(),
        jitter in any::<f64>(),
        timeout in duration(),
        retry in retry(),
        unit in unit(),
    ) {
        let policy = policy(max_attempts, initial, multiplier, max_backoff, jitter, timeout);
        let _ = policy.nominal_delay(retry);
        let _ = policy.delay_bounds(retry);
        let _ = policy.delay(retry, unit);
        let valid = max_attempts >= 1
            && multiplier.is_finite()
            && multiplier >= 1.0
            && (0.0..=1.0).contains(&jitter)
            && !timeout.is_zero();
        prop_assert_eq!(policy.check().is_ok(), valid);
    }
}

/// The default policy with one change.
fn changed(change: impl FnOnce(&mut RetryPolicy)) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    change(&mut policy);
    policy
}

/// One policy per way a field can be unusable, with the field's name.
fn unusable() -> Vec<(&'static str, RetryPolicy)> {
    vec![
        ("max_attempts", changed(|p| p.max_attempts = 0)),
        ("multiplier", changed(|p| p.multiplier = 0.5)),
        ("multiplier", changed(|p| p.multiplier = -2.0)),
        ("multiplier", changed(|p| p.multiplier = f64::NAN)),
        ("multiplier", changed(|p| p.multiplier = f64::INFINITY)),
        ("jitter", changed(|p| p.jitter = -0.1)),
        ("jitter", changed(|p| p.jitter = 1.5)),
        ("jitter", changed(|p| p.jitter = f64::NAN)),
        (
            "attempt_timeout",
            changed(|p| p.attempt_timeout = Duration::ZERO),
        ),
    ]
}

#[test]
fn check_names_the_field_that_cannot_work() {
    assert_eq!(RetryPolicy::default().check(), Ok(()));
    for (field, policy) in unusable() {
        let err = policy.check().expect_err(field);
        assert_eq!(err.field, field, "{policy:?}");
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.max_attempts, 4);
    assert_eq!(policy.initial_backoff, Duration::from_secs(2));
    assert_eq!(policy.multiplier, 2.0);
    assert_eq!(policy.max_backoff, Duration::from_secs(300));
    assert_eq!(policy.jitter, 0.2);
    assert_eq!(policy.attempt_timeout, Duration::from_secs(30));
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[test]
fn the_default_delays_are_the_documented_ones() {
    let policy = RetryPolicy::default();
    // 2 s, 4 s, 8 s, … doubling up to the 5 min cap; retry 0 is taken as 1.
    let nominal: Vec<Duration> = (0..=10).map(|r| policy.nominal_delay(r)).collect();
    let expected = [2, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300].map(Duration::from_secs);
    assert_eq!(nominal, expected);
    // ±20 % around the nominal delay.
    assert_eq!(policy.delay_bounds(1), (ms(1_600), ms(2_400)));
    assert_eq!(policy.delay_bounds(3), (ms(6_400), ms(9_600)));
    assert_eq!(policy.delay_bounds(12), (ms(240_000), ms(360_000)));
    // The unit draw places the delay linearly within the bounds.
    assert_eq!(policy.delay(3, 0.0), ms(6_400));
    assert_eq!(policy.delay(3, 0.25), ms(7_200));
    assert_eq!(policy.delay(3, 0.5), ms(8_000));
    assert_eq!(policy.delay(3, 1.0), ms(9_600));
    // Out-of-range draws are taken as the nearest end.
    assert_eq!(policy.delay(3, -1.0), ms(6_400));
    assert_eq!(policy.delay(3, 7.0), ms(9_600));
    assert_eq!(policy.delay(3, f64::NAN), ms(6_400));
}

#[test]
fn delays_follow_every_field() {
    let policy = changed(|p| {
        p.initial_backoff = ms(100);
        p.multiplier = 3.0;
        p.max_backoff = ms(1_000);
        p.jitter = 0.5;
    });
    assert_eq!(policy.nominal_delay(1), ms(100));
    assert_eq!(policy.nominal_delay(2), ms(300));
    assert_eq!(policy.nominal_delay(3), ms(900));
    assert_eq!(policy.nominal_delay(4), ms(1_000));
    assert_eq!(policy.delay_bounds(2), (ms(150), ms(450)));
    assert_eq!(policy.delay(2, 0.5), ms(300));
    // No jitter: the delay is the nominal one, whatever the draw.
    let steady = changed(|p| p.jitter = 0.0);
    assert_eq!(steady.delay_bounds(2), (ms(4_000), ms(4_000)));
    assert_eq!(steady.delay(2, 0.9), ms(4_000));
    // An initial backoff above the cap is capped from the first retry on.
    let capped = changed(|p| p.initial_backoff = Duration::from_secs(600));
    assert_eq!(capped.nominal_delay(1), Duration::from_secs(300));
}

#[test]
fn unusable_factors_give_no_delay_rather_than_a_huge_one() {
    // Policies `check` refuses still compute (they are plain fields): a factor
    // that is NaN or negative never turns into `Duration::MAX`.
    for jitter in [f64::NAN, -0.5] {
        let policy = changed(|p| p.jitter = jitter);
        assert_eq!(policy.delay_bounds(2), (ms(4_000), ms(4_000)), "{jitter}");
    }
    let nan = changed(|p| p.multiplier = f64::NAN);
    assert_eq!(nan.nominal_delay(2), Duration::ZERO);
    let negative = changed(|p| p.multiplier = -2.0);
    assert_eq!(negative.nominal_delay(2), Duration::ZERO);
}

#[cfg(feature = "tokio")]
mod pipeline {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::common::pipeline::*;
    use super::{changed, unusable};
    use hookgate::{
        BuildError, DeadLetterReason, HandlerError, MemoryDeadLetter, Pipeline, Registry,
        RetryPolicy,
    };

    fn build(policy: RetryPolicy, registry: Registry) -> Result<Pipeline, BuildError> {
        Pipeline::builder()
            .verifier(github())
            .store(store())
            .registry(registry)
            .retry_policy(policy)
            .build()
    }

    #[test]
    fn build_refuses_an_unusable_policy_naming_the_field() {
        for (field, policy) in unusable() {
            match build(policy, Registry::new()) {
                Err(BuildError::InvalidRetryPolicy { field: named, .. }) => {
                    assert_eq!(named, field, "{policy:?}")
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        let err = build(changed(|p| p.jitter = 2.0), Registry::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the retry policy's `jitter` must be between 0.0 and 1.0"
        );
    }

    /// The largest valid settings run through the pipeline: u32::MAX
    /// attempts, a backoff and a timeout of Duration::MAX, a multiplier of
    /// f64::MAX. Nothing panics; shutdown cancels the endless backoff.
    #[tokio::test]
    async fn extreme_valid_policies_run_without_panicking() {
        let policy = changed(|p| {
            p.max_attempts = u32::MAX;
            p.initial_backoff = Duration::MAX;
            p.multiplier = f64::MAX;
            p.max_backoff = Duration::MAX;
            p.jitter = 1.0;
            p.attempt_timeout = Duration::MAX;
        });
        let (calls, failing) =
            numbered(|_, _| async { Err::<(), _>(HandlerError::transient(Injected("down"))) });
        let mut registry = Registry::new();
        registry.best_effort("github", "issues", "flaky", failing);
        let dead_letter = MemoryDeadLetter::new();
        let pipeline = Pipeline::builder()
            .verifier(github())
            .store(store())
            .registry(registry)
            .retry_policy(policy)
            .memory_dead_letter(dead_letter.clone())
            .build()
            .expect("extreme but valid");
        let (body, headers) = gh_delivery("d-extreme", &issue_body(1));
        assert_eq!(pipeline.handle(body, &headers).await.status(), 200);
        eventually("the first attempt", || calls.load(Ordering::SeqCst) == 1).await;

        let report = pipeline.shutdown(Duration::from_millis(10)).await;
        let entries: Vec<_> = report
            .abandoned
            .iter()
            .map(|e| (e.reason, e.attempts))
            .collect();
        assert_eq!(entries, [(DeadLetterReason::ShutDown, 1)]);
        assert_eq!(dead_letter.len(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A zero backoff with u32::MAX attempts retries at once.
        let (calls, twice) = numbered(|call, _| async move {
            if call < 2 {
                return Err(HandlerError::transient(Injected("not yet")));
            }
            Ok(())
        });
        let mut registry = Registry::new();
        registry.best_effort("github", "issues", "twice", twice);
        let pipeline = build(
            changed(|p| {
                p.max_attempts = u32::MAX;
                p.initial_backoff = Duration::ZERO;
            }),
            registry,
        )
        .unwrap();
        let (body, headers) = gh_delivery("d-zero", &issue_body(2));
        let (_, work) = pipeline.handle_deferred(body, &headers).await;
        assert_eq!(work.unwrap().await.succeeded, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
