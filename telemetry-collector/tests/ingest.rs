//! End to end through real NATS JetStream into SQLite files and fresh Postgres
//! databases. Every scenario runs on both backends.

mod common;

use std::time::Duration;

use common::{
    http_get, jetstream, publish_all, publish_raw, run_envelopes, settings, snapshot, spawn,
    subjects, wait_for_events, wait_until, Backend, TestDb,
};
use prost::Message as _;
use rand::seq::SliceRandom;
use telemetry::{
    CompleteRun, EmitEvent, ErrorCode, EventSource, EventType, ImageInfo, ImageMeta, RunStatus,
    StartRun, Telemetry, TelemetryConfig, VariantResultRecord, VariantStart, VariantStatus,
};
use telemetry_collector::domain::{self, Parsed};
use telemetry_collector::store::Batch;
use telemetry_proto::v1;
use test_support::Isolation;

async fn a_run_published_through_the_sdk_is_stored_with_every_field(backend: Backend) {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let collector = spawn(settings(&iso, &db.url)).await;

    let mut config = TelemetryConfig::default();
    config.nats.url = iso.nats_url.clone();
    config.subject_prefix = iso.prefix.clone();
    config.stream = iso.stream.clone();
    config.service = "renderer".into();
    let telemetry = Telemetry::start(config).expect("SDK starts");
    let producer = telemetry.producer_id().unwrap().to_owned();
    let run_id = uuid::Uuid::now_v7().to_string();
    let (shop, request) = ("demo.myshopify.com", "req-42");
    telemetry
        .emit(EmitEvent {
            shop_id: shop.into(),
            request_id: request.into(),
            run_id: String::new(),
            source: EventSource::AppProxy,
            event_type: EventType::SfRenderRequested,
            payload_json: r#"{"productId":"p1"}"#.into(),
        })
        .unwrap();
    let image = |hash: &str, width| ImageInfo {
        hash: hash.into(),
        meta: ImageMeta {
            width,
            height: 600,
            format: "jpeg".into(),
            bytes: 54_321,
        },
    };
    telemetry
        .start_run(StartRun {
            run_id: run_id.clone(),
            shop_id: shop.into(),
            request_id: request.into(),
            product_asset_id: "asset-1".into(),
            room_session_id: "room-1".into(),
            prompt_pack_version: "v7".into(),
            model: "gemini".into(),
            product_image: image("p-hash", 800),
            room_image: image("r-hash", 1600),
            resolved_facts_hash: "facts-hash".into(),
            resolved_facts_json: r#"{"width_cm":120}"#.into(),
            prompt_pack_hash: "pack-hash".into(),
            prompt_pack_json: r#"{"prompts":["a","b"]}"#.into(),
            variant_count: 2,
        })
        .unwrap();
    for variant in ["v1", "v2"] {
        telemetry
            .record_variant_start(VariantStart {
                run_id: run_id.clone(),
                variant_id: variant.into(),
                request_id: request.into(),
                shop_id: shop.into(),
            })
            .unwrap();
    }
    telemetry
        .record_variant_result(VariantResultRecord {
            run_id: run_id.clone(),
            variant_id: "v1".into(),
            request_id: request.into(),
            shop_id: shop.into(),
            final_prompt_hash: "prompt-1".into(),
            status: VariantStatus::Success,
            latency_ms: 2_500,
            output_image_key: Some("out/v1.png".into()),
            output_image_hash: Some("out-hash".into()),
            error_code: None,
            error_message: None,
        })
        .unwrap();
    telemetry
        .record_variant_result(VariantResultRecord {
            run_id: run_id.clone(),
            variant_id: "v2".into(),
            request_id: request.into(),
            shop_id: shop.into(),
            final_prompt_hash: "prompt-2".into(),
            status: VariantStatus::Failed,
            latency_ms: 900,
            output_image_key: None,
            output_image_hash: None,
            error_code: Some(ErrorCode::ProviderError),
            error_message: Some("quota".into()),
        })
        .unwrap();
    telemetry
        .complete_run(CompleteRun {
            run_id: run_id.clone(),
            request_id: request.into(),
            shop_id: shop.into(),
            status: RunStatus::Partial,
            total_duration_ms: 3_000,
            success_count: 1,
            fail_count: 1,
            timeout_count: 0,
        })
        .unwrap();
    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!((report.published, report.left), (7, 0));
    assert!(report.final_stats_sent);

    let store = collector.store.clone();
    wait_until(
        Duration::from_secs(30),
        "final producer stats stored",
        || async {
            store
                .producers()
                .await
                .unwrap()
                .iter()
                .any(|p| p.is_final == Some(true))
        },
    )
    .await;

    let detail = store.run(&run_id).await.unwrap().expect("run row");
    let run = &detail.run;
    assert_eq!(
        (
            run.shop_id.as_str(),
            run.request_id.as_str(),
            run.status.as_str()
        ),
        (shop, request, "partial")
    );
    assert_eq!(run.product_asset_id.as_deref(), Some("asset-1"));
    assert_eq!(run.room_session_id.as_deref(), Some("room-1"));
    assert_eq!(run.prompt_pack_version.as_deref(), Some("v7"));
    assert_eq!(run.model.as_deref(), Some("gemini"));
    assert_eq!(run.product_image_hash.as_deref(), Some("p-hash"));
    assert_eq!(run.product_image_width, Some(800));
    assert_eq!(run.product_image_height, Some(600));
    assert_eq!(run.product_image_format.as_deref(), Some("jpeg"));
    assert_eq!(run.product_image_bytes, Some(54_321));
    assert_eq!(run.room_image_hash.as_deref(), Some("r-hash"));
    assert_eq!(run.room_image_width, Some(1600));
    assert_eq!(run.resolved_facts_hash.as_deref(), Some("facts-hash"));
    assert_eq!(
        run.resolved_facts_json.as_deref(),
        Some(r#"{"width_cm":120}"#)
    );
    assert_eq!(run.prompt_pack_hash.as_deref(), Some("pack-hash"));
    assert_eq!(
        run.prompt_pack_json.as_deref(),
        Some(r#"{"prompts":["a","b"]}"#)
    );
    assert_eq!(run.variant_count, Some(2));
    assert_eq!(run.total_duration_ms, Some(3_000));
    assert_eq!(
        (run.success_count, run.fail_count, run.timeout_count),
        (Some(1), Some(1), Some(0))
    );
    assert!(run.started_event_id.is_some() && run.completed_event_id.is_some());

    assert_eq!(detail.variants.len(), 2);
    let (v1, v2) = (&detail.variants[0], &detail.variants[1]);
    assert_eq!(
        (v1.variant_id.as_str(), v1.status.as_str()),
        ("v1", "success")
    );
    assert_eq!(v1.final_prompt_hash.as_deref(), Some("prompt-1"));
    assert_eq!(v1.latency_ms, Some(2_500));
    assert_eq!(v1.output_image_key.as_deref(), Some("out/v1.png"));
    assert_eq!(v1.output_image_hash.as_deref(), Some("out-hash"));
    assert_eq!(v1.error_code.as_deref(), Some("unspecified"));
    assert!(v1.started_at.is_some() && v1.finished_at.is_some());
    assert_eq!(
        (v2.variant_id.as_str(), v2.status.as_str()),
        ("v2", "failed")
    );
    assert_eq!(v2.error_code.as_deref(), Some("provider_error"));
    assert_eq!(v2.error_message.as_deref(), Some("quota"));

    // The request's events: the app-proxy event plus the run's six, all from one producer.
    let kinds: Vec<&str> = detail
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(detail.events.len(), 7, "{kinds:?}");
    assert!(kinds.contains(&"sf_render_requested") && kinds.contains(&"run_completed"));
    let requested = detail
        .events
        .iter()
        .find(|e| e.event_type == "sf_render_requested")
        .unwrap();
    assert_eq!(requested.source.as_deref(), Some("app_proxy"));
    assert_eq!(requested.payload.as_deref(), Some(r#"{"productId":"p1"}"#));
    assert!(detail
        .events
        .iter()
        .all(|e| e.producer == producer && e.stream_seq > 0));

    let producers = store.producers().await.unwrap();
    let ledger = producers.iter().find(|p| p.producer == producer).unwrap();
    assert_eq!(ledger.service.as_deref(), Some("renderer"));
    assert_eq!(
        (ledger.emitted, ledger.published, ledger.dropped),
        (Some(7), Some(7), Some(0))
    );
    assert_eq!(
        ledger.stored_events, 7,
        "the collector stored all it was sent"
    );

    // The same data over HTTP.
    let (status, body) = http_get(collector.port, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["run"]["status"], "partial");
    assert_eq!(json["variants"].as_array().unwrap().len(), 2);
    let (status, body) =
        http_get(collector.port, &format!("/api/v1/runs?shop={shop}&limit=1")).await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["runs"][0]["run_id"], run_id.as_str());
    assert_eq!(http_get(collector.port, "/api/v1/runs/nope").await.0, 404);
    assert_eq!(http_get(collector.port, "/readyz").await.0, 200);
    let (_, metrics) = http_get(collector.port, "/metrics").await;
    assert!(
        metrics.contains("collector_events_stored_total 8"),
        "{metrics}"
    );
    assert!(metrics.contains("collector_commit_seconds_count"));
    collector.stop().await;
}
on_both_backends!(a_run_published_through_the_sdk_is_stored_with_every_field);

/// Publishes `envelopes` (in the given order) to a fresh stream and database, drains
/// them with a collector of `batch_size`, and returns the snapshot.
async fn drain(
    backend: Backend,
    envelopes: &[v1::Envelope],
    batch_size: usize,
) -> serde_json::Value {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let js = jetstream(&iso).await;
    publish_all(&js, &iso, envelopes).await;
    let mut settings = settings(&iso, &db.url);
    settings.batch_size = batch_size;
    let collector = spawn(settings).await;
    let unique: std::collections::HashSet<&str> =
        envelopes.iter().map(|e| e.event_id.as_str()).collect();
    wait_for_events(&collector.store, unique.len() as i64).await;
    wait_until(Duration::from_secs(10), "every message acked", || async {
        let mut stream = js.get_stream(&iso.stream).await.unwrap();
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer("telemetry-collector").await.unwrap();
        let info = consumer.info().await.unwrap();
        let _ = &mut stream;
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;
    let snapshot = snapshot(&collector.store).await;
    collector.stop().await;
    snapshot
}

async fn any_order_and_duplicates_give_the_same_rows(backend: Backend) {
    let mut in_order = Vec::new();
    for run in 0..6 {
        in_order.extend(run_envelopes("renderer-a", run as u64 * 7, run));
    }
    // A second, later completion of run 0 (a renderer that re-completed it): the one
    // with the greater event id decides, whatever the arrival order.
    let mut recompleted = in_order[6].clone();
    recompleted.event_id = uuid::Uuid::now_v7().to_string();
    recompleted.producer_seq = 100;
    if let Some(v1::envelope::Body::RunCompleted(done)) = &mut recompleted.body {
        done.status = v1::RunStatus::Complete as i32;
        done.success_count = 2;
        done.timeout_count = 0;
    } else {
        panic!("envelope 6 is the completion");
    }
    in_order.push(recompleted);
    let expected = drain(backend, &in_order, 100).await;
    assert_eq!(expected["runs"].as_array().unwrap().len(), 6);
    assert_eq!(expected["producers"][0]["stored_events"], 43);
    let statuses: Vec<&str> = expected["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "complete").count(),
        1,
        "{statuses:?}"
    );

    // Completion first, results before starts: the exact reverse, each twice.
    let mut reversed: Vec<v1::Envelope> = in_order.iter().rev().cloned().collect();
    reversed.extend(in_order.iter().rev().cloned());
    assert_eq!(
        drain(backend, &reversed, 5).await,
        expected,
        "reverse order"
    );

    // Shuffled, every event twice, small batches so duplicates straddle transactions.
    let mut shuffled: Vec<v1::Envelope> = in_order.iter().chain(&in_order).cloned().collect();
    shuffled.shuffle(&mut rand::rng());
    assert_eq!(drain(backend, &shuffled, 3).await, expected, "shuffled");
}
on_both_backends!(any_order_and_duplicates_give_the_same_rows);

async fn bad_messages_become_dead_letters_and_neighbours_are_stored(backend: Backend) {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let js = jetstream(&iso).await;
    let subjects = subjects(&iso);
    let good = run_envelopes("renderer-b", 0, 1);
    publish_all(&js, &iso, &good[..3]).await;

    publish_raw(
        &js,
        subjects.for_kind(telemetry_proto::BodyKind::Event),
        b"\xff\x00garbage".to_vec(),
    )
    .await;
    let mut bad_json = good[1].clone();
    bad_json.event_id = uuid::Uuid::now_v7().to_string();
    if let Some(v1::envelope::Body::RunStarted(run)) = &mut bad_json.body {
        run.prompt_pack_json = "{not json".into();
    }
    let mut no_run = good[4].clone();
    no_run.event_id = uuid::Uuid::now_v7().to_string();
    if let Some(v1::envelope::Body::VariantResult(result)) = &mut no_run.body {
        result.run_id.clear();
    }
    publish_all(&js, &iso, &[bad_json, no_run]).await;
    publish_all(&js, &iso, &good[3..]).await;

    let collector = spawn(settings(&iso, &db.url)).await;
    wait_for_events(&collector.store, good.len() as i64).await;
    let store = collector.store.clone();
    wait_until(Duration::from_secs(10), "three dead letters", || async {
        store.dead_letters_after(0, 10).await.unwrap().len() == 3
    })
    .await;
    let dead = store.dead_letters_after(0, 10).await.unwrap();
    assert!(
        dead[0].reason.starts_with("undecodable envelope"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].raw, b"\xff\x00garbage");
    assert!(
        dead[1].reason.contains("`prompt_pack_json` is not JSON"),
        "{}",
        dead[1].reason
    );
    assert_eq!(dead[2].reason, "missing required field `run_id`");
    assert!(dead
        .iter()
        .all(|d| d.stream == iso.stream && d.stream_seq > 0));
    // The good neighbours made the whole run.
    let runs = common::first_runs(&store).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "partial");
    assert_eq!(
        runs[0].prompt_pack_json.as_deref(),
        Some(r#"{"prompts":["a","b"]}"#)
    );
    assert_eq!(collector.metrics.dead_letters(), 3);
    collector.stop().await;
}
on_both_backends!(bad_messages_become_dead_letters_and_neighbours_are_stored);

async fn a_redelivered_batch_after_a_crash_before_ack_changes_nothing(backend: Backend) {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let js = jetstream(&iso).await;
    let envelopes: Vec<v1::Envelope> = (0..3)
        .flat_map(|run| run_envelopes("renderer-c", run as u64 * 7, run))
        .collect();
    publish_all(&js, &iso, &envelopes).await;

    // "Collector one": takes the messages, commits them, dies before acking.
    let mut settings = settings(&iso, &db.url);
    settings.ack_wait = Duration::from_secs(1);
    let (subjects, spec) = settings.validate().unwrap();
    let consumer = telemetry_collector::ingest::attach(&js, &spec, &settings)
        .await
        .unwrap()
        .consumer;
    let mut messages = consumer
        .fetch()
        .max_messages(envelopes.len())
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut batch = Batch {
        stream: iso.stream.clone(),
        received_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        ..Default::default()
    };
    use futures::StreamExt as _;
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let seq = message.info().unwrap().stream_sequence;
        match domain::parse(&subjects, &message.subject, seq, message.payload.clone()) {
            Parsed::Fact(fact) => batch.facts.push(*fact),
            Parsed::Dead(dead) => panic!("{dead:?}"),
        }
    }
    assert_eq!(batch.facts.len(), envelopes.len());
    let store = db.store().await;
    let report = store.write(&batch).await.unwrap();
    assert_eq!(report.stored, envelopes.len() as u64);
    let before = snapshot(&store).await;
    drop(messages);

    // "Collector two" gets the whole batch again once the ack wait runs out.
    let collector = spawn(settings).await;
    let metrics = collector.metrics.clone();
    wait_until(
        Duration::from_secs(20),
        "the batch redelivered and processed",
        || async {
            metrics
                .render()
                .contains(&format!("collector_duplicates_total {}", envelopes.len()))
        },
    )
    .await;
    assert_eq!(collector.metrics.events_stored(), 0, "nothing new stored");
    assert_eq!(snapshot(&store).await, before, "redelivery changed nothing");
    collector.stop().await;
}
on_both_backends!(a_redelivered_batch_after_a_crash_before_ack_changes_nothing);

async fn two_collectors_on_one_consumer_store_each_event_once(backend: Backend) {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let js = jetstream(&iso).await;
    let mut s = settings(&iso, &db.url);
    s.batch_size = 10;
    let first = spawn(s.clone()).await;
    let second = spawn(s).await;
    let envelopes: Vec<v1::Envelope> = (0..40)
        .flat_map(|run| run_envelopes("renderer-d", run as u64 * 7, run))
        .collect();
    let subjects = subjects(&iso);
    // Published with their ids, as the SDK does, in parallel.
    let acks = futures::future::join_all(envelopes.iter().map(|e| {
        let kind = telemetry_proto::BodyKind::of(e.body.as_ref().unwrap());
        js.publish(subjects.for_kind(kind).to_owned(), e.encode_to_vec().into())
    }))
    .await;
    for ack in acks {
        ack.unwrap().await.unwrap();
    }
    wait_for_events(&first.store, envelopes.len() as i64).await;
    let stored = first.metrics.events_stored() + second.metrics.events_stored();
    assert_eq!(
        stored,
        envelopes.len() as u64,
        "each event stored once across both"
    );
    let producers = first.store.producers().await.unwrap();
    assert_eq!(producers[0].stored_events, envelopes.len() as i64);
    assert_eq!(common::first_runs(&first.store).await.len(), 40);
    first.stop().await;
    second.stop().await;
}
on_both_backends!(two_collectors_on_one_consumer_store_each_event_once);

/// Ingest has a Postgres connection of its own: while every pooled connection serves
/// monitor requests that cannot finish (here: dead-letter reads blocked by a lock an
/// operator holds), new events are still stored. With one shared pool the write would
/// wait for a connection and time out until the lock was released.
#[tokio::test]
async fn monitor_reads_holding_every_pooled_connection_do_not_stall_ingest() {
    let db = TestDb::new(Backend::Postgres).await;
    let iso = Isolation::new();
    let mut settings = settings(&iso, &db.url);
    settings.store.max_connections = 2;
    let collector = spawn(settings).await;
    // Counted through a store of the test's own: the collector's pool will be busy.
    let counting = db.store().await;
    let js = jetstream(&iso).await;
    let first = run_envelopes("p-pool", 0, 0);
    publish_all(&js, &iso, &first).await;
    wait_for_events(&counting, first.len() as i64).await;

    // An operator's session locks the dead-letters table; dead-letter reads now wait
    // on the lock, each holding a pooled connection (four requests for two).
    let operator = common::lock_table(&db.url, "dead_letters").await;
    let port = collector.port;
    let readers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(http_get(port, "/api/v1/dead-letters")))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = run_envelopes("p-pool", 100, 1);
    publish_all(&js, &iso, &second).await;
    wait_for_events(&counting, (first.len() + second.len()) as i64).await;
    assert!(
        readers.iter().any(|r| !r.is_finished()),
        "the monitor reads were meant to still be blocked"
    );

    common::unlock(operator).await;
    for reader in readers {
        let (status, body) = reader.await.unwrap();
        // Served once the lock went, or refused after the pool's acquire timeout.
        assert!(status == 200 || status == 500, "{status}: {body}");
    }
    collector.stop().await;
}

/// `TELEMETRY_STREAM_MAX_BYTES` reaches the broker when the collector creates the
/// stream, and a cap the broker cannot reserve stops start-up with the knob named.
#[tokio::test]
async fn the_stream_is_created_with_its_cap_and_a_cap_too_big_fails_start_up_naming_it() {
    let iso = Isolation::new();
    let db = TestDb::new(Backend::Sqlite).await;
    let collector = spawn(settings(&iso, &db.url)).await;
    let client = async_nats::connect(iso.nats_url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(&iso.stream)
        .await
        .expect("the collector made it");
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_bytes, Isolation::STREAM_MAX_BYTES);
    collector.stop().await;

    // No server reserves a pebibyte.
    let other = Isolation::new();
    let mut too_big = settings(&other, &db.url);
    too_big.stream_max_bytes = 1 << 50;
    let err = match telemetry_collector::Application::build(too_big).await {
        Ok(_) => panic!("a 1 PiB stream was accepted"),
        Err(err) => service_kit::error_line(&err),
    };
    assert!(err.contains(&other.stream), "{err}");
    assert!(err.contains("insufficient storage"), "{err}");
    assert!(err.contains("lower it"), "{err}");
    assert!(err.contains("TELEMETRY_STREAM_MAX_BYTES"), "{err}");
}

/// On Postgres a collector writes two batches at once (`DATABASE_WRITERS`), and each
/// is acked after its own commit: while one batch waits on a lock an operator holds,
/// the next commits and is acked, and the waiting one stays unacked until it commits
/// too. With one writer the second batch would queue behind the first.
#[tokio::test]
async fn a_batch_waiting_on_a_lock_does_not_hold_back_the_next_and_is_acked_after_its_commit() {
    let db = TestDb::new(Backend::Postgres).await;
    let iso = Isolation::new();
    let js = jetstream(&iso).await;
    let settings = settings(&iso, &db.url);
    let consumer = settings.consumer.clone();
    assert_eq!(settings.store.writers, 2, "the default");
    let collector = spawn(settings).await;
    let counting = db.store().await;
    let unacked = || async {
        let stream = js.get_stream(&iso.stream).await.unwrap();
        let info = stream.consumer_info(&consumer).await.unwrap();
        info.num_ack_pending
    };

    // A dead letter whose insert waits on the operator's lock.
    let operator = common::lock_table(&db.url, "dead_letters").await;
    publish_raw(
        &js,
        subjects(&iso).for_kind(telemetry_proto::BodyKind::Event),
        b"\xff\x00garbage".to_vec(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The next batch does not touch that table: it commits and is acked meanwhile.
    let good = run_envelopes("p-writers", 0, 0);
    publish_all(&js, &iso, &good).await;
    wait_for_events(&counting, good.len() as i64).await;
    wait_until(
        Duration::from_secs(10),
        "only the waiting batch unacked",
        || async { unacked().await == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(unacked().await, 1, "the waiting batch must not be acked");

    common::unlock(operator).await;
    wait_until(
        Duration::from_secs(10),
        "the waiting batch acked",
        || async { unacked().await == 0 },
    )
    .await;
    let rows = common::all_rows(&db).await;
    assert_eq!(rows.dead_letters.len(), 1, "{:?}", rows.dead_letters);
    assert_eq!(counting.event_count().await.unwrap(), good.len() as i64);
    collector.stop().await;
}
