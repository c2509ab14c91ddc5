//! [`Outcome`] → [`http::Response`].

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::outcome::{Outcome, OutcomeKind};

/// The `Retry-After` of a 503 (the store failed or the pipeline is shutting
/// down): long enough for a restart or a store failover, short against the
/// providers' own retry schedules.
pub const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(5);

/// The response for an outcome: [`Outcome::status`], [`Outcome::body`] as
/// `text/plain` (for [`OutcomeKind::Handshake`], the handshake's own body and
/// content type), `Cache-Control: no-store`, and `Retry-After` (whole seconds)
/// where a client that honours it should wait:
///
/// - 409 [`OutcomeKind::InFlight`]: until the other attempt's lease ends (at
///   least 1 s);
/// - 503 [`OutcomeKind::StoreUnavailable`], [`OutcomeKind::ShuttingDown`], and
///   [`OutcomeKind::VerificationFailed`] with a 503 reason (the verifier's
///   certificate source failed or was too slow): [`RETRY_AFTER_UNAVAILABLE`].
///
/// The body never holds the internal reason (signature detail, handler or
/// store error); log [`Outcome::kind`] for that.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::{GitHub, Headers, MemoryStore, Pipeline};
///
/// let pipeline = Pipeline::builder()
///     .verifier(GitHub::builder("secret").build()?)
///     .store(MemoryStore::new())
///     .build()?;
/// let outcome = pipeline.handle(&b"{}"[..], &Headers::new()).await;
/// let response = hookgate::http::response(&outcome);
/// assert_eq!(response.status(), 400);
/// assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
/// # Ok(()) }
/// ```
pub fn response(outcome: &Outcome) -> Response<Full<Bytes>> {
    if let OutcomeKind::Handshake(handshake) = &outcome.kind {
        let mut response = plain(StatusCode::OK, "");
        *response.body_mut() = Full::new(handshake.body.clone());
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(handshake.content_type),
        );
        return response;
    }
    let status =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = plain(status, outcome.body());
    if let Some(seconds) = retry_after(&outcome.kind, SystemTime::now()) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

impl From<&Outcome> for Response<Full<Bytes>> {
    fn from(outcome: &Outcome) -> Self {
        response(outcome)
    }
}

impl From<Outcome> for Response<Full<Bytes>> {
    fn from(outcome: Outcome) -> Self {
        response(&outcome)
    }
}

/// A `text/plain` response that is never cached.
pub(crate) fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The seconds to put in `Retry-After`, if any.
fn retry_after(kind: &OutcomeKind, now: SystemTime) -> Option<u64> {
    match kind {
        OutcomeKind::InFlight { until } => {
            let left = until.duration_since(now).unwrap_or(Duration::ZERO);
            Some(ceil_seconds(left).max(1))
        }
        OutcomeKind::StoreUnavailable(_) | OutcomeKind::ShuttingDown => {
            Some(RETRY_AFTER_UNAVAILABLE.as_secs())
        }
        OutcomeKind::VerificationFailed(err) if err.status() == 503 => {
            Some(RETRY_AFTER_UNAVAILABLE.as_secs())
        }
        _ => None,
    }
}

fn ceil_seconds(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_waits_until_the_lease_ends_rounded_up() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let until = now + Duration::from_millis(24_001);
        assert_eq!(retry_after(&OutcomeKind::InFlight { until }, now), Some(25));
        let until = now + Duration::from_secs(24);
        assert_eq!(retry_after(&OutcomeKind::InFlight { until }, now), Some(24));
        // A lease already over (or a clock step) still says wait a second.
        let until = now - Duration::from_secs(5);
        assert_eq!(retry_after(&OutcomeKind::InFlight { until }, now), Some(1));
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert!(retry_after(&OutcomeKind::InFlight { until }, now).is_some());
    }

    #[test]
    fn only_409_and_503_carry_retry_after() {
        let now = SystemTime::now();
        assert_eq!(retry_after(&OutcomeKind::ShuttingDown, now), Some(5));
        let unavailable = crate::VerifyError::CertificateNotFetched;
        assert_eq!(
            retry_after(&OutcomeKind::VerificationFailed(unavailable), now),
            Some(5)
        );
        let refused = crate::VerifyError::CertificateUrlRefused { reason: "test" };
        assert_eq!(
            retry_after(&OutcomeKind::VerificationFailed(refused), now),
            None
        );
        assert_eq!(retry_after(&OutcomeKind::Duplicate, now), None);
        assert_eq!(retry_after(&OutcomeKind::Ignored, now), None);
        assert_eq!(
            retry_after(&OutcomeKind::Processed { best_effort: 0 }, now),
            None
        );
    }
}
