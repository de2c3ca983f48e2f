//! The overview answers "which model or prompt pack is worse" (issue 15, items 4 and
//! 5), on SQLite and on Postgres: latency percentiles over successes only, failures and
//! timeouts apart; a prompt pack × model matrix; a model filter on the page and the
//! API; and links from each model, prompt pack and cell to exactly its runs.

mod common;
mod monitor_support;

use std::collections::{BTreeMap, BTreeSet};

use common::{Backend, TestDb};
use monitor_support::*;
use serde_json::Value;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::store::rollups::coarse_latency;
use tokio_util::sync::CancellationToken;

const BASE: i64 = 1_700_000_000_000;

/// A run of `model` at `BASE + n` seconds whose variants end as `ends` says
/// (`(status, latency_ms)`).
fn run(n: usize, model: &str, pack: &str, ends: &[(&'static str, u64)]) -> RunSpec {
    let mut spec = RunSpec::new(n, BASE + n as i64 * 1000);
    spec.model = model.to_owned();
    spec.pack = pack.to_owned();
    spec.variants = ends
        .iter()
        .enumerate()
        .map(|(i, (status, latency_ms))| VariantSpec {
            id: format!("v{i}"),
            status,
            latency_ms: *latency_ms,
            error_message: if *status == "success" {
                String::new()
            } else {
                format!("provider returned HTTP 503: overloaded ({n})")
            },
            image_key: format!("runs/{n}/v{i}.png"),
        })
        .collect();
    spec
}

/// Nearest-rank percentile `p` over the latency buckets of `latencies` (what the
/// overview reads: the lower edge of the bucket), `None` when there are none.
fn percentile(latencies: &[u64], p: f64) -> Option<i64> {
    let mut buckets: Vec<i64> = latencies
        .iter()
        .map(|l| coarse_latency(*l as i64))
        .collect();
    buckets.sort();
    let rank = ((p / 100.0 * buckets.len() as f64).ceil() as usize).max(1);
    buckets.get(rank - 1).copied()
}

/// The latencies of the variants of `specs` that ended with `status`.
fn latencies(specs: &[&RunSpec], status: &str) -> Vec<u64> {
    specs
        .iter()
        .flat_map(|s| &s.variants)
        .filter(|v| v.status == status)
        .map(|v| v.latency_ms)
        .collect()
}

fn group<'a>(stats: &'a Value, list: &str, key: &str) -> &'a Value {
    stats[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} in {stats}"))
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("{key} in {list}: {stats}"))
}

fn app_of(store: &std::sync::Arc<dyn telemetry_collector::store::Store>) -> axum::Router {
    app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    )
}

/// What an on-call operator saw during a provider outage: the healthy model renders in
/// about 2 s, the failing one answers 503 in about 100 ms. Percentiles over every
/// result made the failing model look twenty times faster; over successes it is the
/// slower one, and its fast failures and the healthy model's timeouts are shown apart.
async fn failures_and_timeouts_do_not_make_a_model_look_fast(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut specs = Vec::new();
    for n in 0..20 {
        // Healthy: successes from 2.0 to 2.19 s; one timeout at the 30 s limit.
        let second = if n == 7 {
            ("timeout", 30_000)
        } else {
            ("success", 2_010 + n as u64 * 10)
        };
        specs.push(run(
            n,
            "model-healthy",
            "pack-1",
            &[("success", 2_000 + n as u64 * 10), second],
        ));
    }
    for n in 20..40 {
        // Failing: 503s in about 100 ms; the two runs that got through took 2.4 s.
        let ends: &[(&str, u64)] = if n < 22 {
            &[("success", 2_400), ("success", 2_450)]
        } else {
            &[
                ("failed", 95 + n as u64 % 10),
                ("failed", 100 + n as u64 % 7),
            ]
        };
        specs.push(run(n, "model-failing", "pack-1", ends));
    }
    let envelopes: Vec<_> = specs.iter().flat_map(|s| s.envelopes()).collect();
    seed(&store, &envelopes, &[]).await;
    let app = app_of(&store);
    let window = format!("from={BASE}&to={}", BASE + 3_600_000);
    let stats = get(&app, &format!("/api/v1/stats?{window}"), &[])
        .await
        .json();

    let healthy = group(&stats, "by_model", "model-healthy");
    let failing = group(&stats, "by_model", "model-failing");
    // The failing model is the slower one when it works at all.
    let (h50, f50) = (healthy["p50_ms"].as_i64(), failing["p50_ms"].as_i64());
    assert!(
        f50 > h50,
        "success p50: failing {f50:?} vs healthy {h50:?}: {stats}"
    );
    for (g, model) in [(healthy, "model-healthy"), (failing, "model-failing")] {
        let of: Vec<&RunSpec> = specs.iter().filter(|s| s.model == model).collect();
        for (field, status, p) in [
            ("p50_ms", "success", 50.0),
            ("p95_ms", "success", 95.0),
            ("p99_ms", "success", 99.0),
            ("failed_p50_ms", "failed", 50.0),
            ("failed_p95_ms", "failed", 95.0),
            ("timeout_p50_ms", "timeout", 50.0),
            ("timeout_p95_ms", "timeout", 95.0),
        ] {
            assert_eq!(
                g[field].as_i64(),
                percentile(&latencies(&of, status), p),
                "{model} {field}: {g}"
            );
        }
    }
    // The healthy model's timeout is apart: its success p99 is not 30 s.
    // (30 s is in the 27 s bucket.)
    assert_eq!(healthy["timeout_p50_ms"], 27_000);
    assert!(healthy["p99_ms"].as_i64().unwrap() < 3_000, "{healthy}");
    assert!(
        failing["failed_p95_ms"].as_i64().unwrap() < 200,
        "{failing}"
    );
    assert!(failing["timeout_p50_ms"].is_null(), "{failing}");
    // The prompt pack mixes both models; its success percentiles are successes too.
    let pack = group(&stats, "by_prompt_pack", "pack-1");
    let all: Vec<&RunSpec> = specs.iter().collect();
    assert_eq!(
        pack["p50_ms"].as_i64(),
        percentile(&latencies(&all, "success"), 50.0)
    );

    // The page shows the split: the failing model's row has its success p50 (2.4 s, in
    // the 2.2 s bucket),
    // then its failures' p50 (about 100 ms).
    let page = get(&app, &format!("/monitor/overview?{window}"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for header in ["Failed p50", "Failed p95", "Timeout p50", "Timeout p95"] {
        assert!(
            page.body.contains(&format!("<th>{header}</th>")),
            "{header}"
        );
    }
    let row = page
        .body
        .lines()
        .find(|l| l.contains(">model-failing</a></td>"))
        .expect("the failing model's row links to its runs");
    assert!(
        row.contains(r#"<td class="num">2.2 s</td>"#),
        "success p50 of the failing model: {row}"
    );
    let failed_p50 = format!(
        r#"<td class="num">{} ms</td>"#,
        failing["failed_p50_ms"].as_i64().unwrap()
    );
    assert!(row.contains(&failed_p50), "{row}");
}
on_both_backends!(failures_and_timeouts_do_not_make_a_model_look_fast);

/// Runs of two models over three prompt packs, every pair present, with outcomes
/// that differ per pair.
fn matrix_specs() -> Vec<RunSpec> {
    (0..36)
        .map(|n| {
            let model = format!("model-{}", n % 2);
            let pack = format!("pack-{}", n / 2 % 3);
            // pack-2 with model-1 fails most; the rest mostly succeed.
            let bad = pack == "pack-2" && model == "model-1";
            let ends: Vec<(&'static str, u64)> = (0..3)
                .map(|v| {
                    let latency = 1_000 + (n as u64 * 97 + v as u64 * 31) % 900;
                    match (bad, (n + v) % 5) {
                        (true, 0) => ("success", latency),
                        (true, 1) => ("timeout", 30_000),
                        (true, _) => ("failed", 90 + v as u64),
                        (false, 0) => ("failed", 120),
                        (false, _) => ("success", latency),
                    }
                })
                .collect();
            run(n, &model, &pack, &ends)
        })
        .collect()
}

async fn the_overview_crosses_packs_with_models_and_filters_by_model(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let specs = matrix_specs();
    let envelopes: Vec<_> = specs.iter().flat_map(|s| s.envelopes()).collect();
    seed(&store, &envelopes, &[]).await;
    let app = app_of(&store);
    let (from, to) = (BASE, BASE + 3_600_000);
    let window = format!("from={from}&to={to}");

    let stats = get(&app, &format!("/api/v1/stats?{window}"), &[])
        .await
        .json();
    assert!(stats["model"].is_null(), "{stats}");
    let mut pairs: BTreeMap<(String, String), Vec<&RunSpec>> = BTreeMap::new();
    for spec in &specs {
        pairs
            .entry((spec.pack.clone(), spec.model.clone()))
            .or_default()
            .push(spec);
    }
    assert_eq!(pairs.len(), 6);
    let cells = stats["by_prompt_pack_and_model"].as_array().unwrap();
    let listed: Vec<(String, String)> = cells
        .iter()
        .map(|c| {
            (
                c["prompt_pack_version"].as_str().unwrap().to_owned(),
                c["model"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        pairs.keys().cloned().collect::<Vec<_>>(),
        "every pair once, by pack then model"
    );
    for (cell, ((pack, model), runs)) in cells.iter().zip(&pairs) {
        let variants: Vec<_> = runs.iter().flat_map(|s| &s.variants).collect();
        let count = |st: &str| variants.iter().filter(|v| v.status == st).count() as i64;
        assert_eq!(cell["total"], variants.len() as i64, "{pack} × {model}");
        assert_eq!(cell["success"], count("success"), "{pack} × {model}");
        assert_eq!(cell["failed"], count("failed"), "{pack} × {model}");
        assert_eq!(cell["timeout"], count("timeout"), "{pack} × {model}");
        assert_eq!(
            cell["p95_ms"].as_i64(),
            percentile(&latencies(runs, "success"), 95.0),
            "{pack} × {model}: success-only p95"
        );
    }

    // The page's matrix: packs down, models across, each cell linking to its runs.
    let page = get(&app, &format!("/monitor/overview?{window}"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Prompt pack × model"));
    let amp = if page.body.contains("&#38;prompt_pack_version") {
        "&#38;"
    } else {
        "&amp;"
    };
    for ((pack, model), runs) in &pairs {
        let href = format!(
            "/monitor?model={model}{amp}prompt_pack_version={pack}{amp}from={from}{amp}to={to}"
        );
        assert!(
            page.body.contains(&format!("href=\"{href}\"")),
            "{pack} × {model}: no link {href}"
        );
        // The link lists exactly that pair's runs.
        let listed = get(&app, &href.replace(amp, "&"), &[]).await;
        assert_eq!(listed.status, 200, "{href}: {}", listed.body);
        for spec in &specs {
            let mine = runs.iter().any(|r| r.run_id == spec.run_id);
            assert_eq!(
                listed.body.contains(&spec.run_id),
                mine,
                "{pack} × {model}: run of {} × {}",
                spec.pack,
                spec.model
            );
        }
    }
    // The failing pair is marked as such.
    assert!(page.body.contains("cell cell-bad"), "{}", page.body);

    // One model only: the API and the page count only its runs.
    let only = get(&app, &format!("/api/v1/stats?{window}&model=model-1"), &[])
        .await
        .json();
    assert_eq!(only["model"], "model-1");
    let models: Vec<&Value> = only["by_model"].as_array().unwrap().iter().collect();
    assert_eq!(models.len(), 1, "{only}");
    assert_eq!(models[0]["key"], "model-1");
    let of: Vec<&RunSpec> = specs.iter().filter(|s| s.model == "model-1").collect();
    for pack in ["pack-0", "pack-1", "pack-2"] {
        let variants = of
            .iter()
            .filter(|s| s.pack == pack)
            .flat_map(|s| &s.variants)
            .count() as i64;
        assert_eq!(group(&only, "by_prompt_pack", pack)["total"], variants);
    }
    let models_of_cells: BTreeSet<&str> = only["by_prompt_pack_and_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["model"].as_str().unwrap())
        .collect();
    assert_eq!(models_of_cells, BTreeSet::from(["model-1"]));
    // In any case, as the runs list's model filter.
    let shouted = get(&app, &format!("/api/v1/stats?{window}&model=MODEL-1"), &[])
        .await
        .json();
    assert_eq!(shouted["by_model"], only["by_model"], "{shouted}");
    let page = get(
        &app,
        &format!("/monitor/overview?{window}&model=model-1"),
        &[],
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"name="model" value="model-1""#));
    assert!(!page.body.contains(">model-0<"), "{}", page.body);
    // A prompt pack's link keeps the model.
    assert!(page.body.contains(&format!(
        "href=\"/monitor?model=model-1{amp}prompt_pack_version=pack-2{amp}from={from}{amp}to={to}\""
    )));

    // A model with no runs: nothing, not everything.
    let none = get(&app, &format!("/api/v1/stats?{window}&model=model-9"), &[])
        .await
        .json();
    assert_eq!(none["by_model"], serde_json::json!([]));
    assert_eq!(none["by_prompt_pack_and_model"], serde_json::json!([]));
    let bad = get(&app, &format!("/api/v1/stats?{window}&model=a%00b"), &[]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}
on_both_backends!(the_overview_crosses_packs_with_models_and_filters_by_model);
