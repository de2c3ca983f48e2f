//! The SQLite write path: one transaction per batch, multi-row `INSERT`s of a few fixed
//! shapes so every statement stays prepared.
//!
//! sqlx caches a prepared statement per SQL text. A batch is cut into chunks of
//! [`CHUNK_ROWS`] rows, and the remainder into power-of-two chunks, so each table has
//! at most `log2(CHUNK_ROWS) + 1` statement shapes, built once per store: no SQL text is
//! built and no statement is parsed per batch, whatever the batch sizes.
//!
//! Envelopes are inserted per (producer, is-`ProducerStats`) group, so the statement's
//! own count of inserted rows gives the per-producer stored counts: no `RETURNING` rows
//! to decode.

use std::collections::BTreeMap;

use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool};
use sqlx::{QueryBuilder, Sqlite};
use telemetry_proto::BodyKind;

use crate::domain::{clamp, Fact};
use crate::store::projection::{self, Prepared, RunRow, VariantRow};
use crate::store::writer::WriterConn;
use crate::store::{Batch, StoreError, WriteReport};
use sqlx::Connection as _;

/// Rows of the largest multi-row `INSERT`. Beyond a few hundred rows the per-statement
/// overhead is already amortised, and 256 rows × 31 columns stays far below SQLite's
/// 32,766 bound parameters.
pub(crate) const CHUNK_ROWS: usize = 256;

type Q<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

/// The `INSERT` texts of one table, by chunk shape: index `k` holds `2^k` rows.
#[derive(Debug)]
struct Shapes(Vec<String>);

impl Shapes {
    fn new(table: &str, columns: &[&str], tail: &str) -> Self {
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        let shapes = (0..=CHUNK_ROWS.trailing_zeros())
            .map(|k| {
                let rows = vec![row.as_str(); 1 << k].join(", ");
                format!(
                    "INSERT INTO {table} ({}) VALUES {rows} {tail}",
                    columns.join(", ")
                )
            })
            .collect();
        Self(shapes)
    }

    /// The text for `rows`, a power of two up to [`CHUNK_ROWS`].
    fn get(&self, rows: usize) -> &str {
        debug_assert!(rows.is_power_of_two() && rows <= CHUNK_ROWS);
        &self.0[rows.trailing_zeros() as usize]
    }
}

/// Every statement shape of the write path, built once per store.
#[derive(Debug)]
pub(crate) struct Statements {
    events: Shapes,
    runs: Shapes,
    variants: Shapes,
    producers: Shapes,
}

impl Statements {
    pub(crate) fn new() -> Self {
        Self {
            events: Shapes::new(
                "monitor_events",
                projection::EVENT_COLUMNS,
                "ON CONFLICT (event_id) DO NOTHING",
            ),
            runs: Shapes::new(
                "render_runs",
                projection::RUN_COLUMNS,
                &projection::runs_conflict(),
            ),
            variants: Shapes::new(
                "variant_results",
                projection::VARIANT_COLUMNS,
                &projection::variants_conflict(),
            ),
            producers: Shapes::new(
                "producers",
                projection::PRODUCER_COLUMNS,
                &projection::producers_conflict("max"),
            ),
        }
    }
}

/// Chunk lengths for `len` rows: full chunks, then the remainder's binary digits.
fn chunk_lens(len: usize) -> impl Iterator<Item = usize> {
    let full = len / CHUNK_ROWS;
    let rest = len % CHUNK_ROWS;
    std::iter::repeat_n(CHUNK_ROWS, full).chain(
        (0..CHUNK_ROWS.trailing_zeros())
            .rev()
            .map(|k| 1 << k)
            .filter(move |bit| rest & bit != 0),
    )
}

/// Runs `bind` over `rows` in chunks of the prepared shapes; returns rows affected.
async fn insert_rows<'q, R>(
    tx: &mut sqlx::SqliteConnection,
    shapes: &'q Shapes,
    rows: &'q [R],
    bind: impl Fn(Q<'q>, &'q R) -> Q<'q>,
) -> Result<u64, StoreError> {
    let mut affected = 0;
    let mut rest = rows;
    for len in chunk_lens(rows.len()) {
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        let query = chunk.iter().fold(sqlx::query(shapes.get(len)), &bind);
        affected += query.execute(&mut *tx).await?.rows_affected();
    }
    Ok(affected)
}

/// Writes `batch` in one transaction.
pub(crate) async fn write(
    pool: &SqlitePool,
    statements: &Statements,
    batch: &Batch,
) -> Result<WriteReport, StoreError> {
    let mut prepared = Prepared::from_batch(batch);
    let mut report = WriteReport::default();
    let mut conn = WriterConn::acquire(pool).await?;
    // IMMEDIATE: take the write lock now (a lock held elsewhere shows as busy here,
    // not half-way through the batch), and sqlx refuses a custom BEGIN inside a
    // transaction, so a connection that still thinks it is in one fails loudly.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;

    let mut groups: BTreeMap<(&str, bool), Vec<&Fact>> = BTreeMap::new();
    for fact in &prepared.events {
        let stats = fact.kind() == BodyKind::ProducerStats;
        groups
            .entry((fact.meta.producer.as_str(), stats))
            .or_default()
            .push(fact);
    }
    for ((producer, stats), facts) in &groups {
        let stored = insert_rows(&mut tx, &statements.events, facts, |q, fact| {
            bind_event(q, fact, batch)
        })
        .await?;
        report.stored += stored;
        if !stats {
            prepared.add_stored(producer, stored);
        }
    }
    report.duplicates = prepared.events.len() as u64 - report.stored;

    insert_rows(&mut tx, &statements.runs, &prepared.runs, bind_run).await?;
    insert_rows(
        &mut tx,
        &statements.variants,
        &prepared.variants,
        bind_variant,
    )
    .await?;
    let producers: Vec<_> = prepared.producers.iter().collect();
    insert_rows(
        &mut tx,
        &statements.producers,
        &producers,
        |q, (producer, p)| projection::bind_producer!(q, **producer, p),
    )
    .await?;

    // Rare: one statement per batch that has any, built on the spot.
    if !batch.dead.is_empty() {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO dead_letters ({}) ",
            projection::DEAD_LETTER_COLUMNS.join(", ")
        ));
        for chunk in batch.dead.chunks(CHUNK_ROWS) {
            query.reset();
            query.push_values(chunk, |mut row, dead| {
                row.push_bind(&batch.stream)
                    .push_bind(clamp(dead.origin.stream_seq))
                    .push_bind(&dead.origin.subject)
                    .push_bind(dead.reason.to_string())
                    .push_bind(dead.raw.as_ref())
                    .push_bind(batch.received_at);
            });
            query.push(" ON CONFLICT (stream, stream_seq) DO NOTHING");
            report.dead_letters += query.build().execute(&mut *tx).await?.rows_affected();
        }
    }

    tx.commit().await?;
    conn.committed();
    Ok(report)
}

fn bind_event<'q>(query: Q<'q>, fact: &'q Fact, batch: &Batch) -> Q<'q> {
    query
        .bind(fact.meta.event_id.as_str())
        .bind(fact.kind().as_str())
        .bind(fact.event_type())
        .bind(fact.source())
        .bind(fact.meta.shop_id.as_str())
        .bind(fact.meta.request_id.as_str())
        .bind(fact.run_id())
        .bind(fact.variant_id())
        .bind(fact.meta.producer.as_str())
        .bind(fact.meta.producer_seq)
        .bind(fact.meta.occurred_at)
        .bind(batch.received_at)
        .bind(clamp(fact.origin.stream_seq))
        .bind(fact.origin.subject.as_str())
        .bind(fact.payload())
}

fn bind_run<'q>(query: Q<'q>, run: &'q RunRow<'q>) -> Q<'q> {
    let ident = run.ident();
    let start = run.start.as_ref().map(|(_, s)| *s);
    let product = start.map(|s| &s.product_image);
    let room = start.map(|s| &s.room_image);
    let product_meta = product.and_then(|i| i.meta.as_ref());
    let room_meta = room.and_then(|i| i.meta.as_ref());
    let done = run.done.as_ref().map(|(i, d)| (i, *d));
    query
        .bind(run.run_id)
        .bind(ident.shop_id)
        .bind(ident.request_id)
        .bind(ident.occurred_at)
        .bind(start.map(|s| &s.product_asset_id))
        .bind(start.map(|s| &s.room_session_id))
        .bind(start.map(|s| &s.prompt_pack_version))
        .bind(start.map(|s| &s.model))
        .bind(product.map(|i| &i.hash))
        .bind(product_meta.map(|m| m.width))
        .bind(product_meta.map(|m| m.height))
        .bind(product_meta.map(|m| &m.format))
        .bind(product_meta.map(|m| m.bytes))
        .bind(room.map(|i| &i.hash))
        .bind(room_meta.map(|m| m.width))
        .bind(room_meta.map(|m| m.height))
        .bind(room_meta.map(|m| &m.format))
        .bind(room_meta.map(|m| m.bytes))
        .bind(start.map(|s| &s.resolved_facts_hash))
        .bind(start.and_then(|s| s.resolved_facts_json.as_ref()))
        .bind(start.map(|s| &s.prompt_pack_hash))
        .bind(start.and_then(|s| s.prompt_pack_json.as_ref()))
        .bind(start.map(|s| s.variant_count))
        .bind(run.start.as_ref().map(|(i, _)| i.event_id))
        .bind(run.status())
        .bind(done.map(|(_, d)| d.total_duration_ms))
        .bind(done.map(|(_, d)| d.success_count))
        .bind(done.map(|(_, d)| d.fail_count))
        .bind(done.map(|(_, d)| d.timeout_count))
        .bind(done.map(|(i, _)| i.occurred_at))
        .bind(done.map(|(i, _)| i.event_id))
}

fn bind_variant<'q>(query: Q<'q>, variant: &'q VariantRow<'q>) -> Q<'q> {
    let ident = variant.ident();
    let result = variant.result.as_ref().map(|(i, r)| (i, *r));
    query
        .bind(variant.run_id)
        .bind(variant.variant_id)
        .bind(ident.shop_id)
        .bind(ident.request_id)
        .bind(variant.start.as_ref().map(|i| i.occurred_at))
        .bind(variant.start.as_ref().map(|i| i.event_id))
        .bind(variant.status())
        .bind(result.map(|(_, r)| &r.final_prompt_hash))
        .bind(result.map(|(_, r)| r.latency_ms))
        .bind(result.map(|(_, r)| &r.output_image_key))
        .bind(result.map(|(_, r)| &r.output_image_hash))
        .bind(result.map(|(_, r)| &r.error_code))
        .bind(result.map(|(_, r)| &r.error_message))
        .bind(result.map(|(i, _)| i.occurred_at))
        .bind(result.map(|(i, _)| i.event_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_with_few_shapes() {
        for len in [0, 1, 2, 3, 255, 256, 257, 1_000, 5_000] {
            let lens: Vec<usize> = chunk_lens(len).collect();
            assert_eq!(lens.iter().sum::<usize>(), len, "{len}");
            assert!(lens.iter().all(|l| l.is_power_of_two() && *l <= CHUNK_ROWS));
        }
        assert_eq!(
            chunk_lens(1_000).collect::<Vec<_>>(),
            [256, 256, 256, 128, 64, 32, 8]
        );
    }

    #[test]
    fn shapes_have_one_row_per_chunk_row() {
        let shapes = Shapes::new("t", &["a", "b"], "");
        assert_eq!(shapes.get(1), "INSERT INTO t (a, b) VALUES (?, ?) ");
        assert_eq!(shapes.get(4).matches("(?, ?)").count(), 4);
        assert_eq!(shapes.get(CHUNK_ROWS).matches("(?, ?)").count(), CHUNK_ROWS);
    }
}
