//! `WebhookService` without axum: served by hyper directly over real HTTP,
//! and inside a tower stack.
#![cfg(feature = "http")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::pipeline::*;
use hookgate::http::WebhookService;
use hookgate::{testing, Pipeline};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, ServiceBuilder, ServiceExt};

fn pipeline(tally: &Tally) -> Pipeline {
    Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(tally.handler()))
        .body_limit("github", 1024)
        .build()
        .unwrap()
}

fn delivery(delivery_id: &str, body: &str) -> Request<Full<Bytes>> {
    let mut request = Request::post("/hooks/github")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    for (name, value) in testing::github_headers(GH_SECRET, body.as_bytes(), "issues", delivery_id)
    {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    request
}

async fn text(response: http::Response<Full<Bytes>>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn served_by_hyper_directly() {
    let tally = Tally::default();
    let service = WebhookService::new(pipeline(&tally));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let body = issue_body(1);
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    // Two requests on one kept-alive connection.
    for expected in ["ok", "duplicate: already processed"] {
        let mut request = delivery("d-hyper", &body);
        request
            .headers_mut()
            .insert("host", "127.0.0.1".parse().unwrap());
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let answer = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(answer, expected.as_bytes());
    }
    assert_eq!(tally.count("d-hyper"), 1);
    server.abort();
}

#[tokio::test]
async fn inside_a_tower_stack() {
    let tally = Tally::default();
    let mut stack = ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .service(WebhookService::new(pipeline(&tally)));
    let body = issue_body(2);
    let response = ServiceExt::<Request<Full<Bytes>>>::ready(&mut stack)
        .await
        .unwrap()
        .call(delivery("d-tower", &body))
        .await
        .unwrap();
    assert_eq!(text(response).await, (200, "ok".to_owned()));
    assert_eq!(tally.count("d-tower"), 1);
}

#[tokio::test]
async fn for_provider_methods_limits_and_unknown_names() {
    let tally = Tally::default();
    let pipeline = pipeline(&tally);
    let named = WebhookService::for_provider(pipeline.clone(), "github");
    assert!(format!("{named:?}").contains("github"));

    // Not POST: 405 with Allow.
    let mut get = delivery("d-get", &issue_body(3));
    *get.method_mut() = http::Method::GET;
    let response = named.clone().oneshot(get).await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(response.status(), 405);

    // Over the 1 KiB limit: 413, counted by the pipeline.
    let big = format!(r#"{{"action":"opened","pad":"{}"}}"#, "x".repeat(2048));
    let response = named
        .clone()
        .oneshot(delivery("d-big", &big))
        .await
        .unwrap();
    assert_eq!(text(response).await, (413, "payload too large".to_owned()));
    assert_eq!(pipeline.stats().too_large, 1);

    // A name the pipeline does not know: 400, the body unread.
    let unknown = WebhookService::for_provider(pipeline.clone(), "gitlab");
    let response = unknown
        .oneshot(delivery("d-unknown", &issue_body(4)))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(pipeline.stats().bad_request, 1);
    assert_eq!(tally.total(), 0);
}

#[tokio::test]
async fn a_body_refused_unread_is_journaled_with_its_announced_size() {
    use hookgate::journal::{DeliveryStatus, Journal, JournalQuery, MemoryJournal};
    let journal = MemoryJournal::new();
    let pipeline = Pipeline::builder()
        .verifier(github())
        .store(store())
        .registry(registry_with_critical(Tally::default().handler()))
        .body_limit("github", 1024)
        .journal(journal.clone())
        .build()
        .unwrap();
    let mut request = delivery("d-announced", &issue_body(5));
    request
        .headers_mut()
        .insert("content-length", "30000000".parse().unwrap());
    let response = WebhookService::new(pipeline.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(pipeline.flush_journal(Duration::from_secs(5)).await);
    let page = journal.list(&JournalQuery::default()).await.unwrap();
    let [record] = &page.records[..] else {
        panic!("one record: {:?}", page.records);
    };
    assert_eq!(record.status, DeliveryStatus::TooLarge);
    assert_eq!(record.http_status, 413);
    assert_eq!(record.body_size, 30_000_000);
    assert_eq!(record.provider.as_deref(), Some("github"));
    assert!(
        record.body.is_none(),
        "nothing of an unverified body is kept"
    );
    assert!(record.error.as_deref().unwrap().contains("30000000"));
}
