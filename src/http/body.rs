//! Reading a request under its provider's limits.

use std::error::Error as StdError;

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};

use super::response::{plain, response};
use crate::headers::Headers;
use crate::outcome::Outcome;
use crate::pipeline::Pipeline;

/// An error of the request body stream (a reset connection, bad chunking).
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The most memory reserved ahead of the data for a body announced by its
/// `Content-Length`; past it the buffer grows as bytes arrive, so a client
/// cannot make the server reserve a large body it never sends.
const RESERVE_AHEAD: usize = 1024 * 1024;

/// A request read under its provider's limits, ready for the pipeline.
#[derive(Debug)]
pub(crate) struct Received {
    /// The provider the delivery goes to: the one named by the route, or
    /// the one detected. `None`: no verifier recognises the headers, so the
    /// body was not read (the pipeline answers 400 for an unknown provider).
    pub(crate) provider: Option<String>,
    pub(crate) headers: Headers,
    pub(crate) body: Bytes,
}

impl Received {
    /// Runs the pipeline on it.
    pub(crate) async fn handle(self, pipeline: &Pipeline) -> Outcome {
        match &self.provider {
            Some(name) => pipeline.handle_for(name, self.body, &self.headers).await,
            None => pipeline.handle(self.body, &self.headers).await,
        }
    }
}

/// Reads a delivery: the headers (with the method and request target), then
/// the body while it streams, refusing
/// it with 413 as soon as it passes the provider's
/// [`body_limit`](crate::ProviderLimits::body_limit) (at once when its
/// `Content-Length` says so) and with 408 when it does not arrive within the
/// provider's [`answer_budget`](crate::ProviderLimits::answer_budget). The
/// refusal is the `Err` response to send.
///
/// The body of a delivery no verifier recognises, or routed to a provider
/// the pipeline does not know, is not read at all: the pipeline refuses it
/// with 400 whatever it holds.
pub(crate) async fn receive<B>(
    pipeline: &Pipeline,
    provider: Option<&str>,
    parts: &Parts,
    body: B,
) -> Result<Received, Response<Full<Bytes>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let headers = Headers::from(parts);
    let provider = match provider {
        Some(name) => Some(name),
        None => pipeline.detect(&headers),
    };
    let Some(limits) = provider.and_then(|name| pipeline.limits(name)) else {
        return Ok(Received {
            provider: provider.map(str::to_owned),
            headers,
            body: Bytes::new(),
        });
    };
    let limit = limits.body_limit;
    let announced = content_length(&parts.headers);
    if let Some(length) = announced.filter(|&length| length > limit as u64) {
        let size = usize::try_from(length).unwrap_or(usize::MAX);
        return Err(response(
            &pipeline.refuse_too_large(provider, &headers, size).await,
        ));
    }
    let reading = read_limited(body, limit, announced);
    match tokio::time::timeout(limits.answer_budget, reading).await {
        Ok(Ok(body)) => Ok(Received {
            provider: provider.map(str::to_owned),
            headers,
            body,
        }),
        Ok(Err(ReadError::TooLarge(read))) => Err(response(
            &pipeline.refuse_too_large(provider, &headers, read).await,
        )),
        Ok(Err(ReadError::Body)) => Err(plain(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        )),
        Err(_elapsed) => Err(plain(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
    }
}

/// The `Content-Length` header's value, when there is exactly one valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()?.trim().parse().ok()
}

/// Why a body was not read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// It passed the limit; holds the bytes received when it did (at least
    /// the limit plus one).
    TooLarge(usize),
    /// The body stream failed.
    Body,
}

/// Reads a body up to `limit` bytes, stopping at the first frame that passes
/// it (the rest is never polled). A body that arrives in one frame is kept
/// as is, without a copy. `announced` (its `Content-Length`) sizes the
/// buffer, up to [`RESERVE_AHEAD`].
pub(crate) async fn read_limited<B>(
    body: B,
    limit: usize,
    announced: Option<u64>,
) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Body)?;
        let Ok(mut data) = frame.into_data() else {
            // Trailers carry nothing a verifier reads.
            continue;
        };
        let len = data.remaining();
        total = total.saturating_add(len);
        if total > limit {
            return Err(ReadError::TooLarge(total));
        }
        if len == 0 {
            continue;
        }
        let chunk = data.copy_to_bytes(len);
        if let Some(joined) = &mut joined {
            joined.extend_from_slice(&chunk);
        } else if let Some(earlier) = first.take() {
            let ahead = announced
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0)
                .min(RESERVE_AHEAD);
            let mut buffer = BytesMut::with_capacity(ahead.max(total));
            buffer.extend_from_slice(&earlier);
            buffer.extend_from_slice(&chunk);
            joined = Some(buffer);
        } else {
            first = Some(chunk);
        }
    }
    Ok(match (joined, first) {
        (Some(joined), _) => joined.freeze(),
        (None, Some(first)) => first,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::StreamBody;

    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = Infallible> {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
            .iter()
            .map(|part| Ok(Frame::data(Bytes::from_static(part))))
            .collect();
        StreamBody::new(stream::iter(frames))
    }

    #[tokio::test]
    async fn joins_frames_and_keeps_a_single_frame_uncopied() {
        let body = read_limited(chunks(&[b"ab", b"", b"cd", b"e"]), 5, None)
            .await
            .unwrap();
        assert_eq!(&body[..], b"abcde");
        let one: &'static [u8] = b"whole";
        let body = read_limited(chunks(&[one]), 5, Some(5)).await.unwrap();
        assert_eq!(body.as_ptr(), one.as_ptr());
        let empty = read_limited(chunks(&[]), 0, None).await.unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn stops_at_the_frame_that_passes_the_limit() {
        let err = read_limited(chunks(&[b"abc", b"def", b"never polled"]), 5, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooLarge(6)), "{err:?}");
        // Exactly at the limit is accepted.
        let body = read_limited(chunks(&[b"abc", b"de"]), 5, None)
            .await
            .unwrap();
        assert_eq!(&body[..], b"abcde");
        // A lying Content-Length changes nothing but the reservation.
        let body = read_limited(chunks(&[b"abc", b"de"]), 5, Some(u64::MAX))
            .await
            .unwrap();
        assert_eq!(&body[..], b"abcde");
    }

    #[tokio::test]
    async fn a_failing_stream_is_a_body_error() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err(std::io::Error::other("reset")),
        ];
        let err = read_limited(StreamBody::new(stream::iter(frames)), 10, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::Body), "{err:?}");
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_reads_the_body_or_stops_just_past_the_limit(
            parts in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..64), 0..12),
            limit in 0usize..400,
            announced in proptest::option::of(proptest::num::u64::ANY),
        ) {
            let whole: Vec<u8> = parts.concat();
            let largest = parts.iter().map(Vec::len).max().unwrap_or(0);
            let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
                .iter()
                .map(|part| Ok(Frame::data(Bytes::from(part.clone()))))
                .collect();
            let read = block_on(read_limited(StreamBody::new(stream::iter(frames)), limit, announced));
            match read {
                Ok(body) => {
                    proptest::prop_assert!(whole.len() <= limit);
                    proptest::prop_assert_eq!(&body[..], &whole[..]);
                }
                Err(ReadError::TooLarge(seen)) => {
                    proptest::prop_assert!(whole.len() > limit);
                    proptest::prop_assert!(seen > limit && seen <= limit + largest);
                }
                Err(ReadError::Body) => proptest::prop_assert!(false, "the stream never fails"),
            }
        }

        #[test]
        fn content_length_never_panics(value in "\\PC{0,40}") {
            let mut map = HeaderMap::new();
            if let Ok(header) = http::HeaderValue::from_str(&value) {
                map.insert(CONTENT_LENGTH, header);
                if let Some(length) = content_length(&map) {
                    proptest::prop_assert_eq!(Some(length), value.trim().parse().ok());
                }
            }
        }
    }

    #[test]
    fn content_length_is_read_only_when_single_and_valid() {
        let mut map = HeaderMap::new();
        assert_eq!(content_length(&map), None);
        map.insert(CONTENT_LENGTH, "42".parse().unwrap());
        assert_eq!(content_length(&map), Some(42));
        map.append(CONTENT_LENGTH, "42".parse().unwrap());
        assert_eq!(content_length(&map), None);
        map.insert(CONTENT_LENGTH, "-1".parse().unwrap());
        assert_eq!(content_length(&map), None);
        map.insert(CONTENT_LENGTH, "99999999999999999999999".parse().unwrap());
        assert_eq!(content_length(&map), None);
    }
}
