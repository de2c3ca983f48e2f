//! Retention benchmark (prints figures; not a timed test).
//!
//! `cargo bench -p telemetry-collector --bench retention` fills a fresh SQLite file and a
//! fresh Postgres database with `BENCH_OLD_RUNS` (default 20,000) runs from 60 days ago
//! (7 envelopes each: 7 events, 1 run, 2 variants), then on each backend measures the
//! commit latency of ingest batches (~1,000 new envelopes, the store's own `write`):
//!
//! 1. alone, back to back;
//! 2. while `retention::prune` deletes every old row in its default steps
//!    ([`DEFAULT_PRUNE_BATCH`] rows per table per transaction, then a short pause).
//!
//! The point is the second line's max and p99: a prune must not stall ingest. Needs
//! Postgres on 127.0.0.1:5432 (see `test-support`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use service_kit::now_ms;
use telemetry_collector::domain::{self, Parsed};
use telemetry_collector::retention::{self, DEFAULT_PRUNE_BATCH};
use telemetry_collector::store::{self, Batch, Store, StoreOptions};
use telemetry_proto::v1::{self, envelope::Body};
use telemetry_proto::{BodyKind, Subjects};
use test_support::PgDatabase;
use tokio_util::sync::CancellationToken;

/// Old runs unless `BENCH_OLD_RUNS` says otherwise.
const DEFAULT_OLD_RUNS: usize = 20_000;
/// Envelopes per ingest batch, about (whole runs of 7: 994).
const BATCH: usize = 1_000;
/// Batches of the "ingest alone" line.
const ALONE_BATCHES: usize = 40;
const DAY_MS: i64 = 86_400_000;

#[tokio::main]
async fn main() {
    bench().await;
}

/// The 7 envelopes of one run at `at` (unix ms).
fn run(at: i64, n: usize) -> Vec<v1::Envelope> {
    let run_id = uuid::Uuid::now_v7().to_string();
    let envelope = |offset: i64, body: Body| v1::Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: at + offset,
        shop_id: format!("shop-{}.myshopify.com", n % 7),
        request_id: format!("req-{n}"),
        producer: "bench".into(),
        producer_seq: n as u64 * 7 + offset as u64,
        body: Some(body),
    };
    let variant = |id: &str| v1::VariantStarted {
        run_id: run_id.clone(),
        variant_id: id.into(),
    };
    let result = |id: &str| v1::VariantResult {
        run_id: run_id.clone(),
        variant_id: id.into(),
        final_prompt_hash: "h".into(),
        status: v1::VariantStatus::Success as i32,
        latency_ms: 900,
        output_image_key: format!("{run_id}/{id}.png"),
        ..Default::default()
    };
    vec![
        envelope(
            0,
            Body::Event(v1::Event {
                source: v1::EventSource::AppProxy as i32,
                r#type: v1::EventType::SfRenderRequested as i32,
                payload_json: r#"{"productId":"p"}"#.into(),
                run_id: String::new(),
            }),
        ),
        envelope(
            1,
            Body::RunStarted(v1::RunStarted {
                run_id: run_id.clone(),
                model: "gemini".into(),
                prompt_pack_version: "v3".into(),
                variant_count: 2,
                ..Default::default()
            }),
        ),
        envelope(2, Body::VariantStarted(variant("v1"))),
        envelope(3, Body::VariantStarted(variant("v2"))),
        envelope(4, Body::VariantResult(result("v1"))),
        envelope(5, Body::VariantResult(result("v2"))),
        envelope(
            6,
            Body::RunCompleted(v1::RunCompleted {
                run_id: run_id.clone(),
                status: v1::RunStatus::Complete as i32,
                success_count: 2,
                ..Default::default()
            }),
        ),
    ]
}

/// Runs `first..first + count` at `at`, parsed into one batch.
fn batch(subjects: &Subjects, at: i64, first: usize, count: usize) -> Batch {
    let mut batch = Batch {
        stream: "TELEMETRY".into(),
        received_at: at,
        facts: Vec::with_capacity(count * 7),
        dead: Vec::new(),
    };
    for n in first..first + count {
        for envelope in run(at, n) {
            let kind = BodyKind::of(envelope.body.as_ref().expect("body"));
            let bytes = envelope.encode_to_vec().into();
            match domain::parse(subjects, subjects.for_kind(kind), 0, bytes) {
                Parsed::Fact(fact) => batch.facts.push(*fact),
                Parsed::Dead(dead) => panic!("bench envelope refused: {}", dead.reason),
            }
        }
    }
    batch
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn line(&mut self, backend: &str, what: &str) {
        self.0.sort();
        let at = |q: f64| self.0[((self.0.len() - 1) as f64 * q) as usize];
        println!(
            "{backend:<9} {what:<28} {:>7} {:>9.1} {:>9.1} {:>9.1}",
            self.0.len(),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            at(1.0).as_secs_f64() * 1e3,
        );
    }
}

async fn ingest_batches(
    store: &dyn Store,
    subjects: &Subjects,
    first: usize,
    n: usize,
) -> Latencies {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let batch = batch(subjects, now_ms(), first + i * BATCH / 7, BATCH / 7);
        let started = Instant::now();
        store.write(&batch).await.expect("ingest write");
        latencies.push(started.elapsed());
    }
    Latencies(latencies)
}

async fn one_backend(backend: &str, url: &str, old_runs: usize) {
    let store: Arc<dyn Store> = store::connect(url, &StoreOptions::default())
        .await
        .expect("open the database");
    store.migrate().await.expect("migrate");
    let subjects = Subjects::new("telemetry").expect("prefix");
    let old = now_ms() - 60 * DAY_MS;
    for first in (0..old_runs).step_by(BATCH / 7) {
        let count = (BATCH / 7).min(old_runs - first);
        store
            .write(&batch(&subjects, old + first as i64, first, count))
            .await
            .expect("seed");
    }
    ingest_batches(store.as_ref(), &subjects, 1_000_000, ALONE_BATCHES)
        .await
        .line(backend, "ingest alone");

    let cutoff = now_ms() - 30 * DAY_MS;
    let to_delete = store.prune_counts(cutoff).await.expect("count");
    let pruning = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let done = retention::prune(
                store.as_ref(),
                cutoff,
                DEFAULT_PRUNE_BATCH,
                &CancellationToken::new(),
            )
            .await
            .expect("prune");
            (done, started.elapsed())
        })
    };
    let mut latencies = Vec::new();
    let mut first = 2_000_000;
    while !pruning.is_finished() {
        let batch = batch(&subjects, now_ms(), first, BATCH / 7);
        first += BATCH / 7;
        let started = Instant::now();
        store.write(&batch).await.expect("ingest write");
        latencies.push(started.elapsed());
    }
    let (done, took) = pruning.await.expect("prune task");
    assert_eq!(done, to_delete, "prune deleted what the dry run counted");
    Latencies(latencies).line(backend, "ingest during prune");
    println!(
        "{backend:<9} prune: {} rows ({} runs, {} variants, {} events) in {:.2} s = {:.0} rows/s",
        done.total(),
        done.runs,
        done.variants,
        done.events,
        took.as_secs_f64(),
        done.total() as f64 / took.as_secs_f64()
    );
    store.close().await;
}

async fn bench() {
    let old_runs = std::env::var("BENCH_OLD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_OLD_RUNS);
    println!(
        "retention: {old_runs} old runs ({} rows), ingest batches of {} envelopes",
        old_runs * 10,
        BATCH / 7 * 7
    );
    println!(
        "{:<9} {:<28} {:>7} {:>9} {:>9} {:>9}",
        "backend", "commit latency of", "batches", "p50 ms", "p99 ms", "max ms"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    one_backend("sqlite", &sqlite, old_runs).await;
    let pg = PgDatabase::create().await;
    one_backend("postgres", &pg.url, old_runs).await;
}
