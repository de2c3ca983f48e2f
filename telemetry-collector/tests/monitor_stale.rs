//! Stale runs (a renderer killed mid-run never sends the completion): the store's run
//! reads tell them apart from runs still in progress by a cutoff, and every view shows
//! them as `stale` (the runs list and its status filter, the run page, the JSON API,
//! the overview) without writing anything, so a late completion still wins. On SQLite
//! and Postgres.

mod common;
mod monitor_support;

use common::{Backend, TestDb};
use monitor_support::*;
use serde_json::Value;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::monitor::views::fmt_time;
use telemetry_collector::store::stale::DEFAULT_STALE_RUN_AFTER;
use telemetry_collector::store::{RunFilter, StaleCutoff};
use telemetry_proto::v1::envelope::Body as EnvBody;
use tokio_util::sync::CancellationToken;

fn now_ms() -> i64 {
    service_kit::now_ms()
}

/// The run ids of a `/api/v1/runs` answer, in order.
fn run_ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {page}"))
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The overview group of `key` in `groups`.
fn group<'a>(stats: &'a Value, groups: &str, key: &str) -> &'a Value {
    stats[groups]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {stats}"))
}

async fn stale_runs_are_derived_when_read_and_a_late_completion_wins(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = now_ms();
    let hour_ago = now - 3_600_000;
    // A renderer died an hour ago in this run: v0 finished (success), v1 never did.
    let mut dead = RunSpec::new(1, hour_ago);
    dead.completed = false;
    dead.variants[1].status = "running";
    // A run in progress now.
    let mut fresh = RunSpec::new(2, now - 1_000);
    fresh.completed = false;
    for v in &mut fresh.variants {
        v.status = "running";
    }
    // A run that finished an hour ago.
    let done = RunSpec::new(3, hour_ago + 1_000);
    let envelopes: Vec<_> = [&dead, &fresh, &done]
        .iter()
        .flat_map(|s| s.envelopes())
        .collect();
    seed(&store, &envelopes, &[]).await;
    let last_event_of_dead = dead
        .envelopes()
        .iter()
        .map(|e| e.occurred_at)
        .max()
        .unwrap();

    // The store: `stale` and `running` split the stored `running` runs at the cutoff.
    let cutoff = StaleCutoff::at(now_ms(), DEFAULT_STALE_RUN_AFTER);
    let listed = |status: &'static str, stale_before: Option<StaleCutoff>| {
        let store = store.clone();
        async move {
            store
                .monitor_runs(&RunFilter {
                    status: Some(status.to_owned()),
                    stale_before,
                    limit: 50,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.run_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("stale", Some(cutoff)).await, [dead.run_id.as_str()]);
    assert_eq!(
        listed("running", Some(cutoff)).await,
        [fresh.run_id.as_str()]
    );
    assert_eq!(
        listed(done.run_status(), Some(cutoff)).await,
        [done.run_id.as_str()]
    );
    // Without a cutoff the stored status is matched: both are `running` there.
    assert_eq!(
        listed("running", None).await,
        [fresh.run_id.as_str(), dead.run_id.as_str()]
    );
    assert!(listed("stale", None).await.is_empty());
    let stored = store.run(&dead.run_id).await.unwrap().unwrap();
    assert_eq!(stored.run.status, "running", "stale is never written");

    // The JSON API: `status` as shown, `stored_status` as stored.
    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );
    let api = |path: String| {
        let app = app.clone();
        async move {
            let answer = get(&app, &path, &[]).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            answer.json()
        }
    };
    let stale = api("/api/v1/runs?status=stale".into()).await;
    assert_eq!(run_ids(&stale), [dead.run_id.clone()]);
    assert_eq!(stale["runs"][0]["status"], "stale");
    assert_eq!(stale["runs"][0]["stored_status"], "running");
    let running = api("/api/v1/runs?status=running".into()).await;
    assert_eq!(run_ids(&running), [fresh.run_id.clone()]);
    assert_eq!(running["runs"][0]["status"], "running");
    assert_eq!(running["runs"][0]["stored_status"], "running");
    let all = api("/api/v1/runs".into()).await;
    let shown: Vec<(String, String)> = all["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (fresh.run_id.clone(), "running".to_owned()),
            (done.run_id.clone(), done.run_status().to_owned()),
            (dead.run_id.clone(), "stale".to_owned()),
        ]
    );
    let detail = api(format!("/api/v1/runs/{}", dead.run_id)).await;
    assert_eq!(detail["run"]["status"], "stale");
    assert_eq!(detail["run"]["stored_status"], "running");

    // The runs list: shown as stale, and its status filter offers and applies it.
    let list = get(&app, "/monitor?status=stale", &[]).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(&dead.run_id), "{}", list.body);
    assert!(!list.body.contains(&fresh.run_id) && !list.body.contains(&done.run_id));
    assert!(
        list.body
            .contains(r#"<span class="status st-stale">stale</span>"#),
        "{}",
        list.body
    );
    assert!(
        list.body.contains(r#"<option value="stale" selected>"#),
        "{}",
        list.body
    );
    let list = get(&app, "/monitor?status=running", &[]).await;
    assert!(list.body.contains(&fresh.run_id) && !list.body.contains(&dead.run_id));

    // The run page says since when nothing came, and does not listen for updates.
    let page = get(&app, &format!("/monitor/runs/{}", dead.run_id), &[]).await;
    assert_eq!(page.status, 200);
    let since = format!("No completion since {}", fmt_time(last_event_of_dead));
    assert!(page.body.contains(&since), "{since}: {}", page.body);
    assert!(!page.body.contains("data-live="), "{}", page.body);
    let page = get(&app, &format!("/monitor/runs/{}", fresh.run_id), &[]).await;
    assert!(page.body.contains("data-live="), "{}", page.body);
    assert!(!page.body.contains("No completion since"));

    // The overview: the dead run's unfinished variant counts as stale, the fresh run's
    // as other (still running).
    let stats = api(format!(
        "/api/v1/stats?from={}&to={}",
        hour_ago - 1_000,
        now + 1_000
    ))
    .await;
    // model-1: dead (v0 success, v1 stale) and done (timeout, success).
    let model_1 = group(&stats, "by_model", "model-1");
    assert_eq!(
        [
            &model_1["total"],
            &model_1["success"],
            &model_1["timeout"],
            &model_1["stale"],
            &model_1["other"]
        ],
        [4, 2, 1, 1, 0],
        "{model_1}"
    );
    let model_0 = group(&stats, "by_model", "model-0");
    assert_eq!(
        [&model_0["total"], &model_0["stale"], &model_0["other"]],
        [2, 0, 2],
        "{model_0}"
    );
    let overview = get(
        &app,
        &format!(
            "/monitor/overview?from={}&to={}",
            hour_ago - 1_000,
            now + 1_000
        ),
        &[],
    )
    .await;
    assert!(
        overview.body.contains("<th>Stale</th>"),
        "{}",
        overview.body
    );

    // A completion that arrives late wins: nothing was written, so nothing is undone.
    let mut late = dead.clone();
    late.variants[1].status = "failed";
    late.completed = true;
    let ends: Vec<_> = late
        .envelopes()
        .into_iter()
        .filter(|e| {
            matches!(
                e.body,
                Some(EnvBody::VariantResult(_)) | Some(EnvBody::RunCompleted(_))
            )
        })
        .collect();
    seed(&store, &ends, &[]).await;
    let stale = api("/api/v1/runs?status=stale".into()).await;
    assert!(run_ids(&stale).is_empty(), "{stale}");
    let detail = api(format!("/api/v1/runs/{}", dead.run_id)).await;
    assert_eq!(detail["run"]["status"], late.run_status());
    assert_eq!(detail["run"]["stored_status"], late.run_status());
    let page = get(&app, &format!("/monitor/runs/{}", dead.run_id), &[]).await;
    assert!(!page.body.contains("No completion since"));
}
on_both_backends!(stale_runs_are_derived_when_read_and_a_late_completion_wins);
