//! Helpers shared by the verifier test suites.
#![allow(dead_code)] // each test binary uses a different subset

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

/// Helpers of the pipeline tests.
pub mod pipeline;
