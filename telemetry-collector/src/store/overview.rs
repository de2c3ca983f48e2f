//! The overview's figures: success / failure / timeout counts and latency p50 / p95 /
//! p99 per model, per prompt pack version and per (prompt pack, model) pair over a
//! window of run start times, of one model when asked.
//!
//! Latency percentiles are over successes only: a model failing fast (503s in 100 ms)
//! must not look faster than a healthy one. Failures and timeouts have their own p50
//! and p95 beside them. All three come from the same rows, which are grouped by status
//! anyway: splitting them costs the query nothing.
//!
//! Latencies go into buckets ([`LATENCY_BUCKET_SQL`]: exact below 100 ms, 1% of the
//! value from 1 s to 100 s) and percentiles are read off the buckets ([`summarize`]).
//! Postgres groups in SQL ([`stats_sql`]: a few hundred rows come back per window);
//! SQLite, which can only aggregate by sorting, returns the window's runs with their
//! variants packed in one JSON value ([`stats_packed_sql`]) and the buckets are counted
//! here ([`fold_packed`]).
//!
//! A variant still without a result in a run that started before the stale cutoff
//! ([`super::stale`]) counts as `stale`, not as running: its renderer is gone. Like
//! everywhere else, that is decided at read time from the stored `running`.

use std::collections::BTreeMap;

use sqlx::{PgPool, Postgres, QueryBuilder, Sqlite, SqlitePool};

use super::monitor_reads::range;
use super::stale::{StaleCutoff, RUNNING, STALE};
use super::StoreError;

/// One group of the overview query: variants of one model, prompt pack version and
/// status whose latency falls in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatsRow {
    /// Model of the run.
    pub model: Option<String>,
    /// Prompt pack version of the run.
    pub prompt_pack_version: Option<String>,
    /// Variant status, or `stale` for a variant still `running` in a stale run.
    pub status: String,
    /// Lower edge of the latency bucket (ms); -1 when the variant has no latency yet.
    pub bucket: i64,
    /// Variants in the group.
    pub n: i64,
}

/// Rates and latency percentiles of one model or one prompt pack version.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    /// The model or prompt pack version (`(none)` when the run start is missing).
    pub key: String,
    /// Variants started in the window.
    pub total: i64,
    pub success: i64,
    pub failed: i64,
    pub timeout: i64,
    /// Without a result in a run started before the stale cutoff: never finishing.
    pub stale: i64,
    /// Still running (and not stale), or any other status.
    pub other: i64,
    /// Latency percentiles (ms, lower edge of the bucket) over successful variants.
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    /// The same over failed variants, and over timed-out ones.
    pub failed_p50_ms: Option<i64>,
    pub failed_p95_ms: Option<i64>,
    pub timeout_p50_ms: Option<i64>,
    pub timeout_p95_ms: Option<i64>,
}

impl GroupStats {
    /// Share of `count` in the total, as a percentage.
    pub fn rate(&self, count: i64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            count as f64 * 100.0 / self.total as f64
        }
    }
}

/// The figures of one prompt pack version with one model.
#[derive(Debug, Clone, PartialEq)]
pub struct CellStats {
    /// The prompt pack version (`(none)` when the run start is missing).
    pub prompt_pack: String,
    /// The model (likewise).
    pub model: String,
    /// Its figures; `key` is the prompt pack.
    pub stats: GroupStats,
}

/// The overview over `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub from: i64,
    pub to: i64,
    /// Only this model's runs, when set.
    pub model: Option<String>,
    pub by_model: Vec<GroupStats>,
    pub by_prompt_pack: Vec<GroupStats>,
    /// Every (prompt pack, model) pair with variants, by prompt pack then model.
    pub by_pack_and_model: Vec<CellStats>,
}

/// Which runs the overview counts: started in `[from, to)`, of one model when set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverviewFilter {
    pub from: i64,
    pub to: i64,
    /// The model, in any ASCII case.
    pub model: Option<String>,
}

/// The latency bucket expression: 1 ms below 100 ms, 10 ms below 1 s, 100 ms below
/// 10 s, 1 s below 100 s, 10 s above (at most 1% of the value from 1 s to 100 s).
pub const LATENCY_BUCKET_SQL: &str = "CASE WHEN v.latency_ms IS NULL THEN -1 \
     WHEN v.latency_ms < 100 THEN v.latency_ms \
     WHEN v.latency_ms < 1000 THEN (v.latency_ms / 10) * 10 \
     WHEN v.latency_ms < 10000 THEN (v.latency_ms / 100) * 100 \
     WHEN v.latency_ms < 100000 THEN (v.latency_ms / 1000) * 1000 \
     ELSE (v.latency_ms / 10000) * 10000 END";

/// The same bucket in Rust (tests compare against it).
pub fn latency_bucket(latency_ms: i64) -> i64 {
    let step = match latency_ms {
        ..100 => 1,
        100..1_000 => 10,
        1_000..10_000 => 100,
        10_000..100_000 => 1_000,
        _ => 10_000,
    };
    latency_ms / step * step
}

/// The overview's query for Postgres: variants of the window's runs grouped by model,
/// prompt pack, status (stale ones apart) and latency bucket. The variants are read per run from a
/// covering index (`LATERAL .. OFFSET 0` keeps the planner from turning it into a hash
/// join over the whole `variant_results` table, which it chose otherwise and which
/// grows with history, not with the window); the few hundred groups are hashed.
pub(crate) fn stats_sql(filter: &OverviewFilter, stale: StaleCutoff) -> QueryBuilder<'_, Postgres> {
    // Stale is a group key of its own (a boolean), not a CASE over the status: a
    // CASE hides the status's statistics from the planner, which then expects a group
    // per row and sorts instead of hashing (measured: the 24 h overview at 300,000
    // runs went from 134 to 325 ms p50).
    let mut query = QueryBuilder::new(format!(
        "SELECT r.model AS model, r.prompt_pack_version AS prompt_pack_version, \
         v.status AS status, {LATENCY_BUCKET_SQL} AS bucket, \
         (v.status = '{RUNNING}' AND r.started_at < "
    ));
    query.push_bind(stale.0).push(
        ") AS stale, count(*) AS n \
         FROM render_runs r CROSS JOIN LATERAL \
         (SELECT status, latency_ms FROM variant_results v WHERE v.run_id = r.run_id OFFSET 0) v \
         WHERE 1 = 1",
    );
    range(
        &mut query,
        "r.started_at",
        Some(filter.from),
        Some(filter.to),
    );
    super::monitor_reads::run_model_is(&mut query, filter.model.as_deref());
    query.push(" GROUP BY 1, 2, 3, 4, 5");
    query
}

/// A row of [`stats_sql`]: a [`StatsRow`] with its stale flag apart.
#[derive(Debug, sqlx::FromRow)]
struct PgStatsRow {
    model: Option<String>,
    prompt_pack_version: Option<String>,
    status: String,
    bucket: i64,
    stale: bool,
    n: i64,
}

/// The overview's rows on Postgres ([`stats_sql`]), on the reader pool, whose
/// connections run without JIT ([`super::postgres`]: compiling took 186–282 ms of this
/// query).
pub(crate) async fn postgres(
    pool: &PgPool,
    filter: &OverviewFilter,
    stale: StaleCutoff,
) -> Result<Vec<StatsRow>, StoreError> {
    let rows: Vec<PgStatsRow> = stats_sql(filter, stale)
        .build_query_as()
        .fetch_all(pool)
        .await?;
    let rows: Vec<StatsRow> = rows
        .into_iter()
        .map(|r| StatsRow {
            model: r.model,
            prompt_pack_version: r.prompt_pack_version,
            status: if r.stale { STALE.to_owned() } else { r.status },
            bucket: r.bucket,
            n: r.n,
        })
        .collect();
    Ok(rows)
}

/// The overview's query for SQLite: one JSON array of `[model, prompt pack, variants,
/// stale]` per run of the window, the variants packed as `s1234,t30000,r-1` (first
/// letter of the status, latency or -1) and `stale` 1 when the run started before the
/// stale cutoff (its `running` variants count as stale: one flag per run, not a
/// condition per variant). SQLite aggregates only by sorting, and sorting the
/// ~130,000 variant rows of a day (a plain join and `GROUP BY`) took ~200 ms; one
/// aggregate without `GROUP BY` sorts nothing: the runs come from one covering index
/// in time order, each run's variants from another, and [`fold_packed`] counts the
/// buckets. `INDEXED BY` keeps the covering index whether or not `ANALYZE` ran.
pub(crate) fn stats_packed_sql(
    filter: &OverviewFilter,
    stale: StaleCutoff,
) -> QueryBuilder<'_, Sqlite> {
    let mut query = QueryBuilder::new(
        "SELECT json_group_array(json_array(r.model, r.prompt_pack_version, \
         (SELECT group_concat(substr(v.status, 1, 1) || ifnull(v.latency_ms, -1)) \
          FROM variant_results v WHERE v.run_id = r.run_id), r.started_at < ",
    );
    query.push_bind(stale.0).push(
        ")) AS runs \
         FROM render_runs r INDEXED BY render_runs_overview WHERE 1 = 1",
    );
    range(
        &mut query,
        "r.started_at",
        Some(filter.from),
        Some(filter.to),
    );
    super::monitor_reads::run_model_is(&mut query, filter.model.as_deref());
    query
}

/// The overview's rows on SQLite ([`stats_packed_sql`], counted by [`fold_packed`]).
pub(crate) async fn sqlite(
    pool: &SqlitePool,
    filter: &OverviewFilter,
    stale: StaleCutoff,
) -> Result<Vec<StatsRow>, StoreError> {
    let packed: PackedRuns = stats_packed_sql(filter, stale)
        .build_query_as()
        .fetch_one(pool)
        .await?;
    Ok(fold_packed(&packed))
}

/// The row of [`stats_packed_sql`].
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PackedRuns {
    /// `[[model, prompt pack, "s1234,f250", stale (0 / 1)], ...]`.
    pub runs: Option<String>,
}

/// Buckets packed runs into the groups [`stats_sql`] returns. JSON that does not
/// parse (it cannot: SQLite wrote it) counts as no runs.
pub fn fold_packed(packed: &PackedRuns) -> Vec<StatsRow> {
    type Run = (Option<String>, Option<String>, Option<String>, Option<i64>);
    let runs: Vec<Run> = packed
        .runs
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    // (model, prompt pack, status, bucket) → variants.
    type Group<'a> = (Option<&'a str>, Option<&'a str>, &'a str, i64);
    let mut groups: BTreeMap<Group<'_>, i64> = BTreeMap::new();
    for (model, pack, variants, stale) in &runs {
        let stale = *stale == Some(1);
        let Some(variants) = variants.as_deref() else {
            continue;
        };
        for variant in variants.split(',').filter(|v| !v.is_empty()) {
            let (letter, latency) = variant.split_at(1);
            let status = match letter {
                "s" => "success",
                "f" => "failed",
                "t" => "timeout",
                "r" if stale => STALE,
                "r" => RUNNING,
                _ => "other",
            };
            let latency: i64 = latency.parse().unwrap_or(-1);
            let bucket = if latency < 0 {
                -1
            } else {
                latency_bucket(latency)
            };
            *groups
                .entry((model.as_deref(), pack.as_deref(), status, bucket))
                .or_default() += 1;
        }
    }
    groups
        .into_iter()
        .map(|((model, pack, status, bucket), n)| StatsRow {
            model: model.map(str::to_owned),
            prompt_pack_version: pack.map(str::to_owned),
            status: status.to_owned(),
            bucket,
            n,
        })
        .collect()
}

/// Folds the bucketed rows into per-model, per-prompt-pack and per-pair statistics,
/// sorted by key.
pub fn summarize(filter: &OverviewFilter, rows: &[StatsRow]) -> Overview {
    const NONE: &str = "(none)";
    let by = |key: fn(&StatsRow) -> Option<&str>| {
        let mut groups: BTreeMap<String, Vec<&StatsRow>> = BTreeMap::new();
        for row in rows {
            let name = key(row).unwrap_or(NONE).to_owned();
            groups.entry(name).or_default().push(row);
        }
        groups
            .into_iter()
            .map(|(key, rows)| group(key, &rows))
            .collect()
    };
    let mut pairs: BTreeMap<(&str, &str), Vec<&StatsRow>> = BTreeMap::new();
    for row in rows {
        let pack = row.prompt_pack_version.as_deref().unwrap_or(NONE);
        let model = row.model.as_deref().unwrap_or(NONE);
        pairs.entry((pack, model)).or_default().push(row);
    }
    Overview {
        from: filter.from,
        to: filter.to,
        model: filter.model.clone(),
        by_model: by(|r| r.model.as_deref()),
        by_prompt_pack: by(|r| r.prompt_pack_version.as_deref()),
        by_pack_and_model: pairs
            .into_iter()
            .map(|((pack, model), rows)| CellStats {
                prompt_pack: pack.to_owned(),
                model: model.to_owned(),
                stats: group(pack.to_owned(), &rows),
            })
            .collect(),
    }
}

/// Nearest-rank percentiles over latency buckets (bucket → count).
pub(crate) struct Percentiles(pub BTreeMap<i64, i64>);

impl Percentiles {
    fn of(rows: &[&StatsRow], status: &str) -> Self {
        let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.bucket >= 0 && r.status == status) {
            *buckets.entry(row.bucket).or_default() += row.n;
        }
        Self(buckets)
    }

    /// The smallest bucket with at least `p`% of the values at or below it.
    pub(crate) fn at(&self, p: f64) -> Option<i64> {
        let timed: i64 = self.0.values().sum();
        if timed == 0 {
            return None;
        }
        let rank = ((p / 100.0) * timed as f64).ceil().max(1.0) as i64;
        let mut seen = 0;
        self.0.iter().find_map(|(bucket, n)| {
            seen += n;
            (seen >= rank).then_some(*bucket)
        })
    }
}

fn group(key: String, rows: &[&StatsRow]) -> GroupStats {
    let count = |status: &str| {
        rows.iter()
            .filter(|r| r.status == status)
            .map(|r| r.n)
            .sum::<i64>()
    };
    let total: i64 = rows.iter().map(|r| r.n).sum();
    let (success, failed, timeout) = (count("success"), count("failed"), count("timeout"));
    let stale = count(STALE);
    let ok = Percentiles::of(rows, "success");
    let failures = Percentiles::of(rows, "failed");
    let timeouts = Percentiles::of(rows, "timeout");
    GroupStats {
        key,
        total,
        success,
        failed,
        timeout,
        stale,
        other: total - success - failed - timeout - stale,
        p50_ms: ok.at(50.0),
        p95_ms: ok.at(95.0),
        p99_ms: ok.at(99.0),
        failed_p50_ms: failures.at(50.0),
        failed_p95_ms: failures.at(95.0),
        timeout_p50_ms: timeouts.at(50.0),
        timeout_p95_ms: timeouts.at(95.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank_over_buckets() {
        let row = |status: &str, bucket, n| StatsRow {
            model: Some("m".into()),
            prompt_pack_version: None,
            status: status.into(),
            bucket,
            n,
        };
        let rows = [
            row("success", 100, 50),
            row("success", 200, 45),
            row("success", 900, 5),
            row("timeout", 30_000, 5),
            row("failed", 40, 9),
            row("failed", 60, 1),
            row("running", -1, 3),
            row("stale", -1, 2),
        ];
        let filter = OverviewFilter {
            from: 0,
            to: 1,
            model: None,
        };
        let stats = summarize(&filter, &rows);
        let m = &stats.by_model[0];
        assert_eq!(
            (m.total, m.success, m.failed, m.timeout, m.stale, m.other),
            (120, 100, 10, 5, 2, 3)
        );
        // Successes only: the fast failures and the slow timeouts are apart.
        assert_eq!(
            (m.p50_ms, m.p95_ms, m.p99_ms),
            (Some(100), Some(200), Some(900))
        );
        assert_eq!((m.failed_p50_ms, m.failed_p95_ms), (Some(40), Some(60)));
        assert_eq!(
            (m.timeout_p50_ms, m.timeout_p95_ms),
            (Some(30_000), Some(30_000))
        );
        assert_eq!(stats.by_prompt_pack[0].key, "(none)");
        let cell = &stats.by_pack_and_model[0];
        assert_eq!(
            (cell.prompt_pack.as_str(), cell.model.as_str()),
            ("(none)", "m")
        );
        assert_eq!(cell.stats.total, 120);
        assert_eq!(latency_bucket(1234), 1200);
        let packed = PackedRuns {
            runs: Some(
                r#"[["m",null,"s105,s101,r-1",0],["m",null,null,0],["m",null,"s103,r-1",1]]"#
                    .into(),
            ),
        };
        let folded = fold_packed(&packed);
        assert_eq!(folded.len(), 3);
        assert_eq!(
            (folded[0].status.as_str(), folded[0].bucket, folded[0].n),
            ("running", -1, 1)
        );
        assert_eq!(
            (folded[1].status.as_str(), folded[1].bucket, folded[1].n),
            ("stale", -1, 1)
        );
        assert_eq!(
            (folded[2].status.as_str(), folded[2].bucket, folded[2].n),
            ("success", 100, 3)
        );
        assert_eq!(latency_bucket(999), 990);
    }
}
