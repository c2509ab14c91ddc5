//! axum 0.8 integration (the `axum` feature): [`routes`] mounts the pipeline
//! in a few lines, [`Delivery`] is an extractor for your own handler, and
//! [`Outcome`] is an [`IntoResponse`]. [`admin::AdminRoutes`] builds the
//! admin routes over the journal and health, and [`IpAllowlist`] admits
//! requests to any route by their client's address.
//!
//! Every route reads the body under the provider's limit while it streams
//! (axum's 2 MB default does not apply: GitHub's 25 MiB events pass, and a
//! body past the limit is refused with 413 as soon as it passes, never
//! buffered whole), and waits for it no longer than the provider's answer
//! budget (408); see [`WebhookService`](crate::http::WebhookService) for the
//! answers it gives.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use hookgate::{handler_fn, GitHub, MemoryStore, Pipeline, Registry, Stripe};
//!
//! let mut registry = Registry::new();
//! registry.critical("stripe", "checkout.session.completed", "mark_paid", handler_fn(|event| async move {
//!     println!("paid: {}", event.id());
//!     Ok(())
//! }));
//! let pipeline = Pipeline::builder()
//!     .verifier(Stripe::builder(std::env::var("STRIPE_WEBHOOK_SECRET")?).build()?)
//!     .verifier(GitHub::builder(std::env::var("GITHUB_WEBHOOK_SECRET")?).build()?)
//!     .store(MemoryStore::new())
//!     .registry(registry)
//!     .build()?;
//! // POST /webhooks/stripe, POST /webhooks/github, or POST /webhooks (detected).
//! let app = axum::Router::new().nest("/webhooks", hookgate::axum::routes(pipeline.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod admin;
mod allowlist;

pub use allowlist::{AllowlistError, IpAllowlist, IpAllowlistService, IpRefusal};

use axum::extract::{
    FromRef, FromRequest, FromRequestParts, OriginalUri, Path, RawPathParams, Request, State,
};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

use crate::headers::Headers;
use crate::http::{receive, Received};
use crate::outcome::Outcome;
use crate::pipeline::Pipeline;

/// A router with `POST /{provider}` (the verifier's name from the path,
/// handled by [`Pipeline::handle_for`]; an unknown name is answered 400) and
/// `POST /` (the provider detected from the headers). Other methods are
/// answered 405. Mount it where you like with [`Router::nest`] or
/// [`Router::merge`].
pub fn routes(pipeline: Pipeline) -> Router {
    Router::new()
        .route("/", post(detected))
        .route("/{provider}", post(named))
        .with_state(pipeline)
}

async fn detected(State(pipeline): State<Pipeline>, mut request: Request) -> Response {
    if let Some(uri) = original_uri(request.extensions()) {
        *request.uri_mut() = uri;
    }
    crate::http::service::answer(&pipeline, None, request)
        .await
        .into_response()
}

async fn named(
    State(pipeline): State<Pipeline>,
    Path(provider): Path<String>,
    mut request: Request,
) -> Response {
    if let Some(uri) = original_uri(request.extensions()) {
        *request.uri_mut() = uri;
    }
    crate::http::service::answer(&pipeline, Some(&provider), request)
        .await
        .into_response()
}

/// The URI the client sent, which [`Router::nest`] strips of its prefix:
/// verifiers that sign the URL need it whole.
fn original_uri(extensions: &http::Extensions) -> Option<http::Uri> {
    extensions
        .get::<OriginalUri>()
        .map(|OriginalUri(uri)| uri.clone())
}

impl IntoResponse for Outcome {
    /// [`crate::http::response`], as an axum response.
    fn into_response(self) -> Response {
        crate::http::response(&self).into_response()
    }
}

/// An extractor for your own axum handler: the delivery's headers and its
/// body, read under the provider's limit exactly as [`routes`] reads them.
/// Hand it to the pipeline with [`Delivery::handle`]; [`Outcome`] is the
/// response.
///
/// The provider is the route's `{provider}` path parameter when it has one,
/// otherwise the one detected from the headers. The pipeline comes from the
/// router's state (`Pipeline: FromRef<S>`). When the body is refused (413,
/// 408, 400) the handler is not called and the refusal is the answer.
///
/// ```no_run
/// use axum::extract::State;
/// use axum::response::IntoResponse;
/// use axum::routing::post;
/// use hookgate::axum::Delivery;
/// use hookgate::Pipeline;
///
/// async fn webhook(State(pipeline): State<Pipeline>, delivery: Delivery) -> impl IntoResponse {
///     let outcome = delivery.handle(&pipeline).await;
///     if !outcome.is_success() {
///         eprintln!("webhook answered {}: {:?}", outcome.status(), outcome.kind);
///     }
///     outcome
/// }
///
/// # fn app(pipeline: Pipeline) -> axum::Router {
/// axum::Router::new()
///     .route("/hooks/{provider}", post(webhook))
///     .with_state(pipeline)
/// # }
/// ```
#[derive(Debug)]
pub struct Delivery {
    received: Received,
}

impl Delivery {
    /// The provider it goes to: the route's or the detected one. `None`
    /// when no verifier recognises the headers (the body was not read; the
    /// pipeline answers 400).
    pub fn provider(&self) -> Option<&str> {
        self.received.provider.as_deref()
    }

    /// Its headers.
    pub fn headers(&self) -> &Headers {
        &self.received.headers
    }

    /// Its raw body, exactly as received.
    pub fn body(&self) -> &Bytes {
        &self.received.body
    }

    /// Runs the pipeline on it ([`Pipeline::handle_for`] its provider, or
    /// [`Pipeline::handle`] when none was found) and spawns its best-effort
    /// work.
    pub async fn handle(self, pipeline: &Pipeline) -> Outcome {
        self.received.handle(pipeline).await
    }
}

impl<S> FromRequest<S> for Delivery
where
    Pipeline: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let pipeline = Pipeline::from_ref(state);
        let (mut parts, body) = request.into_parts();
        if let Some(uri) = original_uri(&parts.extensions) {
            parts.uri = uri;
        }
        let provider = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "provider")
                    .map(|(_, value)| value.to_owned())
            });
        match receive(&pipeline, provider.as_deref(), &parts, body).await {
            Ok(received) => Ok(Self { received }),
            Err(refused) => Err(refused.into_response()),
        }
    }
}
