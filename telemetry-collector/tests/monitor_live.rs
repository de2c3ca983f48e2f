//! Live updates over a real listener: a new run reaches an open runs stream, a run's
//! stream follows it to the end and closes, and open streams end on shutdown so the
//! server's graceful shutdown finishes. On SQLite and Postgres.

mod common;
mod monitor_support;

use std::time::Duration;

use common::{Backend, TestDb};
use monitor_support::*;
use telemetry_collector::config::MonitorSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// An open HTTP response read incrementally.
struct Stream {
    socket: TcpStream,
    seen: String,
}

impl Stream {
    async fn open(port: u16, path: &str) -> Self {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        Self {
            socket,
            seen: String::new(),
        }
    }

    /// Reads until `needle` has been seen after `from` (byte offset); returns where.
    async fn wait_for(&mut self, needle: &str, from: usize, what: &str) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(at) = self.seen[from.min(self.seen.len())..].find(needle) {
                return from + at + needle.len();
            }
            let mut buf = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline, self.socket.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; got {}", self.seen))
                .unwrap();
            assert!(read > 0, "stream ended before {what}; got {}", self.seen);
            self.seen.push_str(&String::from_utf8_lossy(&buf[..read]));
        }
    }

    /// Reads until the server closes the response (chunked end or EOF).
    async fn wait_for_end(&mut self, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.seen.ends_with("\r\n0\r\n\r\n") {
                return;
            }
            let mut buf = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline, self.socket.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{what}: the stream did not end"))
                .unwrap_or(0);
            if read == 0 {
                return;
            }
            self.seen.push_str(&String::from_utf8_lossy(&buf[..read]));
        }
    }
}

async fn live_streams_follow_the_store_and_end_on_shutdown(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let first = RunSpec::new(1, 1_700_000_000_000);
    seed(&store, &first.envelopes(), &[]).await;
    let shutdown = CancellationToken::new();
    let app = app(store.clone(), MonitorSettings::default(), shutdown.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    });

    // A new run appears on an open runs stream.
    let mut runs = Stream::open(port, "/monitor/live/runs").await;
    let at = runs
        .wait_for("event: fragment", 0, "the first fragment")
        .await;
    runs.wait_for(&first.run_id, at, "the seeded run").await;
    let second = RunSpec::new(2, 1_700_000_001_000);
    seed(&store, &second.envelopes(), &[]).await;
    let at = runs
        .wait_for("event: fragment", at, "a second fragment")
        .await;
    runs.wait_for(&second.run_id, at, "the new run").await;
    // A live page carries its own link to older runs: from the last row it shows, not
    // from the last row the page had when it was loaded (runs pushed off the page by
    // new ones stay reachable).
    let mut paged = Stream::open(port, "/monitor/live/runs?limit=1").await;
    let at = paged
        .wait_for("event: fragment", 0, "the paged fragment")
        .await;
    let cursor = format!(
        "cursor={}",
        enc(&format!("{}:{}", second.started_at, second.run_id))
    );
    paged
        .wait_for(&cursor, at, "the older runs link from the newest run")
        .await;
    assert!(!paged.seen.contains(&first.run_id), "{}", paged.seen);
    drop(paged);
    // A filtered stream only sends runs that match.
    let mut filtered =
        Stream::open(port, &format!("/monitor/live/runs?q={}", second.request_id)).await;
    let at = filtered
        .wait_for("event: fragment", 0, "the filtered fragment")
        .await;
    filtered
        .wait_for(&second.run_id, at, "the matching run")
        .await;
    assert!(!filtered.seen.contains(&first.run_id));

    // The events page follows new events too (here: one request's).
    let (status, page) = common::http_get(port, "/monitor/events?shop=x").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"data-live="/monitor/live/events?shop=x" data-live-target="events-body""#),
        "{page}"
    );
    let later = RunSpec::new(4, 1_700_000_003_000);
    let mut events = Stream::open(
        port,
        &format!("/monitor/live/events?request_id={}", later.request_id),
    )
    .await;
    let at = events
        .wait_for("event: fragment", 0, "the first events fragment")
        .await;
    events
        .wait_for("No events match", at, "no events yet")
        .await;
    seed(&store, &later.envelopes(), &[]).await;
    let at = events
        .wait_for("event: fragment", at, "a fragment with the new events")
        .await;
    events
        .wait_for(&later.run_id, at, "the new request's events")
        .await;
    assert!(!events.seen.contains(&first.run_id));

    // A run's stream follows it to the end, then closes. It started just now: one
    // that started long ago without completion would be stale, and ends at once.
    let finished = RunSpec::new(3, service_kit::now_ms());
    let mut running = finished.clone();
    running.completed = false;
    for v in &mut running.variants {
        v.status = "running";
    }
    seed(&store, &running.envelopes(), &[]).await;
    let mut run = Stream::open(port, &format!("/monitor/live/runs/{}", running.run_id)).await;
    let at = run.wait_for("event: fragment", 0, "the running run").await;
    run.wait_for("running", at, "running status").await;
    seed(&store, &finished.envelopes(), &[]).await;
    let at = run.wait_for("event: final", at, "the final view").await;
    let status = finished.run_status();
    run.wait_for(status, at, "the final status").await;
    // The metadata too: its status and completion time, not only the variants.
    run.wait_for(
        &format!("<dt>Status</dt><dd>{status}</dd>"),
        at,
        "the final status in the metadata",
    )
    .await;
    run.wait_for("<dt>Completed</dt>", at, "the completion time")
        .await;
    run.wait_for_end("the finished run's stream").await;

    // Open streams end on shutdown and the server stops.
    shutdown.cancel();
    runs.wait_for_end("the runs stream at shutdown").await;
    events.wait_for_end("the events stream at shutdown").await;
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("graceful shutdown finishes with live streams open")
        .unwrap()
        .unwrap();
}
on_both_backends!(live_streams_follow_the_store_and_end_on_shutdown);

async fn live_views_past_the_limit_are_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed(&store, &RunSpec::new(1, 1_700_000_000_000).envelopes(), &[]).await;
    let shutdown = CancellationToken::new();
    let settings = MonitorSettings {
        max_live_clients: 1,
        ..Default::default()
    };
    let app = app(store.clone(), settings, shutdown.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    let mut first = Stream::open(port, "/monitor/live/runs").await;
    first.wait_for("event: fragment", 0, "the first view").await;
    let (status, body) = common::http_get(port, "/monitor/live/runs").await;
    assert_eq!(status, 503, "{body}");
    // Closing the first view frees its slot.
    drop(first);
    common::wait_until(Duration::from_secs(10), "a free live slot", || async {
        let mut second = Stream::open(port, "/monitor/live/runs").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut buf = [0u8; 256];
        match tokio::time::timeout_at(deadline, second.socket.read(&mut buf)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            _ => false,
        }
    })
    .await;
    server.abort();
}
on_both_backends!(live_views_past_the_limit_are_refused);

/// A run whose renderer died never completes; once it is stale its live stream ends
/// (with the final view, saying so), so the page stops polling and frees its slot.
async fn a_stale_runs_live_stream_ends_and_frees_its_slot(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut stuck = RunSpec::new(1, service_kit::now_ms());
    stuck.completed = false;
    for v in &mut stuck.variants {
        v.status = "running";
    }
    seed(&store, &stuck.envelopes(), &[]).await;
    let shutdown = CancellationToken::new();
    let settings = MonitorSettings {
        max_live_clients: 1,
        stale_run_after: Duration::from_secs(2),
        ..Default::default()
    };
    let app = app(store.clone(), settings, shutdown.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    let mut run = Stream::open(port, &format!("/monitor/live/runs/{}", stuck.run_id)).await;
    let at = run.wait_for("event: fragment", 0, "the running run").await;
    run.wait_for("<dt>Status</dt><dd>running</dd>", at, "running status")
        .await;
    let at = run
        .wait_for("event: final", at, "the final view once stale")
        .await;
    run.wait_for("<dt>Status</dt><dd>stale</dd>", at, "stale status")
        .await;
    run.wait_for("No completion since", at, "since when").await;
    run.wait_for_end("the stale run's stream").await;
    // Its slot is free again: the only one there is.
    let mut next = Stream::open(port, "/monitor/live/runs").await;
    next.wait_for("event: fragment", 0, "a view in the freed slot")
        .await;
    server.abort();
}
on_both_backends!(a_stale_runs_live_stream_ends_and_frees_its_slot);
