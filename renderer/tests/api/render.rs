use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use renderer::input::Variant;
use renderer::render::final_prompt;
use serde_json::Value;
use telemetry::hash_prompt;
use telemetry_proto::v1::envelope::Body;
use telemetry_proto::v1::{ErrorCode, EventSource, EventType, ImageMeta, RunStatus, VariantStatus};
use test_support::Isolation;

use crate::helpers::{request, sha256_hex, spawn_app, SHOP};

#[tokio::test]
async fn a_signed_render_of_four_variants_is_recorded_in_full_on_the_stream() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |_| {}).await;
    let variants = ["warm", "cool", "wide", "close"];
    let req = request(&variants);

    let response = app.render(&req.body, "req-four-variants").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-four-variants");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "complete", "{answer}");
    assert_eq!(answer["requestId"], "req-four-variants");
    let run_id = answer["runId"].as_str().unwrap().to_owned();
    let answered: BTreeMap<String, Value> = answer["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["variantId"].as_str().unwrap().to_owned(), v.clone()))
        .collect();
    assert_eq!(answered.len(), 4);

    // Stored images: served at the answered URL, and their sha256 is the reported one.
    let mut served_hashes = BTreeMap::new();
    for (id, variant) in &answered {
        assert_eq!(variant["status"], "success", "{variant}");
        assert!(variant["errorCode"].is_null());
        let key = format!("renders/{run_id}/{id}.png");
        assert_eq!(variant["imageKey"], key.as_str());
        assert_eq!(variant["imageUrl"], format!("/images/{key}").as_str());
        let image = app.get(&format!("/images/{key}")).await;
        assert_eq!(image.status(), 200);
        assert_eq!(image.headers()["content-type"], "image/png");
        let bytes = image.bytes().await.unwrap();
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (96, 64), "room-sized");
        assert_eq!(variant["imageSha256"], sha256_hex(&bytes).as_str());
        let on_disk = std::fs::read(app.store_dir.path().join(&key)).unwrap();
        assert_eq!(sha256_hex(&on_disk), sha256_hex(&bytes));
        served_hashes.insert(id.clone(), sha256_hex(&bytes));
    }
    // Variants place the product differently.
    let distinct: BTreeSet<_> = served_hashes.values().collect();
    assert_eq!(distinct.len(), 4);

    let report = app.stop().await;
    assert_eq!(report.left, 0, "{report:?}");

    let envelopes = crate::helpers::read_envelopes(
        &isolation.nats_url,
        &isolation.stream,
        11,
        Duration::from_secs(10),
    )
    .await;
    let records = crate::helpers::records(envelopes);
    assert_eq!(records.len(), 11, "{records:#?}");
    for envelope in &records {
        assert_eq!(envelope.shop_id, SHOP);
        assert_eq!(envelope.request_id, "req-four-variants");
        assert!(envelope.producer.starts_with("renderer-"));
        assert!(uuid::Uuid::parse_str(&envelope.event_id).is_ok());
    }

    // First the request event, with the product and room session.
    let Some(Body::Event(requested)) = &records[0].body else {
        panic!("first record is not an event: {:?}", records[0]);
    };
    assert_eq!(requested.source, EventSource::AppProxy as i32);
    assert_eq!(requested.r#type, EventType::SfRenderRequested as i32);
    let payload: Value = serde_json::from_str(&requested.payload_json).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"productId": "gid://shopify/Product/42", "roomSessionId": "room-session-7"})
    );

    // Then the run, with every field of the seed's startRun.
    let Some(Body::RunStarted(started)) = &records[1].body else {
        panic!("second record is not RunStarted: {:?}", records[1]);
    };
    assert_eq!(started.run_id, run_id);
    assert_eq!(started.product_asset_id, "asset-42");
    assert_eq!(started.room_session_id, "room-session-7");
    assert_eq!(started.prompt_pack_version, "pack-2024-11");
    assert_eq!(started.model, "local-composite");
    let product = started.product_image.as_ref().unwrap();
    assert_eq!(product.hash, sha256_hex(&req.product));
    assert_eq!(
        product.meta,
        Some(ImageMeta {
            width: 24,
            height: 16,
            format: "png".into(),
            bytes: req.product.len() as u64
        })
    );
    let room = started.room_image.as_ref().unwrap();
    assert_eq!(room.hash, sha256_hex(&req.room));
    assert_eq!(
        room.meta,
        Some(ImageMeta {
            width: 96,
            height: 64,
            format: "jpeg".into(),
            bytes: req.room.len() as u64
        })
    );
    assert_eq!(
        serde_json::from_str::<Value>(&started.resolved_facts_json).unwrap(),
        req.facts
    );
    assert_eq!(
        started.resolved_facts_hash,
        hash_prompt(&started.resolved_facts_json)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&started.prompt_pack_json).unwrap(),
        req.pack
    );
    assert_eq!(
        started.prompt_pack_hash,
        hash_prompt(&started.prompt_pack_json)
    );
    assert_eq!(started.variant_count, 4);

    // Each variant: started before its result; the result as answered.
    let mut started_at = BTreeMap::new();
    let mut results = BTreeMap::new();
    for (index, envelope) in records.iter().enumerate() {
        match &envelope.body {
            Some(Body::VariantStarted(v)) => {
                assert_eq!(v.run_id, run_id);
                started_at.insert(v.variant_id.clone(), index);
            }
            Some(Body::VariantResult(v)) => {
                assert_eq!(v.run_id, run_id);
                assert!(
                    started_at.contains_key(&v.variant_id),
                    "result before start"
                );
                results.insert(v.variant_id.clone(), v.clone());
            }
            _ => {}
        }
    }
    assert_eq!(started_at.len(), 4);
    assert_eq!(results.len(), 4);
    for id in variants {
        let result = &results[id];
        let answered = &answered[id];
        let prompt = final_prompt(
            &Variant {
                id: id.into(),
                prompt: format!("Place the chair, style {id}"),
            },
            &started.resolved_facts_json,
        );
        assert_eq!(result.final_prompt_hash, hash_prompt(&prompt));
        assert_eq!(result.status, VariantStatus::Success as i32);
        assert_eq!(Some(result.latency_ms), answered["latencyMs"].as_u64());
        assert_eq!(
            result.output_image_key,
            format!("renders/{run_id}/{id}.png")
        );
        assert_eq!(result.output_image_hash, served_hashes[id]);
        assert_eq!(result.error_code, ErrorCode::Unspecified as i32);
        assert_eq!(result.error_message, "");
    }

    // Last the completion.
    let Some(Body::RunCompleted(completed)) = &records[10].body else {
        panic!("last record is not RunCompleted: {:?}", records[10]);
    };
    assert_eq!(completed.run_id, run_id);
    assert_eq!(completed.status, RunStatus::Complete as i32);
    assert_eq!(
        Some(completed.total_duration_ms),
        answer["totalDurationMs"].as_u64()
    );
    assert_eq!(
        (
            completed.success_count,
            completed.fail_count,
            completed.timeout_count
        ),
        (4, 0, 0)
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |_| {}).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["ready"], true);
    let req = request(&["a", "b"]);
    assert_eq!(app.render(&req.body, "req-metrics").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for line in [
        "renderer_requests_total{outcome=\"rendered\"} 1",
        "renderer_variants_total{status=\"success\"} 2",
        "renderer_runs_total{status=\"complete\"} 1",
        "renderer_run_duration_seconds_count 1",
        "telemetry_enabled 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("telemetry_emitted_total 7"), "{metrics}");
    for name in [
        "telemetry_published_total",
        "telemetry_dropped_total",
        "telemetry_queue_depth",
        "telemetry_jetstream_up",
    ] {
        assert!(metrics.contains(&format!("\n{name} ")), "{name} missing");
    }
    app.stop().await;
}
