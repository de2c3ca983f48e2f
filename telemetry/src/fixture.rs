//! Hidden hooks for the cross-SDK checks; not an API (no stability promised).
//!
//! `proto/fixtures/envelopes.json` lists calls in the original app's argument shapes
//! (`startRun({ runId, shopId, ... })`) with a fixed event id, time, producer and
//! sequence, and the exact envelope bytes they must give. This SDK
//! (`telemetry/tests/fixtures.rs`) and the TypeScript one (`sdk/typescript`) must both
//! produce those bytes. [`Call::envelope`] builds the envelope through the same
//! functions the publisher uses (the call's checks, `record::envelope`,
//! `StatsSnapshot::stats_body`), only with the stamp given instead of drawn.
//!
//! [`Call::from_json`] also lets the collector's cross-SDK test
//! (`telemetry-collector/tests/typescript_sdk.rs`) send the same calls through this SDK
//! that a node script sends through the TypeScript one.

use serde_json::Value;
use telemetry_proto::v1::{self, envelope::Body};

use crate::config::Limits;
use crate::error::EmitError;
use crate::ledger::{DropReason, StatsSnapshot};
use crate::record::{self, Record as _, Stamp};
use crate::{
    CompleteRun, EmitEvent, ErrorCode, EventSource, EventType, ImageInfo, ImageMeta, RunStatus,
    StartRun, Telemetry, VariantResultRecord, VariantStart, VariantStatus,
};

/// One call of the original app's API.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    StartRun(StartRun),
    RecordVariantStart(VariantStart),
    RecordVariantResult(VariantResultRecord),
    CompleteRun(CompleteRun),
    Emit(EmitEvent),
}

/// The envelope fields a call does not give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedStamp {
    pub event_id: String,
    pub occurred_at: i64,
    pub producer: String,
    pub producer_seq: u64,
}

impl From<FixedStamp> for Stamp {
    fn from(stamp: FixedStamp) -> Self {
        Stamp {
            event_id: stamp.event_id,
            occurred_at: stamp.occurred_at,
            producer: stamp.producer,
            producer_seq: stamp.producer_seq,
        }
    }
}

fn text(input: &Value, key: &str) -> Result<String, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("`{key}` must be a string, not {other}")),
    }
}

fn optional(input: &Value, key: &str) -> Result<Option<String>, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        _ => text(input, key).map(Some),
    }
}

fn number(input: &Value, key: &str) -> Result<u64, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_u64()
            .ok_or_else(|| format!("`{key}` must be a whole number, not {value}")),
    }
}

fn number32(input: &Value, key: &str) -> Result<u32, String> {
    u32::try_from(number(input, key)?).map_err(|_| format!("`{key}` is over u32"))
}

fn image(input: &Value, hash: &str, meta: &str) -> Result<ImageInfo, String> {
    let meta = input.get(meta).cloned().unwrap_or(Value::Null);
    Ok(ImageInfo {
        hash: text(input, hash)?,
        meta: ImageMeta {
            width: number32(&meta, "width")?,
            height: number32(&meta, "height")?,
            format: text(&meta, "format")?,
            bytes: number(&meta, "bytes")?,
        },
    })
}

/// An enum value by the name the original app uses: `success`, `TIMEOUT`, `APP_PROXY`
/// (any case, with or without the proto's prefix).
fn named<E>(
    input: &Value,
    key: &str,
    prefix: &str,
    parse: fn(&str) -> Option<E>,
) -> Result<Option<E>, String> {
    let name = text(input, key)?;
    if name.is_empty() {
        return Ok(None);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with(prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    };
    parse(&full)
        .map(Some)
        .ok_or_else(|| format!("`{key}`: unknown value {name:?}"))
}

impl Call {
    /// A call from its name and its argument as JSON, in the original app's shapes
    /// (camelCase keys, statuses and codes by name, JSON blobs as text).
    pub fn from_json(call: &str, input: &Value) -> Result<Self, String> {
        Ok(match call {
            "startRun" => Call::StartRun(StartRun {
                run_id: text(input, "runId")?,
                shop_id: text(input, "shopId")?,
                request_id: text(input, "requestId")?,
                product_asset_id: text(input, "productAssetId")?,
                room_session_id: text(input, "roomSessionId")?,
                prompt_pack_version: text(input, "promptPackVersion")?,
                model: text(input, "model")?,
                product_image: image(input, "productImageHash", "productImageMeta")?,
                room_image: image(input, "roomImageHash", "roomImageMeta")?,
                resolved_facts_hash: text(input, "resolvedFactsHash")?,
                resolved_facts_json: text(input, "resolvedFactsJson")?,
                prompt_pack_hash: text(input, "promptPackHash")?,
                prompt_pack_json: text(input, "promptPackJson")?,
                variant_count: number32(input, "variantCount")?,
            }),
            "recordVariantStart" => Call::RecordVariantStart(VariantStart {
                run_id: text(input, "runId")?,
                variant_id: text(input, "variantId")?,
                request_id: text(input, "requestId")?,
                shop_id: text(input, "shopId")?,
            }),
            "recordVariantResult" => Call::RecordVariantResult(VariantResultRecord {
                run_id: text(input, "renderRunId")?,
                variant_id: text(input, "variantId")?,
                request_id: text(input, "requestId")?,
                shop_id: text(input, "shopId")?,
                final_prompt_hash: text(input, "finalPromptHash")?,
                status: named(
                    input,
                    "status",
                    "VARIANT_STATUS_",
                    VariantStatus::from_str_name,
                )?
                .unwrap_or(VariantStatus::Unspecified),
                latency_ms: number(input, "latencyMs")?,
                output_image_key: optional(input, "outputImageKey")?,
                output_image_hash: optional(input, "outputImageHash")?,
                error_code: named(input, "errorCode", "ERROR_CODE_", ErrorCode::from_str_name)?,
                error_message: optional(input, "errorMessage")?,
            }),
            "completeRun" => Call::CompleteRun(CompleteRun {
                run_id: text(input, "runId")?,
                request_id: text(input, "requestId")?,
                shop_id: text(input, "shopId")?,
                status: named(input, "status", "RUN_STATUS_", RunStatus::from_str_name)?
                    .unwrap_or(RunStatus::Unspecified),
                total_duration_ms: number(input, "totalDurationMs")?,
                success_count: number32(input, "successCount")?,
                fail_count: number32(input, "failCount")?,
                timeout_count: number32(input, "timeoutCount")?,
            }),
            "emit" => Call::Emit(EmitEvent {
                shop_id: text(input, "shopId")?,
                request_id: text(input, "requestId")?,
                run_id: text(input, "runId")?,
                source: named(input, "source", "EVENT_SOURCE_", EventSource::from_str_name)?
                    .unwrap_or(EventSource::Unspecified),
                event_type: named(input, "type", "EVENT_TYPE_", EventType::from_str_name)?
                    .unwrap_or(EventType::Unspecified),
                payload_json: text(input, "payload")?,
            }),
            other => return Err(format!("unknown call {other:?}")),
        })
    }

    /// Makes the call on `telemetry`.
    pub fn submit(self, telemetry: &Telemetry) -> Result<(), EmitError> {
        match self {
            Call::StartRun(run) => telemetry.start_run(run),
            Call::RecordVariantStart(start) => telemetry.record_variant_start(start),
            Call::RecordVariantResult(result) => telemetry.record_variant_result(result),
            Call::CompleteRun(complete) => telemetry.complete_run(complete),
            Call::Emit(event) => telemetry.emit(event),
        }
    }

    /// The envelope the publisher would send for this call with `stamp`, or why the
    /// call would be refused.
    pub fn envelope(
        self,
        limits: &Limits,
        stamp: FixedStamp,
    ) -> Result<v1::Envelope, (EmitError, DropReason)> {
        let item = match self {
            Call::StartRun(run) => run.check(limits).map(|_| run.into_item()),
            Call::RecordVariantStart(start) => start.check(limits).map(|_| start.into_item()),
            Call::RecordVariantResult(result) => result.check(limits).map(|_| result.into_item()),
            Call::CompleteRun(complete) => complete.check(limits).map(|_| complete.into_item()),
            Call::Emit(event) => event.check(limits).map(|_| event.into_item()),
        }?;
        let (shop_id, request_id, body) = item.into_parts(limits);
        Ok(record::envelope(stamp.into(), shop_id, request_id, body))
    }
}

/// The `ProducerStats` envelope the publisher would send for `stats` (its
/// `producer_seq` is `stats.emitted`, whatever `stamp` says).
pub fn stats_envelope(
    stats: &StatsSnapshot,
    started_at_ms: i64,
    is_final: bool,
    service: &str,
    stamp: FixedStamp,
) -> v1::Envelope {
    let body = Body::ProducerStats(stats.stats_body(started_at_ms, is_final, service));
    let stamp = FixedStamp {
        producer_seq: stats.emitted,
        ..stamp
    };
    record::envelope(stamp.into(), String::new(), String::new(), body)
}

/// A [`DropReason`] by its `ProducerStats` key.
pub fn drop_reason(key: &str) -> Option<DropReason> {
    DropReason::ALL
        .into_iter()
        .find(|reason| reason.as_str() == key)
}
