//! A complete webhook receiver: Stripe, GitHub and Shopify routes on
//! 127.0.0.1, an SQLite idempotency store and journal, and a graceful
//! shutdown that stops accepting, finishes the deliveries in flight and
//! drains the best-effort work.
//!
//! ```text
//! cargo run --example server --features axum,sqlite
//! cargo run --example send --features http -- --url http://127.0.0.1:3000/webhooks/stripe --provider stripe --count 100
//! ```
//!
//! Settings, from the environment:
//! - `HOOKGATE_ADDR`: where to listen (default `127.0.0.1:3000`; port 0 for any);
//! - `HOOKGATE_STORE`: `sqlite` (default: a file in the temp dir, or the path
//!   in `HOOKGATE_DB`), `memory`, or a `postgres://` URL (with the `postgres`
//!   feature) for the idempotency store;
//! - `STRIPE_WEBHOOK_SECRET`, `GITHUB_WEBHOOK_SECRET`, `SHOPIFY_WEBHOOK_SECRET`:
//!   the signing secrets (defaults: the demo secrets `examples/send` signs
//!   with);
//! - `HOOKGATE_JOURNAL`: `sqlite` (default, in the same file as the store),
//!   `memory` or `off`;
//! - `HOOKGATE_ADMIN_TOKEN`: the bearer token of the admin routes under
//!   `/admin` (without it they are not mounted); `HOOKGATE_ADMIN_ALLOW`: the
//!   addresses allowed to reach them (CIDRs, default `127.0.0.1, ::1`);
//! - `HOOKGATE_RUN_FOR`: stop after this many seconds (otherwise on Ctrl-C).
//!
//! Routes: `POST /webhooks/{stripe,github,shopify}` and `POST /webhooks`
//! (provider detected); with a token, `GET /admin/deliveries`,
//! `GET /admin/deliveries/{id}`, `POST /admin/deliveries/{id}/replay`,
//! `POST /admin/dead-letter/{id}/retry`, `GET /admin/health` and
//! `GET /admin/metrics` (with the `metrics` feature), rate limited to 20
//! requests a second.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use hookgate::axum::admin::AdminRoutes;
use hookgate::axum::IpAllowlist;
use hookgate::journal::sqlite::SqliteJournal;
use hookgate::journal::MemoryJournal;
use hookgate::store::sqlite::SqliteStore;
use hookgate::{
    handler_fn, GitHub, HandlerError, IdempotencyStore, MemoryStore, Pipeline, Registry, Shopify,
    Stripe,
};

const STRIPE_DEMO_SECRET: &str = "whsec_hookgate_demo";
const GITHUB_DEMO_SECRET: &str = "github_hookgate_demo";
const SHOPIFY_DEMO_SECRET: &str = "shopify_hookgate_demo";

/// What the receiver's handlers did, counted.
#[derive(Default)]
struct Effects {
    orders_paid: AtomicU64,
    pushes_built: AtomicU64,
    orders_created: AtomicU64,
    notifications: AtomicU64,
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn registry(effects: &Arc<Effects>) -> Registry {
    let count = |counter: fn(&Effects) -> &AtomicU64| {
        let effects = Arc::clone(effects);
        handler_fn(move |_event| {
            counter(&effects).fetch_add(1, Ordering::Relaxed);
            async { Ok::<(), HandlerError>(()) }
        })
    };
    let mut registry = Registry::new();
    registry
        // Critical work: it must succeed before the 2xx.
        .critical(
            "stripe",
            "checkout.session.completed",
            "mark_order_paid",
            count(|e| &e.orders_paid),
        )
        .critical("github", "push", "start_build", count(|e| &e.pushes_built))
        .critical(
            "shopify",
            "orders/create",
            "reserve_stock",
            count(|e| &e.orders_created),
        )
        // Best-effort work: after the answer, retried, dead-lettered when it
        // keeps failing.
        .best_effort(
            "stripe",
            "checkout.session.completed",
            "email_receipt",
            count(|e| &e.notifications),
        )
        .best_effort(
            "shopify",
            "orders/create",
            "notify_warehouse",
            count(|e| &e.notifications),
        );
    registry
}

async fn store(
    database: &PathBuf,
) -> Result<Arc<dyn IdempotencyStore>, Box<dyn std::error::Error>> {
    let choice = setting("HOOKGATE_STORE", "sqlite");
    Ok(match choice.as_str() {
        "memory" => Arc::new(MemoryStore::new()),
        "sqlite" => {
            let store = SqliteStore::file(database).build()?;
            store.migrate().await?;
            Arc::new(store)
        }
        #[cfg(feature = "postgres")]
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = hookgate::store::postgres::PostgresStore::connect(url).build()?;
            store.migrate().await?;
            Arc::new(store)
        }
        other => return Err(format!("HOOKGATE_STORE: unknown store `{other}`").into()),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = std::env::var_os("HOOKGATE_DB").map_or_else(
        || std::env::temp_dir().join(format!("hookgate-server-{}.sqlite3", std::process::id())),
        PathBuf::from,
    );
    let effects = Arc::new(Effects::default());
    let builder = Pipeline::builder()
        .verifier(Stripe::builder(setting("STRIPE_WEBHOOK_SECRET", STRIPE_DEMO_SECRET)).build()?)
        .verifier(GitHub::builder(setting("GITHUB_WEBHOOK_SECRET", GITHUB_DEMO_SECRET)).build()?)
        .verifier(Shopify::builder(setting("SHOPIFY_WEBHOOK_SECRET", SHOPIFY_DEMO_SECRET)).build()?)
        .store(store(&database).await?)
        .registry(registry(&effects));
    let pipeline = match setting("HOOKGATE_JOURNAL", "sqlite").as_str() {
        "sqlite" => {
            let journal = SqliteJournal::file(&database).build()?;
            journal.migrate().await?;
            builder.journal(journal)
        }
        "memory" => builder.journal(MemoryJournal::new()),
        "off" => builder,
        other => return Err(format!("HOOKGATE_JOURNAL: unknown journal `{other}`").into()),
    }
    .build()?;

    let mut app = axum::Router::new().nest("/webhooks", hookgate::axum::routes(pipeline.clone()));
    if let Some(admin) = admin_routes(&pipeline)? {
        app = app.nest("/admin", admin);
    }

    let addr: SocketAddr = setting("HOOKGATE_ADDR", "127.0.0.1:3000").parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("hookgate listening on http://{}", listener.local_addr()?);
    println!(
        "  store: {}, journal: {} ({})",
        setting("HOOKGATE_STORE", "sqlite"),
        setting("HOOKGATE_JOURNAL", "sqlite"),
        database.display()
    );

    let run_for = std::env::var("HOOKGATE_RUN_FOR")
        .ok()
        .map(|s| s.parse::<u64>().map(Duration::from_secs))
        .transpose()?;
    // 1. Stop accepting and finish the requests in flight.
    // The admin allowlist reads the client address from `ConnectInfo`.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop_signal(run_for))
    .await?;
    // 2. Drain the best-effort work (what is still pending after 10 s goes
    //    to the dead letter and is listed in the report).
    let report = pipeline.shutdown(Duration::from_secs(10)).await;
    let stats = pipeline.stats();
    println!(
        "stopped after {} deliveries: {} processed, {} duplicates, {} ignored, {} refused; \
         effects: {} orders paid, {} builds, {} orders reserved, {} notifications; \
         best-effort work abandoned at shutdown: {} (drained: {})",
        stats.deliveries(),
        stats.processed,
        stats.duplicate,
        stats.ignored,
        stats.deliveries() - stats.processed - stats.duplicate - stats.ignored,
        effects.orders_paid.load(Ordering::Relaxed),
        effects.pushes_built.load(Ordering::Relaxed),
        effects.orders_created.load(Ordering::Relaxed),
        effects.notifications.load(Ordering::Relaxed),
        report.abandoned.len(),
        report.drained,
    );
    Ok(())
}

/// The admin routes, when `HOOKGATE_ADMIN_TOKEN` is set: bearer token, IP
/// allowlist, and a rate limit through tower's own layers (a request that
/// cannot start within a second of arriving is answered 429).
fn admin_routes(pipeline: &Pipeline) -> Result<Option<axum::Router>, Box<dyn std::error::Error>> {
    let Ok(token) = std::env::var("HOOKGATE_ADMIN_TOKEN") else {
        println!("  admin routes: off (set HOOKGATE_ADMIN_TOKEN to mount them under /admin)");
        return Ok(None);
    };
    let allow: IpAllowlist = setting("HOOKGATE_ADMIN_ALLOW", "127.0.0.1, ::1").parse()?;
    let admin = AdminRoutes::new(pipeline.clone())
        .bearer_token(token)
        .allow_ips(allow);
    #[cfg(feature = "metrics")]
    let admin = {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)?;
        admin.metrics(move || handle.render())
    };
    let limit = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            StatusCode::TOO_MANY_REQUESTS
        }))
        .timeout(Duration::from_secs(1))
        .layer(tower::buffer::BufferLayer::new(64))
        .rate_limit(20, Duration::from_secs(1));
    println!("  admin routes: /admin (bearer token, rate limited)");
    Ok(Some(admin.build()?.layer(limit)))
}

/// Ctrl-C, or the end of `run_for`.
async fn stop_signal(run_for: Option<Duration>) {
    let timer = async {
        match run_for {
            Some(run_for) => tokio::time::sleep(run_for).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("Ctrl-C: shutting down"),
        () = timer => println!("HOOKGATE_RUN_FOR elapsed: shutting down"),
    }
}
