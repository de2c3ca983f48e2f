//! The JSON API's field names, pinned: `/api/v1` is a contract with scripts and
//! dashboards, so renaming a database column or a Rust field must not rename a key.
//! Every resource is read through the real router from a seeded database, on SQLite
//! and on Postgres, and the key set of each object is compared with the list here.

mod common;
mod monitor_support;

use std::collections::BTreeSet;

use common::{Backend, TestDb};
use monitor_support::*;
use serde_json::Value;
use telemetry_collector::config::MonitorSettings;
use tokio_util::sync::CancellationToken;

const RUN_KEYS: &[&str] = &[
    "run_id",
    "shop_id",
    "request_id",
    "product_asset_id",
    "room_session_id",
    "prompt_pack_version",
    "model",
    "product_image_hash",
    "product_image_width",
    "product_image_height",
    "product_image_format",
    "product_image_bytes",
    "room_image_hash",
    "room_image_width",
    "room_image_height",
    "room_image_format",
    "room_image_bytes",
    "resolved_facts_hash",
    "resolved_facts_json",
    "prompt_pack_hash",
    "prompt_pack_json",
    "variant_count",
    "started_at",
    "started_event_id",
    "status",
    "stored_status",
    "total_duration_ms",
    "success_count",
    "fail_count",
    "timeout_count",
    "completed_at",
    "completed_event_id",
];

const VARIANT_KEYS: &[&str] = &[
    "run_id",
    "variant_id",
    "shop_id",
    "request_id",
    "started_at",
    "started_event_id",
    "status",
    "final_prompt_hash",
    "latency_ms",
    "output_image_key",
    "output_image_hash",
    "error_code",
    "error_message",
    "finished_at",
    "result_event_id",
];

const EVENT_KEYS: &[&str] = &[
    "event_id",
    "kind",
    "event_type",
    "source",
    "shop_id",
    "request_id",
    "run_id",
    "variant_id",
    "producer",
    "producer_seq",
    "occurred_at",
    "received_at",
    "stream_seq",
    "subject",
    "payload",
];

const DEAD_LETTER_KEYS: &[&str] = &[
    "id",
    "stream",
    "stream_seq",
    "subject",
    "reason",
    "received_at",
    "size",
    "preview_hex",
    "preview_text",
];

const PRODUCER_KEYS: &[&str] = &[
    "producer",
    "service",
    "emitted",
    "published",
    "dropped",
    "dropped_by_reason",
    "publish_failures",
    "queue_depth",
    "started_at",
    "is_final",
    "stats_seq",
    "stats_event_id",
    "stats_at",
    "last_seen_at",
    "last_received_at",
    "stored_events",
    "silent",
    "problem",
    "note",
];

const GROUP_KEYS: &[&str] = &[
    "key", "total", "success", "failed", "timeout", "stale", "other", "p50_ms", "p95_ms", "p99_ms",
];

/// Asserts that `value` is an object whose keys are exactly `expected`.
#[track_caller]
fn assert_keys(value: &Value, expected: &[&str], what: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {value}"));
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(keys, expected, "{what}: keys");
}

/// The first element of `value[field]`, which must be a non-empty array.
#[track_caller]
fn first<'a>(value: &'a Value, field: &str) -> &'a Value {
    value[field]
        .as_array()
        .and_then(|items| items.first())
        .unwrap_or_else(|| panic!("{field}: no items in {value}"))
}

async fn every_api_resource_keeps_its_field_names(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (run, _) = seed_one_of_each(&store).await;
    let app = app(store, MonitorSettings::default(), CancellationToken::new());
    let json = |path: String| {
        let app = app.clone();
        async move {
            let answer = get(&app, &path, &[]).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            answer.json()
        }
    };

    let runs = json("/api/v1/runs".into()).await;
    assert_keys(&runs, &["runs", "next_cursor"], "runs page");
    assert_keys(first(&runs, "runs"), RUN_KEYS, "run in the list");
    // A full page carries the cursor; the last page has it as `null`.
    let full = json("/api/v1/runs?limit=1".into()).await;
    assert!(full["next_cursor"].is_string(), "{full}");
    assert!(runs["next_cursor"].is_null(), "{runs}");

    let detail = json(format!("/api/v1/runs/{}", run.run_id)).await;
    assert_keys(&detail, &["run", "variants", "events"], "run detail");
    assert_keys(&detail["run"], RUN_KEYS, "run of the detail");
    assert_keys(first(&detail, "variants"), VARIANT_KEYS, "variant");
    assert_keys(first(&detail, "events"), EVENT_KEYS, "event of the detail");

    let events = json("/api/v1/events".into()).await;
    assert_keys(&events, &["events", "next_cursor"], "events page");
    assert_keys(first(&events, "events"), EVENT_KEYS, "event in the list");

    let dead = json("/api/v1/dead-letters".into()).await;
    assert_keys(&dead, &["dead_letters", "next_cursor"], "dead letters page");
    assert_keys(
        first(&dead, "dead_letters"),
        DEAD_LETTER_KEYS,
        "dead letter",
    );

    let producers = json("/api/v1/producers".into()).await;
    let producers = producers.as_array().expect("producers: an array");
    assert!(!producers.is_empty());
    for producer in producers {
        assert_keys(producer, PRODUCER_KEYS, "producer");
    }

    let stats = json("/api/v1/stats?from=0&to=1800000000000".into()).await;
    assert_keys(
        &stats,
        &["from", "to", "by_model", "by_prompt_pack"],
        "stats",
    );
    assert_keys(first(&stats, "by_model"), GROUP_KEYS, "group by model");
    assert_keys(first(&stats, "by_prompt_pack"), GROUP_KEYS, "group by pack");
}
on_both_backends!(every_api_resource_keeps_its_field_names);
