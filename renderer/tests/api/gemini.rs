//! The Gemini provider against a local fake that speaks the same JSON.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use image::ImageFormat;
use renderer::config::{GeminiSettings, ProviderSettings};
use serde_json::{json, Value};

use crate::helpers::{b64, image_bytes, request, sha256_hex, spawn_app};

const KEY: &str = "fake-gemini-key";
const MODEL: &str = "gemini-test-image";

#[derive(Clone, Default)]
struct Fake {
    /// Requests seen: (model path segment, body).
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

/// Answers like Gemini: an image for most prompts, an API error for prompts saying
/// "quota", a blocked prompt for "blocked", text only for "text", a JPEG for "jpeg".
async fn generate(
    State(fake): State<Fake>,
    Path(model_action): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    fake.seen
        .lock()
        .unwrap()
        .push((model_action.clone(), body.clone()));
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {"code": 403, "message": "API key not valid", "status": "PERMISSION_DENIED"}})),
        )
            .into_response();
    }
    let prompt = body["contents"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default();
    if prompt.contains("quota") {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}})),
        )
            .into_response();
    }
    if prompt.contains("blocked") {
        return Json(json!({"promptFeedback": {"blockReason": "SAFETY"}})).into_response();
    }
    if prompt.contains("text") {
        return Json(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "I can only describe it."}]}, "finishReason": "STOP"}]}))
            .into_response();
    }
    let (mime, bytes) = if prompt.contains("jpeg") {
        (
            "image/jpeg",
            image_bytes(32, 24, ImageFormat::Jpeg, [10, 200, 10, 255]),
        )
    } else {
        (
            "image/png",
            image_bytes(32, 24, ImageFormat::Png, [10, 10, 200, 255]),
        )
    };
    Json(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Here is the room."},
                {"inlineData": {"mimeType": mime, "data": b64(&bytes)}}
            ]},
            "finishReason": "STOP"
        }],
        "usageMetadata": {"promptTokenCount": 10}
    }))
    .into_response()
}

async fn start_fake() -> (String, Fake) {
    let fake = Fake::default();
    let router = Router::new()
        .route("/v1beta/models/{model_action}", post(generate))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), fake)
}

#[tokio::test]
async fn gemini_renders_and_its_errors_become_provider_errors() {
    let (base_url, fake) = start_fake().await;
    let app = spawn_app(None, |settings| {
        settings.provider = ProviderSettings::Gemini(GeminiSettings {
            model: MODEL.into(),
            api_key: KEY.into(),
            base_url: base_url.clone(),
        });
    })
    .await;
    let mut req = request(&["ok", "jpeg", "quota", "blocked", "text"]);
    for variant in req.body["promptPack"]["variants"].as_array_mut().unwrap() {
        let id = variant["id"].as_str().unwrap().to_owned();
        variant["prompt"] = json!(format!("Render variant {id}"));
    }
    let answer: Value = app
        .render(&req.body, "req-gemini")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "partial", "{answer}");
    let variants = answer["variants"].as_array().unwrap();
    let by_id = |id: &str| {
        variants
            .iter()
            .find(|v| v["variantId"] == id)
            .unwrap()
            .clone()
    };

    for id in ["ok", "jpeg"] {
        let variant = by_id(id);
        assert_eq!(variant["status"], "success", "{variant}");
        let bytes = app
            .get(variant["imageUrl"].as_str().unwrap())
            .await
            .bytes()
            .await
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{id} stored as PNG");
        assert_eq!(variant["imageSha256"], sha256_hex(&bytes).as_str());
        assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 32);
    }
    for (id, needle) in [
        ("quota", "RESOURCE_EXHAUSTED"),
        ("blocked", "SAFETY"),
        ("text", "text only"),
    ] {
        let variant = by_id(id);
        assert_eq!(variant["status"], "failed", "{variant}");
        assert_eq!(variant["errorCode"], "PROVIDER_ERROR");
        let message = variant["errorMessage"].as_str().unwrap();
        assert!(message.contains(needle), "{id}: {message}");
    }

    // What the fake received: the model in the path, the prompt, both images inline.
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    for (model_action, body) in seen {
        assert_eq!(model_action, format!("{MODEL}:generateContent"));
        let parts = body["contents"][0]["parts"].as_array().unwrap();
        assert!(parts[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Render variant"));
        let inline = |i: usize| &parts[i]["inline_data"];
        assert_eq!(inline(1)["mime_type"], "image/png");
        assert_eq!(inline(2)["mime_type"], "image/jpeg");
        let decode = |v: &Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap()
        };
        assert_eq!(decode(&inline(1)["data"]), req.product);
        assert_eq!(decode(&inline(2)["data"]), req.room);
        assert!(body["generationConfig"]["responseModalities"]
            .as_array()
            .unwrap()
            .contains(&json!("IMAGE")));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_gemini_key_fails_every_variant_with_the_api_message() {
    let (base_url, _fake) = start_fake().await;
    let app = spawn_app(None, |settings| {
        settings.provider = ProviderSettings::Gemini(GeminiSettings {
            model: MODEL.into(),
            api_key: "wrong".into(),
            base_url,
        });
    })
    .await;
    let answer: Value = app
        .render(&request(&["a", "b"]).body, "req-gemini-key")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "failed", "{answer}");
    for variant in answer["variants"].as_array().unwrap() {
        assert!(variant["errorMessage"]
            .as_str()
            .unwrap()
            .contains("PERMISSION_DENIED"));
    }
    app.stop().await;
}
