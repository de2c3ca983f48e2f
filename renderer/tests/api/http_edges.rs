//! The renderer's HTTP edge against hostile clients on raw TCP (issue 11, item 2): a
//! real renderer with small `HTTP_*` bounds, and the scenarios of
//! `test_support::http_edges`, which the collector's tests run too.

use std::net::SocketAddr;
use std::time::Duration;

use service_kit::http_server::HttpLimits;
use test_support::http_edges as edges;

use crate::helpers::{signed_query, spawn_app, TestApp, SECRET, SHOP};

const HEALTHZ: &str = "/healthz";

async fn renderer(limits: HttpLimits) -> (TestApp, SocketAddr) {
    let app = spawn_app(None, |settings| settings.http = limits).await;
    let addr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the app's address");
    (app, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_headers_are_closed_within_the_header_timeout() {
    let header_timeout = Duration::from_millis(500);
    let (app, addr) = renderer(HttpLimits {
        header_timeout,
        ..HttpLimits::default()
    })
    .await;
    edges::incomplete_headers_are_closed(addr, header_timeout, HEALTHZ).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_render_body_gets_408_at_the_body_timeout() {
    let body_timeout = Duration::from_millis(1000);
    let (app, addr) = renderer(HttpLimits {
        body_timeout,
        ..HttpLimits::default()
    })
    .await;
    // Correctly signed, so the renderer goes on to read the body.
    let head = format!(
        "POST /app-proxy/see-it-now/render?{} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        signed_query(SHOP, SECRET)
    );
    edges::trickled_body_gets_408(addr, body_timeout, &head, HEALTHZ).await;
    // Counted as what it was, not as a body over the size limit.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"renderer_requests_total{outcome="body_timeout"} 1"#)
            && metrics.contains(r#"renderer_requests_total{outcome="too_large"} 0"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    // Idle longer than the header timeout: waiting for a next request is not reading
    // headers.
    let idle_timeout = Duration::from_millis(1500);
    let (app, addr) = renderer(HttpLimits {
        header_timeout: Duration::from_millis(500),
        idle_timeout,
        ..HttpLimits::default()
    })
    .await;
    edges::idle_keep_alive_is_closed(addr, idle_timeout, HEALTHZ).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_bound_wait_for_a_slot() {
    let (app, addr) = renderer(HttpLimits {
        max_connections: 2,
        ..HttpLimits::default()
    })
    .await;
    edges::third_connection_waits_for_a_slot(addr, HEALTHZ).await;
    app.stop().await;
}
