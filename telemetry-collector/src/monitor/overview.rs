//! The overview: outcome rates and latency percentiles per model and per prompt pack
//! over a window of run start times (`/monitor/overview` with charts,
//! `/api/v1/stats`). Both read the window the same way (`read`) and queue for one of
//! the few overview query slots ([`Monitor::stats`]). Variants still without a result
//! in runs that are stale now (`COLLECTOR_STALE_RUN_AFTER` after their start) are
//! counted as `stale`, apart from the ones still running.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::{AppError, AppState};
use crate::store::{GroupStats, Overview, Store};
use service_kit::now_ms;

use super::params::{bad, parse_time, present, Params};
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

/// Query string of the overview: a named window (`1h`, `6h`, `24h`, `7d`, `30d`) or
/// `from`/`to`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct StatsParams {
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl StatsParams {
    /// The window `[from, to)` at `now`, and the window's name when named.
    pub fn window(&self, now: i64) -> Result<(i64, i64, String), AppError> {
        let to = parse_time("to", &self.to)?.unwrap_or(now);
        if let Some(from) = parse_time("from", &self.from)? {
            return Ok((from, to, String::new()));
        }
        let name = present(&self.window).unwrap_or_else(|| "24h".to_owned());
        let span = WINDOWS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, span)| *span)
            .ok_or_else(|| bad("window must be one of 1h, 6h, 24h, 7d, 30d"))?;
        Ok((to - span, to, name))
    }
}

impl Monitor {
    /// The overview's statistics for `[from, to)`, at most `MONITOR_MAX_OVERVIEW_QUERIES`
    /// ([`DEFAULT_MAX_OVERVIEW_QUERIES`](super::DEFAULT_MAX_OVERVIEW_QUERIES)) at once;
    /// others wait up to `MONITOR_OVERVIEW_QUEUE_WAIT_MS`
    /// ([`DEFAULT_OVERVIEW_QUEUE_WAIT`](super::DEFAULT_OVERVIEW_QUEUE_WAIT)) without a
    /// connection, then 503.
    pub async fn stats(&self, store: &dyn Store, from: i64, to: i64) -> Result<Overview, AppError> {
        let wait = self.inner.overview_queue_wait;
        let slot = tokio::time::timeout(wait, self.inner.overview_slots.acquire()).await;
        let Ok(Ok(_slot)) = slot else {
            return Err(AppError::Busy(
                "the overview is busy with other requests; try again shortly",
            ));
        };
        Ok(store.monitor_stats(from, to, self.stale_cutoff()).await?)
    }
}

/// The statistics of the window `query` asks for, and the window's name when named.
async fn read(state: &AppState, query: &StatsParams) -> Result<(Overview, String), AppError> {
    let (from, to, window) = query.window(now_ms())?;
    let stats = state.monitor.stats(state.store.as_ref(), from, to).await?;
    Ok((stats, window))
}

/// One table row of the overview.
pub struct StatsLine {
    pub key: String,
    pub total: i64,
    pub success: String,
    pub failed: String,
    pub timeout: String,
    pub stale: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
}

impl From<&GroupStats> for StatsLine {
    fn from(g: &GroupStats) -> Self {
        Self {
            key: g.key.clone(),
            total: g.total,
            success: format!("{:.1}%", g.rate(g.success)),
            failed: format!("{:.1}%", g.rate(g.failed)),
            timeout: format!("{:.1}%", g.rate(g.timeout)),
            stale: format!("{:.1}%", g.rate(g.stale)),
            p50: fmt_ms(g.p50_ms),
            p95: fmt_ms(g.p95_ms),
            p99: fmt_ms(g.p99_ms),
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
    pub by_model: Vec<StatsLine>,
    pub by_pack: Vec<StatsLine>,
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
    Ok(render(&OverviewPage {
        nav: "overview",
        auth: state.monitor.auth_required(),
        windows: WINDOWS
            .iter()
            .map(|(name, _)| (*name, *name == window))
            .collect(),
        window,
        from: fmt_time(stats.from),
        to: fmt_time(stats.to),
        by_model: stats.by_model.iter().map(StatsLine::from).collect(),
        by_pack: stats.by_prompt_pack.iter().map(StatsLine::from).collect(),
        model_rates: charts::rates(&stats.by_model, "Outcomes per model"),
        model_latency: charts::latency(&stats.by_model, "Latency per model"),
        pack_rates: charts::rates(&stats.by_prompt_pack, "Outcomes per prompt pack"),
        pack_latency: charts::latency(&stats.by_prompt_pack, "Latency per prompt pack"),
    }))
}

/// One model's or prompt pack's figures as `/api/v1/stats` shows them.
#[derive(Debug, Serialize)]
pub struct GroupJson {
    /// The model or prompt pack version (`(none)` when the run start is missing).
    pub key: String,
    /// Variants started in the window.
    pub total: i64,
    pub success: i64,
    pub failed: i64,
    pub timeout: i64,
    /// Still without a result in a run that is stale now: never finishing.
    pub stale: i64,
    /// Still running (not stale), or any other status.
    pub other: i64,
    /// Latency percentiles (ms, lower edge of the bucket) over finished variants.
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

impl From<GroupStats> for GroupJson {
    fn from(group: GroupStats) -> Self {
        Self {
            key: group.key,
            total: group.total,
            success: group.success,
            failed: group.failed,
            timeout: group.timeout,
            stale: group.stale,
            other: group.other,
            p50_ms: group.p50_ms,
            p95_ms: group.p95_ms,
            p99_ms: group.p99_ms,
        }
    }
}

/// The overview over `[from, to)`: `{ from, to, by_model, by_prompt_pack }`.
#[derive(Debug, Serialize)]
pub struct StatsJson {
    pub from: i64,
    pub to: i64,
    pub by_model: Vec<GroupJson>,
    pub by_prompt_pack: Vec<GroupJson>,
}

impl From<Overview> for StatsJson {
    fn from(stats: Overview) -> Self {
        let groups = |groups: Vec<GroupStats>| groups.into_iter().map(GroupJson::from).collect();
        Self {
            from: stats.from,
            to: stats.to,
            by_model: groups(stats.by_model),
            by_prompt_pack: groups(stats.by_prompt_pack),
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
