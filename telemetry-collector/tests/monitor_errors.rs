//! Error groups (issue 15, item 3), on SQLite and on Postgres: failed and timed-out
//! variants grouped by model, error code and normalised message, with counts, shares,
//! first and last seen and per-slice counts; a model filter; each group's runs; the
//! group following the winning result in any arrival order; and rows stored before
//! the column filled when the store migrates.

mod common;
mod monitor_support;

use std::collections::BTreeMap;

use common::{Backend, TestDb};
use monitor_support::*;
use serde_json::{json, Value};
use telemetry_collector::config::MonitorSettings;
use tokio_util::sync::CancellationToken;

const BASE: i64 = 1_700_006_400_000;
const HOUR: i64 = 3_600_000;

fn app_of(store: &std::sync::Arc<dyn telemetry_collector::store::Store>) -> axum::Router {
    app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    )
}

/// A run of `model` started `hour` hours (and `n` seconds) after `BASE`, its variants
/// ending as `ends` says (`(status, latency_ms, message)`).
fn run(n: usize, hour: i64, model: &str, ends: &[(&'static str, u64, String)]) -> RunSpec {
    let mut spec = RunSpec::new(n, BASE + hour * HOUR + n as i64 * 1000);
    spec.model = model.to_owned();
    spec.variants = ends
        .iter()
        .enumerate()
        .map(|(i, (status, latency_ms, message))| VariantSpec {
            id: format!("v{i}"),
            status,
            latency_ms: *latency_ms,
            error_message: message.clone(),
            image_key: String::new(),
        })
        .collect();
    spec
}

/// A Gemini outage message, with its own request id and timing each time.
fn overloaded(n: usize) -> String {
    format!(
        "provider returned HTTP 503: model overloaded (request {}, after {} ms)",
        uuid::Uuid::now_v7(),
        80 + n * 7
    )
}

fn quota(n: usize) -> String {
    format!(
        "provider returned HTTP 429: quota exceeded for project {}",
        1000 + n
    )
}

fn slow(_: usize) -> String {
    "variant did not finish within 60000 ms".to_owned()
}

/// The groups of the messages above: each with its ids and numbers as placeholders,
/// and the HTTP status kept.
const OUTAGE: &str = "provider returned HTTP 503: model overloaded (request <uuid>, after <n> ms)";
const QUOTA: &str = "provider returned HTTP 429: quota exceeded for project <n>";
const SLOW: &str = "variant did not finish within <n> ms";

fn group_of(message: &str) -> &'static str {
    [OUTAGE, QUOTA, SLOW]
        .into_iter()
        .find(|group| message.starts_with(&group[..26]))
        .unwrap_or_else(|| panic!("no group for {message:?}"))
}

/// A day of runs: an outage of one model (503s), a quota error, timeouts of the other
/// model, successes, and runs outside the window.
fn day() -> Vec<RunSpec> {
    let ok = || ("success", 2_000, String::new());
    // Each message made once, with its own numbers.
    let made = std::cell::Cell::new(0);
    let next = || {
        made.set(made.get() + 1);
        made.get()
    };
    let mut specs = Vec::new();
    let mut add = |hour: i64, model: &str, ends: Vec<(&'static str, u64, String)>| {
        let n = specs.len() + 1;
        specs.push(run(n, hour, model, &ends));
    };
    for hour in [1, 1, 1, 5, 23] {
        add(
            hour,
            "gemini",
            vec![("failed", 90, overloaded(next())), ok()],
        );
    }
    add(
        2,
        "gemini",
        vec![
            ("failed", 90, overloaded(next())),
            ("failed", 95, overloaded(next())),
        ],
    );
    add(2, "gemini", vec![("failed", 40, quota(next())), ok()]);
    // The same message from the other model is another group.
    add(3, "local", vec![("failed", 90, overloaded(next())), ok()]);
    for hour in [4, 6] {
        add(hour, "local", vec![("timeout", 60_000, slow(next())), ok()]);
    }
    add(7, "local", vec![ok(), ok()]);
    // Outside the window: before it and after it.
    add(-1, "gemini", vec![("failed", 90, overloaded(next()))]);
    add(24, "gemini", vec![("failed", 90, overloaded(next()))]);
    specs
}

/// The groups `specs` must give over `[from, to)` (of `model` when set), as the API
/// answers them: `(model, code, group) -> (count, first seen, last seen, slices)`.
fn expected(specs: &[RunSpec], from: i64, to: i64, model: Option<&str>) -> Vec<Value> {
    type Key = (String, String, String);
    /// Count, first seen, last seen, per-hour counts.
    type Figures = (i64, i64, i64, Vec<i64>);
    let mut groups: BTreeMap<Key, Figures> = BTreeMap::new();
    let mut total = 0;
    for spec in specs {
        if spec.started_at < from || spec.started_at >= to {
            continue;
        }
        if model.is_some_and(|m| m != spec.model) {
            continue;
        }
        for v in spec.variants.iter().filter(|v| v.status != "success") {
            let code = if v.status == "timeout" {
                "timeout"
            } else {
                "provider_error"
            };
            let key = (
                spec.model.clone(),
                code.to_owned(),
                group_of(&v.error_message).to_owned(),
            );
            let seen = spec.result_at(v);
            let entry = groups
                .entry(key)
                .or_insert((0, i64::MAX, i64::MIN, vec![0; 24]));
            entry.0 += 1;
            entry.1 = entry.1.min(seen);
            entry.2 = entry.2.max(seen);
            entry.3[((spec.started_at - from) / HOUR) as usize] += 1;
            total += 1;
        }
    }
    // Most frequent first, then most recently seen; ties in key order (stable).
    let mut list: Vec<(Key, Figures)> = groups.into_iter().collect();
    list.sort_by_key(|(_, figures)| std::cmp::Reverse((figures.0, figures.2)));
    list.into_iter()
        .map(|((model, code, group), (count, first, last, slices))| {
            json!({
                "model": model,
                "error_code": code,
                "error_group": group,
                "count": count,
                "share": (count as f64 * 1000.0 / total as f64).round() / 10.0,
                "first_seen": first,
                "last_seen": last,
                "slices": slices,
            })
        })
        .collect()
}

async fn errors_are_grouped_by_model_code_and_normalised_message(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let specs = day();
    let envelopes: Vec<_> = specs.iter().flat_map(|s| s.envelopes()).collect();
    seed(&store, &envelopes, &[]).await;
    let app = app_of(&store);
    let (from, to) = (BASE, BASE + 24 * HOUR);
    let window = format!("from={from}&to={to}");

    let answer = get(&app, &format!("/api/v1/error-groups?{window}"), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let groups = answer.json();
    let want = expected(&specs, from, to, None);
    assert_eq!(groups["groups"], json!(want), "{groups}");
    assert_eq!(groups["total"], 11);
    assert_eq!(groups["slice_ms"], HOUR);
    assert_eq!(groups["left_off"], 0);
    assert!(groups["model"].is_null());
    // Seven occurrences of the outage, each with its own request id and timing: one group.
    assert_eq!(groups["groups"][0]["error_group"], OUTAGE);
    assert_eq!(groups["groups"][0]["count"], 7);
    // The quota error keeps its HTTP status, not its project number.
    assert!(want
        .iter()
        .any(|g| g["error_group"] == "provider returned HTTP 429: quota exceeded for project <n>"));

    // One model.
    let local = get(
        &app,
        &format!("/api/v1/error-groups?{window}&model=local"),
        &[],
    )
    .await
    .json();
    assert_eq!(
        local["groups"],
        json!(expected(&specs, from, to, Some("local")))
    );
    assert_eq!(local["model"], "local");
    assert_eq!(local["total"], 3);

    // The page: every group with its sparkline and a link to its runs.
    let page = get(&app, &format!("/monitor/errors?{window}"), &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.body
            .matches(r#"<svg xmlns="http://www.w3.org/2000/svg" class="spark""#)
            .count(),
        want.len()
    );
    assert!(
        page.body
            .contains("model overloaded (request &lt;uuid&gt;, after &lt;n&gt; ms)")
            || page
                .body
                .contains("model overloaded (request &#60;uuid&#62;, after &#60;n&#62; ms)"),
        "{}",
        page.body
    );
    let amp = if page.body.contains("&#38;error_code") {
        "&#38;"
    } else {
        "&amp;"
    };
    let start = page
        .body
        .find(&format!("href=\"/monitor/errors?from={from}{amp}to={to}{amp}model=gemini{amp}error_code=provider_error{amp}error_group=provider+returned+HTTP+503"))
        .expect("a link to the outage group's runs");
    let href = &page.body[start + 6..];
    let href = href[..href.find('"').unwrap()].replace(amp, "&");

    // The group's runs: exactly the runs of the window with that error, newest first.
    let runs = get(&app, &href, &[]).await;
    assert_eq!(runs.status, 200, "{}", runs.body);
    assert!(runs.body.contains("Runs with this error"));
    assert!(runs.body.contains(r#"<tr class="selected">"#));
    let mut matching: Vec<&RunSpec> = specs
        .iter()
        .filter(|s| s.started_at >= from && s.started_at < to && s.model == "gemini")
        .filter(|s| {
            s.variants
                .iter()
                .any(|v| v.status == "failed" && group_of(&v.error_message) == OUTAGE)
        })
        .collect();
    matching.sort_by_key(|s| std::cmp::Reverse(s.started_at));
    for spec in &specs {
        assert_eq!(
            runs.body.contains(&spec.run_id),
            matching.iter().any(|m| m.run_id == spec.run_id),
            "run at {} of {} in the group's runs",
            spec.started_at,
            spec.model
        );
    }
    let positions: Vec<usize> = matching
        .iter()
        .map(|s| runs.body.find(&format!(">{}</a>", s.run_id)).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "newest run first"
    );
    // Seven variants (one run has two), each with its message as sent.
    let listed = &runs.body[runs.body.find("Runs with this error").unwrap()..];
    assert_eq!(
        listed
            .matches("<td class=\"message\">provider returned HTTP 503")
            .count(),
        7
    );
    let first = &matching[0].variants[0].error_message;
    assert!(runs.body.contains(first.as_str()), "{first}");

    // An empty window and a bad model.
    let empty = get(
        &app,
        &format!(
            "/api/v1/error-groups?from={}&to={}",
            to + 2 * HOUR,
            to + 3 * HOUR
        ),
        &[],
    )
    .await
    .json();
    assert_eq!(
        (empty["total"].clone(), empty["groups"].clone()),
        (json!(0), json!([]))
    );
    let page = get(
        &app,
        &format!(
            "/monitor/errors?from={}&to={}",
            to + 2 * HOUR,
            to + 3 * HOUR
        ),
        &[],
    )
    .await;
    assert!(page
        .body
        .contains("No failed or timed-out variants in this window."));
    assert_eq!(
        get(&app, "/api/v1/error-groups?model=%0A", &[])
            .await
            .status,
        400
    );
    assert_eq!(
        get(&app, "/api/v1/error-groups?window=2y", &[])
            .await
            .status,
        400
    );
}
on_both_backends!(errors_are_grouped_by_model_code_and_normalised_message);

/// A variant's group is its winning result's (the greatest event id), whatever order
/// the results arrive in and however often: the column is part of the end half.
async fn the_group_follows_the_winning_result_in_any_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let spec = run(1, 1, "gemini", &[("failed", 90, quota(1))]);
    let first = spec.envelopes();
    // The same variant's result again, later (a greater UUIDv7), with another error.
    let mut second = spec.clone();
    second.variants[0].status = "timeout";
    second.variants[0].error_message = slow(1);
    let later = second
        .envelopes()
        .into_iter()
        .filter(|e| {
            matches!(
                e.body,
                Some(telemetry_proto::v1::envelope::Body::VariantResult(_))
            )
        })
        .collect::<Vec<_>>();
    // Newest first, then the older ones, then the newest again.
    seed(&store, &later, &[]).await;
    seed(&store, &first, &[]).await;
    seed(&store, &later, &[]).await;
    let app = app_of(&store);
    let groups = get(
        &app,
        &format!("/api/v1/error-groups?from={BASE}&to={}", BASE + 24 * HOUR),
        &[],
    )
    .await
    .json();
    assert_eq!(groups["total"], 1, "{groups}");
    assert_eq!(groups["groups"][0]["error_code"], "timeout");
    assert_eq!(groups["groups"][0]["error_group"], SLOW);
}
on_both_backends!(the_group_follows_the_winning_result_in_any_order);

/// Rows stored before the column (here: emptied by hand, as a database migrated from
/// the previous version has them) are filled when the store migrates, at start-up, and
/// only those: a second migration changes nothing.
async fn rows_stored_before_error_groups_are_filled_at_start_up(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let specs = day();
    let envelopes: Vec<_> = specs.iter().flat_map(|s| s.envelopes()).collect();
    seed(&store, &envelopes, &[]).await;
    let app = app_of(&store);
    let path = format!("/api/v1/error-groups?from={BASE}&to={}", BASE + 24 * HOUR);
    let before = get(&app, &path, &[]).await.json();
    let stored = common::all_rows(&db).await.variants;

    scalar(
        &db,
        "UPDATE variant_results SET error_group = NULL RETURNING CAST(1 AS BIGINT)",
    )
    .await;
    let emptied = get(&app, &path, &[]).await.json();
    assert!(
        emptied["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["error_group"].is_null()),
        "{emptied}"
    );
    assert!(
        emptied["groups"].as_array().unwrap().len() < before["groups"].as_array().unwrap().len()
    );

    store.migrate().await.expect("migrate again");
    assert_eq!(get(&app, &path, &[]).await.json(), before);
    assert_eq!(
        common::all_rows(&db).await.variants,
        stored,
        "every row as written"
    );
    // The filled rows are not filled again.
    store.migrate().await.expect("migrate a third time");
    assert_eq!(common::all_rows(&db).await.variants, stored);
    // Successes have no group; every failure and timeout has one.
    let odd = "SELECT count(*) FROM variant_results \
               WHERE (error_group IS NOT NULL) <> (status IN ('failed', 'timeout'))";
    assert_eq!(scalar(&db, odd).await, Some(0));
}

/// The first column of the first row of `sql` run straight on the test database.
async fn scalar(db: &TestDb, sql: &str) -> Option<i64> {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let value = sqlx::query_scalar(sql).fetch_optional(&pool).await.unwrap();
            pool.close().await;
            value
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let value = sqlx::query_scalar(sql).fetch_optional(&pool).await.unwrap();
            pool.close().await;
            value
        }
    }
}
on_both_backends!(rows_stored_before_error_groups_are_filled_at_start_up);
