//! `tracing` spans and events and `metrics` series carry the documented names
//! and fields, and never a secret, a signature or a body byte.
#![cfg(all(feature = "tracing", feature = "metrics"))]

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::pipeline::{gh_delivery, github, store, GH_SECRET};
use hookgate::{handler_fn, HandlerError, Pipeline, Registry};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Field names and values, as text.
type FieldMap = HashMap<String, String>;
/// Labels and the value of each series of one metric.
type Series = Vec<(Vec<(String, String)>, String)>;

/// Every span (name and fields as recorded) and event seen.
#[derive(Default, Clone)]
struct Captured {
    spans: Arc<Mutex<HashMap<u64, (String, FieldMap)>>>,
    events: Arc<Mutex<Vec<(tracing::Level, FieldMap)>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.0
            .insert(field.name().to_owned(), text.trim_matches('"').to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Captured {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let name = attrs.metadata().name().to_owned();
        self.spans
            .lock()
            .unwrap()
            .insert(id.into_u64(), (name, fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some((_, fields)) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.events
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields));
    }
}

#[test]
fn spans_events_and_metrics_are_named_and_never_leak_a_secret_or_body() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(captured.clone());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();

    let down = Arc::new(AtomicBool::new(false));
    let failing = down.clone();
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "issues",
        "db",
        handler_fn(move |_e| {
            let fail = failing.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(HandlerError::transient("database down"))
                } else {
                    Ok(())
                }
            }
        }),
    );
    registry.best_effort(
        "github",
        "issues",
        "notify",
        handler_fn(|_e| async { Ok::<(), HandlerError>(()) }),
    );
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .build()
        .unwrap();
    let body = r#"{"action":"opened","issue":{"title":"TOPSECRETBODY"}}"#;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let (b, h) = gh_delivery("d-ok", body);
                let (outcome, work) = pipeline.handle_deferred(b, &h).await;
                assert_eq!(outcome.status(), 200);
                work.unwrap().await;
                down.store(true, Ordering::SeqCst);
                let (b, h) = gh_delivery("d-fail", body);
                assert_eq!(pipeline.handle(b, &h).await.status(), 500);
                let (b, h) = gh_delivery("d-ok", body);
                assert_eq!(pipeline.handle(b, &h).await.status(), 200, "a duplicate");
            })
        })
    });

    let spans = captured.spans.lock().unwrap().clone();
    let deliveries: Vec<&HashMap<String, String>> = spans
        .values()
        .filter(|(name, _)| name == "hookgate.delivery")
        .map(|(_, fields)| fields)
        .collect();
    assert_eq!(deliveries.len(), 3);
    let by_outcome = |outcome: &str| {
        *deliveries
            .iter()
            .find(|f| f.get("outcome").map(String::as_str) == Some(outcome))
            .unwrap_or_else(|| panic!("a {outcome} span in {deliveries:?}"))
    };
    let processed = by_outcome("processed");
    for (field, value) in [
        ("provider", "github"),
        ("event_id", "d-ok"),
        ("kind", "issues.opened"),
        ("status", "200"),
        ("attempt", "1"),
        ("replay", "false"),
    ] {
        assert_eq!(
            processed.get(field).map(String::as_str),
            Some(value),
            "{field} in {processed:?}"
        );
    }
    for field in ["verify_us", "claim_us", "critical_us", "total_us"] {
        assert!(
            processed
                .get(field)
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "{field} in {processed:?}"
        );
    }
    assert_eq!(
        by_outcome("critical_failed")
            .get("status")
            .map(String::as_str),
        Some("500")
    );
    assert_eq!(
        by_outcome("duplicate").get("status").map(String::as_str),
        Some("200")
    );
    let handlers: Vec<(String, String)> = spans
        .values()
        .filter(|(name, _)| name == "hookgate.handler")
        .map(|(_, f)| (f["handler"].clone(), f["role"].clone()))
        .collect();
    assert!(
        handlers.contains(&("db".into(), "critical".into())),
        "{handlers:?}"
    );
    assert!(
        handlers.contains(&("notify".into(), "best_effort".into())),
        "{handlers:?}"
    );

    let events = captured.events.lock().unwrap().clone();
    let warnings: Vec<_> = events
        .iter()
        .filter(|(level, _)| *level == tracing::Level::WARN)
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "only the 500 is warned about: {events:?}"
    );
    assert_eq!(warnings[0].1.get("status").map(String::as_str), Some("500"));
    assert!(
        warnings[0].1["reason"].contains("database down"),
        "{warnings:?}"
    );

    let everything = format!("{spans:?}{events:?}");
    for secret in [GH_SECRET, "TOPSECRETBODY", "sha256="] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }

    let metrics = snapshotter.snapshot().into_vec();
    let mut series: HashMap<String, Series> = HashMap::new();
    for (key, _unit, _desc, value) in &metrics {
        let labels = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let value = match value {
            DebugValue::Counter(n) => n.to_string(),
            DebugValue::Gauge(g) => g.into_inner().to_string(),
            DebugValue::Histogram(h) => format!("{} samples", h.len()),
        };
        series
            .entry(key.key().name().to_owned())
            .or_default()
            .push((labels, value));
    }
    let counter = |name: &str, labels: &[(&str, &str)]| -> String {
        let wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        series[name]
            .iter()
            .find(|(l, _)| wanted.iter().all(|w| l.contains(w)))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} {labels:?} in {series:?}"))
    };
    assert_eq!(
        counter(
            "hookgate_deliveries_total",
            &[("provider", "github"), ("outcome", "processed")]
        ),
        "1"
    );
    assert_eq!(
        counter(
            "hookgate_deliveries_total",
            &[("outcome", "critical_failed")]
        ),
        "1"
    );
    assert_eq!(
        counter("hookgate_deliveries_total", &[("outcome", "duplicate")]),
        "1"
    );
    assert_eq!(
        counter(
            "hookgate_best_effort_jobs_total",
            &[("handler", "notify"), ("result", "succeeded")]
        ),
        "1"
    );
    assert_eq!(counter("hookgate_in_flight", &[]), "0");
    assert_eq!(counter("hookgate_best_effort_pending", &[]), "0");
    assert_eq!(
        counter(
            "hookgate_delivery_duration_seconds",
            &[("provider", "github")]
        ),
        "3 samples"
    );
    for name in [
        "hookgate_verify_duration_seconds",
        "hookgate_claim_duration_seconds",
        "hookgate_critical_duration_seconds",
    ] {
        assert!(series.contains_key(name), "{name} in {series:?}");
    }
    let all = format!("{series:?}");
    assert!(!all.contains(GH_SECRET) && !all.contains("TOPSECRETBODY"));
}
