//! Helpers shared by the test suites: verifier helpers here; signed deliveries
//! and handlers in `pipeline`; for the store tests, where the real servers are,
//! unique names so runs never collide (below), a cuttable TCP proxy (`proxy`)
//! and the scenarios every durable store must pass (`scenarios`).
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hookgate::{Headers, Verifier, VerifyError};
use time::OffsetDateTime;

/// The instant most tests sign and verify at.
pub const NOW: i64 = 1_700_000_000;

/// The instant `unix` seconds after the epoch.
pub fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("test timestamps are in range")
}

/// Headers from `(name, value)` pairs of any string-ish types.
pub fn headers<K: AsRef<str>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (K, V)>) -> Headers {
    Headers::from_pairs(pairs)
}

/// The given signed pairs with every header of that name replaced by `value`
/// (or removed when `value` is `None`).
pub fn replace(
    pairs: &[(String, String)],
    name: &str,
    value: Option<&[u8]>,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = pairs
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
        .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
        .collect();
    if let Some(value) = value {
        out.push((name.to_owned(), value.to_vec()));
    }
    out
}

/// The given pairs plus one more.
pub fn with(pairs: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut out = pairs.to_vec();
    out.push((name.to_owned(), value.to_owned()));
    out
}

/// Bodies every verifier must handle on raw bytes: not JSON, empty, non-ASCII
/// UTF-8, invalid UTF-8 with a byte-order mark, and 256 KiB.
pub fn awkward_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut big = br#"{"id":"evt_big","type":"big.event","pad":""#.to_vec();
    big.resize(256 * 1024 - 2, b'x');
    big.extend_from_slice(b"\"}");
    vec![
        ("not json", b"hello, world".to_vec()),
        ("empty", Vec::new()),
        (
            "non-ascii",
            "{\"name\":\"Zoë ☕ 日本\"}".as_bytes().to_vec(),
        ),
        (
            "invalid utf-8 with bom",
            b"\xef\xbb\xbf{\"a\":\"\xff\xfe\"}".to_vec(),
        ),
        ("256 KiB", big),
    ]
}

/// Asserts the error's HTTP status follows DESIGN.md: 400 malformed, 401 forged.
pub fn assert_status(err: &VerifyError) {
    let expected = match err {
        VerifyError::SignatureMismatch { .. } | VerifyError::TimestampOutsideTolerance { .. } => {
            401
        }
        _ => 400,
    };
    assert_eq!(err.status(), expected, "{err:?}");
}

/// Checks `verifier` on every awkward body: each one signed by `sign` verifies (an
/// empty body fails with `empty_body` when that is `Some`), and the same body
/// decoded and re-encoded lossily as UTF-8, as an SDK taking a string would, does not.
pub fn assert_raw_bytes_verify(
    verifier: &dyn Verifier,
    sign: impl Fn(&[u8]) -> Vec<(String, String)>,
    empty_body: Option<VerifyError>,
) {
    for (name, body) in awkward_bodies() {
        let signed = headers(sign(&body));
        let result = verifier.verify(&body, &signed, at(NOW));
        match (&empty_body, body.is_empty()) {
            (Some(expected), true) => assert_eq!(result.as_ref().err(), Some(expected), "{name}"),
            _ => assert!(result.is_ok(), "{name}: {result:?}"),
        }
        let lossy = String::from_utf8_lossy(&body).into_owned().into_bytes();
        if lossy != body {
            assert!(verifier.verify(&lossy, &signed, at(NOW)).is_err(), "{name}");
        }
    }
}

/// What every journal must do.
pub mod journal_suite;
/// Helpers of the pipeline tests.
#[cfg(feature = "tokio")]
pub mod pipeline;
/// A TCP proxy that can cut a store's connections.
pub mod proxy;

/// The outbox scenarios every database runs.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod outbox;
/// The scenarios every durable store must pass.
#[cfg(feature = "tokio")]
pub mod scenarios;
#[cfg(feature = "axum")]
pub mod server;
/// The provider's side of the transactional and outbox races.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod tx;

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

#[cfg(any(feature = "postgres", feature = "redis"))]
/// A builder refused a URL holding the password `secret`: with `InvalidUrl`,
/// and without repeating the password; `builder_debug` (another builder's
/// `Debug` with such a URL) hides it too.
pub fn assert_url_refused_quietly<T: std::fmt::Debug>(
    built: Result<T, hookgate::store::StoreConfigError>,
    builder_debug: String,
) {
    let Err(err @ hookgate::store::StoreConfigError::InvalidUrl(_)) = built else {
        panic!("{built:?}")
    };
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(!builder_debug.contains("secret"), "{builder_debug}");
}
