//! The HTTP surface: health, readiness, Prometheus metrics, and the monitor's pages
//! and JSON API ([`crate::monitor`]).
//! [`router`] is pure (state in, `Router` out) so tests can drive it with `oneshot`.
//!
//! Every error answer has one shape ([`errors`]): JSON for scripts, an HTML page with
//! the same message under `/monitor`. A 500 says only "internal error"; the cause is
//! logged once here.

pub mod errors;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::Serialize;

pub use errors::ApiError;

use crate::metrics::{DbDown, Metrics};
use crate::store::{Store, StoreError};

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
    /// Monitor pages, API access and live updates.
    pub monitor: crate::monitor::Monitor,
}

/// The routes, with request ids and spans ([`service_kit::request_id::traced`]), and
/// every error answer in one shape ([`errors::uniform`]; unknown paths included).
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::monitor::router(state.clone()))
        .fallback(errors::unknown_route)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(errors::uniform))
        .with_state(state);
    service_kit::request_id::traced(routes)
}

/// An error a handler returns; answered as an [`ApiError`].
#[derive(Debug)]
pub enum AppError {
    /// 404 `not_found`.
    NotFound,
    /// 400 `bad_parameter`, with a reason safe to show that names the parameter.
    BadRequest(String),
    /// 400 `unknown_parameter`: query parameters the route does not read.
    UnknownParameters {
        /// The names given that the route does not read, sorted.
        unknown: Vec<String>,
        /// Every name the route reads.
        accepted: &'static [&'static str],
    },
    /// 500; the cause is logged, not sent.
    Internal(StoreError),
    /// 503 with a reason safe to show (a bounded resource is taken; retry later).
    Busy(&'static str),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        Self::Internal(err)
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            AppError::BadRequest(reason) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_parameter", reason)
            }
            AppError::UnknownParameters { unknown, accepted } => {
                let plural = if unknown.len() == 1 { "" } else { "s" };
                let accepted = if accepted.is_empty() {
                    "none".to_owned()
                } else {
                    accepted.join(", ")
                };
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    format!(
                        "unknown query parameter{plural}: {} (accepted: {accepted})",
                        unknown.join(", ")
                    ),
                )
            }
            AppError::Busy(reason) => ApiError::of_status(StatusCode::SERVICE_UNAVAILABLE, reason),
            AppError::Internal(err) => {
                tracing::error!(error = %err, "request failed");
                ApiError::of_status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let busy = matches!(self, AppError::Busy(_));
        let mut response = ApiError::from(self).json();
        if busy {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// One dependency's state in `/readyz`: serialized as `ok`, `not used` or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    /// Usable.
    Ok,
    /// Not part of this collector (HTTP-only: no broker, no consumer).
    NotUsed,
    /// Not usable, and why.
    Down(String),
}

impl Check {
    /// Whether the collector can be ready with it.
    fn passes(&self) -> bool {
        !matches!(self, Check::Down(_))
    }
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            Check::Ok => "ok",
            Check::NotUsed => "not used",
            Check::Down(reason) => reason,
        })
    }
}

/// Readiness of each dependency (the database's reason only on a loopback address:
/// [`crate::monitor::Monitor::readyz_database`]).
#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    broker: Check,
    consumer: Check,
    database: Check,
}

async fn readyz(State(state): State<AppState>) -> Response {
    let broker = match &state.nats {
        None => Check::NotUsed,
        Some(client) => match client.connection_state() {
            async_nats::connection::State::Connected => Check::Ok,
            other => Check::Down(format!("not connected ({other})")),
        },
    };
    // Why not attached (no JetStream quorum, the broker unreachable, ...) is the
    // broker's state, not a secret of ours: shown on every address.
    let consumer = match (&state.nats, state.metrics.consumer_down()) {
        (None, _) => Check::NotUsed,
        (Some(_), None) => Check::Ok,
        (Some(_), Some(reason)) => Check::Down(format!("not attached: {reason}")),
    };
    let down = database_state(&state).await;
    // Off loopback only `unavailable`: the reason stays in the log.
    let shown = state
        .monitor
        .readyz_database(down.as_ref().map(ToString::to_string));
    let database = match down {
        None => Check::Ok,
        Some(_) => Check::Down(shown),
    };
    let ready = [&broker, &consumer, &database].iter().all(|c| c.passes());
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

/// The database's state, `None` when usable: the last write's error (a ping cannot
/// clear it: a full disk still answers pings), else a fresh ping's, recorded so that
/// `/metrics`' `collector_db_up` says the same.
pub(crate) async fn database_state(state: &AppState) -> Option<DbDown> {
    if let Some(down) = state.metrics.write_error() {
        return Some(down);
    }
    let ping = match tokio::time::timeout(READY_PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(DbDown::Unreachable(err.to_string())),
        Err(_) => Some(DbDown::NoAnswer(READY_PING_TIMEOUT)),
    };
    state.metrics.pinged(ping);
    state.metrics.db_error()
}

async fn metrics(State(state): State<AppState>) -> Response {
    database_state(&state).await;
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
