//! HTTP glue (the `http` feature): [`Outcome`](crate::Outcome) →
//! [`http::Response`] with [`response`], and [`WebhookService`], a
//! `tower::Service` that reads each body under its provider's limit while it
//! streams and answers through the pipeline. With axum, use the
//! [`axum`](crate::axum) module (the `axum` feature) instead.
//!
//! `Headers` converts from an `&http::HeaderMap` with `From`.

mod body;
mod response;
pub(crate) mod service;

#[cfg(feature = "axum")]
pub(crate) use body::{receive, Received};
pub use response::{response, RETRY_AFTER_UNAVAILABLE};
pub use service::WebhookService;
