//! The admin routes over real HTTP on an ephemeral 127.0.0.1 port, beside the
//! webhook routes of the same pipeline: authentication on every route, the
//! build refusing open routes, complete and stable pagination while
//! deliveries keep arriving, filters, a record with its body, a failed GitHub
//! delivery found and replayed (and a forced replay), dead-letter retry,
//! `/health` flipping to 503 and back, `/metrics` from a Prometheus recorder,
//! and a journal that is down or missing.
#![cfg(all(feature = "axum", feature = "sqlite"))]

#[path = "common/admin_http.rs"]
mod admin_http;
mod common;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use admin_http::{bearer, call, get, post_empty, serve, Reply, Served};
use base64::Engine as _;
use common::pipeline::{github, issue_body, store, GH_SECRET};
use hookgate::async_trait;
use hookgate::axum::admin::{AdminBuildError, AdminRoutes};
use hookgate::health::HealthThresholds;
use hookgate::journal::sqlite::SqliteJournal;
use hookgate::journal::{
    Journal, JournalError, JournalFilter, JournalId, JournalPage, JournalQuery, JournalRecord,
    JournalWrite, MemoryJournal, StatusCounts,
};
use hookgate::{
    handler_fn, testing, HandlerError, Pipeline, PipelineBuilder, Registry, RetryPolicy,
};
use http::Method;
use serde_json::Value;

const TOKEN: &str = "admin-token-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

/// Switches for the handlers of [`Fixture`]'s pipeline.
#[derive(Clone, Default)]
struct Switches {
    /// The critical `issues` handler fails (transiently) while set.
    db_down: Arc<AtomicBool>,
    /// Runs of the critical handler.
    db_runs: Arc<AtomicU64>,
    /// The best-effort `notify` handler fails (permanently) while set.
    chat_down: Arc<AtomicBool>,
    /// Runs of the best-effort handler.
    chat_runs: Arc<AtomicU64>,
}

/// A GitHub pipeline: `issues` has a critical handler `db` and a best-effort
/// handler `notify`; `push` has none (ignored).
fn pipeline_builder(switches: &Switches) -> PipelineBuilder {
    let mut registry = Registry::new();
    let (down, runs) = (switches.db_down.clone(), switches.db_runs.clone());
    registry.critical(
        "github",
        "issues",
        "db",
        handler_fn(move |_event| {
            runs.fetch_add(1, Ordering::SeqCst);
            let failing = down.load(Ordering::SeqCst);
            async move {
                if failing {
                    Err(HandlerError::transient("database down"))
                } else {
                    Ok(())
                }
            }
        }),
    );
    let (down, runs) = (switches.chat_down.clone(), switches.chat_runs.clone());
    registry.best_effort(
        "github",
        "issues",
        "notify",
        handler_fn(move |_event| {
            runs.fetch_add(1, Ordering::SeqCst);
            let failing = down.load(Ordering::SeqCst);
            async move {
                if failing {
                    Err(HandlerError::permanent("channel archived"))
                } else {
                    Ok(())
                }
            }
        }),
    );
    let mut retry = RetryPolicy::default();
    retry.max_attempts = 1;
    retry.initial_backoff = Duration::from_millis(1);
    Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry)
        .retry_policy(retry)
}

/// The pipeline and its webhook (`/webhooks`) and admin (`/admin`) routes,
/// served.
struct Fixture {
    pipeline: Pipeline,
    server: Served,
    switches: Switches,
}

impl Fixture {
    async fn new(
        journal: impl Journal + 'static,
        configure: impl FnOnce(AdminRoutes) -> AdminRoutes,
    ) -> Self {
        let switches = Switches::default();
        let pipeline = pipeline_builder(&switches)
            .journal(journal)
            .build()
            .unwrap();
        Self::serve(pipeline, switches, configure).await
    }

    async fn serve(
        pipeline: Pipeline,
        switches: Switches,
        configure: impl FnOnce(AdminRoutes) -> AdminRoutes,
    ) -> Self {
        let admin = configure(AdminRoutes::new(pipeline.clone()))
            .build()
            .unwrap();
        let app = axum::Router::new()
            .nest("/webhooks", hookgate::axum::routes(pipeline.clone()))
            .nest("/admin", admin);
        Self {
            server: serve(app).await,
            pipeline,
            switches,
        }
    }

    /// Posts a signed GitHub delivery; its answer.
    async fn deliver(&self, event: &str, delivery_id: &str, body: &str) -> Reply {
        let headers = testing::github_headers(GH_SECRET, body.as_bytes(), event, delivery_id);
        call(
            self.server.addr,
            Method::POST,
            "/webhooks/github",
            &headers,
            body.to_owned(),
        )
        .await
    }

    async fn admin_get(&self, path: &str) -> Reply {
        get(self.server.addr, &format!("/admin{path}"), &bearer(TOKEN)).await
    }

    async fn admin_post(&self, path: &str) -> Reply {
        post_empty(self.server.addr, &format!("/admin{path}"), &bearer(TOKEN)).await
    }

    async fn flush(&self) {
        assert!(self.pipeline.flush_journal(WAIT).await, "journal flushed");
    }

    /// Every record id `GET /deliveries?{filter}` walks through, page by page.
    async fn walk(&self, filter: &str, limit: usize) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/deliveries?limit={limit}");
            if !filter.is_empty() {
                path.push('&');
                path.push_str(filter);
            }
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self.admin_get(&path).await;
            assert_eq!(page.status, 200, "{}", page.text());
            let page = page.json();
            ids.extend(record_ids(&page));
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }
}

fn record_ids(page: &Value) -> Vec<String> {
    page["records"]
        .as_array()
        .expect("a records array")
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// A signed GitHub delivery's headers.
fn gh_headers(event: &str, delivery_id: &str, body: &str) -> Vec<(String, String)> {
    testing::github_headers(GH_SECRET, body.as_bytes(), event, delivery_id)
}

fn sqlite() -> SqliteJournal {
    SqliteJournal::memory().build().unwrap()
}

/// Polls `check` until it holds (every 10 ms, for up to [`WAIT`]).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every admin route, as (method, path) with a record id that does not exist.
fn routes() -> Vec<(Method, String)> {
    let id = JournalId::generate();
    vec![
        (Method::GET, "/admin/deliveries".to_owned()),
        (Method::GET, format!("/admin/deliveries/{id}")),
        (Method::POST, format!("/admin/deliveries/{id}/replay")),
        (Method::POST, format!("/admin/dead-letter/{id}/retry")),
        (Method::GET, "/admin/health".to_owned()),
        (Method::GET, "/admin/metrics".to_owned()),
    ]
}

#[test]
fn build_refuses_open_routes_and_weak_tokens_without_printing_them() {
    let pipeline = pipeline_builder(&Switches::default()).build().unwrap();
    let refused = |routes: AdminRoutes| routes.build().unwrap_err();
    assert_eq!(
        refused(AdminRoutes::new(pipeline.clone())),
        AdminBuildError::NoAuth
    );
    assert_eq!(
        refused(AdminRoutes::new(pipeline.clone()).bearer_token("")),
        AdminBuildError::EmptyToken
    );
    let short = refused(AdminRoutes::new(pipeline.clone()).bearer_token("short-secret"));
    assert_eq!(short, AdminBuildError::TokenTooShort { len: 12, min: 16 });
    let newline = refused(AdminRoutes::new(pipeline.clone()).bearer_token(format!("{TOKEN}\n")));
    assert_eq!(newline, AdminBuildError::TokenNotPrintable);
    for err in [&short, &newline] {
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("short-secret") && !shown.contains(TOKEN),
            "{shown}"
        );
    }
    let routes = AdminRoutes::new(pipeline.clone())
        .bearer_token(TOKEN)
        .metrics(String::new);
    let shown = format!("{routes:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(routes.build().is_ok());
    assert!(AdminRoutes::new(pipeline)
        .authorize(|_| true)
        .build()
        .is_ok());
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_wrong_token_with_401() {
    let fixture = Fixture::new(sqlite(), |a| a.bearer_token(TOKEN)).await;
    let addr = fixture.server.addr;
    let wrong = "admin-token-0123456789abcdeF"; // same length, last byte differs
    for (method, path) in routes() {
        let missing = call(addr, method.clone(), &path, &[], "").await;
        assert_eq!(
            (missing.status, missing.code().as_str()),
            (401, "missing_token"),
            "{path}"
        );
        assert_eq!(
            missing.headers["www-authenticate"], "Bearer realm=\"hookgate-admin\"",
            "{path}"
        );
        let basic = vec![(
            "authorization".to_owned(),
            "Basic YWRtaW46YWRtaW4=".to_owned(),
        )];
        let basic = call(addr, method.clone(), &path, &basic, "").await;
        assert_eq!(
            (basic.status, basic.code().as_str()),
            (401, "missing_token"),
            "{path}"
        );
        for token in [wrong, "admin-token", &TOKEN[..TOKEN.len() - 1], "x"] {
            let refused = call(addr, method.clone(), &path, &bearer(token), "").await;
            assert_eq!(
                (refused.status, refused.code().as_str()),
                (401, "invalid_token"),
                "{path} {token}"
            );
            assert!(refused.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\""));
            assert!(!refused.text().contains(token));
        }
        let admitted = call(addr, method.clone(), &path, &bearer(TOKEN), "").await;
        assert!(
            ![401, 403].contains(&admitted.status),
            "{path}: {} {}",
            admitted.status,
            admitted.text()
        );
        assert_eq!(admitted.headers["cache-control"], "no-store", "{path}");
    }
}

#[tokio::test]
async fn every_route_refuses_a_failed_authorize_check_with_403() {
    let role_is_ops =
        |parts: &http::request::Parts| parts.headers.get("x-role").is_some_and(|v| v == "ops");
    let checked = Fixture::new(sqlite(), |a| a.authorize(role_is_ops)).await;
    let both = Fixture::new(sqlite(), |a| a.bearer_token(TOKEN).authorize(role_is_ops)).await;
    let ops = vec![("x-role".to_owned(), "ops".to_owned())];
    let dev = vec![("x-role".to_owned(), "dev".to_owned())];
    let mut ops_with_token = bearer(TOKEN);
    ops_with_token.extend(ops.clone());
    for (method, path) in routes() {
        let addr = checked.server.addr;
        for headers in [&vec![], &dev] {
            let refused = call(addr, method.clone(), &path, headers, "").await;
            assert_eq!(
                (refused.status, refused.code().as_str()),
                (403, "forbidden"),
                "{path}"
            );
            assert!(refused.headers.get("www-authenticate").is_none());
        }
        let admitted = call(addr, method.clone(), &path, &ops, "").await;
        assert!(![401, 403].contains(&admitted.status), "{path}");

        let addr = both.server.addr;
        let no_token = call(addr, method.clone(), &path, &ops, "").await;
        assert_eq!(no_token.status, 401, "{path}: the token comes first");
        let not_ops = call(addr, method.clone(), &path, &bearer(TOKEN), "").await;
        assert_eq!(
            (not_ops.status, not_ops.code().as_str()),
            (403, "forbidden"),
            "{path}"
        );
        let admitted = call(addr, method.clone(), &path, &ops_with_token, "").await;
        assert!(![401, 403].contains(&admitted.status), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_is_complete_and_stable_while_deliveries_arrive() {
    let fixture = Arc::new(Fixture::new(sqlite(), |a| a.bearer_token(TOKEN)).await);
    for n in 0..60 {
        let reply = fixture
            .deliver("issues", &format!("d-{n}"), &issue_body(n))
            .await;
        assert_eq!(reply.status, 200);
    }
    fixture.flush().await;
    let journal = fixture.pipeline.journal().unwrap();
    let before = common::journal_suite::walk(&*journal, &JournalFilter::default(), 1000).await;
    assert_eq!(before.len(), 60);

    // Walk with pages of 7; from the first page on, 3 more deliveries arrive
    // (and are written) between every two pages.
    let posted = Arc::new(AtomicU64::new(0));
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut inserter = None;
    let mut pages = 0u64;
    loop {
        let path = match &cursor {
            None => "/deliveries?limit=7".to_owned(),
            Some(cursor) => format!("/deliveries?limit=7&cursor={cursor}"),
        };
        let page = fixture.admin_get(&path).await.json();
        pages += 1;
        ids.extend(record_ids(&page));
        if inserter.is_none() {
            let (fixture, posted) = (fixture.clone(), posted.clone());
            inserter = Some(tokio::spawn(async move {
                for n in 100..130 {
                    let reply = fixture
                        .deliver("issues", &format!("d-{n}"), &issue_body(n))
                        .await;
                    assert_eq!(reply.status, 200);
                    fixture.flush().await;
                    posted.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        let want = (pages * 3).min(30);
        until("deliveries during the walk", || {
            let posted = posted.clone();
            async move { posted.load(Ordering::SeqCst) >= want }
        })
        .await;
    }
    assert!(
        posted.load(Ordering::SeqCst) >= 24,
        "deliveries arrived during the walk"
    );
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no record twice");
    let before: Vec<String> = before.iter().map(|id| id.to_string()).collect();
    assert_eq!(
        ids, before,
        "exactly the records there before the walk, newest first"
    );

    inserter.unwrap().await.unwrap();
    fixture.flush().await;
    let all = fixture.walk("", 9).await;
    assert_eq!(all.len(), 90);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 90);
    assert_eq!(&all[30..], &before[..], "the new ones come first");
}

#[tokio::test]
async fn filters_select_by_status_provider_kind_event_id_time_and_resolution() {
    let fixture = Fixture::new(sqlite(), |a| a.bearer_token(TOKEN)).await;
    for n in 0..3 {
        assert_eq!(
            fixture
                .deliver("issues", &format!("d-{n}"), &issue_body(n))
                .await
                .status,
            200
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(
        fixture
            .deliver("push", "d-push", r#"{"ref":"main"}"#)
            .await
            .status,
        200
    );
    fixture.switches.db_down.store(true, Ordering::SeqCst);
    assert_eq!(
        fixture
            .deliver("issues", "d-fail", &issue_body(9))
            .await
            .status,
        500
    );
    let forged = {
        let mut headers = gh_headers("issues", "d-forged", &issue_body(10));
        for (name, value) in &mut headers {
            if name.eq_ignore_ascii_case("x-hub-signature-256") {
                *value = format!("sha256={}", "0".repeat(64));
            }
        }
        call(
            fixture.server.addr,
            Method::POST,
            "/webhooks/github",
            &headers,
            issue_body(10),
        )
        .await
    };
    assert_eq!(forged.status, 401);
    fixture.flush().await;

    let count = |query: &'static str| {
        let fixture = &fixture;
        async move { fixture.walk(query, 50).await.len() }
    };
    assert_eq!(count("").await, 6);
    assert_eq!(count("status=processed").await, 3);
    assert_eq!(count("status=processed,ignored").await, 4);
    assert_eq!(count("status=processed&status=critical_failed").await, 4);
    assert_eq!(count("status=critical_failed&provider=github").await, 1);
    assert_eq!(count("status=unauthorized").await, 1);
    assert_eq!(count("provider=stripe").await, 0);
    assert_eq!(count("kind=push").await, 1);
    assert_eq!(count("kind=issues.opened").await, 4);
    assert_eq!(count("event_id=d-1").await, 1);

    let page = fixture.admin_get("/deliveries?event_id=d-1").await.json();
    let record = &page["records"][0];
    assert_eq!(record["status"], "processed");
    assert_eq!(record["kind"], "issues.opened");
    assert_eq!(record["http_status"], 200);
    assert!(record.get("body").is_none(), "lists never carry bodies");
    assert!(record.get("headers").is_none());
    let at_ms = record["received_at_ms"].as_i64().unwrap();
    let at = record["received_at"].as_str().unwrap().to_owned();
    let since_ms = fixture
        .walk(&format!("since={at_ms}&kind=issues.opened"), 50)
        .await;
    let until_ms = fixture
        .walk(&format!("until={at_ms}&kind=issues.opened"), 50)
        .await;
    assert_eq!(since_ms.len() + until_ms.len(), 4, "a partition");
    assert_eq!(until_ms.len(), 1, "d-0 only");
    let encoded = at.replace('+', "%2B");
    let since_rfc = fixture
        .walk(&format!("since={encoded}&kind=issues.opened"), 50)
        .await;
    assert_eq!(since_rfc, since_ms, "RFC 3339 and Unix ms agree");
    let window = fixture
        .walk(
            &format!("since={at_ms}&until={}&kind=issues.opened", at_ms + 1),
            50,
        )
        .await;
    assert_eq!(window, vec![record["id"].as_str().unwrap().to_owned()]);

    let journal = fixture.pipeline.journal().unwrap();
    let id: JournalId = record["id"].as_str().unwrap().parse().unwrap();
    assert!(journal.mark_resolved(id, SystemTime::now()).await.unwrap());
    assert_eq!(count("unresolved=true").await, 5);
    assert_eq!(count("unresolved=false").await, 6);

    for (query, mentions) in [
        ("status=bogus", "bogus"),
        ("stauts=processed", "stauts"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zz", "cursor"),
        ("since=yesterday", "since"),
        ("since=2000&until=1000", "since"),
        ("provider=a&provider=b", "provider"),
        ("provider=%zz", "percent"),
    ] {
        let refused = fixture.admin_get(&format!("/deliveries?{query}")).await;
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (400, "bad_query"),
            "{query}"
        );
        let message = refused.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(mentions), "{query}: {message}");
    }
}

#[tokio::test]
async fn a_record_comes_with_its_body_as_text_or_base64() {
    let fixture = Fixture::new(sqlite(), |a| a.bearer_token(TOKEN)).await;
    let body = issue_body(7);
    let processed = fixture.deliver("issues", "d-7", &body).await;
    assert_eq!(processed.status, 200);
    fixture.flush().await;
    let id = record_ids(&fixture.admin_get("/deliveries?event_id=d-7").await.json())[0].clone();
    let record = fixture.admin_get(&format!("/deliveries/{id}")).await;
    assert_eq!(record.status, 200);
    assert_eq!(record.headers["content-type"], "application/json");
    let record = record.json();
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["body_encoding"], "utf8");
    assert_eq!(record["body"], body.as_str());
    assert_eq!(record["body_size"], body.len());
    assert_eq!(record["replayable"], true);
    let headers: Vec<String> = record["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(
        headers.contains(&"x-github-event".to_owned()),
        "{headers:?}"
    );
    assert!(
        !headers.iter().any(|h| h.contains("signature")),
        "{headers:?}"
    );
    assert!(
        !record.to_string().contains("sha256="),
        "no signature value"
    );

    // Bytes that are not UTF-8 come back in base64.
    let raw: &[u8] = b"{\"action\":\"opened\",\"x\":\"\xff\xfe\"}";
    let mut headers = testing::github_headers(GH_SECRET, raw, "issues", "d-raw");
    headers.push(("content-type".into(), "application/json".into()));
    let reply = call(
        fixture.server.addr,
        Method::POST,
        "/webhooks/github",
        &headers,
        raw.to_vec(),
    )
    .await;
    assert!(reply.status < 500, "{}", reply.status);
    fixture.flush().await;
    // Not JSON once decoded, so no event id: it is the newest record.
    let newest = fixture.admin_get("/deliveries?limit=1").await.json();
    assert_eq!(newest["records"][0]["body_size"], raw.len());
    let id = record_ids(&newest)[0].clone();
    let record = fixture.admin_get(&format!("/deliveries/{id}")).await.json();
    assert_eq!(record["body_encoding"], "base64");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(record["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, raw);

    let missing = fixture
        .admin_get(&format!("/deliveries/{}", JournalId::generate()))
        .await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "not_found")
    );
    for bad in ["nope", "0123", "%zz", "0123456789abcdef0123456789abcdeg"] {
        let refused = fixture.admin_get(&format!("/deliveries/{bad}")).await;
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (400, "bad_id"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_failed_github_delivery_is_found_replayed_and_force_replayed() {
    let fixture = Fixture::new(sqlite(), |a| a.bearer_token(TOKEN)).await;
    let switches = &fixture.switches;
    switches.db_down.store(true, Ordering::SeqCst);
    let body = issue_body(42);
    let failed = fixture.deliver("issues", "d-42", &body).await;
    assert_eq!(failed.status, 500, "GitHub will not retry this on its own");

    // Written before the 500 was answered: no flush needed.
    let page = fixture
        .admin_get("/deliveries?status=critical_failed&provider=github&unresolved=true")
        .await
        .json();
    let ids = record_ids(&page);
    assert_eq!(ids.len(), 1);
    let original = ids[0].clone();
    assert_eq!(page["records"][0]["event_id"], "d-42");
    assert_eq!(page["records"][0]["http_status"], 500);
    assert!(page["records"][0]["error"]
        .as_str()
        .unwrap()
        .contains("database down"));

    switches.db_down.store(false, Ordering::SeqCst);
    let replayed = fixture
        .admin_post(&format!("/deliveries/{original}/replay"))
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    let replayed = replayed.json();
    assert_eq!(replayed["outcome"], "processed");
    assert_eq!(replayed["http_status"], 200);
    assert_eq!(replayed["replay_of"], original.as_str());
    assert_eq!(replayed["forced"], false);
    assert_eq!(replayed["event_id"], "d-42");
    let replay_id = replayed["journal_id"].as_str().unwrap().to_owned();
    assert_ne!(replay_id, original);
    assert_eq!(switches.db_runs.load(Ordering::SeqCst), 2);

    fixture.flush().await;
    let record = fixture
        .admin_get(&format!("/deliveries/{replay_id}"))
        .await
        .json();
    assert_eq!(record["status"], "processed");
    assert_eq!(record["replay_of"], original.as_str());
    assert_eq!(record["body"], body.as_str());

    // Again: the event is done, so nothing runs twice...
    let again = fixture
        .admin_post(&format!("/deliveries/{original}/replay"))
        .await
        .json();
    assert_eq!(again["outcome"], "duplicate");
    assert_eq!(switches.db_runs.load(Ordering::SeqCst), 2);
    // ...unless forced, which runs even the processed replay once more.
    let forced = fixture
        .admin_post(&format!("/deliveries/{replay_id}/replay?force=true"))
        .await;
    assert_eq!(forced.status, 200, "{}", forced.text());
    let forced = forced.json();
    assert_eq!(
        (forced["outcome"].as_str(), forced["forced"].as_bool()),
        (Some("processed"), Some(true))
    );
    assert_eq!(switches.db_runs.load(Ordering::SeqCst), 3);
    let unforced = fixture
        .admin_post(&format!("/deliveries/{replay_id}/replay?force=false"))
        .await
        .json();
    assert_eq!(unforced["outcome"], "duplicate");

    let bad_flag = fixture
        .admin_post(&format!("/deliveries/{original}/replay?force=yes"))
        .await;
    assert_eq!(
        (bad_flag.status, bad_flag.code().as_str()),
        (400, "bad_query")
    );
    let unknown = fixture
        .admin_post(&format!("/deliveries/{}/replay", JournalId::generate()))
        .await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "not_found")
    );
    let bad_id = fixture.admin_post("/deliveries/42/replay").await;
    assert_eq!((bad_id.status, bad_id.code().as_str()), (400, "bad_id"));

    // A delivery whose signature failed keeps no body: it cannot be replayed.
    let mut headers = gh_headers("issues", "d-forged", &body);
    for (name, value) in &mut headers {
        if name.eq_ignore_ascii_case("x-hub-signature-256") {
            *value = format!("sha256={}", "0".repeat(64));
        }
    }
    let forged = call(
        fixture.server.addr,
        Method::POST,
        "/webhooks/github",
        &headers,
        body.clone(),
    )
    .await;
    assert_eq!(forged.status, 401);
    fixture.flush().await;
    let forged_id = record_ids(
        &fixture
            .admin_get("/deliveries?status=unauthorized")
            .await
            .json(),
    )[0]
    .clone();
    let detail = fixture
        .admin_get(&format!("/deliveries/{forged_id}"))
        .await
        .json();
    assert_eq!(
        (detail["body"].clone(), detail["replayable"].clone()),
        (Value::Null, Value::Bool(false))
    );
    let refused = fixture
        .admin_post(&format!("/deliveries/{forged_id}/replay"))
        .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (422, "not_replayable")
    );
}

#[tokio::test]
async fn dead_lettered_work_is_retried() {
    let fixture = Fixture::new(sqlite(), |a| a.bearer_token(TOKEN)).await;
    let switches = &fixture.switches;
    switches.chat_down.store(true, Ordering::SeqCst);
    assert_eq!(
        fixture
            .deliver("issues", "d-chat", &issue_body(5))
            .await
            .status,
        200
    );
    assert_eq!(fixture.deliver("push", "d-push", "{}").await.status, 200);
    fixture.flush().await;
    let id = record_ids(
        &fixture
            .admin_get("/deliveries?event_id=d-chat")
            .await
            .json(),
    )[0]
    .clone();
    let state = || async {
        fixture.flush().await;
        let record = fixture.admin_get(&format!("/deliveries/{id}")).await.json();
        let job = &record["best_effort"][0];
        (
            job["handler"].as_str().unwrap_or_default().to_owned(),
            job["state"].as_str().unwrap_or_default().to_owned(),
        )
    };
    until("the job dead-lettered", || async {
        state().await == ("notify".to_owned(), "dead_lettered".to_owned())
    })
    .await;
    assert_eq!(switches.chat_runs.load(Ordering::SeqCst), 1);

    // Still failing, without waiting: 202, and it ends in the dead letter again.
    let accepted = fixture
        .admin_post(&format!("/dead-letter/{id}/retry"))
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let accepted = accepted.json();
    assert_eq!(
        (accepted["journal_id"].as_str(), accepted["jobs"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
    assert_eq!(accepted["report"], Value::Null);
    until("the retry ran", || async {
        switches.chat_runs.load(Ordering::SeqCst) == 2
    })
    .await;
    until("dead-lettered again", || async {
        state().await.1 == "dead_lettered"
    })
    .await;

    // Fixed, waiting for the report.
    switches.chat_down.store(false, Ordering::SeqCst);
    let retried = fixture
        .admin_post(&format!("/dead-letter/{id}/retry?wait=true"))
        .await;
    assert_eq!(retried.status, 200, "{}", retried.text());
    let report = &retried.json()["report"];
    assert_eq!(
        (
            report["succeeded"].as_u64(),
            report["dead_lettered"].as_u64()
        ),
        (Some(1), Some(0))
    );
    until("the job succeeded", || async {
        state().await.1 == "succeeded"
    })
    .await;
    let nothing = fixture
        .admin_post(&format!("/dead-letter/{id}/retry"))
        .await;
    assert_eq!(
        (nothing.status, nothing.code().as_str()),
        (409, "nothing_to_retry")
    );
    assert_eq!(switches.chat_runs.load(Ordering::SeqCst), 3);

    let push = record_ids(&fixture.admin_get("/deliveries?kind=push").await.json())[0].clone();
    let nothing = fixture
        .admin_post(&format!("/dead-letter/{push}/retry"))
        .await;
    assert_eq!(
        (nothing.status, nothing.code().as_str()),
        (409, "nothing_to_retry")
    );
    let unknown = fixture
        .admin_post(&format!("/dead-letter/{}/retry", JournalId::generate()))
        .await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "not_found")
    );
    let bad_flag = fixture
        .admin_post(&format!("/dead-letter/{id}/retry?wait=1"))
        .await;
    assert_eq!(
        (bad_flag.status, bad_flag.code().as_str()),
        (400, "bad_query")
    );
}

#[tokio::test]
async fn health_flips_to_503_under_failures_and_back() {
    // Unhealthy from the success rate (below 80 % of at least 10 verified
    // deliveries); the failure count alone only warns here.
    let switches = Switches::default();
    let pipeline = pipeline_builder(&switches)
        .journal(MemoryJournal::new())
        .health_thresholds(HealthThresholds {
            min_deliveries: 10,
            critical_failures_critical: 1_000,
            ..HealthThresholds::default()
        })
        .build()
        .unwrap();
    let fixture = Fixture::serve(pipeline, switches, |a| {
        a.bearer_token(TOKEN).health_window(Duration::from_secs(60))
    })
    .await;
    let health = fixture.admin_get("/health").await;
    assert_eq!(health.status, 200);
    let report = health.json();
    assert_eq!(report["status"], "healthy");
    assert_eq!(report["window_secs"], 60);
    assert_eq!(report["alerts"], Value::Array(vec![]));

    fixture.switches.db_down.store(true, Ordering::SeqCst);
    for n in 0..10 {
        assert_eq!(
            fixture
                .deliver("issues", &format!("f-{n}"), &issue_body(n))
                .await
                .status,
            500
        );
    }
    let health = fixture.admin_get("/health").await;
    assert_eq!(health.status, 503, "{}", health.text());
    let report = health.json();
    assert_eq!(report["status"], "unhealthy");
    assert_eq!(report["critical_failures"], 10);
    assert_eq!(report["success_rate"], 0.0);
    let alerts = report["alerts"].as_array().unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a["check"] == "success_rate" && a["severity"] == "critical"),
        "{alerts:?}"
    );
    assert!(alerts
        .iter()
        .all(|a| a["recommendation"].as_str().is_some_and(|r| !r.is_empty())));

    fixture.switches.db_down.store(false, Ordering::SeqCst);
    for n in 0..90 {
        assert_eq!(
            fixture
                .deliver("issues", &format!("ok-{n}"), &issue_body(n))
                .await
                .status,
            200
        );
    }
    let health = fixture.admin_get("/health").await;
    assert_eq!(health.status, 200, "{}", health.text());
    let report = health.json();
    assert_eq!(
        report["status"], "degraded",
        "90 % is above critical, below the warning"
    );
    assert_eq!(report["deliveries"], 100);
    assert!(report["processing_ms"]["p99"].as_f64().is_some());
}

#[tokio::test]
async fn metrics_is_404_without_an_exporter_and_serves_its_text_with_one() {
    let fixture = Fixture::new(sqlite(), |a| a.bearer_token(TOKEN)).await;
    let none = fixture.admin_get("/metrics").await;
    assert_eq!((none.status, none.code().as_str()), (404, "no_metrics"));

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let fixture = Fixture::new(sqlite(), move |a| {
        a.bearer_token(TOKEN).metrics(move || handle.render())
    })
    .await;
    let served = fixture.admin_get("/metrics").await;
    assert_eq!(served.status, 200);
    assert_eq!(
        served.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(served.text(), recorder.handle().render());
}

/// With the `metrics` feature, the pipeline's own counters reach the scrape:
/// the recorder is this thread's (the test runtime runs the server on it),
/// so no global recorder is installed.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "current_thread")]
async fn metrics_serves_the_pipelines_counters_from_a_prometheus_recorder() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let fixture = Fixture::new(sqlite(), move |a| {
        a.bearer_token(TOKEN).metrics(move || handle.render())
    })
    .await;
    assert_eq!(
        fixture
            .deliver("issues", "m-1", &issue_body(1))
            .await
            .status,
        200
    );
    assert_eq!(
        fixture
            .deliver("issues", "m-1", &issue_body(1))
            .await
            .status,
        200
    );
    let text = fixture.admin_get("/metrics").await.text();
    let line = |outcome: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("hookgate_deliveries_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .unwrap_or_else(|| panic!("no {outcome} line in:\n{text}"))
            .to_owned()
    };
    assert!(line("processed").ends_with(" 1"), "{}", line("processed"));
    assert!(line("duplicate").ends_with(" 1"), "{}", line("duplicate"));
    assert!(line("processed").contains("provider=\"github\""));
}

/// A journal that fails every call while `down` is set.
#[derive(Debug, Default)]
struct Switchable {
    inner: MemoryJournal,
    down: Arc<AtomicBool>,
}

impl Switchable {
    fn check(&self) -> Result<(), JournalError> {
        if self.down.load(Ordering::SeqCst) {
            Err(JournalError::unavailable("connection refused (test)"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Journal for Switchable {
    async fn write(&self, batch: Vec<JournalWrite>) -> Result<(), JournalError> {
        self.check()?;
        self.inner.write(batch).await
    }
    async fn get(&self, id: JournalId) -> Result<Option<JournalRecord>, JournalError> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn list(&self, query: &JournalQuery) -> Result<JournalPage, JournalError> {
        self.check()?;
        self.inner.list(query).await
    }
    async fn counts(&self, filter: &JournalFilter) -> Result<StatusCounts, JournalError> {
        self.check()?;
        self.inner.counts(filter).await
    }
    async fn mark_resolved(&self, id: JournalId, at: SystemTime) -> Result<bool, JournalError> {
        self.check()?;
        self.inner.mark_resolved(id, at).await
    }
    async fn purge_before(&self, before: SystemTime) -> Result<u64, JournalError> {
        self.check()?;
        self.inner.purge_before(before).await
    }
}

#[tokio::test]
async fn a_journal_down_answers_503_and_none_answers_501() {
    let journal = Switchable::default();
    let down = journal.down.clone();
    let fixture = Fixture::new(journal, |a| a.bearer_token(TOKEN)).await;
    fixture.switches.db_down.store(true, Ordering::SeqCst);
    assert_eq!(
        fixture
            .deliver("issues", "d-1", &issue_body(1))
            .await
            .status,
        500
    );
    let id = record_ids(&fixture.admin_get("/deliveries").await.json())[0].clone();

    down.store(true, Ordering::SeqCst);
    for reply in [
        fixture.admin_get("/deliveries").await,
        fixture.admin_get(&format!("/deliveries/{id}")).await,
        fixture
            .admin_post(&format!("/deliveries/{id}/replay"))
            .await,
        fixture
            .admin_post(&format!("/dead-letter/{id}/retry"))
            .await,
    ] {
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (503, "journal_unavailable")
        );
        assert_eq!(reply.headers["retry-after"], "5");
        assert!(
            !reply.text().contains("connection refused"),
            "no backend detail"
        );
    }
    assert_eq!(
        fixture.admin_get("/health").await.status,
        200,
        "health needs no journal"
    );
    down.store(false, Ordering::SeqCst);
    assert_eq!(
        fixture.admin_get(&format!("/deliveries/{id}")).await.status,
        200
    );

    let pipeline = pipeline_builder(&Switches::default()).build().unwrap();
    let bare = Fixture::serve(pipeline, Switches::default(), |a| a.bearer_token(TOKEN)).await;
    for reply in [
        bare.admin_get("/deliveries").await,
        bare.admin_get(&format!("/deliveries/{id}")).await,
        bare.admin_post(&format!("/deliveries/{id}/replay")).await,
        bare.admin_post(&format!("/dead-letter/{id}/retry")).await,
    ] {
        assert_eq!((reply.status, reply.code().as_str()), (501, "no_journal"));
    }
    assert_eq!(bare.admin_get("/health").await.status, 200);
}

#[tokio::test]
async fn replays_refused_for_an_unknown_provider_and_while_shutting_down() {
    // A Stripe delivery journaled by another pipeline sharing the journal.
    let journal = Arc::new(MemoryJournal::new());
    let mut registry = Registry::new();
    registry.critical(
        "stripe",
        "*",
        "fail",
        handler_fn(|_e| async { Err::<(), _>(HandlerError::transient("down")) }),
    );
    let stripe = Pipeline::builder()
        .verifier(
            hookgate::Stripe::builder(common::pipeline::STRIPE_SECRET)
                .build()
                .unwrap(),
        )
        .store(store())
        .registry(registry)
        .journal(journal.clone())
        .build()
        .unwrap();
    let body = r#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000}"#;
    let headers = hookgate::Headers::from_pairs(testing::stripe_headers(
        common::pipeline::STRIPE_SECRET,
        body.as_bytes(),
        time::OffsetDateTime::now_utc(),
    ));
    let failed = stripe.handle(body.as_bytes().to_vec(), &headers).await;
    assert_eq!(failed.status(), 500);
    let stripe_record = failed.journal_id.unwrap();

    let fixture = Fixture::new(journal, |a| a.bearer_token(TOKEN)).await;
    let refused = fixture
        .admin_post(&format!("/deliveries/{stripe_record}/replay"))
        .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (422, "unknown_provider")
    );
    assert!(refused.text().contains("stripe"));

    fixture.switches.db_down.store(true, Ordering::SeqCst);
    assert_eq!(
        fixture
            .deliver("issues", "d-1", &issue_body(1))
            .await
            .status,
        500
    );
    let id = record_ids(
        &fixture
            .admin_get("/deliveries?provider=github")
            .await
            .json(),
    )[0]
    .clone();
    fixture.pipeline.shutdown(Duration::from_secs(1)).await;
    let closing = fixture
        .admin_post(&format!("/deliveries/{id}/replay"))
        .await;
    assert_eq!(
        (closing.status, closing.code().as_str()),
        (503, "shutting_down")
    );
    assert_eq!(closing.headers["retry-after"], "5");
    assert_eq!(fixture.switches.db_runs.load(Ordering::SeqCst), 1, "no run");
}
