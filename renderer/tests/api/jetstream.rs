//! Issue 14, item 2: `/readyz` reports whether JetStream takes the SDK's events, not
//! only whether the connection is up. On a three-node cluster with one node running,
//! the connection is up but JetStream has no quorum and accepts nothing; the renderer
//! still renders and stays ready (telemetry queues by design), and says so.

use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::cluster::NatsCluster;
use test_support::Isolation;

use crate::helpers::{request, spawn_app, TestApp};

/// `/readyz` until `done` holds for its body (bounded by `within`), checking every
/// answer is 200 and ready: the broker is never a readiness condition.
async fn readyz_until(
    app: &TestApp,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let response = app.get("/readyz").await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["ready"], true, "{body}");
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "not {what} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn jetstream(body: &Value) -> &str {
    body["telemetry"]["jetstream"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_jetstream_is_unavailable_without_quorum_and_ok_once_it_is_back() {
    let mut cluster = NatsCluster::unstarted();
    cluster.restart(0);
    let isolation = Isolation::on(cluster.urls());
    let app = spawn_app(Some(&isolation), |settings| {
        let telemetry = settings.telemetry.as_mut().unwrap();
        telemetry.stream_replicas = 3;
        telemetry.ack_timeout = Duration::from_millis(500);
        telemetry.stats_interval = Duration::from_millis(500);
    })
    .await;

    // Renders go on without JetStream.
    let response = app
        .render(&request(&["a", "b"]).body, "req-no-quorum")
        .await;
    assert_eq!(response.status(), 200);
    let body = readyz_until(&app, Duration::from_secs(20), "unavailable", |body| {
        jetstream(body).starts_with("unavailable: ")
    })
    .await;
    assert_eq!(body["telemetry"]["connected"], true, "{body}");
    let state = jetstream(&body);
    assert!(
        state.contains(" (for ") && state.ends_with("s)"),
        "reason and duration: {body}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("\ntelemetry_connected 1\n"), "{metrics}");
    assert!(
        metrics.contains("\ntelemetry_jetstream_up 0\n"),
        "{metrics}"
    );

    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_for_jetstream(Duration::from_secs(60)).await;
    let body = readyz_until(&app, Duration::from_secs(60), "ok", |body| {
        jetstream(body) == "ok"
    })
    .await;
    assert_eq!(body["telemetry"]["connected"], true, "{body}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("\ntelemetry_jetstream_up 1\n"),
        "{metrics}"
    );
    let report = app.stop().await;
    assert_eq!((report.left, report.dropped), (0, 0), "{report:?}");
    assert!(
        report.published >= 1,
        "the held events went out: {report:?}"
    );
}
