//! Memory under hostile images and more renders than the renderer takes at once: image
//! bombs are refused by their decoded size, renders in progress are bounded across
//! requests, and a request that would wait too long for a slot gets 503 + Retry-After.

use std::io::Cursor;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageBuffer, Rgba};
use renderer::config::ProviderSettings;
use serde_json::Value;
use telemetry_proto::v1::envelope::Body;
use telemetry_proto::v1::EventType;
use test_support::Isolation;

use crate::binary::{renderer_with_address_space_limit, spawn_command, terminate};
use crate::helpers::{b64, recorded, request, signed_query, spawn_app, SECRET, SHOP};

/// A 6000x6000 16-bit RGBA PNG of zeros: ~280 KB of file, 288 MB of pixels once decoded
/// (36 M pixels, under the default pixel limit).
fn sixteen_bit_bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let pixels: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::new(6000, 6000);
        let mut out = Cursor::new(Vec::new());
        let encoder =
            PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::NoFilter);
        DynamicImage::ImageRgba16(pixels)
            .write_with_encoder(encoder)
            .expect("encode the bomb");
        out.into_inner()
    })
}

/// Address space the renderer gets in the bomb test. Idle, the debug binary maps about
/// 230 MiB; one bomb request decoded both images into 576 MiB before the fix, so eight
/// at once cannot fit, while the bounded renderer never comes near it.
const ADDRESS_SPACE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;

#[tokio::test]
async fn eight_sixteen_bit_bombs_at_once_under_an_address_space_limit_leave_the_renderer_serving() {
    let bomb = b64(sixteen_bit_bomb());
    assert!(bomb.len() < 1024 * 1024, "bomb is {} bytes", bomb.len());
    let mut body = request(&["a"]).body;
    body["productImage"] = Value::String(bomb.clone());
    body["roomImage"] = Value::String(bomb);

    let isolation = Isolation::new();
    let store = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_command(
        renderer_with_address_space_limit(ADDRESS_SPACE_LIMIT),
        &isolation,
        store.path(),
        &[("RENDER_CONCURRENCY", "2")],
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/app-proxy/see-it-now/render?shop=bomb.myshopify.com");
    let sends = (0..8).map(|n| {
        let request = client
            .post(&url)
            .header("x-request-id", format!("req-bomb-{n}"))
            .json(&body);
        async move {
            match request.send().await {
                Ok(response) => Ok(response.status().as_u16()),
                Err(err) => Err(err.to_string()),
            }
        }
    });
    let answers = futures::future::join_all(sends).await;
    let alive = child.try_wait().unwrap();
    assert!(
        alive.is_none(),
        "the renderer died ({alive:?}); answers {answers:?}"
    );
    for answer in &answers {
        assert!(
            matches!(answer, Ok(400) | Ok(503)),
            "every bomb is refused: {answers:?}"
        );
    }

    // The renderer still renders.
    let response = client
        .post(&url)
        .header("x-request-id", "req-after-bombs")
        .json(&request(&["a", "b"]).body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    terminate(child).await;
}
#[tokio::test]
async fn a_request_that_would_wait_too_long_for_a_render_slot_gets_503_with_retry_after() {
    let isolation = Isolation::new();
    let app = spawn_app(Some(&isolation), |settings| {
        settings.limits.render_concurrency = 1;
        settings.limits.render_queue_wait = Duration::from_millis(200);
        let ProviderSettings::Local(local) = &mut settings.provider else {
            unreachable!("spawn_app uses the local provider")
        };
        local.latency = Duration::from_millis(3000);
    })
    .await;
    let body = request(&["a"]).body;

    // The one slot is taken by a slow render...
    let first = {
        let (client, url, body) = (app.client.clone(), app.base.clone(), body.clone());
        tokio::spawn(async move {
            client
                .post(format!(
                    "{url}/app-proxy/see-it-now/render?{}",
                    signed_query(SHOP, SECRET)
                ))
                .header("x-request-id", "req-slow")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // ...so the next one waits its 200 ms and is turned away.
    let started = Instant::now();
    let refused = app.render(&body, "req-refused").await;
    assert_eq!(refused.status(), 503);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["x-request-id"], "req-refused");
    let answer: Value = refused.json().await.unwrap();
    assert_eq!(answer["error"], "overloaded", "{answer}");

    assert_eq!(first.await.unwrap(), 200);
    // A free slot renders again.
    assert_eq!(app.render(&body, "req-later").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("renderer_requests_total{outcome=\"overloaded\"} 1"),
        "{metrics}"
    );

    app.stop().await;
    let envelopes = recorded(&isolation, 1, Duration::from_secs(5)).await;
    let reasons: Vec<String> = envelopes
        .into_iter()
        .filter(|e| e.request_id == "req-refused")
        .filter_map(|e| match e.body {
            Some(Body::Event(event)) if event.r#type == EventType::SfRenderRejected as i32 => {
                let payload: Value = serde_json::from_str(&event.payload_json).unwrap();
                Some(payload["reason"].as_str().unwrap().to_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["overloaded"]);
}
