//! SQLite: one writer connection (SQLite serialises writers anyway; a second one would
//! only wait on the lock), a small pool of readers, WAL so readers never block the
//! writer, `synchronous=NORMAL` (durable at checkpoints, safe against corruption), a
//! busy timeout for locks held by other processes. Batches are multi-row `INSERT`s.

use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use super::projection::{self, Prepared};
use super::{
    read_queries, Batch, DeadLetterRecord, ProducerRecord, RunDetail, RunQuery, RunRecord, Store,
    StoreError, StoreOptions, WriteReport,
};

/// SQLite's default limit on bound parameters in one statement (3.32+).
const MAX_PARAMS: usize = 32_766;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file of `url`.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(false);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self { writer, reader })
    }

    read_queries!();
    super::monitor_reads::monitor_read_queries!(sqlx::Sqlite, stats = packed);
    super::ops::ops_queries!(writer);
}

fn chunk_rows(columns: usize) -> usize {
    MAX_PARAMS / columns
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn dialect(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    async fn write(&self, batch: &Batch) -> Result<WriteReport, StoreError> {
        let mut prepared = Prepared::from_batch(batch);
        let mut report = WriteReport::default();
        let mut tx = self.writer.begin().await?;

        let mut inserted: Vec<(String, String)> = Vec::with_capacity(prepared.events.len());
        for chunk in prepared
            .events
            .chunks(chunk_rows(projection::EVENT_COLUMNS.len()))
        {
            let mut query = insert_into("monitor_events", projection::EVENT_COLUMNS);
            query.push_values(chunk, |mut row, fact| {
                row.push_bind(&fact.meta.event_id)
                    .push_bind(fact.kind().as_str())
                    .push_bind(fact.event_type())
                    .push_bind(fact.source())
                    .push_bind(&fact.meta.shop_id)
                    .push_bind(&fact.meta.request_id)
                    .push_bind(fact.run_id())
                    .push_bind(fact.variant_id())
                    .push_bind(&fact.meta.producer)
                    .push_bind(fact.meta.producer_seq)
                    .push_bind(fact.meta.occurred_at)
                    .push_bind(batch.received_at)
                    .push_bind(seq(fact.origin.stream_seq))
                    .push_bind(&fact.origin.subject)
                    .push_bind(fact.payload());
            });
            query.push(" ON CONFLICT (event_id) DO NOTHING RETURNING producer, kind");
            let rows: Vec<(String, String)> = query.build_query_as().fetch_all(&mut *tx).await?;
            inserted.extend(rows);
        }
        report.stored = inserted.len() as u64;
        report.duplicates = prepared.events.len() as u64 - report.stored;
        prepared.count_stored(inserted.iter().map(|(p, k)| (p.as_str(), k.as_str())));

        let runs_conflict = projection::runs_conflict();
        for chunk in prepared
            .runs
            .chunks(chunk_rows(projection::RUN_COLUMNS.len()))
        {
            let mut query = insert_into("render_runs", projection::RUN_COLUMNS);
            query.push_values(chunk, |mut row, run| {
                let ident = run.ident();
                let start = run.start.as_ref().map(|(_, s)| *s);
                let product = start.map(|s| &s.product_image);
                let room = start.map(|s| &s.room_image);
                let product_meta = product.and_then(|i| i.meta.as_ref());
                let room_meta = room.and_then(|i| i.meta.as_ref());
                let done = run.done.as_ref().map(|(i, d)| (i, *d));
                row.push_bind(run.run_id)
                    .push_bind(ident.shop_id)
                    .push_bind(ident.request_id)
                    .push_bind(ident.occurred_at)
                    .push_bind(start.map(|s| &s.product_asset_id))
                    .push_bind(start.map(|s| &s.room_session_id))
                    .push_bind(start.map(|s| &s.prompt_pack_version))
                    .push_bind(start.map(|s| &s.model))
                    .push_bind(product.map(|i| &i.hash))
                    .push_bind(product_meta.map(|m| m.width))
                    .push_bind(product_meta.map(|m| m.height))
                    .push_bind(product_meta.map(|m| &m.format))
                    .push_bind(product_meta.map(|m| m.bytes))
                    .push_bind(room.map(|i| &i.hash))
                    .push_bind(room_meta.map(|m| m.width))
                    .push_bind(room_meta.map(|m| m.height))
                    .push_bind(room_meta.map(|m| &m.format))
                    .push_bind(room_meta.map(|m| m.bytes))
                    .push_bind(start.map(|s| &s.resolved_facts_hash))
                    .push_bind(start.and_then(|s| s.resolved_facts_json.as_ref()))
                    .push_bind(start.map(|s| &s.prompt_pack_hash))
                    .push_bind(start.and_then(|s| s.prompt_pack_json.as_ref()))
                    .push_bind(start.map(|s| s.variant_count))
                    .push_bind(run.start.as_ref().map(|(i, _)| i.event_id))
                    .push_bind(run.status())
                    .push_bind(done.map(|(_, d)| d.total_duration_ms))
                    .push_bind(done.map(|(_, d)| d.success_count))
                    .push_bind(done.map(|(_, d)| d.fail_count))
                    .push_bind(done.map(|(_, d)| d.timeout_count))
                    .push_bind(done.map(|(i, _)| i.occurred_at))
                    .push_bind(done.map(|(i, _)| i.event_id));
            });
            query.push(" ");
            query.push(&runs_conflict);
            query.build().execute(&mut *tx).await?;
        }

        let variants_conflict = projection::variants_conflict();
        for chunk in prepared
            .variants
            .chunks(chunk_rows(projection::VARIANT_COLUMNS.len()))
        {
            let mut query = insert_into("variant_results", projection::VARIANT_COLUMNS);
            query.push_values(chunk, |mut row, variant| {
                let ident = variant.ident();
                let result = variant.result.as_ref().map(|(i, r)| (i, *r));
                row.push_bind(variant.run_id)
                    .push_bind(variant.variant_id)
                    .push_bind(ident.shop_id)
                    .push_bind(ident.request_id)
                    .push_bind(variant.start.as_ref().map(|i| i.occurred_at))
                    .push_bind(variant.start.as_ref().map(|i| i.event_id))
                    .push_bind(variant.status())
                    .push_bind(result.map(|(_, r)| &r.final_prompt_hash))
                    .push_bind(result.map(|(_, r)| r.latency_ms))
                    .push_bind(result.map(|(_, r)| &r.output_image_key))
                    .push_bind(result.map(|(_, r)| &r.output_image_hash))
                    .push_bind(result.map(|(_, r)| &r.error_code))
                    .push_bind(result.map(|(_, r)| &r.error_message))
                    .push_bind(result.map(|(i, _)| i.occurred_at))
                    .push_bind(result.map(|(i, _)| i.event_id));
            });
            query.push(" ");
            query.push(&variants_conflict);
            query.build().execute(&mut *tx).await?;
        }

        if !prepared.producers.is_empty() {
            let mut query = insert_into("producers", projection::PRODUCER_COLUMNS);
            query.push_values(&prepared.producers, |mut row, (producer, p)| {
                let stats = p.stats.map(|(_, s)| s);
                row.push_bind(*producer)
                    .push_bind(stats.map(|s| &s.service))
                    .push_bind(stats.map(|s| s.emitted))
                    .push_bind(stats.map(|s| s.published))
                    .push_bind(stats.map(|s| s.dropped))
                    .push_bind(stats.map(|s| &s.dropped_by_reason))
                    .push_bind(stats.map(|s| s.publish_failures))
                    .push_bind(stats.map(|s| s.queue_depth))
                    .push_bind(stats.map(|s| s.started_at))
                    .push_bind(stats.map(|s| s.is_final))
                    .push_bind(p.stats.map(|(id, _)| id))
                    .push_bind(p.last_seen_at)
                    .push_bind(p.stored_events);
            });
            query.push(" ");
            query.push(projection::producers_conflict("max"));
            query.build().execute(&mut *tx).await?;
        }

        for chunk in batch
            .dead
            .chunks(chunk_rows(projection::DEAD_LETTER_COLUMNS.len()))
        {
            let mut query = insert_into("dead_letters", projection::DEAD_LETTER_COLUMNS);
            query.push_values(chunk, |mut row, dead| {
                row.push_bind(&batch.stream)
                    .push_bind(seq(dead.origin.stream_seq))
                    .push_bind(&dead.origin.subject)
                    .push_bind(dead.reason.to_string())
                    .push_bind(dead.raw.as_ref())
                    .push_bind(batch.received_at);
            });
            query.push(" ON CONFLICT (stream, stream_seq) DO NOTHING");
            report.dead_letters += query.build().execute(&mut *tx).await?.rows_affected();
        }

        tx.commit().await?;
        Ok(report)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        self.read_runs(query).await
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
        self.read_run(run_id).await
    }

    async fn producers(&self) -> Result<Vec<ProducerRecord>, StoreError> {
        self.read_producers().await
    }

    async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.read_dead_letters(limit).await
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        self.read_event_count().await
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    // --- monitor reads ---
    async fn monitor_runs(&self, filter: &super::RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.read_monitor_runs(filter).await
    }

    async fn monitor_events(
        &self,
        filter: &super::EventFilter,
    ) -> Result<Vec<super::EventRecord>, StoreError> {
        self.read_monitor_events(filter).await
    }

    async fn monitor_dead_letters(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.read_monitor_dead_letters(before, limit).await
    }

    async fn monitor_stats(&self, from: i64, to: i64) -> Result<super::Stats, StoreError> {
        self.read_monitor_stats(from, to).await
    }

    // --- operations ---
    async fn prune_counts(&self, cutoff: i64) -> Result<super::PruneCounts, StoreError> {
        self.ops_prune_counts(cutoff).await
    }

    async fn prune_step(&self, cutoff: i64, limit: i64) -> Result<super::PruneCounts, StoreError> {
        self.ops_prune_step(cutoff, limit).await
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, StoreError> {
        self.ops_dead_letter(id).await
    }

    async fn dead_letters_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.ops_dead_letters_after(after_id, limit).await
    }

    async fn settle_dead_letters(
        &self,
        resolved: &[i64],
        failing: &[(i64, String)],
    ) -> Result<(), StoreError> {
        self.ops_settle_dead_letters(resolved, failing).await
    }

    async fn purge_dead_letters(&self, limit: i64) -> Result<u64, StoreError> {
        self.ops_purge_dead_letters(limit).await
    }
}

fn insert_into<'a>(table: &str, columns: &[&str]) -> QueryBuilder<'a, Sqlite> {
    QueryBuilder::new(format!("INSERT INTO {table} ({}) ", columns.join(", ")))
}

/// Stream sequences fit in i64 for any stream that fits on a disk.
fn seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
