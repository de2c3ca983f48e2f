//! The read queries behind the monitor pages and `/api/v1`: filtered, keyset-paged
//! lists of runs, events and dead letters, and the overview's per-model and
//! per-prompt-pack statistics.
//!
//! Filters are built into the SQL only when set (not `($1 IS NULL OR col = $1)`), so
//! each query's plan can use the index of the filter it has: a shop, status, model or
//! prompt pack filter deep in a million runs is an index range, not a scan. The SQL text
//! uses `$n` placeholders, which both dialects accept, so both share it.
//!
//! The overview puts variant latencies into buckets ([`LATENCY_BUCKET_SQL`]: exact
//! below 100 ms, 1% of the value from 1 s to 100 s) and reads percentiles off the
//! buckets ([`summarize`]). Postgres groups in SQL ([`stats_sql`]: a few hundred rows
//! come back per window); SQLite, which can only aggregate by sorting, returns the
//! window's runs with their variants packed in one JSON value ([`stats_packed_sql`]);
//! the buckets are counted here.

use std::collections::BTreeMap;

use serde::Serialize;

use super::MAX_PAGE_SIZE;

/// Filters and cursor of a runs page (`/monitor`, `/api/v1/runs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Exact shop id.
    pub shop_id: Option<String>,
    /// `running`, `complete`, `partial`, `failed`.
    pub status: Option<String>,
    /// Exact model.
    pub model: Option<String>,
    /// Exact prompt pack version.
    pub prompt_pack_version: Option<String>,
    /// `started_at >= from` (unix ms).
    pub from: Option<i64>,
    /// `started_at < to` (unix ms).
    pub to: Option<i64>,
    /// A run id or a request id, matched exactly.
    pub text: Option<String>,
    /// Keyset cursor: rows strictly before `(started_at, run_id)`, newest first.
    pub before: Option<(i64, String)>,
    /// Page size, clamped to `1..=MAX_PAGE_SIZE`.
    pub limit: i64,
}

/// Filters and cursor of an events page (`/monitor/events`, `/api/v1/events`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// `event_type` column: an event's type (`sf_render_requested`) or a kind (`run_started`).
    pub event_type: Option<String>,
    /// `source` column (`app_proxy`, `renderer`, ...).
    pub source: Option<String>,
    /// Exact shop id.
    pub shop_id: Option<String>,
    /// Exact request id.
    pub request_id: Option<String>,
    /// `occurred_at >= from` (unix ms).
    pub from: Option<i64>,
    /// `occurred_at < to` (unix ms).
    pub to: Option<i64>,
    /// Keyset cursor: rows strictly before `(occurred_at, event_id)`, newest first.
    pub before: Option<(i64, String)>,
    /// Page size, clamped to `1..=MAX_PAGE_SIZE`.
    pub limit: i64,
}

/// One group of the overview query: variants of one model, prompt pack version and
/// status whose latency falls in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatsRow {
    /// Model of the run.
    pub model: Option<String>,
    /// Prompt pack version of the run.
    pub prompt_pack_version: Option<String>,
    /// Variant status.
    pub status: String,
    /// Lower edge of the latency bucket (ms); -1 when the variant has no latency yet.
    pub bucket: i64,
    /// Variants in the group.
    pub n: i64,
}

/// Rates and latency percentiles of one model or one prompt pack version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// The model or prompt pack version (`(none)` when the run start is missing).
    pub key: String,
    /// Variants started in the window.
    pub total: i64,
    pub success: i64,
    pub failed: i64,
    pub timeout: i64,
    /// Still running, or any other status.
    pub other: i64,
    /// Latency percentiles (ms, lower edge of the bucket) over finished variants.
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
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

/// The overview over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub from: i64,
    pub to: i64,
    pub by_model: Vec<GroupStats>,
    pub by_prompt_pack: Vec<GroupStats>,
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

/// A bound value of a query being built.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// SQL text with `$n` placeholders and the values to bind, in order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Appends `text`, replacing each `?` with the next placeholder for `args`.
    fn push(&mut self, text: &str, args: impl IntoIterator<Item = Arg>) {
        let mut args = args.into_iter();
        for (i, part) in text.split('?').enumerate() {
            if i > 0 {
                let arg = args.next().expect("one argument per placeholder");
                self.args.push(arg);
                self.text.push_str(&format!("${}", self.args.len()));
            }
            self.text.push_str(part);
        }
    }

    fn eq_text(&mut self, column: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.push(&format!(" AND {column} = ?"), [Arg::Text(value.clone())]);
        }
    }

    fn range(&mut self, column: &str, from: Option<i64>, to: Option<i64>) {
        if let Some(from) = from {
            self.push(&format!(" AND {column} >= ?"), [Arg::Int(from)]);
        }
        if let Some(to) = to {
            self.push(&format!(" AND {column} < ?"), [Arg::Int(to)]);
        }
    }

    fn keyset_desc(&mut self, time: &str, id: &str, before: &Option<(i64, String)>, limit: i64) {
        if let Some((at, last)) = before {
            self.push(
                &format!(" AND ({time}, {id}) < (?, ?)"),
                [Arg::Int(*at), Arg::Text(last.clone())],
            );
        }
        self.push(
            &format!(" ORDER BY {time} DESC, {id} DESC LIMIT ?"),
            [Arg::Int(limit.clamp(1, MAX_PAGE_SIZE))],
        );
    }
}

pub(crate) fn runs_sql(filter: &RunFilter) -> Sql {
    let mut sql = Sql::new("SELECT * FROM render_runs WHERE 1 = 1");
    sql.eq_text("shop_id", &filter.shop_id);
    sql.eq_text("status", &filter.status);
    sql.eq_text("model", &filter.model);
    sql.eq_text("prompt_pack_version", &filter.prompt_pack_version);
    sql.range("started_at", filter.from, filter.to);
    if let Some(text) = &filter.text {
        sql.push(
            " AND (run_id = ? OR request_id = ?)",
            [Arg::Text(text.clone()), Arg::Text(text.clone())],
        );
    }
    sql.keyset_desc("started_at", "run_id", &filter.before, filter.limit);
    sql
}

pub(crate) fn events_sql(filter: &EventFilter) -> Sql {
    let mut sql = Sql::new("SELECT * FROM monitor_events WHERE 1 = 1");
    sql.eq_text("event_type", &filter.event_type);
    sql.eq_text("source", &filter.source);
    sql.eq_text("shop_id", &filter.shop_id);
    sql.eq_text("request_id", &filter.request_id);
    sql.range("occurred_at", filter.from, filter.to);
    sql.keyset_desc("occurred_at", "event_id", &filter.before, filter.limit);
    sql
}

pub(crate) fn dead_letters_sql(before: Option<i64>, limit: i64) -> Sql {
    let mut sql = Sql::new("SELECT * FROM dead_letters WHERE 1 = 1");
    if let Some(before) = before {
        sql.push(" AND id < ?", [Arg::Int(before)]);
    }
    sql.push(
        " ORDER BY id DESC LIMIT ?",
        [Arg::Int(limit.clamp(1, MAX_PAGE_SIZE))],
    );
    sql
}

/// The overview's query for Postgres: variants of the window's runs grouped by model,
/// prompt pack, status and latency bucket. The variants are read per run from a
/// covering index (`LATERAL .. OFFSET 0` keeps the planner from turning it into a hash
/// join over the whole `variant_results` table, which it chose otherwise and which
/// grows with history, not with the window); the few hundred groups are hashed.
pub(crate) fn stats_sql(from: i64, to: i64) -> Sql {
    let mut sql = Sql::new(&format!(
        "SELECT r.model AS model, r.prompt_pack_version AS prompt_pack_version, \
         v.status AS status, {LATENCY_BUCKET_SQL} AS bucket, count(*) AS n \
         FROM render_runs r CROSS JOIN LATERAL \
         (SELECT status, latency_ms FROM variant_results v WHERE v.run_id = r.run_id OFFSET 0) v \
         WHERE 1 = 1"
    ));
    sql.range("r.started_at", Some(from), Some(to));
    sql.push(" GROUP BY 1, 2, 3, 4", []);
    sql
}

/// The overview's query for SQLite: one JSON array of `[model, prompt pack, variants]`
/// per run of the window, the variants packed as `s1234,t30000,r-1` (first letter of
/// the status, latency or -1). SQLite aggregates only by sorting, and sorting the
/// ~130,000 variant rows of a day (a plain join and `GROUP BY`) took ~200 ms; one
/// aggregate without `GROUP BY` sorts nothing: the runs come from one covering index
/// in time order, each run's variants from another, and [`fold_packed`] counts the
/// buckets. `INDEXED BY` keeps the covering index whether or not `ANALYZE` ran.
pub(crate) fn stats_packed_sql(from: i64, to: i64) -> Sql {
    let mut sql = Sql::new(
        "SELECT json_group_array(json_array(r.model, r.prompt_pack_version, \
         (SELECT group_concat(substr(v.status, 1, 1) || ifnull(v.latency_ms, -1)) \
          FROM variant_results v WHERE v.run_id = r.run_id))) AS runs \
         FROM render_runs r INDEXED BY render_runs_overview WHERE 1 = 1",
    );
    sql.range("r.started_at", Some(from), Some(to));
    sql
}

/// The row of [`stats_packed_sql`].
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PackedRuns {
    /// `[[model, prompt pack, "s1234,f250"], ...]`.
    pub runs: Option<String>,
}

/// Buckets packed runs into the groups [`stats_sql`] returns. JSON that does not
/// parse (it cannot: SQLite wrote it) counts as no runs.
pub fn fold_packed(packed: &PackedRuns) -> Vec<StatsRow> {
    type Run = (Option<String>, Option<String>, Option<String>);
    let runs: Vec<Run> = packed
        .runs
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    // (model, prompt pack, status, bucket) → variants.
    type Group<'a> = (Option<&'a str>, Option<&'a str>, &'a str, i64);
    let mut groups: BTreeMap<Group<'_>, i64> = BTreeMap::new();
    for (model, pack, variants) in &runs {
        let Some(variants) = variants.as_deref() else {
            continue;
        };
        for variant in variants.split(',').filter(|v| !v.is_empty()) {
            let (letter, latency) = variant.split_at(1);
            let status = match letter {
                "s" => "success",
                "f" => "failed",
                "t" => "timeout",
                "r" => "running",
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

/// Folds the bucketed rows into per-model and per-prompt-pack statistics, sorted by key.
pub fn summarize(from: i64, to: i64, rows: &[StatsRow]) -> Stats {
    let by = |key: fn(&StatsRow) -> Option<&str>| {
        let mut groups: BTreeMap<String, Vec<&StatsRow>> = BTreeMap::new();
        for row in rows {
            let name = key(row).unwrap_or("(none)").to_owned();
            groups.entry(name).or_default().push(row);
        }
        groups
            .into_iter()
            .map(|(key, rows)| group(key, &rows))
            .collect()
    };
    Stats {
        from,
        to,
        by_model: by(|r| r.model.as_deref()),
        by_prompt_pack: by(|r| r.prompt_pack_version.as_deref()),
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
    let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.bucket >= 0) {
        *buckets.entry(row.bucket).or_default() += row.n;
    }
    let timed: i64 = buckets.values().sum();
    let percentile = |p: f64| {
        if timed == 0 {
            return None;
        }
        // Nearest rank: the smallest value with at least p% of the values at or below it.
        let rank = ((p / 100.0) * timed as f64).ceil().max(1.0) as i64;
        let mut seen = 0;
        buckets.iter().find_map(|(bucket, n)| {
            seen += n;
            (seen >= rank).then_some(*bucket)
        })
    };
    GroupStats {
        key,
        total,
        success,
        failed,
        timeout,
        other: total - success - failed - timeout,
        p50_ms: percentile(50.0),
        p95_ms: percentile(95.0),
        p99_ms: percentile(99.0),
    }
}

/// Binds a built query's arguments in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                $crate::store::monitor_reads::Arg::Text(value) => query.bind(value),
                $crate::store::monitor_reads::Arg::Int(value) => query.bind(value),
            };
        }
        query
    }};
}
pub(crate) use bind_args;

/// The monitor's read queries, expanded in each dialect's `impl` (as `read_queries!`)
/// with the driver's database type.
macro_rules! monitor_read_queries {
    ($db:ty, stats = grouped) => {
        $crate::store::monitor_reads::monitor_read_queries!($db);

        async fn read_monitor_stats(
            &self,
            from: i64,
            to: i64,
        ) -> Result<$crate::store::Stats, $crate::store::StoreError> {
            let sql = $crate::store::monitor_reads::stats_sql(from, to);
            let query = sqlx::query_as::<$db, $crate::store::StatsRow>(&sql.text);
            let rows = $crate::store::monitor_reads::bind_args!(query, sql.args)
                .fetch_all(&self.reader)
                .await?;
            Ok($crate::store::monitor_reads::summarize(from, to, &rows))
        }
    };
    ($db:ty, stats = packed) => {
        $crate::store::monitor_reads::monitor_read_queries!($db);

        async fn read_monitor_stats(
            &self,
            from: i64,
            to: i64,
        ) -> Result<$crate::store::Stats, $crate::store::StoreError> {
            use $crate::store::monitor_reads as reads;
            let sql = reads::stats_packed_sql(from, to);
            let query = sqlx::query_as::<$db, reads::PackedRuns>(&sql.text);
            let packed = reads::bind_args!(query, sql.args)
                .fetch_one(&self.reader)
                .await?;
            Ok(reads::summarize(from, to, &reads::fold_packed(&packed)))
        }
    };
    ($db:ty) => {
        async fn read_monitor_runs(
            &self,
            filter: &$crate::store::RunFilter,
        ) -> Result<Vec<$crate::store::RunRecord>, $crate::store::StoreError> {
            let sql = $crate::store::monitor_reads::runs_sql(filter);
            let query = sqlx::query_as::<$db, $crate::store::RunRecord>(&sql.text);
            Ok($crate::store::monitor_reads::bind_args!(query, sql.args)
                .fetch_all(&self.reader)
                .await?)
        }

        async fn read_monitor_events(
            &self,
            filter: &$crate::store::EventFilter,
        ) -> Result<Vec<$crate::store::EventRecord>, $crate::store::StoreError> {
            let sql = $crate::store::monitor_reads::events_sql(filter);
            let query = sqlx::query_as::<$db, $crate::store::EventRecord>(&sql.text);
            Ok($crate::store::monitor_reads::bind_args!(query, sql.args)
                .fetch_all(&self.reader)
                .await?)
        }

        async fn read_monitor_dead_letters(
            &self,
            before: Option<i64>,
            limit: i64,
        ) -> Result<Vec<$crate::store::DeadLetterRecord>, $crate::store::StoreError> {
            let sql = $crate::store::monitor_reads::dead_letters_sql(before, limit);
            let query = sqlx::query_as::<$db, $crate::store::DeadLetterRecord>(&sql.text);
            Ok($crate::store::monitor_reads::bind_args!(query, sql.args)
                .fetch_all(&self.reader)
                .await?)
        }
    };
}
pub(crate) use monitor_read_queries;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_filters_reach_the_sql_and_placeholders_follow_the_arguments() {
        let sql = runs_sql(&RunFilter {
            status: Some("failed".into()),
            text: Some("req-1".into()),
            before: Some((5, "r".into())),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(
            sql.text,
            "SELECT * FROM render_runs WHERE 1 = 1 AND status = $1 \
             AND (run_id = $2 OR request_id = $3) AND (started_at, run_id) < ($4, $5) \
             ORDER BY started_at DESC, run_id DESC LIMIT $6"
        );
        assert_eq!(sql.args.len(), 6);
    }

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
            row("timeout", 30_000, 5),
            row("running", -1, 3),
        ];
        let stats = summarize(0, 1, &rows);
        let m = &stats.by_model[0];
        assert_eq!((m.total, m.success, m.timeout, m.other), (103, 95, 5, 3));
        assert_eq!(m.p50_ms, Some(100));
        assert_eq!(m.p95_ms, Some(200));
        assert_eq!(m.p99_ms, Some(30_000));
        assert_eq!(stats.by_prompt_pack[0].key, "(none)");
        assert_eq!(latency_bucket(1234), 1200);
        let packed = PackedRuns {
            runs: Some(r#"[["m",null,"s105,s101,r-1"],["m",null,null]]"#.into()),
        };
        let folded = fold_packed(&packed);
        assert_eq!(folded.len(), 2);
        assert_eq!(
            (folded[0].status.as_str(), folded[0].bucket, folded[0].n),
            ("running", -1, 1)
        );
        assert_eq!(
            (folded[1].status.as_str(), folded[1].bucket, folded[1].n),
            ("success", 100, 2)
        );
        assert_eq!(latency_bucket(999), 990);
    }
}
