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

use std::future::Future;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::{AppError, AppState};
use crate::store::{CellStats, GroupStats, Overview, OverviewFilter, StoreError};
use service_kit::now_ms;

use super::params::{self, bad, parse_time, present, Params};
use super::views::{fmt_ms, fmt_time, render};
use super::{charts, Monitor};

/// The named windows the overview offers.
pub const WINDOWS: [(&str, i64); 5] = [
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("24h", 24 * 3_600_000),
    ("7d", 7 * 24 * 3_600_000),
    ("30d", 30 * 24 * 3_600_000),
];

/// Shown for a model or prompt pack of runs whose start was never received.
const NONE: &str = "(none)";

/// Query string of the overview: a named window (`1h`, `6h`, `24h`, `7d`, `30d`) or
/// `from`/`to`, and a model.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct StatsParams {
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Only this model's runs (exact).
    pub model: Option<String>,
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
        .ok_or_else(|| bad("window must be one of 1h, 6h, 24h, 7d, 30d"))?;
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

/// The statistics of the window `query` asks for, and the window's name when named.
async fn read(state: &AppState, query: &StatsParams) -> Result<(Overview, String), AppError> {
    let (filter, window) = query.filter(now_ms())?;
    let monitor = &state.monitor;
    let stale = monitor.stale_cutoff();
    let stats = monitor
        .aggregate(state.store.monitor_stats(&filter, stale))
        .await?;
    Ok((stats, window))
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

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub nav: &'static str,
    pub auth: bool,
    pub window: String,
    /// Each window and whether it is the one shown.
    pub windows: Vec<(&'static str, bool)>,
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
}

/// `/monitor/overview`.
pub async fn page(
    State(state): State<AppState>,
    Params(query): Params<StatsParams>,
) -> Result<Response, AppError> {
    let (stats, window) = read(&state, &query).await?;
    let (from, to) = (stats.from, stats.to);
    let model = stats.model.as_deref();
    let errors_query = params::encode(&[
        ("from", &Some(from.to_string())),
        ("to", &Some(to.to_string())),
        ("model", &stats.model),
    ]);
    Ok(render(&OverviewPage {
        nav: "overview",
        auth: state.monitor.auth_required(),
        windows: window_choices(&window),
        window,
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
    }))
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
        }
    }
}

/// `/api/v1/stats`.
pub async fn api(
    State(state): State<AppState>,
    Params(query): Params<StatsParams>,
) -> Result<Json<StatsJson>, AppError> {
    let (stats, _) = read(&state, &query).await?;
    Ok(Json(stats.into()))
}
