//! Helpers of the collector's integration tests: a fresh database per backend, a
//! collector spawned on an isolated stream, raw publishing, envelope builders, a tiny
//! HTTP GET, and a TCP proxy that can be cut to make Postgres "go away".
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::Value;
use telemetry_collector::store::{self, Store, StoreOptions};
use telemetry_collector::{Application, RunningCollector, Settings};
use telemetry_proto::v1::{self, envelope::Body};
use telemetry_proto::{BodyKind, Subjects};
use test_support::{Isolation, PgDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database; removed when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pub pg: Option<PgDatabase>,
    pub dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("telemetry.db").display());
                Self {
                    url,
                    backend,
                    pg: None,
                    dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let pg = PgDatabase::create().await;
                Self {
                    url: pg.url.clone(),
                    backend,
                    pg: Some(pg),
                    dir: None,
                }
            }
        }
    }

    /// A store of its own on the database (migrated), for reading what was written.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = store::connect(&self.url, &StoreOptions::default())
            .await
            .expect("open the test database");
        store.migrate().await.expect("migrate");
        store
    }
}

/// Settings for a collector on `iso`'s stream writing to `db_url`, with quick retries.
pub fn settings(iso: &Isolation, db_url: &str) -> Settings {
    let mut settings = Settings::new(&iso.nats_url, &iso.prefix, &iso.stream, db_url);
    settings.stream_max_bytes = Isolation::STREAM_MAX_BYTES;
    settings.min_backoff = Duration::from_millis(50);
    settings.max_backoff = Duration::from_millis(500);
    settings.batch_linger = Duration::from_millis(20);
    settings
}

/// Builds and spawns a collector.
pub async fn spawn(settings: Settings) -> RunningCollector {
    Application::build(settings)
        .await
        .expect("collector starts")
        .spawn()
}

/// Polls `check` every 50 ms until it returns true; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the store holds `count` envelopes.
pub async fn wait_for_events(store: &Arc<dyn Store>, count: i64) {
    wait_until(
        Duration::from_secs(30),
        &format!("{count} events stored"),
        || async { store.event_count().await.unwrap_or(-1) >= count },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.event_count().await.unwrap(),
        count,
        "no more than expected"
    );
}

/// A JetStream context on the isolation's server, with the stream created.
pub async fn jetstream(iso: &Isolation) -> async_nats::jetstream::Context {
    let client = async_nats::connect(iso.nats_url.as_str())
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let spec = telemetry_proto::StreamSpec::new(iso.stream.clone(), subjects(iso))
        .with_max_bytes(Isolation::STREAM_MAX_BYTES)
        .unwrap();
    test_support::create_stream(&js, spec.config()).await;
    js
}

pub fn subjects(iso: &Isolation) -> Subjects {
    Subjects::new(&iso.prefix).expect("prefix")
}

/// Publishes raw bytes with no `Nats-Msg-Id`, so the broker keeps duplicates.
pub async fn publish_raw(js: &async_nats::jetstream::Context, subject: &str, bytes: Vec<u8>) {
    js.publish(subject.to_owned(), bytes.into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
}

/// Publishes envelopes on their kind's subject, raw.
pub async fn publish_all(
    js: &async_nats::jetstream::Context,
    iso: &Isolation,
    envelopes: &[v1::Envelope],
) {
    let subjects = subjects(iso);
    for envelope in envelopes {
        let kind = BodyKind::of(envelope.body.as_ref().expect("body"));
        publish_raw(js, subjects.for_kind(kind), envelope.encode_to_vec()).await;
    }
}

/// The envelopes of one realistic run, in the order a renderer emits them: request
/// event, run start, two variant starts, a success and a timeout, completion.
pub fn run_envelopes(producer: &str, first_seq: u64, run: usize) -> Vec<v1::Envelope> {
    let run_id = uuid::Uuid::now_v7().to_string();
    let request_id = format!("req-{run}");
    let shop = format!("shop-{}.myshopify.com", run % 3);
    let mut seq = first_seq;
    let mut envelope = |body: Body| {
        seq += 1;
        v1::Envelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: 1_700_000_000_000 + (run as i64) * 1000 + seq as i64,
            shop_id: shop.clone(),
            request_id: request_id.clone(),
            producer: producer.to_owned(),
            producer_seq: seq,
            body: Some(body),
        }
    };
    let image = |hash: &str| v1::ImageRef {
        hash: hash.to_owned(),
        meta: Some(v1::ImageMeta {
            width: 1024,
            height: 768,
            format: "png".into(),
            bytes: 123_456,
        }),
    };
    vec![
        envelope(Body::Event(v1::Event {
            source: v1::EventSource::AppProxy as i32,
            r#type: v1::EventType::SfRenderRequested as i32,
            payload_json: format!(r#"{{"productId":"p{run}"}}"#),
            run_id: String::new(),
        })),
        envelope(Body::RunStarted(v1::RunStarted {
            run_id: run_id.clone(),
            product_asset_id: format!("asset-{run}"),
            room_session_id: format!("room-{run}"),
            prompt_pack_version: "v3".into(),
            model: "gemini-2.5-flash-image".into(),
            product_image: Some(image("aa")),
            room_image: Some(image("bb")),
            resolved_facts_hash: "cc".into(),
            resolved_facts_json: r#"{"scale":"1:1"}"#.into(),
            prompt_pack_hash: "dd".into(),
            prompt_pack_json: r#"{"prompts":["a","b"]}"#.into(),
            variant_count: 2,
        })),
        envelope(Body::VariantStarted(v1::VariantStarted {
            run_id: run_id.clone(),
            variant_id: "v1".into(),
        })),
        envelope(Body::VariantStarted(v1::VariantStarted {
            run_id: run_id.clone(),
            variant_id: "v2".into(),
        })),
        envelope(Body::VariantResult(v1::VariantResult {
            run_id: run_id.clone(),
            variant_id: "v1".into(),
            final_prompt_hash: "ee".into(),
            status: v1::VariantStatus::Success as i32,
            latency_ms: 1234,
            output_image_key: format!("{run_id}/v1.png"),
            output_image_hash: "ff".into(),
            error_code: 0,
            error_message: String::new(),
        })),
        envelope(Body::VariantResult(v1::VariantResult {
            run_id: run_id.clone(),
            variant_id: "v2".into(),
            final_prompt_hash: "ee2".into(),
            status: v1::VariantStatus::Timeout as i32,
            latency_ms: 30_000,
            output_image_key: String::new(),
            output_image_hash: String::new(),
            error_code: v1::ErrorCode::Timeout as i32,
            error_message: "deadline exceeded".into(),
        })),
        envelope(Body::RunCompleted(v1::RunCompleted {
            run_id,
            status: v1::RunStatus::Partial as i32,
            total_duration_ms: 30_100,
            success_count: 1,
            fail_count: 0,
            timeout_count: 1,
        })),
    ]
}

/// The newest runs (up to 100), through the monitor's own list query.
pub async fn first_runs(store: &Arc<dyn Store>) -> Vec<store::RunRecord> {
    store
        .monitor_runs(&store::RunFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list runs")
}

/// Everything stored, with the fields that depend on delivery (stream sequence,
/// subject, receive time, dead-letter ids) left out, so two deliveries of the same
/// envelopes compare equal.
pub async fn snapshot(store: &Arc<dyn Store>) -> Value {
    let mut runs = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .monitor_runs(&store::RunFilter {
                before: cursor.clone(),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("list runs");
        for run in &page {
            let detail = store.run(&run.run_id).await.expect("run").expect("exists");
            let mut value = serde_json::to_value(&detail).unwrap();
            for event in value["events"].as_array_mut().unwrap() {
                let event = event.as_object_mut().unwrap();
                event.remove("stream_seq");
                event.remove("subject");
                event.remove("received_at");
            }
            runs.push(value);
        }
        if page.len() < 100 {
            break;
        }
        let last = page.last().unwrap();
        cursor = Some((last.started_at, last.run_id.clone()));
    }
    let mut producers = serde_json::to_value(store.producers().await.expect("producers")).unwrap();
    // When the collector last received from a producer is the receive time, like an
    // event's `received_at`: a redelivery moves it on purpose.
    for producer in producers.as_array_mut().unwrap() {
        producer.as_object_mut().unwrap().remove("last_received_at");
    }
    serde_json::json!({ "runs": runs, "producers": producers, "events": store.event_count().await.unwrap() })
}

/// `GET path` on `127.0.0.1:port`: status and body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the collector's HTTP port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A TCP proxy to `target` that can be cut (all connections dropped, new ones
/// refused) and restored: a database that goes away and comes back.
pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = {
            let cut = cut.clone();
            let conns = conns.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(task.abort_handle());
                }
            })
        };
        Self {
            addr,
            cut,
            conns,
            accept,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

/// The Postgres server's address from a database URL (`postgres://user@host:port/db`).
pub fn pg_addr(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    let host_port = rest.split('/').next().unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    host_port.parse().expect("host:port")
}

/// Defines one `#[tokio::test]` per backend for an `async fn scenario(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$scenario(super::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$scenario(super::common::Backend::Postgres).await;
            }
        }
    };
}

/// Every row of the four tables, each table in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllRows {
    pub runs: Vec<store::RunRecord>,
    pub variants: Vec<store::VariantRecord>,
    pub events: Vec<store::EventRecord>,
    pub dead_letters: Vec<store::DeadLetterRecord>,
    pub producers: Vec<store::ProducerRecord>,
}

/// Reads every row of `render_runs`, `variant_results`, `monitor_events`,
/// `dead_letters` and `producers` straight from the database (no API in between).
pub async fn all_rows(db: &TestDb) -> AllRows {
    const RUNS: &str = "SELECT * FROM render_runs ORDER BY run_id";
    const VARIANTS: &str = "SELECT * FROM variant_results ORDER BY run_id, variant_id";
    const EVENTS: &str = "SELECT * FROM monitor_events ORDER BY event_id";
    const DEAD: &str = "SELECT * FROM dead_letters ORDER BY stream, stream_seq";
    const PRODUCERS: &str = "SELECT * FROM producers ORDER BY producer";
    // The same queries on either pool type.
    macro_rules! all_rows {
        ($pool:expr) => {{
            let pool = $pool;
            let rows = AllRows {
                runs: sqlx::query_as(RUNS).fetch_all(&pool).await.unwrap(),
                variants: sqlx::query_as(VARIANTS).fetch_all(&pool).await.unwrap(),
                events: sqlx::query_as(EVENTS).fetch_all(&pool).await.unwrap(),
                dead_letters: sqlx::query_as(DEAD).fetch_all(&pool).await.unwrap(),
                producers: sqlx::query_as(PRODUCERS).fetch_all(&pool).await.unwrap(),
            };
            pool.close().await;
            rows
        }};
    }
    match db.backend {
        Backend::Sqlite => all_rows!(sqlx::SqlitePool::connect(&db.url)
            .await
            .expect("open SQLite")),
        Backend::Postgres => {
            all_rows!(sqlx::PgPool::connect(&db.url).await.expect("open Postgres"))
        }
    }
}

/// Envelopes parsed by the collector's own parse edge into one batch received at
/// `received_at`, each with the given stream sequence (1, 2, ... from `first_seq`).
pub fn batch_of(
    iso_prefix: &str,
    envelopes: &[v1::Envelope],
    first_seq: u64,
    received_at: i64,
) -> store::Batch {
    use telemetry_collector::domain::{self, Parsed};
    let subjects = Subjects::new(iso_prefix).expect("prefix");
    let mut batch = store::Batch {
        stream: "TELEMETRY".to_owned(),
        received_at,
        facts: Vec::new(),
        dead: Vec::new(),
    };
    for (i, envelope) in envelopes.iter().enumerate() {
        let kind = BodyKind::of(envelope.body.as_ref().expect("body"));
        match domain::parse(
            &subjects,
            subjects.for_kind(kind),
            first_seq + i as u64,
            envelope.encode_to_vec().into(),
        ) {
            Parsed::Fact(fact) => batch.facts.push(*fact),
            Parsed::Dead(dead) => batch.dead.push(dead),
        }
    }
    batch
}

/// Runs the collector binary with `args` and `envs`; its exit status and stdout.
pub fn run_binary(args: &[&str], envs: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_telemetry-collector"))
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the telemetry-collector binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "telemetry-collector {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, stdout)
}

/// An operator's Postgres session holding `LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE`
/// in an open transaction: statements on that table wait until [`unlock`].
pub async fn lock_table(url: &str, table: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    let mut operator = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut operator).await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut operator)
        .await
        .unwrap();
    operator
}

/// Ends a [`lock_table`] session.
pub async fn unlock(mut operator: sqlx::PgConnection) {
    use sqlx::Connection as _;
    sqlx::query("ROLLBACK")
        .execute(&mut operator)
        .await
        .unwrap();
    operator.close().await.unwrap();
}

/// Makes the database unavailable to a collector until [`Outage::restore`]: a cut TCP
/// proxy in front of Postgres, or another connection holding `BEGIN EXCLUSIVE` on the
/// SQLite file.
pub enum Outage {
    /// A cuttable TCP proxy between the collector and Postgres.
    Proxy(TcpProxy),
    /// Another connection that takes the SQLite file's lock on [`Outage::cut`].
    Lock(sqlx::SqliteConnection),
}

impl Outage {
    /// Sets one up for `db`; returns the URL the collector must use, and the outage.
    pub async fn prepare(db: &TestDb) -> (String, Self) {
        use sqlx::Connection as _;
        match db.backend {
            Backend::Postgres => {
                let proxy = TcpProxy::start(pg_addr(&db.url)).await;
                let url = db
                    .url
                    .replace(&pg_addr(&db.url).to_string(), &proxy.addr.to_string());
                assert_ne!(url, db.url, "collector goes through the proxy");
                (url, Self::Proxy(proxy))
            }
            Backend::Sqlite => {
                let locker = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                (db.url.clone(), Self::Lock(locker))
            }
        }
    }

    /// The database goes away.
    pub async fn cut(&mut self) {
        match self {
            Self::Proxy(proxy) => proxy.cut(),
            Self::Lock(locker) => {
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut *locker)
                    .await
                    .unwrap();
            }
        }
    }

    /// It comes back.
    pub async fn restore(&mut self) {
        match self {
            Self::Proxy(proxy) => proxy.restore(),
            Self::Lock(locker) => {
                sqlx::query("ROLLBACK").execute(&mut *locker).await.unwrap();
            }
        }
    }
}

/// The stream sequence up to which the collectors' consumer has acked everything.
pub async fn ack_floor(js: &async_nats::jetstream::Context, iso: &Isolation) -> u64 {
    js.get_stream(&iso.stream)
        .await
        .unwrap()
        .consumer_info(telemetry_collector::config::DEFAULT_CONSUMER)
        .await
        .unwrap()
        .ack_floor
        .stream_sequence
}
