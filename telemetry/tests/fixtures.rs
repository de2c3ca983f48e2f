//! The shared envelope fixtures (`proto/fixtures/envelopes.json`): every call listed
//! there, with its fixed id, time, producer and sequence, must give exactly the listed
//! bytes through this SDK — the same bytes the TypeScript SDK must give
//! (`sdk/typescript/test/fixtures.test.ts`) — or be refused for the listed reason.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message as _;
use serde_json::Value;
use telemetry::fixture::{drop_reason, stats_envelope, Call, FixedStamp};
use telemetry::{EmitError, Limits, StatsSnapshot};
use telemetry_proto::v1::Envelope;
use telemetry_proto::BodyKind;

fn fixtures() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto/fixtures/envelopes.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("the fixtures are JSON");
    doc["cases"].as_array().expect("a `cases` array").clone()
}

fn stamp(case: &Value) -> FixedStamp {
    let stamp = &case["stamp"];
    FixedStamp {
        event_id: stamp["eventId"].as_str().unwrap().to_owned(),
        occurred_at: stamp["occurredAt"].as_i64().unwrap(),
        producer: stamp["producer"].as_str().unwrap().to_owned(),
        producer_seq: stamp["producerSeq"].as_u64().unwrap(),
    }
}

fn limits(case: &Value) -> Limits {
    let mut limits = Limits::default();
    let given = &case["limits"];
    let size = |key: &str| given.get(key).and_then(Value::as_u64).map(|n| n as usize);
    if let Some(n) = size("maxJsonBytes") {
        limits.max_json_bytes = n;
    }
    if let Some(n) = size("maxFieldBytes") {
        limits.max_field_bytes = n;
    }
    if let Some(n) = size("maxErrorMessageBytes") {
        limits.max_error_message_bytes = n;
    }
    limits
}

fn stats(input: &Value) -> StatsSnapshot {
    let count = |key: &str| input[key].as_u64().unwrap_or_else(|| panic!("`{key}`"));
    let dropped_by_reason: BTreeMap<&'static str, u64> = input["droppedByReason"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, n)| {
            let reason = drop_reason(key).unwrap_or_else(|| panic!("unknown reason {key}"));
            (reason.as_str(), n.as_u64().unwrap())
        })
        .collect();
    StatsSnapshot {
        emitted: count("emitted"),
        published: count("published"),
        dropped: dropped_by_reason.values().sum(),
        dropped_by_reason,
        publish_failures: count("publishFailures"),
        queue_depth: count("queueDepth"),
        connected: true,
        // Not on the wire: the SDK's own view of the broker.
        ..Default::default()
    }
}

/// This SDK's answer for one case, in the fixture's `expected` shape.
fn answer(case: &Value) -> Value {
    let call = case["call"].as_str().unwrap();
    let input = &case["input"];
    let envelope: Envelope = if call == "producerStats" {
        stats_envelope(
            &stats(input),
            input["startedAt"].as_i64().unwrap(),
            input["final"].as_bool().unwrap(),
            input["service"].as_str().unwrap(),
            stamp(case),
        )
    } else {
        let call = Call::from_json(call, input).unwrap_or_else(|err| panic!("{err}"));
        match call.envelope(&limits(case), stamp(case)) {
            Ok(envelope) => envelope,
            Err((error, reason)) => {
                let mut refused = serde_json::json!({ "dropReason": reason.as_str() });
                match error {
                    EmitError::TooLarge { field, len, limit } => {
                        refused["field"] = field.into();
                        refused["len"] = len.into();
                        refused["limit"] = limit.into();
                    }
                    EmitError::MissingField(field) => refused["field"] = field.into(),
                    other => panic!("a check cannot give {other:?}"),
                }
                return refused;
            }
        }
    };
    let kind = BodyKind::of(envelope.body.as_ref().expect("a body"));
    serde_json::json!({
        "subject": kind.suffix(),
        "hex": hex::encode(envelope.encode_to_vec()),
    })
}

#[test]
fn every_fixture_gives_its_envelope_bytes_or_its_refusal() {
    let cases = fixtures();
    assert!(
        cases.len() >= 20,
        "the fixtures lost cases: {}",
        cases.len()
    );
    let mut differ = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let expected = &case["expected"];
        let got = answer(case);
        let mut wanted = expected.clone();
        // The proto3 JSON view is for readers; the bytes are the contract.
        if let Some(object) = wanted.as_object_mut() {
            object.remove("envelope");
        }
        if got != wanted {
            differ.push(format!("{name}:\n  expected {wanted}\n  this SDK {got}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} fixtures differ:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
}

#[test]
fn every_fixture_envelope_decodes_to_its_stamp_with_a_uuidv7_of_its_time() {
    // The bytes decode (prost) to an envelope that carries the case's stamp: the hex
    // was not written for some other case.
    for case in fixtures() {
        let Some(hex) = case["expected"]["hex"].as_str() else {
            continue;
        };
        let envelope = Envelope::decode(hex::decode(hex).unwrap().as_slice()).unwrap();
        let stamp = stamp(&case);
        assert_eq!(envelope.event_id, stamp.event_id, "{}", case["name"]);
        assert_eq!(envelope.occurred_at, stamp.occurred_at);
        assert_eq!(envelope.producer, stamp.producer);
        let uuid = uuid::Uuid::parse_str(&envelope.event_id).unwrap();
        assert_eq!(uuid.get_version_num(), 7, "{}: a UUIDv7", case["name"]);
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        assert_eq!(
            (secs * 1000 + u64::from(nanos) / 1_000_000) as i64,
            envelope.occurred_at,
            "{}: the id's time is occurred_at",
            case["name"]
        );
    }
}
