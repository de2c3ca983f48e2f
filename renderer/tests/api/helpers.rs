//! `spawn_app()` and friends: a renderer on a free port with its own image directory
//! and (optionally) its own telemetry stream, plus typed request helpers, a stream
//! reader that decodes envelopes, and `spawn_collector()` for end-to-end tests.

use std::io::Cursor;
use std::time::{Duration, Instant};

use base64::Engine as _;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use prost::Message as _;
use renderer::config::Settings;
use renderer::{signature, Application};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use telemetry::{NatsConfig, ShutdownReport, TelemetryConfig};
use telemetry_proto::v1::envelope::Body;
use telemetry_proto::v1::Envelope;
use test_support::Isolation;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SHOP: &str = "test-shop.myshopify.com";
pub const SECRET: &str = "app-proxy-test-secret";

/// A running renderer.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<ShutdownReport>>>,
}

/// Telemetry settings for `isolation`'s stream.
pub fn telemetry_config(isolation: &Isolation) -> TelemetryConfig {
    TelemetryConfig {
        nats: NatsConfig {
            url: isolation.nats_url.clone(),
            ..Default::default()
        },
        subject_prefix: isolation.prefix.clone(),
        stream: isolation.stream.clone(),
        stream_max_bytes: Isolation::STREAM_MAX_BYTES,
        service: "renderer".into(),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(250),
        ..Default::default()
    }
}

/// Starts a renderer: local provider, the test secret, telemetry to `isolation` (or
/// off), then `configure` for anything else.
pub async fn spawn_app(
    isolation: Option<&Isolation>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let store_dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::local("127.0.0.1:0".parse().unwrap(), store_dir.path().into());
    settings.shopify_api_secret = Some(SECRET.into());
    settings.telemetry = isolation.map(telemetry_config);
    settings.shutdown_deadline = Duration::from_secs(10);
    configure(&mut settings);
    let app = Application::build(settings).await.expect("build the app");
    let base = format!("http://{}", app.local_addr());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async {
        let _ = stop_rx.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::new(),
        store_dir,
        stop: Some(stop_tx),
        handle: Some(handle),
    }
}

/// Now, in unix seconds (the app proxy's `timestamp`).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The app-proxy query Shopify would send for `shop` now, signed with `secret`.
pub fn signed_query(shop: &str, secret: &str) -> String {
    signed_query_at(shop, secret, unix_now())
}

/// [`signed_query`] with the given `timestamp`.
pub fn signed_query_at(shop: &str, secret: &str, timestamp: i64) -> String {
    signed(
        &format!(
            "shop={shop}&logged_in_customer_id=&path_prefix=%2Fapps%2Fsee-it-now&timestamp={timestamp}"
        ),
        secret,
    )
}

/// `query` with its app-proxy signature appended.
pub fn signed(query: &str, secret: &str) -> String {
    format!("{query}&signature={}", signature::sign(query, secret))
}

impl TestApp {
    /// Posts `body` with a valid signature and `request_id` as `x-request-id`.
    pub async fn render(&self, body: &Value, request_id: &str) -> reqwest::Response {
        self.post(
            &signed_query(SHOP, SECRET),
            body.to_string().into_bytes(),
            request_id,
        )
        .await
    }

    /// Posts raw bytes with a raw query.
    pub async fn post(&self, query: &str, body: Vec<u8>, request_id: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/app-proxy/see-it-now/render?{query}", self.base))
            .header("content-type", "application/json")
            .header("x-request-id", request_id)
            .body(body)
            .send()
            .await
            .expect("request reaches the renderer")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request reaches the renderer")
    }

    /// Stops serving and flushes telemetry.
    pub async fn stop(mut self) -> ShutdownReport {
        let _ = self.stop.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap().unwrap()
    }
}

/// An image of `width` x `height` in `format`, with a pattern so formats differ.
pub fn image_bytes(width: u32, height: u32, format: ImageFormat, color: [u8; 4]) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, y| {
        if (x + y) % 5 == 0 {
            Rgba([255, 255, 255, 255])
        } else {
            Rgba(color)
        }
    });
    let image = match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(image).to_rgb8()),
        _ => DynamicImage::ImageRgba8(image),
    };
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The test request's parts, kept to check what telemetry reports.
pub struct Request {
    pub product: Vec<u8>,
    pub room: Vec<u8>,
    pub facts: Value,
    pub pack: Value,
    pub body: Value,
}

/// A request for `variants` with a PNG product and a JPEG room.
pub fn request(variants: &[&str]) -> Request {
    let product = image_bytes(24, 16, ImageFormat::Png, [200, 30, 30, 255]);
    let room = image_bytes(96, 64, ImageFormat::Jpeg, [40, 90, 160, 255]);
    let facts = json!({"widthCm": 80, "material": "oak", "category": "chair"});
    let pack = json!({
        "version": "pack-2024-11",
        "variants": variants
            .iter()
            .map(|id| json!({"id": id, "prompt": format!("Place the chair, style {id}")}))
            .collect::<Vec<_>>(),
    });
    let body = json!({
        "productId": "gid://shopify/Product/42",
        "productAssetId": "asset-42",
        "roomSessionId": "room-session-7",
        "productImage": b64(&product),
        "roomImage": b64(&room),
        "resolvedFacts": facts,
        "promptPack": pack,
    });
    Request {
        product,
        room,
        facts,
        pack,
        body,
    }
}

/// Every envelope in `stream` on `nats_url`, waiting up to `wait` for the stream to
/// exist and hold at least `at_least` messages. Fails the test if the broker is down.
/// With `at_least == 0` a stream that was never created reads as empty (nothing was
/// ever published to it).
pub async fn read_envelopes(
    nats_url: &str,
    stream: &str,
    at_least: usize,
    wait: Duration,
) -> Vec<Envelope> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use futures::StreamExt as _;
    let client = async_nats::connect(nats_url)
        .await
        .unwrap_or_else(|err| panic!("connect to NATS at {nats_url}: {err}"));
    let js = async_nats::jetstream::new(client);
    let started = Instant::now();
    let mut handle = loop {
        match js.get_stream(stream).await {
            Ok(handle) => break handle,
            Err(_) if at_least == 0 && started.elapsed() > wait => return Vec::new(),
            Err(err) if started.elapsed() > wait => panic!("stream {stream}: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let total = loop {
        let messages = handle.info().await.expect("stream info").state.messages as usize;
        if messages >= at_least || started.elapsed() > wait {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let consumer = handle
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let mut batch = consumer
            .batch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch a batch");
        let before = out.len();
        while let Some(message) = batch.next().await {
            let message = message.expect("a message");
            out.push(Envelope::decode(message.payload.as_ref()).expect("an Envelope"));
        }
        assert!(out.len() > before, "stream {stream} stopped delivering");
    }
    out
}

/// The records (see [`records`]) in `isolation`'s stream, waiting as [`read_envelopes`]
/// does for at least `at_least` messages.
pub async fn recorded(isolation: &Isolation, at_least: usize, wait: Duration) -> Vec<Envelope> {
    records(read_envelopes(&isolation.nats_url, &isolation.stream, at_least, wait).await)
}

/// Envelopes other than the SDK's own `ProducerStats`.
pub fn records(envelopes: Vec<Envelope>) -> Vec<Envelope> {
    let mut records: Vec<_> = envelopes
        .into_iter()
        .filter(|e| !matches!(e.body, Some(Body::ProducerStats(_)) | None))
        .collect();
    // Producer order: the SDK publishes with many in flight, so stream order may differ.
    records.sort_by_key(|e| e.producer_seq);
    records
}

/// A collector (ingest on, SQLite in a temporary directory) draining a test's stream.
pub struct TestCollector {
    collector: telemetry_collector::RunningCollector,
    /// `http://127.0.0.1:{port}/api/v1`.
    pub api: String,
    client: reqwest::Client,
    _db_dir: tempfile::TempDir,
}

/// Starts a collector on `isolation`'s stream.
pub async fn spawn_collector(isolation: &Isolation) -> TestCollector {
    use telemetry_collector::{Application as Collector, Settings as CollectorSettings};
    let db_dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", db_dir.path().join("telemetry.db").display());
    let mut settings = CollectorSettings::new(
        &isolation.nats_url,
        &isolation.prefix,
        &isolation.stream,
        &database_url,
    );
    settings.stream_max_bytes = Isolation::STREAM_MAX_BYTES;
    let collector = Collector::build(settings)
        .await
        .expect("start the collector")
        .spawn();
    TestCollector {
        api: format!("http://127.0.0.1:{}/api/v1", collector.port),
        collector,
        client: reqwest::Client::new(),
        _db_dir: db_dir,
    }
}

impl TestCollector {
    /// `/api/v1/runs/{run_id}` once `done` holds for it: the collector catches up
    /// within a few seconds. Fails the test after 20 s.
    pub async fn run_detail(&self, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let response = self
                .client
                .get(format!("{}/runs/{run_id}", self.api))
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                let detail: Value = response.json().await.unwrap();
                if done(&detail) {
                    return detail;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "collector did not show run {run_id} complete in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.collector.stop().await;
    }
}
