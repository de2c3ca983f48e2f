//! NATS over TLS: a private nats-server that requires TLS with a certificate signed by
//! a CA made here (rcgen). With `NATS_TLS_CA` the SDK publishes through it and the
//! collector stores what it published (SQLite and Postgres); without the CA the same
//! connection is refused; a CA file that does not exist fails start-up in one line.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{all_rows, settings, spawn, wait_until, Backend, TestDb};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use telemetry::{EmitEvent, EventSource, EventType, NatsConfig, Telemetry, TelemetryConfig};
use test_support::{Isolation, NatsServer};

/// PEM files: the CA's certificate, and the server's certificate and key (for
/// 127.0.0.1 and localhost), signed by that CA.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A client certificate and key signed by the same CA.
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "telemetry test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "nats test server");
    let server_key = KeyPair::generate().unwrap();
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "telemetry-collector");
    let client_key = KeyPair::generate().unwrap();
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
    let write = |name: &str, pem: String| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("server.pem", server.pem()),
        key: write("server-key.pem", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client-key.pem", client_key.serialize_pem()),
        _dir: dir,
    }
}

fn nats(url: &str, ca: Option<&Path>) -> NatsConfig {
    NatsConfig {
        url: url.to_owned(),
        tls_ca_file: ca.map(Path::to_owned),
        ..NatsConfig::default()
    }
}

async fn the_sdk_publishes_through_tls_with_the_ca_and_fails_without_it(backend: Backend) {
    let pki = pki();
    let server = NatsServer::start_tls(&pki.cert, &pki.key);
    let url = server.url();

    // Without the CA the server's certificate is not trusted: no connection.
    let refused = tokio::time::timeout(
        Duration::from_secs(15),
        service_kit::nats::connect(&nats(&url, None)),
    )
    .await
    .expect("connect returns");
    assert!(refused.is_err(), "connected to a TLS server without its CA");
    // With it, the same server is reachable.
    let client = service_kit::nats::connect(&nats(&url, Some(&pki.ca)))
        .await
        .expect("TLS connection with the CA");
    assert!(client.server_info().tls_required, "the server requires TLS");
    drop(client);

    // SDK → TLS → collector (also over TLS) → database.
    let iso = Isolation::on(url.clone());
    let db = TestDb::new(backend).await;
    let mut collector_settings = settings(&iso, &db.url);
    collector_settings.nats.tls_ca_file = Some(pki.ca.clone());
    let collector = spawn(collector_settings).await;
    let config = TelemetryConfig {
        nats: nats(&url, Some(&pki.ca)),
        subject_prefix: iso.prefix.clone(),
        stream: iso.stream.clone(),
        stream_max_bytes: Isolation::STREAM_MAX_BYTES,
        service: "renderer".into(),
        ..Default::default()
    };
    let telemetry = Telemetry::start(config).expect("SDK starts");
    for n in 0..10 {
        telemetry
            .emit(EmitEvent {
                shop_id: "demo.myshopify.com".into(),
                request_id: format!("req-{n}"),
                run_id: String::new(),
                source: EventSource::AppProxy,
                event_type: EventType::SfRenderRequested,
                payload_json: format!(r#"{{"n":{n}}}"#),
            })
            .unwrap();
    }
    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.published, report.left, report.dropped), (10, 0, 0));
    let store = collector.store.clone();
    wait_until(
        Duration::from_secs(30),
        "the final ProducerStats stored",
        || async {
            store
                .producers()
                .await
                .unwrap_or_default()
                .iter()
                .any(|p| p.is_final == Some(true) && p.published == Some(10))
        },
    )
    .await;
    let events = all_rows(&db).await.events;
    assert_eq!(events.iter().filter(|e| e.kind == "event").count(), 10);
    collector.stop().await;
}
on_both_backends!(the_sdk_publishes_through_tls_with_the_ca_and_fails_without_it);

#[tokio::test]
async fn a_missing_ca_file_fails_start_up_in_one_line_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("t.db").display());
    let iso = Isolation::new();
    let mut settings = settings(&iso, &db_url);
    settings.nats.tls_ca_file = Some(dir.path().join("missing-ca.pem"));
    let err = match telemetry_collector::Application::build(settings).await {
        Ok(_) => panic!("started with a CA file that does not exist"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("NATS_TLS_CA"), "{err}");
    assert!(err.contains("missing-ca.pem"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn a_server_that_verifies_clients_accepts_the_client_certificate_only() {
    let pki = pki();
    let server = NatsServer::start_tls_verify(&pki.cert, &pki.key, &pki.ca);
    let url = server.url();
    let without = tokio::time::timeout(
        Duration::from_secs(15),
        service_kit::nats::connect(&nats(&url, Some(&pki.ca))),
    )
    .await
    .expect("connect returns");
    assert!(without.is_err(), "connected without a client certificate");
    let config = NatsConfig {
        tls_cert_file: Some(pki.client_cert.clone()),
        tls_key_file: Some(pki.client_key.clone()),
        ..nats(&url, Some(&pki.ca))
    };
    config.validate().expect("valid TLS settings");
    let client = service_kit::nats::connect(&config)
        .await
        .expect("TLS connection with a client certificate");
    client.flush().await.expect("a round trip over mutual TLS");
}

/// Postgres over TLS. The test server has TLS on (Debian's default, with its snakeoil
/// certificate). `sslmode=require` in `DATABASE_URL` gives the collector encrypted
/// connections (the server's `pg_stat_ssl` says so) that ingest works through;
/// `sslmode=verify-ca` with a CA that did not sign the server's certificate fails
/// start-up instead of falling back to plain text.
#[tokio::test]
async fn the_collector_reaches_postgres_over_tls_when_the_url_asks() {
    use sqlx::Connection as _;
    let db = TestDb::new(Backend::Postgres).await;
    let pg = db.pg.as_ref().expect("a Postgres database");
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        ssl, "on",
        "the test Postgres has TLS off; turn it on (`ssl = on` with a certificate in \
         postgresql.conf, Debian's default) and restart it"
    );

    let iso = Isolation::new();
    let tls_url = format!("{}?sslmode=require", db.url);
    let collector = spawn(settings(&iso, &tls_url)).await;
    let js = common::jetstream(&iso).await;
    let envelopes = common::run_envelopes("p-tls", 1, 0);
    common::publish_all(&js, &iso, &envelopes).await;
    common::wait_for_events(&collector.store, envelopes.len() as i64).await;
    let encrypted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1 AND a.application_name = 'telemetry-collector' AND s.ssl",
    )
    .bind(&pg.name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(encrypted >= 1, "no encrypted collector connection");
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = $1 AND a.application_name = 'telemetry-collector' AND NOT s.ssl",
    )
    .bind(&pg.name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(plain, 0, "a collector connection is not encrypted");
    collector.stop().await;
    admin.close().await.unwrap();

    // A CA that did not sign the server's certificate: refused, not downgraded.
    let pki = pki();
    let wrong_ca = format!(
        "{}?sslmode=verify-ca&sslrootcert={}",
        db.url,
        pki.ca.display()
    );
    let err = match telemetry_collector::Application::build(settings(&iso, &wrong_ca)).await {
        Ok(_) => panic!("connected to Postgres with a CA that did not sign its certificate"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("tls"),
        "{err}"
    );
}
