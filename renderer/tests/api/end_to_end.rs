//! Renderer → NATS JetStream → collector (SQLite) → the collector's JSON API.

use serde_json::Value;
use test_support::Isolation;

use crate::helpers::{request, sha256_hex, spawn_app, spawn_collector, SHOP};

#[tokio::test]
async fn after_a_render_the_collector_api_shows_the_run_its_variants_and_events() {
    let isolation = Isolation::new();
    let collector = spawn_collector(&isolation).await;

    let app = spawn_app(Some(&isolation), |_| {}).await;
    let req = request(&["w", "x", "y", "z"]);
    let answer: Value = app.render(&req.body, "req-e2e").await.json().await.unwrap();
    assert_eq!(answer["status"], "complete", "{answer}");
    let run_id = answer["runId"].as_str().unwrap().to_owned();

    let detail = collector
        .run_detail(&run_id, |detail| {
            detail["run"]["status"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("complete"))
                && detail["variants"].as_array().map_or(0, Vec::len) == 4
                && detail["variants"].as_array().unwrap().iter().all(|v| {
                    v["status"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case("success"))
                })
        })
        .await;

    let run = &detail["run"];
    assert_eq!(run["shop_id"], SHOP);
    assert_eq!(run["request_id"], "req-e2e");
    assert_eq!(run["product_asset_id"], "asset-42");
    assert_eq!(run["room_session_id"], "room-session-7");
    assert_eq!(run["prompt_pack_version"], "pack-2024-11");
    assert_eq!(run["model"], "local-composite");
    assert_eq!(run["product_image_hash"], sha256_hex(&req.product).as_str());
    assert_eq!(run["room_image_hash"], sha256_hex(&req.room).as_str());
    assert_eq!(run["room_image_width"], 96);
    assert_eq!(run["success_count"], 4);
    assert_eq!(run["fail_count"], 0);
    assert_eq!(run["timeout_count"], 0);
    assert_eq!(run["total_duration_ms"], answer["totalDurationMs"]);

    for variant in detail["variants"].as_array().unwrap() {
        let id = variant["variant_id"].as_str().unwrap();
        let answered = answer["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variantId"] == id)
            .unwrap();
        assert_eq!(variant["latency_ms"], answered["latencyMs"]);
        assert_eq!(variant["output_image_key"], answered["imageKey"]);
        assert_eq!(variant["output_image_hash"], answered["imageSha256"]);
        assert!(variant["final_prompt_hash"]
            .as_str()
            .is_some_and(|h| h.len() == 64));
    }

    let events = detail["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["request_id"] == "req-e2e"
            && e["event_type"]
                .as_str()
                .is_some_and(|t| t.to_ascii_uppercase().contains("SF_RENDER_REQUESTED"))),
        "no SF_RENDER_REQUESTED among {events:#?}"
    );

    app.stop().await;
    collector.stop().await;
}
