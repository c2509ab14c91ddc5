//! The typed errors the admin routes answer, as JSON.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{HeaderValue, CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use http::StatusCode;
use serde::Serialize;

use super::query::QueryError;
use crate::axum::allowlist::IpRefusal;
use crate::journal::{JournalError, JournalId};
use crate::pipeline::ReplayError;

/// Why an admin request was refused or failed. Each variant answers its
/// [`status`](AdminError::status) with a JSON body
/// `{"error": "<code>", "message": "<what to do>"}` and `Cache-Control:
/// no-store`; the body never holds a token, a header value, a body byte or a
/// backend's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// 401 `missing_token`: no `Authorization: Bearer` token (answered with
    /// `WWW-Authenticate: Bearer`).
    #[error("this endpoint needs an `Authorization: Bearer <token>` header")]
    MissingToken,
    /// 401 `invalid_token`: the token is not the one configured, or the
    /// header is ambiguous (several `Authorization` headers).
    #[error("the bearer token is not valid")]
    InvalidToken,
    /// 403 `forbidden`: the [`authorize`](super::AdminRoutes::authorize)
    /// check said no.
    #[error("this request is not authorized")]
    Forbidden,
    /// 403: the [IP allowlist](crate::axum::IpAllowlist) refused the client;
    /// the code is the refusal's ([`IpRefusal::code`]).
    #[error(transparent)]
    IpRefused(#[from] IpRefusal),
    /// 400 `bad_query`: a query parameter is unknown or malformed.
    #[error(transparent)]
    BadQuery(#[from] QueryError),
    /// 400 `bad_id`: the path's record id is not 32 hexadecimal digits.
    #[error("a journal record id is 32 hexadecimal digits (the `id` of a listed record)")]
    BadId,
    /// 404 `not_found`: the journal has no record with this id (never
    /// written, purged, or still queued for the journal's writer).
    #[error("the journal has no record {0}")]
    NotFound(JournalId),
    /// 404 `no_metrics`: `GET /metrics` without
    /// [`metrics`](super::AdminRoutes::metrics).
    #[error("no metrics exporter is set (AdminRoutes::metrics)")]
    NoMetrics,
    /// 501 `no_journal`: the pipeline was built without a journal
    /// (`PipelineBuilder::journal`), so there are no deliveries to show.
    #[error("this pipeline keeps no journal (set one with PipelineBuilder::journal)")]
    NoJournal,
    /// 422 `not_replayable`: the record cannot be replayed (not verified, or
    /// its body was not kept).
    #[error("journal record {id} cannot be replayed: {reason}")]
    NotReplayable {
        /// The record.
        id: JournalId,
        /// Why.
        reason: &'static str,
    },
    /// 422 `unknown_provider`: the record's provider has no verifier in this
    /// pipeline.
    #[error(
        "journal record {id} is from provider `{provider}`, which this pipeline does not know"
    )]
    UnknownProvider {
        /// The record.
        id: JournalId,
        /// Its provider.
        provider: String,
    },
    /// 409 `nothing_to_retry`: the record has no dead-lettered best-effort
    /// job whose handler is still registered.
    #[error(
        "journal record {0} has no dead-lettered best-effort job \
         (or none whose handler is still registered)"
    )]
    NothingToRetry(JournalId),
    /// 503 `shutting_down`: the pipeline is shutting down and runs no
    /// replay (answered with `Retry-After`).
    #[error("the pipeline is shutting down")]
    ShuttingDown,
    /// 503 `journal_unavailable`: the journal failed or cannot be reached
    /// (answered with `Retry-After`).
    #[error("the journal is unavailable: retry later")]
    JournalUnavailable,
    /// 500 `journal_corrupt`: the journal holds a record it cannot read.
    #[error("the journal holds a record it cannot read")]
    JournalCorrupt,
}

impl AdminError {
    /// The HTTP status it answers.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::MissingToken | AdminError::InvalidToken => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden | AdminError::IpRefused(_) => StatusCode::FORBIDDEN,
            AdminError::BadQuery(_) | AdminError::BadId => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) | AdminError::NoMetrics => StatusCode::NOT_FOUND,
            AdminError::NoJournal => StatusCode::NOT_IMPLEMENTED,
            AdminError::NotReplayable { .. } | AdminError::UnknownProvider { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            AdminError::NothingToRetry(_) => StatusCode::CONFLICT,
            AdminError::ShuttingDown | AdminError::JournalUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AdminError::JournalCorrupt => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code in the JSON body's `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::MissingToken => "missing_token",
            AdminError::InvalidToken => "invalid_token",
            AdminError::Forbidden => "forbidden",
            AdminError::IpRefused(refusal) => refusal.code(),
            AdminError::BadQuery(_) => "bad_query",
            AdminError::BadId => "bad_id",
            AdminError::NotFound(_) => "not_found",
            AdminError::NoMetrics => "no_metrics",
            AdminError::NoJournal => "no_journal",
            AdminError::NotReplayable { .. } => "not_replayable",
            AdminError::UnknownProvider { .. } => "unknown_provider",
            AdminError::NothingToRetry(_) => "nothing_to_retry",
            AdminError::ShuttingDown => "shutting_down",
            AdminError::JournalUnavailable => "journal_unavailable",
            AdminError::JournalCorrupt => "journal_corrupt",
        }
    }
}

impl From<JournalError> for AdminError {
    fn from(err: JournalError) -> Self {
        match err {
            JournalError::Corrupt(_) => AdminError::JournalCorrupt,
            JournalError::Unavailable(_) => AdminError::JournalUnavailable,
        }
    }
}

impl From<ReplayError> for AdminError {
    fn from(err: ReplayError) -> Self {
        match err {
            ReplayError::NoJournal => AdminError::NoJournal,
            ReplayError::NotFound(id) => AdminError::NotFound(id),
            ReplayError::NotReplayable { id, reason } => AdminError::NotReplayable { id, reason },
            ReplayError::UnknownProvider { id, provider } => {
                AdminError::UnknownProvider { id, provider }
            }
            ReplayError::Journal(err) => err.into(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut response = json_error(self.status(), self.code(), self.to_string());
        let headers = response.headers_mut();
        match self {
            AdminError::MissingToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"hookgate-admin\""),
                );
            }
            AdminError::InvalidToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"hookgate-admin\", error=\"invalid_token\"",
                    ),
                );
            }
            AdminError::ShuttingDown | AdminError::JournalUnavailable => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from(crate::http::RETRY_AFTER_UNAVAILABLE.as_secs()),
                );
            }
            _ => {}
        }
        response
    }
}

/// The JSON body of an error.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

/// A JSON error response: `{"error": code, "message": message}`, never cached.
pub(crate) fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    let mut response = (
        status,
        Json(ErrorBody {
            error: code,
            message,
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
