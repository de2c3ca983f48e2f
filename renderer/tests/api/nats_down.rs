use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use telemetry_proto::v1::envelope::Body;
use test_support::{Isolation, NatsServer};

use crate::helpers::{read_envelopes, records, request, spawn_app};

#[tokio::test]
async fn renders_succeed_while_nats_is_down_and_events_arrive_once_it_is_up() {
    let mut server = NatsServer::unstarted();
    let isolation = Isolation::on(server.url());
    let app = spawn_app(Some(&isolation), |_| {}).await;

    let mut run_ids = BTreeSet::new();
    for i in 0..3 {
        let response = app
            .render(
                &request(&["a", "b", "c", "d"]).body,
                &format!("req-down-{i}"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "complete", "{answer}");
        run_ids.insert(answer["runId"].as_str().unwrap().to_owned());
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("telemetry_connected 0"), "{metrics}");
    assert!(metrics.contains("telemetry_queue_depth 33"), "{metrics}");
    assert!(metrics.contains("telemetry_dropped_total 0"), "{metrics}");
    assert!(metrics.contains("telemetry_jetstream_up 0"), "{metrics}");
    let ready = app.get("/readyz").await;
    assert_eq!(
        ready.status(),
        200,
        "the broker is not a readiness condition"
    );
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["telemetry"]["jetstream"], "not connected", "{ready}");

    server.restart();
    // The SDK drains its queue once it is connected and the stream exists; if it does
    // not, say what it and the broker reported rather than only "stream not found".
    let started = std::time::Instant::now();
    loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.contains("telemetry_queue_depth 0") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the SDK still holds events 30 s after NATS came back:\n{metrics}\nnats-server log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(
        ready["telemetry"]["jetstream"], "ok",
        "the last publish was acknowledged: {ready}"
    );
    let envelopes = read_envelopes(
        &server.url(),
        &isolation.stream,
        33,
        Duration::from_secs(30),
    )
    .await;
    let records = records(envelopes);
    assert_eq!(records.len(), 33, "{records:#?}");
    let completed: BTreeSet<_> = records
        .iter()
        .filter_map(|e| match &e.body {
            Some(Body::RunCompleted(run)) => Some(run.run_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(completed, run_ids);
    let report = app.stop().await;
    assert_eq!(report.left, 0, "{report:?}");
    assert_eq!(report.dropped, 0, "{report:?}");
}
