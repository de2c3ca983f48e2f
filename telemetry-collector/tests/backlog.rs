//! What an operator sees of the broker's backlog while the database is away: the
//! collector's `/metrics` report the consumer's backlog as the broker counts it (not
//! yet delivered, delivered but unacked) and the age of the oldest unacked message,
//! growing while the outage lasts, and all of it falls to 0 once the database is back.
//! The oldest unacked message is found even when the stream no longer holds the one
//! right after the ack floor (gone past the stream's max age, or deleted).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    http_get, jetstream, publish_all, run_envelopes, settings, spawn, wait_for_events, wait_until,
    Backend, Outage, TestDb,
};
use telemetry_collector::backlog::{self, BacklogWatcher};
use telemetry_collector::config::DEFAULT_CONSUMER;
use telemetry_collector::metrics::Metrics;
use telemetry_proto::v1;
use test_support::Isolation;

/// The value of an unlabelled sample `name` in Prometheus text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The three backlog gauges: pending, ack pending, oldest unacked age (seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Backlog {
    pending: f64,
    ack_pending: f64,
    oldest_age: f64,
}

async fn backlog(port: u16) -> Option<Backlog> {
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200);
    Some(Backlog {
        pending: sample(&body, "collector_consumer_pending")?,
        ack_pending: sample(&body, "collector_consumer_ack_pending")?,
        oldest_age: sample(&body, "collector_oldest_unacked_age_seconds")?,
    })
}

async fn the_backlog_of_an_outage_is_reported_and_drains(backend: Backend) {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let js = jetstream(&iso).await;
    let reader = db.store().await;
    let (collector_url, mut outage) = Outage::prepare(&db).await;
    let mut s = settings(&iso, &collector_url);
    s.store.busy_timeout = Duration::from_millis(200);
    s.store.acquire_timeout = Duration::from_secs(1);
    // Small batches and a small unacked window: during the outage the broker delivers
    // 100 messages and keeps the rest, so both gauges have something to count.
    s.batch_size = 20;
    s.max_ack_pending = 100;
    s.backlog_interval = Duration::from_secs(1);
    let collector = spawn(s).await;
    let port = collector.port;

    let first = run_envelopes("renderer-b", 0, 0);
    publish_all(&js, &iso, &first).await;
    wait_for_events(&reader, first.len() as i64).await;

    // The database goes away; a few hundred envelopes pile up on the broker.
    outage.cut().await;
    let second: Vec<v1::Envelope> = (1..44)
        .flat_map(|run| run_envelopes("renderer-b", run as u64 * 7, run))
        .collect();
    let backlog_len = second.len() as f64;
    let before_first = Instant::now();
    publish_all(&js, &iso, &second[..1]).await;
    let after_first = Instant::now();
    publish_all(&js, &iso, &second[1..]).await;

    // The gauges match the broker's own count, both parts of the backlog at once.
    let stream = js.get_stream(&iso.stream).await.unwrap();
    let started = Instant::now();
    let first_seen = loop {
        let (_, body) = http_get(port, "/metrics").await;
        let info = stream.consumer_info(DEFAULT_CONSUMER).await.unwrap();
        let seen = backlog(port).await;
        if let Some(now) = seen {
            if now.pending == info.num_pending as f64
                && now.ack_pending == info.num_ack_pending as f64
                && now.pending + now.ack_pending == backlog_len
                && now.oldest_age > 0.0
            {
                break now;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/metrics never showed the broker's backlog of {backlog_len} (broker: {} pending, \
             {} ack pending); last seen: {seen:?}, collector_consumer_pending {:?}",
            info.num_pending,
            info.num_ack_pending,
            sample(&body, "collector_consumer_pending"),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        first_seen.pending > 0.0 && first_seen.ack_pending > 0.0,
        "both parts of the backlog: {first_seen:?}"
    );
    // The oldest unacked is the first envelope published after the cut.
    let age = backlog(port).await.unwrap().oldest_age;
    let (newest, oldest) = (
        after_first.elapsed().as_secs_f64(),
        before_first.elapsed().as_secs_f64(),
    );
    assert!(
        age >= newest - 0.5 && age <= oldest + 0.5,
        "oldest unacked age {age} s, published between {oldest} s and {newest} s ago"
    );
    // It grows while the outage lasts.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let later = backlog(port).await.unwrap();
    assert!(
        later.oldest_age >= age + 2.0,
        "the age grows: {age} s, then {later:?}"
    );
    assert_eq!(later.pending + later.ack_pending, backlog_len);

    // The database comes back: everything is stored and the backlog falls to 0.
    outage.restore().await;
    wait_for_events(&reader, (first.len() + second.len()) as i64).await;
    wait_until(
        Duration::from_secs(30),
        "/metrics shows no backlog",
        || async {
            backlog(port).await
                == Some(Backlog {
                    pending: 0.0,
                    ack_pending: 0.0,
                    oldest_age: 0.0,
                })
        },
    )
    .await;
    collector.stop().await;
}
on_both_backends!(the_backlog_of_an_outage_is_reported_and_drains);

/// The messages right after the ack floor are gone (as past the stream's max age):
/// the oldest unacked is the first one the stream still holds, and a stream with
/// nothing unacked reports no age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_unacked_is_the_first_message_the_stream_still_holds() {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    let iso = Isolation::new();
    let js = jetstream(&iso).await;
    let stream = js.get_stream(&iso.stream).await.unwrap();
    // A durable consumer nobody pulls from: everything stays pending.
    let consumer = "watched";
    stream
        .create_consumer(pull::Config {
            durable_name: Some(consumer.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let watcher = BacklogWatcher::new(
        &js,
        &iso.stream,
        consumer,
        backlog::DEFAULT_BACKLOG_INTERVAL,
        Arc::new(Metrics::default()),
    )
    .await
    .unwrap();
    assert_eq!(watcher.read().await.unwrap(), backlog::Backlog::default());

    let envelopes = run_envelopes("renderer-d", 0, 0);
    publish_all(&js, &iso, &envelopes[..3]).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    publish_all(&js, &iso, &envelopes[3..]).await;
    let mut times = Vec::new();
    for sequence in 1..=envelopes.len() as u64 {
        let message = stream.get_raw_message(sequence).await.unwrap();
        times.push((message.time.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let read = watcher.read().await.unwrap();
    assert_eq!(read.pending, envelopes.len() as u64);
    assert_eq!(read.ack_pending, 0);
    assert_eq!(read.oldest_unacked_ms, Some(times[0]));

    // The first three go: the ack floor (0) now points at nothing.
    for sequence in 1..=3 {
        assert!(stream.delete_message(sequence).await.unwrap());
    }
    let read = watcher.read().await.unwrap();
    assert_eq!(read.pending, envelopes.len() as u64 - 3);
    assert_eq!(
        stream
            .consumer_info(consumer)
            .await
            .unwrap()
            .ack_floor
            .stream_sequence,
        0
    );
    assert!(times[3] >= times[0] + 1_000);
    assert_eq!(read.oldest_unacked_ms, Some(times[3]), "sequence 4");
    // A hole further on changes nothing: the oldest is still sequence 4.
    assert!(stream.delete_message(5).await.unwrap());
    assert_eq!(
        watcher.read().await.unwrap().oldest_unacked_ms,
        Some(times[3])
    );
}
