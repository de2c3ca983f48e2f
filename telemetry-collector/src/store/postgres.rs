//! Postgres: a pool, and batches written as one `INSERT .. SELECT FROM UNNEST(arrays)`
//! per table, so a batch of any size is a handful of statements with one parameter per
//! column (no bind-count limit, one plan per table). The statements, their array types
//! and the bind order come from [`schema`].

use std::collections::HashMap;
use std::str::FromStr;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::query::Query;
use sqlx::{Connection as _, Postgres};
use telemetry_proto::BodyKind;

use super::projection::Prepared;
use super::rollups::{self, Delta, Grain, Row};
use super::schema::{self, Table, Value};
use super::writer::WriterConn;
use super::{
    error_groups, overview, Batch, Dialect, ErrorFilter, ErrorGroups, ErrorSample,
    ErrorSampleFilter, OverviewFilter, StaleCutoff, StatsRow, StoreError, StoreOptions,
    WriteReport,
};

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
    /// The write path's SQL, derived once.
    statements: std::sync::Arc<Statements>,
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
            // No JIT for the monitor's reads: compiling the overview's query took
            // 186–282 ms of its ~490 ms on 300,000 runs (340 ms without), and the other
            // reads are index lookups it cannot speed up. A `SET` per new connection,
            // not a startup parameter, so poolers that refuse unknown startup
            // parameters (PgBouncer's `options`) still work.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "SET jit = off").await?;
                    Ok(())
                })
            })
            .connect_with(connect.clone())
            .await?;
        Ok(Self {
            writer,
            reader,
            connect,
            acquire_timeout: options.acquire_timeout,
            statements: std::sync::Arc::new(Statements::new(options.rollups)),
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
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// The write path's statements, one per table.
#[derive(Debug)]
struct Statements {
    /// New rows counted per producer in the server: a few rows back, not one per
    /// envelope.
    events: String,
    runs: String,
    variants: String,
    producers: String,
    dead_letters: String,
    /// The rollup contributions of an array of runs ([`rollups::touched_sql`]).
    touched: String,
    /// Per [`Grain`]: adds arrays of rows to the table.
    add_rollups: [String; 3],
    /// Whether ingest keeps the rollups ([`super::StoreOptions::rollups`]).
    rollups: bool,
}

impl Statements {
    fn new(rollups: bool) -> Self {
        let add = |grain: Grain| {
            let table = grain.table();
            format!(
                "INSERT INTO {table} (bucket, kind, model, prompt_pack, status, latency, n) \
                 SELECT * FROM UNNEST($1::bigint[], $2::smallint[], $3::text[], $4::text[], \
                 $5::text[], $6::bigint[], $7::bigint[]) \
                 ON CONFLICT (bucket, kind, model, prompt_pack, status, latency) \
                 DO UPDATE SET n = {table}.n + excluded.n"
            )
        };
        Self {
            touched: rollups::touched_sql("= ANY($1)"),
            add_rollups: Grain::ALL.map(add),
            rollups,
            events: format!(
                "WITH ins AS ({} RETURNING producer, kind) \
                 SELECT producer, kind = '{}' AS stats, count(*) FROM ins GROUP BY 1, 2",
                schema::events().unnest_upsert(),
                BodyKind::ProducerStats.as_str()
            ),
            runs: schema::runs().unnest_upsert(),
            variants: schema::variants().unnest_upsert(),
            producers: schema::producers().unnest_upsert(),
            dead_letters: schema::dead_letters().unnest_upsert(),
        }
    }
}

/// Takes the transaction-scoped advisory lock of each run of `ids`, in
/// [`rollups::lock_keys`] order: a concurrent batch or prune touching one of them waits
/// until this transaction ends, so its "before" reads what this one committed.
async fn lock_runs(conn: &mut sqlx::PgConnection, ids: &[&str]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k")
        .bind(rollups::lock_keys(ids.iter().copied()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The rollup contributions of the runs `ids` ([`rollups`]).
async fn contributions(
    conn: &mut sqlx::PgConnection,
    statements: &Statements,
    ids: &[&str],
) -> Result<Vec<Row>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(&statements.touched)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?)
}

/// Adds `delta` to the rollup tables, rows in key order (one lock order for every
/// writer).
async fn add_rollups(
    conn: &mut sqlx::PgConnection,
    statements: &Statements,
    delta: &Delta,
) -> Result<(), StoreError> {
    for (grain, sql) in Grain::ALL.iter().zip(&statements.add_rollups) {
        let counts = delta.of(*grain);
        if counts.is_empty() {
            continue;
        }
        let keys = || counts.keys();
        sqlx::query(sql)
            .bind(keys().map(|k| k.bucket).collect::<Vec<_>>())
            .bind(keys().map(|k| k.kind as i16).collect::<Vec<_>>())
            .bind(keys().map(|k| k.model.as_str()).collect::<Vec<_>>())
            .bind(keys().map(|k| k.prompt_pack.as_str()).collect::<Vec<_>>())
            .bind(keys().map(|k| k.status.as_str()).collect::<Vec<_>>())
            .bind(keys().map(|k| k.latency).collect::<Vec<_>>())
            .bind(counts.values().copied().collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Binds `rows` as one array per column of `table`, in the table's order.
fn bind_columns<'q, R>(sql: &'q str, table: &Table<R>, rows: &'q [R]) -> PgQuery<'q> {
    let mut query = sqlx::query(sql);
    for column in &table.columns {
        query = match &column.value {
            Value::Text(get) => query.bind(rows.iter().map(get).collect::<Vec<_>>()),
            Value::Int(get) => query.bind(rows.iter().map(get).collect::<Vec<_>>()),
            Value::Bool(get) => query.bind(rows.iter().map(get).collect::<Vec<_>>()),
            Value::Bytes(get) => query.bind(rows.iter().map(get).collect::<Vec<_>>()),
        };
    }
    query
}

#[async_trait::async_trait]
impl Dialect for PostgresStore {
    type Db = Postgres;
    const NAME: &'static str = "postgres";

    fn reader(&self) -> &PgPool {
        &self.reader
    }

    fn operator(&self) -> &PgPool {
        &self.reader
    }

    fn writers(&self) -> usize {
        self.writer.options().get_max_connections() as usize
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.reader)
            .await?;
        Ok(())
    }

    async fn write(&self, batch: &Batch) -> Result<WriteReport, StoreError> {
        let mut prepared = Prepared::from_batch(batch, &HashMap::new());
        let mut report = WriteReport::default();
        let mut conn = match WriterConn::acquire(&self.writer).await {
            Ok(conn) => conn,
            Err(err) => return Err(self.no_connection(err).await),
        };
        let mut tx = conn.begin().await?;
        let statements = &self.statements;
        // First, before this transaction holds anything else (module doc of `rollups`).
        let touched = if statements.rollups {
            prepared.touched_runs()
        } else {
            Vec::new()
        };
        lock_runs(&mut tx, &touched).await?;

        if !prepared.events.is_empty() {
            let table = schema::events();
            let inserted: Vec<(String, bool, i64)> =
                bind_columns(&statements.events, &table, &prepared.events)
                    .try_map(|row| sqlx::FromRow::from_row(&row))
                    .fetch_all(&mut *tx)
                    .await?;
            for (_, _, stored) in &inserted {
                report.stored += u64::try_from(*stored).unwrap_or(0);
            }
            report.duplicates = prepared.events.len() as u64 - report.stored;
            if report.duplicates > 0 {
                // Some were stored before: from the same bytes (a redelivery), or from
                // other bytes under the same id (a conflict, refused).
                let rows: Vec<(String, Option<Vec<u8>>, i64)> = sqlx::query_as(
                    "SELECT event_id, body_hash, stream_seq FROM monitor_events \
                     WHERE event_id = ANY($1)",
                )
                .bind(prepared.event_ids())
                .fetch_all(&mut *tx)
                .await?;
                prepared.settle_conflicts(batch, rows, &mut report.duplicates);
            }
            for (producer, stats, stored) in &inserted {
                if !stats {
                    prepared.add_stored(producer, u64::try_from(*stored).unwrap_or(0));
                }
            }
        }
        report.refused = prepared.refused_report();
        // The refold of a conflict only drops envelopes, so the runs locked above are
        // still every run it touches (one it no longer touches adds nothing).
        let before = contributions(&mut tx, statements, &touched).await?;
        if !prepared.runs.is_empty() {
            bind_columns(&statements.runs, &schema::runs(), &prepared.runs)
                .execute(&mut *tx)
                .await?;
        }
        if !prepared.variants.is_empty() {
            bind_columns(
                &statements.variants,
                &schema::variants(),
                &prepared.variants,
            )
            .execute(&mut *tx)
            .await?;
        }
        if !touched.is_empty() {
            let after = contributions(&mut tx, statements, &touched).await?;
            add_rollups(&mut tx, statements, &Delta::between(before, after)).await?;
        }
        let producers = prepared.take_producers();
        if !producers.is_empty() {
            bind_columns(&statements.producers, &schema::producers(), &producers)
                .execute(&mut *tx)
                .await?;
        }
        if !prepared.dead.is_empty() {
            let done = bind_columns(
                &statements.dead_letters,
                &schema::dead_letters(),
                &prepared.dead,
            )
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

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    async fn overview_rows(
        &self,
        filter: &OverviewFilter,
        stale: StaleCutoff,
    ) -> Result<Vec<StatsRow>, StoreError> {
        overview::postgres(&self.reader, filter, stale).await
    }

    async fn error_groups(&self, filter: &ErrorFilter) -> Result<ErrorGroups, StoreError> {
        error_groups::postgres(&self.reader, filter).await
    }

    async fn error_samples(
        &self,
        filter: &ErrorSampleFilter,
    ) -> Result<Vec<ErrorSample>, StoreError> {
        error_groups::samples_postgres(&self.reader, filter).await
    }

    async fn prune_runs(
        &self,
        conn: &mut sqlx::PgConnection,
        cutoff: i64,
        limit: i64,
    ) -> Result<(u64, u64), StoreError> {
        let statements = &self.statements;
        let ids: Vec<String> = sqlx::query_scalar(super::ops::OLD_RUNS)
            .bind(cutoff)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
        if ids.is_empty() {
            return Ok((0, 0));
        }
        let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let still_old: Vec<String>;
        if statements.rollups {
            // A batch touching one of these runs commits before or after, not across;
            // one that committed meanwhile may have moved a run's start (its start
            // arrived after its completion): only those still old go.
            lock_runs(conn, &ids).await?;
            still_old = sqlx::query_scalar(
                "SELECT run_id FROM render_runs WHERE run_id = ANY($1) AND started_at < $2",
            )
            .bind(&ids)
            .bind(cutoff)
            .fetch_all(&mut *conn)
            .await?;
            ids = still_old.iter().map(String::as_str).collect();
            let before = contributions(conn, statements, &ids).await?;
            add_rollups(conn, statements, &Delta::between(before, Vec::new())).await?;
        }
        let variants = sqlx::query("DELETE FROM variant_results WHERE run_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        let runs = sqlx::query("DELETE FROM render_runs WHERE run_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        Ok((runs, variants))
    }

    async fn lock_rollups(&self, conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        // Batches' additions wait for the recount; their reads do not.
        let tables: Vec<&str> = Grain::ALL.iter().map(|g| g.table()).collect();
        sqlx::query(&format!(
            "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            tables.join(", ")
        ))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn backfill_error_groups(&self) -> Result<u64, StoreError> {
        error_groups::backfill_postgres(&self.reader).await
    }
}
