//! The database goes away mid-stream and comes back: `/readyz` says not ready while it
//! is gone, nothing is acked, nothing is lost, nothing is stored twice.

mod common;

use std::time::Duration;

use common::{
    ack_floor, http_get, jetstream, pg_addr, publish_all, run_envelopes, settings, spawn,
    wait_for_events, wait_until, Backend, Outage, TcpProxy, TestDb,
};
use telemetry_proto::v1;
use test_support::Isolation;

async fn the_database_going_away_loses_nothing_and_stores_nothing_twice(backend: Backend) {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let js = jetstream(&iso).await;
    let reader = db.store().await;

    let (collector_url, mut outage) = Outage::prepare(&db).await;
    let mut s = settings(&iso, &collector_url);
    s.store.busy_timeout = Duration::from_millis(200);
    s.store.acquire_timeout = Duration::from_secs(1);
    s.ack_wait = Duration::from_secs(3);
    let collector = spawn(s).await;

    let first: Vec<v1::Envelope> = (0..5)
        .flat_map(|run| run_envelopes("renderer-e", run as u64 * 7, run))
        .collect();
    publish_all(&js, &iso, &first).await;
    wait_for_events(&reader, first.len() as i64).await;
    assert_eq!(http_get(collector.port, "/readyz").await.0, 200);

    // The database goes away.
    outage.cut().await;
    let second: Vec<v1::Envelope> = (5..10)
        .flat_map(|run| run_envelopes("renderer-e", run as u64 * 7, run))
        .collect();
    publish_all(&js, &iso, &second).await;
    let port = collector.port;
    wait_until(
        Duration::from_secs(20),
        "/readyz reports the database",
        || async {
            let (status, body) = http_get(port, "/readyz").await;
            status == 503 && body.contains("last batch write failed")
        },
    )
    .await;
    let (_, body) = http_get(port, "/readyz").await;
    let cause = match backend {
        // The proxy drops connections: the cause, not the pool's "timed out".
        Backend::Postgres => "connection failed",
        Backend::Sqlite => "database locked",
    };
    assert!(
        body.contains(cause) && !body.contains("pool timed out"),
        "/readyz names the cause ({cause}): {body}"
    );
    let (_, metrics) = http_get(port, "/metrics").await;
    assert!(
        metrics.contains("collector_db_up 0"),
        "/metrics agrees with /readyz: {metrics}"
    );
    // Let it retry for longer than the ack wait: in-progress acks keep the batch ours.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(collector.metrics.db_errors() >= 2, "it kept retrying");
    // Nothing of the failing batch was acked: the consumer's ack floor is still the
    // last message of the first (committed) batch.
    assert_eq!(
        ack_floor(&js, &iso).await,
        first.len() as u64,
        "acked while the database was down"
    );
    match &mut outage {
        Outage::Lock(locker) => {
            let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM monitor_events")
                .fetch_one(&mut *locker)
                .await
                .unwrap();
            assert_eq!(count, first.len() as i64, "nothing written while locked");
        }
        Outage::Proxy(_) => {
            assert_eq!(reader.event_count().await.unwrap(), first.len() as i64);
        }
    }

    // It comes back.
    outage.restore().await;
    let total = (first.len() + second.len()) as i64;
    wait_for_events(&reader, total).await;
    wait_until(Duration::from_secs(20), "/readyz ready again", || async {
        http_get(port, "/readyz").await.0 == 200
    })
    .await;
    let producers = reader.producers().await.unwrap();
    assert_eq!(producers[0].stored_events, total, "each event counted once");
    assert_eq!(collector.metrics.events_stored(), total as u64);
    assert_eq!(common::first_runs(&reader).await.len(), 10);
    collector.stop().await;
}
on_both_backends!(the_database_going_away_loses_nothing_and_stores_nothing_twice);

/// Shutting down while the database is away, with two Postgres batches retrying at
/// once (`DATABASE_WRITERS` = 2): the collector stops promptly, acks nothing of
/// either, NAKs both, and a collector started later stores every event once at once,
/// without waiting out the (long) ack wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_two_batches_retry_acks_neither_and_loses_nothing() {
    let iso = Isolation::new();
    let db = TestDb::new(Backend::Postgres).await;
    let js = jetstream(&iso).await;
    let reader = db.store().await;
    let proxy = TcpProxy::start(pg_addr(&db.url)).await;
    let through_proxy = db
        .url
        .replace(&pg_addr(&db.url).to_string(), &proxy.addr.to_string());
    let mut s = settings(&iso, &through_proxy);
    s.store.acquire_timeout = Duration::from_secs(1);
    // Longer than `wait_for_events` waits: the next collector gets the batches only
    // because shutdown NAKed them, not because the ack wait passed.
    s.ack_wait = Duration::from_secs(60);
    assert_eq!(s.store.writers, 2, "the default");
    let collector = spawn(s).await;

    let first = run_envelopes("renderer-s", 0, 0);
    publish_all(&js, &iso, &first).await;
    wait_for_events(&reader, first.len() as i64).await;

    proxy.cut();
    // Two batches (the linger is 20 ms), each retrying on its own writer.
    let second = run_envelopes("renderer-s", 100, 1);
    let third = run_envelopes("renderer-s", 200, 2);
    publish_all(&js, &iso, &second).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_all(&js, &iso, &third).await;
    let metrics = collector.metrics.clone();
    let unacked = second.len() + third.len();
    let stream = js.get_stream(&iso.stream).await.unwrap();
    wait_until(
        Duration::from_secs(20),
        "both batches delivered and failing",
        || async {
            let info = stream
                .consumer_info(telemetry_collector::config::DEFAULT_CONSUMER)
                .await
                .unwrap();
            info.num_ack_pending == unacked && metrics.db_errors() >= 4
        },
    )
    .await;
    tokio::time::timeout(Duration::from_secs(15), collector.stop())
        .await
        .expect("the collector stops while its batches retry");

    assert_eq!(
        ack_floor(&js, &iso).await,
        first.len() as u64,
        "acked while the database was away"
    );

    proxy.restore();
    let again = spawn(settings(&iso, &db.url)).await;
    let total = (first.len() + second.len() + third.len()) as i64;
    wait_for_events(&reader, total).await;
    assert_eq!(common::first_runs(&reader).await.len(), 3);
    again.stop().await;
}

/// Postgres goes away while nothing is being written: `/metrics` alone notices (its
/// `collector_db_up` comes from the same state as `/readyz`, refreshed by a ping), the
/// two agree at every moment, and both recover when it comes back. Before, the gauge
/// said up until a batch failed, while `/readyz` already said not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_collector_reports_an_outage_alike_on_readyz_and_metrics() {
    let iso = Isolation::new();
    let db = TestDb::new(Backend::Postgres).await;
    let (collector_url, mut outage) = Outage::prepare(&db).await;
    let mut s = settings(&iso, &collector_url);
    s.store.acquire_timeout = Duration::from_secs(1);
    let collector = spawn(s).await;
    let port = collector.port;
    let up = |metrics: &str| metrics.contains("collector_db_up 1");
    assert!(up(&http_get(port, "/metrics").await.1));

    outage.cut().await;
    wait_until(
        Duration::from_secs(20),
        "/metrics notices alone",
        || async { !up(&http_get(port, "/metrics").await.1) },
    )
    .await;
    let (status, body) = http_get(port, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unreachable"), "{body}");
    assert!(!up(&http_get(port, "/metrics").await.1), "still agrees");

    outage.restore().await;
    wait_until(Duration::from_secs(20), "/readyz ready again", || async {
        http_get(port, "/readyz").await.0 == 200
    })
    .await;
    assert!(up(&http_get(port, "/metrics").await.1), "agrees again");
    collector.stop().await;
}
