//! The `monitor_events.payload` text of an envelope ([`Fact::payload`]), written
//! straight from borrowed fields with keys in sorted order, without building a
//! `serde_json::Value` map first: that map cost about a tenth of the SQLite write
//! path's CPU. The test keeps the map-building version as the reference text.

use serde::Serialize;

use super::{Body, Fact};

#[derive(Serialize)]
struct RunStarted<'a> {
    model: &'a str,
    product_asset_id: &'a str,
    prompt_pack_version: &'a str,
    room_session_id: &'a str,
    variant_count: i64,
}

#[derive(Serialize)]
struct VariantResult<'a> {
    error_code: &'a str,
    error_message: &'a str,
    latency_ms: i64,
    output_image_key: &'a str,
    status: &'a str,
}

#[derive(Serialize)]
struct RunCompleted<'a> {
    fail_count: i64,
    status: &'a str,
    success_count: i64,
    timeout_count: i64,
    total_duration_ms: i64,
}

#[derive(Serialize)]
struct ProducerStats<'a> {
    dropped: i64,
    emitted: i64,
    #[serde(rename = "final")]
    is_final: bool,
    published: i64,
    service: &'a str,
}

fn text(value: &impl Serialize) -> Option<String> {
    // Serialising plain strings and integers into a String cannot fail.
    serde_json::to_string(value).ok()
}

/// The payload text of `fact`, `None` for bodies without one.
pub(crate) fn payload(fact: &Fact) -> Option<String> {
    match &fact.body {
        Body::Event(event) => event.payload_json.clone(),
        Body::RunStarted(b) => text(&RunStarted {
            model: &b.model,
            product_asset_id: &b.product_asset_id,
            prompt_pack_version: &b.prompt_pack_version,
            room_session_id: &b.room_session_id,
            variant_count: b.variant_count,
        }),
        Body::VariantStarted(_) => None,
        Body::VariantResult(b) => text(&VariantResult {
            error_code: &b.error_code,
            error_message: &b.error_message,
            latency_ms: b.latency_ms,
            output_image_key: &b.output_image_key,
            status: &b.status,
        }),
        Body::RunCompleted(b) => text(&RunCompleted {
            fail_count: b.fail_count,
            status: &b.status,
            success_count: b.success_count,
            timeout_count: b.timeout_count,
            total_duration_ms: b.total_duration_ms,
        }),
        Body::ProducerStats(b) => text(&ProducerStats {
            dropped: b.dropped,
            emitted: b.emitted,
            is_final: b.is_final,
            published: b.published,
            service: &b.service,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        AppEvent, ImageRef, Meta, Origin, ProducerLedger, RunOutcome, RunStart, VariantOutcome,
        VariantStart,
    };
    use serde_json::json;

    /// The straightforward version, through a `serde_json::Value` map: the text the
    /// fast one must reproduce exactly.
    fn reference(fact: &Fact) -> Option<String> {
        let value = match &fact.body {
            Body::Event(event) => return event.payload_json.clone(),
            Body::RunStarted(b) => json!({
                "product_asset_id": b.product_asset_id,
                "room_session_id": b.room_session_id,
                "prompt_pack_version": b.prompt_pack_version,
                "model": b.model,
                "variant_count": b.variant_count,
            }),
            Body::VariantStarted(_) => return None,
            Body::VariantResult(b) => json!({
                "status": b.status,
                "latency_ms": b.latency_ms,
                "output_image_key": b.output_image_key,
                "error_code": b.error_code,
                "error_message": b.error_message,
            }),
            Body::RunCompleted(b) => json!({
                "status": b.status,
                "total_duration_ms": b.total_duration_ms,
                "success_count": b.success_count,
                "fail_count": b.fail_count,
                "timeout_count": b.timeout_count,
            }),
            Body::ProducerStats(b) => json!({
                "service": b.service,
                "emitted": b.emitted,
                "published": b.published,
                "dropped": b.dropped,
                "final": b.is_final,
            }),
        };
        Some(value.to_string())
    }

    fn fact(body: Body) -> Fact {
        Fact {
            origin: Origin {
                subject: "s".into(),
                stream_seq: 1,
            },
            meta: Meta {
                event_id: "e".into(),
                occurred_at: 1,
                shop_id: "shop".into(),
                request_id: "req".into(),
                producer: "p".into(),
                producer_seq: 1,
            },
            body,
            raw: bytes::Bytes::new(),
        }
    }

    #[test]
    fn same_text_as_a_json_map_for_every_body() {
        let tricky = "quote \" backslash \\ newline \n unicode é ☃ \u{1}";
        let image = ImageRef {
            hash: "h".into(),
            meta: None,
        };
        let bodies = [
            Body::RunStarted(RunStart {
                run_id: "r".into(),
                product_asset_id: tricky.into(),
                room_session_id: "room".into(),
                prompt_pack_version: "v1".into(),
                model: "m".into(),
                product_image: image.clone(),
                room_image: image,
                resolved_facts_hash: "f".into(),
                resolved_facts_json: Some("{}".into()),
                prompt_pack_hash: "p".into(),
                prompt_pack_json: None,
                variant_count: -4,
            }),
            Body::VariantStarted(VariantStart {
                run_id: "r".into(),
                variant_id: "v".into(),
            }),
            Body::VariantResult(VariantOutcome {
                run_id: "r".into(),
                variant_id: "v".into(),
                final_prompt_hash: "h".into(),
                status: "timeout".into(),
                latency_ms: i64::MAX,
                output_image_key: String::new(),
                output_image_hash: String::new(),
                error_code: "timeout".into(),
                error_message: tricky.into(),
            }),
            Body::RunCompleted(RunOutcome {
                run_id: "r".into(),
                status: "partial".into(),
                total_duration_ms: 30_500,
                success_count: 3,
                fail_count: 0,
                timeout_count: i64::MIN,
            }),
            Body::Event(AppEvent {
                source: "app_proxy".into(),
                event_type: "x".into(),
                payload_json: Some(r#"{"b":1,"a":2}"#.into()),
                run_id: String::new(),
            }),
            Body::Event(AppEvent {
                source: "app_proxy".into(),
                event_type: "x".into(),
                payload_json: None,
                run_id: String::new(),
            }),
            Body::ProducerStats(ProducerLedger {
                service: tricky.into(),
                emitted: 10,
                published: 9,
                dropped: 1,
                dropped_by_reason: "{}".into(),
                publish_failures: 0,
                queue_depth: 2,
                started_at: 5,
                is_final: true,
            }),
        ];
        for body in bodies {
            let fact = fact(body);
            assert_eq!(payload(&fact), reference(&fact), "{:?}", fact.body);
        }
    }
}
