//! Postgres: a pool, and batches written as one `INSERT .. SELECT FROM UNNEST(arrays)`
//! per table, so a batch of any size is a handful of statements with one parameter per
//! column (no bind-count limit, one plan per table).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::projection::{self, Prepared};
use super::writer::WriterConn;
use super::{
    read_queries, Batch, DeadLetterRecord, ProducerRecord, RunDetail, RunRecord, Store, StoreError,
    StoreOptions, WriteReport,
};
use crate::domain::{clamp, RunStart, VariantOutcome};
use sqlx::Connection as _;

/// The Postgres store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Ingest's own connections (`DATABASE_WRITERS`, one per batch in flight): a
    /// monitor holding every pooled connection (a 30-day overview takes seconds) must
    /// not make ingest wait for one.
    writer: PgPool,
    /// Monitor reads, operations and everything else (`DATABASE_MAX_CONNECTIONS`).
    reader: PgPool,
    /// For [`PostgresStore::no_connection`]'s direct attempt.
    connect: PgConnectOptions,
    /// Bounds that attempt.
    acquire_timeout: std::time::Duration,
}

impl PostgresStore {
    /// Connects a pool to `url`. The first connection is made now, so a wrong URL or
    /// a server that is down fails start-up.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)?.application_name("telemetry-collector");
        // One direct attempt first: when it fails, the pool would report only that it
        // timed out, hiding the cause (refused, unknown host, TLS, password).
        let _ = sqlx::PgConnection::connect_with(&connect)
            .await?
            .close()
            .await;
        let writer = PgPoolOptions::new()
            .max_connections(options.writers.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let reader = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        Ok(Self {
            writer,
            reader,
            connect,
            acquire_timeout: options.acquire_timeout,
        })
    }

    /// Why a pool had no connection to give: a pool only says that it timed out, so
    /// one direct attempt names the cause (refused, unknown host, password, TLS, too
    /// many clients) for the logs and `/readyz`.
    async fn no_connection(&self, err: sqlx::Error) -> StoreError {
        if !matches!(err, sqlx::Error::PoolTimedOut) {
            return err.into();
        }
        let attempt = sqlx::PgConnection::connect_with(&self.connect);
        match tokio::time::timeout(self.acquire_timeout, attempt).await {
            Ok(Err(cause)) => cause.into(),
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                err.into()
            }
            Err(_) => err.into(),
        }
    }

    read_queries!();
    super::monitor_reads::monitor_read_queries!(sqlx::Postgres, stats = grouped);
    super::ops::ops_queries!(reader);
}

/// `INSERT INTO table (columns) SELECT * FROM UNNEST($1::type[], ...)`.
fn unnest_insert(table: &str, columns: &[&str], types: &[&str]) -> String {
    debug_assert_eq!(columns.len(), types.len());
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}[]", i + 1))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM UNNEST({})",
        columns.join(", "),
        arrays.join(", ")
    )
}

const T: &str = "text";
const B: &str = "bigint";

const EVENT_TYPES: &[&str] = &[T, T, T, T, T, T, T, T, T, B, B, B, B, T, T];
const RUN_TYPES: &[&str] = &[
    T, T, T, B, T, T, T, T, T, B, B, T, B, T, B, B, T, B, T, T, T, T, B, T, T, B, B, B, B, B, T,
];
const VARIANT_TYPES: &[&str] = &[T, T, T, T, B, T, T, T, B, T, T, T, T, B, T];

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn writers(&self) -> usize {
        self.writer.options().get_max_connections() as usize
    }

    fn dialect(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.reader)
            .await?;
        Ok(())
    }

    async fn write(&self, batch: &Batch) -> Result<WriteReport, StoreError> {
        let mut prepared = Prepared::from_batch(batch);
        let mut report = WriteReport::default();
        let mut conn = match WriterConn::acquire(&self.writer).await {
            Ok(conn) => conn,
            Err(err) => return Err(self.no_connection(err).await),
        };
        let mut tx = conn.begin().await?;

        if !prepared.events.is_empty() {
            let events = &prepared.events;
            let payloads: Vec<Option<String>> = events.iter().map(|f| f.payload()).collect();
            // New rows counted per producer in the server: a few rows back, not one
            // per envelope.
            let sql = format!(
                "WITH ins AS ({} ON CONFLICT (event_id) DO NOTHING RETURNING producer, kind) \
                 SELECT producer, kind = '{}' AS stats, count(*) FROM ins GROUP BY 1, 2",
                unnest_insert("monitor_events", projection::EVENT_COLUMNS, EVENT_TYPES),
                telemetry_proto::BodyKind::ProducerStats.as_str()
            );
            let inserted: Vec<(String, bool, i64)> = sqlx::query_as(&sql)
                .bind(column(events, |f| f.meta.event_id.as_str()))
                .bind(column(events, |f| f.kind().as_str()))
                .bind(column(events, |f| f.event_type()))
                .bind(column(events, |f| f.source()))
                .bind(column(events, |f| f.meta.shop_id.as_str()))
                .bind(column(events, |f| f.meta.request_id.as_str()))
                .bind(column(events, |f| f.run_id()))
                .bind(column(events, |f| f.variant_id()))
                .bind(column(events, |f| f.meta.producer.as_str()))
                .bind(column(events, |f| f.meta.producer_seq))
                .bind(column(events, |f| f.meta.occurred_at))
                .bind(column(events, |_| batch.received_at))
                .bind(column(events, |f| clamp(f.origin.stream_seq)))
                .bind(column(events, |f| f.origin.subject.as_str()))
                .bind(payloads)
                .fetch_all(&mut *tx)
                .await?;
            for (producer, stats, stored) in &inserted {
                let stored = u64::try_from(*stored).unwrap_or(0);
                report.stored += stored;
                if !stats {
                    prepared.add_stored(producer, stored);
                }
            }
            report.duplicates = prepared.events.len() as u64 - report.stored;
        }

        if !prepared.runs.is_empty() {
            let runs = &prepared.runs;
            let product_meta =
                |r: &projection::RunRow<'_>| start(r).and_then(|s| s.product_image.meta.clone());
            let room_meta =
                |r: &projection::RunRow<'_>| start(r).and_then(|s| s.room_image.meta.clone());
            let sql = format!(
                "{} {}",
                unnest_insert("render_runs", projection::RUN_COLUMNS, RUN_TYPES),
                projection::runs_conflict()
            );
            sqlx::query(&sql)
                .bind(column(runs, |r| r.run_id))
                .bind(column(runs, |r| r.ident().shop_id.to_owned()))
                .bind(column(runs, |r| r.ident().request_id.to_owned()))
                .bind(column(runs, |r| r.ident().occurred_at))
                .bind(column(runs, |r| {
                    start(r).map(|s| s.product_asset_id.as_str())
                }))
                .bind(column(runs, |r| {
                    start(r).map(|s| s.room_session_id.as_str())
                }))
                .bind(column(runs, |r| {
                    start(r).map(|s| s.prompt_pack_version.as_str())
                }))
                .bind(column(runs, |r| start(r).map(|s| s.model.as_str())))
                .bind(column(runs, |r| {
                    start(r).map(|s| s.product_image.hash.as_str())
                }))
                .bind(column(runs, |r| product_meta(r).map(|m| m.width)))
                .bind(column(runs, |r| product_meta(r).map(|m| m.height)))
                .bind(column(runs, |r| product_meta(r).map(|m| m.format)))
                .bind(column(runs, |r| product_meta(r).map(|m| m.bytes)))
                .bind(column(runs, |r| {
                    start(r).map(|s| s.room_image.hash.as_str())
                }))
                .bind(column(runs, |r| room_meta(r).map(|m| m.width)))
                .bind(column(runs, |r| room_meta(r).map(|m| m.height)))
                .bind(column(runs, |r| room_meta(r).map(|m| m.format)))
                .bind(column(runs, |r| room_meta(r).map(|m| m.bytes)))
                .bind(column(runs, |r| {
                    start(r).map(|s| s.resolved_facts_hash.as_str())
                }))
                .bind(column(runs, |r| {
                    start(r).and_then(|s| s.resolved_facts_json.as_deref())
                }))
                .bind(column(runs, |r| {
                    start(r).map(|s| s.prompt_pack_hash.as_str())
                }))
                .bind(column(runs, |r| {
                    start(r).and_then(|s| s.prompt_pack_json.as_deref())
                }))
                .bind(column(runs, |r| start(r).map(|s| s.variant_count)))
                .bind(column(runs, |r| r.start.as_ref().map(|(i, _)| i.event_id)))
                .bind(column(runs, |r| r.status().to_owned()))
                .bind(column(runs, |r| {
                    r.done.as_ref().map(|(_, d)| d.total_duration_ms)
                }))
                .bind(column(runs, |r| {
                    r.done.as_ref().map(|(_, d)| d.success_count)
                }))
                .bind(column(runs, |r| r.done.as_ref().map(|(_, d)| d.fail_count)))
                .bind(column(runs, |r| {
                    r.done.as_ref().map(|(_, d)| d.timeout_count)
                }))
                .bind(column(runs, |r| {
                    r.done.as_ref().map(|(i, _)| i.occurred_at)
                }))
                .bind(column(runs, |r| r.done.as_ref().map(|(i, _)| i.event_id)))
                .execute(&mut *tx)
                .await?;
        }

        if !prepared.variants.is_empty() {
            let variants = &prepared.variants;
            let sql = format!(
                "{} {}",
                unnest_insert(
                    "variant_results",
                    projection::VARIANT_COLUMNS,
                    VARIANT_TYPES
                ),
                projection::variants_conflict()
            );
            sqlx::query(&sql)
                .bind(column(variants, |v| v.run_id))
                .bind(column(variants, |v| v.variant_id))
                .bind(column(variants, |v| v.ident().shop_id.to_owned()))
                .bind(column(variants, |v| v.ident().request_id.to_owned()))
                .bind(column(variants, |v| {
                    v.start.as_ref().map(|i| i.occurred_at)
                }))
                .bind(column(variants, |v| v.start.as_ref().map(|i| i.event_id)))
                .bind(column(variants, |v| v.status().to_owned()))
                .bind(column(variants, |v| {
                    result(v).map(|r| r.final_prompt_hash.as_str())
                }))
                .bind(column(variants, |v| result(v).map(|r| r.latency_ms)))
                .bind(column(variants, |v| {
                    result(v).map(|r| r.output_image_key.as_str())
                }))
                .bind(column(variants, |v| {
                    result(v).map(|r| r.output_image_hash.as_str())
                }))
                .bind(column(variants, |v| {
                    result(v).map(|r| r.error_code.as_str())
                }))
                .bind(column(variants, |v| {
                    result(v).map(|r| r.error_message.as_str())
                }))
                .bind(column(variants, |v| {
                    v.result.as_ref().map(|(i, _)| i.occurred_at)
                }))
                .bind(column(variants, |v| {
                    v.result.as_ref().map(|(i, _)| i.event_id)
                }))
                .execute(&mut *tx)
                .await?;
        }

        let producers_sql = format!(
            "INSERT INTO producers ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) {}",
            projection::PRODUCER_COLUMNS.join(", "),
            projection::producers_conflict("GREATEST")
        );
        for (producer, p) in &prepared.producers {
            projection::bind_producer!(sqlx::query(&producers_sql), *producer, p)
                .execute(&mut *tx)
                .await?;
        }

        for dead in &batch.dead {
            let done = sqlx::query(
                "INSERT INTO dead_letters (stream, stream_seq, subject, reason, raw, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream, stream_seq) DO NOTHING",
            )
            .bind(&batch.stream)
            .bind(clamp(dead.origin.stream_seq))
            .bind(&dead.origin.subject)
            .bind(dead.reason.to_string())
            .bind(dead.raw.as_ref())
            .bind(batch.received_at)
            .execute(&mut *tx)
            .await?;
            report.dead_letters += done.rows_affected();
        }

        tx.commit().await?;
        conn.committed();
        Ok(report)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match sqlx::query("SELECT 1").execute(&self.reader).await {
            Ok(_) => Ok(()),
            Err(err) => Err(self.no_connection(err).await),
        }
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
        self.read_run(run_id).await
    }

    async fn producers(&self) -> Result<Vec<ProducerRecord>, StoreError> {
        self.read_producers().await
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

fn start<'a>(row: &projection::RunRow<'a>) -> Option<&'a RunStart> {
    row.start.as_ref().map(|(_, s)| *s)
}

fn result<'a>(row: &projection::VariantRow<'a>) -> Option<&'a VariantOutcome> {
    row.result.as_ref().map(|(_, r)| *r)
}

/// One column of a batch, for an `UNNEST` array parameter.
fn column<'a, R, T>(rows: &'a [R], f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(f).collect()
}
