//! The monitor: server-rendered HTML pages (`/monitor/...`), the JSON API
//! (`/api/v1/...`) over the same queries, live updates by SSE, token access and
//! security headers.
//!
//! Every untrusted string (shop ids, payloads, error messages come from storefronts)
//! reaches the page through askama's HTML escaping, or through [`views::escape`] in the
//! server-drawn SVG; links are built from fixed prefixes plus percent-encoded values,
//! so no stored value can become a `javascript:` URL. The only script is
//! `static/monitor.js` (SSE), so the Content-Security-Policy forbids inline script.
//!
//! # Layout
//! One module per resource, each holding its query string, the one read both of its
//! renderings share, its page (askama template and rows) and its `/api/v1` types
//! (built from the store's records field by field, so a column rename does not
//! change the API):
//! - [`runs`]: the runs list; [`runs::detail`]: one run, its variants and timeline.
//! - [`events`]: the events list (its rows are also a run's timeline).
//! - [`dead_letters`]: dead letters with byte previews.
//! - [`producers`]: the producers' loss ledger.
//! - [`overview`]: rates and latency per model, prompt pack and both, with [`charts`].
//! - [`errors`]: failed and timed-out variants grouped by model, error code and
//!   normalised message, with sparklines and each group's runs.
//!
//! Shared by them: [`auth`] (bearer header or login cookie, login and logout) and
//! [`sessions`] (random ids, expiring, revocable); [`params`] (query-string parsing,
//! cursors, links); [`views`] (how values are shown, rendering); [`json_blob`] (stored
//! JSON answered as JSON); [`live`] (SSE streams that end on shutdown); [`openapi`]
//! (the API's description). The router below maps the routes to them; the API's
//! routes are listed once, in [`api_routes`], which the OpenAPI document is checked
//! against.

pub mod auth;
pub mod charts;
pub mod dead_letters;
pub mod errors;
pub mod events;
pub mod health;
pub mod json_blob;
pub mod live;
pub mod openapi;
pub mod overview;
pub mod params;
pub mod producers;
pub mod runs;
pub mod sessions;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use service_kit::ExposeSecret as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::MonitorSettings;
use crate::http::AppState;
use crate::store::StaleCutoff;
use service_kit::now_ms;

/// Live (SSE) streams open at once by default (each polls the database every
/// [`LIVE_POLL_INTERVAL`]); more get 503. Knob: `MONITOR_MAX_LIVE_CLIENTS`.
pub const DEFAULT_MAX_LIVE_CLIENTS: usize = 64;
/// Upper bound of the knob: past it, polling alone would load the database.
pub const MAX_LIVE_CLIENTS_LIMIT: usize = 1_024;
/// How often a live stream looks for changes.
pub const LIVE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Overview (stats) queries running at once by default. They read every run in the
/// window (seconds for 30 days of a busy shop), so the rest of the monitor keeps
/// connections of its own. Knob: `MONITOR_MAX_OVERVIEW_QUERIES`.
pub const DEFAULT_MAX_OVERVIEW_QUERIES: usize = 2;
/// Upper bound of that knob.
pub const MAX_OVERVIEW_QUERIES_LIMIT: usize = 16;
/// How long an overview request waits for its turn before 503 by default. Knob:
/// `MONITOR_OVERVIEW_QUEUE_WAIT_MS`.
pub const DEFAULT_OVERVIEW_QUEUE_WAIT: Duration = Duration::from_secs(30);
/// Upper bound of that knob.
pub const MAX_OVERVIEW_QUEUE_WAIT: Duration = Duration::from_secs(3600);
/// Overview window when none is chosen.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What the monitor's handlers share (inside [`AppState`]).
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    /// SHA-256 of the token: compared in constant time, whatever the input length.
    token_digest: Option<[u8; 32]>,
    /// Live login sessions (in memory: a restart, e.g. with a new token, ends them).
    sessions: sessions::Sessions,
    image_base_url: Option<String>,
    csp: HeaderValue,
    sse_slots: Arc<Semaphore>,
    /// Wrong tokens per client address; see [`auth::DEFAULT_MAX_TOKEN_CHECKS`].
    failures: auth::FailureThrottle,
    /// See [`DEFAULT_MAX_OVERVIEW_QUERIES`].
    overview_slots: Arc<Semaphore>,
    /// See [`DEFAULT_OVERVIEW_QUEUE_WAIT`].
    overview_queue_wait: Duration,
    /// See [`auth::DEFAULT_FAILED_AUTH_DELAY`].
    failed_auth_delay: Duration,
    /// See [`producers::DEFAULT_PRODUCER_SILENT_AFTER`].
    producer_silent_after: Duration,
    /// See [`MonitorSettings::readyz_detail`].
    readyz_detail: bool,
    /// See [`crate::store::stale::DEFAULT_STALE_RUN_AFTER`].
    stale_run_after: Duration,
    /// The health strip's 24-hour failure rate, kept a minute.
    health_baseline: health::BaselineCache,
    /// The database error last logged by [`Monitor::readyz_database`].
    readyz_logged: std::sync::Mutex<Option<String>>,
    shutdown: CancellationToken,
}

impl Monitor {
    /// From the settings; `shutdown` ends open SSE streams so graceful shutdown can finish.
    pub fn new(settings: &MonitorSettings, shutdown: CancellationToken) -> Self {
        let token_digest = settings
            .token
            .as_ref()
            .map(|token| auth::digest(token.expose_secret()));
        let image_base_url = settings
            .image_base_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned());
        let csp = content_security_policy(image_base_url.as_deref());
        Self {
            inner: Arc::new(Inner {
                token_digest,
                sessions: sessions::Sessions::new(settings.session_ttl),
                image_base_url,
                csp,
                sse_slots: Arc::new(Semaphore::new(settings.max_live_clients.max(1))),
                failures: auth::FailureThrottle::new(settings.max_token_checks),
                overview_slots: Arc::new(Semaphore::new(settings.max_overview_queries.max(1))),
                overview_queue_wait: settings.overview_queue_wait,
                failed_auth_delay: settings.failed_auth_delay,
                producer_silent_after: settings.producer_silent_after,
                readyz_detail: settings.readyz_detail,
                stale_run_after: settings.stale_run_after,
                health_baseline: health::BaselineCache::default(),
                readyz_logged: std::sync::Mutex::new(None),
                shutdown,
            }),
        }
    }

    /// The health strip's kept 24-hour failure rate.
    pub(crate) fn health_baseline(&self) -> &health::BaselineCache {
        &self.inner.health_baseline
    }

    /// Whether a token is required.
    pub fn auth_required(&self) -> bool {
        self.inner.token_digest.is_some()
    }

    /// How long a producer may be quiet before the ledger calls it silent.
    pub fn producer_silent_after(&self) -> Duration {
        self.inner.producer_silent_after
    }

    /// Base URL of output images, without a trailing slash.
    pub fn image_base_url(&self) -> Option<&str> {
        self.inner.image_base_url.as_deref()
    }

    /// What `/readyz` says of the database, given why it is not usable (`None`: `ok`).
    /// On a loopback address, the reason. Off loopback only `unavailable`: the text
    /// can name hosts, paths and the driver's messages, and `/readyz` needs no token;
    /// the reason goes to the log instead (once each time it changes).
    pub fn readyz_database(&self, reason: Option<String>) -> String {
        let mut logged = self
            .inner
            .readyz_logged
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(reason) = reason else {
            *logged = None;
            return "ok".to_owned();
        };
        if self.inner.readyz_detail {
            return reason;
        }
        if logged.as_deref() != Some(reason.as_str()) {
            tracing::warn!(reason = %reason, "database not usable; /readyz says \"unavailable\"");
            *logged = Some(reason);
        }
        "unavailable".to_owned()
    }

    /// Which runs still `running` are stale now (`COLLECTOR_STALE_RUN_AFTER` ago).
    pub fn stale_cutoff(&self) -> StaleCutoff {
        StaleCutoff::at(now_ms(), self.inner.stale_run_after)
    }

    /// Fires when the collector shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
}

/// Scripts and styles from this origin only, no inline script, no framing; images
/// also from the image server's origin when one is configured.
fn content_security_policy(image_base_url: Option<&str>) -> HeaderValue {
    let image_origin = image_base_url.and_then(origin).unwrap_or_default();
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' {image_origin}; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ))
}

/// `scheme://host[:port]` of an http(s) URL, if it has only plain host characters.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    (matches!(scheme, "http" | "https") && !host.is_empty() && host.chars().all(plain))
        .then(|| format!("{scheme}://{host}"))
}

/// The JSON API: every `/api/v1` route is here and nowhere else, so that
/// `docs/openapi.json` can be held to this list (`tests/monitor_api.rs`).
fn api_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/v1/runs", get(runs::api)),
        ("/api/v1/runs/{id}", get(runs::detail::api)),
        ("/api/v1/events", get(events::api)),
        ("/api/v1/dead-letters", get(dead_letters::api)),
        ("/api/v1/producers", get(producers::api)),
        ("/api/v1/stats", get(overview::api)),
        ("/api/v1/health", get(health::api)),
        ("/api/v1/error-groups", get(errors::api)),
        ("/api/v1/openapi.json", get(openapi::document)),
    ]
}

/// The paths of the JSON API's routes, in axum's (and OpenAPI's) `{param}` syntax.
pub fn api_paths() -> Vec<&'static str> {
    api_routes().into_iter().map(|(path, _)| path).collect()
}

/// The monitor's routes (pages, API, live streams, static files, login), with access
/// control and security headers; merged into [`crate::http::router`].
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/monitor", get(runs::page))
        .route("/monitor/runs/{id}", get(runs::detail::page))
        .route("/monitor/events", get(events::page))
        .route("/monitor/dead-letters", get(dead_letters::page))
        .route("/monitor/producers", get(producers::page))
        .route("/monitor/overview", get(overview::page))
        .route("/monitor/overview/live", get(overview::live))
        .route("/monitor/health", get(health::fragment))
        .route("/monitor/errors", get(errors::page))
        .route("/monitor/live/runs", get(runs::live))
        .route("/monitor/live/runs/{id}", get(runs::detail::live))
        .route("/monitor/live/events", get(events::live))
        .route("/monitor/logout", post(auth::logout));
    let protected = api_routes()
        .into_iter()
        .fold(pages, |routes, (path, route)| routes.route(path, route))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .merge(protected)
        .route("/monitor/login", get(auth::login_page).post(auth::login))
        .route("/monitor/static/monitor.css", get(stylesheet))
        .route("/monitor/static/monitor.js", get(script))
        .layer(middleware::from_fn_with_state(state, security_headers))
}

/// CSP, no-sniff and frame-deny on every monitor and API response.
async fn security_headers(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        state.monitor.inner.csp.clone(),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The stylesheet, embedded in the binary.
pub const STYLESHEET: &str = include_str!("../../static/monitor.css");
/// The live-update script, embedded in the binary.
pub const SCRIPT: &str = include_str!("../../static/monitor.js");

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", SCRIPT)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WCAG 2 contrast ratio of two `#rrggbb` colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let luminance = |hex: &str| {
            let channel = |i: usize| {
                let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
                if c <= 0.039_28 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
        };
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    /// Every status badge's text reaches WCAG AA against its background (4.5:1), and
    /// the stylesheet's comment gives each ratio as computed here.
    #[test]
    fn status_badges_reach_wcag_aa_contrast() {
        let mut badges = 0;
        for line in STYLESHEET.lines().filter(|l| l.starts_with(".st-")) {
            let colour = |property: &str| {
                let at = line.find(&format!("{property}: #")).unwrap() + property.len() + 2;
                line[at..at + 7].to_owned()
            };
            let (fg, bg) = (colour("color"), colour("background"));
            let ratio = contrast(&fg, &bg);
            assert!(ratio >= 4.5, "{line}: {ratio:.2}:1");
            let noted = format!("{fg} on {bg} {ratio:.2}:1");
            let comment = STYLESHEET.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(comment.contains(&noted), "the comment should say {noted:?}");
            badges += 1;
        }
        assert_eq!(badges, 5, "ok, partial/timeout, failed, running, stale");
    }

    #[test]
    fn the_image_origin_joins_the_policy_only_when_plain() {
        assert_eq!(
            origin("http://127.0.0.1:8081/images").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(origin("http://evil; script-src *"), None);
        assert_eq!(origin("javascript:alert(1)"), None);
    }
}
