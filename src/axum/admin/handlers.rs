//! The admin endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::StatusCode;
use serde::Serialize;

use super::error::AdminError;
use super::query;
use super::views::{HealthView, PageView, RecordDetailView, ReplayView, RetryView};
use crate::health::HealthStatus;
use crate::journal::{Journal, JournalId};
use crate::outcome::OutcomeKind;
use crate::pipeline::{Pipeline, ReplayOptions};

/// A metrics exporter's render function.
pub(super) type Metrics = Arc<dyn Fn() -> String + Send + Sync>;

/// What the endpoints share.
#[derive(Clone)]
pub(super) struct AdminState {
    pub(super) pipeline: Pipeline,
    pub(super) metrics: Option<Metrics>,
    pub(super) health_window: Duration,
}

type Answer = Result<Response, AdminError>;

/// `GET /deliveries`.
pub(super) async fn list(State(state): State<AdminState>, RawQuery(raw): RawQuery) -> Answer {
    let query = query::deliveries(raw.as_deref())?;
    let page = journal(&state)?.list(&query).await?;
    Ok(json(StatusCode::OK, &PageView::from(&page)))
}

/// `GET /deliveries/{id}`.
pub(super) async fn show(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Answer {
    let id = record_id(&id)?;
    let record = journal(&state)?
        .get(id)
        .await?
        .ok_or(AdminError::NotFound(id))?;
    Ok(json(StatusCode::OK, &RecordDetailView::from(&record)))
}

/// `POST /deliveries/{id}/replay`.
pub(super) async fn replay(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = record_id(&id)?;
    let force = query::only_flag(raw.as_deref(), "force")?;
    let options = if force {
        ReplayOptions::forced()
    } else {
        ReplayOptions::default()
    };
    let outcome = state.pipeline.replay(id, options).await?;
    if matches!(outcome.kind, OutcomeKind::ShuttingDown) {
        return Err(AdminError::ShuttingDown);
    }
    Ok(json(StatusCode::OK, &ReplayView::new(id, force, &outcome)))
}

/// `POST /dead-letter/{id}/retry`.
pub(super) async fn retry(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Answer {
    let id = record_id(&id)?;
    let wait = query::only_flag(raw.as_deref(), "wait")?;
    let work = state
        .pipeline
        .retry_dead_lettered(id)
        .await?
        .ok_or(AdminError::NothingToRetry(id))?;
    let mut view = RetryView {
        journal_id: id.to_string(),
        jobs: work.len(),
        refused: work.refused(),
        report: None,
    };
    if !wait {
        work.spawn();
        return Ok(json(StatusCode::ACCEPTED, &view));
    }
    // Its own task: a client that hangs up does not cancel the work.
    let report = tokio::spawn(work).await.unwrap_or_default();
    view.report = Some(report.into());
    Ok(json(StatusCode::OK, &view))
}

/// `GET /health`.
pub(super) async fn health(State(state): State<AdminState>) -> Response {
    let report = state.pipeline.health(state.health_window);
    let status = match report.status {
        HealthStatus::Healthy | HealthStatus::Degraded => StatusCode::OK,
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    json(status, &HealthView::from(&report))
}

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<AdminState>) -> Answer {
    let render = state.metrics.as_ref().ok_or(AdminError::NoMetrics)?;
    let mut response = render().into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn journal(state: &AdminState) -> Result<Arc<dyn Journal>, AdminError> {
    state.pipeline.journal().ok_or(AdminError::NoJournal)
}

/// The record id of the path (a path that does not decode is a bad id).
fn record_id(path: &Result<Path<String>, PathRejection>) -> Result<JournalId, AdminError> {
    let Ok(Path(text)) = path else {
        return Err(AdminError::BadId);
    };
    text.parse().map_err(|_| AdminError::BadId)
}

/// A JSON response that is never cached.
fn json(status: StatusCode, view: &impl Serialize) -> Response {
    let mut response = (status, Json(view)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
