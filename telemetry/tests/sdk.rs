//! The SDK against a real nats-server: each test uses its own subject prefix and
//! stream (or its own server), and checks what actually landed in the stream.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use prost::Message as _;
use telemetry::{
    CompleteRun, DropReason, EmitError, EmitEvent, ErrorCode, EventSource, EventType, ImageInfo,
    ImageMeta, JetStreamState, Limits, NatsConfig, RunStatus, StartRun, StatsSnapshot, Telemetry,
    TelemetryConfig, VariantResultRecord, VariantStart, VariantStatus,
};
use telemetry_proto::v1::{self, envelope::Body, Envelope};
use telemetry_proto::{BodyKind, StreamSpec, Subjects};
use test_support::cluster::NatsCluster;
use test_support::{read_stream, Isolation, NatsServer, StoredMessage};

fn config(iso: &Isolation) -> TelemetryConfig {
    TelemetryConfig {
        nats: NatsConfig {
            url: iso.nats_url.clone(),
            ..Default::default()
        },
        subject_prefix: iso.prefix.clone(),
        stream: iso.stream.clone(),
        stream_max_bytes: Isolation::STREAM_MAX_BYTES,
        service: "sdk-test".into(),
        ..Default::default()
    }
}

fn decode(message: &StoredMessage) -> Envelope {
    Envelope::decode(message.payload.as_slice()).expect("stream holds valid envelopes")
}

/// Events (not stats) in stream order.
fn events(messages: &[StoredMessage]) -> Vec<(String, Envelope)> {
    messages
        .iter()
        .map(|m| (m.subject.clone(), decode(m)))
        .filter(|(_, e)| !matches!(e.body, Some(Body::ProducerStats(_))))
        .collect()
}

fn last_stats(messages: &[StoredMessage]) -> v1::ProducerStats {
    messages
        .iter()
        .map(decode)
        .filter_map(|e| match e.body {
            Some(Body::ProducerStats(stats)) => Some((e.event_id, stats)),
            _ => None,
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, stats)| stats)
        .expect("a ProducerStats message in the stream")
}

fn start_run(i: usize) -> StartRun {
    StartRun {
        run_id: format!("run-{i}"),
        shop_id: "demo-shop.myshopify.com".into(),
        request_id: format!("req-{i}"),
        product_asset_id: "asset-42".into(),
        room_session_id: "room-7".into(),
        prompt_pack_version: "v3".into(),
        model: "gemini-2.5-flash-image".into(),
        product_image: ImageInfo {
            hash: telemetry::hash_prompt("product bytes"),
            meta: ImageMeta {
                width: 800,
                height: 600,
                format: "png".into(),
                bytes: 123_456,
            },
        },
        room_image: ImageInfo {
            hash: telemetry::hash_prompt("room bytes"),
            meta: ImageMeta {
                width: 1920,
                height: 1080,
                format: "jpeg".into(),
                bytes: 654_321,
            },
        },
        resolved_facts_hash: telemetry::hash_prompt(r#"{"color":"oak"}"#),
        resolved_facts_json: r#"{"color":"oak"}"#.into(),
        prompt_pack_hash: telemetry::hash_prompt(r#"{"version":"v3"}"#),
        prompt_pack_json: r#"{"version":"v3"}"#.into(),
        variant_count: 4,
    }
}

fn variant_result(i: usize) -> VariantResultRecord {
    VariantResultRecord {
        run_id: format!("run-{i}"),
        variant_id: "v1".into(),
        request_id: format!("req-{i}"),
        shop_id: "demo-shop.myshopify.com".into(),
        final_prompt_hash: telemetry::hash_prompt("place the sofa by the window"),
        status: VariantStatus::Timeout,
        latency_ms: 30_000,
        output_image_key: None,
        output_image_hash: None,
        error_code: Some(ErrorCode::Timeout),
        error_message: Some("variant exceeded 30000 ms".into()),
    }
}

async fn wait_until_settled(telemetry: &Telemetry, within: Duration) {
    wait_for_stats(telemetry, within, "every event settled", |s| {
        s.queue_depth == 0
    })
    .await;
}

#[tokio::test]
async fn every_kind_of_call_arrives_and_decodes_to_exactly_what_was_passed() {
    let iso = Isolation::new();
    let telemetry = Telemetry::start(config(&iso)).unwrap();
    let producer = telemetry.producer_id().unwrap().to_owned();

    let event = EmitEvent {
        shop_id: "demo-shop.myshopify.com".into(),
        request_id: "req-1".into(),
        run_id: String::new(),
        source: EventSource::AppProxy,
        event_type: EventType::SfRenderRequested,
        payload_json: r#"{"productId":"p-1","roomSessionId":"room-7"}"#.into(),
    };
    let start = start_run(1);
    let variant_start = VariantStart {
        run_id: "run-1".into(),
        variant_id: "v1".into(),
        request_id: "req-1".into(),
        shop_id: "demo-shop.myshopify.com".into(),
    };
    let result = variant_result(1);
    let success = VariantResultRecord {
        variant_id: "v2".into(),
        status: VariantStatus::Success,
        latency_ms: 1234,
        output_image_key: Some("renders/run-1/v2.png".into()),
        output_image_hash: Some(telemetry::hash_prompt("png bytes")),
        error_code: None,
        error_message: None,
        ..variant_result(1)
    };
    let complete = CompleteRun {
        run_id: "run-1".into(),
        request_id: "req-1".into(),
        shop_id: "demo-shop.myshopify.com".into(),
        status: RunStatus::Partial,
        total_duration_ms: 31_000,
        success_count: 1,
        fail_count: 0,
        timeout_count: 1,
    };
    telemetry.emit(event.clone()).unwrap();
    telemetry.start_run(start.clone()).unwrap();
    telemetry
        .record_variant_start(variant_start.clone())
        .unwrap();
    telemetry.record_variant_result(result.clone()).unwrap();
    telemetry.record_variant_result(success.clone()).unwrap();
    telemetry.complete_run(complete.clone()).unwrap();

    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.emitted, 6);
    assert_eq!(report.published, 6);
    assert_eq!(report.left, 0);
    assert!(report.final_stats_sent);

    let messages = read_stream(&iso.nats_url, &iso.stream, 7, Duration::from_secs(5)).await;
    // The SDK created the stream, with the configured cap.
    let js = async_nats::jetstream::new(async_nats::connect(&iso.nats_url).await.unwrap());
    let info = js
        .get_stream(&iso.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.max_bytes, Isolation::STREAM_MAX_BYTES);
    let subjects = Subjects::new(&iso.prefix).unwrap();
    let got = events(&messages);
    assert_eq!(got.len(), 6, "{got:#?}");
    let mut by_seq: BTreeMap<u64, (String, Envelope)> = BTreeMap::new();
    for (subject, envelope) in got {
        // Common envelope fields.
        assert_eq!(envelope.producer, producer);
        assert!(uuid::Uuid::parse_str(&envelope.event_id).is_ok_and(|u| u.get_version_num() == 7));
        let age = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64)
            - envelope.occurred_at;
        assert!((0..60_000).contains(&age), "occurred_at is now-ish: {age}");
        let kind = BodyKind::of(envelope.body.as_ref().unwrap());
        assert_eq!(subject, subjects.for_kind(kind));
        by_seq.insert(envelope.producer_seq, (subject, envelope));
    }
    // Producer sequence numbers are 1..=6 in call order.
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    // The Nats-Msg-Id header is the event id (broker-side dedupe of retries).
    for message in messages.iter() {
        assert_eq!(
            message.msg_id.as_deref(),
            Some(decode(message).event_id.as_str())
        );
    }

    let body = |seq: u64| by_seq[&seq].1.body.clone().unwrap();
    let envelope = |seq: u64| by_seq[&seq].1.clone();
    assert_eq!(envelope(1).shop_id, event.shop_id);
    assert_eq!(envelope(1).request_id, event.request_id);
    assert_eq!(
        body(1),
        Body::Event(v1::Event {
            source: EventSource::AppProxy as i32,
            r#type: EventType::SfRenderRequested as i32,
            payload_json: event.payload_json.clone(),
            run_id: String::new(),
        })
    );
    assert_eq!(envelope(2).shop_id, start.shop_id);
    assert_eq!(envelope(2).request_id, start.request_id);
    assert_eq!(
        body(2),
        Body::RunStarted(v1::RunStarted {
            run_id: start.run_id.clone(),
            product_asset_id: start.product_asset_id.clone(),
            room_session_id: start.room_session_id.clone(),
            prompt_pack_version: start.prompt_pack_version.clone(),
            model: start.model.clone(),
            product_image: Some(v1::ImageRef {
                hash: start.product_image.hash.clone(),
                meta: Some(start.product_image.meta.clone()),
            }),
            room_image: Some(v1::ImageRef {
                hash: start.room_image.hash.clone(),
                meta: Some(start.room_image.meta.clone()),
            }),
            resolved_facts_hash: start.resolved_facts_hash.clone(),
            resolved_facts_json: start.resolved_facts_json.clone(),
            prompt_pack_hash: start.prompt_pack_hash.clone(),
            prompt_pack_json: start.prompt_pack_json.clone(),
            variant_count: 4,
        })
    );
    assert_eq!(
        body(3),
        Body::VariantStarted(v1::VariantStarted {
            run_id: "run-1".into(),
            variant_id: "v1".into(),
        })
    );
    assert_eq!(envelope(3).request_id, variant_start.request_id);
    assert_eq!(
        body(4),
        Body::VariantResult(v1::VariantResult {
            run_id: "run-1".into(),
            variant_id: "v1".into(),
            final_prompt_hash: result.final_prompt_hash.clone(),
            status: VariantStatus::Timeout as i32,
            latency_ms: 30_000,
            output_image_key: String::new(),
            output_image_hash: String::new(),
            error_code: ErrorCode::Timeout as i32,
            error_message: "variant exceeded 30000 ms".into(),
        })
    );
    assert_eq!(
        body(5),
        Body::VariantResult(v1::VariantResult {
            run_id: "run-1".into(),
            variant_id: "v2".into(),
            final_prompt_hash: success.final_prompt_hash.clone(),
            status: VariantStatus::Success as i32,
            latency_ms: 1234,
            output_image_key: "renders/run-1/v2.png".into(),
            output_image_hash: success.output_image_hash.clone().unwrap(),
            error_code: ErrorCode::Unspecified as i32,
            error_message: String::new(),
        })
    );
    assert_eq!(
        body(6),
        Body::RunCompleted(v1::RunCompleted {
            run_id: "run-1".into(),
            status: RunStatus::Partial as i32,
            total_duration_ms: 31_000,
            success_count: 1,
            fail_count: 0,
            timeout_count: 1,
        })
    );

    // The final ProducerStats balances the books.
    let stats = last_stats(&messages);
    assert!(stats.r#final);
    assert_eq!((stats.emitted, stats.published, stats.dropped), (6, 6, 0));
    assert_eq!(stats.service, "sdk-test");
}

#[tokio::test]
async fn the_same_envelope_published_twice_is_stored_once() {
    let iso = Isolation::new();
    let client = async_nats::connect(iso.nats_url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let spec = StreamSpec::new(iso.stream.clone(), Subjects::new(&iso.prefix).unwrap())
        .with_max_bytes(Isolation::STREAM_MAX_BYTES)
        .unwrap();
    test_support::create_stream(&js, spec.config()).await;
    let envelope = Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: 1,
        producer_seq: 1,
        body: Some(Body::VariantStarted(v1::VariantStarted {
            run_id: "r".into(),
            variant_id: "v".into(),
        })),
        ..Default::default()
    };
    let subject = spec.subjects.for_kind(BodyKind::VariantStarted).to_owned();
    let mut duplicates = 0;
    for _ in 0..2 {
        let ack = js
            .send_publish(
                subject.clone(),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(envelope.encode_to_vec().into())
                    .message_id(&envelope.event_id),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        duplicates += ack.duplicate as u32;
    }
    assert_eq!(
        duplicates, 1,
        "the second publish is reported as a duplicate"
    );
    let messages = read_stream(&iso.nats_url, &iso.stream, 1, Duration::from_secs(2)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(decode(&messages[0]), envelope);
}

#[test]
fn an_envelope_with_an_unknown_field_and_enum_value_still_decodes() {
    let envelope = Envelope {
        event_id: "0190f0b2-0000-7000-8000-000000000000".into(),
        body: Some(Body::VariantResult(v1::VariantResult {
            run_id: "r".into(),
            variant_id: "v".into(),
            status: 42, // a status a newer producer knows and we don't
            error_code: 77,
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut bytes = envelope.encode_to_vec();
    // Field 99 (varint) and field 100 (length-delimited) from a future contract.
    prost::encoding::encode_key(99, prost::encoding::WireType::Varint, &mut bytes);
    prost::encoding::encode_varint(12345, &mut bytes);
    prost::encoding::encode_key(100, prost::encoding::WireType::LengthDelimited, &mut bytes);
    prost::encoding::encode_varint(3, &mut bytes);
    bytes.extend_from_slice(b"new");

    let decoded = Envelope::decode(bytes.as_slice()).expect("unknown fields are skipped");
    let Some(Body::VariantResult(result)) = decoded.body else {
        panic!("body lost");
    };
    assert_eq!(
        result.status, 42,
        "an unknown enum value survives as its number"
    );
    assert!(VariantStatus::try_from(result.status).is_err());
    assert_eq!(result.error_code, 77);
    assert_eq!(result.run_id, "r");
}

#[tokio::test]
async fn with_nats_down_at_start_calls_never_wait_and_queued_events_arrive_later() {
    let mut server = NatsServer::unstarted();
    let iso = Isolation::on(server.url());
    let telemetry = Telemetry::start(TelemetryConfig {
        queue_capacity: 5_000,
        ..config(&iso)
    })
    .unwrap();

    let calls = 100_000;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for i in 0..calls {
        let call = Instant::now();
        let _ = telemetry.record_variant_result(variant_result(i));
        slowest = slowest.max(call.elapsed());
    }
    let all_calls = started.elapsed();
    // A call that waited on the broker would take seconds (connect timeout) or hang.
    assert!(
        slowest < Duration::from_millis(200),
        "slowest call {slowest:?}"
    );
    assert!(
        all_calls < Duration::from_secs(10),
        "100k calls took {all_calls:?}"
    );
    let before = telemetry.stats();
    assert_eq!(before.emitted, calls as u64);
    assert_eq!(before.published, 0);
    assert!(before.dropped_for(DropReason::QueueFull) > 0);

    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    wait_until_settled(&telemetry, Duration::from_secs(60)).await;
    let stats = telemetry.stats();
    assert_eq!(stats.emitted, stats.published + stats.dropped, "{stats:?}");
    assert!(
        stats.published >= 5_000,
        "at least the queue's worth: {stats:?}"
    );
    assert_eq!(stats.dropped, stats.dropped_for(DropReason::QueueFull));

    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.left, 0);
    let messages = read_stream(
        &server.url(),
        &iso.stream,
        stats.published as usize + 1,
        Duration::from_secs(10),
    )
    .await;
    let got = events(&messages);
    assert_eq!(
        got.len() as u64,
        stats.published,
        "each published event is in the stream once"
    );
    let final_stats = last_stats(&messages);
    assert_eq!(
        final_stats.emitted,
        final_stats.published + final_stats.dropped
    );
}

#[tokio::test]
async fn queue_overflow_is_counted_exactly_by_reason_and_reported_in_producer_stats() {
    let iso = Isolation::new();
    let capacity = 100;
    let telemetry = Telemetry::start(TelemetryConfig {
        queue_capacity: capacity,
        limits: Limits {
            max_json_bytes: 1024,
            ..Limits::default()
        },
        ..config(&iso)
    })
    .unwrap();
    // On this current-thread runtime the publisher cannot run while this loop does
    // not yield, so exactly `capacity` calls fit.
    let calls = 1_000;
    let mut full = 0;
    for i in 0..calls {
        match telemetry.record_variant_result(variant_result(i)) {
            Ok(()) => {}
            Err(EmitError::QueueFull) => full += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(full, calls - capacity);
    // Oversized and incomplete input is refused at the call and counted too.
    let oversized = telemetry.emit(EmitEvent {
        shop_id: "s".into(),
        request_id: "r".into(),
        run_id: String::new(),
        source: EventSource::Renderer,
        event_type: EventType::RenderProviderError,
        payload_json: format!("{{\"body\":\"{}\"}}", "x".repeat(2000)),
    });
    assert!(matches!(
        oversized,
        Err(EmitError::TooLarge {
            field: "payload_json",
            limit: 1024,
            ..
        })
    ));
    assert_eq!(
        telemetry.record_variant_start(VariantStart::default()),
        Err(EmitError::MissingField("run_id"))
    );

    let stats = telemetry.stats();
    assert_eq!(
        stats.dropped_for(DropReason::QueueFull),
        (calls - capacity) as u64
    );
    assert_eq!(stats.dropped_for(DropReason::PayloadTooLarge), 1);
    assert_eq!(stats.dropped_for(DropReason::MissingField), 1);

    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.published, capacity as u64);
    assert_eq!(report.emitted, calls as u64 + 2);
    assert_eq!(report.emitted, report.published + report.dropped);

    let messages = read_stream(
        &iso.nats_url,
        &iso.stream,
        capacity + 1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(events(&messages).len(), capacity);
    let ledger = last_stats(&messages);
    assert!(ledger.r#final);
    assert_eq!(ledger.emitted, calls as u64 + 2);
    assert_eq!(ledger.published, capacity as u64);
    assert_eq!(ledger.dropped, (calls - capacity) as u64 + 2);
    assert_eq!(
        ledger.dropped_by_reason,
        BTreeMap::from([
            ("queue_full".to_owned(), (calls - capacity) as u64),
            ("payload_too_large".to_owned(), 1),
            ("missing_field".to_owned(), 1),
        ])
    );
}

#[tokio::test]
async fn producer_stats_are_published_periodically() {
    let iso = Isolation::new();
    let telemetry = Telemetry::start(TelemetryConfig {
        stats_interval: Duration::from_millis(100),
        ..config(&iso)
    })
    .unwrap();
    telemetry
        .complete_run(CompleteRun {
            run_id: "r".into(),
            request_id: "q".into(),
            shop_id: "s".into(),
            status: RunStatus::Complete,
            total_duration_ms: 1,
            success_count: 1,
            fail_count: 0,
            timeout_count: 0,
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let messages = read_stream(&iso.nats_url, &iso.stream, 4, Duration::from_secs(5)).await;
    let periodic: Vec<_> = messages
        .iter()
        .map(decode)
        .filter_map(|e| match e.body {
            Some(Body::ProducerStats(s)) if !s.r#final => Some(s),
            _ => None,
        })
        .collect();
    assert!(
        periodic.len() >= 3,
        "stats every 100 ms: got {}",
        periodic.len()
    );
    assert!(periodic.iter().all(|s| s.emitted == 1));
    telemetry.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    let mut server = NatsServer::start();
    let iso = Isolation::on(server.url());
    let telemetry = Telemetry::start(TelemetryConfig {
        ack_timeout: Duration::from_secs(2),
        queue_capacity: 100_000,
        ..config(&iso)
    })
    .unwrap();

    while !telemetry.stats().connected {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Emit faster than the broker acknowledges (bursts of 1,000 every 5 ms), so the
    // in-flight window is full when the broker dies.
    let total = 30_000;
    let producer = {
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            for i in 0..total {
                let _ = telemetry.record_variant_result(variant_result(i));
                if i % 1_000 == 999 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    // Kill the broker mid-stream, keep it down a moment, bring it back with the same
    // JetStream store.
    while telemetry.stats().published < 1_000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill();
    let published_at_kill = telemetry.stats().published;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.restart();
    producer.await.unwrap();
    wait_until_settled(&telemetry, Duration::from_secs(90)).await;

    let stats = telemetry.stats();
    assert!(published_at_kill > 0, "the kill happened mid-stream");
    assert!(
        published_at_kill < total as u64,
        "the kill happened mid-stream"
    );
    assert_eq!(stats.emitted, total as u64);
    assert_eq!(stats.emitted, stats.published + stats.dropped, "{stats:?}");
    telemetry.shutdown(Duration::from_secs(10)).await;

    let messages = read_stream(
        &server.url(),
        &iso.stream,
        (stats.emitted - stats.dropped) as usize,
        Duration::from_secs(10),
    )
    .await;
    let got = events(&messages);
    let seqs: HashSet<u64> = got.iter().map(|(_, e)| e.producer_seq).collect();
    assert_eq!(seqs.len(), got.len(), "no event is in the stream twice");
    assert_eq!(
        got.len() as u64,
        stats.emitted - stats.dropped,
        "every event not counted as dropped is in the stream"
    );
}

#[tokio::test]
async fn shutdown_publishes_everything_queued_when_the_broker_is_up() {
    let iso = Isolation::new();
    let telemetry = Telemetry::start(config(&iso)).unwrap();
    for i in 0..5_000 {
        telemetry.record_variant_result(variant_result(i)).unwrap();
    }
    let report = telemetry.shutdown(Duration::from_secs(20)).await;
    assert_eq!(report.emitted, 5_000);
    assert_eq!(report.published, 5_000);
    assert_eq!(report.left, 0);
    assert!(report.final_stats_sent);
    assert_eq!(
        telemetry.record_variant_result(variant_result(0)),
        Err(EmitError::Closed),
        "a shut-down handle takes no more events"
    );
    let messages = read_stream(&iso.nats_url, &iso.stream, 5_001, Duration::from_secs(5)).await;
    assert_eq!(events(&messages).len(), 5_000);
}

#[tokio::test]
async fn shutdown_returns_within_its_deadline_with_an_honest_count_when_the_broker_is_down() {
    let server = NatsServer::unstarted();
    let iso = Isolation::on(server.url());
    let telemetry = Telemetry::start(config(&iso)).unwrap();
    for i in 0..100 {
        telemetry.record_variant_result(variant_result(i)).unwrap();
    }
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let report = telemetry.shutdown(deadline).await;
    let took = started.elapsed();
    assert!(
        took < deadline + Duration::from_millis(250),
        "took {took:?}"
    );
    assert_eq!(report.published, 0);
    assert_eq!(report.left, 100);
    assert_eq!(report.emitted, report.published + report.dropped);
    assert!(!report.final_stats_sent);
    assert_eq!(
        telemetry.stats().dropped_for(DropReason::ShutdownDeadline),
        100
    );
}

#[tokio::test]
async fn failed_publishes_are_retried_until_they_land_exactly_once() {
    let iso = Isolation::new();
    // No stream yet and the SDK may not create one: every publish fails.
    let telemetry = Telemetry::start(TelemetryConfig {
        ensure_stream: false,
        ..config(&iso)
    })
    .unwrap();
    for i in 0..200 {
        telemetry.record_variant_result(variant_result(i)).unwrap();
    }
    let started = Instant::now();
    while telemetry.stats().publish_failures == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no publish failed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(telemetry.stats().published, 0);

    // The operator creates the stream: the held events go through.
    let client = async_nats::connect(iso.nats_url.as_str()).await.unwrap();
    let spec = StreamSpec::new(iso.stream.clone(), Subjects::new(&iso.prefix).unwrap())
        .with_max_bytes(Isolation::STREAM_MAX_BYTES)
        .unwrap();
    async_nats::jetstream::new(client)
        .create_stream(spec.config())
        .await
        .unwrap();
    wait_until_settled(&telemetry, Duration::from_secs(30)).await;
    let stats = telemetry.stats();
    assert_eq!((stats.published, stats.dropped), (200, 0), "{stats:?}");
    telemetry.shutdown(Duration::from_secs(5)).await;

    let messages = read_stream(&iso.nats_url, &iso.stream, 201, Duration::from_secs(5)).await;
    let got = events(&messages);
    let seqs: HashSet<u64> = got.iter().map(|(_, e)| e.producer_seq).collect();
    assert_eq!(got.len(), 200);
    assert_eq!(seqs, (1..=200).collect(), "each event once, none missing");
}

/// Polls the SDK's stats until `done` holds; fails after `within`, saying `what` and
/// the last stats.
async fn wait_for_stats(
    telemetry: &Telemetry,
    within: Duration,
    what: &str,
    done: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    let started = Instant::now();
    loop {
        let stats = telemetry.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            started.elapsed() < within,
            "not {what} after {within:?}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 14, item 2: the SDK knows whether JetStream takes its events, from its own
/// ack outcomes: nothing known until the first ack, then the time of the last one.
#[tokio::test]
async fn jetstream_is_unknown_until_the_first_ack_then_available() {
    let iso = Isolation::new();
    let telemetry = Telemetry::start(config(&iso)).unwrap();
    assert_eq!(
        telemetry.stats().jetstream,
        JetStreamState::NotConnected,
        "nothing is known before the connection is up"
    );
    let stats = wait_for_stats(&telemetry, Duration::from_secs(10), "connected", |s| {
        s.connected
    })
    .await;
    assert_eq!(stats.jetstream, JetStreamState::Unknown, "{stats:?}");
    // Connected, the stream ensured, nothing published: still nothing to say.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(telemetry.stats().jetstream, JetStreamState::Unknown);

    let before = Instant::now();
    telemetry.record_variant_result(variant_result(1)).unwrap();
    let stats = wait_for_stats(&telemetry, Duration::from_secs(10), "available", |s| {
        s.jetstream.is_available()
    })
    .await;
    assert_eq!(stats.published, 1, "{stats:?}");
    let JetStreamState::Available { last_ack } = stats.jetstream else {
        unreachable!()
    };
    assert!(
        last_ack >= before && last_ack <= Instant::now(),
        "the ack's time: {:?} after the call",
        last_ack.checked_duration_since(before)
    );
    telemetry.shutdown(Duration::from_secs(5)).await;
}

/// Issue 14, item 2: on a three-node cluster with one node up, the connection is up
/// but JetStream has no quorum and takes nothing (the SDK cannot create its R3 stream,
/// so publishes find no stream). The SDK says so, with why and since when; once the
/// other two nodes are back it says available, and the events it held arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_without_quorum_is_unavailable_while_connected_then_available_again() {
    let mut cluster = NatsCluster::unstarted();
    cluster.restart(0);
    let iso = Isolation::on(cluster.urls());
    let telemetry = Telemetry::start(TelemetryConfig {
        stream_replicas: 3,
        ack_timeout: Duration::from_millis(500),
        stats_interval: Duration::from_millis(500),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(250),
        ..config(&iso)
    })
    .unwrap();
    let count = 20;
    for i in 0..count {
        telemetry.record_variant_result(variant_result(i)).unwrap();
    }
    let stats = wait_for_stats(&telemetry, Duration::from_secs(20), "unavailable", |s| {
        matches!(s.jetstream, JetStreamState::Unavailable { .. })
    })
    .await;
    let JetStreamState::Unavailable { reason, since } = &stats.jetstream else {
        unreachable!()
    };
    assert!(stats.connected, "connected to the one node: {stats:?}");
    assert!(!reason.is_empty());
    assert_eq!(stats.published, 0, "{stats:?}");
    // It stays unavailable, and its start stays that of the first failure.
    let first_since = *since;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = telemetry.stats();
    match &later.jetstream {
        JetStreamState::Unavailable { since, reason } => {
            assert_eq!(*since, first_since, "{reason}");
            eprintln!("without quorum: {reason}");
        }
        other => panic!("without quorum: {other:?}"),
    }
    assert!(later.connected);
    assert!(later.publish_failures > 0, "{later:?}");

    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_for_jetstream(Duration::from_secs(60)).await;
    wait_for_stats(
        &telemetry,
        Duration::from_secs(60),
        "available after the quorum came back",
        |s| s.jetstream.is_available(),
    )
    .await;
    wait_until_settled(&telemetry, Duration::from_secs(30)).await;
    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.published, report.dropped), (count as u64, 0));

    let messages = read_stream(
        &iso.nats_url,
        &iso.stream,
        count + 1,
        Duration::from_secs(10),
    )
    .await;
    let seqs: HashSet<u64> = events(&messages)
        .iter()
        .map(|(_, e)| e.producer_seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=count as u64).collect(),
        "each held event arrived"
    );
    let client = async_nats::connect(test_support::urls(&iso.nats_url))
        .await
        .unwrap();
    let info = async_nats::jetstream::new(client)
        .get_stream(&iso.stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.config.num_replicas, 3, "the SDK created it at R3");
}

/// Issue 14, item 3: a stream that exists with other settings than the configured
/// ones is used as it is, never changed, and the SDK says how it differs (before, it
/// passed silently).
#[tokio::test(flavor = "current_thread")]
async fn an_existing_stream_with_other_settings_is_kept_and_warned_about() {
    // This thread only; the current-thread runtime runs the publisher here too.
    let (logs, _default) = test_support::logs::capture(tracing::Level::WARN);

    // No warning for a stream as configured, whether this SDK creates it or finds it.
    let matching = Isolation::new();
    for _ in 0..2 {
        let telemetry = Telemetry::start(config(&matching)).unwrap();
        telemetry.record_variant_result(variant_result(1)).unwrap();
        let report = telemetry.shutdown(Duration::from_secs(10)).await;
        assert_eq!(report.published, 1);
    }
    let text = logs.text();
    assert!(!text.contains("differs from the configured spec"), "{text}");

    let iso = Isolation::new();
    let mut existing = StreamSpec::new(iso.stream.clone(), Subjects::new(&iso.prefix).unwrap())
        .with_max_bytes(Isolation::STREAM_MAX_BYTES)
        .unwrap()
        .config();
    existing.duplicate_window = Duration::from_secs(5);
    let client = async_nats::connect(iso.nats_url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    test_support::create_stream(&js, existing).await;

    let telemetry = Telemetry::start(config(&iso)).unwrap();
    telemetry.record_variant_result(variant_result(1)).unwrap();
    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.published, 1, "the stream is used as it is");

    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("differs from the configured spec"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning:\n{text}");
    let warning = warnings[0];
    eprintln!("{warning}");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&iso.stream), "names the stream: {warning}");
    assert!(
        warning.contains("duplicate_window: 5s (configured 120s)"),
        "names the difference: {warning}"
    );
    assert!(
        warning.contains("keeps its own settings")
            && warning.contains("telemetry-collector stream update"),
        "{warning}"
    );
    let info = js
        .get_stream(&iso.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(
        info.config.duplicate_window,
        Duration::from_secs(5),
        "the stream is not changed"
    );
}
