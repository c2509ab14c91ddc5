//! The pipeline mounted with `hookgate::axum::routes`, over real HTTP on an
//! ephemeral 127.0.0.1 port: every row of the status table, the answers the
//! HTTP layer gives itself (405, 408), bodies past the limit refused while
//! they stream, large bodies accepted, and a graceful shutdown that loses no
//! accepted delivery.
#![cfg(feature = "axum")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::pipeline::*;
use common::server::{post, request, send, serve, upload, Server};
use futures_util::{stream, StreamExt};
use hookgate::{
    handler_fn, testing, FingerprintPolicy, HandlerError, OrderingGuard, PermanentFailurePolicy,
    Pipeline, PipelineBuilder, Registry, Stripe,
};
use http_body::Frame;
use http_body_util::StreamBody;
use time::OffsetDateTime;
use tokio::sync::Notify;

fn gh(delivery_id: &str, body: &str) -> Vec<(String, String)> {
    testing::github_headers(GH_SECRET, body.as_bytes(), "issues", delivery_id)
}

fn stripe_body(id: &str, object: &str, created: i64) -> String {
    format!(
        r#"{{"id":"{id}","object":"event","type":"customer.subscription.updated","created":{created},"data":{{"object":{{"id":"{object}"}}}}}}"#
    )
}

fn stripe_signed(body: &str) -> Vec<(String, String)> {
    testing::stripe_headers(STRIPE_SECRET, body.as_bytes(), OffsetDateTime::now_utc())
}

fn builder(registry: Registry) -> PipelineBuilder {
    Pipeline::builder()
        .verifier(github())
        .verifier(Stripe::builder(STRIPE_SECRET).build().unwrap())
        .verifier(shopify())
        .store(store())
        .registry(registry)
}

async fn mount(pipeline: &Pipeline) -> Server {
    serve(axum::Router::new().nest("/webhooks", hookgate::axum::routes(pipeline.clone()))).await
}

#[tokio::test]
async fn processed_then_duplicate_through_both_routes() {
    let tally = Tally::default();
    let pipeline = builder(registry_with_critical(tally.handler()))
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    let body = issue_body(1);

    let first = post(
        server.addr,
        "/webhooks/github",
        &gh("d-1", &body),
        body.clone(),
    )
    .await;
    assert_eq!((first.status, first.body.as_str()), (200, "ok"));
    assert_eq!(first.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(first.headers["cache-control"], "no-store");
    assert!(first.headers.get("retry-after").is_none());
    // The same delivery to the detecting route: a duplicate, nothing runs twice.
    let again = post(server.addr, "/webhooks", &gh("d-1", &body), body.clone()).await;
    assert_eq!(
        (again.status, again.body.as_str()),
        (200, "duplicate: already processed")
    );
    assert_eq!(tally.count("d-1"), 1);
    assert_eq!(server.consumed(), 2 * body.len() as u64);
    server.stop().await;
}

#[tokio::test]
async fn refusals_before_the_claim() {
    let tally = Tally::default();
    let mut registry = registry_with_critical(tally.handler());
    registry.critical("stripe", "*", "record", tally.handler());
    let pipeline = builder(registry).build().unwrap();
    let server = mount(&pipeline).await;
    let body = issue_body(2);

    // 400: no signature header at all; the body is not even read.
    let none = post(server.addr, "/webhooks", &[], body.clone()).await;
    assert_eq!(
        (none.status, none.body.as_str()),
        (400, "not a signed webhook delivery")
    );
    assert_eq!(server.consumed(), 0, "an unrecognised delivery is not read");
    // 400: a provider the pipeline does not know, by path.
    let unknown = post(
        server.addr,
        "/webhooks/paypal",
        &gh("d-2", &body),
        body.clone(),
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(server.consumed(), 0);
    // 400: a malformed signature header.
    let mut malformed = gh("d-2", &body);
    malformed[0].1 = "sha256=not-hex".to_owned();
    let answer = post(server.addr, "/webhooks/github", &malformed, body.clone()).await;
    assert_eq!(answer.status, 400);
    // 401: a signature that does not match; the reason is not in the body.
    let forged = gh("d-2", &issue_body(3));
    let answer = post(server.addr, "/webhooks/github", &forged, body.clone()).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (401, "invalid signature")
    );
    // 401: a Stripe timestamp outside the tolerance.
    let stripe = stripe_body("evt_old", "sub_1", 1);
    let old = testing::stripe_headers(
        STRIPE_SECRET,
        stripe.as_bytes(),
        OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    let answer = post(server.addr, "/webhooks/stripe", &old, stripe).await;
    assert_eq!(answer.status, 401);
    // 400: authentic but unusable (not JSON).
    let garbage = "not json";
    let answer = post(
        server.addr,
        "/webhooks/stripe",
        &stripe_signed(garbage),
        garbage,
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (400, "unusable payload")
    );
    // 200: no handler for this kind.
    let push = testing::github_headers(GH_SECRET, body.as_bytes(), "push", "d-push");
    let answer = post(server.addr, "/webhooks/github", &push, body.clone()).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "ignored: no handler for this event")
    );
    assert_eq!(tally.total(), 0, "no handler ran");
    let stats = pipeline.stats();
    assert_eq!(stats.ignored, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_changed_body_under_the_strict_policy_gets_422() {
    let tally = Tally::default();
    let pipeline = builder(registry_with_critical(tally.handler()))
        .fingerprint_policy(FingerprintPolicy::Strict)
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    let (one, two) = (issue_body(4), issue_body(5));
    assert_eq!(
        post(server.addr, "/webhooks/github", &gh("d-4", &one), one)
            .await
            .status,
        200
    );
    let answer = post(server.addr, "/webhooks/github", &gh("d-4", &two), two).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (422, "event id already used with a different body")
    );
    assert_eq!(tally.count("d-4"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_while_another_holds_the_lease_gets_409_with_retry_after() {
    let entered = Arc::new(Notify::new());
    let go_on = Arc::new(Notify::new());
    let handler = {
        let (entered, go_on) = (entered.clone(), go_on.clone());
        handler_fn(move |_| {
            let (entered, go_on) = (entered.clone(), go_on.clone());
            async move {
                entered.notify_one();
                go_on.notified().await;
                Ok::<(), HandlerError>(())
            }
        })
    };
    let pipeline = builder(registry_with_critical(handler)).build().unwrap();
    let server = mount(&pipeline).await;
    let body = issue_body(6);
    let first = {
        let (addr, body) = (server.addr, body.clone());
        tokio::spawn(async move { post(addr, "/webhooks/github", &gh("d-6", &body), body).await })
    };
    entered.notified().await;
    let busy = post(
        server.addr,
        "/webhooks/github",
        &gh("d-6", &body),
        body.clone(),
    )
    .await;
    assert_eq!(busy.status, 409);
    let lease = pipeline.limits("github").unwrap().lease.as_secs();
    let wait: u64 = busy.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=lease).contains(&wait),
        "Retry-After {wait} within the {lease} s lease"
    );
    go_on.notify_one();
    assert_eq!(first.await.unwrap().status, 200);
    server.stop().await;
}

#[tokio::test]
async fn an_older_event_of_an_object_gets_200_stale() {
    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("stripe", "*", "record", tally.handler());
    let pipeline = builder(registry)
        .ordering("stripe", OrderingGuard::stripe())
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    let newer = stripe_body("evt_new", "sub_1", 2_000);
    let older = stripe_body("evt_old", "sub_1", 1_000);
    let answer = post(
        server.addr,
        "/webhooks/stripe",
        &stripe_signed(&newer),
        newer,
    )
    .await;
    assert_eq!(answer.status, 200);
    let answer = post(
        server.addr,
        "/webhooks/stripe",
        &stripe_signed(&older),
        older,
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "stale: a newer event was already processed")
    );
    assert_eq!(tally.count("evt_old"), 0);
    server.stop().await;
}

#[tokio::test]
async fn critical_failures_get_500_or_200_once_dead_lettered() {
    let (calls, transient) = numbered(|call, _| async move {
        if call == 0 {
            Err(HandlerError::transient("the database is restarting"))
        } else {
            Ok(())
        }
    });
    let pipeline = builder(registry_with_critical(transient)).build().unwrap();
    let server = mount(&pipeline).await;
    let body = issue_body(7);
    let failed = post(
        server.addr,
        "/webhooks/github",
        &gh("d-7", &body),
        body.clone(),
    )
    .await;
    assert_eq!(
        (failed.status, failed.body.as_str()),
        (500, "processing failed: retry later")
    );
    assert!(
        !failed.body.contains("database"),
        "the handler's error stays out of the answer"
    );
    let redelivered = post(server.addr, "/webhooks/github", &gh("d-7", &body), body).await;
    assert_eq!(redelivered.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.stop().await;

    // A permanent failure: 200 once in the dead letter (the default policy)…
    let (_, permanent) = numbered(|_, _| async { Err(HandlerError::permanent("bad order")) });
    let pipeline = builder(registry_with_critical(permanent)).build().unwrap();
    let server = mount(&pipeline).await;
    let body = issue_body(8);
    let answer = post(server.addr, "/webhooks/github", &gh("d-8", &body), body).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "accepted"));
    assert_eq!(pipeline.memory_dead_letter().unwrap().len(), 1);
    server.stop().await;

    // …and 500 under the retry policy.
    let (_, permanent) = numbered(|_, _| async { Err(HandlerError::permanent("bad order")) });
    let pipeline = builder(registry_with_critical(permanent))
        .permanent_failure_policy(PermanentFailurePolicy::Retry)
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    let body = issue_body(9);
    let answer = post(server.addr, "/webhooks/github", &gh("d-9", &body), body).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (500, "processing failed")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_store_that_is_down_and_a_pipeline_shutting_down_get_503_with_retry_after() {
    let tally = Tally::default();
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(DownStore::default())
        .registry(registry_with_critical(tally.handler()))
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    let body = issue_body(10);
    let answer = post(
        server.addr,
        "/webhooks/github",
        &gh("d-10", &body),
        body.clone(),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (503, "temporarily unavailable: retry later")
    );
    assert_eq!(answer.headers["retry-after"], "5");
    assert!(
        !answer.body.contains("refused"),
        "the store's error stays out"
    );
    server.stop().await;

    let pipeline = builder(registry_with_critical(tally.handler()))
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    pipeline.shutdown(Duration::from_millis(10)).await;
    let answer = post(server.addr, "/webhooks/github", &gh("d-11", &body), body).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["retry-after"], "5");
    assert_eq!(tally.total(), 0);
    server.stop().await;
}

#[tokio::test]
async fn other_methods_get_405_and_a_body_that_stalls_gets_408() {
    let tally = Tally::default();
    let pipeline = builder(registry_with_critical(tally.handler()))
        .answer_budget("github", Duration::from_millis(300))
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    let answer = send(server.addr, request("GET", "/webhooks/github", &[], ""))
        .await
        .unwrap();
    assert_eq!(answer.status, 405);

    // The headers arrive, then a first chunk, then nothing: 408 once the
    // answer budget is spent, and no handler runs.
    let body = issue_body(12);
    let chunk = Bytes::from(body.clone().into_bytes());
    let frames =
        stream::iter([Ok::<_, std::io::Error>(Frame::data(chunk))]).chain(stream::pending());
    let mut stalled = request("POST", "/webhooks/github", &gh("d-12", &body), "").map(|_| ());
    stalled.headers_mut().remove("content-length");
    let stalled = stalled.map(|()| StreamBody::new(frames));
    let started = std::time::Instant::now();
    let answer = send(server.addr, stalled).await.unwrap();
    assert_eq!(answer.status, 408);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(tally.total(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_mb_github_body_gets_413_with_less_than_1_mb_read() {
    let tally = Tally::default();
    let pipeline = builder(registry_with_critical(tally.handler()))
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    let size = 30_000_000;
    let headers = gh("d-huge", "");

    // Announced by Content-Length: refused before a byte of it is read.
    let (status, body, _) = upload(server.addr, "/webhooks/github", &headers, size, true).await;
    assert_eq!((status, body.as_str()), (413, "payload too large"));
    assert!(
        server.consumed() < 1_000_000,
        "the server read {} bytes",
        server.consumed()
    );
    assert_eq!(server.consumed(), 0);

    // Chunked, with no length: refused as soon as it passes the 25 MiB
    // limit, the rest never read.
    // (How much the client wrote depends on the socket buffers, not on
    // the server: only what the server read is asserted.)
    let (status, _, _) = upload(server.addr, "/webhooks/github", &headers, size, false).await;
    assert_eq!(status, 413);
    let limit = pipeline.limits("github").unwrap().body_limit as u64;
    let consumed = server.consumed();
    assert!(
        consumed > limit && consumed <= limit + 64 * 1024,
        "read {consumed} bytes for a {limit} byte limit"
    );

    let stats = pipeline.stats();
    assert_eq!(stats.too_large, 2);
    assert_eq!(tally.total(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_github_body_is_processed() {
    let seen = Arc::new(AtomicU64::new(0));
    let handler = {
        let seen = seen.clone();
        handler_fn(move |event: hookgate::Event| {
            let seen = seen.clone();
            async move {
                seen.store(event.body().len() as u64, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        })
    };
    let pipeline = builder(registry_with_critical(handler)).build().unwrap();
    let server = mount(&pipeline).await;
    let body = format!(
        r#"{{"action":"opened","issue":{{"number":20}},"pad":"{}"}}"#,
        "x".repeat(20_000_000)
    );
    // Streamed in chunks, as a real client sends it.
    let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = Bytes::from(body.clone())
        .chunks(256 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let request = request("POST", "/webhooks/github", &gh("d-20mb", &body), "")
        .map(|_| StreamBody::new(stream::iter(chunks)));
    let answer = send(server.addr, request).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    assert_eq!(seen.load(Ordering::SeqCst), body.len() as u64);
    assert_eq!(server.consumed(), body.len() as u64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_no_accepted_delivery() {
    const IN_FLIGHT: u64 = 8;
    let entered = Arc::new(AtomicU64::new(0));
    let critical_done = Arc::new(AtomicU64::new(0));
    let best_effort_done = Arc::new(AtomicU64::new(0));
    let release = Arc::new(Notify::new());
    let mut registry = Registry::new();
    {
        let (entered, critical_done, release) =
            (entered.clone(), critical_done.clone(), release.clone());
        registry.critical(
            "github",
            "issues",
            "slow",
            handler_fn(move |_| {
                let (entered, critical_done, release) =
                    (entered.clone(), critical_done.clone(), release.clone());
                async move {
                    entered.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    critical_done.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), HandlerError>(())
                }
            }),
        );
    }
    {
        let best_effort_done = best_effort_done.clone();
        registry.best_effort(
            "github",
            "issues",
            "notify",
            handler_fn(move |_| {
                let best_effort_done = best_effort_done.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    best_effort_done.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), HandlerError>(())
                }
            }),
        );
    }
    let pipeline = builder(registry).build().unwrap();
    let server = mount(&pipeline).await;
    let addr = server.addr;
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|n| {
            let body = issue_body(100 + n);
            let headers = gh(&format!("d-shut-{n}"), &body);
            tokio::spawn(async move { post(addr, "/webhooks/github", &headers, body).await })
        })
        .collect();
    while entered.load(Ordering::SeqCst) < IN_FLIGHT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Stop accepting while every delivery is inside its critical handler.
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connection once shutdown began"
    );
    for _ in 0..IN_FLIGHT {
        release.notify_one();
    }
    release.notify_waiters();
    for request in requests {
        assert_eq!(
            request.await.unwrap().status,
            200,
            "in-flight deliveries finish"
        );
    }
    stopping.await.unwrap();
    // Then the pipeline drains the best-effort work.
    let report = pipeline.shutdown(Duration::from_secs(5)).await;
    assert_eq!(critical_done.load(Ordering::SeqCst), IN_FLIGHT);
    let drained = best_effort_done.load(Ordering::SeqCst);
    let dead_lettered = pipeline.memory_dead_letter().unwrap().len() as u64;
    assert_eq!(
        drained + dead_lettered,
        IN_FLIGHT,
        "every job ran or is in the dead letter: {report:?}"
    );
    assert_eq!(drained, IN_FLIGHT, "5 s is plenty to drain 50 ms jobs");
}

#[tokio::test]
async fn the_delivery_extractor_reads_like_the_routes() {
    use axum::extract::State;
    use axum::response::IntoResponse;
    use hookgate::axum::Delivery;

    async fn webhook(State(pipeline): State<Pipeline>, delivery: Delivery) -> impl IntoResponse {
        let provider = delivery.provider().map(str::to_owned);
        assert_eq!(delivery.headers().get("x-github-event"), Ok(Some("issues")));
        let size = delivery.body().len();
        let outcome = delivery.handle(&pipeline).await;
        (
            [("x-provider", provider.unwrap_or_default())],
            [("x-size", size.to_string())],
            outcome,
        )
    }

    let tally = Tally::default();
    let pipeline = builder(registry_with_critical(tally.handler()))
        .body_limit("github", 256)
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/hooks/{provider}", axum::routing::post(webhook))
        .route("/hooks", axum::routing::post(webhook))
        .with_state(pipeline.clone());
    let server = serve(app).await;
    let body = issue_body(30);

    let named = post(
        server.addr,
        "/hooks/github",
        &gh("d-30", &body),
        body.clone(),
    )
    .await;
    assert_eq!((named.status, named.body.as_str()), (200, "ok"));
    assert_eq!(named.headers["x-provider"], "github");
    assert_eq!(named.headers["x-size"], body.len().to_string().as_str());
    let detected = post(server.addr, "/hooks", &gh("d-30", &body), body.clone()).await;
    assert_eq!(detected.status, 200);
    assert_eq!(detected.headers["x-provider"], "github", "detected");
    assert_eq!(detected.body, "duplicate: already processed");

    // Over the limit: the handler is not called, the refusal is the answer.
    let big = format!(r#"{{"action":"opened","pad":"{}"}}"#, "x".repeat(300));
    let refused = post(server.addr, "/hooks/github", &gh("d-31", &big), big).await;
    assert_eq!(refused.status, 413);
    assert!(refused.headers.get("x-provider").is_none());
    assert_eq!(pipeline.stats().too_large, 1);
    assert_eq!(tally.count("d-30"), 1);
    server.stop().await;
}

/// A request's method and target, as a verifier saw them.
type RequestLine = (Option<String>, Option<String>);

/// Accepts any delivery with an `X-Url-Signed` header and notes the request
/// line it was handed, as a verifier that signs the URL (Twilio) reads it.
#[derive(Debug, Default, Clone)]
struct UrlSigned {
    seen: Arc<std::sync::Mutex<Vec<RequestLine>>>,
}

impl hookgate::Verifier for UrlSigned {
    fn provider(&self) -> &str {
        "urlsigned"
    }
    fn detect(&self, headers: &hookgate::Headers) -> bool {
        headers.contains("x-url-signed")
    }
    fn verify(
        &self,
        _body: &[u8],
        headers: &hookgate::Headers,
        _now: OffsetDateTime,
    ) -> Result<hookgate::Verified, hookgate::VerifyError> {
        self.seen.lock().unwrap().push((
            headers.method().map(str::to_owned),
            headers.request_target().map(str::to_owned),
        ));
        Ok(hookgate::Verified::new(None, 0))
    }
    fn handshake(
        &self,
        _body: &[u8],
        headers: &hookgate::Headers,
    ) -> Option<hookgate::verify::Handshake> {
        let challenge = headers.get("x-challenge").ok().flatten()?;
        Some(hookgate::verify::Handshake::json(format!(
            r#"{{"challenge":"{challenge}"}}"#
        )))
    }
    fn identify(
        &self,
        _body: &[u8],
        headers: &hookgate::Headers,
    ) -> Result<hookgate::Identity, hookgate::IdentifyError> {
        let id = headers.get("x-url-signed").ok().flatten().unwrap_or("none");
        Ok(hookgate::Identity::new(id, "ping"))
    }
}

#[tokio::test]
async fn verifiers_see_the_request_line_as_the_client_sent_it() {
    let verifier = UrlSigned::default();
    let pipeline = Pipeline::builder()
        .verifier(verifier.clone())
        .store(store())
        .build()
        .unwrap();
    let app = axum::Router::new()
        .nest("/webhooks", hookgate::axum::routes(pipeline.clone()))
        .route_service(
            "/service",
            hookgate::http::WebhookService::new(pipeline.clone()),
        );
    let server = serve(app).await;
    let signed = [("X-Url-Signed".to_owned(), "1".to_owned())];
    for path in [
        "/webhooks/urlsigned?To=%2B15551234567&Body=hi%20there",
        "/webhooks?a=1",
        "/service?b=2",
    ] {
        assert_eq!(post(server.addr, path, &signed, "{}").await.status, 200);
    }
    let seen = verifier.seen.lock().unwrap().clone();
    let post = Some("POST".to_owned());
    assert_eq!(
        seen,
        vec![
            (
                post.clone(),
                Some("/webhooks/urlsigned?To=%2B15551234567&Body=hi%20there".to_owned())
            ),
            (post.clone(), Some("/webhooks?a=1".to_owned())),
            (post, Some("/service?b=2".to_owned())),
        ],
        "the nest prefix is kept and nothing is decoded"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_endpoint_check_is_answered_with_its_challenge_and_nothing_is_claimed() {
    use hookgate::journal::{DeliveryStatus, Journal, JournalQuery, MemoryJournal};
    let tally = Tally::default();
    let mut registry = Registry::new();
    registry.critical("urlsigned", "*", "record", tally.handler());
    let journal = MemoryJournal::new();
    let pipeline = Pipeline::builder()
        .verifier(UrlSigned::default())
        .store(store())
        .registry(registry)
        .journal(journal.clone())
        .build()
        .unwrap();
    let server = mount(&pipeline).await;
    let check = [
        ("X-Url-Signed".to_owned(), "evt-1".to_owned()),
        (
            "X-Challenge".to_owned(),
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".to_owned(),
        ),
    ];
    let answer = post(server.addr, "/webhooks/urlsigned", &check, "{}").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.body,
        r#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#
    );
    assert_eq!(tally.total(), 0, "no handler runs for an endpoint check");
    // Nothing was claimed: the same id as an event runs its handler.
    let event = [("X-Url-Signed".to_owned(), "evt-1".to_owned())];
    let answer = post(server.addr, "/webhooks/urlsigned", &event, "{}").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
    assert_eq!(tally.count("evt-1"), 1);
    let stats = pipeline.stats();
    assert_eq!(
        (stats.handshake, stats.processed, stats.deliveries()),
        (1, 1, 2)
    );
    assert!(pipeline.flush_journal(Duration::from_secs(5)).await);
    let page = journal.list(&JournalQuery::default()).await.unwrap();
    let statuses: Vec<_> = page.records.iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&DeliveryStatus::Handshake),
        "{statuses:?}"
    );
    server.stop().await;
}
