//! One error shape for scripts (issue 13, item 12): every error answer of `/api/v1/*`
//! and of unknown routes is `{"error": {"status", "code", "message"}}` as JSON,
//! whatever made it (a handler, the token check, the router itself); a monitor page
//! answers the same status with an HTML page carrying the same message and code; and
//! an unknown query parameter is a 400 naming it, on every API route and page, while
//! every parameter the pages' own forms and links send is still served.

mod common;
mod monitor_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestDb};
use monitor_support::*;
use serde_json::Value;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::store::Store;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cret-token-of-24-chars";

/// Asserts the JSON error shape, `status` and `code`; returns the message.
#[track_caller]
fn assert_json_error(answer: &Answer, status: u16, code: &str, what: &str) -> String {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert!(
        answer
            .header("content-type")
            .starts_with("application/json"),
        "{what}: content-type {:?}, body {}",
        answer.header("content-type"),
        answer.body
    );
    let json: Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|err| panic!("{what}: not JSON ({err}): {}", answer.body));
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .unwrap_or_else(|| panic!("{what}: not an object: {v}"))
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&json), BTreeSet::from(["error".to_owned()]), "{what}");
    let error = &json["error"];
    assert_eq!(
        keys(error),
        ["code", "message", "status"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        "{what}: {error}"
    );
    assert_eq!(error["status"], status, "{what}: {error}");
    assert_eq!(error["code"], code, "{what}: {error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: an empty message: {error}");
    message.to_owned()
}

/// The text of the element with `id` in a page, entities decoded.
fn element_text(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let open_end = start + html[start..].find('>')? + 1;
    let close = open_end + html[open_end..].find('<')?;
    Some(unescape(&html[open_end..close]))
}

/// HTML entities (named and numeric) decoded.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16).ok())
                .unwrap_or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Asserts an HTML error page with `status`, `code` and exactly `message` (when given);
/// returns the message it shows.
#[track_caller]
fn assert_html_error(answer: &Answer, status: u16, code: &str, message: Option<&str>) -> String {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(
        answer.header("content-type").starts_with("text/html"),
        "content-type {:?}: {}",
        answer.header("content-type"),
        answer.body
    );
    assert_eq!(answer.header("x-content-type-options"), "nosniff");
    assert_eq!(
        element_text(&answer.body, "error-code").as_deref(),
        Some(code),
        "{}",
        answer.body
    );
    let shown = element_text(&answer.body, "error-message")
        .unwrap_or_else(|| panic!("no error message on the page: {}", answer.body));
    if let Some(message) = message {
        assert_eq!(shown, message, "the page carries the API's message");
    }
    shown
}

async fn every_api_error_is_one_json_shape(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed_one_of_each(&store).await;
    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/api/v1/runs?limit=0", 400, "bad_parameter"),
        ("GET", "/api/v1/runs?cursor=x", 400, "bad_parameter"),
        ("GET", "/api/v1/runs?shop=a%00b", 400, "bad_parameter"),
        (
            "GET",
            "/api/v1/runs?status=a&status=b",
            400,
            "bad_parameter",
        ),
        ("GET", "/api/v1/events?from=yesterday", 400, "bad_parameter"),
        ("GET", "/api/v1/dead-letters?cursor=x", 400, "bad_parameter"),
        ("GET", "/api/v1/stats?window=2y", 400, "bad_parameter"),
        ("GET", "/api/v1/runs/run%00id", 400, "bad_parameter"),
        (
            "GET",
            "/api/v1/runs?statuss=failed",
            400,
            "unknown_parameter",
        ),
        ("GET", "/api/v1/runs/nope", 404, "not_found"),
        ("GET", "/api/v1/nope", 404, "unknown_route"),
        ("GET", "/api/v2/runs", 404, "unknown_route"),
        ("GET", "/nope", 404, "unknown_route"),
        ("POST", "/api/v1/runs", 405, "method_not_allowed"),
        ("DELETE", "/api/v1/runs/x", 405, "method_not_allowed"),
        ("PUT", "/api/v1/stats", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
    ];
    for (method, path, status, code) in cases {
        let answer = send(&app, method, path, &[], Vec::new()).await;
        assert_json_error(&answer, *status, code, &format!("{method} {path}"));
    }
    let refused = send(&app, "POST", "/api/v1/runs", &[], Vec::new()).await;
    assert_eq!(
        refused.header("allow"),
        "GET,HEAD",
        "405 says what is allowed"
    );

    // Behind a token: 401 (with its challenge) and, for wrong tokens over the
    // address's allowance, 429; both in the same shape.
    let guarded = app_with(
        &store,
        MonitorSettings {
            token: Some(TOKEN.into()),
            max_token_checks: 1,
            failed_auth_delay: Duration::from_millis(500),
            ..Default::default()
        },
    );
    let answer = get(&guarded, "/api/v1/runs", &[]).await;
    assert_json_error(&answer, 401, "unauthorized", "no token");
    assert_eq!(
        answer.header("www-authenticate"),
        "Bearer realm=\"monitor\""
    );
    let answer = get(&guarded, "/api/v1/nope", &[]).await;
    assert_json_error(
        &answer,
        404,
        "unknown_route",
        "unknown route behind a token",
    );
    let guesses: Vec<_> = (0..5)
        .map(|n| {
            let guarded = guarded.clone();
            tokio::spawn(async move {
                let bearer = format!("Bearer wrong-guess-{n}");
                get(&guarded, "/api/v1/runs", &[("authorization", &bearer)]).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for guess in guesses {
        let answer = guess.await.unwrap();
        match answer.status {
            429 => {
                assert_json_error(&answer, 429, "too_many_requests", "wrong tokens");
                assert_eq!(answer.header("retry-after"), "1");
            }
            _ => {
                assert_json_error(&answer, 401, "unauthorized", "a wrong token");
            }
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 4);
}
on_both_backends!(every_api_error_is_one_json_shape);

/// An overview that cannot get a query slot within `MONITOR_OVERVIEW_QUEUE_WAIT_MS` is
/// 503 in the same shape (Postgres: a lock on the runs table holds the one slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_overview_is_503_in_the_same_shape() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let app = app_with(
        &store,
        MonitorSettings {
            max_overview_queries: 1,
            overview_queue_wait: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let operator = common::lock_table(&db.url, "render_runs").await;
    // Two overviews: one takes the slot and waits on the lock, the other waits for
    // the slot and is answered 503 first.
    let overview = |path: &'static str| {
        let app = app.clone();
        tokio::spawn(async move { get(&app, path, &[]).await })
    };
    let mut first = overview("/api/v1/stats");
    let mut second = overview("/api/v1/stats?window=1h");
    let (busy, holder) = tokio::select! {
        answer = &mut first => (answer.unwrap(), second),
        answer = &mut second => (answer.unwrap(), first),
    };
    let message = assert_json_error(&busy, 503, "service_unavailable", "busy overview");
    assert_eq!(busy.header("retry-after"), "5");
    let page = get(&app, "/monitor/overview", &[]).await;
    assert_html_error(&page, 503, "service_unavailable", Some(&message));
    common::unlock(operator).await;
    assert_eq!(holder.await.unwrap().status, 200);
}

fn app_with(store: &Arc<dyn Store>, monitor: MonitorSettings) -> axum::Router {
    app(store.clone(), monitor, CancellationToken::new())
}

async fn pages_answer_the_same_status_and_message_as_html(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed_one_of_each(&store).await;
    let app = app_with(&store, MonitorSettings::default());
    let pairs = [
        ("/api/v1/runs?statuss=failed", "/monitor?statuss=failed"),
        ("/api/v1/runs?from=yesterday", "/monitor?from=yesterday"),
        (
            "/api/v1/runs?status=a&status=b",
            "/monitor?status=a&status=b",
        ),
        ("/api/v1/events?limit=0", "/monitor/events?limit=0"),
        ("/api/v1/runs/nope", "/monitor/runs/nope"),
        ("/api/v1/runs/run%00id", "/monitor/runs/run%00id"),
        (
            "/api/v1/dead-letters?cursor=x",
            "/monitor/dead-letters?cursor=x",
        ),
        ("/api/v1/stats?window=2y", "/monitor/overview?window=2y"),
        (
            "/api/v1/producers?x=%3Cb%3E",
            "/monitor/producers?x=%3Cb%3E",
        ),
    ];
    for (api, page) in pairs {
        let json = get(&app, api, &[]).await;
        let body: Value = json.json();
        let code = body["error"]["code"].as_str().unwrap_or_default();
        let message = assert_json_error(&json, json.status, code, api);
        let html = get(&app, page, &[]).await;
        assert_html_error(&html, json.status, code, Some(&message));
        assert!(!html.body.contains("<b>"), "{page}: the message is escaped");
    }
    // An unknown path under /monitor is a page too; a form body over the limit (the
    // login form is the one route that reads a body) is 413 on a page.
    let answer = get(&app, "/monitor/nope", &[]).await;
    assert_html_error(&answer, 404, "unknown_route", None);
    let big = format!("token={}", "x".repeat(100 * 1024));
    let answer = send(
        &app,
        "POST",
        "/monitor/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        big.into_bytes(),
    )
    .await;
    assert_html_error(&answer, 413, "payload_too_large", None);
    // More live views than allowed: 503 on a page too.
    let live = app_with(
        &store,
        MonitorSettings {
            max_live_clients: 1,
            ..Default::default()
        },
    );
    let held = open(&live, "/monitor/live/runs").await;
    assert_eq!(held.status(), 200);
    let answer = get(&live, "/monitor/live/events", &[]).await;
    let shown = assert_html_error(&answer, 503, "service_unavailable", None);
    assert!(shown.contains("too many live views"), "{shown}");
    drop(held);
}
on_both_backends!(pages_answer_the_same_status_and_message_as_html);

/// Every API route and page with `statuss=failed&zz=1`: a 400 that names both, not
/// everything unfiltered.
async fn unknown_query_parameters_are_a_400_naming_them(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (run, _) = seed_one_of_each(&store).await;
    let app = app_with(&store, MonitorSettings::default());
    let run_path = |prefix: &str| format!("{prefix}{}", run.run_id);
    let api = [
        "/api/v1/runs".to_owned(),
        run_path("/api/v1/runs/"),
        "/api/v1/events".to_owned(),
        "/api/v1/dead-letters".to_owned(),
        "/api/v1/producers".to_owned(),
        "/api/v1/stats".to_owned(),
        "/api/v1/openapi.json".to_owned(),
    ];
    let pages = [
        "/monitor".to_owned(),
        run_path("/monitor/runs/"),
        "/monitor/events".to_owned(),
        "/monitor/dead-letters".to_owned(),
        "/monitor/producers".to_owned(),
        "/monitor/overview".to_owned(),
        "/monitor/live/runs".to_owned(),
        "/monitor/live/events".to_owned(),
        run_path("/monitor/live/runs/"),
        "/monitor/login".to_owned(),
    ];
    for path in &api {
        // A known parameter beside them does not help.
        let query = if path == "/api/v1/runs" {
            "?status=failed&statuss=failed&zz=1"
        } else {
            "?statuss=failed&zz=1"
        };
        let answer = get(&app, &format!("{path}{query}"), &[]).await;
        let message = assert_json_error(&answer, 400, "unknown_parameter", path);
        assert!(
            message.contains("statuss") && message.contains("zz"),
            "{path}: {message}"
        );
    }
    for path in &pages {
        let answer = get(&app, &format!("{path}?statuss=failed&zz=1"), &[]).await;
        let message = assert_html_error(&answer, 400, "unknown_parameter", None);
        assert!(
            message.contains("statuss") && message.contains("zz"),
            "{path}: {message}"
        );
    }
}
on_both_backends!(unknown_query_parameters_are_a_400_naming_them);

/// `href="..."` values on a page that start with `prefix`, entities decoded.
fn links(html: &str, prefix: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with(prefix))
        .map(|href| href.replace("&amp;", "&"))
        .collect()
}

/// The `name` of every input and select of the page's filter form.
fn form_fields(html: &str) -> Vec<String> {
    let Some(start) = html.find("<form method=\"get\"") else {
        return Vec::new();
    };
    let form = &html[start..start + html[start..].find("</form>").unwrap()];
    form.split("name=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// What the pages send themselves is still served: every filter form submitted as a
/// browser does (every field, blanks included), every next-page link (with its
/// cursor), every live stream and the links between pages.
async fn the_pages_own_forms_and_links_are_still_served(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let specs: Vec<RunSpec> = (0..6)
        .map(|n| RunSpec::new(n, 1_700_000_000_000 + n as i64 * 1000))
        .collect();
    let envelopes: Vec<_> = specs.iter().flat_map(RunSpec::envelopes).collect();
    seed(&store, &envelopes, &[b"\x00dead one", b"\x00dead two"]).await;
    let app = app_with(&store, MonitorSettings::default());
    let pages = [
        "/monitor?limit=1&shop=shop-1.myshopify.com&from=2023-11-14T00:00&to=2030-01-01T00:00Z",
        "/monitor/events?limit=1&type=sf_render_requested&from=1700000000000",
        "/monitor/dead-letters?limit=1",
        "/monitor/overview?window=7d",
        "/monitor/producers",
    ];
    let mut followed = 0;
    for page_path in pages {
        let page = get(&app, page_path, &[]).await;
        assert_eq!(page.status, 200, "{page_path}: {}", page.body);
        let fields = form_fields(&page.body);
        if !fields.is_empty() {
            let path = page_path.split('?').next().unwrap();
            let query: Vec<String> = fields.iter().map(|f| format!("{f}=")).collect();
            let submitted = format!("{path}?{}", query.join("&"));
            let answer = get(&app, &submitted, &[]).await;
            assert_eq!(answer.status, 200, "{submitted}: {}", answer.body);
        }
        for link in links(&page.body, "/monitor") {
            if link.starts_with("/monitor/static/") {
                continue;
            }
            let answer = get(&app, &link, &[]).await;
            assert_eq!(answer.status, 200, "{link} on {page_path}: {}", answer.body);
            followed += 1;
        }
        if let Some(live) = page.body.split("data-live=\"").nth(1) {
            let live = live.split('"').next().unwrap().replace("&amp;", "&");
            let stream = open(&app, &live).await;
            assert_eq!(stream.status(), 200, "live {live} of {page_path}");
        }
    }
    assert!(followed > 10, "links followed: {followed}");
    // A run's page, its links and its live stream (while it runs).
    // Started now: a run started long ago without completion is stale, not followed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut running = RunSpec::new(9, now - 1_000);
    running.completed = false;
    running.variants[0].status = "running";
    seed(&store, &running.envelopes(), &[]).await;
    let path = format!("/monitor/runs/{}", running.run_id);
    let page = get(&app, &path, &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for link in links(&page.body, "/monitor/events") {
        assert_eq!(get(&app, &link, &[]).await.status, 200, "{link}");
    }
    let live = page
        .body
        .split("data-live=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a running run's page follows it live")
        .to_owned();
    assert_eq!(open(&app, &live).await.status(), 200, "{live}");
}
on_both_backends!(the_pages_own_forms_and_links_are_still_served);
