//! `Pipeline::health`: healthy, degraded and unhealthy under injected
//! failures, and healthy again once they stop and age out of the window.
//! Time is tokio's, paused: the window moves when the test advances it.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::pipeline::{gh_delivery, github, issue_body, store};
use hookgate::health::{AlertSeverity, HealthReport, HealthStatus, HealthThresholds};
use hookgate::{handler_fn, HandlerError, Pipeline, PipelineBuilder, Registry};

const WINDOW: Duration = Duration::from_secs(300);

/// A pipeline whose `issues` handler fails transiently while `down` is set
/// and sleeps `delay` milliseconds (virtual time) first.
fn pipeline(down: &Arc<AtomicBool>, delay: &Arc<AtomicU64>) -> PipelineBuilder {
    let (down, delay) = (down.clone(), delay.clone());
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "issues",
        "db",
        handler_fn(move |_event| {
            let failing = down.load(Ordering::SeqCst);
            let delay = Duration::from_millis(delay.load(Ordering::SeqCst));
            async move {
                tokio::time::sleep(delay).await;
                if failing {
                    Err(HandlerError::transient("database down"))
                } else {
                    Ok(())
                }
            }
        }),
    );
    Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
}

async fn deliver(pipeline: &Pipeline, from: u64, n: u64) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in from..from + n {
        let (body, headers) = gh_delivery(&format!("d-{i}"), &issue_body(i));
        statuses.push(pipeline.handle(body, &headers).await.status());
    }
    statuses
}

fn checks(report: &HealthReport) -> Vec<(&'static str, AlertSeverity)> {
    report
        .alerts
        .iter()
        .map(|a| (a.check, a.severity))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn failures_degrade_then_break_health_and_it_recovers_when_they_stop() {
    let down = Arc::new(AtomicBool::new(false));
    let delay = Arc::new(AtomicU64::new(0));
    let pipeline = pipeline(&down, &delay).build().unwrap();
    let report = pipeline.health(WINDOW);
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(
        (report.deliveries, report.success_rate, report.processing),
        (0, None, None)
    );

    assert_eq!(deliver(&pipeline, 0, 40).await, vec![200; 40]);
    let report = pipeline.health(WINDOW);
    assert_eq!(report.status, HealthStatus::Healthy, "{report:?}");
    assert_eq!((report.deliveries, report.verified), (40, 40));
    assert_eq!(report.success_rate, Some(1.0));
    assert!(report.processing.is_some());

    // One failure: a warning.
    down.store(true, Ordering::SeqCst);
    assert_eq!(deliver(&pipeline, 100, 1).await, vec![500]);
    let report = pipeline.health(WINDOW);
    assert_eq!(report.status, HealthStatus::Degraded, "{report:?}");
    assert_eq!(
        checks(&report),
        vec![("critical_failures", AlertSeverity::Warning)]
    );
    assert_eq!(report.critical_failures, 1);
    let alert = &report.alerts[0];
    assert!(
        alert.measured.contains("1 critical failures"),
        "{}",
        alert.measured
    );
    assert!(!alert.recommendation.is_empty());

    // Many: critical, and the success rate too.
    assert_eq!(deliver(&pipeline, 200, 14).await, vec![500; 14]);
    let report = pipeline.health(WINDOW);
    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:?}");
    assert_eq!(
        checks(&report),
        vec![
            ("critical_failures", AlertSeverity::Critical),
            ("success_rate", AlertSeverity::Critical),
        ]
    );
    assert_eq!(report.success_rate, Some(40.0 / 55.0));

    // The cause is fixed; once the failures leave the window, healthy again.
    down.store(false, Ordering::SeqCst);
    tokio::time::advance(WINDOW + Duration::from_secs(15)).await;
    assert_eq!(deliver(&pipeline, 300, 30).await, vec![200; 30]);
    let report = pipeline.health(WINDOW);
    assert_eq!(report.status, HealthStatus::Healthy, "{report:?}");
    assert_eq!((report.deliveries, report.critical_failures), (30, 0));
    // A longer window still sees them.
    let hour = pipeline.health(Duration::from_secs(3600));
    assert_eq!((hour.deliveries, hour.critical_failures), (85, 15));
    assert_eq!(hour.window, Duration::from_secs(3600));
    assert_eq!(
        pipeline.health(Duration::from_secs(7200)).window,
        Duration::from_secs(3600)
    );
    assert_eq!(
        pipeline.health(Duration::ZERO).window,
        Duration::from_secs(15)
    );
}

#[tokio::test(start_paused = true)]
async fn slow_handlers_and_duplicates_raise_their_own_alerts() {
    let down = Arc::new(AtomicBool::new(false));
    let delay = Arc::new(AtomicU64::new(3_000));
    let pipeline = pipeline(&down, &delay).build().unwrap();
    assert_eq!(deliver(&pipeline, 0, 20).await, vec![200; 20]);
    let report = pipeline.health(WINDOW);
    assert_eq!(
        checks(&report),
        vec![("processing_p95", AlertSeverity::Warning)],
        "{report:?}"
    );
    let [p50, p95, p99] = report.processing.unwrap();
    for p in [p50, p95, p99] {
        assert!(
            p >= Duration::from_millis(2_800) && p <= Duration::from_millis(3_200),
            "{p:?}"
        );
    }

    delay.store(6_000, Ordering::SeqCst);
    assert_eq!(deliver(&pipeline, 100, 2).await, vec![200; 2]);
    let report = pipeline.health(WINDOW);
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert_eq!(
        checks(&report),
        vec![("processing_p99", AlertSeverity::Critical)],
        "{report:?}"
    );

    // The provider retries what it already got: duplicates over 30 %.
    tokio::time::advance(WINDOW + Duration::from_secs(15)).await;
    delay.store(0, Ordering::SeqCst);
    assert_eq!(deliver(&pipeline, 500, 10).await, vec![200; 10]);
    assert_eq!(deliver(&pipeline, 500, 10).await, vec![200; 10]);
    let report = pipeline.health(WINDOW);
    assert_eq!(report.duplicate_rate, Some(0.5));
    assert_eq!(
        checks(&report),
        vec![("duplicate_rate", AlertSeverity::Warning)],
        "{report:?}"
    );
    // Too few deliveries to judge rates: no alert.
    let strict = HealthThresholds {
        min_deliveries: 21,
        ..HealthThresholds::default()
    };
    let pipeline = pipeline_with(&down, &delay, strict);
    deliver(&pipeline, 0, 10).await;
    deliver(&pipeline, 0, 10).await;
    assert_eq!(pipeline.health(WINDOW).status, HealthStatus::Healthy);
}

fn pipeline_with(down: &Arc<AtomicBool>, delay: &Arc<AtomicU64>, t: HealthThresholds) -> Pipeline {
    pipeline(down, delay).health_thresholds(t).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_stuck_attempt_shows_as_backlog_and_its_age() {
    let down = Arc::new(AtomicBool::new(false));
    let delay = Arc::new(AtomicU64::new(200_000));
    let pipeline = pipeline(&down, &delay)
        .answer_budget("github", Duration::from_secs(300))
        .lease("github", Duration::from_secs(600))
        .build()
        .unwrap();
    let worker = pipeline.clone();
    let stuck = tokio::spawn(async move { deliver(&worker, 0, 1).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = pipeline.health(WINDOW);
    assert_eq!(report.in_flight, 1);
    assert!(report
        .oldest_unsettled
        .is_some_and(|age| age >= Duration::from_secs(1)));
    assert_eq!(report.status, HealthStatus::Healthy);

    tokio::time::sleep(Duration::from_secs(60)).await;
    let report = pipeline.health(WINDOW);
    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:?}");
    assert_eq!(
        checks(&report),
        vec![("oldest_unsettled", AlertSeverity::Critical)]
    );

    let backlog = pipeline_with(
        &down,
        &delay,
        HealthThresholds {
            in_flight_warning: 0,
            ..HealthThresholds::default()
        },
    );
    let worker = backlog.clone();
    let second = tokio::spawn(async move { deliver(&worker, 0, 1).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        checks(&backlog.health(WINDOW)),
        vec![("in_flight", AlertSeverity::Warning)]
    );

    assert_eq!(stuck.await.unwrap(), vec![200]);
    let report = pipeline.health(WINDOW);
    assert_eq!((report.in_flight, report.oldest_unsettled), (0, None));
    second.abort();
    let _ = second.await;
    assert_eq!(
        backlog.health(WINDOW).in_flight,
        0,
        "a dropped attempt leaves the backlog"
    );
}

#[tokio::test(start_paused = true)]
async fn dead_lettered_best_effort_work_raises_its_rate() {
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "*",
        "noop",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    registry.best_effort(
        "github",
        "*",
        "slack",
        handler_fn(|_e| async { Err::<(), _>(HandlerError::permanent("channel archived")) }),
    );
    registry.best_effort(
        "github",
        "*",
        "email",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .build()
        .unwrap();
    for i in 0..5 {
        let (body, headers) = gh_delivery(&format!("d-{i}"), &issue_body(i));
        let (_, work) = pipeline.handle_deferred(body, &headers).await;
        work.unwrap().await;
    }
    let report = pipeline.health(WINDOW);
    assert_eq!(
        (report.best_effort_ended, report.dead_letter_rate),
        (10, Some(0.5))
    );
    assert_eq!(
        checks(&report),
        vec![("dead_letter_rate", AlertSeverity::Warning)],
        "{report:?}"
    );
    assert_eq!(report.status, HealthStatus::Degraded);
}
