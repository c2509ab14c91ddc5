//! Every pipeline and verifier builder, driven with extreme and arbitrary
//! settings (zero, one, `u64`/`usize::MAX`, `Duration::MAX`, random values, for
//! one provider or for `"*"`): `build()` never panics and returns the pipeline
//! or a typed error, and a pipeline that builds keeps its limits' invariants and
//! answers a signed delivery of every provider without panicking.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use hookgate::testing::{github_headers, shopify_headers, stripe_headers};
use hookgate::{
    handler_fn, BuildError, FixedClock, GitHub, HandlerError, Headers, MemoryStore, OutcomeKind,
    Pipeline, PipelineBuilder, ProviderLimits, Registry, Shopify, Stripe,
};
use proptest::prelude::*;

const SECRET: &str = "builder-property-secret";
const NOW: i64 = 1_700_000_000;
const PROVIDERS: [&str; 3] = ["github", "shopify", "stripe"];

/// Durations from the edges and from anywhere in between.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(u64::MAX / 4)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        (0u64..100_000).prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// Sizes and counts from the edges and from anywhere in between.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(usize::MAX),
        Just(usize::MAX / 2),
        any::<usize>(),
        1usize..(1 << 21),
    ]
}

/// One limit setting.
#[derive(Debug, Clone)]
enum Setting {
    BodyLimit(usize),
    AnswerBudget(Duration),
    SettleReserve(Duration),
    CriticalDeadline(Duration),
    Lease(Duration),
    Retention(Duration),
}

fn setting() -> impl Strategy<Value = Setting> {
    prop_oneof![
        size().prop_map(Setting::BodyLimit),
        duration().prop_map(Setting::AnswerBudget),
        duration().prop_map(Setting::SettleReserve),
        duration().prop_map(Setting::CriticalDeadline),
        duration().prop_map(Setting::Lease),
        duration().prop_map(Setting::Retention),
    ]
}

/// Who a setting is for: every provider, one of them, or one that no verifier
/// has (which `build()` must refuse).
fn target() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        8 => Just("*"),
        3 => Just("github"),
        3 => Just("shopify"),
        3 => Just("stripe"),
        1 => Just("slack"),
    ]
}

/// The settings of a Stripe verifier.
#[derive(Debug, Clone)]
struct StripeSettings {
    tolerance: Option<Option<Duration>>,
    max_future_skew: Option<Duration>,
    plain_timestamp: bool,
}

fn stripe_settings() -> impl Strategy<Value = StripeSettings> {
    (
        prop::option::of(prop::option::of(duration())),
        prop::option::of(duration()),
        any::<bool>(),
    )
        .prop_map(
            |(tolerance, max_future_skew, plain_timestamp)| StripeSettings {
                tolerance,
                max_future_skew,
                plain_timestamp,
            },
        )
}

/// Everything a test case sets.
#[derive(Debug, Clone)]
struct Settings {
    /// Which of [`PROVIDERS`] get a verifier.
    verifiers: [bool; 3],
    stripe: StripeSettings,
    limits: Vec<(&'static str, Setting)>,
    max_concurrent_best_effort: Option<usize>,
    max_pending_best_effort: Option<usize>,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        [
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.8),
        ],
        stripe_settings(),
        prop::collection::vec((target(), setting()), 0..6),
        prop::option::of(size()),
        prop::option::of(size()),
    )
        .prop_map(
            |(verifiers, stripe, limits, max_concurrent, max_pending)| Settings {
                verifiers,
                stripe,
                limits,
                max_concurrent_best_effort: max_concurrent,
                max_pending_best_effort: max_pending,
            },
        )
}

fn stripe(settings: &StripeSettings) -> Stripe {
    let mut builder = Stripe::builder(SECRET);
    match settings.tolerance {
        Some(Some(tolerance)) => builder = builder.tolerance(tolerance),
        Some(None) => builder = builder.insecure_skip_timestamp_check(),
        None => {}
    }
    if let Some(skew) = settings.max_future_skew {
        builder = builder.max_future_skew(skew);
    }
    if settings.plain_timestamp {
        builder = builder.require_plain_timestamp();
    }
    builder.build().expect("a non-empty secret")
}

fn builder(settings: &Settings) -> PipelineBuilder {
    let mut registry = Registry::new();
    let noop = || handler_fn(|_| async { Ok::<(), HandlerError>(()) });
    registry.critical("*", "*", "critical", noop());
    registry.best_effort("*", "*", "best-effort", noop());
    // One clock that never moves, so that no lease or retention ends between
    // a delivery and its duplicate, however short.
    let clock = FixedClock::at_unix(NOW);
    let mut builder = Pipeline::builder()
        .store(MemoryStore::builder().clock(clock.clone()).build())
        .registry(registry)
        .clock(clock);
    let [github, shopify, with_stripe] = settings.verifiers;
    if github {
        builder = builder.verifier(GitHub::builder(SECRET).build().expect("a secret"));
    }
    if shopify {
        builder = builder.verifier(Shopify::builder(SECRET).build().expect("a secret"));
    }
    if with_stripe {
        builder = builder.verifier(stripe(&settings.stripe));
    }
    for (provider, limit) in &settings.limits {
        builder = match *limit {
            Setting::BodyLimit(bytes) => builder.body_limit(provider, bytes),
            Setting::AnswerBudget(budget) => builder.answer_budget(provider, budget),
            Setting::SettleReserve(reserve) => builder.settle_reserve(provider, reserve),
            Setting::CriticalDeadline(deadline) => builder.critical_deadline(provider, deadline),
            Setting::Lease(lease) => builder.lease(provider, lease),
            Setting::Retention(retention) => builder.retention(provider, retention),
        };
    }
    if let Some(max) = settings.max_concurrent_best_effort {
        builder = builder.max_concurrent_best_effort(max);
    }
    if let Some(max) = settings.max_pending_best_effort {
        builder = builder.max_pending_best_effort(max);
    }
    builder
}

/// A signed delivery of `provider`, new for each `n`.
fn delivery(provider: &str, n: u64) -> (Bytes, Headers) {
    let body = format!(r#"{{"id":"evt_{n}","type":"invoice.paid","action":"opened"}}"#);
    let pairs = match provider {
        "github" => github_headers(SECRET, body.as_bytes(), "issues", &format!("d-{n}")),
        "shopify" => shopify_headers(SECRET, body.as_bytes(), "orders/paid", &format!("w-{n}")),
        _ => stripe_headers(SECRET, body.as_bytes(), common::at(NOW)),
    };
    (Bytes::from(body), Headers::from_pairs(pairs))
}

/// What a built pipeline's limits must hold, whatever was set.
fn assert_invariants(provider: &str, limits: &ProviderLimits) {
    assert!(limits.body_limit > 0, "{provider}: {limits:?}");
    assert!(!limits.answer_budget.is_zero(), "{provider}: {limits:?}");
    assert!(
        !limits.critical_deadline.is_zero(),
        "{provider}: {limits:?}"
    );
    assert!(!limits.retention.is_zero(), "{provider}: {limits:?}");
    assert!(
        limits.settle_reserve < limits.answer_budget,
        "{provider}: {limits:?}"
    );
    assert!(
        limits.lease > limits.answer_budget,
        "{provider}: {limits:?}"
    );
    assert!(
        limits.lease > limits.critical_deadline,
        "{provider}: {limits:?}"
    );
}

/// Which error `build()` should give, judged from the settings alone where
/// that is simple: none of these may be reported as anything else.
fn expected_error(settings: &Settings) -> Option<fn(&BuildError) -> bool> {
    if settings.verifiers == [false; 3] {
        return Some(|e| matches!(e, BuildError::NoVerifier));
    }
    if settings.max_concurrent_best_effort == Some(0) {
        return Some(|e| matches!(e, BuildError::Zero("max_concurrent_best_effort")));
    }
    if settings.max_pending_best_effort == Some(0) {
        return Some(|e| matches!(e, BuildError::Zero("max_pending_best_effort")));
    }
    let named = |p: &str| {
        PROVIDERS
            .iter()
            .zip(settings.verifiers)
            .any(|(name, on)| on && *name == p)
    };
    if settings.limits.iter().any(|(p, _)| *p != "*" && !named(p)) {
        return Some(|e| matches!(e, BuildError::UnknownProvider { .. }));
    }
    None
}

/// How far a case got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Reached {
    /// `build()` refused the settings as [`expected_error`] said it would.
    Refused,
    /// `build()` refused a limit with a typed error.
    RefusedLimit,
    /// The pipeline built and answered deliveries.
    Answered,
}

fn check(settings: &Settings) -> Reached {
    let built = builder(settings).build();
    if let Some(expected) = expected_error(settings) {
        let err = built.expect_err("these settings cannot build");
        assert!(expected(&err), "{err:?}");
        return Reached::Refused;
    }
    let pipeline = match built {
        Ok(pipeline) => pipeline,
        Err(err) => {
            // A typed refusal of a limit: its message names the setting.
            assert!(
                matches!(
                    err,
                    BuildError::Zero(_)
                        | BuildError::LeaseNotLongerThanDeadline { .. }
                        | BuildError::LeaseNotLongerThanBudget { .. }
                        | BuildError::ReserveNotShorterThanBudget { .. }
                ),
                "{err:?}"
            );
            assert!(!err.to_string().is_empty());
            return Reached::RefusedLimit;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    for (n, provider) in PROVIDERS.iter().enumerate() {
        let Some(limits) = pipeline.limits(provider) else {
            continue;
        };
        assert_invariants(provider, &limits);
        let (body, headers) = delivery(provider, n as u64);
        let fits = body.len() <= limits.body_limit;
        runtime.block_on(async {
            let (outcome, best_effort) = pipeline.handle_deferred(body.clone(), &headers).await;
            if !fits {
                assert!(
                    matches!(outcome.kind, OutcomeKind::TooLarge { .. }),
                    "{outcome:?}"
                );
                return;
            }
            assert!(
                matches!(outcome.kind, OutcomeKind::Processed { best_effort: 1 }),
                "{provider} {limits:?}: {outcome:?}"
            );
            assert_eq!(outcome.critical_handlers, 1);
            if let Some(work) = best_effort {
                let report = work.await;
                assert_eq!(report.succeeded + report.refused, 1, "{report:?}");
            }
            let again = pipeline.handle(body, &headers).await;
            assert!(matches!(again.kind, OutcomeKind::Duplicate), "{again:?}");
        });
    }
    Reached::Answered
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_settings_build_or_fail_typed_and_the_pipeline_answers(settings in settings()) {
        let _ = check(&settings);
    }
}

/// The property is only as good as the pipelines it gets to build: most
/// generated settings must build and answer, and every kind of refusal must
/// occur.
#[test]
fn generated_settings_reach_every_branch() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = settings();
    let mut reached = std::collections::HashMap::new();
    for _ in 0..1_000 {
        let settings = strategy.new_tree(&mut runner).expect("a value").current();
        *reached.entry(check(&settings)).or_insert(0u32) += 1;
    }
    let count = |r| reached.get(&r).copied().unwrap_or(0);
    eprintln!("{reached:?}");
    assert!(count(Reached::Answered) >= 300, "{reached:?}");
    assert!(count(Reached::Refused) >= 50, "{reached:?}");
    assert!(count(Reached::RefusedLimit) >= 50, "{reached:?}");
}

#[test]
fn duration_max_everywhere_is_a_typed_error() {
    let mut settings = Settings {
        verifiers: [true; 3],
        stripe: StripeSettings {
            tolerance: Some(Some(Duration::MAX)),
            max_future_skew: Some(Duration::MAX),
            plain_timestamp: false,
        },
        limits: Vec::new(),
        max_concurrent_best_effort: Some(usize::MAX),
        max_pending_best_effort: Some(usize::MAX),
    };
    for limit in [
        Setting::AnswerBudget(Duration::MAX),
        Setting::SettleReserve(Duration::MAX),
        Setting::CriticalDeadline(Duration::MAX),
        Setting::Lease(Duration::MAX),
        Setting::Retention(Duration::MAX),
        Setting::BodyLimit(usize::MAX),
    ] {
        settings.limits.push(("*", limit));
    }
    let err = builder(&settings)
        .build()
        .expect_err("no lease outlasts Duration::MAX");
    assert!(
        matches!(err, BuildError::ReserveNotShorterThanBudget { .. }),
        "{err:?}"
    );
    assert_eq!(check(&settings), Reached::RefusedLimit);
}

#[test]
fn huge_but_consistent_limits_build_and_answer() {
    let settings = Settings {
        verifiers: [true; 3],
        stripe: StripeSettings {
            tolerance: Some(Some(Duration::ZERO)),
            max_future_skew: Some(Duration::ZERO),
            plain_timestamp: true,
        },
        limits: vec![
            (
                "*",
                Setting::AnswerBudget(Duration::from_secs(u64::MAX / 4)),
            ),
            ("*", Setting::Lease(Duration::MAX)),
            ("*", Setting::Retention(Duration::MAX)),
            ("*", Setting::BodyLimit(usize::MAX)),
            ("github", Setting::AnswerBudget(Duration::from_nanos(1))),
            ("github", Setting::SettleReserve(Duration::ZERO)),
            (
                "shopify",
                Setting::CriticalDeadline(Duration::from_nanos(1)),
            ),
        ],
        max_concurrent_best_effort: Some(usize::MAX),
        max_pending_best_effort: Some(1),
    };
    assert_eq!(check(&settings), Reached::Answered);
}
