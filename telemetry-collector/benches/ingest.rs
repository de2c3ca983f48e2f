//! Ingest benchmark (prints figures; not a timed test).
//!
//! `cargo bench -p telemetry-collector --bench ingest` pre-fills an isolated stream with
//! `BENCH_EVENTS` (default 200,000) realistic envelopes (per run: 1 RunStarted,
//! 4 VariantStarted, 4 VariantResult, 1 RunCompleted, 1 Event), then measures in one
//! run:
//!
//! 1. a bare consume-and-ack loop (no parsing, no database),
//! 2. a bare batched insert of the same messages (parsed beforehand) into SQLite and
//!    into Postgres, through the store's own `write`; on SQLite also with
//!    `synchronous=NORMAL` (what the collector used before its commits were made
//!    durable), to show what one fsync per batch costs,
//! 3. the collector binary (`telemetry-collector ingest`, a child process so its peak
//!    RSS is its own) draining the stream into a fresh SQLite file and a fresh Postgres
//!    database, and two of them sharing one consumer into another fresh Postgres
//!    database (scaling out; its RSS column is the larger of the two).
//!
//! The ratio compares the collector with "bare consume, then bare insert" done one
//! after the other. Needs NATS on 127.0.0.1:4222 and Postgres on 127.0.0.1:5432 (see
//! `test-support`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use bytes::Bytes;
use futures::StreamExt as _;
use prost::Message as _;
use telemetry_collector::domain::{self, Parsed};
use telemetry_collector::store::{self, Batch, StoreOptions};
use telemetry_proto::{BodyKind, StreamSpec, Subjects};
use test_support::{Isolation, PgDatabase};

#[path = "ingest/envelopes.rs"]
mod envelopes;
use envelopes::envelopes_of_run;

/// Envelopes in the stream unless `BENCH_EVENTS` says otherwise.
const DEFAULT_EVENTS: usize = 200_000;
/// Envelopes per run.
const PER_RUN: usize = 11;
/// Batch size of the bare insert (the collector's default).
const BATCH: usize = telemetry_collector::config::DEFAULT_BATCH_SIZE;
/// Publishes in flight while pre-filling.
const PUBLISH_WINDOW: usize = 2_000;

struct Row {
    what: String,
    events: usize,
    seconds: f64,
    ratio: Option<f64>,
    rss_mb: Option<f64>,
}

#[tokio::main]
async fn main() {
    bench().await;
}

fn events_wanted() -> usize {
    let wanted = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_EVENTS);
    (wanted / PER_RUN).max(1) * PER_RUN
}

/// User + system CPU seconds of this process so far (all threads), to compare write
/// paths on a machine that other work also loads.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn vm_hwm_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

async fn consumer(js: &async_nats::jetstream::Context, stream: &str, name: &str) -> PullConsumer {
    js.get_stream(stream)
        .await
        .expect("stream")
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_owned()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: telemetry_collector::config::DEFAULT_MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await
        .expect("consumer")
}

/// `BENCH_ONLY=insert`: only the bare batched inserts, of envelopes encoded and parsed
/// in-process (no broker), to iterate on the write path quickly (`BENCH_BACKEND=sqlite`
/// or `postgres` for one backend).
async fn insert_only(total: usize) {
    let subjects = Subjects::new("bench").unwrap();
    let mut seq = 0u64;
    let mut kept = Vec::with_capacity(total);
    for run in 0..total / PER_RUN {
        for envelope in envelopes_of_run(run, &mut seq) {
            let kind = BodyKind::of(envelope.body.as_ref().unwrap());
            let subject = subjects.for_kind(kind).to_owned();
            kept.push((
                subject,
                kept.len() as u64 + 1,
                envelope.encode_to_vec().into(),
            ));
        }
    }
    let batches = parse_batches(&subjects, "bench", &kept);
    drop(kept);
    let dir = tempfile::tempdir().unwrap();
    let pg = PgDatabase::create().await;
    let sqlite = format!("sqlite://{}", dir.path().join("bare.db").display());
    let normal = format!("sqlite://{}", dir.path().join("normal.db").display());
    let mut rows = Vec::new();
    bare_inserts(&batches, total, [&sqlite, &normal], &pg.url, &mut rows).await;
    rollups_cost(&batches, total, &mut rows).await;
    print_table(&rows);
}

/// Rounds of [`rollups_cost`] unless `BENCH_ROLLUP_ROUNDS` says otherwise.
const DEFAULT_ROLLUP_ROUNDS: usize = 3;

/// The bare insert into fresh databases with and without the rollups, alternating,
/// on each backend; the fastest round of each goes into the table, with the cost.
async fn rollups_cost(batches: &[Batch], total: usize, rows: &mut Vec<Row>) {
    let rounds: usize = std::env::var("BENCH_ROLLUP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROLLUP_ROUNDS)
        .max(1);
    let only = std::env::var("BENCH_BACKEND").unwrap_or_default();
    for backend in ["SQLite", "Postgres"] {
        if !only.is_empty() && !backend.to_lowercase().starts_with(&only.to_lowercase()) {
            continue;
        }
        // [with, without]: the fastest round of each.
        let mut best = [f64::MAX; 2];
        for round in 0..rounds {
            for (i, rollups) in [true, false].into_iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                let pg = (backend == "Postgres").then(PgDatabase::create);
                let pg = match pg {
                    Some(create) => Some(create.await),
                    None => None,
                };
                let url = match &pg {
                    Some(pg) => pg.url.clone(),
                    None => format!("sqlite://{}", dir.path().join("r.db").display()),
                };
                let options = StoreOptions {
                    rollups,
                    ..StoreOptions::default()
                };
                let store = store::connect(&url, &options).await.unwrap();
                store.migrate().await.unwrap();
                let started = Instant::now();
                for batch in batches {
                    store.write(batch).await.expect("bare insert");
                }
                let secs = started.elapsed().as_secs_f64();
                assert_eq!(store.event_count().await.unwrap() as usize, total);
                store.close().await;
                eprintln!(
                    "rollups cost, {backend}, round {}, {}: {secs:.2}s",
                    round + 1,
                    if rollups { "with" } else { "without" }
                );
                best[i] = best[i].min(secs);
            }
        }
        let [with, without] = best;
        for (what, secs) in [("with", with), ("without", without)] {
            rows.push(Row {
                what: format!(
                    "bare batched insert, {backend}, {what} rollups (fastest of {rounds})"
                ),
                events: total,
                seconds: secs,
                ratio: None,
                rss_mb: None,
            });
        }
        println!(
            "rollups cost, {backend}: {with:.2}s with, {without:.2}s without (fastest of {rounds} each): {:+.1}% of the insert time",
            (with - without) * 100.0 / without
        );
    }
}

fn parse_batches(subjects: &Subjects, stream: &str, kept: &[(String, u64, Bytes)]) -> Vec<Batch> {
    kept.chunks(BATCH)
        .map(|chunk| {
            let mut batch = Batch {
                stream: stream.to_owned(),
                // Now, as ingest does: an envelope dated more than a day past its
                // receive time is a dead letter (`domain::MAX_CLOCK_AHEAD`).
                received_at: service_kit::now_ms(),
                ..Default::default()
            };
            for (subject, seq, payload) in chunk {
                match domain::parse(subjects, subject, *seq, payload.clone()) {
                    Parsed::Fact(fact) => batch.facts.push(*fact),
                    Parsed::Dead(dead) => panic!("bench envelope refused: {}", dead.reason),
                }
            }
            batch
        })
        .collect()
}

/// Bare batched insert into each backend through the store's own `write`; returns the
/// seconds of each (SQLite, Postgres).
async fn bare_inserts(
    batches: &[Batch],
    total: usize,
    sqlite: [&str; 2],
    postgres: &str,
    rows: &mut Vec<Row>,
) -> Vec<f64> {
    let mut insert_secs = Vec::new();
    // `BENCH_BACKEND=sqlite|postgres` measures one of them only.
    let only = std::env::var("BENCH_BACKEND").unwrap_or_default();
    // The collector's settings first (their times are the ratios' baselines), then
    // SQLite as it was before durable commits.
    for (name, url, durable_commits) in [
        ("SQLite", sqlite[0], true),
        ("Postgres", postgres, true),
        ("SQLite, synchronous=NORMAL (before)", sqlite[1], false),
    ] {
        if !only.is_empty() && !name.to_lowercase().starts_with(&only.to_lowercase()) {
            continue;
        }
        let options = StoreOptions {
            durable_commits,
            ..StoreOptions::default()
        };
        let store = store::connect(url, &options).await.unwrap();
        store.migrate().await.unwrap();
        let started = Instant::now();
        let cpu = cpu_secs();
        for batch in batches {
            store.write(batch).await.expect("bare insert");
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "bare insert, {name}: {:.2}s CPU of this process (user + system)",
            cpu_secs() - cpu
        );
        assert_eq!(store.event_count().await.unwrap() as usize, total);
        store.close().await;
        insert_secs.push(secs);
        rows.push(Row {
            what: format!("bare batched insert, {name}"),
            events: total,
            seconds: secs,
            ratio: None,
            rss_mb: None,
        });
    }
    insert_secs
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| measurement | events | seconds | events/s | vs bare consume then bare insert | peak RSS |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        println!(
            "| {} | {} | {:.2} | {:.0} | {} | {} |",
            row.what,
            row.events,
            row.seconds,
            row.events as f64 / row.seconds,
            row.ratio.map_or("".to_owned(), |r| format!("{r:.2}x")),
            row.rss_mb.map_or("".to_owned(), |mb| format!("{mb:.0} MB")),
        );
    }
}

async fn bench() {
    let total = events_wanted();
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "insert") {
        insert_only(total).await;
        return;
    }
    let iso = Isolation::new();
    let client = async_nats::connect(iso.nats_url.as_str())
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let subjects = Subjects::new(&iso.prefix).unwrap();
    let spec = StreamSpec::new(iso.stream.clone(), subjects.clone());
    js.get_or_create_stream(spec.config())
        .await
        .expect("create stream");

    // Pre-fill.
    let started = Instant::now();
    let mut seq = 0;
    let mut acks = Vec::with_capacity(PUBLISH_WINDOW);
    for run in 0..total / PER_RUN {
        for envelope in envelopes_of_run(run, &mut seq) {
            let kind = BodyKind::of(envelope.body.as_ref().unwrap());
            let ack = js
                .publish(
                    subjects.for_kind(kind).to_owned(),
                    envelope.encode_to_vec().into(),
                )
                .await
                .expect("publish");
            acks.push(ack);
            if acks.len() == PUBLISH_WINDOW {
                for ack in futures::future::join_all(
                    acks.drain(..).map(std::future::IntoFuture::into_future),
                )
                .await
                {
                    ack.expect("publish ack");
                }
            }
        }
    }
    for ack in
        futures::future::join_all(acks.drain(..).map(std::future::IntoFuture::into_future)).await
    {
        ack.expect("publish ack");
    }
    let mut stream = js.get_stream(&iso.stream).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    eprintln!(
        "pre-filled {} envelopes ({:.1} MB) in {:.1}s",
        info.state.messages,
        info.state.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(info.state.messages as usize, total);

    let mut rows = Vec::new();

    // 1. Bare consume-and-ack; keep the messages for the bare insert.
    let bare = consumer(&js, &iso.stream, "bare").await;
    let mut kept: Vec<(String, u64, Bytes)> = Vec::with_capacity(total);
    let started = Instant::now();
    let mut messages = bare
        .stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await
        .expect("pull");
    while kept.len() < total {
        let message = messages
            .next()
            .await
            .expect("stream open")
            .expect("message");
        message.ack().await.expect("ack");
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        kept.push((message.subject.to_string(), seq, message.payload.clone()));
    }
    let consume_secs = started.elapsed().as_secs_f64();
    drop(messages);
    rows.push(Row {
        what: "bare consume + ack".into(),
        events: total,
        seconds: consume_secs,
        ratio: None,
        rss_mb: None,
    });

    let batches = parse_batches(&subjects, &iso.stream, &kept);
    drop(kept);

    // 2. Bare batched insert into each backend.
    let dir = tempfile::tempdir().unwrap();
    let pg_bare = PgDatabase::create().await;
    let sqlite_bare = format!("sqlite://{}", dir.path().join("bare.db").display());
    let sqlite_normal = format!("sqlite://{}", dir.path().join("normal.db").display());
    let insert_secs = bare_inserts(
        &batches,
        total,
        [&sqlite_bare, &sqlite_normal],
        &pg_bare.url,
        &mut rows,
    )
    .await;
    rollups_cost(&batches, total, &mut rows).await;
    drop(batches);

    // 3. The collector binary draining into each backend (default settings); on
    //    Postgres also two collectors sharing the consumer with one writer each (the
    //    same two transactions in flight as one collector's default, from two
    //    processes: on 2 cores, more writers in total only wait on each other).
    let pg_drain = PgDatabase::create().await;
    let pg_drain_two = PgDatabase::create().await;
    let sqlite_drain = format!("sqlite://{}", dir.path().join("drain.db").display());
    for (label, url, copies, bare, writers) in [
        ("SQLite", sqlite_drain.as_str(), 1, 0, "2"),
        ("Postgres", pg_drain.url.as_str(), 1, 1, "2"),
        (
            "Postgres, 2 collectors, 1 writer each",
            pg_drain_two.url.as_str(),
            2,
            1,
            "1",
        ),
    ] {
        let consumer_name = format!("drain-{}", consumer_suffix(label));
        let mut drain = consumer(&js, &iso.stream, &consumer_name).await;
        let started = Instant::now();
        let mut children: Vec<_> = (0..copies)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_telemetry-collector"))
                    .arg("ingest")
                    .env("NATS_URL", &iso.nats_url)
                    .env("TELEMETRY_SUBJECT_PREFIX", &iso.prefix)
                    .env("TELEMETRY_STREAM", &iso.stream)
                    .env("COLLECTOR_CONSUMER", &consumer_name)
                    .env("DATABASE_URL", url)
                    .env("DATABASE_WRITERS", writers)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start the collector binary")
            })
            .collect();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let info = drain.info().await.expect("consumer info");
            if info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.stream_sequence as usize >= total
            {
                break;
            }
            for child in &mut children {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "the collector exited early"
                );
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let rss = children
            .iter()
            .filter_map(|child| vm_hwm_mb(child.id()))
            .reduce(f64::max);
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let check = store::connect(url, &StoreOptions::default()).await.unwrap();
        assert_eq!(
            check.event_count().await.unwrap() as usize,
            total,
            "{label}: every event stored"
        );
        check.close().await;
        let sequential = total as f64 / (consume_secs + insert_secs[bare]);
        rows.push(Row {
            what: format!("collector drain, {label}"),
            events: total,
            seconds: secs,
            ratio: Some(total as f64 / secs / sequential),
            rss_mb: rss,
        });
    }

    print_table(&rows);
    println!(
        "\nbench process peak RSS (pre-fill, bare loops, kept messages): {:.0} MB",
        vm_hwm_mb(std::process::id()).unwrap_or(0.0)
    );
}

/// The drain's consumer name: its label, lowercase, letters and digits only.
fn consumer_suffix(label: &str) -> String {
    label
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase()
}
