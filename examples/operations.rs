//! Operating hookgate with a journal (SQLite): a GitHub delivery fails
//! critically (500; GitHub never retries it), an operator finds it with a
//! query, replays it once the database is back, and it ends processed; then
//! the journal's counts by status and the health report.
//!
//! `cargo run --example operations --features sqlite`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hookgate::journal::sqlite::SqliteJournal;
use hookgate::journal::{DeliveryStatus, Journal, JournalFilter, JournalQuery};
use hookgate::store::sqlite::SqliteStore;
use hookgate::{
    handler_fn, testing, GitHub, HandlerError, Headers, Pipeline, Registry, ReplayOptions,
};

const SECRET: &str = "github-webhook-secret";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("hookgate-operations-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database = dir.join("hookgate.sqlite3");

    // The critical handler writes to a database that is down at first.
    let database_up = Arc::new(AtomicBool::new(false));
    let up = database_up.clone();
    let mut registry = Registry::new();
    registry.critical(
        "github",
        "issues.opened",
        "create_ticket",
        handler_fn(move |event| {
            let up = up.load(Ordering::SeqCst);
            async move {
                if !up {
                    return Err(HandlerError::transient(
                        "tickets database: connection refused",
                    ));
                }
                println!(
                    "  create_ticket: ticket for issue {}",
                    event.json()?["issue"]["number"]
                );
                Ok(())
            }
        }),
    );

    let journal = SqliteJournal::file(&database).build()?;
    journal.migrate().await?;
    let pipeline = Pipeline::builder()
        .verifier(GitHub::builder(SECRET).build()?)
        .store(SqliteStore::file(&database).build()?)
        .registry(registry)
        .journal(journal)
        .build()?;

    // 1. GitHub delivers `issues.opened`; the handler fails: 500.
    let body = br#"{"action":"opened","issue":{"number":1347,"title":"Found a bug"}}"#;
    let headers = Headers::from_pairs(testing::github_headers(
        SECRET,
        body,
        "issues",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    ));
    let outcome = pipeline.handle(&body[..], &headers).await;
    println!(
        "delivery answered {} ({})",
        outcome.status(),
        outcome.kind.name()
    );
    assert_eq!(outcome.status(), 500);

    // 2. The operator looks for GitHub deliveries that failed and nobody handled.
    let journal = pipeline.journal().expect("the pipeline has a journal");
    let failed = journal
        .list(&JournalQuery::new(JournalFilter {
            statuses: vec![
                DeliveryStatus::CriticalFailed,
                DeliveryStatus::StoreUnavailable,
            ],
            provider: Some("github".into()),
            unresolved: true,
            ..JournalFilter::default()
        }))
        .await?;
    println!("failed GitHub deliveries: {}", failed.records.len());
    for record in &failed.records {
        println!(
            "  {} {} {} delivery {} attempt {:?}: {}",
            record.id,
            record.kind.as_deref().unwrap_or("?"),
            record.status,
            record.delivery_id.as_deref().unwrap_or("?"),
            record.attempt,
            record.error.as_deref().unwrap_or(""),
        );
    }

    // 3. The database is back: replay each one, and mark it resolved when it worked.
    database_up.store(true, Ordering::SeqCst);
    for record in &failed.records {
        let replayed = pipeline.replay(record.id, ReplayOptions::default()).await?;
        println!(
            "replay of {} answered {} ({})",
            record.id,
            replayed.status(),
            replayed.kind.name()
        );
        assert!(replayed.is_success());
        journal.mark_resolved(record.id, SystemTime::now()).await?;
    }

    // 4. The state of the journal.
    pipeline.flush_journal(Duration::from_secs(1)).await;
    let counts = journal.counts(&JournalFilter::default()).await?;
    println!("journal, by status:");
    for (status, count) in &counts {
        println!("  {status:<16} {count}");
    }
    assert_eq!(counts.get(&DeliveryStatus::Processed), Some(&1));
    let stats = pipeline.stats();
    println!(
        "stats: {} critical failures answered, {} journal writes, {} dropped",
        stats.critical_failed, stats.journal_written, stats.journal_dropped
    );

    // 5. The health report of the last five minutes: the 500 is still in it.
    let health = pipeline.health(Duration::from_secs(300));
    println!(
        "health: {} ({} deliveries, {} critical failures, success rate {:.0} %)",
        health.status,
        health.deliveries,
        health.critical_failures,
        health.success_rate.unwrap_or(1.0) * 100.0
    );
    for alert in &health.alerts {
        println!("  {:?} {}: {}", alert.severity, alert.check, alert.measured);
        println!("    → {}", alert.recommendation);
    }

    pipeline.shutdown(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
