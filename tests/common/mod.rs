//! Helpers shared by the store tests: where the real servers are, unique names
//! so runs never collide, a cuttable TCP proxy, and the scenarios every durable
//! store must pass.
// Each test file uses the helpers of its own store only.
#![allow(dead_code)]

pub mod proxy;
pub mod scenarios;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The PostgreSQL server the tests use: `HOOKGATE_POSTGRES_URL`, or the local one.
pub fn postgres_url() -> String {
    std::env::var("HOOKGATE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The Redis server the tests use: `HOOKGATE_REDIS_URL`, or the local one.
pub fn redis_url() -> String {
    std::env::var("HOOKGATE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A name no other test or run uses: `hg_<tag>_<pid>_<micros>_<n>` (a valid
/// SQL identifier, under 48 characters for short tags).
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() % 1_000_000_000_000);
    format!(
        "hg_{tag}_{}_{micros}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `host:port` of a `scheme://[user[:password]@]host:port/…` URL.
pub fn url_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// The server address of a URL, resolved.
pub async fn url_addr(url: &str) -> SocketAddr {
    tokio::net::lookup_host(url_authority(url))
        .await
        .expect("resolve the server")
        .next()
        .expect("the server has an address")
}

/// `url` pointing at `addr` instead of its own host and port.
pub fn url_with_addr(url: &str, addr: SocketAddr) -> String {
    url.replacen(url_authority(url), &addr.to_string(), 1)
}
