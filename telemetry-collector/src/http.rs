//! The HTTP surface: health, readiness, Prometheus metrics and the JSON API.
//! [`router`] is pure (state in, `Router` out) so tests can drive it with `oneshot`.
//!
//! Errors are opaque: a 500 says "internal error" and the cause is logged once here.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::store::{RunQuery, RunRecord, Store, StoreError};

pub use crate::store::DEFAULT_PAGE_SIZE;
/// How long `/readyz` waits for the database to answer.
pub const READY_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Counters and readiness.
    pub metrics: Arc<Metrics>,
    /// The broker connection, when ingesting.
    pub nats: Option<async_nats::Client>,
    /// See [`crate::config::DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/producers", get(producers))
        .route("/api/v1/dead-letters", get(dead_letters))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error a handler returns.
#[derive(Debug)]
pub enum AppError {
    /// 404.
    NotFound,
    /// 400 with a reason safe to show.
    BadRequest(String),
    /// 500; the cause is logged, not sent.
    Internal(StoreError),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        Self::Internal(err)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::NotFound => (StatusCode::NOT_FOUND, "not found").into_response(),
            AppError::BadRequest(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
            AppError::Internal(err) => {
                tracing::error!(error = %err, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}

/// Readiness of each dependency: `ok` or why not.
#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    broker: String,
    consumer: String,
    database: String,
}

async fn readyz(State(state): State<AppState>) -> Response {
    let broker = match &state.nats {
        None => "not used".to_owned(),
        Some(client) => match client.connection_state() {
            async_nats::connection::State::Connected => "ok".to_owned(),
            other => format!("not connected ({other})"),
        },
    };
    let consumer = match (&state.nats, state.metrics.consumer_attached()) {
        (None, _) => "not used".to_owned(),
        (Some(_), true) => "ok".to_owned(),
        (Some(_), false) => "not attached".to_owned(),
    };
    let database = match state.metrics.db_error() {
        Some(reason) => format!("last batch write failed: {reason}"),
        None => match tokio::time::timeout(READY_PING_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(err)) => format!("unreachable: {err}"),
            Err(_) => "no answer within 2 s".to_owned(),
        },
    };
    let ready = [&broker, &consumer, &database]
        .iter()
        .all(|s| *s == "ok" || *s == "not used");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            broker,
            consumer,
            database,
        }),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Query string of `GET /api/v1/runs`.
#[derive(Debug, Default, Deserialize)]
pub struct RunsParams {
    shop: Option<String>,
    status: Option<String>,
    model: Option<String>,
    prompt_pack_version: Option<String>,
    /// Unix ms, inclusive.
    from: Option<i64>,
    /// Unix ms, exclusive.
    to: Option<i64>,
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of runs.
#[derive(Debug, Serialize)]
struct RunsPage {
    runs: Vec<RunRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

fn parse_cursor(cursor: &str) -> Result<(i64, String), AppError> {
    let (at, id) = cursor
        .split_once(':')
        .ok_or_else(|| AppError::BadRequest("bad cursor".to_owned()))?;
    let at = at
        .parse()
        .map_err(|_| AppError::BadRequest("bad cursor".to_owned()))?;
    Ok((at, id.to_owned()))
}

async fn list_runs(
    State(state): State<AppState>,
    Query(params): Query<RunsParams>,
) -> Result<Json<RunsPage>, AppError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=crate::store::MAX_PAGE_SIZE).contains(&limit) {
        return Err(AppError::BadRequest(format!(
            "limit must be between 1 and {}",
            crate::store::MAX_PAGE_SIZE
        )));
    }
    let query = RunQuery {
        shop_id: params.shop,
        status: params.status,
        model: params.model,
        prompt_pack_version: params.prompt_pack_version,
        from: params.from,
        to: params.to,
        before: params.cursor.as_deref().map(parse_cursor).transpose()?,
        limit,
    };
    let runs = state.store.runs(&query).await?;
    let next_cursor = if runs.len() as i64 == limit {
        runs.last()
            .map(|run| format!("{}:{}", run.started_at, run.run_id))
    } else {
        None
    };
    Ok(Json(RunsPage { runs, next_cursor }))
}

async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let detail = state.store.run(&id).await?.ok_or(AppError::NotFound)?;
    Ok(Json(detail).into_response())
}

async fn producers(State(state): State<AppState>) -> Result<Response, AppError> {
    Ok(Json(state.store.producers().await?).into_response())
}

async fn dead_letters(State(state): State<AppState>) -> Result<Response, AppError> {
    Ok(Json(
        state
            .store
            .dead_letters(crate::store::MAX_PAGE_SIZE)
            .await?,
    )
    .into_response())
}
