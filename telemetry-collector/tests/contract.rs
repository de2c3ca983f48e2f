//! docs/contract.md against the code: every row of its limits table equals the constant
//! it names in the collector, the Rust SDK or `telemetry-proto` (and no row goes
//! unchecked); its subjects, stream JSON and drop reasons are the ones the code uses.
//! The TypeScript SDK's constants are checked against the same table by
//! `sdk/typescript/test/contract.test.ts`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use telemetry::config as sdk;
use telemetry::ledger::{DropReason, QUEUE_FULL_WARN_INTERVAL};
use telemetry_collector::domain::{MAX_CLOCK_AHEAD, MAX_ID_BYTES, MAX_RUN_KEY_BYTES};
use telemetry_collector::monitor::producers::DEFAULT_PRODUCER_SILENT_AFTER;
use telemetry_proto::stream::{self, StreamSpec};
use telemetry_proto::subjects::{BodyKind, Subjects, DEFAULT_PREFIX};

fn contract() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/contract.md");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// The limits table: `| `key` | value | who |` rows.
fn limits_table(doc: &str) -> BTreeMap<String, u64> {
    let section = doc
        .split("\n## Limits\n")
        .nth(1)
        .expect("a `## Limits` section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut rows = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`').to_owned();
        let value = cells[2]
            .parse()
            .unwrap_or_else(|_| panic!("row {key}: {:?} is not a whole number", cells[2]));
        assert!(rows.insert(key.clone(), value).is_none(), "row {key} twice");
    }
    rows
}

fn ms(duration: std::time::Duration) -> u64 {
    duration.as_millis() as u64
}

#[test]
fn every_limit_in_the_contract_is_the_one_in_the_code() {
    let defaults = telemetry::Limits::default();
    let config = telemetry::TelemetryConfig::default();
    // Each key: the values every side holds for it (all must equal the document's).
    let code: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::from([
        (
            "max_id_bytes",
            vec![
                ("collector domain::MAX_ID_BYTES", MAX_ID_BYTES as u64),
                (
                    "SDK DEFAULT_MAX_FIELD_BYTES",
                    sdk::DEFAULT_MAX_FIELD_BYTES as u64,
                ),
                ("SDK Limits::default()", defaults.max_field_bytes as u64),
            ],
        ),
        (
            "max_run_key_bytes",
            vec![(
                "collector domain::MAX_RUN_KEY_BYTES",
                MAX_RUN_KEY_BYTES as u64,
            )],
        ),
        (
            "max_json_bytes",
            vec![
                (
                    "SDK DEFAULT_MAX_JSON_BYTES",
                    sdk::DEFAULT_MAX_JSON_BYTES as u64,
                ),
                ("SDK Limits::default()", defaults.max_json_bytes as u64),
            ],
        ),
        (
            "max_error_message_bytes",
            vec![(
                "SDK DEFAULT_MAX_ERROR_MESSAGE_BYTES",
                sdk::DEFAULT_MAX_ERROR_MESSAGE_BYTES as u64,
            )],
        ),
        (
            "max_message_bytes",
            vec![(
                "stream::DEFAULT_MAX_MESSAGE_SIZE",
                stream::DEFAULT_MAX_MESSAGE_SIZE as u64,
            )],
        ),
        (
            "max_clock_ahead_ms",
            vec![("collector domain::MAX_CLOCK_AHEAD", ms(MAX_CLOCK_AHEAD))],
        ),
        (
            "duplicate_window_ms",
            vec![(
                "stream::DEFAULT_DUPLICATE_WINDOW",
                ms(stream::DEFAULT_DUPLICATE_WINDOW),
            )],
        ),
        (
            "max_age_ms",
            vec![("stream::DEFAULT_MAX_AGE", ms(stream::DEFAULT_MAX_AGE))],
        ),
        (
            "stream_max_bytes",
            vec![
                (
                    "stream::DEFAULT_MAX_BYTES",
                    stream::DEFAULT_MAX_BYTES as u64,
                ),
                (
                    "SDK default stream_max_bytes",
                    config.stream_max_bytes as u64,
                ),
            ],
        ),
        (
            "min_stream_max_bytes",
            vec![("stream::MIN_MAX_BYTES", stream::MIN_MAX_BYTES as u64)],
        ),
        (
            "max_replicas",
            vec![("stream::MAX_REPLICAS", stream::MAX_REPLICAS as u64)],
        ),
        (
            "queue_capacity",
            vec![(
                "SDK DEFAULT_QUEUE_CAPACITY",
                sdk::DEFAULT_QUEUE_CAPACITY as u64,
            )],
        ),
        (
            "queue_max_bytes",
            vec![(
                "SDK DEFAULT_QUEUE_MAX_BYTES",
                sdk::DEFAULT_QUEUE_MAX_BYTES as u64,
            )],
        ),
        (
            "max_in_flight",
            vec![(
                "SDK DEFAULT_MAX_IN_FLIGHT",
                sdk::DEFAULT_MAX_IN_FLIGHT as u64,
            )],
        ),
        (
            "ack_timeout_ms",
            vec![("SDK DEFAULT_ACK_TIMEOUT", ms(sdk::DEFAULT_ACK_TIMEOUT))],
        ),
        (
            "min_backoff_ms",
            vec![("SDK DEFAULT_MIN_BACKOFF", ms(sdk::DEFAULT_MIN_BACKOFF))],
        ),
        (
            "max_backoff_ms",
            vec![("SDK DEFAULT_MAX_BACKOFF", ms(sdk::DEFAULT_MAX_BACKOFF))],
        ),
        (
            "publish_linger_ms",
            vec![(
                "SDK DEFAULT_PUBLISH_LINGER",
                ms(sdk::DEFAULT_PUBLISH_LINGER),
            )],
        ),
        (
            "max_rejected_attempts",
            vec![(
                "SDK MAX_REJECTED_ATTEMPTS",
                u64::from(sdk::MAX_REJECTED_ATTEMPTS),
            )],
        ),
        (
            "stats_interval_ms",
            vec![(
                "SDK DEFAULT_STATS_INTERVAL",
                ms(sdk::DEFAULT_STATS_INTERVAL),
            )],
        ),
        (
            "final_stats_reserve_ms",
            vec![("SDK FINAL_STATS_RESERVE", ms(sdk::FINAL_STATS_RESERVE))],
        ),
        (
            "queue_full_warn_interval_ms",
            vec![(
                "SDK ledger::QUEUE_FULL_WARN_INTERVAL",
                ms(QUEUE_FULL_WARN_INTERVAL),
            )],
        ),
        (
            "producer_silent_after_ms",
            vec![(
                "collector DEFAULT_PRODUCER_SILENT_AFTER",
                ms(DEFAULT_PRODUCER_SILENT_AFTER),
            )],
        ),
    ]);
    let table = limits_table(&contract());
    assert_eq!(
        table.keys().map(String::as_str).collect::<Vec<_>>(),
        code.keys().copied().collect::<Vec<_>>(),
        "the document's limits and the ones this test checks are not the same list"
    );
    let mut differ = Vec::new();
    for (key, sides) in &code {
        for (side, value) in sides {
            if table[*key] != *value {
                differ.push(format!(
                    "{key}: docs/contract.md says {}, {side} is {value}",
                    table[*key]
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn the_contracts_subjects_stream_json_and_drop_reasons_are_the_codes() {
    let doc = contract();
    let subjects = Subjects::new(DEFAULT_PREFIX).unwrap();
    for kind in BodyKind::ALL {
        let row = format!("`{{prefix}}.v1.{}`", kind.suffix());
        assert!(
            doc.contains(&row),
            "the subject of {kind:?} ({row}) is not in the document"
        );
        assert!(subjects.for_kind(kind).ends_with(kind.suffix()));
    }
    let json = doc
        .split("```json\n")
        .nth(1)
        .expect("the stream's JSON")
        .split("```")
        .next()
        .unwrap();
    let documented: serde_json::Value = serde_json::from_str(json).expect("the stream JSON parses");
    let spec = StreamSpec::new(stream::DEFAULT_STREAM, subjects);
    let actual = serde_json::to_value(spec.config()).unwrap();
    for (key, value) in documented.as_object().unwrap() {
        assert_eq!(
            &actual[key], value,
            "stream setting `{key}`: the document says {value}, StreamSpec::config() {}",
            actual[key]
        );
    }
    for key in [
        "name",
        "subjects",
        "storage",
        "retention",
        "discard",
        "duplicate_window",
        "max_age",
        "max_bytes",
        "max_msg_size",
        "num_replicas",
    ] {
        assert!(
            documented.get(key).is_some(),
            "the stream JSON lacks `{key}`"
        );
    }
    for reason in DropReason::ALL {
        assert!(
            doc.contains(&format!("`{}`", reason.as_str())),
            "drop reason {} is not in the document",
            reason.as_str()
        );
    }
    assert!(doc.contains("proto/proto/telemetry/v1/telemetry.proto"));
}
