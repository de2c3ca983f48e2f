//! Request ids and request spans for the services' HTTP edge (the renderer and the
//! collector): [`traced`] wraps a router so that
//!
//! - every request has an `x-request-id`: the client's when it is sane ([`is_sane`]:
//!   bounded, printable ASCII), else a new UUIDv7, so a hostile or broken id never
//!   reaches a log line or a stored row;
//! - every response carries it back (unless the handler set its own);
//! - the handler runs in a `request` span with the method, the matched route and the
//!   id, so every log line of the request says which request it belongs to.
//!
//! Request and response are logged at debug; a failed request is not logged here: the
//! handler that knows why logs it, once.

use axum::extract::MatchedPath;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

/// The header carrying the request id, in and out.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id taken from a client (bytes).
pub const MAX_BYTES: usize = 256;

/// Whether a client's request id can be used as it is: not empty, at most
/// [`MAX_BYTES`], printable ASCII without spaces (no control characters to forge log
/// lines with).
pub fn is_sane(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_BYTES && id.chars().all(|c| c.is_ascii_graphic())
}

/// The request's id as [`traced`] left it in the headers.
pub fn of<B>(request: &Request<B>) -> Option<&str> {
    request.headers().get(HEADER).and_then(|v| v.to_str().ok())
}

/// Makes a new id (UUIDv7: sortable by time) where the client sent none usable.
#[derive(Debug, Clone, Copy, Default)]
struct NewId;

impl MakeRequestId for NewId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        HeaderValue::try_from(uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Removes a client's request id that [`is_sane`] refuses, so a new one is made.
fn drop_insane<B>(mut request: Request<B>) -> Request<B> {
    let insane = request
        .headers()
        .get_all(HEADER)
        .iter()
        .any(|value| !value.to_str().is_ok_and(is_sane));
    if insane {
        request.headers_mut().remove(HEADER);
    }
    request
}

/// The span a request's handler runs in.
fn span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id = of(request).unwrap_or_default(),
    )
}

/// `router` with request ids and request spans (see the module's doc).
pub fn traced(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .map_request(drop_insane::<axum::body::Body>)
            .layer(SetRequestIdLayer::new(HEADER, NewId))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(span::<axum::body::Body>)
                    .on_failure(()),
            )
            .layer(PropagateRequestIdLayer::new(HEADER)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt as _;

    /// A traced router whose handler answers with the request id it was given.
    async fn answer(id: Option<&[u8]>) -> (String, String) {
        let router = traced(Router::new().route(
            "/echo",
            get(|headers: axum::http::HeaderMap| async move {
                headers[HEADER].to_str().unwrap().to_owned()
            }),
        ));
        let mut request = Request::get("/echo");
        if let Some(id) = id {
            request = request.header(HEADER, HeaderValue::from_bytes(id).unwrap());
        }
        let response = router
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let header = response.headers()[HEADER].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (header, String::from_utf8(body.to_vec()).unwrap())
    }

    fn is_new(id: &str) -> bool {
        uuid::Uuid::parse_str(id).is_ok_and(|id| id.get_version_num() == 7)
    }

    #[tokio::test]
    async fn a_sane_id_is_kept_and_echoed() {
        assert_eq!(
            answer(Some(b"req-42")).await,
            ("req-42".into(), "req-42".into())
        );
    }

    #[tokio::test]
    async fn a_request_without_an_id_gets_a_new_one_in_and_out() {
        let (header, seen) = answer(None).await;
        assert!(is_new(&header), "{header}");
        assert_eq!(seen, header, "the handler saw the id the client gets");
    }

    #[tokio::test]
    async fn an_insane_id_is_replaced_in_and_out() {
        let long = "a".repeat(MAX_BYTES + 1);
        for insane in [long.as_bytes(), b"two words", b"caf\xc3\xa9", b""] {
            let (header, seen) = answer(Some(insane)).await;
            assert!(is_new(&header), "{insane:?} gave {header}");
            assert_eq!(seen, header, "{insane:?}");
        }
    }

    #[test]
    fn only_bounded_printable_ids_are_sane() {
        assert!(is_sane("req-1_ABC.9"));
        assert!(is_sane(&"a".repeat(MAX_BYTES)));
        assert!(!is_sane(""));
        assert!(!is_sane(&"a".repeat(MAX_BYTES + 1)));
        assert!(!is_sane("two words"));
        assert!(!is_sane("line\nbreak"));
        assert!(!is_sane("tab\there"));
        assert!(!is_sane("caf\u{e9}"));
    }
}
