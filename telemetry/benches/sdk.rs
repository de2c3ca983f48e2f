//! SDK benchmark against a real nats-server (the shared one on 127.0.0.1:4222, or
//! `TEST_NATS_URL`), each part beside a baseline measured in the same run:
//!
//! 1. Cost of one `record_variant_result` call (median, p99 ns) vs a bare
//!    `tokio::sync::mpsc` `try_send` of the same struct. Target: median <= 2x.
//! 2. Publisher throughput (events/s acknowledged by the stream) vs a bare pipelined
//!    JetStream publish loop of the same bytes with the same in-flight window.
//!    Target: >= 0.8x.
//!
//! `cargo bench -p telemetry --bench sdk`; `SDK_BENCH_EVENTS` sets the event count.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use prost::Message as _;
use telemetry::{
    ErrorCode, NatsConfig, Telemetry, TelemetryConfig, VariantResultRecord, VariantStatus,
};
use telemetry_proto::v1::{self, envelope::Body, Envelope};
use telemetry_proto::{BodyKind, StreamSpec, Subjects};
use test_support::Isolation;

fn record(i: usize) -> VariantResultRecord {
    VariantResultRecord {
        run_id: format!("0193a5f0-7c1e-7d2a-9b1c-{i:012}"),
        variant_id: format!("variant-{}", i % 4),
        request_id: format!("req-{i:08}"),
        shop_id: "demo-shop.myshopify.com".into(),
        final_prompt_hash: telemetry::hash_prompt(&format!("prompt {i}")),
        status: VariantStatus::Success,
        latency_ms: 1_850,
        output_image_key: Some(format!("renders/run-{i}/variant-{}.png", i % 4)),
        output_image_hash: Some(telemetry::hash_prompt(&format!("image {i}"))),
        error_code: None::<ErrorCode>,
        error_message: None,
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summarize(mut samples: Vec<u64>) -> (u64, u64) {
    samples.sort_unstable();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn config(iso: &Isolation, queue_capacity: usize) -> TelemetryConfig {
    TelemetryConfig {
        nats: NatsConfig {
            url: iso.nats_url.clone(),
            ..Default::default()
        },
        subject_prefix: iso.prefix.clone(),
        stream: iso.stream.clone(),
        service: "bench".into(),
        queue_capacity,
        queue_max_bytes: usize::MAX / 2,
        ..Default::default()
    }
}

/// Times each call individually (the same `Instant` overhead on both sides).
fn time_calls<F: FnMut(VariantResultRecord)>(
    inputs: Vec<VariantResultRecord>,
    mut call: F,
) -> Vec<u64> {
    let mut samples = Vec::with_capacity(inputs.len());
    for input in inputs {
        let started = Instant::now();
        call(input);
        samples.push(started.elapsed().as_nanos() as u64);
    }
    samples
}

async fn call_cost(samples: usize) -> Vec<(String, u64, u64)> {
    let inputs = || (0..samples).map(record).collect::<Vec<_>>();
    let mut rows = Vec::new();

    // Baseline: a bare bounded channel of the same struct.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<VariantResultRecord>(samples);
    let bare = time_calls(inputs(), |r| {
        tx.try_send(r).expect("capacity for every sample")
    });
    while rx.try_recv().is_ok() {}
    let (p50, p99) = summarize(bare);
    rows.push((
        "bare mpsc try_send, idle receiver (baseline)".to_owned(),
        p50,
        p99,
    ));

    // Baseline with a receiver draining on the other core, as the publisher does when
    // the broker is up: the channel's shared state then moves between cores.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<VariantResultRecord>(samples);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let bare = time_calls(inputs(), |r| {
        tx.try_send(r).expect("capacity for every sample")
    });
    drop(tx);
    drain.await.unwrap();
    let (p50, p99) = summarize(bare);
    rows.push((
        "bare mpsc try_send, draining receiver (baseline)".to_owned(),
        p50,
        p99,
    ));

    // The SDK with the broker up: the publisher drains on the other core meanwhile.
    let iso = Isolation::new();
    let telemetry = Telemetry::start(config(&iso, samples)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sdk = time_calls(inputs(), |r| telemetry.record_variant_result(r).unwrap());
    let (p50, p99) = summarize(sdk);
    rows.push(("SDK record_variant_result, broker up".to_owned(), p50, p99));
    telemetry.shutdown(Duration::from_secs(30)).await;

    // The SDK with no broker at all: pure enqueue.
    let down = Isolation::on(format!("nats://127.0.0.1:{}", test_support::free_port()));
    let telemetry = Telemetry::start(config(&down, samples)).unwrap();
    let sdk = time_calls(inputs(), |r| telemetry.record_variant_result(r).unwrap());
    let (p50, p99) = summarize(sdk);
    rows.push((
        "SDK record_variant_result, broker down".to_owned(),
        p50,
        p99,
    ));
    telemetry.shutdown(Duration::from_millis(100)).await;
    rows
}

/// Bare pipelined publish loop: pre-encoded envelopes, `max_in_flight` acks pending.
async fn bare_publish(events: usize, window: usize) -> f64 {
    let iso = Isolation::new();
    let client = async_nats::connect(iso.nats_url.as_str()).await.unwrap();
    let js = async_nats::jetstream::ContextBuilder::new()
        .max_ack_inflight(window + 16)
        .build(client);
    let subjects = Subjects::new(&iso.prefix).unwrap();
    js.get_or_create_stream(StreamSpec::new(iso.stream.clone(), subjects.clone()).config())
        .await
        .unwrap();
    let subject = subjects.for_kind(BodyKind::VariantResult).to_owned();
    let payloads: Vec<(String, bytes::Bytes)> = (0..events)
        .map(|i| {
            let id = uuid::Uuid::now_v7().to_string();
            let r = record(i);
            let envelope = Envelope {
                event_id: id.clone(),
                occurred_at: 1,
                shop_id: r.shop_id,
                request_id: r.request_id,
                producer: "bench".into(),
                producer_seq: i as u64,
                body: Some(Body::VariantResult(v1::VariantResult {
                    run_id: r.run_id,
                    variant_id: r.variant_id,
                    final_prompt_hash: r.final_prompt_hash,
                    status: 1,
                    latency_ms: r.latency_ms,
                    output_image_key: r.output_image_key.unwrap(),
                    output_image_hash: r.output_image_hash.unwrap(),
                    error_code: 0,
                    error_message: String::new(),
                })),
            };
            (id, envelope.encode_to_vec().into())
        })
        .collect();
    let started = Instant::now();
    let mut in_flight: FuturesUnordered<
        futures::future::BoxFuture<
            'static,
            Result<_, async_nats::jetstream::context::PublishError>,
        >,
    > = FuturesUnordered::new();
    for (id, payload) in payloads {
        if in_flight.len() >= window {
            in_flight.next().await.unwrap().unwrap();
        }
        let ack = js
            .send_publish(
                subject.clone(),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(payload)
                    .message_id(id),
            )
            .await
            .unwrap();
        in_flight.push(std::future::IntoFuture::into_future(ack));
    }
    while let Some(ack) = in_flight.next().await {
        ack.unwrap();
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// SDK throughput: queue everything, time until the broker has acknowledged all.
async fn sdk_publish(events: usize) -> f64 {
    let iso = Isolation::new();
    let telemetry = Telemetry::start(config(&iso, events)).unwrap();
    // Let the publisher connect and create the stream before the clock starts.
    while !telemetry.stats().connected {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let inputs: Vec<_> = (0..events).map(record).collect();
    let started = Instant::now();
    for input in inputs {
        telemetry.record_variant_result(input).unwrap();
    }
    while telemetry.stats().published < events as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    telemetry.shutdown(Duration::from_secs(10)).await;
    rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::var("SDK_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let window = telemetry::config::DEFAULT_MAX_IN_FLIGHT;

    println!("## telemetry SDK benchmark ({events} events, in-flight window {window})\n");
    let rows = call_cost(events).await;
    // Each SDK row against the baseline of the same conditions: broker up (publisher
    // draining on the other core) vs the draining receiver; broker down (nothing
    // draining) vs the idle receiver.
    let (idle, draining) = (rows[0].1 as f64, rows[1].1 as f64);
    let against = [idle, draining, draining, idle];
    println!("| call | median ns | p99 ns | median vs bare send (same conditions) |");
    println!("|---|---:|---:|---:|");
    for ((name, p50, p99), base) in rows.iter().zip(against) {
        println!("| {name} | {p50} | {p99} | {:.2}x |", *p50 as f64 / base);
    }

    if std::env::var_os("SDK_BENCH_CALLS_ONLY").is_some() {
        return;
    }
    // Warm-up, then alternate so neither side gets the quieter machine.
    let _ = bare_publish(events / 10, window).await;
    let mut bare = Vec::new();
    let mut sdk = Vec::new();
    for _ in 0..2 {
        bare.push(bare_publish(events, window).await);
        sdk.push(sdk_publish(events).await);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let (bare, sdk) = (best(&bare), best(&sdk));
    println!("\n| publisher | events/s (best of 2) | vs bare loop |");
    println!("|---|---:|---:|");
    println!("| bare pipelined JetStream publish (baseline) | {bare:.0} | 1.00x |");
    println!(
        "| SDK publisher (queue → acks) | {sdk:.0} | {:.2}x |",
        sdk / bare
    );
}
