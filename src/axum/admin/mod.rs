//! Admin routes (the `axum` feature, mounted only when you build them): JSON
//! endpoints over the pipeline's [journal](crate::journal) and
//! [health](crate::health), and a Prometheus scrape endpoint.
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /deliveries` | a page of journal records, newest first, without bodies, and the `next` cursor |
//! | `GET /deliveries/{id}` | one record with its allowlisted headers and its body |
//! | `POST /deliveries/{id}/replay` | replays it ([`Pipeline::replay`]); `?force=true` runs even a processed one again |
//! | `POST /dead-letter/{id}/retry` | runs its dead-lettered best-effort jobs again ([`Pipeline::retry_dead_lettered`]); 202, or 200 with the report under `?wait=true` |
//! | `GET /health` | the [`HealthReport`](crate::health::HealthReport): 200 when healthy or degraded, 503 when unhealthy |
//! | `GET /metrics` | the text of [`AdminRoutes::metrics`] (404 without it) |
//!
//! **Authentication.** [`AdminRoutes::build`] refuses to build without a
//! bearer token or an [`authorize`](AdminRoutes::authorize) check. With a
//! token, every request needs `Authorization: Bearer <token>`, compared in
//! constant time (401 `missing_token` / `invalid_token` with
//! `WWW-Authenticate: Bearer` otherwise); with a check, it must say yes (403
//! `forbidden`); with both, both. An [`IpAllowlist`] set with
//! [`allow_ips`](AdminRoutes::allow_ips) runs first (403). Paths the router
//! does not know get axum's plain 404, before any check.
//!
//! **`GET /deliveries` parameters** (unknown or repeated ones are refused
//! with 400 `bad_query`, so a typo never widens the filter):
//! `status` (a status name such as `critical_failed`; repeat it or list
//! several separated by commas), `provider`, `kind` and `event_id` (exact),
//! `since` (inclusive) and `until` (exclusive) as RFC 3339
//! (`2026-01-31T12:00:00Z`; write an offset's `+` as `%2B`) or Unix
//! milliseconds, `unresolved=true`, `limit` (1 to 1,000, default 50) and
//! `cursor` (the `next` of the previous page). A walk through the pages with
//! the cursor sees every matching record once, and none added after its first
//! page.
//!
//! **JSON shapes.** A record: `id` (32 hex digits), `received_at` (RFC 3339,
//! UTC) and `received_at_ms` (Unix ms), `provider`, `event_id`, `kind`,
//! `delivery_id`, `status`, `http_status`, `attempt`, `durations_ms`
//! (`verify`, `claim`, `critical`, `total`), `error`, `best_effort`
//! (`handler`, `attempts`, `state`), `body_size`, `body_digest` (hex SHA-256),
//! `replay_of`, `resolved_at`. `GET /deliveries/{id}` adds `replayable`,
//! `headers` (`[name, value]` pairs: the provider's allowlist, never a
//! signature) and `body` with `body_encoding`: `"utf8"` (the body as text)
//! or `"base64"` (standard alphabet, when it is not UTF-8), both `null` when
//! the body was not kept. A replay answers `replay_of`, `journal_id` (the
//! replay's own record), `forced`, `http_status` and `outcome` (the
//! delivery's answer and [`OutcomeKind::name`](crate::OutcomeKind::name)),
//! `provider`, `event_id`, `event_kind`; 200 whenever the replay ran, so
//! read `outcome` (`duplicate` says the event was already processed: use
//! `force`). Errors are `{"error": code, "message": …}`; see [`AdminError`]
//! for every code and status.
//!
//! Only the single-record endpoint returns a body; nothing here logs a token,
//! a header value or a body.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hookgate::axum::admin::AdminRoutes;
//! use hookgate::journal::MemoryJournal;
//! use hookgate::{GitHub, MemoryStore, Pipeline};
//! use tower::ServiceExt;
//!
//! let pipeline = Pipeline::builder()
//!     .verifier(GitHub::builder("secret").build()?)
//!     .store(MemoryStore::new())
//!     .journal(MemoryJournal::new())
//!     .build()?;
//! let admin = AdminRoutes::new(pipeline.clone())
//!     .bearer_token("correct-horse-battery-staple")
//!     .build()?;
//! let app = axum::Router::new()
//!     .nest("/webhooks", hookgate::axum::routes(pipeline))
//!     .nest("/admin", admin);
//!
//! let get = |uri: &str, token: Option<&str>| {
//!     let mut request = http::Request::get(uri);
//!     if let Some(token) = token {
//!         request = request.header("authorization", format!("Bearer {token}"));
//!     }
//!     request.body(axum::body::Body::empty())
//! };
//! let answer = app.clone().oneshot(get("/admin/deliveries?status=critical_failed", Some("correct-horse-battery-staple"))?).await?;
//! assert_eq!(answer.status(), 200);
//! let answer = app.clone().oneshot(get("/admin/health", None)?).await?;
//! assert_eq!(answer.status(), 401);
//! assert_eq!(answer.headers()["www-authenticate"], "Bearer realm=\"hookgate-admin\"");
//! let answer = app.oneshot(get("/admin/deliveries?stauts=processed", Some("correct-horse-battery-staple"))?).await?;
//! assert_eq!(answer.status(), 400);
//! # Ok(()) }
//! ```
//!
//! **Limits** come from existing tower layers around the built router, e.g.
//! at most 4 admin requests served at once across all its routes (more
//! wait), with tower's `limit` feature:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use hookgate::{GitHub, MemoryStore, Pipeline};
//! # use tower::ServiceExt;
//! # let pipeline = Pipeline::builder().verifier(GitHub::builder("secret").build()?).store(MemoryStore::new()).build()?;
//! use tower::limit::GlobalConcurrencyLimitLayer;
//!
//! let admin = hookgate::axum::admin::AdminRoutes::new(pipeline)
//!     .bearer_token("correct-horse-battery-staple")
//!     .build()?
//!     .layer(GlobalConcurrencyLimitLayer::new(4));
//! # let request = http::Request::get("/health")
//! #     .header("authorization", "Bearer correct-horse-battery-staple")
//! #     .body(axum::body::Body::empty())?;
//! # assert_eq!(admin.oneshot(request).await?.status(), 200);
//! # Ok(()) }
//! ```
//!
//! In a server, give it the client address the allowlist needs and serve with
//! `ConnectInfo`:
//!
//! ```no_run
//! # async fn run(pipeline: hookgate::Pipeline) -> Result<(), Box<dyn std::error::Error>> {
//! use hookgate::axum::{admin::AdminRoutes, IpAllowlist};
//! use std::net::SocketAddr;
//!
//! let admin = AdminRoutes::new(pipeline.clone())
//!     .bearer_token(std::env::var("HOOKGATE_ADMIN_TOKEN")?)
//!     .allow_ips("10.0.0.0/8, 127.0.0.1".parse::<IpAllowlist>()?)
//!     .build()?;
//! let app = axum::Router::new().nest("/admin", admin);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use http::request::Parts;

mod auth;
pub(crate) mod error;
mod handlers;
mod query;
mod views;

pub use error::AdminError;
pub use query::QueryError;

use crate::axum::allowlist::IpAllowlist;
use crate::pipeline::Pipeline;
use crate::secret::Secret;

/// Builds the admin [`Router`]; see the [module docs](self) for its
/// endpoints. Mount it under a prefix of your app with [`Router::nest`].
pub struct AdminRoutes {
    pipeline: Pipeline,
    token: Option<Secret>,
    authorize: Option<auth::Authorize>,
    metrics: Option<handlers::Metrics>,
    health_window: Duration,
    allowlist: Option<IpAllowlist>,
}

/// Why [`AdminRoutes::build`] refused; no message holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminBuildError {
    /// Neither a bearer token nor an authorize check is set: the routes would
    /// be open to anyone who reaches them.
    #[error(
        "admin routes need a bearer token (AdminRoutes::bearer_token) or an authorize \
         check (AdminRoutes::authorize): they would be open to anyone"
    )]
    NoAuth,
    /// The bearer token is empty (is the variable it is read from set?).
    #[error("the admin bearer token is empty (is the variable or file it is read from set?)")]
    EmptyToken,
    /// The bearer token is shorter than [`AdminRoutes::MIN_TOKEN_LEN`] bytes.
    #[error("the admin bearer token has {len} bytes; use at least {min} random ones")]
    TokenTooShort {
        /// Its length.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// The bearer token has a byte a client cannot send in an
    /// `Authorization` header: whitespace, a control character or non-ASCII.
    #[error(
        "the admin bearer token has whitespace, a control character or a non-ASCII byte, \
         which no client can send in an Authorization header (a trailing newline from \
         the file or variable it is read from?)"
    )]
    TokenNotPrintable,
}

impl AdminRoutes {
    /// The shortest bearer token accepted: 16 bytes.
    pub const MIN_TOKEN_LEN: usize = 16;

    /// The window `GET /health` reports on unless
    /// [`health_window`](AdminRoutes::health_window) says otherwise: 5
    /// minutes.
    pub const DEFAULT_HEALTH_WINDOW: Duration = Duration::from_secs(300);

    /// Admin routes over `pipeline`'s journal and health, with no
    /// authentication yet (set a token or a check before
    /// [`build`](AdminRoutes::build)).
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            token: None,
            authorize: None,
            metrics: None,
            health_window: Self::DEFAULT_HEALTH_WINDOW,
            allowlist: None,
        }
    }

    /// Requires `Authorization: Bearer <token>` on every request, compared
    /// in constant time. The token must be at least
    /// [`MIN_TOKEN_LEN`](Self::MIN_TOKEN_LEN) visible ASCII characters; it is
    /// never printed (`Debug` shows it redacted). Defaults to no token.
    pub fn bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Requires `check` to accept every request's head (method, URI,
    /// headers, extensions such as `ConnectInfo`): `false` answers 403. It
    /// runs after the bearer token when both are set; a check that panics
    /// refuses. Defaults to no check.
    pub fn authorize<F>(mut self, check: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.authorize = Some(Arc::new(check));
        self
    }

    /// Serves `GET /metrics` with the text `render` returns, e.g. the
    /// Prometheus exposition of an exporter's handle
    /// (`move || handle.render()` with `metrics_exporter_prometheus`), as
    /// `text/plain; version=0.0.4`. Defaults to none: `GET /metrics` answers
    /// 404 `no_metrics`.
    pub fn metrics<F>(mut self, render: F) -> Self
    where
        F: Fn() -> String + Send + Sync + 'static,
    {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The window `GET /health` reports on (rounded up to whole 15 s slots,
    /// at most an hour; see [`Pipeline::health`]). Defaults to
    /// [`DEFAULT_HEALTH_WINDOW`](Self::DEFAULT_HEALTH_WINDOW).
    pub fn health_window(mut self, window: Duration) -> Self {
        self.health_window = window;
        self
    }

    /// Admits only clients in `allowlist`, before any other check (403
    /// otherwise; see [`IpAllowlist`], which needs the server to provide
    /// `ConnectInfo<SocketAddr>`). Defaults to any address.
    pub fn allow_ips(mut self, allowlist: IpAllowlist) -> Self {
        self.allowlist = Some(allowlist);
        self
    }

    /// The router.
    ///
    /// # Errors
    /// [`AdminBuildError`]: no token and no check, or a token that is empty,
    /// too short or not printable ASCII.
    pub fn build(self) -> Result<Router, AdminBuildError> {
        if self.token.is_none() && self.authorize.is_none() {
            return Err(AdminBuildError::NoAuth);
        }
        if let Some(token) = &self.token {
            let bytes = token.expose();
            if bytes.is_empty() {
                return Err(AdminBuildError::EmptyToken);
            }
            if !bytes.iter().all(|b| b.is_ascii_graphic()) {
                return Err(AdminBuildError::TokenNotPrintable);
            }
            if bytes.len() < Self::MIN_TOKEN_LEN {
                return Err(AdminBuildError::TokenTooShort {
                    len: bytes.len(),
                    min: Self::MIN_TOKEN_LEN,
                });
            }
        }
        let auth = Arc::new(auth::Auth::new(self.token.as_ref(), self.authorize));
        let state = handlers::AdminState {
            pipeline: self.pipeline,
            metrics: self.metrics,
            health_window: self.health_window,
        };
        let router = Router::new()
            .route("/deliveries", get(handlers::list))
            .route("/deliveries/{id}", get(handlers::show))
            .route("/deliveries/{id}/replay", post(handlers::replay))
            .route("/dead-letter/{id}/retry", post(handlers::retry))
            .route("/health", get(handlers::health))
            .route("/metrics", get(handlers::metrics))
            .route_layer(from_fn_with_state(auth, auth::require))
            .with_state(state);
        Ok(match self.allowlist {
            Some(allowlist) => router.route_layer(allowlist),
            None => router,
        })
    }
}

impl fmt::Debug for AdminRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminRoutes")
            .field("pipeline", &self.pipeline)
            .field("bearer_token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("authorize", &self.authorize.as_ref().map(|_| "<fn>"))
            .field("metrics", &self.metrics.as_ref().map(|_| "<fn>"))
            .field("health_window", &self.health_window)
            .field("allow_ips", &self.allowlist)
            .finish()
    }
}
