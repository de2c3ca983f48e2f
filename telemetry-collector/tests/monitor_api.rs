//! The JSON API's field names, pinned: `/api/v1` is a contract with scripts and
//! dashboards, so renaming a database column or a Rust field must not rename a key.
//! Every resource is read through the real router from a seeded database, on SQLite
//! and on Postgres, and the key set of each object is compared with the list here.
//! The JSON blobs producers send come back as JSON, not as text holding JSON; and the
//! OpenAPI document (`docs/openapi.json`, served at `/api/v1/openapi.json`) is held
//! to the router's routes and to real answers, field by field.

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
    "resolved_facts",
    "prompt_pack_hash",
    "prompt_pack",
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

/// The figures of a model, a prompt pack or a pair.
const FIGURE_KEYS: &[&str] = &[
    "total",
    "success",
    "failed",
    "timeout",
    "stale",
    "other",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "failed_p50_ms",
    "failed_p95_ms",
    "timeout_p50_ms",
    "timeout_p95_ms",
];

const ERROR_GROUP_KEYS: &[&str] = &[
    "model",
    "error_code",
    "error_group",
    "count",
    "share",
    "first_seen",
    "last_seen",
    "slices",
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
        &[
            "from",
            "to",
            "model",
            "by_model",
            "by_prompt_pack",
            "by_prompt_pack_and_model",
            "series",
        ],
        "stats",
    );
    let series = &stats["series"];
    assert_keys(series, &["from", "to", "step_ms", "points"], "series");
    let point = series["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| !p["models"].as_object().unwrap().is_empty())
        .expect("a step with the seeded run");
    assert_keys(point, &["at", "runs", "variants", "models"], "series point");
    let model = point["models"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_keys(
        model,
        &["finished", "errors", "failure_rate", "p50_ms", "p95_ms"],
        "model in a series point",
    );
    let group_keys = [&["key"], FIGURE_KEYS].concat();
    assert_keys(first(&stats, "by_model"), &group_keys, "group by model");
    assert_keys(
        first(&stats, "by_prompt_pack"),
        &group_keys,
        "group by pack",
    );
    let cell_keys = [&["prompt_pack_version", "model"], FIGURE_KEYS].concat();
    assert_keys(
        first(&stats, "by_prompt_pack_and_model"),
        &cell_keys,
        "prompt pack × model",
    );

    let errors = json("/api/v1/error-groups?from=0&to=1800000000000".into()).await;
    assert_keys(
        &errors,
        &[
            "from", "to", "model", "slice_ms", "total", "left_off", "groups",
        ],
        "error groups",
    );
    assert_keys(first(&errors, "groups"), ERROR_GROUP_KEYS, "error group");
}
on_both_backends!(every_api_resource_keeps_its_field_names);

/// A producer's JSON (an event's payload, a run's resolved facts and prompt pack, a
/// producer's drops by reason) is a JSON value in the answer, exactly as sent: big
/// numbers keep their digits, escapes stay escapes.
async fn json_blobs_come_back_as_json_values(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (run, _) = seed_one_of_each(&store).await;
    let exact =
        r#"{"big":123456789012345678901234567890,"nul":"a\u0000b","list":[1.50,true,null]}"#;
    let mut odd = RunSpec::new(2, 1_700_000_100_000);
    odd.payload = exact.to_owned();
    seed(&store, &odd.envelopes(), &[]).await;
    let app = app(store, MonitorSettings::default(), CancellationToken::new());
    let json = |path: String| {
        let app = app.clone();
        async move {
            let answer = get(&app, &path, &[]).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            answer
        }
    };

    let detail = json(format!("/api/v1/runs/{}", run.run_id)).await.json();
    assert_eq!(
        detail["run"]["resolved_facts"],
        serde_json::json!({ "note": run.shop })
    );
    assert_eq!(
        detail["run"]["prompt_pack"],
        serde_json::json!({ "prompts": ["a"] })
    );
    let listed = json("/api/v1/runs".into()).await.json();
    for listed in listed["runs"].as_array().unwrap() {
        assert!(listed["resolved_facts"].is_object(), "{listed}");
        assert!(listed["prompt_pack"].is_object(), "{listed}");
    }
    let requested = |events: &Value| {
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_type"] == "sf_render_requested")
            .cloned()
            .unwrap_or_else(|| panic!("no request event in {events}"))
    };
    assert_eq!(
        requested(&detail["events"])["payload"],
        serde_json::json!({ "productId": "p1" })
    );
    let events = json("/api/v1/events?limit=500".into()).await.json();
    let events = events["events"].as_array().unwrap();
    // A JSON object (the event's own, or a summary of the body), or nothing: never
    // text that holds JSON.
    for event in events {
        assert!(
            event["payload"].is_object() || event["payload"].is_null(),
            "{event}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["kind"] == "run_completed" && e["payload"].is_object()));
    let producers = json("/api/v1/producers".into()).await.json();
    let lossy = producers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["producer"] == "producer-lossy")
        .expect("the lossy producer");
    assert_eq!(
        lossy["dropped_by_reason"],
        serde_json::json!({ "queue_full": 3 })
    );

    let raw = json(format!(
        "/api/v1/events?request_id={}&type=sf_render_requested",
        odd.request_id
    ))
    .await
    .body;
    assert!(
        raw.contains(&format!(r#""payload":{exact}"#)),
        "the payload as sent: {raw}"
    );
}
on_both_backends!(json_blobs_come_back_as_json_values);

/// The OpenAPI document, file and served copy.
fn openapi_file() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// Checks answers against the document's schemas (the JSON Schema subset it uses:
/// `$ref`, `type` (one or a list), `properties` (every one present, no other key),
/// `additionalProperties`, `items`, `enum`).
struct Schemas<'d>(&'d Value);

impl<'d> Schemas<'d> {
    /// `schema`, or what its `$ref` points to.
    fn resolve<'s>(&self, schema: &'s Value) -> &'s Value
    where
        'd: 's,
    {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("a local $ref");
                let target = self
                    .0
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference} is not in the document"));
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// Panics naming `at` where `value` does not follow `schema`.
    #[track_caller]
    fn check(&self, schema: &Value, value: &Value, at: &str) {
        let schema = self.resolve(schema);
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let allowed: Vec<&str> = match &schema["type"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fits = |t: &&str| *t == kind || (*t == "number" && kind == "integer");
        assert!(
            allowed.is_empty() || allowed.iter().any(fits),
            "{at}: a {kind} where the document says {allowed:?}: {value}"
        );
        if let (Some(choices), false) = (schema["enum"].as_array(), value.is_null()) {
            assert!(choices.contains(value), "{at}: {value} not in {choices:?}");
        }
        match value {
            Value::Object(object) => {
                if let Some(properties) = schema["properties"].as_object() {
                    let documented: BTreeSet<&str> =
                        properties.keys().map(String::as_str).collect();
                    let answered: BTreeSet<&str> = object.keys().map(String::as_str).collect();
                    assert_eq!(answered, documented, "{at}: keys answered vs documented");
                    for (key, property) in properties {
                        self.check(property, &object[key], &format!("{at}.{key}"));
                    }
                } else if schema["additionalProperties"].is_object() {
                    for (key, item) in object {
                        self.check(
                            &schema["additionalProperties"],
                            item,
                            &format!("{at}.{key}"),
                        );
                    }
                }
            }
            Value::Array(items) if schema["items"].is_object() => {
                for (n, item) in items.iter().enumerate() {
                    self.check(&schema["items"], item, &format!("{at}[{n}]"));
                }
            }
            _ => {}
        }
    }

    /// The JSON schema of an operation's answer with `status`.
    fn response<'s>(&self, operation: &'s Value, status: u16, what: &str) -> &'s Value
    where
        'd: 's,
    {
        let response = self.resolve(&operation["responses"][status.to_string()]);
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{what}: no application/json schema documented for {status}"
        );
        schema
    }
}

/// The query parameters an operation documents, with their examples.
fn query_parameters(schemas: &Schemas<'_>, operation: &Value) -> Vec<(String, String)> {
    operation["parameters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| schemas.resolve(p))
        .filter(|p| p["in"] == "query")
        .map(|p| {
            let name = p["name"].as_str().expect("a parameter name").to_owned();
            let example = match &p["example"] {
                Value::String(text) => text.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("query parameter {name}: an example is needed, got {other}"),
            };
            (name, example)
        })
        .collect()
}

/// The names listed in an `unknown_parameter` message's `(accepted: ...)`.
fn accepted_in(message: &str) -> BTreeSet<String> {
    let list = message
        .split("(accepted: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no accepted list in {message:?}"));
    list.split(", ")
        .filter(|name| *name != "none")
        .map(str::to_owned)
        .collect()
}

async fn the_openapi_document_matches_the_router_and_real_answers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (run, _) = seed_one_of_each(&store).await;
    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );
    let guarded = app_with_token(store);
    let doc = openapi_file();
    let schemas = Schemas(&doc);

    let served = get(&app, "/api/v1/openapi.json", &[]).await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert!(served
        .header("content-type")
        .starts_with("application/json"));
    assert_eq!(served.json(), doc, "the collector serves docs/openapi.json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // Every route of the API is documented and every documented path is one.
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    let routed: BTreeSet<&str> = telemetry_collector::monitor::api_paths()
        .into_iter()
        .collect();
    assert_eq!(
        documented, routed,
        "documented paths vs the router's /api/v1 routes"
    );

    for (path, item) in doc["paths"].as_object().unwrap() {
        let methods: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(methods, ["get"], "{path}: only GET is served");
        let operation = &item["get"];
        let concrete = path.replace("{id}", &run.run_id);
        let what = format!("GET {path}");

        let answer = get(&app, &concrete, &[]).await;
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
        schemas.check(
            schemas.response(operation, 200, &what),
            &answer.json(),
            &what,
        );

        let parameters = query_parameters(&schemas, operation);
        for (name, example) in &parameters {
            let with = format!("{concrete}?{name}={}", enc(example));
            let answer = get(&app, &with, &[]).await;
            assert_eq!(answer.status, 200, "{with}: {}", answer.body);
            schemas.check(
                schemas.response(operation, 200, &with),
                &answer.json(),
                &with,
            );
        }
        if !parameters.is_empty() {
            let all: Vec<String> = parameters
                .iter()
                .map(|(name, example)| format!("{name}={}", enc(example)))
                .collect();
            let with = format!("{concrete}?{}", all.join("&"));
            let answer = get(&app, &with, &[]).await;
            assert_eq!(answer.status, 200, "{with}: {}", answer.body);
        }

        // An undocumented parameter: the documented 400, listing what is documented.
        let answer = get(&app, &format!("{concrete}?undocumented=1"), &[]).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        let error = answer.json();
        schemas.check(schemas.response(operation, 400, &what), &error, &what);
        let names: BTreeSet<String> = parameters.into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            accepted_in(error["error"]["message"].as_str().unwrap()),
            names,
            "{what}: the parameters the route accepts vs the documented ones"
        );

        // Without the token: the documented 401.
        let answer = get(&guarded, &concrete, &[]).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
        schemas.check(
            schemas.response(operation, 401, &what),
            &answer.json(),
            &what,
        );
    }

    // A run that is not stored: the documented 404.
    let operation = &doc["paths"]["/api/v1/runs/{id}"]["get"];
    let answer = get(&app, "/api/v1/runs/nope", &[]).await;
    assert_eq!(answer.status, 404);
    schemas.check(
        schemas.response(operation, 404, "run detail"),
        &answer.json(),
        "404",
    );
}
on_both_backends!(the_openapi_document_matches_the_router_and_real_answers);

fn app_with_token(store: std::sync::Arc<dyn telemetry_collector::store::Store>) -> axum::Router {
    let monitor = MonitorSettings {
        token: Some("s3cret-token-of-24-chars".into()),
        ..Default::default()
    };
    app(store, monitor, CancellationToken::new())
}
