//! The collector's HTTP edge against hostile clients on raw TCP (issue 11, item 2): a
//! real collector (ingest on, SQLite) with small `HTTP_*` bounds, and the scenarios of
//! `test_support::http_edges`, which the renderer's tests run too.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{settings, spawn, Backend, TestDb};
use service_kit::http_server::HttpLimits;
use telemetry_collector::RunningCollector;
use test_support::http_edges as edges;
use test_support::Isolation;

/// A running collector with `limits`, and what it needs kept alive.
struct Collector {
    app: RunningCollector,
    _db: TestDb,
    _iso: Isolation,
}

impl Collector {
    async fn start(limits: HttpLimits) -> Self {
        let iso = Isolation::new();
        let db = TestDb::new(Backend::Sqlite).await;
        let mut settings = settings(&iso, &db.url);
        settings.http = limits;
        Self {
            app: spawn(settings).await,
            _db: db,
            _iso: iso,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.app.port))
    }
}

const HEALTHZ: &str = "/healthz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_headers_are_closed_within_the_header_timeout() {
    let header_timeout = Duration::from_millis(500);
    let collector = Collector::start(HttpLimits {
        header_timeout,
        ..HttpLimits::default()
    })
    .await;
    edges::incomplete_headers_are_closed(collector.addr(), header_timeout, HEALTHZ).await;
    collector.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_at_the_body_timeout() {
    let body_timeout = Duration::from_millis(1000);
    let collector = Collector::start(HttpLimits {
        body_timeout,
        ..HttpLimits::default()
    })
    .await;
    // The login form is the collector's one route that reads a body.
    let head = "POST /monitor/login HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/x-www-form-urlencoded\r\n\
                Content-Length: 1000\r\n\r\n";
    edges::trickled_body_gets_408(collector.addr(), body_timeout, head, HEALTHZ).await;
    collector.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    // Idle longer than the header timeout: waiting for a next request is not reading
    // headers.
    let idle_timeout = Duration::from_millis(1500);
    let collector = Collector::start(HttpLimits {
        header_timeout: Duration::from_millis(500),
        idle_timeout,
        ..HttpLimits::default()
    })
    .await;
    edges::idle_keep_alive_is_closed(collector.addr(), idle_timeout, HEALTHZ).await;
    collector.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_bound_wait_for_a_slot() {
    let collector = Collector::start(HttpLimits {
        max_connections: 2,
        ..HttpLimits::default()
    })
    .await;
    edges::third_connection_waits_for_a_slot(collector.addr(), HEALTHZ).await;
    collector.app.stop().await;
}

/// Stopping while a connection sits idle and another is half-way through its headers:
/// both are closed and the collector stops promptly (the header and idle timeouts
/// here are far longer than the wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_and_unfinished_connections() {
    use tokio::io::AsyncWriteExt as _;
    let collector = Collector::start(HttpLimits::default()).await;
    let addr = collector.addr();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(edges::get(&mut idle, HEALTHZ).await.0, 200);
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), collector.app.stop())
        .await
        .expect("the collector stops within 5 s");
    assert!(started.elapsed() < Duration::from_secs(5));
    let since = std::time::Instant::now();
    for stream in [&mut idle, &mut half] {
        edges::read_until_closed(stream, since, Duration::from_secs(2))
            .await
            .expect("closed by the shutdown");
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

/// `GET /healthz` on a new connection, with `request_id` as `x-request-id`: the
/// `x-request-id` of the answer.
async fn answered_request_id(addr: SocketAddr, request_id: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let header = request_id.map_or(String::new(), |id| format!("x-request-id: {id}\r\n"));
    let request =
        format!("GET {HEALTHZ} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .lines()
        .find_map(|line| line.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no x-request-id in {response}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_the_clients_only_when_sane() {
    let collector = Collector::start(HttpLimits::default()).await;
    let addr = collector.addr();
    let is_new = |id: &str| uuid::Uuid::parse_str(id).is_ok_and(|id| id.get_version_num() == 7);
    assert_eq!(
        answered_request_id(addr, Some("req-collector-1")).await,
        "req-collector-1"
    );
    let made = answered_request_id(addr, None).await;
    assert!(is_new(&made), "{made}");
    let too_long = "x".repeat(service_kit::request_id::MAX_BYTES + 1);
    for insane in [too_long.as_str(), "two words"] {
        let replaced = answered_request_id(addr, Some(insane)).await;
        assert!(is_new(&replaced), "{insane} gave {replaced}");
    }
    collector.app.stop().await;
}
