//! Request ids: every answer carries an `x-request-id`, the client's when it is sane
//! (else a new UUIDv7), and a render's run is recorded under that same id, so the
//! renderer's log lines and the collector's rows name the same request.

use serde_json::Value;
use test_support::Isolation;

use crate::helpers::{request, spawn_app, spawn_collector};

fn is_new(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|id| id.get_version_num() == 7)
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app(None, |_| {}).await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/images/renders/none.png",
    ] {
        let response = app.get(path).await;
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(is_new(id), "{path}: {id}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_sane_client_id_names_the_run_in_the_collector_and_an_insane_one_is_replaced() {
    let isolation = Isolation::new();
    let collector = spawn_collector(&isolation).await;
    let app = spawn_app(Some(&isolation), |_| {}).await;
    let req = request(&["only"]);
    let too_long = "r".repeat(service_kit::request_id::MAX_BYTES + 1);
    for (sent, sane) in [
        ("req-sane-7", true),
        (too_long.as_str(), false),
        ("two words", false),
    ] {
        let response = app.render(&req.body, sent).await;
        assert_eq!(response.status(), 200, "{sent}");
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        if sane {
            assert_eq!(id, sent, "a sane id is echoed");
        } else {
            assert!(is_new(&id), "{sent:?} was replaced by {id:?}");
        }
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["requestId"], id.as_str(), "{answer}");
        let run_id = answer["runId"].as_str().unwrap();
        let detail = collector
            .run_detail(run_id, |detail| {
                detail["run"]["status"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("complete"))
            })
            .await;
        assert_eq!(detail["run"]["request_id"], id.as_str(), "{detail}");
    }
    app.stop().await;
    collector.stop().await;
}
