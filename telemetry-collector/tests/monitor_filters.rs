//! The monitor as an on-call operator uses it (issue 15, items 6 to 9), through the
//! real router on SQLite and on a fresh Postgres database each: shop, model and status
//! in any case; shops by prefix (one shop, a few, many); quick ranges; durations as a
//! filter and an order; error codes; links from every list and page to the filtered
//! lists; the run page's order; error pages inside the layout; an empty database.

mod common;
mod monitor_support;

use std::collections::BTreeSet;

use common::{Backend, TestDb};
use monitor_support::*;
use telemetry_collector::config::MonitorSettings;
use telemetry_proto::v1::{self, envelope::Body as EnvBody};
use tokio_util::sync::CancellationToken;

const BASE: i64 = 1_700_000_000_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn monitor(store: std::sync::Arc<dyn telemetry_collector::store::Store>) -> axum::Router {
    app(store, MonitorSettings::default(), CancellationToken::new())
}

/// Walks every page of `/api/v1/runs` with `filters`; returns run ids in order.
async fn walk_runs(app: &axum::Router, filters: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/v1/runs?limit={limit}&{filters}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let page = get(app, &path, &[]).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let page = page.json();
        let runs = page["runs"].as_array().unwrap();
        assert!(runs.len() <= limit);
        ids.extend(
            runs.iter()
                .map(|r| r["run_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
    panic!("paging did not end");
}

/// Every page size gives `expected`, in order, each run once.
async fn assert_pages(app: &axum::Router, filters: &str, expected: &[String]) {
    for limit in [1, 3, 500] {
        let ids = walk_runs(app, filters, limit).await;
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{filters} limit {limit}: repeats");
        assert_eq!(ids, expected, "{filters} limit {limit}");
    }
}

/// The ids of `specs` that `keep` keeps, newest first (the list's order).
fn newest_first(specs: &[RunSpec], keep: impl Fn(&RunSpec) -> bool) -> Vec<String> {
    let mut chosen: Vec<&RunSpec> = specs.iter().filter(|s| keep(s)).collect();
    chosen.sort_by(|a, b| (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id)));
    chosen.into_iter().map(|s| s.run_id.clone()).collect()
}

/// A run's total duration as its RunCompleted says (`None` while running).
fn duration(spec: &RunSpec) -> Option<i64> {
    spec.completed.then(|| {
        let longest = spec
            .variants
            .iter()
            .filter(|v| v.status != "running")
            .map(|v| v.latency_ms)
            .max()
            .unwrap_or(0);
        longest as i64 + 20
    })
}

async fn seed_specs(
    store: &std::sync::Arc<dyn telemetry_collector::store::Store>,
    specs: &[RunSpec],
) {
    let envelopes: Vec<_> = specs.iter().flat_map(|s| s.envelopes()).collect();
    seed(store, &envelopes, &[]).await;
}

async fn shops_models_and_statuses_match_in_any_case(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let shops = [
        "casa-verde.myshopify.com",
        "Casa-Azul.myshopify.com",
        "oak-and-linen.myshopify.com",
    ];
    let models = ["Gemini-2.5-Flash-Image", "local-composite"];
    let mut specs: Vec<RunSpec> = (0..30)
        .map(|n| {
            let mut spec = RunSpec::new(n, BASE + (n as i64 / 2) * 1000);
            spec.shop = shops[n % 3].to_owned();
            spec.model = models[n % 2].to_owned();
            spec
        })
        .collect();
    // More shops under one prefix than are read one index range each.
    specs.extend((0..20).map(|i| {
        let mut spec = RunSpec::new(100 + i, BASE + 40_000 + i as i64 * 500);
        spec.shop = format!("ZZ-shop-{i}.myshopify.com");
        spec
    }));
    seed_specs(&store, &specs).await;
    let app = monitor(store.clone());

    let lower = |s: &RunSpec| s.shop.to_ascii_lowercase();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "shop=casa-verde",
            newest_first(&specs, |s| s.shop == shops[0]),
        ),
        (
            "shop=CASA",
            newest_first(&specs, |s| lower(s).starts_with("casa")),
        ),
        (
            "shop=Casa-Azul.myshopify.com",
            newest_first(&specs, |s| s.shop == shops[1]),
        ),
        ("shop=casa-verde.myshopify.comx", vec![]),
        ("shop=nobody", vec![]),
        // 11 shops (1, 10..19): one index range each.
        (
            "shop=zz-shop-1",
            newest_first(&specs, |s| lower(s).starts_with("zz-shop-1")),
        ),
        // 20 shops: past the branches, checked per row.
        (
            "shop=zz-",
            newest_first(&specs, |s| lower(s).starts_with("zz-")),
        ),
        (
            "shop=zz-&status=PARTIAL",
            newest_first(&specs, |s| {
                lower(s).starts_with("zz-") && s.run_status() == "partial"
            }),
        ),
        (
            "model=gemini-2.5-flash-image",
            newest_first(&specs, |s| s.model == models[0]),
        ),
        (
            "model=GEMINI-2.5-flash-image&status=FAILED",
            newest_first(&specs, |s| {
                s.model == models[0] && s.run_status() == "failed"
            }),
        ),
        (
            "model=LOCAL-COMPOSITE&status=partial",
            newest_first(&specs, |s| {
                s.model == models[1] && s.run_status() == "partial"
            }),
        ),
        (
            "status=Partial",
            newest_first(&specs, |s| s.run_status() == "partial"),
        ),
        (
            "shop=CASA&model=Gemini-2.5-FLASH-image&status=complete",
            newest_first(&specs, |s| {
                lower(s).starts_with("casa") && s.model == models[0] && s.run_status() == "complete"
            }),
        ),
    ];
    for (filters, expected) in &cases {
        let nothing = filters.contains("nobody") || filters.ends_with(".comx");
        assert_eq!(
            expected.is_empty(),
            nothing,
            "{filters}: the seed should match"
        );
        assert_pages(&app, filters, expected).await;
    }

    // Events: the shop filter is a prefix in any case too, and types any case.
    let events = get(&app, "/api/v1/events?shop=CASA-VERDE&limit=500", &[])
        .await
        .json();
    let events = events["events"].as_array().unwrap();
    let expected: usize = specs
        .iter()
        .filter(|s| s.shop == shops[0])
        .map(|s| s.envelopes().len())
        .sum();
    assert_eq!(events.len(), expected);
    assert!(events.iter().all(|e| e["shop_id"] == shops[0]));
    let started = get(
        &app,
        "/api/v1/events?shop=casa&type=RUN_STARTED&limit=500",
        &[],
    )
    .await
    .json();
    let started: Vec<&str> = started["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        started.len(),
        specs
            .iter()
            .filter(|s| lower(s).starts_with("casa"))
            .count()
    );
    let page = get(&app, "/monitor/events?shop=zz-shop-1.", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(">ZZ-shop-1.myshopify.com</a>"));
    assert!(!page.body.contains("ZZ-shop-10"));

    // The form shows the status chosen in any case as chosen.
    let page = get(&app, "/monitor?status=FAILED", &[]).await;
    assert!(
        page.body.contains(r#"<option value="failed" selected>"#),
        "{}",
        page.body
    );
}
on_both_backends!(shops_models_and_statuses_match_in_any_case);

async fn durations_filter_and_order_the_runs(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut specs: Vec<RunSpec> = (0..25)
        .map(|n| RunSpec::new(n, BASE + n as i64 * 1000))
        .collect();
    // Still running: no duration, so in neither the duration order nor its filter.
    specs[7].completed = false;
    specs[7].variants[1].status = "running";
    seed_specs(&store, &specs).await;
    let app = monitor(store.clone());

    let longest_first = |keep: &dyn Fn(&RunSpec) -> bool| {
        let mut chosen: Vec<(i64, &String)> = specs
            .iter()
            .filter(|s| keep(s))
            .filter_map(|s| duration(s).map(|d| (d, &s.run_id)))
            .collect();
        chosen.sort_by(|a, b| b.cmp(a));
        chosen
            .into_iter()
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>()
    };
    let within = |s: &RunSpec, lo: i64, hi: i64| duration(s).is_some_and(|d| d >= lo && d <= hi);
    let durations: BTreeSet<i64> = specs.iter().filter_map(duration).collect();
    assert!(durations.len() > 10, "the seed has varied durations");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("sort=duration", longest_first(&|_| true)),
        (
            "sort=duration&shop=shop-1",
            longest_first(&|s| s.shop == "shop-1.myshopify.com"),
        ),
        (
            "sort=duration&min_duration_ms=500",
            longest_first(&|s| within(s, 500, i64::MAX)),
        ),
        (
            "min_duration_ms=400&max_duration_ms=700",
            newest_first(&specs, |s| within(s, 400, 700)),
        ),
        (
            "max_duration_ms=600&sort=started",
            newest_first(&specs, |s| within(s, 0, 600)),
        ),
        ("min_duration_ms=100000", vec![]),
    ];
    for (filters, expected) in &cases {
        assert_pages(&app, filters, expected).await;
    }
    for wrong in [
        "sort=slowest",
        "min_duration_ms=-1",
        "max_duration_ms=1.5",
        "min_duration_ms=5&max_duration_ms=4",
        // A cursor of the time order is not one of the duration order.
        "sort=duration&cursor=1700000000000%3Arun",
    ] {
        let answer = get(&app, &format!("/api/v1/runs?{wrong}"), &[]).await;
        assert_eq!(answer.status, 400, "{wrong}: {}", answer.body);
        assert_eq!(answer.json()["error"]["code"], "bad_parameter", "{wrong}");
    }
    // The page keeps the order in its next link.
    let page = get(&app, "/monitor?sort=duration&limit=2", &[]).await;
    assert!(page.body.contains("Shorter runs"), "{}", page.body);
    assert!(
        page.body.contains("sort=duration&#38;limit=2&#38;cursor=d")
            || page.body.contains("sort=duration&amp;limit=2&amp;cursor=d"),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"<option value="duration" selected>"#));
}
on_both_backends!(durations_filter_and_order_the_runs);

async fn error_codes_find_the_runs_that_failed_with_them(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let specs: Vec<RunSpec> = (0..24)
        .map(|n| RunSpec::new(n, BASE + n as i64 * 1000))
        .collect();
    // Every fifth run's failures are storage errors; the others' provider errors.
    let storage = |n: usize| n.is_multiple_of(5);
    let mut envelopes = Vec::new();
    for (n, spec) in specs.iter().enumerate() {
        for mut envelope in spec.envelopes() {
            if let Some(EnvBody::VariantResult(result)) = envelope.body.as_mut() {
                if result.error_code != 0 && storage(n) {
                    result.error_code = v1::ErrorCode::StorageError as i32;
                }
            }
            envelopes.push(envelope);
        }
    }
    seed(&store, &envelopes, &[]).await;
    let app = monitor(store.clone());
    let failing = |s: &RunSpec| s.variants.iter().any(|v| v.status != "success");
    // Timeouts carry ERROR_CODE_TIMEOUT, as the renderer sends them; failures the
    // provider's error.
    let provider_failed = |s: &RunSpec| s.variants.iter().any(|v| v.status == "failed");
    let index = |s: &RunSpec| specs.iter().position(|x| x.run_id == s.run_id).unwrap();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "error_code=storage_error",
            newest_first(&specs, |s| failing(s) && storage(index(s))),
        ),
        (
            "error_code=PROVIDER_ERROR",
            newest_first(&specs, |s| provider_failed(s) && !storage(index(s))),
        ),
        (
            "error_code=provider_error&status=failed",
            newest_first(&specs, |s| {
                provider_failed(s) && !storage(index(s)) && s.run_status() == "failed"
            }),
        ),
        ("error_code=unspecified", vec![]),
    ];
    for (filters, expected) in &cases {
        assert!(
            filters.contains("unspecified") || !expected.is_empty(),
            "{filters}: the seed should match"
        );
        assert_pages(&app, filters, expected).await;
    }
    // The run page links its error codes to the runs that have them.
    let failed = specs
        .iter()
        .find(|s| storage(index(s)) && failing(s))
        .unwrap();
    let page = get(&app, &format!("/monitor/runs/{}", failed.run_id), &[]).await;
    assert!(
        page.body.contains(
            r#"<a href="/monitor?error_code=storage_error"><code>storage_error</code></a>"#
        ),
        "{}",
        page.body
    );
}
on_both_backends!(error_codes_find_the_runs_that_failed_with_them);

/// Past `MAX_SORTED_ERROR_VARIANTS` variants with the code, the list is read in its
/// order and each run checked: the same pages as a rare code's.
async fn a_common_error_code_pages_like_a_rare_one(backend: Backend) {
    use telemetry_collector::store::MAX_SORTED_ERROR_VARIANTS;
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let runs = (MAX_SORTED_ERROR_VARIANTS as usize / 2) * 12 / 10 + 10;
    let specs: Vec<RunSpec> = (0..runs)
        .map(|n| {
            let mut spec = RunSpec::new(n, BASE + n as i64 * 100);
            for v in &mut spec.variants {
                // Every tenth run succeeds; the others fail twice with the code.
                v.status = if n.is_multiple_of(10) {
                    "success"
                } else {
                    "failed"
                };
            }
            spec
        })
        .collect();
    let mut envelopes = Vec::new();
    for spec in &specs {
        for mut envelope in spec.envelopes() {
            if let Some(EnvBody::VariantResult(result)) = envelope.body.as_mut() {
                if result.error_code != 0 {
                    result.error_code = v1::ErrorCode::StorageError as i32;
                }
            }
            envelopes.push(envelope);
        }
    }
    seed(&store, &envelopes, &[]).await;
    let app = monitor(store.clone());
    let with_code = newest_first(&specs, |s| s.run_status() == "failed");
    assert!(with_code.len() * 2 > MAX_SORTED_ERROR_VARIANTS as usize);
    for (filters, expected) in [
        ("error_code=storage_error".to_owned(), with_code.clone()),
        (
            format!("error_code=Storage_Error&to={}", BASE + 1000 * 100),
            newest_first(&specs, |s| {
                s.run_status() == "failed" && s.started_at < BASE + 100_000
            }),
        ),
    ] {
        for limit in [50, 500] {
            assert_eq!(
                walk_runs(&app, &filters, limit).await,
                expected,
                "{filters} {limit}"
            );
        }
    }
}
on_both_backends!(a_common_error_code_pages_like_a_rare_one);

async fn quick_ranges_are_the_time_before_to_or_now(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = now_ms();
    let minute = 60_000;
    let ages = [
        10 * minute,
        2 * 60 * minute,
        2 * 1440 * minute,
        40 * 1440 * minute,
    ];
    let specs: Vec<RunSpec> = ages
        .iter()
        .enumerate()
        .map(|(n, age)| RunSpec::new(n, now - age))
        .collect();
    seed_specs(&store, &specs).await;
    let app = monitor(store.clone());
    let younger = |limit: i64| newest_first(&specs, |s| s.started_at >= now - limit);
    let hour = 60 * minute;
    let cases: Vec<(String, Vec<String>)> = vec![
        ("range=15m".into(), younger(15 * minute)),
        ("range=1H".into(), younger(hour)),
        ("range=6h".into(), younger(6 * hour)),
        ("range=7d".into(), younger(7 * 24 * hour)),
        ("range=30d".into(), younger(30 * 24 * hour)),
        (
            format!("range=24h&to={}", now - hour),
            newest_first(&specs, |s| {
                s.started_at >= now - 25 * hour && s.started_at < now - hour
            }),
        ),
    ];
    for (filters, expected) in &cases {
        assert!(!expected.is_empty(), "{filters}");
        assert_pages(&app, filters, expected).await;
    }
    assert_eq!(cases[0].1.len(), 1);
    assert_eq!(cases[4].1.len(), 3);
    // With `from` too, both bounds apply.
    assert_pages(
        &app,
        &format!("range=6h&from={}", now - 30 * minute),
        &younger(30 * minute),
    )
    .await;
    let answer = get(&app, "/api/v1/runs?range=2h", &[]).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    // The links keep the other filters; the chosen one is marked.
    let page = get(&app, "/monitor?shop=shop-1&range=6h", &[]).await;
    assert_eq!(page.status, 200);
    for range in ["15m", "1h", "6h", "24h", "7d", "30d"] {
        let link = format!("href=\"/monitor?shop=shop-1&#38;range={range}\"");
        let alt = link.replace("&#38;", "&amp;");
        assert!(
            page.body.contains(&link) || page.body.contains(&alt),
            "{range}: {}",
            page.body
        );
    }
    assert!(page
        .body
        .contains(r#"range=6h" class="current" aria-current="true">6h</a>"#));
    assert!(page
        .body
        .contains(r#"<input type="hidden" name="range" value="6h">"#));

    // The events list has the same quick ranges, by when the events occurred.
    for (range, runs) in [("15m", 1), ("6h", 2), ("30d", 3)] {
        let want: usize = specs[..runs].iter().map(|s| s.envelopes().len()).sum();
        let answer = get(
            &app,
            &format!("/api/v1/events?range={range}&limit=500"),
            &[],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let events = answer.json()["events"].as_array().unwrap().len();
        assert_eq!(events, want, "events of the last {range}");
    }
    assert_eq!(get(&app, "/api/v1/events?range=2h", &[]).await.status, 400);
    let page = get(&app, "/monitor/events?shop=shop-1&range=6h", &[]).await;
    assert_eq!(page.status, 200);
    for range in ["15m", "1h", "6h", "24h", "7d", "30d"] {
        let link = format!("href=\"/monitor/events?shop=shop-1&#38;range={range}\"");
        assert!(page.body.contains(&link), "{range}: {}", page.body);
    }
    assert!(page
        .body
        .contains(r#"range=6h" class="current" aria-current="true">6h</a>"#));
    assert!(page
        .body
        .contains(r#"href="/monitor/events?shop=shop-1">any time</a>"#));
}
on_both_backends!(quick_ranges_are_the_time_before_to_or_now);

/// `href="{path}"` as askama writes it (`&` escaped).
fn href(path: &str) -> String {
    format!("href=\"{}\"", path.replace('&', "&#38;"))
}

async fn every_list_and_page_links_to_the_filtered_lists(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut spec = RunSpec::new(2, BASE);
    spec.shop = "Casa-Verde.myshopify.com".into();
    spec.model = "gemini-2.5-flash-image".into();
    spec.pack = "v4 beta".into();
    spec.request_id = "req-links&1".into();
    seed_specs(&store, std::slice::from_ref(&spec)).await;
    let app = monitor(store.clone());

    let shop = "/monitor?shop=Casa-Verde.myshopify.com";
    let model = "/monitor?model=gemini-2.5-flash-image";
    let pack = "/monitor?prompt_pack_version=v4+beta";
    let request = "/monitor/events?request_id=req-links%261";
    let code = "/monitor?error_code=provider_error";
    let runs = get(&app, "/monitor", &[]).await;
    let run = get(&app, &format!("/monitor/runs/{}", spec.run_id), &[]).await;
    let events = get(&app, "/monitor/events", &[]).await;
    for (what, page, links) in [
        ("runs list", &runs, vec![shop, model, pack, request]),
        ("run page", &run, vec![shop, model, pack, request, code]),
        ("events list", &events, vec![shop, request]),
    ] {
        assert_eq!(page.status, 200, "{what}");
        for link in links {
            assert!(page.body.contains(&href(link)), "{what}: no link {link}");
        }
    }
    // Each link finds the run (or its events).
    for link in [shop, model, pack, code] {
        let api = link.replace("/monitor?", "/api/v1/runs?");
        let found = get(&app, &api, &[]).await.json();
        assert_eq!(found["runs"][0]["run_id"], spec.run_id.as_str(), "{link}");
    }
    let found = get(
        &app,
        &request.replace("/monitor/events", "/api/v1/events"),
        &[],
    )
    .await
    .json();
    assert_eq!(
        found["events"].as_array().unwrap().len(),
        spec.envelopes().len()
    );
}
on_both_backends!(every_list_and_page_links_to_the_filtered_lists);

async fn a_run_page_answers_first_and_folds_its_hashes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    // Variants: success, failed (run 1: statuses cycle from index 1).
    let spec = RunSpec::new(1, BASE);
    assert_eq!(spec.run_status(), "partial");
    seed_specs(&store, std::slice::from_ref(&spec)).await;
    let app = monitor(store.clone());
    let page = get(&app, &format!("/monitor/runs/{}", spec.run_id), &[]).await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    let at = |needle: &str| {
        body.find(needle)
            .unwrap_or_else(|| panic!("no {needle} on the run page: {body}"))
    };
    // Status and counts, then the timeline, then the variants, then the metadata.
    let order = [
        at(r#"id="run-status""#),
        at(r#"id="run-failed">1 failed<"#),
        at(r#"id="timeline""#),
        at(r#"id="variants""#),
        at(r#"<dl class="meta">"#),
        at(r#"id="events""#),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    // One bar for the run and one per variant; the failure marked and labelled.
    assert_eq!(
        body.matches(r#"<li class="tl-row">"#).count(),
        1 + spec.variants.len()
    );
    assert!(body.contains(r#"class="bar-failed""#) && body.contains("✕"));
    assert!(body.contains("<code>provider_error</code>"));
    // Hashes are folded: a short form that opens on the whole.
    assert!(body.contains(r#"<details class="hash"><summary class="mono">cc</summary>"#));
    assert!(body.contains("ago</span>"), "relative times");
}
on_both_backends!(a_run_page_answers_first_and_folds_its_hashes);

async fn an_empty_database_says_how_to_send_the_first_render(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let app = monitor(store.clone());
    let page = get(&app, "/monitor", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"id="first-render""#), "{}", page.body);
    assert!(page.body.contains("demo-traffic --renderer-url"));
    assert!(!page.body.contains("No runs match."));
    // With a filter, nothing matching is not an empty database.
    let filtered = get(&app, "/monitor?shop=casa", &[]).await;
    assert!(!filtered.body.contains(r#"id="first-render""#));
    assert!(filtered.body.contains("No runs match."));
    // Once a run is stored, the help is gone.
    seed_specs(&store, &[RunSpec::new(0, BASE)]).await;
    let page = get(&app, "/monitor", &[]).await;
    assert!(!page.body.contains(r#"id="first-render""#));
}
on_both_backends!(an_empty_database_says_how_to_send_the_first_render);

async fn lists_offer_no_unknown_status_and_show_relative_times(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed_one_of_each(&store).await;
    let app = monitor(store.clone());
    let runs = get(&app, "/monitor", &[]).await;
    assert!(!runs.body.contains("unknown("), "{}", runs.body);
    for status in [
        "running",
        "stale",
        "complete",
        "partial",
        "failed",
        "interrupted",
    ] {
        assert!(runs.body.contains(&format!(r#"<option value="{status}">"#)));
    }
    for path in ["/monitor", "/monitor/events", "/monitor/dead-letters"] {
        let page = get(&app, path, &[]).await;
        assert!(
            page.body.contains(r#"<time datetime="20"#)
                && page.body.contains(r#"<span class="ago" data-at=""#),
            "{path}: {}",
            page.body
        );
    }
    // Live updates are announced politely.
    assert!(runs.body.contains(r#"role="status" aria-live="polite""#));
    // The pickers are date-time inputs holding UTC.
    let filtered = get(&app, "/monitor?from=2023-11-15T00:13:20%2B02:00", &[]).await;
    assert!(
        filtered
            .body
            .contains(r#"name="from" type="datetime-local" step="1" value="2023-11-14T22:13:20""#),
        "{}",
        filtered.body
    );
}
on_both_backends!(lists_offer_no_unknown_status_and_show_relative_times);

async fn error_pages_are_inside_the_layout_with_a_way_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let app = monitor(store.clone());
    for (path, status) in [
        ("/monitor/runs/nope", 404),
        ("/monitor/nowhere", 404),
        ("/monitor?limit=0", 400),
        ("/monitor?sort=sideways", 400),
    ] {
        let page = get(&app, path, &[]).await;
        assert_eq!(page.status, status, "{path}");
        assert!(
            page.body.contains(r#"<nav aria-label="Monitor">"#),
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains(r#"id="back-to-runs""#), "{path}");
        assert!(page.body.contains(r#"<meta name="viewport""#), "{path}");
        assert!(page.body.contains(r#"id="error-code""#), "{path}");
    }
    let login = get(&app, "/monitor/login", &[]).await;
    assert!(login
        .body
        .contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#));
}
on_both_backends!(error_pages_are_inside_the_layout_with_a_way_back);
