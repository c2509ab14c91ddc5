//! [`WebhookService`]: the pipeline as a `tower::Service`.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::body::{receive, BoxError};
use super::response::{plain, response};
use crate::pipeline::Pipeline;

/// The pipeline as a [`tower::Service`](tower_service::Service) over
/// [`http::Request`]s with any [`http_body::Body`]: usable with hyper directly
/// or inside any tower stack.
///
/// For each `POST` it reads the headers, then the body *while it streams*,
/// under the provider's [`body_limit`](crate::ProviderLimits::body_limit):
/// a body announced larger by its `Content-Length` is refused at once, one
/// that grows past the limit as soon as it does, the rest never read (413,
/// counted and journaled as [`OutcomeKind::TooLarge`](crate::OutcomeKind::TooLarge)).
/// Then it hands the delivery to [`Pipeline::handle_for`] and answers with
/// [`response`](super::response()). The provider is the one the service was made
/// for ([`WebhookService::for_provider`]) or the one detected from the
/// headers ([`WebhookService::new`]); the body of a delivery no verifier
/// recognises is not read (400).
///
/// Answers of its own, outside the status table: 405 (with `Allow: POST`)
/// for any other method; 408 when the body does not arrive within the
/// provider's [`answer_budget`](crate::ProviderLimits::answer_budget); 400
/// when the body stream fails (a reset connection, bad chunking). The
/// service never fails: its error type is [`Infallible`].
///
/// Dropping the response future (the client went away) is dropping the
/// `handle` future: see [`Pipeline::handle`] for what that leaves.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hookgate::http::WebhookService;
/// use hookgate::testing::github_headers;
/// use hookgate::{handler_fn, GitHub, MemoryStore, Pipeline, Registry};
/// use http_body_util::Full;
/// use tower_service::Service;
///
/// let mut registry = Registry::new();
/// registry.critical("github", "ping", "log_ping", handler_fn(|_event| async { Ok(()) }));
/// let pipeline = Pipeline::builder()
///     .verifier(GitHub::builder("secret").build()?)
///     .store(MemoryStore::new())
///     .registry(registry)
///     .build()?;
/// let mut service = WebhookService::new(pipeline);
///
/// let body = br#"{"zen":"Keep it logically awesome."}"#;
/// let mut request = http::Request::post("/").body(Full::new(bytes::Bytes::from_static(body)))?;
/// for (name, value) in github_headers("secret", body, "ping", "delivery-1") {
///     request.headers_mut().append(
///         http::HeaderName::from_bytes(name.as_bytes())?,
///         http::HeaderValue::from_str(&value)?,
///     );
/// }
/// let answer = service.call(request).await?;
/// assert_eq!(answer.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebhookService {
    pipeline: Pipeline,
    provider: Option<Arc<str>>,
}

impl WebhookService {
    /// A service for every provider of the pipeline, detected from each
    /// request's headers.
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            provider: None,
        }
    }

    /// A service for one provider, chosen by name (the verifier's name, as
    /// in [`Pipeline::handle_for`]); deliveries to an unknown name are
    /// answered 400.
    pub fn for_provider(pipeline: Pipeline, provider: impl Into<Arc<str>>) -> Self {
        Self {
            pipeline,
            provider: Some(provider.into()),
        }
    }

    /// The pipeline it hands deliveries to.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

impl fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookService")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for WebhookService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let pipeline = self.pipeline.clone();
        let provider = self.provider.clone();
        Box::pin(async move { Ok(answer(&pipeline, provider.as_deref(), request).await) })
    }
}

/// Reads one request and answers it through the pipeline.
pub(crate) async fn answer<B>(
    pipeline: &Pipeline,
    provider: Option<&str>,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if request.method() != Method::POST {
        let mut refused = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST",
        );
        refused
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return refused;
    }
    let (parts, body) = request.into_parts();
    match receive(pipeline, provider, &parts, body).await {
        Ok(received) => response(&received.handle(pipeline).await),
        Err(refused) => refused,
    }
}
