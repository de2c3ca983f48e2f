//! `demo-traffic`: plays the storefront for demos. Sends a steady trickle of signed
//! (when a secret is given) render requests to a renderer, built from sample images
//! drawn here, so a fresh checkout has data to look at without any assets.
//!
//! `demo-traffic --renderer-url http://127.0.0.1:8081 --interval-ms 1500`

use std::io::Cursor;
use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use image::{ImageFormat, Rgba, RgbaImage};

use args::DemoArgs;

mod args;

/// Shops the demo pretends to be.
const SHOPS: [&str; 3] = [
    "oak-and-linen.myshopify.com",
    "nordic-living.myshopify.com",
    "casa-verde.myshopify.com",
];
/// Prompt packs the demo alternates between.
const PACK_VERSIONS: [&str; 2] = ["v3", "v4"];

/// A room photo stand-in: a wall, a floor and a window.
fn room(seed: u32) -> RgbaImage {
    RgbaImage::from_fn(640, 400, |x, y| {
        let window = (380..560).contains(&x) && (60..200).contains(&y);
        if window {
            Rgba([200, 225, 250, 255])
        } else if y > 280 {
            let shade = 120 + ((x + seed * 7) % 40) as u8;
            Rgba([shade, (shade as f32 * 0.8) as u8, 90, 255])
        } else {
            let tint = ((seed * 37) % 60) as u8;
            Rgba([230 - tint, 220, 200 + tint / 2, 255])
        }
    })
}

/// A product stand-in: a sofa-ish block on a transparent background.
fn product(seed: u32) -> RgbaImage {
    let color = [[150, 60, 50, 255], [60, 90, 140, 255], [90, 120, 80, 255]][(seed % 3) as usize];
    RgbaImage::from_fn(200, 120, |x, y| {
        let body = (10..190).contains(&x) && (30..110).contains(&y);
        let arm = ((0..20).contains(&x) || (180..200).contains(&x)) && (10..110).contains(&y);
        if body || arm {
            Rgba(color)
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

fn png_base64(image: &RgbaImage) -> anyhow::Result<String> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageFormat::Png)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes.into_inner()))
}

fn body(n: u64) -> anyhow::Result<serde_json::Value> {
    let seed = n as u32;
    let version = PACK_VERSIONS[(n % 2) as usize];
    let variants: Vec<_> = ["by-window", "center", "left-corner", "close-up"]
        .iter()
        .map(|id| {
            serde_json::json!({
                "id": id,
                "prompt": format!("Place the sofa {id} of the living room, natural light"),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "productId": format!("gid://shopify/Product/{}", 1000 + n % 7),
        "productAssetId": format!("asset-{}", n % 7),
        "roomSessionId": format!("room-{n}"),
        "productImage": png_base64(&product(seed))?,
        "roomImage": png_base64(&room(seed))?,
        "resolvedFacts": {"category": "sofa", "widthCm": 210, "material": "linen"},
        "promptPack": {"version": version, "variants": variants},
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = DemoArgs::parse();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut n = 0u64;
    loop {
        let shop = SHOPS[(n % SHOPS.len() as u64) as usize];
        // The renderer accepts a signed timestamp only within SHOPIFY_PROXY_MAX_AGE_SECS.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let mut query = format!(
            "logged_in_customer_id=&path_prefix=%2Fapps%2Fsee-it-now&shop={shop}&timestamp={now}"
        );
        if let Some(secret) = &args.secret {
            let signature = renderer::signature::sign(&query, secret);
            query.push_str(&format!("&signature={signature}"));
        }
        let url = format!(
            "{}/app-proxy/see-it-now/render?{query}",
            args.renderer_url.trim_end_matches('/')
        );
        let sent = client
            .post(&url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body(n)?)?)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let reply: serde_json::Value = response.json().await.unwrap_or_default();
                println!(
                    "render {n}: HTTP {status} run {} status {}",
                    reply["runId"].as_str().unwrap_or("-"),
                    reply["status"].as_str().unwrap_or("-")
                );
            }
            Err(err) => eprintln!("render {n}: {err}"),
        }
        n += 1;
        if args.count != 0 && n >= args.count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
}
