use std::collections::BTreeMap;
use std::time::Duration;

use image::ImageFormat;
use serde_json::{json, Value};
use telemetry_proto::v1::envelope::Body;
use telemetry_proto::v1::{EventSource, EventType};
use test_support::Isolation;

use crate::helpers::{b64, image_bytes, recorded, request, signed_query, spawn_app, SECRET, SHOP};

#[tokio::test]
async fn each_kind_of_bad_input_gets_400_with_its_reason_and_a_rejected_event() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |settings| {
        settings.limits.max_variants = 4;
        settings.limits.max_image_pixels = 200 * 200;
        settings.limits.max_image_bytes = 256 * 1024;
        settings.limits.max_body_bytes = 1024 * 1024;
    })
    .await;
    let good = request(&["a"]).body;
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body.to_string().into_bytes()
    };
    let pack = |n: usize| json!({"version": "v1", "variants": (0..n).map(|i| json!({"id": format!("v{i}"), "prompt": "p"})).collect::<Vec<_>>()});
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed_json", b"{\"productId\": ".to_vec(), 400),
        ("missing_field", with("roomSessionId", Value::Null), 400),
        (
            "invalid_base64",
            with("productImage", json!("%%% not base64 %%%")),
            400,
        ),
        (
            "undecodable_image",
            with(
                "roomImage",
                json!(b64(b"GIF89a this is not a supported image")),
            ),
            400,
        ),
        (
            "undecodable_image",
            with("productImage", json!(b64(b"\x89PNG\r\n\x1a\n truncated"))),
            400,
        ),
        (
            "too_many_pixels",
            with(
                "roomImage",
                json!(b64(&image_bytes(
                    300,
                    200,
                    ImageFormat::Png,
                    [1, 2, 3, 255]
                ))),
            ),
            400,
        ),
        (
            "image_too_large",
            with("roomImage", json!("A".repeat(400 * 1024))),
            400,
        ),
        ("no_variants", with("promptPack", pack(0)), 400),
        ("too_many_variants", with("promptPack", pack(5)), 400),
        (
            "invalid_variant_id",
            with(
                "promptPack",
                json!({"version": "v1", "variants": [{"id": "../x", "prompt": "p"}]}),
            ),
            400,
        ),
        ("body_too_large", vec![b' '; 1100 * 1024], 413),
    ];
    let query = signed_query(SHOP, SECRET);
    let mut expected = BTreeMap::new();
    for (index, (reason, body, status)) in cases.iter().enumerate() {
        let request_id = format!("req-bad-{index}");
        let response = app.post(&query, body.clone(), &request_id).await;
        assert_eq!(response.status(), *status, "{reason}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], *reason, "{answer}");
        assert!(!answer["message"].as_str().unwrap().is_empty());
        expected.insert(request_id, reason.to_string());
    }
    // WebP is accepted like PNG and JPEG.
    let webp = with(
        "roomImage",
        json!(b64(&image_bytes(40, 30, ImageFormat::WebP, [9, 9, 9, 255]))),
    );
    assert_eq!(app.post(&query, webp, "req-webp").await.status(), 200);

    app.stop().await;
    let envelopes = recorded(&isolation, 1, Duration::from_secs(5)).await;
    let mut rejected = BTreeMap::new();
    for envelope in envelopes {
        if envelope.request_id == "req-webp" {
            continue;
        }
        match envelope.body {
            Some(Body::Event(event)) if event.r#type == EventType::SfRenderRejected as i32 => {
                assert_eq!(event.source, EventSource::AppProxy as i32);
                assert_eq!(envelope.shop_id, SHOP);
                let payload: Value = serde_json::from_str(&event.payload_json).unwrap();
                assert!(payload["message"].as_str().is_some_and(|m| !m.is_empty()));
                rejected.insert(
                    envelope.request_id.clone(),
                    payload["reason"].as_str().unwrap().to_owned(),
                );
            }
            // The request event comes first when the ids could be read.
            Some(Body::Event(event)) if event.r#type == EventType::SfRenderRequested as i32 => {}
            other => panic!("a rejected request made a run: {other:?}"),
        }
    }
    assert_eq!(rejected, expected);
}

#[tokio::test]
async fn a_control_character_in_any_id_gets_400_naming_the_field() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |_| {}).await;
    let good = request(&["a"]).body;
    let query = signed_query(SHOP, SECRET);
    let cases: Vec<(&str, Value)> = vec![
        ("productId", json!("gid://shopify/Product/4\u{0}2")),
        ("productAssetId", json!("asset\r\n42")),
        ("roomSessionId", json!("room\u{1b}[31m-7")),
        ("requestId", json!("req\u{7}-1")),
        ("promptPack.version", json!("pack\u{85}-2024")),
        ("promptPack.variants.id", json!("a\u{7f}")),
    ];
    for (index, (field, value)) in cases.into_iter().enumerate() {
        let mut body = good.clone();
        match field {
            "promptPack.version" => body["promptPack"]["version"] = value,
            "promptPack.variants.id" => body["promptPack"]["variants"][0]["id"] = value,
            _ => body[field] = value,
        }
        let request_id = format!("req-control-{index}");
        let response = app
            .post(&query, body.to_string().into_bytes(), &request_id)
            .await;
        assert_eq!(response.status(), 400, "{field}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "control_character", "{field}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(field), "{field}: {answer}");
        assert!(!message.chars().any(char::is_control), "{answer}");
    }
    app.stop().await;
}

#[tokio::test]
async fn values_echoed_into_errors_and_rejected_events_are_truncated() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |_| {}).await;
    let query = signed_query(SHOP, SECRET);
    let quotes = "\"".repeat(32_000);
    let mut long_variant_id = request(&["a"]).body;
    long_variant_id["promptPack"]["variants"][0]["id"] = json!(quotes);
    // serde's own message quotes a string where a variant should be.
    let mut string_variant = request(&["a"]).body;
    string_variant["promptPack"]["variants"] = json!([quotes]);
    for (request_id, body, reason) in [
        ("req-long-id", long_variant_id, "invalid_variant_id"),
        ("req-string-variant", string_variant, "malformed_json"),
    ] {
        let response = app
            .post(&query, body.to_string().into_bytes(), request_id)
            .await;
        assert_eq!(response.status(), 400);
        let text = response.text().await.unwrap();
        assert!(text.len() < 1024, "{} bytes: {text:.300}", text.len());
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["error"], reason, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains('…'),
            "{answer}"
        );
    }
    let report = app.stop().await;
    assert_eq!(report.dropped, 0, "{report:?}");
    let envelopes = recorded(&isolation, 2, Duration::from_secs(5)).await;
    let rejected: Vec<(String, String)> = envelopes
        .into_iter()
        .filter_map(|envelope| match envelope.body {
            Some(Body::Event(event)) if event.r#type == EventType::SfRenderRejected as i32 => {
                assert!(
                    event.payload_json.len() < 1024,
                    "{}",
                    event.payload_json.len()
                );
                let payload: Value = serde_json::from_str(&event.payload_json).unwrap();
                Some((
                    envelope.request_id,
                    payload["reason"].as_str().unwrap().to_owned(),
                ))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        [
            ("req-long-id".to_owned(), "invalid_variant_id".to_owned()),
            ("req-string-variant".to_owned(), "malformed_json".to_owned()),
        ]
    );
}
