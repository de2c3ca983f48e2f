//! The HTTP surface. [`router`] is pure (state in, `Router` out) so tests can drive it
//! with `oneshot` as well as over a socket.
//!
//! - `POST /app-proxy/see-it-now/render`: auth, parse, emit, render, answer.
//! - `GET /images/{*key}`: stored renders.
//! - `/healthz`, `/readyz`, `/metrics`.
//!
//! Every request gets an `x-request-id` and a span ([`service_kit::request_id::traced`]);
//! the render's `request_id` is that id (or the body's `requestId`), so the log lines of
//! a request and its telemetry rows name the same id.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use telemetry::{
    EmitEvent, ErrorCode, EventSource, EventType, JetStreamState, RunStatus, Telemetry,
    VariantStatus,
};

use crate::config::Limits;
use crate::input::{self, InputError, RenderBody};
use crate::metrics::{Metrics, RequestOutcome};
use crate::render::{Renderer, RequestContext, RunOutcome};
use crate::signature;
use crate::store::{ImageStore, StoreError};

/// The render route (the app proxy forwards `/apps/see-it-now/render` here).
pub const RENDER_PATH: &str = "/app-proxy/see-it-now/render";
/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The pipeline.
    pub renderer: Arc<Renderer>,
    /// The image store (served by `/images`).
    pub store: ImageStore,
    /// The SDK handle: the request's events, and `/metrics` (disabled when telemetry
    /// is off).
    pub telemetry: Telemetry,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Request bounds.
    pub limits: Limits,
    /// Shopify app secret; `None` accepts unsigned requests.
    pub shopify_api_secret: Option<Arc<str>>,
}

/// The routes over `state`, with request ids and spans.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route(RENDER_PATH, post(render))
        .route("/images/{*key}", get(image))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // The render handler enforces its own (configurable) body limit, with a reason.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    service_kit::request_id::traced(routes)
}

/// An error answer: `{"error": reason, "message": ...}`.
#[derive(Debug, Serialize)]
struct ErrorAnswer {
    error: &'static str,
    message: String,
}

fn error_response(status: StatusCode, error: &'static str, message: String) -> Response {
    (status, Json(ErrorAnswer { error, message })).into_response()
}

/// One variant in the answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VariantAnswer {
    variant_id: String,
    status: &'static str,
    latency_ms: u64,
    error_code: Option<&'static str>,
    error_message: Option<String>,
    image_url: Option<String>,
    image_key: Option<String>,
    image_sha256: Option<String>,
}

/// The render answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RenderAnswer {
    run_id: String,
    request_id: String,
    status: &'static str,
    total_duration_ms: u64,
    variants: Vec<VariantAnswer>,
}

fn run_status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Complete => "complete",
        RunStatus::Partial => "partial",
        RunStatus::Failed => "failed",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Unspecified => "unknown",
    }
}

fn variant_status_name(status: VariantStatus) -> &'static str {
    match status {
        VariantStatus::Success => "success",
        VariantStatus::Failed => "failed",
        VariantStatus::Timeout => "timeout",
        VariantStatus::Unspecified => "unknown",
    }
}

fn error_code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Timeout => "TIMEOUT",
        ErrorCode::ProviderError => "PROVIDER_ERROR",
        ErrorCode::InvalidInput => "INVALID_INPUT",
        ErrorCode::StorageError => "STORAGE_ERROR",
        ErrorCode::Internal => "INTERNAL",
        ErrorCode::Interrupted => "INTERRUPTED",
        ErrorCode::Unspecified => "UNSPECIFIED",
    }
}

impl From<(RunOutcome, String)> for RenderAnswer {
    fn from((outcome, request_id): (RunOutcome, String)) -> Self {
        Self {
            run_id: outcome.run_id,
            request_id,
            status: run_status_name(outcome.status),
            total_duration_ms: outcome.total_duration_ms,
            variants: outcome
                .variants
                .into_iter()
                .map(|v| VariantAnswer {
                    variant_id: v.variant_id,
                    status: variant_status_name(v.status),
                    latency_ms: v.latency_ms,
                    error_code: v.error_code.map(error_code_name),
                    error_message: v.error_message,
                    image_url: v.image_key.as_ref().map(|key| format!("/images/{key}")),
                    image_key: v.image_key,
                    image_sha256: v.image_sha256,
                })
                .collect(),
        }
    }
}

/// The request id: the body's, else the header's (the client's when sane, else the one
/// [`service_kit::request_id::traced`] made), else a new UUIDv7. Oversized or
/// non-printable ids are replaced rather than trusted.
fn request_id(body: Option<&str>, headers: &HeaderMap) -> String {
    use service_kit::request_id::is_sane;
    body.filter(|id| is_sane(id))
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|id| is_sane(id))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Emits SF_RENDER_REJECTED with the reason.
fn rejected(state: &AppState, ctx: &RequestContext, reason: &str, message: &str) {
    let payload = serde_json::json!({ "reason": reason, "message": message });
    let event = EmitEvent {
        shop_id: ctx.shop_id.clone(),
        request_id: ctx.request_id.clone(),
        run_id: String::new(),
        source: EventSource::AppProxy,
        event_type: EventType::SfRenderRejected,
        payload_json: payload.to_string(),
    };
    crate::render::refused("emit", state.telemetry.emit(event));
}

fn bad_input(state: &AppState, ctx: &RequestContext, err: InputError) -> Response {
    let message = err.to_string();
    rejected(state, ctx, err.reason(), &message);
    state.metrics.request(RequestOutcome::BadRequest);
    with_request_id(
        error_response(StatusCode::BAD_REQUEST, err.reason(), message),
        &ctx.request_id,
    )
}

/// The `Retry-After` of a 503: the queue wait in whole seconds, rounded up, at least 1.
fn retry_after_secs(queue_wait: Duration) -> u64 {
    (queue_wait.as_secs() + u64::from(queue_wait.subsec_nanos() > 0)).max(1)
}

/// 503 + `Retry-After`: no render slot came free within the queue wait.
fn overloaded(state: &AppState, ctx: &RequestContext) -> Response {
    let limits = &state.limits;
    let message = format!(
        "all {} render slots stayed busy for {} ms; retry later",
        limits.render_concurrency,
        limits.render_queue_wait.as_millis()
    );
    rejected(state, ctx, "overloaded", &message);
    state.metrics.request(RequestOutcome::Overloaded);
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs(limits.render_queue_wait)),
    );
    with_request_id(response, &ctx.request_id)
}

/// `POST /app-proxy/see-it-now/render`.
async fn render(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let query = query.unwrap_or_default();
    // Auth first: an unsigned request gets no telemetry run, and no event either (the
    // shop it claims cannot be trusted). Nor does a signed query that is stale or
    // malformed.
    let shop_id = match &state.shopify_api_secret {
        Some(secret) => match signature::verify(
            &query,
            secret,
            SystemTime::now(),
            state.limits.shopify_proxy_max_age,
        ) {
            Ok(shop) => shop,
            Err(err) => {
                let (status, outcome) = if err.is_unauthorized() {
                    (StatusCode::UNAUTHORIZED, RequestOutcome::Unauthorized)
                } else {
                    (StatusCode::BAD_REQUEST, RequestOutcome::BadRequest)
                };
                state.metrics.request(outcome);
                return error_response(status, err.reason(), err.to_string());
            }
        },
        None => signature::unverified_shop(&query).unwrap_or_default(),
    };
    let mut ctx = RequestContext {
        shop_id,
        request_id: request_id(None, &headers),
    };
    let bytes: Bytes = match axum::body::to_bytes(body, state.limits.max_body_bytes).await {
        Ok(bytes) => bytes,
        // The serve loop answers 408 whatever is returned here; record the real reason.
        Err(err) if service_kit::http_server::is_body_timeout(&err) => {
            let message = "request body not complete within HTTP_BODY_TIMEOUT_MS".to_owned();
            rejected(&state, &ctx, "body_timeout", &message);
            state.metrics.request(RequestOutcome::BodyTimeout);
            return with_request_id(
                error_response(StatusCode::REQUEST_TIMEOUT, "body_timeout", message),
                &ctx.request_id,
            );
        }
        Err(err) => {
            let message = format!(
                "request body over the {}-byte limit or unreadable: {err}",
                state.limits.max_body_bytes
            );
            rejected(&state, &ctx, "body_too_large", &message);
            state.metrics.request(RequestOutcome::TooLarge);
            return with_request_id(
                error_response(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message),
                &ctx.request_id,
            );
        }
    };
    let body = match RenderBody::parse(&bytes) {
        Ok(body) => body,
        Err(err) => return bad_input(&state, &ctx, err),
    };
    // The parsed body has its own copy: the raw one need not wait for a slot too.
    drop(bytes);
    if body.request_id.is_some() {
        ctx.request_id = request_id(body.request_id.as_deref(), &headers);
        // The run's rows carry the body's id: the request's log lines say it too.
        tracing::Span::current().record("request_id", ctx.request_id.as_str());
    }
    let (product_id, room_session_id) = match input::ids(&body) {
        Ok(ids) => ids,
        Err(err) => return bad_input(&state, &ctx, err),
    };
    let requested = EmitEvent {
        shop_id: ctx.shop_id.clone(),
        request_id: ctx.request_id.clone(),
        run_id: String::new(),
        source: EventSource::AppProxy,
        event_type: EventType::SfRenderRequested,
        payload_json: serde_json::json!({
            "productId": product_id,
            "roomSessionId": room_session_id,
        })
        .to_string(),
    };
    crate::render::refused("emit", state.telemetry.emit(requested));
    // Decoded images are what a render holds in memory: decode only inside a slot.
    let Some(slot) = state.renderer.render_slot().await else {
        return overloaded(&state, &ctx);
    };
    let limits = state.limits;
    // Decoding images is CPU work: keep it off the async worker threads. The slot goes
    // with it, so a caller who hangs up mid-decode does not free it early.
    let checked = tokio::task::spawn_blocking(move || (input::check(&body, &limits), slot)).await;
    let (input, slot) = match checked {
        Ok((Ok(input), slot)) => (input, slot),
        Ok((Err(err), _slot)) => return bad_input(&state, &ctx, err),
        Err(err) => {
            tracing::error!(error = %err, "input check task failed");
            state.metrics.request(RequestOutcome::Error);
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            );
        }
    };
    // The run goes on in its own task even if the caller hangs up, so it always
    // completes (and says so in telemetry), holding its slot until then.
    // Shutdown waits for it (up to SHUTDOWN_RENDER_DRAIN_MS), whether or not the
    // caller is still there. The run's log lines stay in the request's span.
    let run = state
        .renderer
        .spawn_run(ctx.clone(), input, slot, tracing::Span::current());
    match run.await {
        Ok(outcome) => {
            state.metrics.request(RequestOutcome::Rendered);
            let answer = RenderAnswer::from((outcome, ctx.request_id.clone()));
            with_request_id(Json(answer).into_response(), &ctx.request_id)
        }
        Err(err) => {
            tracing::error!(error = %err, "render task failed");
            state.metrics.request(RequestOutcome::Error);
            with_request_id(
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                ),
                &ctx.request_id,
            )
        }
    }
}

/// `GET /images/{*key}`. Every answer says `X-Content-Type-Options: nosniff`: a
/// browser must not guess another type (HTML, script) from a stored file's bytes.
async fn image(
    State(state): State<AppState>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> Response {
    let mut response = image_response(&state, &key).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn image_response(state: &AppState, key: &str) -> Response {
    match state.store.get(key).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                // Keys are unique per run: an image never changes.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        Err(StoreError::InvalidKey(_)) => error_response(
            StatusCode::BAD_REQUEST,
            "invalid_key",
            "invalid image key".into(),
        ),
        Err(StoreError::NotFound(_)) => {
            error_response(StatusCode::NOT_FOUND, "not_found", "no such image".into())
        }
        Err(err) => {
            tracing::error!(error = %err, "reading an image failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            )
        }
    }
}

/// `GET /readyz`: ready when the image store is usable. The broker is not a condition:
/// the renderer renders without it (telemetry queues, bounded, and counts what it
/// drops), which is the point of the design; its state is reported for operators.
/// That holds for JetStream as much as for the connection: a cluster without quorum
/// takes no events though the connection is up, so `telemetry.jetstream` says whether
/// the last publish was acknowledged ([`jetstream_readiness`]), and the answer stays
/// 200. Taking renderers out of a load balancer because the broker is down would turn
/// a telemetry outage into a render outage.
async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = tokio::fs::metadata(state.store.root())
        .await
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let stats = state.telemetry.stats();
    let body = serde_json::json!({
        "ready": store_ok,
        "imageStore": if store_ok { "ok" } else { "missing" },
        "telemetry": {
            "enabled": state.telemetry.is_enabled(),
            "connected": stats.connected,
            "jetstream": jetstream_readiness(state.telemetry.is_enabled(), &stats.jetstream),
            "queueDepth": stats.queue_depth,
        },
    });
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `/readyz`'s `telemetry.jetstream`: `"ok"` (the last publish was acknowledged),
/// `"unavailable: <reason> (for 12s)"` (publishes failing since then), `"unknown"`
/// (connected, nothing published yet: the SDK publishes its stats every stats
/// interval, so this lasts at most one), `"not connected"`, or `"disabled"`.
fn jetstream_readiness(enabled: bool, state: &JetStreamState) -> String {
    match state {
        _ if !enabled => "disabled".to_owned(),
        JetStreamState::Available { .. } => "ok".to_owned(),
        JetStreamState::Unavailable { reason, since } => {
            format!("unavailable: {reason} (for {}s)", since.elapsed().as_secs())
        }
        JetStreamState::Unknown => "unknown".to_owned(),
        JetStreamState::NotConnected => "not connected".to_owned(),
    }
}

/// `GET /metrics`.
async fn metrics(State(state): State<AppState>) -> Response {
    let text = state
        .metrics
        .render(&state.telemetry.stats(), state.telemetry.is_enabled());
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
