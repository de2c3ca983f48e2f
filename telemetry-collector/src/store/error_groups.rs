//! Error groups: the failed and timed-out variants of the runs started in a window,
//! grouped by model, error code and normalised message (the `error_group` column, see
//! [`super::normalise`]), each with its count, first and last seen, and its counts
//! per slice of the window (a sparkline); and one group's latest variants with their
//! runs.
//!
//! The window is one of run start times, as on the overview: a group's counts add up
//! to the overview's failed and timeout counts, and its runs are those the runs list
//! shows for the same `from` / `to`. First and last seen are the variants' result
//! times; the sparkline's slices count by run start, like the window.
//!
//! Each database reads the window's runs from the overview's covering index and each
//! run's failed and timed-out variants from the partial index `variant_results_errors`
//! (only those variants, with every column grouped on), so the cost grows with the runs
//! in the window, not with the history, and successes cost nothing. Postgres probes
//! each run through `LATERAL .. OFFSET 0` (without it the planner may hash every error
//! ever stored); SQLite through a `CROSS JOIN`, which fixes the join order, with
//! `INDEXED BY` keeping the covering indexes whether or not `ANALYZE` ran. The few
//! thousand error rows of a day are then grouped in SQL (SQLite sorts them: cheap at
//! that size, unlike the overview's every variant).
//!
//! Rows stored before the column have it `NULL` until [`backfill_sqlite`] /
//! [`backfill_postgres`] fill them, which the store runs after its migrations, at
//! every start (new rows never need it: the projection fills the column, so the
//! partial index `variant_results_ungrouped` it reads is empty after one pass).

use std::collections::BTreeMap;

use sqlx::{PgPool, Postgres, QueryBuilder, Sqlite, SqlitePool};

use super::monitor_reads::range;
use super::normalise::normalise;
use super::StoreError;

/// Slices of a window's sparkline: per hour over a day.
pub const SPARK_SLICES: i64 = 24;
/// Variants the backfill reads and updates per transaction.
pub const BACKFILL_BATCH: i64 = 1_000;
/// The variant statuses grouped, as SQL: keep in step with the partial indexes of the
/// migration `error_groups` (a query uses them only with this exact condition) and
/// [`super::projection::ERROR_STATUSES`].
const ERRORS: &str = "v.status IN ('failed', 'timeout')";

/// Which error groups: those of runs started in `[from, to)`, of one model when set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFilter {
    pub from: i64,
    pub to: i64,
    /// The model, in any ASCII case.
    pub model: Option<String>,
}

impl ErrorFilter {
    /// The window's start and the width (ms) of a sparkline slice; `None` for an
    /// empty window. A start so far back that the window's length does not fit in
    /// an `i64` is moved forward until it does (no run can be there in practice).
    fn slices(&self) -> Option<(i64, i64)> {
        if self.to <= self.from {
            return None;
        }
        let from = self.from.max(self.to.saturating_sub(i64::MAX));
        let span = self.to - from;
        let width = span / SPARK_SLICES + i64::from(span % SPARK_SLICES != 0);
        Some((from, width.max(1)))
    }
}

/// One group of variants in one slice, as both queries return them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ErrorGroupRow {
    pub model: Option<String>,
    pub error_code: Option<String>,
    pub error_group: Option<String>,
    /// Slice of the window (0 is the oldest).
    pub bucket: i64,
    pub n: i64,
    /// Earliest and latest result time (the run's start when a result has none).
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
}

/// One error group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorGroup {
    /// `None` for runs whose start was never received.
    pub model: Option<String>,
    pub error_code: Option<String>,
    /// The normalised message; `None` for a variant stored before error groups whose
    /// row the start-up backfill has not filled yet.
    pub error_group: Option<String>,
    pub count: i64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Variants per slice of the window, oldest first.
    pub slices: Vec<i64>,
}

impl ErrorGroup {
    /// This group's share of `total` errors, as a percentage.
    pub fn share(&self, total: i64) -> f64 {
        if total == 0 {
            0.0
        } else {
            self.count as f64 * 100.0 / total as f64
        }
    }
}

/// The error groups of a window, most frequent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorGroups {
    pub from: i64,
    pub to: i64,
    /// Width of a sparkline slice (ms).
    pub slice_ms: i64,
    /// Failed and timed-out variants in the window: what shares are of.
    pub total: i64,
    pub groups: Vec<ErrorGroup>,
}

/// Folds the rows of either query into groups: counts, first and last seen, slices;
/// most frequent first, then most recently seen, then by key.
pub fn fold(filter: &ErrorFilter, rows: Vec<ErrorGroupRow>) -> ErrorGroups {
    let Some((from, width)) = filter.slices() else {
        return ErrorGroups {
            from: filter.from,
            to: filter.to,
            slice_ms: 1,
            total: 0,
            groups: Vec::new(),
        };
    };
    let slices = ((filter.to - from) / width + i64::from((filter.to - from) % width != 0))
        .clamp(1, SPARK_SLICES) as usize;
    type Key = (Option<String>, Option<String>, Option<String>);
    let mut groups: BTreeMap<Key, ErrorGroup> = BTreeMap::new();
    for row in rows {
        let key = (row.model, row.error_code, row.error_group);
        let group = groups.entry(key.clone()).or_insert_with(|| ErrorGroup {
            model: key.0,
            error_code: key.1,
            error_group: key.2,
            count: 0,
            first_seen: None,
            last_seen: None,
            slices: vec![0; slices],
        });
        group.count += row.n;
        group.first_seen = min_some(group.first_seen, row.first_seen);
        group.last_seen = group.last_seen.max(row.last_seen);
        let slice = row.bucket.clamp(0, slices as i64 - 1) as usize;
        group.slices[slice] += row.n;
    }
    let mut groups: Vec<ErrorGroup> = groups.into_values().collect();
    // Stable: ties keep the key order.
    groups.sort_by_key(|g| std::cmp::Reverse((g.count, g.last_seen)));
    ErrorGroups {
        from,
        to: filter.to,
        slice_ms: width,
        total: groups.iter().map(|g| g.count).sum(),
        groups,
    }
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The select list both queries share: the group, its slice, count and times.
fn select<'a, DB: sqlx::Database>(from: i64, width: i64) -> QueryBuilder<'a, DB>
where
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = QueryBuilder::new(
        "SELECT r.model AS model, v.error_code AS error_code, v.error_group AS error_group, \
         (r.started_at - ",
    );
    query.push_bind(from).push(") / ").push_bind(width).push(
        " AS bucket, count(*) AS n, \
         min(coalesce(v.finished_at, r.started_at)) AS first_seen, \
         max(coalesce(v.finished_at, r.started_at)) AS last_seen",
    );
    query
}

/// The error groups query for Postgres (see the module doc).
pub(crate) fn groups_sql_postgres(
    filter: &ErrorFilter,
    from: i64,
    width: i64,
) -> QueryBuilder<'_, Postgres> {
    let mut query = select(from, width);
    query.push(format_args!(
        " FROM render_runs r CROSS JOIN LATERAL \
         (SELECT error_code, error_group, finished_at FROM variant_results v \
          WHERE v.run_id = r.run_id AND {ERRORS} OFFSET 0) v WHERE 1 = 1"
    ));
    range(&mut query, "r.started_at", Some(from), Some(filter.to));
    super::monitor_reads::run_model_is(&mut query, filter.model.as_deref());
    query.push(" GROUP BY 1, 2, 3, 4");
    query
}

/// The error groups query for SQLite (see the module doc).
pub(crate) fn groups_sql_sqlite(
    filter: &ErrorFilter,
    from: i64,
    width: i64,
) -> QueryBuilder<'_, Sqlite> {
    let mut query = select(from, width);
    query.push(format_args!(
        " FROM render_runs r INDEXED BY render_runs_overview \
         CROSS JOIN variant_results v INDEXED BY variant_results_errors \
         WHERE v.run_id = r.run_id AND {ERRORS}"
    ));
    range(&mut query, "r.started_at", Some(from), Some(filter.to));
    super::monitor_reads::run_model_is(&mut query, filter.model.as_deref());
    query.push(" GROUP BY 1, 2, 3, 4");
    query
}

/// The error groups on Postgres (the reader pool's connections run without JIT).
pub(crate) async fn postgres(
    pool: &PgPool,
    filter: &ErrorFilter,
) -> Result<ErrorGroups, StoreError> {
    let Some((from, width)) = filter.slices() else {
        return Ok(fold(filter, Vec::new()));
    };
    let rows: Vec<ErrorGroupRow> = groups_sql_postgres(filter, from, width)
        .build_query_as()
        .fetch_all(pool)
        .await?;
    Ok(fold(filter, rows))
}

/// The error groups on SQLite.
pub(crate) async fn sqlite(
    pool: &SqlitePool,
    filter: &ErrorFilter,
) -> Result<ErrorGroups, StoreError> {
    let Some((from, width)) = filter.slices() else {
        return Ok(fold(filter, Vec::new()));
    };
    let rows: Vec<ErrorGroupRow> = groups_sql_sqlite(filter, from, width)
        .build_query_as()
        .fetch_all(pool)
        .await?;
    Ok(fold(filter, rows))
}

/// One group's variants: in runs started in `[from, to)`, of `model` when set (a
/// group of runs without a model: any model), newest run first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorSampleFilter {
    pub from: i64,
    pub to: i64,
    pub model: Option<String>,
    pub error_code: String,
    pub error_group: String,
    /// At most this many variants (1 to [`super::MAX_PAGE_SIZE`]).
    pub limit: i64,
}

/// A variant of an error group, with its run.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ErrorSample {
    pub run_id: String,
    pub started_at: i64,
    pub shop_id: String,
    pub request_id: String,
    pub model: Option<String>,
    /// The run's stored status.
    pub run_status: String,
    pub variant_id: String,
    pub status: String,
    pub error_code: Option<String>,
    /// As sent, before normalising.
    pub error_message: Option<String>,
    pub latency_ms: Option<i64>,
    pub finished_at: Option<i64>,
}

/// The query of one group's variants: runs newest first from a runs index (of the
/// model when set), each probed in the partial index, stopping at the limit.
fn samples_sql<'a, DB: sqlx::Database>(
    filter: &'a ErrorSampleFilter,
    postgres: bool,
) -> QueryBuilder<'a, DB>
where
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = QueryBuilder::new(
        "SELECT r.run_id AS run_id, r.started_at AS started_at, r.shop_id AS shop_id, \
         r.request_id AS request_id, r.model AS model, r.status AS run_status, \
         v.variant_id AS variant_id, v.status AS status, v.error_code AS error_code, \
         v.error_message AS error_message, v.latency_ms AS latency_ms, \
         v.finished_at AS finished_at FROM render_runs r ",
    );
    if postgres {
        query.push(format_args!(
            "CROSS JOIN LATERAL (SELECT variant_id, status, error_code, error_message, \
             latency_ms, finished_at FROM variant_results v WHERE v.run_id = r.run_id \
             AND {ERRORS} AND v.error_code = "
        ));
        query
            .push_bind(filter.error_code.as_str())
            .push(" AND v.error_group = ")
            .push_bind(filter.error_group.as_str())
            .push(" OFFSET 0) v WHERE 1 = 1");
    } else {
        query.push(format_args!(
            "CROSS JOIN variant_results v INDEXED BY variant_results_errors \
             WHERE v.run_id = r.run_id AND {ERRORS} AND v.error_code = "
        ));
        query
            .push_bind(filter.error_code.as_str())
            .push(" AND v.error_group = ")
            .push_bind(filter.error_group.as_str());
    }
    range(
        &mut query,
        "r.started_at",
        Some(filter.from),
        Some(filter.to),
    );
    super::monitor_reads::run_model_is(&mut query, filter.model.as_deref());
    query
        .push(" ORDER BY r.started_at DESC, r.run_id DESC LIMIT ")
        .push_bind(filter.limit.clamp(1, super::MAX_PAGE_SIZE));
    query
}

/// A run's variants in order: the query orders runs only (so that it can stop early).
fn sort_samples(mut samples: Vec<ErrorSample>) -> Vec<ErrorSample> {
    samples.sort_by(|a, b| {
        (b.started_at, &b.run_id)
            .cmp(&(a.started_at, &a.run_id))
            .then_with(|| a.variant_id.cmp(&b.variant_id))
    });
    samples
}

/// One group's variants on Postgres.
pub(crate) async fn samples_postgres(
    pool: &PgPool,
    filter: &ErrorSampleFilter,
) -> Result<Vec<ErrorSample>, StoreError> {
    let mut query = samples_sql::<Postgres>(filter, true);
    Ok(sort_samples(query.build_query_as().fetch_all(pool).await?))
}

/// One group's variants on SQLite.
pub(crate) async fn samples_sqlite(
    pool: &SqlitePool,
    filter: &ErrorSampleFilter,
) -> Result<Vec<ErrorSample>, StoreError> {
    let mut query = samples_sql::<Sqlite>(filter, false);
    Ok(sort_samples(query.build_query_as().fetch_all(pool).await?))
}

/// Variants still to fill, after `(run_id, variant_id)`, in key order.
const UNGROUPED: &str = "SELECT run_id, variant_id, error_message FROM variant_results v \
     WHERE v.status IN ('failed', 'timeout') AND v.error_group IS NULL \
     AND (v.run_id, v.variant_id) > ($1, $2) ORDER BY v.run_id, v.variant_id LIMIT $3";

type Ungrouped = (String, String, Option<String>);

/// The normalised message of a row read by [`UNGROUPED`].
fn group_of(row: &Ungrouped) -> String {
    normalise(row.2.as_deref().unwrap_or_default())
}

/// Fills `error_group` on SQLite rows stored before it; returns how many. Each row is
/// updated only if still unfilled and with the message it was read with, so a result
/// written meanwhile (which fills the column itself) is never overwritten.
pub(crate) async fn backfill_sqlite(pool: &SqlitePool) -> Result<u64, StoreError> {
    let mut filled = 0;
    let mut after = (String::new(), String::new());
    loop {
        let rows: Vec<Ungrouped> = sqlx::query_as(UNGROUPED)
            .bind(&after.0)
            .bind(&after.1)
            .bind(BACKFILL_BATCH)
            .fetch_all(pool)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(filled);
        };
        after = (last.0.clone(), last.1.clone());
        let mut tx = pool.begin().await?;
        for row in &rows {
            filled += sqlx::query(
                "UPDATE variant_results SET error_group = $1 WHERE run_id = $2 \
                 AND variant_id = $3 AND error_group IS NULL \
                 AND status IN ('failed', 'timeout') AND error_message IS $4",
            )
            .bind(group_of(row))
            .bind(&row.0)
            .bind(&row.1)
            .bind(&row.2)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        if (rows.len() as i64) < BACKFILL_BATCH {
            return Ok(filled);
        }
    }
}

/// [`backfill_sqlite`] on Postgres: one `UPDATE .. FROM UNNEST` per batch.
pub(crate) async fn backfill_postgres(pool: &PgPool) -> Result<u64, StoreError> {
    let mut filled = 0;
    let mut after = (String::new(), String::new());
    loop {
        let rows: Vec<Ungrouped> = sqlx::query_as(UNGROUPED)
            .bind(&after.0)
            .bind(&after.1)
            .bind(BACKFILL_BATCH)
            .fetch_all(pool)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(filled);
        };
        after = (last.0.clone(), last.1.clone());
        let run_ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let variant_ids: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let messages: Vec<Option<&str>> = rows.iter().map(|r| r.2.as_deref()).collect();
        let groups: Vec<String> = rows.iter().map(group_of).collect();
        filled += sqlx::query(
            "UPDATE variant_results v SET error_group = u.error_group \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
             AS u(run_id, variant_id, error_message, error_group) \
             WHERE v.run_id = u.run_id AND v.variant_id = u.variant_id \
             AND v.error_group IS NULL AND v.status IN ('failed', 'timeout') \
             AND v.error_message IS NOT DISTINCT FROM u.error_message",
        )
        .bind(run_ids)
        .bind(variant_ids)
        .bind(messages)
        .bind(groups)
        .execute(pool)
        .await?
        .rows_affected();
        if (rows.len() as i64) < BACKFILL_BATCH {
            return Ok(filled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, code: &str, group: &str, bucket: i64, n: i64, seen: i64) -> ErrorGroupRow {
        ErrorGroupRow {
            model: Some(model.into()),
            error_code: Some(code.into()),
            error_group: Some(group.into()),
            bucket,
            n,
            first_seen: Some(seen),
            last_seen: Some(seen + 10),
        }
    }

    #[test]
    fn rows_fold_into_groups_with_slices_most_frequent_first() {
        let filter = ErrorFilter {
            from: 0,
            to: 24 * 3_600_000,
            model: None,
        };
        let rows = vec![
            row("a", "timeout", "late", 0, 2, 100),
            row("b", "provider_error", "HTTP 503", 3, 5, 4_000),
            row("b", "provider_error", "HTTP 503", 23, 1, 90_000),
            row("a", "timeout", "late", 5, 1, 50),
        ];
        let groups = fold(&filter, rows);
        assert_eq!(groups.slice_ms, 3_600_000);
        assert_eq!(groups.total, 9);
        let first = &groups.groups[0];
        assert_eq!(first.model.as_deref(), Some("b"));
        assert_eq!(
            (first.count, first.first_seen, first.last_seen),
            (6, Some(4_000), Some(90_010))
        );
        assert_eq!(first.slices.len(), 24);
        assert_eq!((first.slices[3], first.slices[23]), (5, 1));
        let second = &groups.groups[1];
        assert_eq!((second.count, second.first_seen), (3, Some(50)));
        assert_eq!(second.slices.iter().sum::<i64>(), 3);
        assert!((first.share(groups.total) - 66.666).abs() < 0.01);
    }

    #[test]
    fn short_empty_and_absurd_windows_have_sane_slices() {
        let slices = |from, to| {
            ErrorFilter {
                from,
                to,
                model: None,
            }
            .slices()
        };
        assert_eq!(slices(0, 10), Some((0, 1)));
        assert_eq!(slices(0, 25), Some((0, 2)));
        assert_eq!(slices(5, 5), None);
        assert_eq!(slices(9, 5), None);
        let (from, width) = slices(i64::MIN, i64::MAX).unwrap();
        assert_eq!(from, 0);
        assert!(width > 0 && (i64::MAX - from) / width <= SPARK_SLICES);
        // Ten slices of a ten-ms window, not 24.
        let groups = fold(
            &ErrorFilter {
                from: 0,
                to: 10,
                model: None,
            },
            vec![row("a", "c", "g", 9, 1, 1)],
        );
        assert_eq!(groups.groups[0].slices.len(), 10);
    }
}
