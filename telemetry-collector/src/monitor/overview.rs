//! The overview: outcome rates and latency percentiles per model, per prompt pack and
//! per prompt pack × model over a window of run start times, of one model when asked
//! (`/monitor/overview` with charts, `/api/v1/stats`). Both read the window the same
//! way (`read`) and queue for one of the few overview query slots
//! ([`Monitor::aggregate`], which the error groups share). Variants still without a
//! result in runs that are stale now (`COLLECTOR_STALE_RUN_AFTER` after their start)
//! are counted as `stale`, apart from the ones still running.
//!
//! Latency percentiles are over successes only; failures and timeouts have their own
//! p50 / p95 columns (a model answering 503 in 100 ms is not fast). Each model, prompt
//! pack and cell of the matrix links to its runs in the runs list, for the same window.
//!
//! Above the tables, charts over time ([`series_step`] per window): runs and variants
//! by status, success-only latency p50 / p95 per model, failure rate per model, read
//! from the rollups ([`crate::store::rollups`]). The figures below the form
//! (`#overview-live`) refresh on their own every `refresh` (1 min by default for a
//! named window, which ends now; off for a fixed `from`/`to`) from
//! `/monitor/overview/live`, which renders just them.

use std::future::Future;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::{AppError, AppState};
use crate::store::rollups::{SeriesFilter, TimeSeries, DAY_MS, HOUR_MS, MINUTE_MS};
use crate::store::{CellStats, GroupStats, Overview, OverviewFilter, StoreError};
use service_kit::now_ms;

use super::params::{self, bad, parse_time, present, Params};
use super::views::{fmt_ms, fmt_short_time, fmt_time, render};
use super::{charts, Monitor};

/// The named windows the overview offers: the lists' quick ranges.
pub const WINDOWS: [(&str, i64); 6] = params::RANGES;

/// Shown for a model or prompt pack of runs whose start was never received.
const NONE: &str = "(none)";

/// Query string of the overview's figures: a named window (`15m`, `1h`, `6h`, `24h`,
/// `7d`, `30d`) or `from`/`to`, and a model.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct StatsParams {
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Only this model's runs (any case).
    pub model: Option<String>,
}

/// Query string of the overview page: [`StatsParams`], and how often the figures
/// refresh themselves.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct OverviewParams {
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub model: Option<String>,
    /// `off`, `10s`, `30s`, `1m` or `5m` ([`REFRESHES`]).
    pub refresh: Option<String>,
}

impl OverviewParams {
    /// The figures' part.
    fn stats(&self) -> StatsParams {
        StatsParams {
            window: self.window.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            model: self.model.clone(),
        }
    }

    /// The refresh's name and period (ms): as asked, else `1m` for a named window
    /// (it ends now) and `off` for a fixed one.
    pub fn refresh(&self, named: bool) -> Result<(&'static str, u64), AppError> {
        match present(&self.refresh) {
            Some(asked) => REFRESHES
                .iter()
                .find(|(name, _)| *name == asked)
                .copied()
                .ok_or_else(|| bad("refresh must be one of off, 10s, 30s, 1m, 5m")),
            None if named => Ok(REFRESHES[DEFAULT_REFRESH]),
            None => Ok(REFRESHES[0]),
        }
    }
}

/// How often the overview's figures may refresh themselves (ms; 0: never).
pub const REFRESHES: [(&str, u64); 5] = [
    ("off", 0),
    ("10s", 10_000),
    ("30s", 30_000),
    ("1m", 60_000),
    ("5m", 300_000),
];
/// [`REFRESHES`]' default on a named window.
const DEFAULT_REFRESH: usize = 3;

/// The step of the charts over time for a window of `span` ms: 15 to ~100 points,
/// from the minute rollups up to 6 hours, the hourly ones up to 7 days, the daily ones
/// beyond (reading a rollup costs per row, and a day of minute rows is ~50 times the
/// rows of its hours).
pub fn series_step(span: i64) -> i64 {
    if span <= HOUR_MS {
        MINUTE_MS
    } else if span <= 6 * HOUR_MS {
        5 * MINUTE_MS
    } else if span <= DAY_MS {
        HOUR_MS
    } else if span <= 7 * DAY_MS {
        3 * HOUR_MS
    } else {
        DAY_MS
    }
}

/// The window `[from, to)` at `now` of a named `window` or `from` / `to`, and the
/// window's name when named (the overview's and the error groups' windows).
pub fn window(
    name: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
    now: i64,
) -> Result<(i64, i64, String), AppError> {
    let to = parse_time("to", to)?.unwrap_or(now);
    if let Some(from) = parse_time("from", from)? {
        return Ok((from, to, String::new()));
    }
    let name = present(name).unwrap_or_else(|| "24h".to_owned());
    let span = WINDOWS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, span)| *span)
        .ok_or_else(|| {
            let names: Vec<&str> = WINDOWS.iter().map(|(n, _)| *n).collect();
            bad(format!("window must be one of {}", names.join(", ")))
        })?;
    Ok((to - span, to, name))
}

/// Each named window and whether it is the one shown.
pub fn window_choices(shown: &str) -> Vec<(&'static str, bool)> {
    WINDOWS
        .iter()
        .map(|(name, _)| (*name, *name == shown))
        .collect()
}

impl StatsParams {
    /// The window `[from, to)` at `now`, and the window's name when named.
    pub fn window(&self, now: i64) -> Result<(i64, i64, String), AppError> {
        window(&self.window, &self.from, &self.to, now)
    }

    /// The store's filter at `now`, and the window's name when named.
    pub fn filter(&self, now: i64) -> Result<(OverviewFilter, String), AppError> {
        let (from, to, name) = self.window(now)?;
        let model = params::text("model", &self.model)?;
        Ok((OverviewFilter { from, to, model }, name))
    }
}

impl Monitor {
    /// Runs `read`, a query over a whole window (the overview, error groups), in one of
    /// at most `MONITOR_MAX_OVERVIEW_QUERIES`
    /// ([`DEFAULT_MAX_OVERVIEW_QUERIES`](super::DEFAULT_MAX_OVERVIEW_QUERIES)) slots;
    /// others wait up to `MONITOR_OVERVIEW_QUEUE_WAIT_MS`
    /// ([`DEFAULT_OVERVIEW_QUEUE_WAIT`](super::DEFAULT_OVERVIEW_QUEUE_WAIT)) without a
    /// connection, then 503.
    pub async fn aggregate<T>(
        &self,
        read: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, AppError> {
        let wait = self.inner.overview_queue_wait;
        let slot = tokio::time::timeout(wait, self.inner.overview_slots.acquire()).await;
        let Ok(Ok(_slot)) = slot else {
            return Err(AppError::Busy(
                "the overview is busy with other requests; try again shortly",
            ));
        };
        Ok(read.await?)
    }
}

/// `/monitor?model=..&prompt_pack_version=..&from=..&to=..`: the runs of a model, a
/// prompt pack or both in the window (unix ms, as the runs list reads them). `None`
/// when a key is [`NONE`]: the runs list cannot select a missing value.
pub fn runs_href(model: Option<&str>, pack: Option<&str>, from: i64, to: i64) -> Option<String> {
    if model == Some(NONE) || pack == Some(NONE) {
        return None;
    }
    let text = |v: Option<&str>| v.map(str::to_owned);
    let query = params::encode(&[
        ("model", &text(model)),
        ("prompt_pack_version", &text(pack)),
        ("from", &Some(from.to_string())),
        ("to", &Some(to.to_string())),
    ]);
    Some(format!("/monitor?{query}"))
}

/// The statistics and time series of the window `query` asks for (one overview slot
/// for both), and the window's name when named.
async fn read(
    state: &AppState,
    query: &StatsParams,
) -> Result<(Overview, TimeSeries, String), AppError> {
    let (filter, window) = query.filter(now_ms())?;
    let monitor = &state.monitor;
    let stale = monitor.stale_cutoff();
    let series = SeriesFilter {
        from: filter.from,
        to: filter.to,
        model: filter.model.clone(),
        step: series_step(filter.to - filter.from),
    };
    let store = &state.store;
    let (stats, series) = monitor
        .aggregate(async {
            let stats = store.monitor_stats(&filter, stale).await?;
            let series = store.monitor_series(&series, stale).await?;
            Ok((stats, series))
        })
        .await?;
    Ok((stats, series, window))
}

/// One table row of the overview.
pub struct StatsLine {
    pub key: String,
    /// The runs of this model or prompt pack in the window.
    pub href: Option<String>,
    pub total: i64,
    pub success: String,
    pub failed: String,
    pub timeout: String,
    pub stale: String,
    /// Over successes.
    pub p50: String,
    pub p95: String,
    pub p99: String,
    pub failed_p50: String,
    pub failed_p95: String,
    pub timeout_p50: String,
    pub timeout_p95: String,
}

impl StatsLine {
    fn new(g: &GroupStats, href: Option<String>) -> Self {
        Self {
            key: g.key.clone(),
            href,
            total: g.total,
            success: format!("{:.1}%", g.rate(g.success)),
            failed: format!("{:.1}%", g.rate(g.failed)),
            timeout: format!("{:.1}%", g.rate(g.timeout)),
            stale: format!("{:.1}%", g.rate(g.stale)),
            p50: fmt_ms(g.p50_ms),
            p95: fmt_ms(g.p95_ms),
            p99: fmt_ms(g.p99_ms),
            failed_p50: fmt_ms(g.failed_p50_ms),
            failed_p95: fmt_ms(g.failed_p95_ms),
            timeout_p50: fmt_ms(g.timeout_p50_ms),
            timeout_p95: fmt_ms(g.timeout_p95_ms),
        }
    }
}

/// A cell of the prompt pack × model matrix.
pub struct MatrixCell {
    /// Success rate.
    pub rate: String,
    /// Success-only p95.
    pub p95: String,
    pub total: i64,
    /// Failed and timed out.
    pub errors: i64,
    /// `cell-ok` (95% or more succeeded), `cell-warn` (80% or more) or `cell-bad`.
    pub class: &'static str,
    /// The runs of this prompt pack with this model in the window.
    pub href: Option<String>,
}

/// A prompt pack's row of the matrix: one cell per model (`None`: no variants).
pub struct MatrixRow {
    pub pack: String,
    pub href: Option<String>,
    pub cells: Vec<Option<MatrixCell>>,
}

/// Rows prompt packs, columns models.
pub struct Matrix {
    pub models: Vec<String>,
    pub rows: Vec<MatrixRow>,
}

impl Matrix {
    fn new(stats: &Overview) -> Self {
        let (from, to) = (stats.from, stats.to);
        let models: Vec<String> = stats.by_model.iter().map(|g| g.key.clone()).collect();
        let rows = stats
            .by_prompt_pack
            .iter()
            .map(|pack| {
                let cells = models
                    .iter()
                    .map(|model| {
                        stats
                            .by_pack_and_model
                            .iter()
                            .find(|c| c.prompt_pack == pack.key && &c.model == model)
                            .map(|c| MatrixCell::new(c, from, to))
                    })
                    .collect();
                let model = stats.model.as_deref();
                MatrixRow {
                    pack: pack.key.clone(),
                    href: runs_href(model, Some(&pack.key), from, to),
                    cells,
                }
            })
            .collect();
        Self { models, rows }
    }
}

impl MatrixCell {
    fn new(cell: &CellStats, from: i64, to: i64) -> Self {
        let g = &cell.stats;
        let rate = g.rate(g.success);
        Self {
            rate: format!("{rate:.1}%"),
            p95: fmt_ms(g.p95_ms),
            total: g.total,
            errors: g.failed + g.timeout,
            class: if rate >= 95.0 {
                "cell-ok"
            } else if rate >= 80.0 {
                "cell-warn"
            } else {
                "cell-bad"
            },
            href: runs_href(Some(&cell.model), Some(&cell.prompt_pack), from, to),
        }
    }
}

/// The figures below the overview's form: what `/monitor/overview/live` renders alone.
#[derive(Template)]
#[template(path = "overview_body.html")]
pub struct OverviewBody {
    pub from: String,
    pub to: String,
    /// The model filter as given (empty: every model).
    pub model: String,
    pub by_model: Vec<StatsLine>,
    pub by_pack: Vec<StatsLine>,
    pub matrix: Matrix,
    /// The runs list for the window (and model).
    pub runs_href: String,
    /// The error groups of the window (and model).
    pub errors_href: String,
    /// Server-drawn SVG (labels escaped in [`charts`]).
    pub model_rates: String,
    pub model_latency: String,
    pub pack_rates: String,
    pub pack_latency: String,
    pub over_time: OverTime,
    /// When these figures were read (UTC).
    pub read_at: String,
}

/// The charts over time, and the models they draw (in their colours' order).
pub struct OverTime {
    /// `5 min`, `1 h`: one column or point per step.
    pub step: String,
    pub runs: String,
    pub variants: String,
    pub latency: String,
    pub failure_rate: String,
    /// `(model, colour class)` of the line charts.
    pub models: Vec<(String, String)>,
    /// Nothing in the window.
    pub empty: bool,
}

impl OverTime {
    fn new(series: &TimeSeries) -> Self {
        let times: Vec<String> = series.points.iter().map(|p| fmt_short_time(p.at)).collect();
        let runs = columns(
            series.points.iter().map(|p| &p.runs),
            &[
                ("complete", "ok"),
                ("partial", "timeout"),
                ("failed", "failed"),
                ("stale", "stale"),
            ],
        );
        let variants = columns(
            series.points.iter().map(|p| &p.variants),
            &[
                ("success", "ok"),
                ("failed", "failed"),
                ("timeout", "timeout"),
                ("stale", "stale"),
            ],
        );
        // The models with the most finished variants in the window, as many as the
        // line charts draw.
        let mut finished: std::collections::BTreeMap<&str, i64> = Default::default();
        for point in &series.points {
            for (model, figures) in &point.models {
                *finished.entry(model).or_default() += figures.finished;
            }
        }
        let mut models: Vec<(&str, i64)> = finished.into_iter().collect();
        models.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        models.truncate(charts::MAX_LINES / 2);
        let mut latency = Vec::new();
        let mut failure_rate = Vec::new();
        for (model, _) in &models {
            let of = |f: fn(&crate::store::rollups::ModelPoint) -> Option<f64>| {
                series
                    .points
                    .iter()
                    .map(|p| p.models.get(*model).and_then(f))
                    .collect::<Vec<_>>()
            };
            latency.push((
                format!("{model} p50"),
                of(|m| m.p50_ms.map(|v| v as f64)),
                false,
            ));
            latency.push((
                format!("{model} p95"),
                of(|m| m.p95_ms.map(|v| v as f64)),
                true,
            ));
            failure_rate.push((model.to_string(), of(|m| m.failure_rate()), false));
        }
        let ms = |v: f64| fmt_ms(Some(v as i64));
        let percent = |v: f64| format!("{v:.1}%");
        Self {
            step: if series.step % DAY_MS == 0 {
                format!("{} d", series.step / DAY_MS)
            } else if series.step % HOUR_MS == 0 {
                format!("{} h", series.step / HOUR_MS)
            } else {
                format!("{} min", series.step / MINUTE_MS)
            },
            runs: charts::stacked_over_time(&runs, &times, "Runs by status over time"),
            variants: charts::stacked_over_time(&variants, &times, "Variants by status over time"),
            latency: charts::lines_over_time(
                &latency,
                &times,
                "Success latency p50 and p95 per model over time",
                ms,
                true,
            ),
            failure_rate: charts::lines_over_time(
                &failure_rate,
                &times,
                "Failure rate per model over time",
                percent,
                false,
            ),
            models: models
                .iter()
                .enumerate()
                .map(|(k, (m, _))| (m.to_string(), format!("line-{k}")))
                .collect(),
            empty: series.points.iter().all(|p| p.runs.is_empty()),
        }
    }
}

/// One stacked column per step: the counts of `shown` (status, colour class) bottom
/// first, then every other status (running, or one this page does not know) as
/// `running/other`.
fn columns<'a>(
    steps: impl Iterator<Item = &'a std::collections::BTreeMap<String, i64>>,
    shown: &[(&'static str, &'static str)],
) -> Vec<Vec<(i64, &'static str, &'static str)>> {
    steps
        .map(|counts| {
            let mut column: Vec<(i64, &str, &str)> = shown
                .iter()
                .map(|(status, class)| (counts.get(*status).copied().unwrap_or(0), *status, *class))
                .collect();
            let rest: i64 = counts
                .iter()
                .filter(|(status, _)| !shown.iter().any(|(s, _)| s == status))
                .map(|(_, n)| n)
                .sum();
            column.push((rest, "running/other", "other"));
            column
        })
        .collect()
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub nav: &'static str,
    pub auth: bool,
    pub window: String,
    /// Each window and whether it is the one shown.
    pub windows: Vec<(&'static str, bool)>,
    /// The quick ranges: each window's link (with the model), and whether it is shown.
    pub ranges: Vec<(&'static str, String, bool)>,
    /// The model filter as given (empty: every model).
    pub model: String,
    /// Models of the window, for the filter's suggestions.
    pub models: Vec<String>,
    /// Each refresh period and whether it is the one chosen.
    pub refreshes: Vec<(&'static str, bool)>,
    /// `/monitor/overview/live?..` and its period (ms), when refreshing.
    pub live_url: Option<String>,
    pub refresh_ms: u64,
    /// Rendered by its own template, which escapes it.
    pub body: OverviewBody,
}

/// The figures below the form, for `query`.
async fn body(state: &AppState, query: &StatsParams) -> Result<(OverviewBody, String), AppError> {
    let (stats, series, window) = read(state, query).await?;
    let (from, to) = (stats.from, stats.to);
    let model = stats.model.as_deref();
    let errors_query = params::encode(&[
        ("from", &Some(from.to_string())),
        ("to", &Some(to.to_string())),
        ("model", &stats.model),
    ]);
    let body = OverviewBody {
        from: fmt_time(from),
        to: fmt_time(to),
        model: stats.model.clone().unwrap_or_default(),
        by_model: stats
            .by_model
            .iter()
            .map(|g| StatsLine::new(g, runs_href(Some(&g.key), None, from, to)))
            .collect(),
        by_pack: stats
            .by_prompt_pack
            .iter()
            .map(|g| StatsLine::new(g, runs_href(model, Some(&g.key), from, to)))
            .collect(),
        matrix: Matrix::new(&stats),
        runs_href: runs_href(model, None, from, to).unwrap_or_else(|| "/monitor".to_owned()),
        errors_href: format!("/monitor/errors?{errors_query}"),
        model_rates: charts::rates(&stats.by_model, "Outcomes per model"),
        model_latency: charts::latency(&stats.by_model, "Success latency per model"),
        pack_rates: charts::rates(&stats.by_prompt_pack, "Outcomes per prompt pack"),
        pack_latency: charts::latency(&stats.by_prompt_pack, "Success latency per prompt pack"),
        over_time: OverTime::new(&series),
        read_at: fmt_time(now_ms()),
    };
    Ok((body, window))
}

/// `/monitor/overview`.
pub async fn page(
    State(state): State<AppState>,
    Params(page): Params<OverviewParams>,
) -> Result<Response, AppError> {
    let query = page.stats();
    let (body, window) = body(&state, &query).await?;
    let (refresh, refresh_ms) = page.refresh(!window.is_empty())?;
    let live_url = (refresh_ms > 0).then(|| {
        let live_query = params::encode(&[
            ("window", &query.window),
            ("from", &query.from),
            ("to", &query.to),
            ("model", &query.model),
        ]);
        format!("/monitor/overview/live?{live_query}")
    });
    Ok(render(&OverviewPage {
        nav: "overview",
        auth: state.monitor.auth_required(),
        windows: window_choices(&window),
        ranges: WINDOWS
            .iter()
            .map(|(name, _)| {
                let query = params::encode(&[
                    ("window", &Some((*name).to_owned())),
                    ("model", &query.model),
                ]);
                (*name, format!("/monitor/overview?{query}"), *name == window)
            })
            .collect(),
        window,
        model: body.model.clone(),
        models: body.by_model.iter().map(|l| l.key.clone()).collect(),
        refreshes: REFRESHES
            .iter()
            .map(|(name, _)| (*name, *name == refresh))
            .collect(),
        live_url,
        refresh_ms,
        body,
    }))
}

/// `/monitor/overview/live`: the figures below the form alone, for the page's refresh.
pub async fn live(
    State(state): State<AppState>,
    Params(query): Params<StatsParams>,
) -> Result<Response, AppError> {
    let (body, _) = body(&state, &query).await?;
    Ok(render(&body))
}

/// The figures of a model, a prompt pack or a pair, as `/api/v1/stats` shows them.
#[derive(Debug, Serialize)]
pub struct FiguresJson {
    /// Variants started in the window.
    pub total: i64,
    pub success: i64,
    pub failed: i64,
    pub timeout: i64,
    /// Still without a result in a run that is stale now: never finishing.
    pub stale: i64,
    /// Still running (not stale), or any other status.
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

impl From<GroupStats> for FiguresJson {
    fn from(group: GroupStats) -> Self {
        Self {
            total: group.total,
            success: group.success,
            failed: group.failed,
            timeout: group.timeout,
            stale: group.stale,
            other: group.other,
            p50_ms: group.p50_ms,
            p95_ms: group.p95_ms,
            p99_ms: group.p99_ms,
            failed_p50_ms: group.failed_p50_ms,
            failed_p95_ms: group.failed_p95_ms,
            timeout_p50_ms: group.timeout_p50_ms,
            timeout_p95_ms: group.timeout_p95_ms,
        }
    }
}

/// One model's or prompt pack's figures as `/api/v1/stats` shows them.
#[derive(Debug, Serialize)]
pub struct GroupJson {
    /// The model or prompt pack version (`(none)` when the run start is missing).
    pub key: String,
    #[serde(flatten)]
    pub figures: FiguresJson,
}

impl From<GroupStats> for GroupJson {
    fn from(group: GroupStats) -> Self {
        Self {
            key: group.key.clone(),
            figures: group.into(),
        }
    }
}

/// One prompt pack with one model, as `/api/v1/stats` shows it.
#[derive(Debug, Serialize)]
pub struct CellJson {
    pub prompt_pack_version: String,
    pub model: String,
    #[serde(flatten)]
    pub figures: FiguresJson,
}

/// The overview over `[from, to)`: `{ from, to, model, by_model, by_prompt_pack,
/// by_prompt_pack_and_model }`.
#[derive(Debug, Serialize)]
pub struct StatsJson {
    pub from: i64,
    pub to: i64,
    /// The model filter, `null` for every model.
    pub model: Option<String>,
    pub by_model: Vec<GroupJson>,
    pub by_prompt_pack: Vec<GroupJson>,
    pub by_prompt_pack_and_model: Vec<CellJson>,
    /// The same window over time ([`series_step`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<SeriesJson>,
}

/// One model in one step of [`SeriesJson`].
#[derive(Debug, Serialize)]
pub struct ModelPointJson {
    /// Variants with a result.
    pub finished: i64,
    /// Of those, failed or timed out.
    pub errors: i64,
    /// `errors` as a percentage of `finished`.
    pub failure_rate: Option<f64>,
    /// Success-only latency percentiles (ms, lower edge of the bucket).
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

/// One step: runs started in `[at, at + step_ms)`.
#[derive(Debug, Serialize)]
pub struct PointJson {
    pub at: i64,
    pub runs: std::collections::BTreeMap<String, i64>,
    pub variants: std::collections::BTreeMap<String, i64>,
    pub models: std::collections::BTreeMap<String, ModelPointJson>,
}

/// The overview's window over time, whole steps from `from` to `to`.
#[derive(Debug, Serialize)]
pub struct SeriesJson {
    pub from: i64,
    pub to: i64,
    pub step_ms: i64,
    pub points: Vec<PointJson>,
}

impl From<TimeSeries> for SeriesJson {
    fn from(series: TimeSeries) -> Self {
        Self {
            from: series.from,
            to: series.to,
            step_ms: series.step,
            points: series
                .points
                .into_iter()
                .map(|p| PointJson {
                    at: p.at,
                    runs: p.runs,
                    variants: p.variants,
                    models: p
                        .models
                        .into_iter()
                        .map(|(model, m)| {
                            let failure_rate = m.failure_rate();
                            (
                                model,
                                ModelPointJson {
                                    finished: m.finished,
                                    errors: m.errors,
                                    failure_rate,
                                    p50_ms: m.p50_ms,
                                    p95_ms: m.p95_ms,
                                },
                            )
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<Overview> for StatsJson {
    fn from(stats: Overview) -> Self {
        let groups = |groups: Vec<GroupStats>| groups.into_iter().map(GroupJson::from).collect();
        Self {
            from: stats.from,
            to: stats.to,
            model: stats.model,
            by_model: groups(stats.by_model),
            by_prompt_pack: groups(stats.by_prompt_pack),
            by_prompt_pack_and_model: stats
                .by_pack_and_model
                .into_iter()
                .map(|cell| CellJson {
                    prompt_pack_version: cell.prompt_pack,
                    model: cell.model,
                    figures: cell.stats.into(),
                })
                .collect(),
            series: None,
        }
    }
}

/// `/api/v1/stats`.
pub async fn api(
    State(state): State<AppState>,
    Params(query): Params<StatsParams>,
) -> Result<Json<StatsJson>, AppError> {
    let (stats, series, _) = read(&state, &query).await?;
    let mut json: StatsJson = stats.into();
    json.series = Some(series.into());
    Ok(Json(json))
}
