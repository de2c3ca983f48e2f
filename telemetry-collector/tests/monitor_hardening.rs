//! The monitor against hostile clients (issue 11, items 6–9): wrong tokens cannot lock
//! the right one out, sessions are revocable and expire, control characters in filters
//! and a bad `next` are refused cleanly, and `/readyz` off loopback names no database
//! error.

mod common;
mod monitor_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::connect_info::MockConnectInfo;
use clap::Parser as _;
use common::{Backend, TestDb};
use monitor_support::*;
use telemetry_collector::config::{Cli, Command, MonitorSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cret-token-of-24-chars";

fn with_token() -> MonitorSettings {
    MonitorSettings {
        token: Some(TOKEN.into()),
        ..Default::default()
    }
}

/// The `name=value` part of a login answer's `Set-Cookie`.
fn session_of(login: &Answer) -> String {
    assert_eq!(login.status, 303, "login: {}", login.body);
    let cookie = login.header("set-cookie");
    assert!(
        cookie.starts_with("monitor_session="),
        "no session cookie: {cookie:?}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

async fn login(app: &axum::Router) -> String {
    session_of(&post_form(app, "/monitor/login", &format!("token={TOKEN}")).await)
}

/// A wrong guess: half as bearer header, half on the login form.
async fn guess(app: axum::Router, n: usize) -> Answer {
    if n.is_multiple_of(2) {
        let bearer = format!("Bearer wrong-guess-number-{n}");
        get(&app, "/api/v1/runs", &[("authorization", &bearer)]).await
    } else {
        post_form(&app, "/monitor/login", &format!("token=wrong-guess-{n}")).await
    }
}

// ---- 6. Token lockout -------------------------------------------------------------

/// Forty wrong tokens in parallel from one client (no peer address: the shared
/// bucket, the worst case) fill the failure throttle, yet the right token is answered
/// at once, as header and on the login form; the wrong ones are still throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_in_parallel_do_not_lock_out_the_right_one() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = app(db.store().await, with_token(), CancellationToken::new());

    let guesses: Vec<_> = (0..40)
        .map(|n| tokio::spawn(guess(app.clone(), n)))
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;

    let started = Instant::now();
    let bearer = format!("Bearer {TOKEN}");
    let right = get(&app, "/api/v1/runs", &[("authorization", &bearer)]).await;
    assert_eq!(right.status, 200, "the right token: {}", right.body);
    let page = get(&app, "/monitor", &[("authorization", &bearer)]).await;
    assert_eq!(page.status, 200);
    let session = login(&app).await;
    assert_eq!(
        get(&app, "/monitor", &[("cookie", &session)]).await.status,
        200
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the right token waited {:?} behind the guesses",
        started.elapsed()
    );

    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.unwrap().status);
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(
        checked,
        telemetry_collector::monitor::auth::DEFAULT_MAX_TOKEN_CHECKS,
        "failures are still throttled: {statuses:?}"
    );
}

/// The failure throttle is per client address: one address flooding with wrong
/// tokens gets 429, while a wrong token from another address is still checked (401
/// after the delay, not 429) and the right one from the flooding address passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_address_has_its_own_failure_budget() {
    let db = TestDb::new(Backend::Sqlite).await;
    let monitor = MonitorSettings {
        failed_auth_delay: Duration::from_millis(600),
        ..with_token()
    };
    let app = app(db.store().await, monitor, CancellationToken::new());
    let flooder = app.clone().layer(MockConnectInfo(SocketAddr::from((
        [203, 0, 113, 7],
        40_000,
    ))));
    let other = app.layer(MockConnectInfo(SocketAddr::from((
        [198, 51, 100, 9],
        40_001,
    ))));

    let flood: Vec<_> = (0..20)
        .map(|n| tokio::spawn(guess(flooder.clone(), n)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let elsewhere = guess(other.clone(), 0).await;
    assert_eq!(
        elsewhere.status, 401,
        "another address's wrong token is checked, not refused: {}",
        elsewhere.body
    );
    let bearer = format!("Bearer {TOKEN}");
    let right = get(&flooder, "/api/v1/runs", &[("authorization", &bearer)]).await;
    assert_eq!(right.status, 200);
    let mut refused = 0;
    for answer in flood {
        let answer = answer.await.unwrap();
        if answer.status == 429 {
            assert_eq!(answer.header("retry-after"), "1");
            refused += 1;
        }
    }
    assert_eq!(
        refused,
        20 - telemetry_collector::monitor::auth::DEFAULT_MAX_TOKEN_CHECKS
    );
}

/// One raw HTTP/1.1 request on `127.0.0.1:port`: status and body.
async fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

/// The same through a served collector over TCP, one client (127.0.0.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_the_right_token_is_served_while_wrong_ones_flood() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = telemetry_collector::Settings::new(
        "nats://127.0.0.1:4222",
        "telemetry",
        "TELEMETRY",
        &db.url,
    );
    settings.ingest = false;
    settings.monitor = with_token();
    let collector = common::spawn(settings).await;
    let port = collector.port;

    let flood: Vec<_> = (0..30)
        .map(|n| {
            tokio::spawn(async move {
                let bearer = format!("Bearer wrong-guess-number-{n}");
                http(port, "GET", "/api/v1/runs", &[("Authorization", &bearer)]).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = http(port, "GET", "/api/v1/runs", &[("Authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_millis(500));
    for answer in flood {
        let (status, _) = answer.await.unwrap();
        assert!(status == 401 || status == 429, "{status}");
    }
    collector.stop().await;
}

// ---- 7. Sessions ------------------------------------------------------------------

/// Each login is a session of its own; logging out revokes that session on the
/// server, so the same cookie replayed afterwards is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_session_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = app(db.store().await, with_token(), CancellationToken::new());
    let first = login(&app).await;
    let second = login(&app).await;
    assert_ne!(first, second, "every login gets a fresh random session id");
    assert_eq!(first.len(), "monitor_session=".len() + 64, "{first}");
    assert!(!first.contains(TOKEN));
    for session in [&first, &second] {
        assert_eq!(
            get(&app, "/monitor", &[("cookie", session)]).await.status,
            200
        );
        assert_eq!(
            get(&app, "/api/v1/runs", &[("cookie", session)])
                .await
                .status,
            200
        );
    }

    let logout = logout(&app, &first).await;
    assert_eq!(logout.status, 303);
    assert!(logout.header("set-cookie").contains("Max-Age=0"));

    let page = get(&app, "/monitor", &[("cookie", &first)]).await;
    assert_eq!(page.status, 303, "a revoked session still opens pages");
    assert!(page.header("location").starts_with("/monitor/login"));
    assert_eq!(
        get(&app, "/api/v1/runs", &[("cookie", &first)])
            .await
            .status,
        401
    );
    // The other session is untouched.
    assert_eq!(
        get(&app, "/monitor", &[("cookie", &second)]).await.status,
        200
    );
}

/// A session lives `MONITOR_SESSION_TTL`; the cookie says so too (`Max-Age`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let monitor = MonitorSettings {
        session_ttl: Duration::from_secs(1),
        ..with_token()
    };
    let app = app(db.store().await, monitor, CancellationToken::new());
    let login = post_form(&app, "/monitor/login", &format!("token={TOKEN}")).await;
    assert!(
        login.header("set-cookie").contains("Max-Age=1"),
        "{}",
        login.header("set-cookie")
    );
    let session = session_of(&login);
    assert_eq!(
        get(&app, "/monitor", &[("cookie", &session)]).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        get(&app, "/monitor", &[("cookie", &session)]).await.status,
        303,
        "an expired session still opens pages"
    );
    assert_eq!(
        get(&app, "/api/v1/runs", &[("cookie", &session)])
            .await
            .status,
        401
    );
}

/// Sessions live in the collector's memory: a restart (with the same token or a new
/// one) ends every session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_ends_every_session() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let before = app(store.clone(), with_token(), CancellationToken::new());
    let session = login(&before).await;
    let same_token = app(store.clone(), with_token(), CancellationToken::new());
    assert_eq!(
        get(&same_token, "/monitor", &[("cookie", &session)])
            .await
            .status,
        303
    );
    let new_token = MonitorSettings {
        token: Some("another-token-of-24-chars".into()),
        ..Default::default()
    };
    let rotated = app(store, new_token, CancellationToken::new());
    assert_eq!(
        get(&rotated, "/monitor", &[("cookie", &session)])
            .await
            .status,
        303
    );
}

// ---- 8. Bad input -----------------------------------------------------------------

async fn control_characters_in_filters_are_a_400_naming_the_parameter(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed(&store, &RunSpec::new(1, 1_700_000_000_000).envelopes(), &[]).await;
    let app = app(store, MonitorSettings::default(), CancellationToken::new());
    let cases = [
        ("/api/v1/runs?shop=a%00b", "shop"),
        ("/api/v1/runs?status=%00", "status"),
        ("/api/v1/runs?model=m%00", "model"),
        (
            "/api/v1/runs?prompt_pack_version=%00x",
            "prompt_pack_version",
        ),
        ("/api/v1/runs?q=run%00", "q"),
        ("/api/v1/runs?cursor=1700000000000%3Aa%00b", "cursor"),
        ("/api/v1/runs?shop=a%0Ab", "shop"),
        ("/api/v1/runs?shop=a%1Fb", "shop"),
        ("/api/v1/runs?shop=a%7Fb", "shop"),
        ("/api/v1/events?type=%00", "type"),
        ("/api/v1/events?source=%00", "source"),
        ("/api/v1/events?shop=%00", "shop"),
        ("/api/v1/events?request_id=req%00", "request_id"),
        ("/api/v1/events?cursor=1%3A%00", "cursor"),
        ("/api/v1/runs/run%00id", "run id"),
        ("/monitor?shop=%00", "shop"),
        ("/monitor?q=%0D%0A", "q"),
        ("/monitor/events?source=%00", "source"),
        ("/monitor/runs/run%00id", "run id"),
        ("/monitor/live/runs?shop=%00", "shop"),
        ("/monitor/live/events?request_id=%00", "request_id"),
        ("/monitor/live/runs/run%00id", "run id"),
    ];
    for (path, parameter) in cases {
        let answer = get(&app, path, &[]).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert!(
            answer.body.contains(parameter) && answer.body.contains("control character"),
            "{path}: the refusal names {parameter}: {}",
            answer.body
        );
    }
    // Ordinary text, including non-ASCII and a tab-free space, is still a filter.
    for path in [
        "/api/v1/runs?shop=caf%C3%A9.myshopify.com",
        "/api/v1/runs?q=a%20b",
        "/monitor?shop=shop-1.myshopify.com",
        "/api/v1/events?source=app_proxy",
    ] {
        assert_eq!(get(&app, path, &[]).await.status, 200, "{path}");
    }
}
on_both_backends!(control_characters_in_filters_are_a_400_naming_the_parameter);

/// The login form's `next` only ever leads to a same-site path: CR/LF (a header
/// injection), `//host`, `/\host`, absolute URLs and non-ASCII fall back to `/monitor`;
/// an ordinary monitor path with its query survives.
async fn login_next_is_a_safe_redirect(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = app(db.store().await, with_token(), CancellationToken::new());
    for next in [
        "%2Fmonitor%0D%0ASet-Cookie%3A%20x%3D1",
        "%2Fmonitor%0Aevil",
        "%2Fmonitor%00",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "https%3A%2F%2Fevil.example",
        "%2Fmonitor%2Fruns%2F%C3%BC",
        "%2Fmonitor%2Flogin",
        "monitor",
    ] {
        let answer = post_form(
            &app,
            "/monitor/login",
            &format!("token={TOKEN}&next={next}"),
        )
        .await;
        assert_eq!(answer.status, 303, "next={next}: {}", answer.body);
        assert_eq!(answer.header("location"), "/monitor", "next={next}");
        let page = get(&app, &format!("/monitor/login?next={next}"), &[]).await;
        assert_eq!(page.status, 200, "login page, next={next}");
        assert!(
            page.body.contains(r#"name="next" value="/monitor""#),
            "next={next}"
        );
    }
    let kept = post_form(
        &app,
        "/monitor/login",
        &format!("token={TOKEN}&next=%2Fmonitor%2Fevents%3Fsource%3Dapp_proxy%26limit%3D5"),
    )
    .await;
    assert_eq!(
        kept.header("location"),
        "/monitor/events?source=app_proxy&limit=5"
    );
}
on_both_backends!(login_next_is_a_safe_redirect);

// ---- 9. /readyz off loopback ------------------------------------------------------

/// Settings as `serve` builds them from its flags, without ingest (no broker needed).
fn serve_settings(addr: &str, database_url: &str) -> telemetry_collector::Settings {
    let cli = Cli::try_parse_from([
        "telemetry-collector",
        "serve",
        "--addr",
        addr,
        "--monitor-token",
        TOKEN,
        "--database-url",
        database_url,
    ])
    .expect("flags parse");
    let Command::Serve(args) = cli.command else {
        unreachable!()
    };
    let mut settings = args.settings().expect("settings");
    settings.ingest = false;
    settings
}

/// A write failure with detail: off loopback `/readyz` says only `unavailable`; on
/// loopback it keeps the cause.
async fn readyz_off_loopback_names_no_database_error(backend: Backend) {
    let db = TestDb::new(backend).await;
    for (addr, detailed) in [("0.0.0.0:0", false), ("127.0.0.1:0", true)] {
        let collector = common::spawn(serve_settings(addr, &db.url)).await;
        let (status, body) = common::http_get(collector.port, "/readyz").await;
        assert_eq!(status, 200, "{addr}: {body}");
        collector
            .metrics
            .db_failed("disk full: /srv/secret/telemetry.db: error returned from database".into());
        let (status, body) = common::http_get(collector.port, "/readyz").await;
        assert_eq!(status, 503, "{addr}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["ready"], false);
        if detailed {
            assert!(
                body.contains("/srv/secret"),
                "{addr}: loopback keeps the cause: {body}"
            );
        } else {
            assert_eq!(json["database"], "unavailable", "{addr}: {body}");
            assert!(
                !body.contains("secret") && !body.contains("disk full"),
                "{body}"
            );
        }
        collector.stop().await;
    }
}
on_both_backends!(readyz_off_loopback_names_no_database_error);

/// The ping path: Postgres goes away behind a proxy; off loopback `/readyz` says
/// `unavailable` without the connection error (host, port, driver message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_off_loopback_hides_a_failed_ping() {
    let db = TestDb::new(Backend::Postgres).await;
    db.store().await;
    let proxy = common::TcpProxy::start(common::pg_addr(&db.url)).await;
    let url = db.url.replace(
        &common::pg_addr(&db.url).to_string(),
        &proxy.addr.to_string(),
    );
    let mut settings = serve_settings("0.0.0.0:0", &url);
    settings.store.acquire_timeout = Duration::from_secs(1);
    let collector = common::spawn(settings).await;
    let port = collector.port;
    assert_eq!(common::http_get(port, "/readyz").await.0, 200);
    proxy.cut();
    common::wait_until(Duration::from_secs(20), "/readyz 503", || async {
        common::http_get(port, "/readyz").await.0 == 503
    })
    .await;
    let (_, body) = common::http_get(port, "/readyz").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["database"], "unavailable", "{body}");
    assert!(!body.contains(&proxy.addr.port().to_string()), "{body}");
    proxy.restore();
    collector.stop().await;
}
