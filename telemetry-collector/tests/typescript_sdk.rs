//! The TypeScript SDK end to end: the run of `proto/fixtures/e2e-run.json` sent once by
//! a node script through `sdk/typescript` (the original app's module functions, each
//! awaited) and once through the Rust SDK, on one isolated stream, into a collector on
//! SQLite. The collector must store the same rows for both runs, ids, producers and
//! times aside — what the monitor shows is read from these rows.
//!
//! Needs Node.js 20+ and the package built: `npm ci && npm run build` in
//! `sdk/typescript` (`scripts/test.sh` does it before `cargo test`). Without them the
//! test fails and says so; it never skips.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestDb};
use serde_json::Value;
use telemetry::fixture::Call;
use telemetry::{NatsConfig, Telemetry, TelemetryConfig};
use telemetry_collector::store::Store;
use telemetry_proto::StreamSpec;
use test_support::Isolation;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `node` and the built e2e script, or a failure that says how to get them.
fn node_and_script() -> PathBuf {
    let script = repo_root().join("sdk/typescript/dist/scripts/e2e-run.js");
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout);
            let major: u32 = version
                .trim()
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            assert!(
                major >= 20,
                "node {} is too old for the TypeScript SDK: install Node.js 20 or newer",
                version.trim()
            );
        }
        _ => panic!(
            "`node` is not installed or does not run: install Node.js 20+ (e.g. \
             `apt-get install nodejs npm`), then run `npm ci && npm run build` in sdk/typescript"
        ),
    }
    assert!(
        script.is_file(),
        "{} is missing: the TypeScript SDK is not built. Run `npm ci && npm run build` in \
         sdk/typescript (scripts/test.sh does it before cargo test)",
        script.display()
    );
    script
}

/// The calls of the shared run, with its placeholders filled in.
fn run_calls(run_id: &str, request_id: &str) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(repo_root().join("proto/fixtures/e2e-run.json"))
        .expect("read proto/fixtures/e2e-run.json");
    let text = text
        .replace("$RUN_ID", run_id)
        .replace("$REQUEST_ID", request_id);
    let doc: Value = serde_json::from_str(&text).expect("the run is JSON");
    doc["calls"]
        .as_array()
        .expect("a `calls` array")
        .iter()
        .map(|c| (c["call"].as_str().unwrap().to_owned(), c["input"].clone()))
        .collect()
}

/// What the collector stored for one run, with what differs between two sends of the
/// same calls (ids, producers, times, stream positions) replaced or removed.
async fn stored_run(store: &Arc<dyn Store>, run_id: &str, request_id: &str) -> Value {
    let detail = store
        .run(run_id)
        .await
        .expect("read the run")
        .expect("the run is stored");
    let producer = detail.events[0].producer.clone();
    assert!(
        detail.events.iter().all(|e| e.producer == producer),
        "one producer per run"
    );
    let text = serde_json::to_string(&detail)
        .unwrap()
        .replace(run_id, "$RUN_ID")
        .replace(request_id, "$REQUEST_ID")
        .replace(&producer, "$PRODUCER");
    let mut value: Value = serde_json::from_str(&text).unwrap();
    let strip = |object: &mut Value, keys: &[&str]| {
        for key in keys {
            object.as_object_mut().unwrap().remove(*key);
        }
    };
    strip(
        &mut value["run"],
        &[
            "started_at",
            "started_event_id",
            "completed_at",
            "completed_event_id",
        ],
    );
    for variant in value["variants"].as_array_mut().unwrap() {
        strip(
            variant,
            &[
                "started_at",
                "started_event_id",
                "finished_at",
                "result_event_id",
            ],
        );
    }
    for event in value["events"].as_array_mut().unwrap() {
        strip(
            event,
            &["event_id", "occurred_at", "received_at", "stream_seq"],
        );
    }
    value
}

/// The producer's ledger row, with its id and times removed.
async fn stored_producer(store: &Arc<dyn Store>, producer: &str) -> Value {
    let producers = store.producers().await.expect("read producers");
    let row = producers
        .iter()
        .find(|p| p.producer == producer)
        .unwrap_or_else(|| panic!("no ledger for {producer}: {producers:#?}"));
    let mut value = serde_json::to_value(row).unwrap();
    for key in [
        "producer",
        "started_at",
        "stats_event_id",
        "stats_at",
        "last_seen_at",
        "last_received_at",
    ] {
        value.as_object_mut().unwrap().remove(key);
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_through_the_typescript_sdk_is_stored_like_the_same_run_through_the_rust_sdk() {
    let script = node_and_script();
    let iso = Isolation::new();

    // The TypeScript producer goes first, before any collector: it creates the stream.
    let ts_run = uuid::Uuid::now_v7().to_string();
    let ts_request = format!("req-ts-{}", &ts_run[..8]);
    let output = Command::new("node")
        .arg(&script)
        .env("NATS_URL", &iso.nats_url)
        .env("TELEMETRY_SUBJECT_PREFIX", &iso.prefix)
        .env("TELEMETRY_STREAM", &iso.stream)
        .env(
            "TELEMETRY_STREAM_MAX_BYTES",
            Isolation::STREAM_MAX_BYTES.to_string(),
        )
        .env("TELEMETRY_SERVICE", "e2e")
        .env("E2E_RUN_ID", &ts_run)
        .env("E2E_REQUEST_ID", &ts_request)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the node script failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let ts_report: Value = serde_json::from_str(stdout.trim()).expect("a JSON report");
    let calls = run_calls("x", "y");
    assert_eq!(ts_report["emitted"], calls.len());
    assert_eq!(ts_report["published"], calls.len());
    assert_eq!(ts_report["left"], 0);
    assert_eq!(ts_report["finalStatsSent"], true);
    let ts_producer = ts_report["producer"].as_str().unwrap().to_owned();

    // The stream it created is the one the Rust side would have created.
    let client = async_nats::connect(&iso.nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let created = js
        .get_stream(&iso.stream)
        .await
        .expect("the TypeScript SDK created the stream")
        .info()
        .await
        .unwrap()
        .config
        .clone();
    let spec = StreamSpec::new(iso.stream.clone(), common::subjects(&iso))
        .with_max_bytes(Isolation::STREAM_MAX_BYTES)
        .unwrap();
    let differences = spec.differences(&created);
    assert!(
        differences.is_empty(),
        "the TypeScript SDK's stream differs from the spec: {}",
        telemetry_proto::stream::describe_differences(&differences)
    );

    // The same calls through the Rust SDK, on another run.
    let rust_run = uuid::Uuid::now_v7().to_string();
    let rust_request = format!("req-rs-{}", &rust_run[..8]);
    let telemetry = Telemetry::start(TelemetryConfig {
        nats: NatsConfig {
            url: iso.nats_url.clone(),
            ..Default::default()
        },
        subject_prefix: iso.prefix.clone(),
        stream: iso.stream.clone(),
        stream_max_bytes: Isolation::STREAM_MAX_BYTES,
        service: "e2e".into(),
        ..Default::default()
    })
    .unwrap();
    let rust_producer = telemetry.producer_id().unwrap().to_owned();
    for (call, input) in run_calls(&rust_run, &rust_request) {
        Call::from_json(&call, &input)
            .unwrap()
            .submit(&telemetry)
            .unwrap_or_else(|err| panic!("{call}: {err}"));
    }
    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.published, calls.len() as u64);
    assert!(report.final_stats_sent);

    // One collector stores both.
    let db = TestDb::new(Backend::Sqlite).await;
    let collector = common::spawn(common::settings(&iso, &db.url)).await;
    let store = db.store().await;
    common::wait_until(
        Duration::from_secs(30),
        "both runs complete and both producers' final stats stored",
        || async {
            let runs_done =
                run_finished(&store, &ts_run).await && run_finished(&store, &rust_run).await;
            let producers = store.producers().await.unwrap_or_default();
            let finals = producers
                .iter()
                .filter(|p| p.is_final == Some(true))
                .count();
            runs_done && finals == 2
        },
    )
    .await;

    let ts_rows = stored_run(&store, &ts_run, &ts_request).await;
    let rust_rows = stored_run(&store, &rust_run, &rust_request).await;
    assert_eq!(
        ts_rows["events"].as_array().unwrap().len(),
        calls.len(),
        "every event of the run, the request's event (no run id) joined by its request id"
    );
    assert_eq!(ts_rows["run"]["status"], "partial");
    assert_eq!(ts_rows["variants"].as_array().unwrap().len(), 3);
    assert_eq!(
        ts_rows,
        rust_rows,
        "the TypeScript run's rows (left) differ from the Rust run's (right):\n{}\n{}",
        serde_json::to_string_pretty(&ts_rows).unwrap(),
        serde_json::to_string_pretty(&rust_rows).unwrap()
    );
    let ts_ledger = stored_producer(&store, &ts_producer).await;
    let rust_ledger = stored_producer(&store, &rust_producer).await;
    assert_eq!(ts_ledger["emitted"], calls.len());
    assert_eq!(ts_ledger["is_final"], true);
    assert_eq!(ts_ledger, rust_ledger, "the two producers' ledgers");
    // The request event, outside the run, is stored too, by both.
    for request in [&ts_request, &rust_request] {
        let events = store
            .monitor_events(&telemetry_collector::store::EventFilter {
                request_id: Some(request.to_string()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.event_type == "sf_render_requested" && e.run_id.is_none()),
            "{request}: {events:#?}"
        );
    }
    collector.stop().await;
}

/// Whether the run is stored with its completion and every variant's result.
async fn run_finished(store: &Arc<dyn Store>, run_id: &str) -> bool {
    match store.run(run_id).await {
        Ok(Some(detail)) => {
            detail.run.status == "partial"
                && detail.variants.len() == 3
                && detail.variants.iter().all(|v| v.status != "running")
        }
        _ => false,
    }
}
