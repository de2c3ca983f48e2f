//! Helpers of the monitor tests: runs described in a few fields become real envelopes,
//! go through the real parse edge and the store's batch write (no broker needed for
//! reads), and requests go through the real router with `oneshot`.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use prost::Message as _;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::domain::{self, Parsed};
use telemetry_collector::http::{router, AppState};
use telemetry_collector::metrics::Metrics;
use telemetry_collector::monitor::Monitor;
use telemetry_collector::store::{Batch, Store};
use telemetry_proto::v1::{self, envelope::Body as EnvBody};
use telemetry_proto::{BodyKind, Subjects};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// A hostile string: markup, both quotes, a `javascript:` URL.
pub const HOSTILE: &str = r#"<script>alert("x")</script>'"><img src=x onerror=alert(1)><a href="javascript:alert(2)">j</a>javascript:alert(3)"#;

/// One variant of a seeded run.
#[derive(Debug, Clone)]
pub struct VariantSpec {
    pub id: String,
    /// `success`, `failed`, `timeout`, or `running` (no result).
    pub status: &'static str,
    pub latency_ms: u64,
    pub error_message: String,
    pub image_key: String,
}

/// A run to seed.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: String,
    pub shop: String,
    pub request_id: String,
    pub model: String,
    pub pack: String,
    pub started_at: i64,
    pub variants: Vec<VariantSpec>,
    /// Send a RunCompleted (counts from the variants).
    pub completed: bool,
    /// Payload of the request's SF_RENDER_REQUESTED event.
    pub payload: String,
}

impl RunSpec {
    pub fn new(n: usize, started_at: i64) -> Self {
        let statuses = ["success", "success", "failed", "timeout"];
        Self {
            run_id: uuid::Uuid::now_v7().to_string(),
            shop: format!("shop-{}.myshopify.com", n % 3),
            request_id: format!("req-{n}"),
            model: format!("model-{}", n % 2),
            pack: format!("pack-{}", n % 4),
            started_at,
            variants: (0..2)
                .map(|v| VariantSpec {
                    id: format!("v{v}"),
                    status: statuses[(n + v) % 4],
                    latency_ms: 100 + (n as u64 * 37 + v as u64 * 11) % 900,
                    error_message: String::new(),
                    image_key: format!("runs/{n}/v{v}.png"),
                })
                .collect(),
            completed: true,
            payload: format!(r#"{{"productId":"p{n}"}}"#),
        }
    }

    pub fn run_status(&self) -> &'static str {
        let ok = self
            .variants
            .iter()
            .filter(|v| v.status == "success")
            .count();
        if !self.completed {
            "running"
        } else if ok == self.variants.len() {
            "complete"
        } else if ok > 0 {
            "partial"
        } else {
            "failed"
        }
    }

    /// When the result of `variant` is dated (its `occurred_at` in [`Self::envelopes`]).
    pub fn result_at(&self, variant: &VariantSpec) -> i64 {
        self.started_at + 10 + variant.latency_ms as i64
    }

    /// The envelopes a renderer would send for this run.
    pub fn envelopes(&self) -> Vec<v1::Envelope> {
        let mut seq = 0u64;
        let mut at = self.started_at;
        let mut envelope = |body: EnvBody, offset: i64| {
            seq += 1;
            at = self.started_at + offset;
            v1::Envelope {
                event_id: uuid::Uuid::now_v7().to_string(),
                occurred_at: at,
                shop_id: self.shop.clone(),
                request_id: self.request_id.clone(),
                producer: "producer-test".to_owned(),
                producer_seq: seq,
                body: Some(body),
            }
        };
        let mut out = vec![
            envelope(
                EnvBody::Event(v1::Event {
                    source: v1::EventSource::AppProxy as i32,
                    r#type: v1::EventType::SfRenderRequested as i32,
                    payload_json: self.payload.clone(),
                    run_id: String::new(),
                }),
                0,
            ),
            envelope(
                EnvBody::RunStarted(v1::RunStarted {
                    run_id: self.run_id.clone(),
                    product_asset_id: "asset-1".into(),
                    room_session_id: "room-1".into(),
                    prompt_pack_version: self.pack.clone(),
                    model: self.model.clone(),
                    product_image: None,
                    room_image: None,
                    resolved_facts_hash: "cc".into(),
                    resolved_facts_json: format!(r#"{{"note":{}}}"#, serde_json::json!(self.shop)),
                    prompt_pack_hash: "dd".into(),
                    prompt_pack_json: r#"{"prompts":["a"]}"#.into(),
                    variant_count: self.variants.len() as u32,
                }),
                0,
            ),
        ];
        let mut total = 0;
        for (i, v) in self.variants.iter().enumerate() {
            out.push(envelope(
                EnvBody::VariantStarted(v1::VariantStarted {
                    run_id: self.run_id.clone(),
                    variant_id: v.id.clone(),
                }),
                1 + i as i64,
            ));
            let status = match v.status {
                "success" => v1::VariantStatus::Success,
                "failed" => v1::VariantStatus::Failed,
                "timeout" => v1::VariantStatus::Timeout,
                _ => continue,
            };
            total = total.max(v.latency_ms);
            out.push(envelope(
                EnvBody::VariantResult(v1::VariantResult {
                    run_id: self.run_id.clone(),
                    variant_id: v.id.clone(),
                    final_prompt_hash: "ee".into(),
                    status: status as i32,
                    latency_ms: v.latency_ms,
                    output_image_key: v.image_key.clone(),
                    output_image_hash: "ff".into(),
                    // As the renderer sends them.
                    error_code: match v.status {
                        "success" => 0,
                        "timeout" => v1::ErrorCode::Timeout as i32,
                        _ => v1::ErrorCode::ProviderError as i32,
                    },
                    error_message: v.error_message.clone(),
                }),
                self.result_at(v) - self.started_at,
            ));
        }
        if self.completed {
            let count = |s: &str| self.variants.iter().filter(|v| v.status == s).count() as u32;
            let status = match self.run_status() {
                "complete" => v1::RunStatus::Complete,
                "partial" => v1::RunStatus::Partial,
                _ => v1::RunStatus::Failed,
            };
            out.push(envelope(
                EnvBody::RunCompleted(v1::RunCompleted {
                    run_id: self.run_id.clone(),
                    status: status as i32,
                    total_duration_ms: total + 20,
                    success_count: count("success"),
                    fail_count: count("failed"),
                    timeout_count: count("timeout"),
                }),
                20 + total as i64,
            ));
        }
        out
    }
}

/// A producer's final stats envelope.
pub fn producer_stats(producer: &str, emitted: u64, published: u64, dropped: u64) -> v1::Envelope {
    v1::Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: 1_700_000_000_000,
        shop_id: String::new(),
        request_id: String::new(),
        producer: producer.to_owned(),
        producer_seq: emitted + 1,
        body: Some(EnvBody::ProducerStats(v1::ProducerStats {
            emitted,
            published,
            dropped,
            dropped_by_reason: [("queue_full".to_owned(), dropped)].into_iter().collect(),
            publish_failures: 0,
            queue_depth: emitted - published - dropped,
            started_at: 1_699_999_000_000,
            r#final: true,
            service: "renderer".into(),
        })),
    }
}

/// Seeds one of each thing the monitor shows: a run (two variants, with its request's
/// event), a producer whose ledger does not add up (`producer-lossy`: 10 emitted, 7
/// published, 3 dropped) and a dead letter (`\x00\x01not protobuf`). Returns the run
/// and the envelopes sent.
pub async fn seed_one_of_each(store: &Arc<dyn Store>) -> (RunSpec, Vec<v1::Envelope>) {
    let run = RunSpec::new(1, 1_700_000_000_000);
    let mut envelopes = run.envelopes();
    envelopes.push(producer_stats("producer-lossy", 10, 7, 3));
    seed(store, &envelopes, &[b"\x00\x01not protobuf"]).await;
    (run, envelopes)
}

/// Parses envelopes (and raw dead bytes) through the real parse edge and writes them in
/// one batch.
pub async fn seed(store: &Arc<dyn Store>, envelopes: &[v1::Envelope], dead: &[&[u8]]) {
    let subjects = Subjects::new("telemetry").unwrap();
    let mut batch = Batch {
        stream: "TELEMETRY".into(),
        // Now, as ingest does: an envelope dated more than a day past the receive time
        // is a dead letter.
        received_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        ..Default::default()
    };
    let mut seq = store.event_count().await.unwrap() as u64 * 10 + 1_000_000;
    let mut push = |subject: &str, raw: Vec<u8>| {
        seq += 1;
        match domain::parse(&subjects, subject, seq, Bytes::from(raw)) {
            Parsed::Fact(fact) => batch.facts.push(*fact),
            Parsed::Dead(letter) => batch.dead.push(letter),
        }
    };
    for envelope in envelopes {
        let kind = BodyKind::of(envelope.body.as_ref().unwrap());
        push(subjects.for_kind(kind), envelope.encode_to_vec());
    }
    for raw in dead {
        push(subjects.for_kind(BodyKind::Event), raw.to_vec());
    }
    store.write(&batch).await.expect("write the seed batch");
}

/// The collector's router over `store`, with monitor settings and a shutdown token.
pub fn app(
    store: Arc<dyn Store>,
    monitor: MonitorSettings,
    shutdown: CancellationToken,
) -> axum::Router {
    router(AppState {
        store,
        metrics: Arc::new(Metrics::default()),
        nats: None,
        max_body_bytes: 64 * 1024,
        monitor: Monitor::new(&monitor, shutdown),
    })
}

/// A response's status, headers and body text.
pub struct Answer {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }
}

pub async fn answer(response: Response<Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .expect("read the body");
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET path` through the router, with extra headers.
pub async fn get(app: &axum::Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(
        app.clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await
}

/// `method path` through the router, with extra headers and a body.
pub async fn send(
    app: &axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(
        app.clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap(),
    )
    .await
}

/// The response to `GET path`, its body not read: a live (SSE) stream stays open, and
/// holds its slot, as long as the response is kept.
pub async fn open(app: &axum::Router, path: &str) -> Response<Body> {
    app.clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// `POST path` with a form body.
pub async fn post_form(app: &axum::Router, path: &str, form: &str) -> Answer {
    let request = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    answer(app.clone().oneshot(request).await.unwrap()).await
}

/// `POST /monitor/logout` with a session cookie (`monitor_session=...`).
pub async fn logout(app: &axum::Router, cookie: &str) -> Answer {
    let request = Request::post("/monitor/logout")
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    answer(app.clone().oneshot(request).await.unwrap()).await
}

/// Query-string encoding of one value.
pub fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
