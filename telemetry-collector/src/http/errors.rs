//! One shape for every error answer, so a script can handle them all alike:
//!
//! ```json
//! {"error": {"status": 400, "code": "bad_parameter", "message": "limit must be between 1 and 500"}}
//! ```
//!
//! `status` repeats the HTTP status, `code` is a stable snake-case name a script can
//! branch on, `message` is a sentence for people (it may change). The codes with a
//! meaning of their own are `bad_parameter` (a query or path parameter's value is
//! refused; the message names it and says what is accepted), `unknown_parameter` (a
//! query parameter the route does not read; the message names it and lists those it
//! does), `not_found` (no such resource) and `unknown_route` (no such path); every
//! other error's code is its status's reason phrase in snake case (`unauthorized`,
//! `forbidden`, `method_not_allowed`, `payload_too_large`, `too_many_requests`,
//! `internal_server_error`, `service_unavailable`, ...).
//!
//! Where it applies: [`uniform`] wraps the whole router, so it sees what handlers
//! return ([`ApiError`], also what [`AppError`](super::AppError) becomes), what the
//! token check answers and what axum itself answers (405 for a method a path does
//! not serve, 413 for a body over the limit, a rejected form). Under `/monitor` a
//! browser is asking, so the same error is an HTML page with the same status, code
//! and message (escaped); everywhere else, `/api/v1` and unknown paths alike, it is
//! the JSON above. Answers that already carry a body of their own making are left as
//! they are: `/readyz`'s 503 (its JSON says which dependency is down) and the login
//! form's 401 (the form again, with its error). Headers such as `Retry-After`,
//! `WWW-Authenticate` and `Allow` are kept.

use std::borrow::Cow;

use askama::Template;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Longest part of a request's path quoted back in a message.
pub const MAX_QUOTED_PATH_CHARS: usize = 200;
/// Most of a framework answer's plain-text body read to become a message.
const MAX_BARE_MESSAGE_BYTES: usize = 4096;
/// The error pages' policy: the monitor's own (the page is inside its layout, with
/// its stylesheet and script from this origin), no inline script.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// An error answer: status, code and message (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
}

/// `{"error": {...}}` on the wire.
#[derive(Serialize)]
struct Envelope<'a> {
    error: Fields<'a>,
}

#[derive(Serialize)]
struct Fields<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
}

/// The HTML rendering, for `/monitor`: inside the monitor's layout (its navigation is
/// the way back), no page of the navigation marked current and no logout button (who
/// is asking is not known here).
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: &'static str,
    auth: bool,
    status: u16,
    reason: &'a str,
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with a code of its own.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
        }
    }

    /// An error whose code is its status's reason phrase (`payload_too_large`).
    pub fn of_status(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Cow::Owned(status_code_name(status)),
            message: message.into(),
        }
    }

    /// The JSON answer. It also carries the error itself (as an extension), which
    /// [`uniform`] renders as a page under `/monitor`.
    pub fn json(&self) -> Response {
        let body = Envelope {
            error: Fields {
                status: self.status.as_u16(),
                code: &self.code,
                message: &self.message,
            },
        };
        let text = serde_json::to_string(&body).unwrap_or_else(|_| {
            // Three plain strings always serialize; this is never reached.
            r#"{"error":{"status":500,"code":"internal_server_error","message":"internal error"}}"#
                .to_owned()
        });
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            text,
        )
            .into_response();
        secure(response.headers_mut());
        response.extensions_mut().insert(self.clone());
        response
    }

    /// The HTML page: the same status, code and message.
    pub fn html(&self) -> Response {
        let page = ErrorPage {
            nav: "",
            auth: false,
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            code: &self.code,
            message: &self.message,
        };
        let mut response = match page.render() {
            Ok(html) => (self.status, axum::response::Html(html)).into_response(),
            Err(err) => {
                tracing::error!(error = %err, "error page failed");
                (self.status, self.message.clone()).into_response()
            }
        };
        let headers = response.headers_mut();
        secure(headers);
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.json()
    }
}

/// `nosniff` on every error answer.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// `Payload Too Large` → `payload_too_large`; `error` for a status without a phrase.
pub fn status_code_name(status: StatusCode) -> String {
    let Some(reason) = status.canonical_reason() else {
        return "error".to_owned();
    };
    let mut name = String::with_capacity(reason.len());
    for c in reason.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    name.trim_matches('_').to_owned()
}

/// Whether an answer to `path` is for a browser (an HTML page) rather than a script.
pub fn is_page(path: &str) -> bool {
    path == "/monitor" || path.starts_with("/monitor/")
}

/// `path`, cut to [`MAX_QUOTED_PATH_CHARS`] with `…`.
fn quoted(path: &str) -> String {
    if path.chars().count() <= MAX_QUOTED_PATH_CHARS {
        return path.to_owned();
    }
    path.chars().take(MAX_QUOTED_PATH_CHARS).collect::<String>() + "…"
}

/// The router's fallback: no route has this path.
pub async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_route",
        format!(
            "no route for {method} {}; the API is described at /api/v1/openapi.json",
            quoted(uri.path())
        ),
    )
}

/// Middleware around the whole router: every error answer in the shape of the module
/// doc, as a page under `/monitor`, as JSON elsewhere.
pub async fn uniform(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let page = is_page(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let error = match parts.extensions.remove::<ApiError>() {
        Some(error) => error,
        None if has_own_body(&parts.headers) => return Response::from_parts(parts, body),
        None => {
            let text = axum::body::to_bytes(body, MAX_BARE_MESSAGE_BYTES)
                .await
                .ok()
                .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
                .map(|text| text.trim().to_owned())
                .unwrap_or_default();
            ApiError::of_status(status, bare_message(status, &method, &parts.headers, text))
        }
    };
    let mut answer = if page { error.html() } else { error.json() };
    let headers = answer.headers_mut();
    for name in parts.headers.keys() {
        if name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || headers.contains_key(name)
        {
            continue;
        }
        for value in parts.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    answer
}

/// An answer made on purpose with a body of its own (HTML or JSON) that is not an
/// [`ApiError`]: `/readyz`'s 503, the login form's 401.
fn has_own_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html") || v.starts_with("application/json"))
}

/// The message of an answer axum made (plain text or empty).
fn bare_message(status: StatusCode, method: &Method, headers: &HeaderMap, text: String) -> String {
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("GET");
        return format!("{method} is not served at this path (allowed: {allowed})");
    }
    if !text.is_empty() {
        return text;
    }
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;

    #[test]
    fn codes_are_reason_phrases_in_snake_case() {
        for (status, code) in [
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            (StatusCode::FORBIDDEN, "forbidden"),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error"),
            (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            (StatusCode::from_u16(599).unwrap(), "error"),
        ] {
            assert_eq!(status_code_name(status), code);
        }
    }

    /// Bare answers (what a layer or a rejection would make) for both audiences.
    #[tokio::test]
    async fn bare_answers_become_the_shape_and_keep_their_headers() {
        let bare = |status: u16, body: &'static str| {
            move || async move {
                let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
                response
            }
        };
        let app = Router::new()
            .route("/api/v1/forbidden", get(bare(403, "")))
            .route("/api/v1/large", get(bare(413, "too big")))
            .route("/monitor/forbidden", get(bare(403, "<b>no</b>")))
            .layer(axum::middleware::from_fn(uniform));
        let call = |path: &'static str| {
            let app = app.clone();
            async move {
                let response = app
                    .oneshot(Request::get(path).body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                let headers = response.headers().clone();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (headers, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let (headers, body) = call("/api/v1/forbidden").await;
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::RETRY_AFTER], "7");
        assert_eq!(
            body,
            r#"{"error":{"status":403,"code":"forbidden","message":"forbidden"}}"#
        );
        let (_, body) = call("/api/v1/large").await;
        assert_eq!(
            body,
            r#"{"error":{"status":413,"code":"payload_too_large","message":"too big"}}"#
        );
        let (headers, body) = call("/monitor/forbidden").await;
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(
            body.contains("&#60;b&#62;no&#60;/b&#62;") && body.contains(">forbidden<"),
            "{body}"
        );
    }
}
