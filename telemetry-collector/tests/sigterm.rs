//! SIGTERM during a steady load, on the real binary (SQLite): the collector finishes the
//! batch in flight, exits 0 promptly, and acks nothing it did not commit; restarted, it
//! drains the rest, and every published event is stored exactly once.
//!
//! "Acked only after commit" is checked two ways: every stream sequence up to the
//! consumer's ack floor is in the database right after the exit, and at the end nothing
//! is missing (an ack without a commit would lose that message for good: the broker
//! never redelivers an acked message).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{jetstream, publish_raw, run_envelopes, wait_until, Backend, TestDb};
use prost::Message as _;
use telemetry_collector::config::DEFAULT_CONSUMER;
use telemetry_proto::BodyKind;
use test_support::Isolation;

/// Runs published in all (7 envelopes each): about five seconds of load.
const TOTAL_RUNS: usize = 1_000;
/// The consumer's ack wait in this test.
const ACK_WAIT_SECS: u64 = 3;
/// Runs published per 10 ms tick (7 envelopes each): about 1,400 messages a second.
const RUNS_PER_TICK: usize = 2;

fn start_collector(iso: &Isolation, db: &TestDb, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_telemetry-collector"))
        .arg("ingest")
        .env("NATS_URL", &iso.nats_url)
        .env("TELEMETRY_SUBJECT_PREFIX", &iso.prefix)
        .env("TELEMETRY_STREAM", &iso.stream)
        .env(
            "TELEMETRY_STREAM_MAX_BYTES",
            Isolation::STREAM_MAX_BYTES.to_string(),
        )
        .env("DATABASE_URL", &db.url)
        .env("COLLECTOR_BATCH_SIZE", "100")
        // Messages pushed to the stopping collector's open pull request after its last
        // batch are redelivered after the ack wait: keep it short here.
        .env("COLLECTOR_ACK_WAIT_SECS", ACK_WAIT_SECS.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the telemetry-collector binary")
}

/// Sends SIGTERM and waits for the exit; returns how long it took.
fn terminate(child: &mut Child) -> Duration {
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "collector exited with {status} after SIGTERM"
            );
            return sent.elapsed();
        }
        if sent.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("collector did not exit within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn stored_seqs(db: &TestDb) -> Vec<i64> {
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let seqs = sqlx::query_scalar("SELECT stream_seq FROM monitor_events ORDER BY stream_seq")
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
    pool.close().await;
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_steady_load_acks_nothing_uncommitted_and_loses_nothing() {
    let iso = Isolation::new();
    let db = TestDb::new(Backend::Sqlite).await;
    let log = db.dir.as_ref().unwrap().path().join("collector.log");
    let js = jetstream(&iso).await;
    let mut collector = start_collector(&iso, &db, &log);

    let mut envelopes = Vec::new();
    for run in 0..TOTAL_RUNS {
        envelopes.extend(run_envelopes("steady", (run * 7) as u64, run));
    }
    let total = envelopes.len();
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (js, published) = (js.clone(), published.clone());
        let subjects = common::subjects(&iso);
        let envelopes = envelopes.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for chunk in envelopes.chunks(RUNS_PER_TICK * 7) {
                tick.tick().await;
                for envelope in chunk {
                    let kind = BodyKind::of(envelope.body.as_ref().unwrap());
                    publish_raw(&js, subjects.for_kind(kind), envelope.encode_to_vec()).await;
                }
                published.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        })
    };

    // Mid-stream: some batches committed, the publisher still going.
    wait_until(Duration::from_secs(30), "a few batches stored", || async {
        stored_seqs(&db).await.len() >= 500
    })
    .await;
    let at_sigterm = published.load(Ordering::SeqCst);
    let took = terminate(&mut collector);
    assert!(
        at_sigterm < total,
        "SIGTERM landed during the load ({at_sigterm} of {total} published)"
    );
    assert!(took < Duration::from_secs(5), "exit took {took:?}");

    // Right after the exit: everything up to the ack floor is committed.
    let stored = stored_seqs(&db).await;
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(&iso.stream)
        .await
        .unwrap()
        .get_consumer(DEFAULT_CONSUMER)
        .await
        .unwrap();
    let mut consumer = consumer;
    let info = consumer.info().await.unwrap().clone();
    let floor = info.ack_floor.stream_sequence as i64;
    assert!(floor > 0, "the first run acked something");
    let missing: Vec<i64> = (1..=floor)
        .filter(|s| stored.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "acked but not stored after SIGTERM: {missing:?}"
    );
    assert!(
        stored.len() as u64 <= info.delivered.stream_sequence,
        "stored only what was delivered"
    );

    // Restart: it drains the rest, including what the first run had not finished.
    publisher.await.unwrap();
    let mut collector = start_collector(&iso, &db, &log);
    let restarted = Instant::now();
    wait_until(Duration::from_secs(60), "every event stored", || async {
        stored_seqs(&db).await.len() >= total
    })
    .await;
    // At most one ack wait for what the first run was handed but did not take.
    let drained = restarted.elapsed();
    assert!(
        drained < Duration::from_secs(ACK_WAIT_SECS + 10),
        "drain took {drained:?}:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    terminate(&mut collector);

    let stored = stored_seqs(&db).await;
    let expected: Vec<i64> = (1..=total as i64).collect();
    assert_eq!(
        stored, expected,
        "each published message stored exactly once"
    );
    let info = consumer.info().await.unwrap().clone();
    assert_eq!(info.num_ack_pending, 0, "nothing left unacked");
    assert_eq!(info.num_pending, 0, "nothing left undelivered");
    assert_eq!(info.ack_floor.stream_sequence, total as u64);

    // Both runs logged JSON lines, and said they shut down.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let stops = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "ingest stopped")
        .count();
    assert_eq!(stops, 2, "{text}");
}
