//! The monitor's pages and JSON API through the real router, on SQLite and on a fresh
//! Postgres database each: every route, inert untrusted strings, token access,
//! filters and cursors, the overview's figures.

mod common;
mod monitor_support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Backend, TestDb};
use monitor_support::*;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::store::rollups::coarse_latency;
use telemetry_collector::store::RunFilter;
use tokio_util::sync::CancellationToken;

const PAGES: [&str; 7] = [
    "/monitor",
    "/monitor/overview?window=30d&to=1700100000000",
    "/monitor/errors?window=30d&to=1700100000000",
    "/monitor/events",
    "/monitor/dead-letters",
    "/monitor/producers",
    "/monitor/events?type=sf_render_requested",
];

fn assert_security_headers(answer: &Answer, path: &str) {
    let csp = answer.header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{path}: CSP {csp:?}"
    );
    assert_eq!(answer.header("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(answer.header("x-frame-options"), "DENY", "{path}");
}

async fn every_page_and_api_route_shows_the_seeded_data(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (run, envelopes) = seed_one_of_each(&store).await;
    let monitor = MonitorSettings {
        image_base_url: Some("http://127.0.0.1:8081/images".into()),
        ..Default::default()
    };
    let app = app(store.clone(), monitor, CancellationToken::new());

    let runs = get(&app, "/monitor", &[]).await;
    assert_eq!(runs.status, 200, "{}", runs.body);
    assert!(runs.body.contains(&run.run_id) && runs.body.contains(&run.shop));
    assert!(runs.body.contains(r#"data-live="/monitor/live/runs""#));

    let page = get(&app, &format!("/monitor/runs/{}", run.run_id), &[]).await;
    assert_eq!(page.status, 200);
    for variant in &run.variants {
        assert!(page.body.contains(&format!(">{}</td>", variant.id)));
        assert!(page.body.contains(&format!("{} ms", variant.latency_ms)));
        assert!(page.body.contains(&format!(
            "http://127.0.0.1:8081/images/{}",
            variant.image_key
        )));
    }
    assert!(page.body.contains("sf_render_requested") && page.body.contains("productId"));
    assert!(page.body.contains("Prompt pack JSON"));

    let events = get(&app, "/monitor/events", &[]).await;
    assert!(events.body.contains("run_started") && events.body.contains(&run.request_id));
    let dead = get(&app, "/monitor/dead-letters", &[]).await;
    assert!(dead.body.contains("00 01 6e 6f 74"), "{}", dead.body);
    assert!(dead.body.contains("..not protobuf"));
    let producers = get(&app, "/monitor/producers", &[]).await;
    assert!(producers.body.contains(r#"class="producer suspect""#));
    assert!(producers.body.contains("3 dropped"));
    let overview = get(&app, PAGES[1], &[]).await;
    assert!(overview.body.contains("<svg") && overview.body.contains(&run.model));
    for path in PAGES {
        let answer = get(&app, path, &[]).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_security_headers(&answer, path);
    }
    assert_eq!(get(&app, "/monitor/runs/nope", &[]).await.status, 404);
    assert_eq!(
        get(&app, "/monitor/static/monitor.js", &[]).await.status,
        200
    );

    let json = get(&app, "/api/v1/runs", &[]).await.json();
    assert_eq!(json["runs"][0]["run_id"], run.run_id.as_str());
    let detail = get(&app, &format!("/api/v1/runs/{}", run.run_id), &[])
        .await
        .json();
    assert_eq!(detail["variants"].as_array().unwrap().len(), 2);
    let events = get(
        &app,
        &format!("/api/v1/events?request_id={}", run.request_id),
        &[],
    )
    .await
    .json();
    assert_eq!(
        events["events"].as_array().unwrap().len(),
        envelopes.len() - 1
    );
    let dead = get(&app, "/api/v1/dead-letters", &[]).await.json();
    assert_eq!(dead["dead_letters"][0]["preview_text"], "..not protobuf");
    let producers = get(&app, "/api/v1/producers", &[]).await.json();
    let lossy = producers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["producer"] == "producer-lossy")
        .unwrap();
    assert_eq!(lossy["problem"], "3 dropped; published 7 but 0 stored");
    let stats = get(&app, "/api/v1/stats?from=0&to=1800000000000", &[])
        .await
        .json();
    assert_eq!(stats["by_model"][0]["key"], run.model.as_str());
    assert_eq!(stats["by_model"][0]["total"], 2);
    assert_eq!(get(&app, "/api/v1/runs?limit=0", &[]).await.status, 400);
    assert_eq!(get(&app, "/api/v1/runs?cursor=x", &[]).await.status, 400);
}
on_both_backends!(every_page_and_api_route_shows_the_seeded_data);

async fn untrusted_strings_are_inert_on_every_page(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut run = RunSpec::new(0, 1_700_000_000_000);
    run.shop = HOSTILE.to_owned();
    run.request_id = HOSTILE.to_owned();
    run.model = HOSTILE.to_owned();
    run.pack = HOSTILE.to_owned();
    run.payload = serde_json::json!({ "note": HOSTILE }).to_string();
    run.variants[0].id = HOSTILE.to_owned();
    run.variants[0].status = "failed";
    run.variants[0].error_message = HOSTILE.to_owned();
    run.variants[0].image_key = "javascript:alert(4)".to_owned();
    run.run_id = format!("run-{HOSTILE}");
    let mut envelopes = run.envelopes();
    envelopes.push(producer_stats(HOSTILE, 5, 5, 0));
    let dead_bytes = format!("{HOSTILE}\u{0}");
    seed(&store, &envelopes, &[dead_bytes.as_bytes()]).await;
    let monitor = MonitorSettings {
        image_base_url: Some("http://127.0.0.1:8081/images".into()),
        ..Default::default()
    };
    let app = app(store.clone(), monitor, CancellationToken::new());

    let run_path = format!("/monitor/runs/{}", enc(&run.run_id).replace('+', "%20"));
    let mut paths: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    paths.push(run_path);
    paths.push(format!("/monitor?shop={}", enc(HOSTILE)));
    paths.push(format!("/monitor?q={}", enc(HOSTILE)));
    paths.push(format!("/monitor/events?request_id={}", enc(HOSTILE)));
    // One error group's runs, by the errors page's own link: the model, the code and
    // the message are all theirs.
    let errors = get(&app, "/monitor/errors?from=0&to=1800000000000", &[]).await;
    let link = errors
        .body
        .find("href=\"/monitor/errors?")
        .map(|at| &errors.body[at + 6..])
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .unwrap_or_else(|| panic!("no link to the error group's runs: {}", errors.body));
    paths.push(link.replace("&amp;", "&").replace("&#38;", "&"));
    for path in &paths {
        let page = get(&app, path, &[]).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let body = &page.body;
        assert!(!body.contains("<script>alert"), "{path}: raw script tag");
        assert!(!body.contains("<img src=x"), "{path}: raw img tag");
        assert!(!body.contains("<a href=\"javascript"), "{path}: raw link");
        assert!(
            !body.contains("href=\"javascript:"),
            "{path}: javascript: href"
        );
        assert!(
            !body.contains("src=\"javascript:"),
            "{path}: javascript: src"
        );
        assert!(
            body.contains("&lt;script&gt;") || body.contains("&#60;script&#62;"),
            "{path}: the hostile text should show, escaped"
        );
        // Only the monitor's own script is referenced; no inline script anywhere.
        assert_eq!(body.matches("<script").count(), 1, "{path}");
        assert!(body.contains(r#"<script src="/monitor/static/monitor.js" defer></script>"#));
    }
    // The JSON API returns the strings as data (JSON-escaped), with the same headers.
    let api = get(&app, "/api/v1/runs", &[]).await;
    assert_eq!(api.json()["runs"][0]["shop_id"], HOSTILE);
    assert_eq!(api.header("x-content-type-options"), "nosniff");
    assert!(api.header("content-type").starts_with("application/json"));
}
on_both_backends!(untrusted_strings_are_inert_on_every_page);

async fn the_token_guards_pages_and_api_but_not_health(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed(&store, &RunSpec::new(2, 1_700_000_000_000).envelopes(), &[]).await;
    let token = "s3cret-token-of-24-chars";
    let monitor = MonitorSettings {
        token: Some(token.into()),
        // Wrong tokens below wait this long each (the throttle has its own test).
        failed_auth_delay: Duration::from_millis(20),
        ..Default::default()
    };
    let app = app(store.clone(), monitor, CancellationToken::new());
    let bearer = format!("Bearer {token}");

    for path in [
        "/api/v1/runs",
        "/api/v1/events",
        "/api/v1/stats",
        "/api/v1/producers",
    ] {
        let denied = get(&app, path, &[]).await;
        assert_eq!(denied.status, 401, "{path}");
        assert!(denied.header("www-authenticate").starts_with("Bearer"));
        let wrong = get(&app, path, &[("authorization", "Bearer nope")]).await;
        assert_eq!(wrong.status, 401, "{path}");
        assert_eq!(
            get(&app, path, &[("authorization", &bearer)]).await.status,
            200
        );
    }
    for path in PAGES {
        let denied = get(&app, path, &[]).await;
        assert_eq!(denied.status, 303, "{path}");
        assert!(denied
            .header("location")
            .starts_with("/monitor/login?next=%2Fmonitor"));
        assert_eq!(
            get(&app, path, &[("authorization", &bearer)]).await.status,
            200
        );
    }
    for path in ["/healthz", "/metrics", "/monitor/login"] {
        assert_eq!(get(&app, path, &[]).await.status, 200, "{path}");
    }

    let wrong = post_form(
        &app,
        "/monitor/login",
        "token=nope&next=%2Fmonitor%2Fevents",
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not right") && wrong.header("set-cookie").is_empty());
    let login = post_form(
        &app,
        "/monitor/login",
        &format!("token={token}&next=%2Fmonitor%2Fevents"),
    )
    .await;
    assert_eq!(login.status, 303);
    assert_eq!(login.header("location"), "/monitor/events");
    let cookie = login.header("set-cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(token),
        "the cookie must not carry the token itself"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie.split(';').next().unwrap();
    let page = get(&app, "/monitor/events", &[("cookie", session)]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Log out"));
    assert_eq!(
        get(&app, "/api/v1/runs", &[("cookie", session)])
            .await
            .status,
        200
    );
    let forged = get(&app, "/monitor", &[("cookie", "monitor_session=0000")]).await;
    assert_eq!(forged.status, 303);
    // Logging out needs the session (it is a monitor route) and clears the cookie.
    let logout = logout(&app, session).await;
    assert_eq!(logout.status, 303);
    assert!(logout.header("set-cookie").contains("Max-Age=0"));
    // Behind a TLS proxy the cookie is Secure.
    let request = axum::http::Request::post("/monitor/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(axum::body::Body::from(format!("token={token}")))
        .unwrap();
    let tls = answer(
        tower::ServiceExt::oneshot(app.clone(), request)
            .await
            .unwrap(),
    )
    .await;
    assert!(tls.header("set-cookie").contains("; Secure"));
    // Only a path inside the monitor is a place to return to.
    let away = post_form(
        &app,
        "/monitor/login",
        &format!("token={token}&next=https%3A%2F%2Fevil.example"),
    )
    .await;
    assert_eq!(away.header("location"), "/monitor");
}
on_both_backends!(the_token_guards_pages_and_api_but_not_health);

/// Guessing is throttled: with the defaults, a wrong token is answered after a second
/// and at most four are checked at once; the rest get 429 without a check. A logged-in
/// browser (cookie) is not held up meanwhile, and the right token works again as soon
/// as the guesses stop.
#[tokio::test]
async fn token_guessing_is_throttled_and_the_cookie_still_works() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let token = "s3cret-token-of-24-chars";
    let monitor = MonitorSettings {
        token: Some(token.into()),
        ..Default::default()
    };
    let app = app(store.clone(), monitor, CancellationToken::new());
    let login = post_form(&app, "/monitor/login", &format!("token={token}")).await;
    assert_eq!(login.status, 303);
    let cookie = login
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let started = std::time::Instant::now();
    let guesses = (0..12).map(|n| {
        let app = app.clone();
        async move {
            if n % 2 == 0 {
                let bearer = format!("Bearer guess-{n}");
                get(&app, "/api/v1/runs", &[("authorization", &bearer)]).await
            } else {
                post_form(&app, "/monitor/login", &format!("token=guess-{n}")).await
            }
        }
    });
    let guessing = tokio::spawn(futures::future::join_all(guesses));
    // While the guesses wait out their delay, the logged-in browser is served at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let browsing = std::time::Instant::now();
    let page = get(&app, "/monitor", &[("cookie", &cookie)]).await;
    assert_eq!(page.status, 200);
    assert!(browsing.elapsed() < Duration::from_millis(500));
    let answers = guessing.await.unwrap();

    let checked: Vec<_> = answers.iter().filter(|a| a.status == 401).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        checked.len(),
        telemetry_collector::monitor::auth::DEFAULT_MAX_TOKEN_CHECKS,
        "statuses: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(checked.len() + refused.len(), answers.len());
    assert!(refused.iter().all(|a| a.header("retry-after") == "1"));
    // The checked guesses were answered only after the delay.
    assert!(started.elapsed() >= telemetry_collector::monitor::auth::DEFAULT_FAILED_AUTH_DELAY);
    // The guesses are over: the right token is accepted again.
    let bearer = format!("Bearer {token}");
    assert_eq!(
        get(&app, "/api/v1/runs", &[("authorization", &bearer)])
            .await
            .status,
        200
    );
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
        let page = get(app, &path, &[]).await.json();
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

async fn filtered_pages_are_disjoint_and_complete(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    // 61 runs, several sharing a start time (the cursor's tie-breaker matters).
    let specs: Vec<RunSpec> = (0..61)
        .map(|n| RunSpec::new(n, 1_700_000_000_000 + (n as i64 / 3) * 1000))
        .collect();
    let envelopes: Vec<_> = specs.iter().flat_map(|s| s.envelopes()).collect();
    seed(&store, &envelopes, &[]).await;
    let dead: Vec<Vec<u8>> = (0..23).map(|i| vec![0xff, i as u8]).collect();
    let dead_refs: Vec<&[u8]> = dead.iter().map(|d| d.as_slice()).collect();
    seed(&store, &[], &dead_refs).await;
    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );

    let newest_first = |keep: &dyn Fn(&RunSpec) -> bool| {
        let mut chosen: Vec<&RunSpec> = specs.iter().filter(|s| keep(s)).collect();
        chosen.sort_by(|a, b| (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id)));
        chosen
            .into_iter()
            .map(|s| s.run_id.clone())
            .collect::<Vec<_>>()
    };
    let from = 1_700_000_000_000 + 5_000;
    let to = 1_700_000_000_000 + 15_000;
    let cases: Vec<(String, Vec<String>)> = vec![
        (String::new(), newest_first(&|_| true)),
        (
            "shop=shop-1.myshopify.com".into(),
            newest_first(&|s| s.shop == "shop-1.myshopify.com"),
        ),
        (
            "status=partial".into(),
            newest_first(&|s| s.run_status() == "partial"),
        ),
        (
            "model=model-0&prompt_pack_version=pack-2".into(),
            newest_first(&|s| s.model == "model-0" && s.pack == "pack-2"),
        ),
        (
            format!("from={from}&to={to}"),
            newest_first(&|s| s.started_at >= from && s.started_at < to),
        ),
        ("q=req-7".into(), newest_first(&|s| s.request_id == "req-7")),
        (
            format!("q={}", specs[9].run_id),
            vec![specs[9].run_id.clone()],
        ),
    ];
    for (filters, expected) in &cases {
        assert!(
            !expected.is_empty(),
            "{filters}: the seed should match something"
        );
        for limit in [1, 4, 7, 500] {
            let ids = walk_runs(&app, filters, limit).await;
            let unique: BTreeSet<&String> = ids.iter().collect();
            assert_eq!(
                unique.len(),
                ids.len(),
                "{filters} limit {limit}: pages overlap"
            );
            assert_eq!(&ids, expected, "{filters} limit {limit}");
        }
    }
    // The store's own list, unpaged, agrees on the unfiltered order.
    let all = store
        .monitor_runs(&RunFilter {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    let all: Vec<String> = all.into_iter().map(|r| r.run_id).collect();
    assert_eq!(all, cases[0].1);

    // Events by type, 7 per page: disjoint, complete, newest first.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            &app,
            &format!("/api/v1/events?type=variant_result&limit=7{cursor}"),
            &[],
        )
        .await
        .json();
        for e in page["events"].as_array().unwrap() {
            assert_eq!(e["event_type"], "variant_result");
            seen.push((
                e["occurred_at"].as_i64().unwrap(),
                e["event_id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={}", enc(next)),
            None => break,
        }
    }
    let results = specs
        .iter()
        .flat_map(|s| &s.variants)
        .filter(|v| v.status != "running")
        .count();
    assert_eq!(seen.len(), results);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first"
    );

    // Dead letters, 5 per page.
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(&app, &format!("/api/v1/dead-letters?limit=5{cursor}"), &[])
            .await
            .json();
        ids.extend(
            page["dead_letters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 23);
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
    // The HTML list links its next page with the same filters.
    let html = get(&app, "/monitor?limit=4&status=partial", &[]).await;
    let amp = if html.body.contains("&#38;limit") {
        "&#38;"
    } else {
        "&amp;"
    };
    let next = format!("href=\"/monitor?status=partial{amp}limit=4{amp}cursor=");
    assert!(html.body.contains(&next), "{}", html.body);
}
on_both_backends!(filtered_pages_are_disjoint_and_complete);

async fn the_overview_counts_outcomes_and_reads_percentiles(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    // Runs 317 s apart over 3.5 hours, so a window has sub-minute edges read from the
    // runs, whole minutes and whole hours read from the rollups.
    let base = 1_700_000_000_000;
    let spacing = 317_000;
    let specs: Vec<RunSpec> = (0..40)
        .map(|n| RunSpec::new(n, base + n as i64 * spacing))
        .collect();
    let envelopes: Vec<_> = specs.iter().flat_map(|s| s.envelopes()).collect();
    seed(&store, &envelopes, &[]).await;
    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );
    // Runs 10..30 only, from and to inside minutes.
    let (from, to) = (base + 10 * spacing - 12_345, base + 29 * spacing + 777);
    let stats = get(&app, &format!("/api/v1/stats?from={from}&to={to}"), &[])
        .await
        .json();
    let in_window: Vec<&RunSpec> = specs
        .iter()
        .filter(|s| s.started_at >= from && s.started_at < to)
        .collect();
    for (group, key_of) in [
        (
            "by_model",
            (|s: &RunSpec| s.model.clone()) as fn(&RunSpec) -> String,
        ),
        ("by_prompt_pack", |s: &RunSpec| s.pack.clone()),
    ] {
        let keys: BTreeSet<String> = in_window.iter().map(|s| key_of(s)).collect();
        let got = stats[group].as_array().unwrap();
        assert_eq!(got.len(), keys.len(), "{group}");
        for (g, key) in got.iter().zip(&keys) {
            assert_eq!(g["key"], key.as_str());
            let variants: Vec<_> = in_window
                .iter()
                .filter(|s| &key_of(s) == key)
                .flat_map(|s| &s.variants)
                .collect();
            let count = |st: &str| variants.iter().filter(|v| v.status == st).count() as i64;
            assert_eq!(g["total"], variants.len() as i64);
            assert_eq!(g["success"], count("success"));
            assert_eq!(g["failed"], count("failed"));
            assert_eq!(g["timeout"], count("timeout"));
            // Percentiles of each outcome apart: successes, failures, timeouts.
            let rank = |status: &str, p: f64| {
                let mut buckets: Vec<i64> = variants
                    .iter()
                    .filter(|v| v.status == status)
                    .map(|v| coarse_latency(v.latency_ms as i64))
                    .collect();
                buckets.sort();
                // None (null) when the group has no such outcome.
                buckets
                    .get(((p / 100.0 * buckets.len() as f64).ceil() as usize).max(1) - 1)
                    .copied()
            };
            assert_eq!(g["p50_ms"].as_i64(), rank("success", 50.0), "{group} {key}");
            assert_eq!(g["p95_ms"].as_i64(), rank("success", 95.0), "{group} {key}");
            assert_eq!(g["p99_ms"].as_i64(), rank("success", 99.0), "{group} {key}");
            assert_eq!(
                g["failed_p50_ms"].as_i64(),
                rank("failed", 50.0),
                "{group} {key}"
            );
            assert_eq!(
                g["failed_p95_ms"].as_i64(),
                rank("failed", 95.0),
                "{group} {key}"
            );
            assert_eq!(
                g["timeout_p50_ms"].as_i64(),
                rank("timeout", 50.0),
                "{group} {key}"
            );
            assert_eq!(
                g["timeout_p95_ms"].as_i64(),
                rank("timeout", 95.0),
                "{group} {key}"
            );
        }
    }
    // The same window over time: whole steps covering it, each with the runs and
    // variants started in it, by status, and each model's failure rate.
    let series = &stats["series"];
    let (step, first, last) = (
        series["step_ms"].as_i64().unwrap(),
        series["from"].as_i64().unwrap(),
        series["to"].as_i64().unwrap(),
    );
    assert_eq!(step, 5 * 60_000, "a window under 6 h has 5-minute steps");
    assert!(first <= from && from < first + step && last >= to && last - step < to);
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len() as i64, (last - first) / step);
    for point in points {
        let at = point["at"].as_i64().unwrap();
        let started: Vec<&RunSpec> = specs
            .iter()
            .filter(|s| s.started_at >= at && s.started_at < at + step)
            .collect();
        let runs: i64 = point["runs"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_i64().unwrap())
            .sum();
        assert_eq!(runs, started.len() as i64, "runs of the step at {at}");
        for status in ["success", "failed", "timeout"] {
            let want = started
                .iter()
                .flat_map(|s| &s.variants)
                .filter(|v| v.status == status)
                .count() as i64;
            assert_eq!(
                point["variants"][status].as_i64().unwrap_or(0),
                want,
                "{status} variants of the step at {at}"
            );
        }
        for (model, figures) in point["models"].as_object().unwrap() {
            let variants: Vec<_> = started
                .iter()
                .filter(|s| &s.model == model)
                .flat_map(|s| &s.variants)
                .collect();
            let errors = variants.iter().filter(|v| v.status != "success").count() as i64;
            assert_eq!(figures["finished"], variants.len() as i64);
            assert_eq!(figures["errors"], errors, "{model} at {at}");
        }
    }
    let page = get(&app, &format!("/monitor/overview?from={from}&to={to}"), &[]).await;
    assert_eq!(page.status, 200);
    // Four charts over time, then outcomes and latency per model and per prompt pack.
    assert_eq!(page.body.matches("<svg").count(), 8);
    for title in [
        "Runs by status over time",
        "Variants by status over time",
        "Success latency p50 and p95 per model over time",
        "Failure rate per model over time",
    ] {
        assert!(
            page.body.contains(&format!(r#"aria-label="{title}""#)),
            "{title}"
        );
    }
    // A fixed window does not refresh itself; a named one does, every minute.
    assert!(!page.body.contains("data-refresh-url"));
    let named = get(&app, "/monitor/overview?window=15m", &[]).await;
    assert!(
        named.body.contains(
            r#"data-refresh-url="/monitor/overview/live?window=15m" data-refresh-ms="60000""#
        ),
        "{}",
        named.body
    );
    let live = get(
        &app,
        &format!("/monitor/overview/live?from={from}&to={to}"),
        &[],
    )
    .await;
    assert_eq!(live.status, 200);
    assert_eq!(
        live.body.matches("<svg").count(),
        8,
        "the live fragment has the figures"
    );
    assert!(!live.body.contains("<form"), "and not the form");
    assert_eq!(
        get(&app, "/monitor/overview?window=2y", &[]).await.status,
        400
    );
    assert_eq!(
        get(&app, "/monitor/overview?refresh=2s", &[]).await.status,
        400
    );
}
on_both_backends!(the_overview_counts_outcomes_and_reads_percentiles);

/// Overview queries read every run in their window (seconds for 30 days), so only
/// `MONITOR_MAX_OVERVIEW_QUERIES` run at once and the rest of the monitor keeps the
/// other pooled connections. Here the overview is held up by a lock on the runs
/// table; a second overview waits for its turn without taking a connection, and the
/// dead-letters page is still served at once from a pool of two.
#[tokio::test]
async fn slow_overviews_leave_connections_for_the_other_pages() {
    let db = TestDb::new(Backend::Postgres).await;
    db.store().await;
    let options = telemetry_collector::store::StoreOptions {
        max_connections: 2,
        ..Default::default()
    };
    let store = telemetry_collector::store::connect(&db.url, &options)
        .await
        .unwrap();
    let monitor = MonitorSettings {
        max_overview_queries: 1,
        ..Default::default()
    };
    let app = app(store, monitor, CancellationToken::new());
    let operator = common::lock_table(&db.url, "render_runs").await;
    let overviews: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get(&app, "/api/v1/stats?window=30d", &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let page = get(&app, "/api/v1/dead-letters", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the dead-letters page waited {:?} for a connection",
        started.elapsed()
    );
    assert!(overviews.iter().all(|o| !o.is_finished()));
    common::unlock(operator).await;
    for overview in overviews {
        assert_eq!(overview.await.unwrap().status, 200);
    }
}
