//! The [`Store`] of every [`Dialect`]: reads and operations are the same SQL on both
//! databases, so they are written once here, generic over the sqlx database; only
//! what a dialect does differently (migrate, write, ping, close, the overview) is
//! delegated to it.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::monitor_reads::{
    dead_letters_query, error_count_query, events_query, prefix_end, runs_query, shops_query,
    FetchBuilt, RunsPlan, ShopMatch, MAX_SORTED_ERROR_VARIANTS,
};
use super::ops::ORPHAN_VARIANTS;
use super::rollups;
use super::{
    Batch, DeadLetterRecord, Dialect, ErrorFilter, ErrorGroups, ErrorSample, ErrorSampleFilter,
    EventFilter, EventRecord, HealthCounts, Overview, OverviewFilter, ProducerRecord, PruneCounts,
    RunDetail, RunFilter, RunRecord, StaleCutoff, StatsRow, Store, StoreError, VariantRecord,
    WriteReport, MAX_RUN_EVENTS,
};

/// The rows a statement changed, from either driver's result (sqlx has no trait for it).
pub(crate) trait RowsAffected {
    fn rows(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// What a shop filter (a prefix, any case) matches among the shops of `table`; `None`
/// without one.
async fn find_shops<DB>(
    pool: &Pool<DB>,
    table: &'static str,
    prefix: Option<&str>,
) -> Result<Option<ShopMatch>, StoreError>
where
    DB: FetchBuilt,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    let Some(prefix) = prefix else {
        return Ok(None);
    };
    let prefix = prefix.to_ascii_lowercase();
    let end = prefix_end(&prefix);
    let found: Vec<(String,)> =
        DB::fetch_all(pool, shops_query(table, &prefix, end.as_deref())).await?;
    Ok(Some(ShopMatch::of(
        &prefix,
        found.into_iter().map(|(shop,)| shop).collect(),
    )))
}

#[async_trait::async_trait]
impl<D, DB> Store for D
where
    D: Dialect<Db = DB>,
    DB: FetchBuilt,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    rollups::Row: for<'r> FromRow<'r, DB::Row>,
    rollups::SeriesRow: for<'r> FromRow<'r, DB::Row>,
    StatsRow: for<'r> FromRow<'r, DB::Row>,
    RunRecord: for<'r> FromRow<'r, DB::Row>,
    VariantRecord: for<'r> FromRow<'r, DB::Row>,
    EventRecord: for<'r> FromRow<'r, DB::Row>,
    DeadLetterRecord: for<'r> FromRow<'r, DB::Row>,
    ProducerRecord: for<'r> FromRow<'r, DB::Row>,
    DB::QueryResult: RowsAffected,
{
    fn dialect(&self) -> &'static str {
        D::NAME
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        Dialect::migrate(self).await?;
        let counted: Option<(i64,)> = sqlx::query_as("SELECT counted_at FROM rollup_state")
            .fetch_optional(self.operator())
            .await?;
        if counted.is_none() {
            let started = std::time::Instant::now();
            let rows = self.recount_rollups().await?;
            tracing::info!(
                rows,
                took_ms = started.elapsed().as_millis() as u64,
                "rollups counted from the stored runs"
            );
        }
        let filled = self.backfill_error_groups().await?;
        if filled > 0 {
            tracing::info!(
                variants = filled,
                "error groups filled for variants stored before them"
            );
        }
        Ok(())
    }

    async fn write(&self, batch: &Batch) -> Result<WriteReport, StoreError> {
        Dialect::write(self, batch).await
    }

    fn writers(&self) -> usize {
        Dialect::writers(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Dialect::ping(self).await
    }

    async fn close(&self) {
        Dialect::close(self).await
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
        let reader = self.reader();
        let run: Option<RunRecord> = sqlx::query_as("SELECT * FROM render_runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(reader)
            .await?;
        let Some(run) = run else {
            return Ok(None);
        };
        let variants =
            sqlx::query_as("SELECT * FROM variant_results WHERE run_id = $1 ORDER BY variant_id")
                .bind(run_id)
                .fetch_all(reader)
                .await?;
        // The lists' order (`monitor_reads::EVENT_ORDER`), oldest first.
        let events = sqlx::query_as(
            "SELECT * FROM monitor_events WHERE request_id = $1 AND request_id <> '' \
             UNION SELECT * FROM monitor_events WHERE run_id = $2 \
             ORDER BY occurred_at, producer, producer_seq, event_id LIMIT $3",
        )
        .bind(run.request_id.as_str())
        .bind(run_id)
        .bind(MAX_RUN_EVENTS)
        .fetch_all(reader)
        .await?;
        Ok(Some(RunDetail {
            run,
            variants,
            events,
        }))
    }

    async fn producers(&self) -> Result<Vec<ProducerRecord>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM producers ORDER BY last_seen_at DESC, producer")
                .fetch_all(self.reader())
                .await?,
        )
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM monitor_events")
            .fetch_one(self.reader())
            .await?;
        Ok(count)
    }

    async fn health_counts(
        &self,
        recent_from: i64,
        day_from: i64,
    ) -> Result<HealthCounts, StoreError> {
        // `max` is read off the start-time index on both databases; -1: no start.
        let (last_run_at,): (i64,) =
            sqlx::query_as("SELECT coalesce(max(started_at), -1) FROM render_runs")
                .fetch_one(self.reader())
                .await?;
        let (runs_recent,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM render_runs WHERE started_at >= $1")
                .bind(recent_from)
                .fetch_one(self.reader())
                .await?;
        let (dead_letters_24h,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM dead_letters WHERE received_at >= $1")
                .bind(day_from)
                .fetch_one(self.reader())
                .await?;
        Ok(HealthCounts {
            last_run_at: (last_run_at >= 0).then_some(last_run_at),
            runs_recent,
            dead_letters_24h,
        })
    }

    // --- monitor reads ---

    async fn monitor_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let reader = self.reader();
        let shops = find_shops(reader, "render_runs", filter.shop_id.as_deref()).await?;
        if shops == Some(ShopMatch::Nothing) {
            return Ok(Vec::new());
        }
        let rare_error = match &filter.error_code {
            None => false,
            Some(code) => {
                let code = code.to_ascii_lowercase();
                let counted: Vec<(i64,)> = DB::fetch_all(reader, error_count_query(&code)).await?;
                counted.first().map_or(0, |(n,)| *n) <= MAX_SORTED_ERROR_VARIANTS
            }
        };
        let plan = RunsPlan { shops, rare_error };
        Ok(DB::fetch_all(reader, runs_query(filter, &plan)).await?)
    }

    async fn monitor_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let reader = self.reader();
        let shops = find_shops(reader, "monitor_events", filter.shop_id.as_deref()).await?;
        if shops == Some(ShopMatch::Nothing) {
            return Ok(Vec::new());
        }
        Ok(DB::fetch_all(reader, events_query(filter, shops.as_ref())).await?)
    }

    async fn monitor_dead_letters(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        Ok(DB::fetch_all(self.reader(), dead_letters_query(before, limit)).await?)
    }

    async fn monitor_stats(
        &self,
        filter: &OverviewFilter,
        stale: StaleCutoff,
    ) -> Result<Overview, StoreError> {
        let plan = rollups::Plan::of(filter.from, filter.to, stale.0);
        let mut rows = Vec::new();
        for (grain, from, to, before_cutoff) in plan.rollups {
            let query = rollups::overview_sql(grain, from, to, filter.model.as_deref());
            let found: Vec<StatsRow> = DB::fetch_all(self.reader(), query).await?;
            rows.extend(rollups::stale_rows(found, before_cutoff));
        }
        for (from, to) in plan.raw {
            let edge = OverviewFilter {
                from,
                to,
                model: filter.model.clone(),
            };
            rows.extend(rollups::coarse_rows(
                self.overview_rows(&edge, stale).await?,
            ));
        }
        Ok(super::overview::summarize(filter, &rows))
    }

    async fn monitor_series(
        &self,
        filter: &rollups::SeriesFilter,
        stale: StaleCutoff,
    ) -> Result<rollups::TimeSeries, StoreError> {
        let (query, from, to, step) = rollups::series_sql(filter);
        let rows: Vec<rollups::SeriesRow> = DB::fetch_all(self.reader(), query).await?;
        Ok(rollups::series(&rows, (from, to, step), stale))
    }

    async fn monitor_error_groups(&self, filter: &ErrorFilter) -> Result<ErrorGroups, StoreError> {
        self.error_groups(filter).await
    }

    async fn monitor_error_samples(
        &self,
        filter: &ErrorSampleFilter,
    ) -> Result<Vec<ErrorSample>, StoreError> {
        self.error_samples(filter).await
    }

    // --- operations (see `store::ops`) ---

    async fn prune_counts(&self, cutoff: i64) -> Result<PruneCounts, StoreError> {
        let pool = self.operator();
        let count = |sql: String| async move {
            let (n,): (i64,) = sqlx::query_as(&sql).bind(cutoff).fetch_one(pool).await?;
            Ok::<u64, StoreError>(n.max(0) as u64)
        };
        let runs =
            count("SELECT count(*) FROM render_runs WHERE started_at < $1".to_owned()).await?;
        let with_runs = count(
            "SELECT count(*) FROM variant_results WHERE run_id IN \
             (SELECT run_id FROM render_runs WHERE started_at < $1)"
                .to_owned(),
        )
        .await?;
        let orphans = count(format!("SELECT count(*) {ORPHAN_VARIANTS}")).await?;
        let events =
            count("SELECT count(*) FROM monitor_events WHERE occurred_at < $1".to_owned()).await?;
        let dead_letters =
            count("SELECT count(*) FROM dead_letters WHERE received_at < $1".to_owned()).await?;
        Ok(PruneCounts {
            runs,
            variants: with_runs + orphans,
            events,
            dead_letters,
        })
    }

    async fn prune_step(&self, cutoff: i64, limit: i64) -> Result<PruneCounts, StoreError> {
        let mut done = PruneCounts::default();
        let mut tx = self.operator().begin().await?;
        (done.runs, done.variants) = self.prune_runs(&mut tx, cutoff, limit).await?;
        if (done.runs as i64) < limit {
            // Old runs are gone: now the (rare) variants that never had a run row.
            // Scanned only here, not on every step.
            done.variants += sqlx::query(&format!(
                "DELETE FROM variant_results WHERE (run_id, variant_id) IN \
                 (SELECT v.run_id, v.variant_id {ORPHAN_VARIANTS} LIMIT $2)"
            ))
            .bind(cutoff)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows();
        }
        done.events = sqlx::query(
            "DELETE FROM monitor_events WHERE event_id IN (SELECT event_id \
             FROM monitor_events WHERE occurred_at < $1 ORDER BY occurred_at, event_id \
             LIMIT $2)",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows();
        done.dead_letters = sqlx::query(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters \
             WHERE received_at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(cutoff)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows();
        tx.commit().await?;
        Ok(done)
    }

    async fn recount_rollups(&self) -> Result<u64, StoreError> {
        let mut tx = self.operator().begin().await?;
        self.lock_rollups(&mut tx).await?;
        let mut written = 0;
        for grain in rollups::Grain::ALL {
            let table = grain.table();
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
            written += sqlx::query(&format!(
                "INSERT INTO {table} (bucket, kind, model, prompt_pack, status, latency, n) \
                 SELECT * FROM ({}) AS recount",
                rollups::recount_sql(grain)
            ))
            .execute(&mut *tx)
            .await?
            .rows();
        }
        sqlx::query(
            "INSERT INTO rollup_state (id, counted_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET counted_at = excluded.counted_at",
        )
        .bind(service_kit::clock::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Filled at once: the planner's statistics of the tables are stale.
        for grain in rollups::Grain::ALL {
            sqlx::query(&format!("ANALYZE {}", grain.table()))
                .execute(self.operator())
                .await?;
        }
        Ok(written)
    }

    async fn rollup_drift(&self) -> Result<rollups::Drift, StoreError> {
        let mut drift = rollups::Drift::new();
        // Batches and retention wait to add to the rollups meanwhile: on Postgres two
        // statements of one transaction see different commits, and a batch committed
        // between the two reads would show as drift that is not there.
        let mut tx = self.operator().begin().await?;
        self.lock_rollups(&mut tx).await?;
        for grain in rollups::Grain::ALL {
            let stored: Vec<rollups::Row> = sqlx::query_as(&rollups::stored_sql(grain))
                .fetch_all(&mut *tx)
                .await?;
            let recounted: Vec<rollups::Row> = sqlx::query_as(&rollups::recount_sql(grain))
                .fetch_all(&mut *tx)
                .await?;
            drift.extend(rollups::drift(
                &rollups::counts(stored),
                &rollups::counts(recounted),
            ));
        }
        tx.commit().await?;
        Ok(drift)
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM dead_letters WHERE id = $1")
            .bind(id)
            .fetch_optional(self.operator())
            .await?)
    }

    async fn dead_letters_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM dead_letters WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after_id)
                .bind(limit)
                .fetch_all(self.operator())
                .await?,
        )
    }

    async fn settle_dead_letters(
        &self,
        resolved: &[i64],
        failing: &[(i64, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.operator().begin().await?;
        for id in resolved {
            sqlx::query("DELETE FROM dead_letters WHERE id = $1")
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        for (id, reason) in failing {
            sqlx::query("UPDATE dead_letters SET reason = $1 WHERE id = $2")
                .bind(reason.as_str())
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn purge_dead_letters(&self, limit: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM dead_letters WHERE id IN \
             (SELECT id FROM dead_letters ORDER BY id LIMIT $1)",
        )
        .bind(limit)
        .execute(self.operator())
        .await?
        .rows())
    }
}
