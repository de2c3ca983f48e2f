//! The health strip (issue 15, item 1): every page loads it, and `/monitor/health`
//! and `/api/v1/health` say green, amber or red by the documented rules. An outage
//! (the last 15 minutes failing far above the usual rate) must read apart from the
//! usual error rate; a dead broker shows; a pipeline gone quiet shows. On SQLite and
//! Postgres.

mod common;
mod monitor_support;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, TestDb};
use monitor_support::*;
use serde_json::Value;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::http::{router, AppState};
use telemetry_collector::metrics::Metrics;
use telemetry_collector::monitor::Monitor;
use tokio_util::sync::CancellationToken;

const MINUTE: i64 = 60_000;

fn now_ms() -> i64 {
    service_kit::now_ms()
}

/// A run started `ago` ms before now whose variants end with `statuses`.
fn run(n: usize, ago: i64, statuses: &[&'static str]) -> RunSpec {
    let mut spec = RunSpec::new(n, now_ms() - ago);
    spec.variants = statuses
        .iter()
        .enumerate()
        .map(|(i, status)| VariantSpec {
            id: format!("v{i}"),
            status,
            latency_ms: if *status == "success" { 2_000 } else { 90 },
            error_message: if *status == "success" {
                String::new()
            } else {
                format!("provider said 503 for request {n}")
            },
            image_key: format!("runs/{n}/v{i}.png"),
        })
        .collect();
    spec
}

fn signal<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["signals"]
        .as_array()
        .unwrap_or_else(|| panic!("no signals in {health}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no signal {name} in {health}"))
}

async fn check_outage(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    // The usual day: one variant in ten fails.
    let mut envelopes = Vec::new();
    for n in 0..40 {
        let statuses: &[&'static str] = if n % 5 == 0 {
            &["success", "failed"]
        } else {
            &["success", "success"]
        };
        envelopes.extend(run(n, 2 * 60 * MINUTE + n as i64 * 20 * MINUTE, statuses).envelopes());
    }
    seed(&store, &envelopes, &[]).await;
    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );

    let healthy = get(&app, "/api/v1/health", &[]).await;
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    let healthy = healthy.json();
    assert_eq!(
        signal(&healthy, "failure_rate")["level"],
        "green",
        "{healthy}"
    );
    // Last run 2 h ago on a day with runs: the pipeline may have stopped.
    assert_eq!(signal(&healthy, "last_run")["level"], "amber", "{healthy}");
    assert_eq!(signal(&healthy, "dead_letters")["value"], "0");
    assert_eq!(signal(&healthy, "broker")["value"], "not used");
    assert_eq!(signal(&healthy, "database")["level"], "green");

    // The outage: the last ten minutes, every variant fails; plus one dead letter.
    let mut outage = Vec::new();
    for n in 100..112 {
        outage.extend(run(n, (n as i64 - 100) * 50_000, &["failed", "timeout"]).envelopes());
    }
    seed(&store, &outage, &[b"not an envelope"]).await;
    // A fresh app: the 24-hour rate is kept a minute, as it should be.
    let app = app_with(store.clone(), None);
    let health = get(&app, "/api/v1/health", &[]).await.json();
    assert_eq!(health["level"], "red", "{health}");
    let failures = signal(&health, "failure_rate");
    assert_eq!(failures["level"], "red", "{health}");
    assert!(
        failures["value"].as_str().unwrap().starts_with("100.0% / "),
        "{failures}"
    );
    assert!(
        failures["detail"]
            .as_str()
            .unwrap()
            .contains("24 of 24 variants failed or timed out"),
        "{failures}"
    );
    assert_eq!(signal(&health, "last_run")["level"], "green", "{health}");
    // The runs-per-minute link lists the last 15 minutes' runs.
    let link = signal(&health, "runs_per_minute")["link"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = get(&app, &link.replacen("/monitor", "/api/v1/runs", 1), &[]).await;
    assert_eq!(listed.status, 200, "{link}: {}", listed.body);
    assert_eq!(
        listed.json()["runs"].as_array().unwrap().len(),
        12,
        "{link}"
    );
    assert_eq!(signal(&health, "dead_letters")["level"], "amber");
    assert_eq!(signal(&health, "dead_letters")["value"], "1");
    let per_minute: f64 = signal(&health, "runs_per_minute")["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((per_minute - 12.0 / 15.0).abs() < 0.01, "{health}");

    // The same as HTML, for the strip every page loads.
    let strip = get(&app, "/monitor/health", &[]).await;
    assert_eq!(strip.status, 200);
    assert!(strip.body.contains("health-red"), "{}", strip.body);
    assert!(strip.body.contains("Failing"), "{}", strip.body);
    assert!(
        strip.body.contains("24 of 24 variants failed"),
        "{}",
        strip.body
    );
    for page in [
        "/monitor",
        "/monitor/overview",
        "/monitor/events",
        "/monitor/producers",
    ] {
        let page = get(&app, page, &[]).await;
        assert!(
            page.body.contains(r#"data-health="/monitor/health""#),
            "no health strip on a page: {}",
            page.body
        );
    }
    // Unknown parameters are refused like everywhere else.
    assert_eq!(get(&app, "/api/v1/health?x=1", &[]).await.status, 400);
}

fn app_with(
    store: Arc<dyn telemetry_collector::store::Store>,
    nats: Option<async_nats::Client>,
) -> axum::Router {
    let metrics = Arc::new(Metrics::default());
    if nats.is_some() {
        // As the ingest loop does once it has its consumer.
        metrics.set_consumer_attached();
    }
    router(AppState {
        store,
        metrics,
        nats,
        max_body_bytes: 64 * 1024,
        monitor: Monitor::new(&MonitorSettings::default(), CancellationToken::new()),
    })
}

#[tokio::test]
async fn an_outage_reads_red_apart_from_the_usual_error_rate_on_sqlite() {
    check_outage(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_outage_reads_red_apart_from_the_usual_error_rate_on_postgres() {
    check_outage(Backend::Postgres).await;
}

/// The broker going away turns the strip red (before: no banner at all).
#[tokio::test]
async fn a_broker_that_went_away_reads_red() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let mut server = test_support::NatsServer::start();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .unwrap();
    let app = app_with(store, Some(client.clone()));
    let health = get(&app, "/api/v1/health", &[]).await.json();
    assert_eq!(signal(&health, "broker")["level"], "green", "{health}");
    assert_eq!(signal(&health, "broker")["value"], "connected");

    server.kill();
    common::wait_until(Duration::from_secs(10), "the client notices", || async {
        client.connection_state() != async_nats::connection::State::Connected
    })
    .await;
    let health = get(&app, "/api/v1/health", &[]).await.json();
    assert_eq!(health["level"], "red", "{health}");
    let broker = signal(&health, "broker");
    assert_eq!(broker["level"], "red");
    assert!(
        broker["detail"].as_str().unwrap().contains("not connected"),
        "{broker}"
    );
}
