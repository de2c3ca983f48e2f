//! Access with `MONITOR_TOKEN`: an `Authorization: Bearer` header, or the login form,
//! which starts a session ([`super::sessions`]) and sets an HttpOnly, SameSite=Strict
//! cookie holding its random id (never the token), for `MONITOR_SESSION_TTL`. Logging
//! out ends the session on the server, so the cookie no longer works anywhere. Token
//! comparisons hash both sides first and compare in constant time. Without access:
//! 401 for the API (the error shape of [`crate::http::errors`]), a redirect to the
//! login page for HTML.
//!
//! Wrong tokens are throttled per client address, where the token itself is checked
//! (bearer header, login form). A presented token is always compared first, so the
//! right token is accepted at once whatever anyone else sends. A wrong one is
//! answered only after [`DEFAULT_FAILED_AUTH_DELAY`], and at most
//! [`DEFAULT_MAX_TOKEN_CHECKS`] wrong tokens from one client address wait out that
//! delay at once; further wrong ones from that address get 429 (`Retry-After`) at
//! once. The address is the TCP peer's (`ConnectInfo<SocketAddr>`; an IPv6 address
//! counts by its /64, which one host usually holds whole); requests that carry none
//! (a router driven without a server) share one bucket, and so do addresses beyond
//! [`MAX_THROTTLED_CLIENTS`] with wrong tokens in flight at the same time. Behind a
//! reverse proxy every client has the proxy's address: they share its bucket, and
//! still nobody with the right token is held up. `X-Forwarded-For` is not trusted
//! (anyone can send it).
//!
//! What this bounds is the work and the connections a guesser holds, not how many
//! tokens a guesser can try: with many connections most wrong guesses get their 429
//! at once. Guessing stays hopeless because of the token's length (at least
//! [`MIN_TOKEN_CHARS`] characters; `openssl rand -hex 16` is 128 bits).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

use crate::http::{ApiError, AppState};

use super::params::Params;

/// Name of the login cookie.
pub const SESSION_COOKIE: &str = "monitor_session";
/// Longest token accepted from a request (longer ones are refused before hashing).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Shortest `MONITOR_TOKEN` start-up accepts (`openssl rand -hex 16` gives 32).
pub const MIN_TOKEN_CHARS: usize = 16;
/// How long a wrong token waits for its answer. Knob: `MONITOR_FAILED_AUTH_DELAY_MS`.
pub const DEFAULT_FAILED_AUTH_DELAY: Duration = Duration::from_secs(1);
/// Wrong tokens from one client address waiting out their delay at once; more wrong
/// ones from that address get 429 at once. Knob: `MONITOR_MAX_TOKEN_CHECKS`.
pub const DEFAULT_MAX_TOKEN_CHECKS: usize = 4;
/// Client addresses the throttle tells apart while they have wrong tokens in flight
/// (an entry lives only as long as one of its wrong tokens waits); past that, new
/// addresses share one bucket. Bounds the throttle's memory whatever the addresses.
pub const MAX_THROTTLED_CLIENTS: usize = 4_096;

/// Why a presented token was not accepted.
enum Refused {
    /// Wrong (answered after the delay).
    Wrong,
    /// Wrong, and its address already has as many wrong tokens waiting as allowed.
    Busy,
}

/// The peer address of a request, when the server provides one
/// (`ConnectInfo<SocketAddr>`, which the collector's server inserts into every
/// request). Never rejects: without it the request counts in the shared bucket.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .ok()
            .map(|ConnectInfo(addr)| addr);
        Ok(Self(peer))
    }
}

/// A throttle bucket: an IPv4 address, an IPv6 /64, or `None` (the shared bucket).
type Bucket = Option<IpAddr>;

fn bucket(client: ClientAddr) -> Bucket {
    client.0.map(|addr| match addr.ip().to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    })
}

/// Wrong tokens waiting out their delay, per client bucket (see the module doc).
pub(crate) struct FailureThrottle {
    waiting: Arc<Mutex<HashMap<Bucket, usize>>>,
    per_client: usize,
}

/// One wrong token's place in its bucket; released when dropped (also when the
/// client goes away mid-delay).
struct Waiting {
    waiting: Arc<Mutex<HashMap<Bucket, usize>>>,
    bucket: Bucket,
}

impl FailureThrottle {
    pub(crate) fn new(per_client: usize) -> Self {
        Self {
            waiting: Arc::default(),
            per_client: per_client.max(1),
        }
    }

    /// A place for one more wrong token from `client`, unless its bucket is full.
    fn enter(&self, client: ClientAddr) -> Option<Waiting> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = bucket(client);
        if key.is_some() && !waiting.contains_key(&key) && waiting.len() >= MAX_THROTTLED_CLIENTS {
            key = None;
        }
        let count = waiting.entry(key).or_insert(0);
        if *count >= self.per_client {
            return None;
        }
        *count += 1;
        Some(Waiting {
            waiting: self.waiting.clone(),
            bucket: key,
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = waiting.get_mut(&self.bucket) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                waiting.remove(&self.bucket);
            }
        }
    }
}

/// Checks a presented token: compared first (constant time), and only a wrong one is
/// throttled (see the module doc).
async fn check_token(state: &AppState, client: ClientAddr, candidate: &str) -> Result<(), Refused> {
    let monitor = &state.monitor.inner;
    let Some(expected) = monitor.token_digest else {
        return Ok(());
    };
    if candidate.len() <= MAX_TOKEN_BYTES && bool::from(digest(candidate).ct_eq(&expected)) {
        return Ok(());
    }
    let Some(waiting) = monitor.failures.enter(client) else {
        return Err(Refused::Busy);
    };
    tokio::time::sleep(monitor.failed_auth_delay).await;
    drop(waiting);
    Err(Refused::Wrong)
}

/// 429 with `Retry-After`, for a wrong token over its address's allowance (JSON for
/// the API, a page on the login form: [`crate::http::errors::uniform`]).
fn too_many(state: &AppState) -> Response {
    let retry = state.monitor.inner.failed_auth_delay.as_secs().max(1);
    let mut response = ApiError::of_status(
        StatusCode::TOO_MANY_REQUESTS,
        "too many wrong tokens from this address at once; try again shortly",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    response
}

/// SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The bearer token of the request, if it sends one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The session ids the request's cookies carry.
fn session_ids(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    cookies(headers)
        .filter(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request carries the cookie of a live session.
fn has_session(state: &AppState, headers: &HeaderMap) -> bool {
    let sessions = &state.monitor.inner.sessions;
    session_ids(headers).any(|id| sessions.is_live(id))
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// Middleware on every monitor page and API route.
pub async fn require_token(
    State(state): State<AppState>,
    client: ClientAddr,
    request: Request,
    next: Next,
) -> Response {
    if !state.monitor.auth_required() || has_session(&state, request.headers()) {
        return next.run(request).await;
    }
    let api = request.uri().path().starts_with("/api/");
    if let Some(token) = bearer(request.headers()) {
        match check_token(&state, client, token).await {
            Ok(()) => return next.run(request).await,
            Err(Refused::Busy) => return too_many(&state),
            Err(Refused::Wrong) => {}
        }
    }
    if api {
        let mut response = ApiError::of_status(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <MONITOR_TOKEN> (or log in at /monitor/login)",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"monitor\""),
        );
        return response;
    }
    let next_path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/monitor");
    let target: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next_path)
        .finish();
    Redirect::to(&format!("/monitor/login?{target}")).into_response()
}

/// The login page.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub next: String,
    pub error: bool,
}

/// `?next=` of the login page (any other name is a 400: [`Params`]).
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    pub next: Option<String>,
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Where to go after logging in: only a same-site path, else `/monitor`. That is one
/// leading `/` (`//host` and `/\host` lead to another site), no backslash, visible
/// ASCII only (CR/LF would split the `Location` header; a URI is ASCII anyway), and
/// not the login page itself.
fn safe_next(next: Option<&str>) -> String {
    let same_site = |next: &str| {
        let bytes = next.as_bytes();
        bytes.first() == Some(&b'/')
            && bytes.get(1) != Some(&b'/')
            && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\')
            && !next.starts_with("/monitor/login")
    };
    match next {
        Some(next) if same_site(next) => next.to_owned(),
        _ => "/monitor".to_owned(),
    }
}

pub async fn login_page(Params(query): Params<LoginQuery>) -> Response {
    super::views::render(&LoginPage {
        next: safe_next(query.next.as_deref()),
        error: false,
    })
}

/// The login form. Behind a TLS proxy (`X-Forwarded-Proto: https`) the cookie is also
/// `Secure`.
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let monitor = &state.monitor.inner;
    // No token configured: nothing to log in to.
    if monitor.token_digest.is_none() {
        return Redirect::to(&next).into_response();
    }
    match check_token(&state, client, &form.token).await {
        Ok(()) => {}
        Err(Refused::Busy) => return too_many(&state),
        Err(Refused::Wrong) => {
            let mut response = super::views::render(&LoginPage { next, error: true });
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return response;
        }
    }
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if https { "; Secure" } else { "" };
    let session = monitor.sessions.create();
    let max_age = monitor.sessions.ttl().as_secs();
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Ends the request's session (on the server: the same cookie sent again is refused)
/// and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    for id in session_ids(&headers) {
        state.monitor.inner.sessions.revoke(id);
    }
    let mut response = Redirect::to("/monitor/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("monitor_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}
