//! Time-series rollups: counts of runs and variants per minute, hour and day (UTC) of
//! their run's start, by model, prompt pack, status and latency bucket
//! (`rollup_minutes`, `rollup_hours`, `rollup_days`). The overview and its charts read
//! them instead of every run of a long window: 30 days are 30 days of a few hundred
//! rows each, not a million runs. Days exist because hours were not enough: 30 days of
//! hours are ~120,000 rows at the monitor bench's spread of latencies, and SQLite took
//! ~250 ms to group them (it aggregates by sorting).
//!
//! **Kept exact, in the write transaction.** The projection is order-free: a batch may
//! change a run's start time (its start arrives after its completion), its model, its
//! status, a variant's status and latency. Instead of deriving increments from the
//! envelopes, which would have to know every older row, the write path reads the
//! *contributions* of the runs a batch touches (each run row, and each of its variants
//! joined to it) before and after its upserts, in the same transaction, and adds the
//! difference ([`Delta`]). Whatever the order, duplicates and replays, the rollups are
//! then the sum of the stored rows' contributions, that is a recount ([`recount_sql`]);
//! a redelivered batch changes no row and adds nothing. Retention subtracts the
//! contributions of the runs it deletes in its own transaction.
//!
//! On Postgres two batches may be written at once; each takes a transaction-scoped
//! advisory lock per touched run ([`lock_keys`], in one sorted order, so two writers
//! never deadlock on them) before it reads, so the second reads the first's committed
//! rows and adds only its own change. SQLite has one writer.
//!
//! A variant counts under its run's start minute (the overview's window is one of run
//! starts), so a variant whose run row has not arrived yet counts nowhere until it
//! does, as in the overview's join.
//!
//! **Latency buckets** are coarser than the raw overview's ([`latency_bucket`]): the E12
//! series, twelve per decade (1, 1.2, 1.5, 1.8, 2.2, 2.7, 3.3, 3.9, 4.7, 5.6, 6.8, 8.2
//! times a power of ten, exact below 10 ms), so a percentile is the lower edge of a
//! bucket at most ~20% wide. Finer buckets multiply the rows of an hour by the
//! latencies seen in it (the 1%-wide ones made 30 days ~430,000 rows, too many to read
//! in 200 ms). Every E12 edge is an edge of [`latency_bucket`], so a raw row's bucket
//! maps to the same coarse one as its latency ([`coarse_latency`]).
//!
//! [`latency_bucket`]: super::overview::latency_bucket

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sha2::{Digest as _, Sha256};
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::monitor_reads::{range, run_model_is_column};
use super::overview::{Percentiles, StatsRow};
use super::stale::{StaleCutoff, RUNNING, STALE};

/// A minute, ms.
pub const MINUTE_MS: i64 = 60_000;
/// An hour, ms.
pub const HOUR_MS: i64 = 3_600_000;
/// A day, ms (UTC days: unix time has no leap seconds).
pub const DAY_MS: i64 = 86_400_000;

/// `kind` of a run's row.
pub const KIND_RUN: i64 = 0;
/// `kind` of a variant's row.
pub const KIND_VARIANT: i64 = 1;

/// The E12 series: lower edges within a decade, ×10^k.
const E12: [i64; 12] = [10, 12, 15, 18, 22, 27, 33, 39, 47, 56, 68, 82];
/// Decades the SQL bucket expression spells out (10 ms to 10^12 ms): a latency above
/// falls in the last bucket, as it does here.
const SQL_DECADES: u32 = 11;

/// The rollup tables, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Minute,
    Hour,
    Day,
}

impl Grain {
    /// Every grain, finest first.
    pub const ALL: [Grain; 3] = [Grain::Minute, Grain::Hour, Grain::Day];

    /// The table.
    pub fn table(self) -> &'static str {
        match self {
            Grain::Minute => "rollup_minutes",
            Grain::Hour => "rollup_hours",
            Grain::Day => "rollup_days",
        }
    }

    /// Bucket width, ms.
    pub fn ms(self) -> i64 {
        match self {
            Grain::Minute => MINUTE_MS,
            Grain::Hour => HOUR_MS,
            Grain::Day => DAY_MS,
        }
    }

    /// The next finer grain.
    fn finer(self) -> Option<Grain> {
        match self {
            Grain::Minute => None,
            Grain::Hour => Some(Grain::Minute),
            Grain::Day => Some(Grain::Hour),
        }
    }

    /// The coarsest grain `step` is a whole number of.
    fn of_step(step: i64) -> Grain {
        if step % DAY_MS == 0 {
            Grain::Day
        } else if step % HOUR_MS == 0 {
            Grain::Hour
        } else {
            Grain::Minute
        }
    }

    /// The bucket holding `at`.
    pub fn floor(self, at: i64) -> i64 {
        floor_to(at, self.ms())
    }

    /// The first bucket starting at or after `at`.
    pub fn ceil(self, at: i64) -> i64 {
        let floor = self.floor(at);
        if floor == at {
            at
        } else {
            floor.saturating_add(self.ms())
        }
    }
}

/// The earliest bucket: run starts before it (about 146 million years before 1970)
/// count in it. The wire allows any `i64` time and a producer's clock can be anything;
/// without a bound the bucket arithmetic overflows (Postgres refuses the batch, SQLite
/// turns the value into a float). `-(2^62)` rounded down to a whole day, so it is a
/// bucket of every grain.
pub const EARLIEST: i64 = -4_611_686_018_457_600_000;
/// The latest bucket, likewise (`2^62` rounded down to a whole day).
pub const LATEST: i64 = 4_611_686_018_371_200_000;

/// `at` rounded down to a multiple of `step` (also below zero), within
/// [`EARLIEST`]..=[`LATEST`].
pub fn floor_to(at: i64, step: i64) -> i64 {
    let at = at.clamp(EARLIEST, LATEST);
    at - at.rem_euclid(step)
}

/// The SQL of [`floor_to`] for a column (both dialects truncate `%` towards zero).
fn floor_sql(column: &str, step: i64) -> String {
    format!(
        "(CASE WHEN {column} < {EARLIEST} THEN {EARLIEST} WHEN {column} > {LATEST} THEN {LATEST} \
         ELSE {column} - ((({column}) % {step}) + {step}) % {step} END)"
    )
}

/// The lower edge of `latency_ms`'s E12 bucket (see the module doc); below 0 is 0, and
/// from the last edge the SQL spells out ([`SQL_DECADES`]) on, that edge.
pub fn coarse_latency(latency_ms: i64) -> i64 {
    if latency_ms < 10 {
        return latency_ms.max(0);
    }
    let latency_ms = latency_ms.min(top_latency_edge());
    let (mut value, mut scale) = (latency_ms, 1);
    while value >= 100 {
        value /= 10;
        scale *= 10;
    }
    let edge = E12.iter().rev().find(|edge| **edge <= value).unwrap_or(&10);
    edge * scale
}

/// The last E12 edge [`coarse_latency_sql`] spells out.
fn top_latency_edge() -> i64 {
    E12[E12.len() - 1] * 10_i64.pow(SQL_DECADES - 1)
}

/// [`coarse_latency`] in SQL over `column` (-1 when it is NULL), built once.
pub fn coarse_latency_sql(column: &str) -> String {
    static EDGES: LazyLock<Vec<i64>> = LazyLock::new(|| {
        let mut edges = Vec::new();
        let mut scale = 1;
        for _ in 0..SQL_DECADES {
            edges.extend(E12.iter().map(|e| e * scale));
            scale *= 10;
        }
        edges
    });
    let mut sql = format!(
        "CASE WHEN {column} IS NULL THEN -1 WHEN {column} < 0 THEN 0 \
         WHEN {column} < 10 THEN {column}"
    );
    for pair in EDGES.windows(2) {
        sql.push_str(&format!(" WHEN {column} < {} THEN {}", pair[1], pair[0]));
    }
    sql.push_str(&format!(" ELSE {} END", EDGES[EDGES.len() - 1]));
    sql
}

/// One rollup row's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Start of the minute or hour (unix ms) of the run's start.
    pub bucket: i64,
    /// [`KIND_RUN`] or [`KIND_VARIANT`].
    pub kind: i64,
    /// `''` while the run's start has not arrived.
    pub model: String,
    pub prompt_pack: String,
    pub status: String,
    /// [`coarse_latency`], or -1 (runs; variants without a latency).
    pub latency: i64,
}

/// A row as stored: its key and count.
pub type Counts = BTreeMap<Key, i64>;

/// The minute rollups of some runs alone (their contributions), by `run_id <ids>`
/// where `ids` is the dialect's list (`IN (SELECT value FROM json_each(?))` on SQLite,
/// bound twice; `= ANY($1)` on Postgres). Grouped in SQL as the recount groups them:
/// a batch of 5,000 envelopes touches ~450 runs and ~1,800 variants, which are a few
/// dozen groups; reading them one per row cost Postgres ingest ~20%.
pub(crate) fn touched_sql(ids: &str) -> String {
    counts_sql(Grain::Minute, &format!("WHERE r.run_id {ids}"))
}

/// What one transaction adds to the rollups: the touched runs' contributions after
/// minus before, per grain, without the keys that did not change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delta {
    pub minutes: Counts,
    pub hours: Counts,
    pub days: Counts,
}

impl Delta {
    /// `after - before`, both the minute rows of [`touched_sql`]; hours and days are
    /// their minutes regrouped.
    pub(crate) fn between(before: Vec<Row>, after: Vec<Row>) -> Self {
        let mut minutes = counts(after);
        for (key, n) in counts(before) {
            *minutes.entry(key).or_default() -= n;
        }
        minutes.retain(|_, n| *n != 0);
        let regroup = |grain: Grain| {
            let mut counts = Counts::new();
            for (key, n) in &minutes {
                let key = Key {
                    bucket: grain.floor(key.bucket),
                    ..key.clone()
                };
                *counts.entry(key).or_default() += n;
            }
            counts.retain(|_, n| *n != 0);
            counts
        };
        Self {
            hours: regroup(Grain::Hour),
            days: regroup(Grain::Day),
            minutes,
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty() && self.hours.is_empty() && self.days.is_empty()
    }

    /// The counts of `grain`.
    pub fn of(&self, grain: Grain) -> &Counts {
        match grain {
            Grain::Minute => &self.minutes,
            Grain::Hour => &self.hours,
            Grain::Day => &self.days,
        }
    }
}

/// The transaction-scoped advisory lock keys of `run_ids` on Postgres: the first 8
/// bytes of each id's SHA-256, sorted and without repeats (one order for every
/// writer; two runs sharing a key only wait for each other).
pub(crate) fn lock_keys<'a>(run_ids: impl IntoIterator<Item = &'a str>) -> Vec<i64> {
    let mut keys: Vec<i64> = run_ids
        .into_iter()
        .map(|id| {
            let digest = Sha256::digest(id.as_bytes());
            let mut key = [0; 8];
            key.copy_from_slice(&digest[..8]);
            i64::from_be_bytes(key)
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The recount of `grain`'s rollups from `render_runs` and `variant_results`: what
/// the table must hold (without zero rows). Columns as the table's, `n` last.
pub fn recount_sql(grain: Grain) -> String {
    counts_sql(grain, "")
}

/// The rollup rows of `grain` of the runs `filter` keeps (a `WHERE` on `r`, or empty).
fn counts_sql(grain: Grain, filter: &str) -> String {
    let bucket = floor_sql("r.started_at", grain.ms());
    let latency = coarse_latency_sql("v.latency_ms");
    format!(
        "SELECT {bucket} AS bucket, CAST({KIND_RUN} AS BIGINT) AS kind, \
         COALESCE(r.model, '') AS model, COALESCE(r.prompt_pack_version, '') AS prompt_pack, \
         r.status AS status, CAST(-1 AS BIGINT) AS latency, count(*) AS n \
         FROM render_runs r {filter} GROUP BY 1, 2, 3, 4, 5, 6 \
         UNION ALL \
         SELECT {bucket}, CAST({KIND_VARIANT} AS BIGINT), COALESCE(r.model, ''), \
         COALESCE(r.prompt_pack_version, ''), v.status, {latency}, count(*) \
         FROM render_runs r JOIN variant_results v ON v.run_id = r.run_id {filter} \
         GROUP BY 1, 2, 3, 4, 5, 6"
    )
}

/// A rollup table's rows (without zero rows), as [`recount_sql`] returns them.
pub fn stored_sql(grain: Grain) -> String {
    format!(
        "SELECT bucket, CAST(kind AS BIGINT) AS kind, model, prompt_pack, status, latency, n \
         FROM {} WHERE n <> 0",
        grain.table()
    )
}

/// A row of [`recount_sql`] or [`stored_sql`].
pub type Row = (i64, i64, String, String, String, i64, i64);

/// Rows into [`Counts`].
pub fn counts(rows: Vec<Row>) -> Counts {
    rows.into_iter()
        .map(|(bucket, kind, model, prompt_pack, status, latency, n)| {
            (
                Key {
                    bucket,
                    kind,
                    model,
                    prompt_pack,
                    status,
                    latency,
                },
                n,
            )
        })
        .collect()
}

/// Where the stored rollups differ from a recount: (key, stored, recounted).
pub type Drift = Vec<(Key, i64, i64)>;

/// The keys on which `stored` and `recounted` differ.
pub fn drift(stored: &Counts, recounted: &Counts) -> Drift {
    let mut out = Drift::new();
    for (key, n) in stored {
        let want = recounted.get(key).copied().unwrap_or(0);
        if *n != want {
            out.push((key.clone(), *n, want));
        }
    }
    for (key, n) in recounted {
        if !stored.contains_key(key) {
            out.push((key.clone(), 0, *n));
        }
    }
    out
}

/// Where a window's figures come from: whole days, hours and minutes from the rollups
/// (the coarsest that fit), the sub-minute edges from the rows themselves, each piece
/// before or after the stale cutoff (a `running` variant counts as stale before it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(grain, from, to, before the stale cutoff)`, aligned to the grain.
    pub rollups: Vec<(Grain, i64, i64, bool)>,
    /// `(from, to)` read from `render_runs` and `variant_results`, under a minute each.
    pub raw: Vec<(i64, i64)>,
}

impl Plan {
    /// The plan of `[from, to)` with the stale cutoff `stale`.
    pub fn of(from: i64, to: i64, stale: i64) -> Self {
        let mut plan = Plan::default();
        if from >= to {
            return plan;
        }
        if stale > from && stale < to {
            plan.piece(from, stale, true);
            plan.piece(stale, to, false);
        } else {
            plan.piece(from, to, to <= stale);
        }
        plan
    }

    fn piece(&mut self, from: i64, to: i64, before: bool) {
        let (m_from, m_to) = (Grain::Minute.ceil(from), Grain::Minute.floor(to));
        if m_from >= m_to {
            self.raw.push((from, to));
            return;
        }
        if from < m_from {
            self.raw.push((from, m_from));
        }
        self.aligned(Grain::Day, m_from, m_to, before);
        if m_to < to {
            self.raw.push((m_to, to));
        }
    }

    /// Covers `[from, to)`, whole minutes, with whole buckets of `grain` where they
    /// fit and finer ones at the ends.
    fn aligned(&mut self, grain: Grain, from: i64, to: i64, before: bool) {
        let Some(finer) = grain.finer() else {
            self.rollups.push((grain, from, to, before));
            return;
        };
        let (g_from, g_to) = (grain.ceil(from), grain.floor(to));
        if g_from >= g_to {
            self.aligned(finer, from, to, before);
            return;
        }
        if from < g_from {
            self.aligned(finer, from, g_from, before);
        }
        self.rollups.push((grain, g_from, g_to, before));
        if g_to < to {
            self.aligned(finer, g_to, to, before);
        }
    }
}

/// The overview's rows of one aligned range of a rollup table ([`Plan::rollups`]):
/// variants grouped by model, prompt pack, status and latency bucket, as
/// [`super::overview::stats_sql`] returns them from the runs.
pub(crate) fn overview_sql<DB>(
    grain: Grain,
    from: i64,
    to: i64,
    model: Option<&str>,
) -> QueryBuilder<'static, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!(
        "SELECT NULLIF(model, '') AS model, NULLIF(prompt_pack, '') AS prompt_pack_version, \
         status, latency AS bucket, CAST(sum(n) AS BIGINT) AS n FROM {} WHERE kind = {KIND_VARIANT}",
        grain.table()
    ));
    range(&mut query, "bucket", Some(from), Some(to));
    run_model_is_column(&mut query, "model", model);
    query.push(" GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0");
    query
}

/// Rows of [`overview_sql`] with `running` read as stale when the range is before the
/// stale cutoff.
pub(crate) fn stale_rows(mut rows: Vec<StatsRow>, before_cutoff: bool) -> Vec<StatsRow> {
    if before_cutoff {
        for row in &mut rows {
            if row.status == RUNNING {
                row.status = STALE.to_owned();
            }
        }
    }
    rows
}

/// Rows read from the runs themselves, their fine latency buckets made coarse.
pub(crate) fn coarse_rows(mut rows: Vec<StatsRow>) -> Vec<StatsRow> {
    for row in &mut rows {
        if row.bucket >= 0 {
            row.bucket = coarse_latency(row.bucket);
        }
    }
    rows
}

/// Which runs a time series counts, and how finely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesFilter {
    /// Run starts in `[from, to)`, widened to whole steps.
    pub from: i64,
    pub to: i64,
    /// Only this model's runs (any ASCII case).
    pub model: Option<String>,
    /// Width of a point, a whole number of minutes (of hours from an hour on, of days
    /// from a day on).
    pub step: i64,
}

/// Most points one series has (a step too fine for its window is widened).
pub const MAX_POINTS: i64 = 400;

impl SeriesFilter {
    /// The step, at least a minute, whole minutes, hours or days, and few enough
    /// points ([`MAX_POINTS`]). Read from the coarsest rollups it is a whole number of.
    fn step(&self) -> i64 {
        let span = self.to.saturating_sub(self.from).max(1);
        let mut step = self.step.max(MINUTE_MS);
        step = floor_to(step, MINUTE_MS);
        while span / step > MAX_POINTS {
            step *= 2;
        }
        if step > DAY_MS {
            step = floor_to(step, DAY_MS);
        } else if step > HOUR_MS {
            step = floor_to(step, HOUR_MS);
        }
        step
    }
}

/// One model in one point of a series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPoint {
    /// Variants with a result (success, failed, timeout).
    pub finished: i64,
    /// Of those, failed or timed out.
    pub errors: i64,
    /// Success-only latency percentiles (ms, lower edge of the bucket).
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

impl ModelPoint {
    /// Share of errors among finished variants, as a percentage (`None`: none finished).
    pub fn failure_rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.errors as f64 * 100.0 / self.finished as f64)
    }
}

/// One step of a series: runs started in `[at, at + step)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesPoint {
    pub at: i64,
    /// Runs by status (`stale` for those still running in a step before the cutoff).
    pub runs: BTreeMap<String, i64>,
    /// Variants by status (likewise).
    pub variants: BTreeMap<String, i64>,
    /// Per model (`(none)` while the run's start is missing).
    pub models: BTreeMap<String, ModelPoint>,
}

/// Counts and latencies per step over a window, from the rollups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeSeries {
    /// Start of the first point and end of the last (whole steps).
    pub from: i64,
    pub to: i64,
    pub step: i64,
    /// Every step of the window, oldest first, empty ones included.
    pub points: Vec<SeriesPoint>,
}

/// A row of [`series_sql`]: (step start, kind, model, status, latency, n).
pub type SeriesRow = (i64, i64, String, String, i64, i64);

/// The rows of a time series: rollups of the filter's grain summed per step.
pub(crate) fn series_sql<DB>(filter: &SeriesFilter) -> (QueryBuilder<'static, DB>, i64, i64, i64)
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let step = filter.step();
    let grain = Grain::of_step(step);
    let (from, to) = (floor_to(filter.from, step), {
        let end = floor_to(filter.to, step);
        if end < filter.to {
            end.saturating_add(step)
        } else {
            end
        }
    });
    let mut query = QueryBuilder::new("SELECT bucket - ((bucket % ");
    query
        .push_bind(step)
        .push(" + ")
        .push_bind(step)
        .push(") % ")
        .push_bind(step)
        .push(format!(
            ") AS at, CAST(kind AS BIGINT) AS kind, model, status, latency, \
             CAST(sum(n) AS BIGINT) AS n FROM {} WHERE 1 = 1",
            grain.table()
        ));
    range(&mut query, "bucket", Some(from), Some(to));
    run_model_is_column(&mut query, "model", filter.model.as_deref());
    query.push(" GROUP BY 1, 2, 3, 4, 5");
    (query, from, to, step)
}

/// The series of [`series_sql`]'s rows.
pub(crate) fn series(
    rows: &[SeriesRow],
    (from, to, step): (i64, i64, i64),
    stale: StaleCutoff,
) -> TimeSeries {
    const NONE: &str = "(none)";
    let mut points: BTreeMap<i64, SeriesPoint> = (0..to.saturating_sub(from) / step)
        .map(|i| {
            let at = from + i * step;
            (
                at,
                SeriesPoint {
                    at,
                    ..SeriesPoint::default()
                },
            )
        })
        .collect();
    let mut latencies: BTreeMap<(i64, &str), BTreeMap<i64, i64>> = BTreeMap::new();
    for (at, kind, model, status, latency, n) in rows {
        let Some(point) = points.get_mut(at) else {
            continue;
        };
        let status = if status == RUNNING && at + step <= stale.0 {
            STALE
        } else {
            status.as_str()
        };
        let model_key = if model.is_empty() { NONE } else { model };
        if *kind == KIND_RUN {
            *point.runs.entry(status.to_owned()).or_default() += n;
            continue;
        }
        *point.variants.entry(status.to_owned()).or_default() += n;
        let entry = point.models.entry(model_key.to_owned()).or_default();
        match status {
            "success" => {
                entry.finished += n;
                if *latency >= 0 {
                    *latencies
                        .entry((*at, model_key))
                        .or_default()
                        .entry(*latency)
                        .or_default() += n;
                }
            }
            "failed" | "timeout" => {
                entry.finished += n;
                entry.errors += n;
            }
            _ => {}
        }
    }
    for ((at, model), buckets) in latencies {
        let percentiles = Percentiles(buckets);
        if let Some(entry) = points.get_mut(&at).and_then(|p| p.models.get_mut(model)) {
            entry.p50_ms = percentiles.at(50.0);
            entry.p95_ms = percentiles.at(95.0);
        }
    }
    for point in points.values_mut() {
        point.runs.retain(|_, n| *n != 0);
        point.variants.retain(|_, n| *n != 0);
        point.models.retain(|_, m| m.finished != 0);
    }
    TimeSeries {
        from,
        to,
        step,
        points: points.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_buckets_are_e12_edges_and_agree_with_the_fine_ones() {
        assert_eq!(coarse_latency(-3), 0);
        assert_eq!(coarse_latency(7), 7);
        assert_eq!(coarse_latency(10), 10);
        assert_eq!(coarse_latency(11), 10);
        assert_eq!(coarse_latency(12), 12);
        assert_eq!(coarse_latency(999), 820);
        assert_eq!(coarse_latency(1_000), 1_000);
        assert_eq!(coarse_latency(1_234), 1_200);
        assert_eq!(coarse_latency(9_100), 8_200);
        assert_eq!(coarse_latency(45_000), 39_000);
        assert_eq!(
            coarse_latency(i64::MAX),
            820_000_000_000,
            "the SQL's last edge"
        );
        assert_eq!(coarse_latency(820_000_000_000), 820_000_000_000);
        for latency in (0..200_000).step_by(7) {
            let fine = super::super::overview::latency_bucket(latency);
            assert_eq!(coarse_latency(fine), coarse_latency(latency), "{latency}");
        }
    }

    #[test]
    fn the_sql_bucket_spells_out_the_same_edges() {
        let sql = coarse_latency_sql("x");
        assert!(sql.starts_with("CASE WHEN x IS NULL THEN -1 WHEN x < 0 THEN 0"));
        assert!(sql.contains(" WHEN x < 12 THEN 10 WHEN x < 15 THEN 12"));
        assert!(sql.contains(" WHEN x < 1000 THEN 820 WHEN x < 1200 THEN 1000"));
        assert!(sql.ends_with(" ELSE 820000000000 END"));
        assert_eq!(floor_to(-1, 60_000), -60_000);
        assert_eq!(floor_to(119_999, 60_000), 60_000);
        // A wild clock is bucketed at the bounds, which are buckets of every grain.
        for grain in Grain::ALL {
            assert_eq!(grain.floor(i64::MIN), EARLIEST);
            assert_eq!(grain.floor(i64::MAX), LATEST);
            assert_eq!(EARLIEST % grain.ms(), 0);
            assert_eq!(LATEST % grain.ms(), 0);
        }
        assert!(floor_sql("x", 60_000).contains("WHEN x < -4611686018457600000 THEN"));
    }

    /// Every `step` ms around `[from, to)` is in exactly one piece of `plan` inside it,
    /// and in none outside.
    fn covers_once(plan: &Plan, from: i64, to: i64, step: usize) {
        let margin = (to - from).min(DAY_MS);
        for at in (from - margin..to + margin).step_by(step) {
            let hits = plan.raw.iter().filter(|(a, b)| *a <= at && at < *b).count()
                + plan
                    .rollups
                    .iter()
                    .filter(|(_, a, b, _)| *a <= at && at < *b)
                    .count();
            assert_eq!(hits, usize::from(from <= at && at < to), "{at}");
        }
    }

    #[test]
    fn a_plan_covers_the_window_once_split_at_the_stale_cutoff() {
        let t = 10 * HOUR_MS;
        let (from, to, stale) = (t + 5_000, t + 3 * HOUR_MS + 2 * MINUTE_MS + 7, t + HOUR_MS);
        let plan = Plan::of(from, to, stale);
        assert_eq!(
            plan.raw,
            [(from, t + MINUTE_MS), (t + 3 * HOUR_MS + 2 * MINUTE_MS, to)]
        );
        assert_eq!(
            plan.rollups,
            [
                (Grain::Minute, t + MINUTE_MS, t + HOUR_MS, true),
                (Grain::Hour, t + HOUR_MS, t + 3 * HOUR_MS, false),
                (
                    Grain::Minute,
                    t + 3 * HOUR_MS,
                    t + 3 * HOUR_MS + 2 * MINUTE_MS,
                    false
                ),
            ]
        );
        // Every millisecond of the window is in exactly one piece.
        covers_once(&plan, from, to, 997);
        assert_eq!(
            Plan::of(t + 1, t + 2, 0).raw,
            [(t + 1, t + 2)],
            "under a minute: raw"
        );
        assert!(Plan::of(t, t, 0).raw.is_empty());

        // Thirty days: whole days in the middle, hours and minutes at the ends.
        let (from, to) = (
            5 * DAY_MS + 7 * HOUR_MS + 90_500,
            35 * DAY_MS + 2 * HOUR_MS + 61_000,
        );
        let plan = Plan::of(from, to, to - 600_000);
        let grains: Vec<(Grain, i64, i64)> = plan
            .rollups
            .iter()
            .map(|(g, a, b, _)| (*g, *a, *b))
            .collect();
        assert_eq!(
            grains,
            [
                (
                    Grain::Minute,
                    5 * DAY_MS + 7 * HOUR_MS + 2 * MINUTE_MS,
                    5 * DAY_MS + 8 * HOUR_MS
                ),
                (Grain::Hour, 5 * DAY_MS + 8 * HOUR_MS, 6 * DAY_MS),
                (Grain::Day, 6 * DAY_MS, 35 * DAY_MS),
                (Grain::Hour, 35 * DAY_MS, 35 * DAY_MS + HOUR_MS),
                // The stale cutoff (35 d 1 h 51 min 1 s) splits the last hour.
                (
                    Grain::Minute,
                    35 * DAY_MS + HOUR_MS,
                    35 * DAY_MS + HOUR_MS + 51 * MINUTE_MS
                ),
                (
                    Grain::Minute,
                    35 * DAY_MS + HOUR_MS + 52 * MINUTE_MS,
                    35 * DAY_MS + 2 * HOUR_MS + MINUTE_MS
                ),
            ]
        );
        covers_once(&plan, from, to, 59_999);
    }

    #[test]
    fn a_delta_is_after_minus_before_without_unchanged_keys() {
        let row = |kind, status: &str, latency, n| -> Row {
            (
                59 * MINUTE_MS,
                kind,
                "m".into(),
                String::new(),
                status.into(),
                latency,
                n,
            )
        };
        let before = [
            row(KIND_RUN, "running", -1, 1),
            row(KIND_RUN, "complete", -1, 3),
            row(KIND_VARIANT, "running", -1, 1),
        ];
        let after = [
            row(KIND_RUN, "complete", -1, 4),
            row(KIND_VARIANT, "success", 1_200, 1),
        ];
        let delta = Delta::between(before.to_vec(), after.to_vec());
        let got: Vec<(i64, &str, i64, i64)> = delta
            .minutes
            .iter()
            .map(|(k, n)| (k.kind, k.status.as_str(), k.latency, *n))
            .collect();
        assert_eq!(
            got,
            [
                (KIND_RUN, "complete", -1, 1),
                (KIND_RUN, "running", -1, -1),
                (KIND_VARIANT, "running", -1, -1),
                (KIND_VARIANT, "success", 1_200, 1),
            ]
        );
        // Hours and days: the minutes regrouped.
        assert_eq!(delta.hours.len(), 4);
        assert!(delta.hours.keys().all(|k| k.bucket == 0));
        assert_eq!(delta.days.values().sum::<i64>(), 0);
        assert!(Delta::between(after.to_vec(), after.to_vec()).is_empty());
        assert_eq!(lock_keys(["b", "a", "b"]).len(), 2);
    }
}
