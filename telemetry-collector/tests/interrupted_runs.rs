//! A run its producer interrupted at shutdown (`RUN_STATUS_INTERRUPTED`, its unfinished
//! variants FAILED with `ERROR_CODE_INTERRUPTED`) is a terminal run in the monitor, on
//! SQLite and on Postgres: offered by the runs status filter, styled as a failure, not
//! live, and its interrupted variants count as failures in the overview.

mod common;
mod monitor_support;

use common::{Backend, TestDb};
use monitor_support::*;
use telemetry_collector::config::MonitorSettings;
use telemetry_proto::v1::{self, envelope::Body as EnvBody};
use tokio_util::sync::CancellationToken;

/// A run whose `v0` succeeded and whose `v1` was interrupted, completed as interrupted,
/// beside an ordinary failed run.
fn interrupted_run(started_at: i64) -> (RunSpec, Vec<v1::Envelope>) {
    let mut spec = RunSpec::new(0, started_at);
    spec.variants[0].status = "success";
    spec.variants[1].status = "failed";
    spec.variants[1].error_message = "the renderer shut down".into();
    spec.completed = false;
    let mut envelopes = spec.envelopes();
    for envelope in &mut envelopes {
        if let Some(EnvBody::VariantResult(result)) = &mut envelope.body {
            if result.variant_id == "v1" {
                result.error_code = v1::ErrorCode::Interrupted as i32;
                result.output_image_key.clear();
            }
        }
    }
    let mut completed = envelopes[0].clone();
    completed.event_id = uuid::Uuid::now_v7().to_string();
    completed.producer_seq = envelopes.len() as u64 + 1;
    completed.body = Some(EnvBody::RunCompleted(v1::RunCompleted {
        run_id: spec.run_id.clone(),
        status: v1::RunStatus::Interrupted as i32,
        total_duration_ms: 1500,
        success_count: 1,
        fail_count: 1,
        timeout_count: 0,
    }));
    envelopes.push(completed);
    (spec, envelopes)
}

async fn an_interrupted_run_is_terminal_in_the_monitor(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let started_at = 1_700_000_000_000;
    let (run, mut envelopes) = interrupted_run(started_at);
    let mut failed = RunSpec::new(1, started_at + 1000);
    failed.variants[0].status = "failed";
    failed.variants[1].status = "timeout";
    envelopes.extend(failed.envelopes());
    seed(&store, &envelopes, &[]).await;
    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );

    // The API filters by it, and the counts add up.
    let listed = get(&app, "/api/v1/runs?status=interrupted", &[])
        .await
        .json();
    let runs = listed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{listed}");
    assert_eq!(runs[0]["run_id"], run.run_id.as_str());
    assert_eq!(runs[0]["status"], "interrupted");
    assert_eq!(
        (
            &runs[0]["success_count"],
            &runs[0]["fail_count"],
            &runs[0]["timeout_count"]
        ),
        (&1.into(), &1.into(), &0.into()),
        "{listed}"
    );

    // The runs page offers it in the status filter and styles it as a failure.
    let page = get(&app, "/monitor?status=interrupted", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(r#"<option value="interrupted" selected>interrupted</option>"#),
        "the status filter does not offer interrupted: {}",
        page.body
    );
    assert!(page.body.contains(&run.run_id), "{}", page.body);
    assert!(
        page.body
            .contains(r#"<span class="status st-failed">interrupted</span>"#),
        "{}",
        page.body
    );
    assert!(!page.body.contains(&failed.run_id), "{}", page.body);

    // Its page is final, not live; the interrupted variant shows its error code.
    let detail = get(&app, &format!("/monitor/runs/{}", run.run_id), &[]).await;
    assert_eq!(detail.status, 200);
    assert!(
        !detail.body.contains("data-live="),
        "an interrupted run is not live: {}",
        detail.body
    );
    let json = get(&app, &format!("/api/v1/runs/{}", run.run_id), &[])
        .await
        .json();
    let v1 = json["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant_id"] == "v1")
        .expect("variant v1");
    assert_eq!(v1["status"], "failed", "{json}");
    assert_eq!(v1["error_code"], "interrupted", "{json}");

    // The overview counts the interrupted variant as a failure, nothing as running.
    let stats = get(
        &app,
        &format!("/api/v1/stats?from={started_at}&to={}", started_at + 60_000),
        &[],
    )
    .await
    .json();
    let by_model = stats["by_model"].as_array().unwrap();
    let interrupted_model = by_model
        .iter()
        .find(|g| g["key"] == run.model.as_str())
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(interrupted_model["total"], 2, "{stats}");
    assert_eq!(interrupted_model["success"], 1, "{stats}");
    assert_eq!(interrupted_model["failed"], 1, "{stats}");
    assert_eq!(interrupted_model["other"], 0, "{stats}");
}
on_both_backends!(an_interrupted_run_is_terminal_in_the_monitor);
