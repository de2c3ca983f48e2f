//! Realistic envelopes of one render run for the ingest benchmark: 1 storefront Event,
//! 1 RunStarted (with facts and prompt-pack JSON), 4 VariantStarted, 4 VariantResult
//! (one timeout), 1 RunCompleted.

use telemetry_proto::v1::{self, envelope::Body};

/// The run's envelopes; `seq` is the producer sequence, continued across runs.
pub fn envelopes_of_run(run: usize, seq: &mut u64) -> Vec<v1::Envelope> {
    let run_id = uuid::Uuid::now_v7().to_string();
    let request_id = format!("req-{}", uuid::Uuid::now_v7());
    let shop = format!("shop-{}.myshopify.com", run % 50);
    let now = 1_760_000_000_000 + run as i64 * 25;
    let mut next = |body: Body| {
        *seq += 1;
        v1::Envelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: now + *seq as i64 % 20,
            shop_id: shop.clone(),
            request_id: request_id.clone(),
            producer: "renderer-bench".to_owned(),
            producer_seq: *seq,
            body: Some(body),
        }
    };
    let image = |hash: String, width| v1::ImageRef {
        hash,
        meta: Some(v1::ImageMeta {
            width,
            height: 1024,
            format: "jpeg".into(),
            bytes: 345_678,
        }),
    };
    let facts = format!(
        r##"{{"product":{{"id":"gid://shopify/Product/{run}","title":"Oak sideboard","dimensions_cm":{{"width":180,"depth":45,"height":80}},"materials":["oak","steel"]}},"room":{{"type":"living_room","wall_color":"#f4efe6","light":"daylight"}},"placement":{{"anchor":"floor","scale":1.0}}}}"##
    );
    let pack = r#"{"version":"v12","prompts":[{"id":"front","text":"Place the product against the back wall, matching perspective and light, keep scale."},{"id":"angle","text":"Place the product at a slight angle near the window, soft shadows."},{"id":"close","text":"Close-up of the product in the room, shallow depth of field."},{"id":"wide","text":"Wide shot of the room with the product in its natural place."}]}"#;
    let mut out = vec![
        next(Body::Event(v1::Event {
            source: v1::EventSource::AppProxy as i32,
            r#type: v1::EventType::SfRenderRequested as i32,
            payload_json: format!(
                r#"{{"productId":"gid://shopify/Product/{run}","variantCount":4,"ua":"Mozilla/5.0"}}"#
            ),
            run_id: String::new(),
        })),
        next(Body::RunStarted(v1::RunStarted {
            run_id: run_id.clone(),
            product_asset_id: format!("asset-{run}"),
            room_session_id: format!("room-{run}"),
            prompt_pack_version: "v12".into(),
            model: "gemini-2.5-flash-image".into(),
            product_image: Some(image(format!("{:064x}", run), 1200)),
            room_image: Some(image(format!("{:064x}", run + 1), 2048)),
            resolved_facts_hash: format!("{:064x}", run + 2),
            resolved_facts_json: facts,
            prompt_pack_hash: format!("{:064x}", 12),
            prompt_pack_json: pack.to_owned(),
            variant_count: 4,
        })),
    ];
    for variant in ["front", "angle", "close", "wide"] {
        out.push(next(Body::VariantStarted(v1::VariantStarted {
            run_id: run_id.clone(),
            variant_id: variant.into(),
        })));
    }
    for (i, variant) in ["front", "angle", "close", "wide"].iter().enumerate() {
        let ok = i != 3;
        out.push(next(Body::VariantResult(v1::VariantResult {
            run_id: run_id.clone(),
            variant_id: (*variant).into(),
            final_prompt_hash: format!("{:064x}", run * 4 + i),
            status: if ok {
                v1::VariantStatus::Success
            } else {
                v1::VariantStatus::Timeout
            } as i32,
            latency_ms: 8_000 + i as u64 * 300,
            output_image_key: if ok {
                format!("renders/{run_id}/{variant}.png")
            } else {
                String::new()
            },
            output_image_hash: if ok {
                format!("{:064x}", run * 7 + i)
            } else {
                String::new()
            },
            error_code: if ok { 0 } else { v1::ErrorCode::Timeout as i32 },
            error_message: if ok {
                String::new()
            } else {
                "variant deadline of 30s exceeded".into()
            },
        })));
    }
    out.push(next(Body::RunCompleted(v1::RunCompleted {
        run_id,
        status: v1::RunStatus::Partial as i32,
        total_duration_ms: 30_500,
        success_count: 3,
        fail_count: 0,
        timeout_count: 1,
    })));
    out
}
