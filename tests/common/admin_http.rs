//! For the admin and allowlist tests: a router served on an ephemeral
//! 127.0.0.1 port (with or without `ConnectInfo`), and a client (hyper-util's
//! legacy client) that sends one request and reads the whole answer.
//! Included with `#[path]` by the test files that use it.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A server that stops when dropped.
pub struct Served {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` with `ConnectInfo<SocketAddr>`, as the allowlist needs.
pub async fn serve(app: Router) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("the server runs");
    });
    Served { addr, task }
}

/// Serves `app` without `ConnectInfo`.
pub async fn serve_without_connect_info(app: Router) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("bound");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the server runs");
    });
    Served { addr, task }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {status} {body}",
                status = self.status,
                body = String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {:?}", self.json()))
            .to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `addr` and reads the answer.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(body.into()))
        .expect("a valid request");
    let response = client.request(request).await.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the whole body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".to_owned(), format!("Bearer {token}"))]
}

/// `GET path` with these headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Reply {
    call(addr, Method::GET, path, headers, Bytes::new()).await
}

/// `POST path` with these headers and no body.
pub async fn post_empty(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Reply {
    call(addr, Method::POST, path, headers, Bytes::new()).await
}
