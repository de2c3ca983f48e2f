//! The JSON API's description: `docs/openapi.json` (OpenAPI 3.1), embedded in the
//! binary and served at `/api/v1/openapi.json`, behind the same token as the rest of
//! `/api/v1`. It is written by hand and held to the code by `tests/monitor_api.rs`:
//! its paths are exactly [`super::api_paths`], each documented query parameter is one
//! the route reads (and none is missing), and real answers on both backends match its
//! schemas key for key.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::params::{NoParams, Params};

/// The document, as in the repository.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// `/api/v1/openapi.json`.
pub async fn document(_: Params<NoParams>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_json() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    }
}
