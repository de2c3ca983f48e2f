//! Every column of every table survives a write and a read, on both backends: one
//! batch whose envelopes set every field (and a dead letter) is written through the
//! store and read back through the store's reads, and each column is compared with the
//! value its envelope set.
//!
//! The columns come from the store's own schema description (`store::schema`), and
//! that list is checked against the database's tables, so a column added to a
//! migration, to the schema or to a record without a round trip here fails the test.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{batch_of, Backend, TestDb};
use serde::Serialize;
use serde_json::{json, Value};
use telemetry_collector::domain::{DeadLetter, Origin, Rejection};
use telemetry_collector::store::{self, DeadLetterRecord, ProducerRecord};
use telemetry_proto::v1::{self, envelope::Body};

const SHOP: &str = "columns.myshopify.com";
const REQUEST: &str = "req-columns";
const PRODUCER: &str = "producer-columns";
const RECEIVED_AT: i64 = 1_700_000_999_000;
const FIRST_SEQ: u64 = 41;
const DEAD_SEQ: u64 = 99;
const DEAD_RAW: &[u8] = b"\x00not an envelope";

/// Column name -> value, for one row.
type Row = BTreeMap<String, Value>;

/// The envelopes: one of each kind, every field set to a value of its own.
struct Sent {
    run_id: String,
    envelopes: Vec<v1::Envelope>,
}

impl Sent {
    fn new() -> Self {
        let run_id = uuid::Uuid::now_v7().to_string();
        let bodies = vec![
            Body::Event(v1::Event {
                source: v1::EventSource::Renderer as i32,
                r#type: v1::EventType::SfRenderRequested as i32,
                payload_json: r#"{"productId":"p-1"}"#.into(),
                run_id: run_id.clone(),
            }),
            Body::RunStarted(v1::RunStarted {
                run_id: run_id.clone(),
                product_asset_id: "asset-1".into(),
                room_session_id: "room-1".into(),
                prompt_pack_version: "pack-7".into(),
                model: "model-x".into(),
                product_image: Some(image("product-hash", [11, 12, 13], "png")),
                room_image: Some(image("room-hash", [21, 22, 23], "webp")),
                resolved_facts_hash: "facts-hash".into(),
                resolved_facts_json: r#"{"scale":"1:1"}"#.into(),
                prompt_pack_hash: "pack-hash".into(),
                prompt_pack_json: r#"{"prompts":["a"]}"#.into(),
                variant_count: 1,
            }),
            Body::VariantStarted(v1::VariantStarted {
                run_id: run_id.clone(),
                variant_id: "variant-1".into(),
            }),
            Body::VariantResult(v1::VariantResult {
                run_id: run_id.clone(),
                variant_id: "variant-1".into(),
                final_prompt_hash: "prompt-hash".into(),
                status: v1::VariantStatus::Failed as i32,
                latency_ms: 345,
                output_image_key: "out/key.png".into(),
                output_image_hash: "out-hash".into(),
                error_code: v1::ErrorCode::ProviderError as i32,
                error_message: "provider said no after 345 ms".into(),
            }),
            Body::RunCompleted(v1::RunCompleted {
                run_id: run_id.clone(),
                status: v1::RunStatus::Failed as i32,
                total_duration_ms: 456,
                success_count: 1,
                fail_count: 2,
                timeout_count: 3,
            }),
            Body::ProducerStats(v1::ProducerStats {
                emitted: 31,
                published: 32,
                dropped: 33,
                dropped_by_reason: [("queue_full".to_owned(), 33)].into(),
                publish_failures: 34,
                queue_depth: 35,
                started_at: 36,
                r#final: true,
                service: "renderer-columns".into(),
            }),
        ];
        let envelopes = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| v1::Envelope {
                event_id: uuid::Uuid::now_v7().to_string(),
                occurred_at: 1_700_000_000_000 + 1_000 * i as i64,
                shop_id: SHOP.into(),
                request_id: REQUEST.into(),
                producer: PRODUCER.into(),
                producer_seq: 100 + i as u64,
                body: Some(body),
            })
            .collect();
        Self { run_id, envelopes }
    }

    /// The envelope of body `index` (in the order of [`Sent::new`]).
    fn at(&self, index: usize) -> &v1::Envelope {
        &self.envelopes[index]
    }

    fn id(&self, index: usize) -> Value {
        json!(self.at(index).event_id)
    }

    /// The first 16 bytes of the SHA-256 of the envelope's bytes.
    fn body_hash(&self, index: usize) -> Value {
        use prost::Message as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.at(index).encode_to_vec());
        json!(digest[..16].to_vec())
    }

    fn time(&self, index: usize) -> Value {
        json!(self.at(index).occurred_at)
    }

    /// The rows the batch must leave, table -> rows (in the order the reads return
    /// them).
    fn expected(&self) -> BTreeMap<&'static str, Vec<Row>> {
        let (event, start, variant_start, result, done, stats) = (0, 1, 2, 3, 4, 5);
        let event_row = |index: usize, kind: &str, event_type: &str| -> Row {
            columns([
                ("event_id", self.id(index)),
                ("kind", json!(kind)),
                ("event_type", json!(event_type)),
                ("source", Value::Null),
                ("shop_id", json!(SHOP)),
                ("request_id", json!(REQUEST)),
                ("run_id", json!(self.run_id)),
                ("variant_id", Value::Null),
                ("producer", json!(PRODUCER)),
                ("producer_seq", json!(self.at(index).producer_seq)),
                ("occurred_at", self.time(index)),
                ("received_at", json!(RECEIVED_AT)),
                ("stream_seq", json!(FIRST_SEQ + index as u64)),
                (
                    "subject",
                    json!(format!("columns.v1.{}", kind_subject(index))),
                ),
                ("payload", Value::Null),
                ("body_hash", self.body_hash(index)),
            ])
        };
        let mut app_event = event_row(event, "event", "sf_render_requested");
        app_event.insert("source".into(), json!("renderer"));
        app_event.insert("payload".into(), json!(r#"{"productId":"p-1"}"#));
        let mut variant_started = event_row(variant_start, "variant_started", "variant_started");
        variant_started.insert("variant_id".into(), json!("variant-1"));

        let run = columns([
            ("run_id", json!(self.run_id)),
            ("shop_id", json!(SHOP)),
            ("request_id", json!(REQUEST)),
            ("product_asset_id", json!("asset-1")),
            ("room_session_id", json!("room-1")),
            ("prompt_pack_version", json!("pack-7")),
            ("model", json!("model-x")),
            ("product_image_hash", json!("product-hash")),
            ("product_image_width", json!(11)),
            ("product_image_height", json!(12)),
            ("product_image_format", json!("png")),
            ("product_image_bytes", json!(13)),
            ("room_image_hash", json!("room-hash")),
            ("room_image_width", json!(21)),
            ("room_image_height", json!(22)),
            ("room_image_format", json!("webp")),
            ("room_image_bytes", json!(23)),
            ("resolved_facts_hash", json!("facts-hash")),
            ("resolved_facts_json", json!(r#"{"scale":"1:1"}"#)),
            ("prompt_pack_hash", json!("pack-hash")),
            ("prompt_pack_json", json!(r#"{"prompts":["a"]}"#)),
            ("variant_count", json!(1)),
            ("started_at", self.time(start)),
            ("started_event_id", self.id(start)),
            ("status", json!("failed")),
            ("total_duration_ms", json!(456)),
            ("success_count", json!(1)),
            ("fail_count", json!(2)),
            ("timeout_count", json!(3)),
            ("completed_at", self.time(done)),
            ("completed_event_id", self.id(done)),
        ]);
        let variant = columns([
            ("run_id", json!(self.run_id)),
            ("variant_id", json!("variant-1")),
            ("shop_id", json!(SHOP)),
            ("request_id", json!(REQUEST)),
            ("started_at", self.time(variant_start)),
            ("started_event_id", self.id(variant_start)),
            ("status", json!("failed")),
            ("final_prompt_hash", json!("prompt-hash")),
            ("latency_ms", json!(345)),
            ("output_image_key", json!("out/key.png")),
            ("output_image_hash", json!("out-hash")),
            ("error_code", json!("provider_error")),
            ("error_message", json!("provider said no after 345 ms")),
            ("error_group", json!("provider said no after <n> ms")),
            ("finished_at", self.time(result)),
            ("result_event_id", self.id(result)),
        ]);
        let producer = columns([
            ("producer", json!(PRODUCER)),
            ("service", json!("renderer-columns")),
            ("emitted", json!(31)),
            ("published", json!(32)),
            ("dropped", json!(33)),
            ("dropped_by_reason", json!(r#"{"queue_full":33}"#)),
            ("publish_failures", json!(34)),
            ("queue_depth", json!(35)),
            ("started_at", json!(36)),
            ("final", json!(true)),
            ("stats_seq", json!(self.at(stats).producer_seq)),
            ("stats_event_id", self.id(stats)),
            ("stats_at", self.time(stats)),
            ("last_seen_at", self.time(stats)),
            ("last_received_at", json!(RECEIVED_AT)),
            // Every envelope but the stats.
            ("stored_events", json!(5)),
        ]);
        let dead = columns([
            // Generated: the only row, so the first id.
            ("id", json!(1)),
            ("stream", json!("TELEMETRY")),
            ("stream_seq", json!(DEAD_SEQ)),
            ("subject", json!("columns.v1.run.started")),
            ("reason", json!(dead_reason().to_string())),
            ("raw", json!(DEAD_RAW)),
            ("received_at", json!(RECEIVED_AT)),
        ]);
        [
            ("monitor_events", vec![app_event, variant_started]),
            ("render_runs", vec![run]),
            ("variant_results", vec![variant]),
            ("producers", vec![producer]),
            ("dead_letters", vec![dead]),
        ]
        .into()
    }
}

/// An image with `[width, height, bytes]`.
fn image(hash: &str, [width, height, bytes]: [u32; 3], format: &str) -> v1::ImageRef {
    v1::ImageRef {
        hash: hash.into(),
        meta: Some(v1::ImageMeta {
            width,
            height,
            format: format.into(),
            bytes: bytes.into(),
        }),
    }
}

fn columns<const N: usize>(values: [(&str, Value); N]) -> Row {
    values
        .into_iter()
        .map(|(column, value)| (column.to_owned(), value))
        .collect()
}

/// The subject suffix of body `index` of [`Sent::new`].
fn kind_subject(index: usize) -> &'static str {
    ["event", "run.started", "variant.started"][index]
}

fn dead_reason() -> Rejection {
    Rejection::Undecodable("test: not an envelope".into())
}

/// A record read back, by column name.
fn row(record: &impl Serialize) -> Row {
    let Value::Object(fields) = serde_json::to_value(record).unwrap() else {
        panic!("a record is a JSON object");
    };
    fields.into_iter().collect()
}

fn producer_row(producer: &ProducerRecord) -> Row {
    let mut row = row(producer);
    // The field of the `final` column (a Rust keyword).
    let is_final = row.remove("is_final").expect("is_final");
    row.insert("final".into(), is_final);
    row
}

fn dead_letter_row(dead: &DeadLetterRecord) -> Row {
    let mut row = row(dead);
    // Not serialised (bytes), but a column like the others.
    row.insert("raw".into(), json!(dead.raw));
    row
}

/// The columns of `table` as the database has them.
async fn database_columns(db: &TestDb, table: &str) -> Vec<String> {
    let mut columns: Vec<String> = match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let columns = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(table)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            columns
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let columns = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(table)
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            columns
        }
    };
    columns.sort();
    columns
}

async fn every_column_round_trips(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let sent = Sent::new();
    let mut batch = batch_of("columns", &sent.envelopes, FIRST_SEQ, RECEIVED_AT);
    assert_eq!(
        batch.facts.len(),
        sent.envelopes.len(),
        "every envelope parses"
    );
    batch.dead.push(DeadLetter {
        origin: Origin {
            subject: "columns.v1.run.started".into(),
            stream_seq: DEAD_SEQ,
        },
        reason: dead_reason(),
        raw: Bytes::from_static(DEAD_RAW),
    });
    let report = store.write(&batch).await.expect("write the batch");
    assert_eq!((report.stored, report.dead_letters), (6, 1));

    // Read back through the store's reads.
    let detail = store
        .run(&sent.run_id)
        .await
        .unwrap()
        .expect("the run is stored");
    let event_ids = [sent.at(0).event_id.as_str(), sent.at(2).event_id.as_str()];
    let events: Vec<Row> = detail
        .events
        .iter()
        .filter(|e| event_ids.contains(&e.event_id.as_str()))
        .map(|e| {
            let mut row = row(e);
            // Not serialised (bytes), but a column like the others.
            row.insert("body_hash".into(), json!(e.body_hash));
            row
        })
        .collect();
    let read: BTreeMap<&str, Vec<Row>> = [
        ("monitor_events", events),
        ("render_runs", vec![row(&detail.run)]),
        ("variant_results", detail.variants.iter().map(row).collect()),
        (
            "producers",
            store
                .producers()
                .await
                .unwrap()
                .iter()
                .map(producer_row)
                .collect(),
        ),
        (
            "dead_letters",
            store
                .monitor_dead_letters(None, 10)
                .await
                .unwrap()
                .iter()
                .map(dead_letter_row)
                .collect(),
        ),
    ]
    .into();
    let expected = sent.expected();

    let tables = store::schema::tables();
    assert_eq!(
        tables
            .iter()
            .map(|(t, _)| *t)
            .collect::<std::collections::BTreeSet<_>>(),
        expected.keys().copied().collect(),
        "every table of the schema has a round trip here"
    );
    for (table, columns) in &tables {
        let mut described: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        described.sort();
        assert_eq!(
            database_columns(&db, table).await,
            described,
            "{table}: the schema description lists the database's columns"
        );
        let (expected, read) = (&expected[table], &read[table]);
        assert_eq!(read.len(), expected.len(), "{table}: rows read back");
        for column in columns {
            assert!(
                expected.iter().any(|row| row
                    .get(*column)
                    .unwrap_or_else(|| panic!("{table}.{column}: no expected value"))
                    != &Value::Null),
                "{table}.{column}: the test sets a value, not only NULL"
            );
        }
        for (want, got) in expected.iter().zip(read) {
            assert_eq!(want.len(), columns.len(), "{table}: expected columns");
            for column in columns {
                let want = &want[*column];
                assert_eq!(
                    got.get(*column),
                    Some(want),
                    "{table}.{column} on {backend:?}"
                );
            }
            assert_eq!(
                got.len(),
                columns.len(),
                "{table}: the read has no other column"
            );
        }
    }
    store.close().await;
}

on_both_backends!(every_column_round_trips);
