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
//! to decode. The statements and the bind order come from [`schema`].

use std::collections::HashMap;

use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool};
use sqlx::Sqlite;
use telemetry_proto::BodyKind;

use crate::store::projection::{EventInsert, Prepared};
use crate::store::rollups::{self, Delta, Grain, Row};
use crate::store::schema::{self, Syntax, Table, Value};
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

    /// The shapes of `table`'s upsert.
    fn of<R>(table: &Table<R>) -> Self {
        let columns: Vec<&str> = table.names().collect();
        Self::new(table.name, &columns, &table.on_conflict(Syntax::Sqlite))
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
    dead_letters: Shapes,
    /// The rollup contributions of the runs in a JSON list ([`rollups::touched_sql`]).
    touched: String,
    /// Per [`Grain`]: adds a JSON list of `[bucket, kind, model, prompt_pack, status,
    /// latency, n]` rows to the table.
    add_rollups: [String; 3],
    /// Whether ingest keeps the rollups ([`crate::store::StoreOptions::rollups`]).
    rollups: bool,
}

impl Statements {
    pub(crate) fn new(rollups: bool) -> Self {
        let add = |grain: Grain| {
            format!(
                "INSERT INTO {} (bucket, kind, model, prompt_pack, status, latency, n) \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                 json_extract(value, '$[2]'), json_extract(value, '$[3]'), \
                 json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
                 json_extract(value, '$[6]') FROM json_each(?) WHERE true \
                 ON CONFLICT (bucket, kind, model, prompt_pack, status, latency) \
                 DO UPDATE SET n = n + excluded.n",
                grain.table()
            )
        };
        Self {
            touched: rollups::touched_sql("IN (SELECT value FROM json_each(?))"),
            add_rollups: Grain::ALL.map(add),
            rollups,
            events: Shapes::of(&schema::events()),
            runs: Shapes::of(&schema::runs()),
            variants: Shapes::of(&schema::variants()),
            producers: Shapes::of(&schema::producers()),
            dead_letters: Shapes::of(&schema::dead_letters()),
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

/// Inserts `rows` into `table` in chunks of the prepared shapes, binding each row's
/// columns in the table's order; returns rows affected.
async fn insert_rows<'q, R>(
    tx: &mut sqlx::SqliteConnection,
    shapes: &'q Shapes,
    table: &Table<R>,
    rows: &'q [R],
) -> Result<u64, StoreError> {
    let mut affected = 0;
    let mut rest = rows;
    for len in chunk_lens(rows.len()) {
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        let mut query = sqlx::query(shapes.get(len));
        for row in chunk {
            for column in &table.columns {
                query = bind(query, row, &column.value);
            }
        }
        affected += query.execute(&mut *tx).await?.rows_affected();
    }
    Ok(affected)
}

fn bind<'q, R>(query: Q<'q>, row: &'q R, value: &Value<R>) -> Q<'q> {
    match value {
        Value::Text(get) => query.bind(get(row)),
        Value::Int(get) => query.bind(get(row)),
        Value::Bool(get) => query.bind(get(row)),
        Value::Bytes(get) => query.bind(get(row)),
    }
}

/// The group of an envelope: its producer, and whether it is a `ProducerStats` (which
/// does not count as a stored envelope of its producer).
fn group<'a>(event: &EventInsert<'a>) -> (&'a str, bool) {
    let stats = event.fact.kind() == BodyKind::ProducerStats;
    (event.fact.meta.producer.as_str(), stats)
}

/// The rollup contributions of the runs `ids` ([`rollups`]).
pub(crate) async fn contributions(
    conn: &mut sqlx::SqliteConnection,
    statements: &Statements,
    ids: &[&str],
) -> Result<Vec<Row>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(ids).expect("ids serialize");
    // Once for the runs, once for their variants.
    Ok(sqlx::query_as(&statements.touched)
        .bind(&ids)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?)
}

/// Adds `delta` to the rollup tables.
pub(crate) async fn add_rollups(
    conn: &mut sqlx::SqliteConnection,
    statements: &Statements,
    delta: &Delta,
) -> Result<(), StoreError> {
    for (grain, sql) in Grain::ALL.iter().zip(&statements.add_rollups) {
        let counts = delta.of(*grain);
        if counts.is_empty() {
            continue;
        }
        let rows: Vec<serde_json::Value> = counts
            .iter()
            .map(|(k, n)| {
                serde_json::json!([
                    k.bucket,
                    k.kind,
                    k.model,
                    k.prompt_pack,
                    k.status,
                    k.latency,
                    n
                ])
            })
            .collect();
        let rows = serde_json::to_string(&rows).expect("rows serialize");
        sqlx::query(sql).bind(rows).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes at most `limit` runs started before `cutoff`, oldest first, with their
/// variants, subtracting them from the rollups; returns (runs, variants) deleted.
pub(crate) async fn prune_runs(
    conn: &mut sqlx::SqliteConnection,
    statements: &Statements,
    cutoff: i64,
    limit: i64,
) -> Result<(u64, u64), StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(crate::store::ops::OLD_RUNS)
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    if ids.is_empty() {
        return Ok((0, 0));
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    if statements.rollups {
        let before = contributions(conn, statements, &ids).await?;
        add_rollups(conn, statements, &Delta::between(before, Vec::new())).await?;
    }
    let json = serde_json::to_string(&ids).expect("ids serialize");
    let variants =
        sqlx::query("DELETE FROM variant_results WHERE run_id IN (SELECT value FROM json_each(?))")
            .bind(&json)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    let runs =
        sqlx::query("DELETE FROM render_runs WHERE run_id IN (SELECT value FROM json_each(?))")
            .bind(&json)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    Ok((runs, variants))
}

/// Writes `batch` in one transaction.
pub(crate) async fn write(
    pool: &SqlitePool,
    statements: &Statements,
    batch: &Batch,
) -> Result<WriteReport, StoreError> {
    let mut prepared = Prepared::from_batch(batch, &HashMap::new());
    let mut report = WriteReport::default();
    let mut conn = WriterConn::acquire(pool).await?;
    // IMMEDIATE: take the write lock now (a lock held elsewhere shows as busy here,
    // not half-way through the batch), and sqlx refuses a custom BEGIN inside a
    // transaction, so a connection that still thinks it is in one fails loudly.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;

    // A stable sort keeps the batch's order within a group.
    let mut events = std::mem::take(&mut prepared.events);
    events.sort_by(|a, b| group(a).cmp(&group(b)));
    let table = schema::events();
    let mut inserted = Vec::new();
    for facts in events.chunk_by(|a, b| group(a) == group(b)) {
        let stored = insert_rows(&mut tx, &statements.events, &table, facts).await?;
        report.stored += stored;
        inserted.push((group(&facts[0]), stored));
    }
    report.duplicates = events.len() as u64 - report.stored;
    if report.duplicates > 0 {
        // Some were stored before: from the same bytes (a redelivery), or from other
        // bytes under the same id (a conflict, refused).
        prepared.events = events;
        let ids = serde_json::to_string(&prepared.event_ids()).expect("ids serialize");
        let rows: Vec<(String, Option<Vec<u8>>, i64)> = sqlx::query_as(
            "SELECT event_id, body_hash, stream_seq FROM monitor_events \
             WHERE event_id IN (SELECT value FROM json_each(?))",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        prepared.settle_conflicts(batch, rows, &mut report.duplicates);
    }
    for ((producer, stats), stored) in inserted {
        if !stats {
            prepared.add_stored(producer, stored);
        }
    }
    report.refused = prepared.refused_report();

    // The rollups: the touched runs' contributions before and after (module doc of
    // `rollups`); SQLite has one writer, so nothing changes them in between.
    let touched = if statements.rollups {
        prepared.touched_runs()
    } else {
        Vec::new()
    };
    let before = contributions(&mut tx, statements, &touched).await?;
    let runs = schema::runs();
    insert_rows(&mut tx, &statements.runs, &runs, &prepared.runs).await?;
    let variants = schema::variants();
    insert_rows(&mut tx, &statements.variants, &variants, &prepared.variants).await?;
    if !touched.is_empty() {
        let after = contributions(&mut tx, statements, &touched).await?;
        add_rollups(&mut tx, statements, &Delta::between(before, after)).await?;
    }
    let producers = prepared.take_producers();
    let table = schema::producers();
    insert_rows(&mut tx, &statements.producers, &table, &producers).await?;
    let table = schema::dead_letters();
    report.dead_letters +=
        insert_rows(&mut tx, &statements.dead_letters, &table, &prepared.dead).await?;

    tx.commit().await?;
    conn.committed();
    Ok(report)
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
