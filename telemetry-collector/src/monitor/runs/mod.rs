//! Runs: the list (`/monitor`, `/api/v1/runs`, live rows) filtered by shop, status,
//! model, prompt pack, time and id, newest first; one run with its variants and
//! timeline is [`detail`]. Both renderings of the list read one [`Listed`] page.
//!
//! A run still `running` longer than `COLLECTOR_STALE_RUN_AFTER` after its start is
//! shown as `stale` (its renderer died); `status=stale` lists those and
//! `status=running` only the others. The cutoff is taken once per read
//! ([`Monitor::stale_cutoff`](super::Monitor::stale_cutoff)), so the filter and the
//! shown status agree; see [`crate::store::stale`].
//!
//! The first page follows new runs live, and its live fragment is the whole table
//! with its own "Older runs" link: page 1 is always the newest runs, and the link
//! continues from the last row it shows. A link fixed when the page was loaded would
//! skip the runs that new ones pushed off page 1 since.

pub mod detail;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::{AppError, AppState};
use crate::store::{RunFilter, RunRecord, StaleCutoff};

use super::json_blob::JsonBlob;
use super::live::{self, Fragment};
use super::params::{self, encode, parse_cursor, parse_time, Listed, Params};
use super::views::{field, fmt_ms, fmt_time, num, opt, render, run_href, status_class};

/// Run statuses offered by the filter (`stale` is derived, see the module doc;
/// `interrupted`: the producer stopped before the run finished).
pub const RUN_STATUSES: [&str; 7] = [
    "running",
    "stale",
    "complete",
    "partial",
    "failed",
    "interrupted",
    "unknown(0)",
];

/// Query string of the runs list (page, API and live stream); any other name is a 400
/// ([`Params`]).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RunsParams {
    pub shop: Option<String>,
    pub status: Option<String>,
    pub model: Option<String>,
    pub prompt_pack_version: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// A run id or request id.
    pub q: Option<String>,
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl RunsParams {
    /// The store's filter, runs still `running` before `stale` being stale.
    pub fn filter(&self, stale: StaleCutoff) -> Result<RunFilter, AppError> {
        Ok(RunFilter {
            shop_id: params::text("shop", &self.shop)?,
            status: params::text("status", &self.status)?,
            stale_before: Some(stale),
            model: params::text("model", &self.model)?,
            prompt_pack_version: params::text("prompt_pack_version", &self.prompt_pack_version)?,
            from: parse_time("from", &self.from)?,
            to: parse_time("to", &self.to)?,
            text: params::text("q", &self.q)?,
            before: parse_cursor(&self.cursor)?,
            limit: params::limit(&self.limit)?,
        })
    }

    /// The filters (not the cursor) as a query string.
    pub fn query_string(&self) -> String {
        encode(&[
            ("shop", &self.shop),
            ("status", &self.status),
            ("model", &self.model),
            ("prompt_pack_version", &self.prompt_pack_version),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
            ("limit", &self.limit),
        ])
    }
}

/// The page of runs `filter` asks for.
async fn list(state: &AppState, filter: &RunFilter) -> Result<Listed<RunRecord>, AppError> {
    let runs = state.store.monitor_runs(filter).await?;
    Ok(Listed::new(
        runs,
        filter.limit,
        filter.before.is_none(),
        |r| format!("{}:{}", r.started_at, r.run_id),
    ))
}

/// A run in the list (and the head of its own page).
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: String,
    pub href: String,
    pub time: String,
    pub shop: String,
    pub request_id: String,
    pub status: String,
    pub status_class: &'static str,
    pub model: String,
    pub pack: String,
    pub success: String,
    pub failed: String,
    pub timeout: String,
    pub duration: String,
}

impl RunRow {
    /// The row of `run`, its status as shown at `stale`.
    pub fn new(run: &RunRecord, stale: StaleCutoff) -> Self {
        let status = stale.shown(&run.status, run.started_at);
        Self {
            run_id: run.run_id.clone(),
            href: run_href(&run.run_id),
            time: fmt_time(run.started_at),
            shop: run.shop_id.clone(),
            request_id: run.request_id.clone(),
            status: status.to_owned(),
            status_class: status_class(status),
            model: opt(&run.model),
            pack: opt(&run.prompt_pack_version),
            success: num(run.success_count),
            failed: num(run.fail_count),
            timeout: num(run.timeout_count),
            duration: fmt_ms(run.total_duration_ms),
        }
    }
}

/// The runs table and its "Older runs" link (also what the live stream sends).
#[derive(Template)]
#[template(path = "runs_live.html")]
pub struct RunsTable {
    pub rows: Vec<RunRow>,
    /// The next page, from the last row shown; `None` on the last page.
    pub next_href: Option<String>,
}

impl RunsTable {
    /// The table of a page of runs read with `filters` (a query string).
    pub fn new(listed: &Listed<RunRecord>, filters: &str, stale: StaleCutoff) -> Self {
        Self {
            rows: listed.rows.iter().map(|r| RunRow::new(r, stale)).collect(),
            next_href: listed.next_href("/monitor", filters),
        }
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
pub struct RunsPage {
    pub nav: &'static str,
    pub auth: bool,
    pub shop: String,
    pub status: String,
    /// Each status and whether it is the one chosen.
    pub statuses: Vec<(&'static str, bool)>,
    pub model: String,
    pub pack: String,
    pub from: String,
    pub to: String,
    pub q: String,
    pub rows: Vec<RunRow>,
    pub next_href: Option<String>,
    /// SSE URL, on the first page only.
    pub live_url: Option<String>,
}

/// `/monitor`.
pub async fn page(
    State(state): State<AppState>,
    Params(query): Params<RunsParams>,
) -> Result<Response, AppError> {
    let stale = state.monitor.stale_cutoff();
    let listed = list(&state, &query.filter(stale)?).await?;
    let filters = query.query_string();
    let table = RunsTable::new(&listed, &filters, stale);
    Ok(render(&RunsPage {
        nav: "runs",
        auth: state.monitor.auth_required(),
        shop: field(&query.shop),
        status: field(&query.status),
        statuses: RUN_STATUSES
            .iter()
            .map(|s| (*s, query.status.as_deref() == Some(*s)))
            .collect(),
        model: field(&query.model),
        pack: field(&query.prompt_pack_version),
        from: field(&query.from),
        to: field(&query.to),
        q: field(&query.q),
        rows: table.rows,
        next_href: table.next_href,
        live_url: listed.live_url("/monitor/live/runs", &filters),
    }))
}

/// A run as `/api/v1` shows it (the same keys in the list and in a run's detail).
#[derive(Debug, Serialize)]
pub struct RunJson {
    pub run_id: String,
    pub shop_id: String,
    pub request_id: String,
    pub product_asset_id: Option<String>,
    pub room_session_id: Option<String>,
    pub prompt_pack_version: Option<String>,
    pub model: Option<String>,
    pub product_image_hash: Option<String>,
    pub product_image_width: Option<i64>,
    pub product_image_height: Option<i64>,
    pub product_image_format: Option<String>,
    pub product_image_bytes: Option<i64>,
    pub room_image_hash: Option<String>,
    pub room_image_width: Option<i64>,
    pub room_image_height: Option<i64>,
    pub room_image_format: Option<String>,
    pub room_image_bytes: Option<i64>,
    pub resolved_facts_hash: Option<String>,
    /// The resolved facts as the JSON the renderer sent (stored as `resolved_facts_json`).
    pub resolved_facts: Option<JsonBlob>,
    pub prompt_pack_hash: Option<String>,
    /// The prompt pack as the JSON the renderer sent (stored as `prompt_pack_json`).
    pub prompt_pack: Option<JsonBlob>,
    pub variant_count: Option<i64>,
    pub started_at: i64,
    pub started_event_id: Option<String>,
    /// As shown: `stale` for a run still `running` longer than
    /// `COLLECTOR_STALE_RUN_AFTER` after its start, else the stored status.
    pub status: String,
    /// As stored (`running` for a stale run): a late completion replaces it.
    pub stored_status: String,
    pub total_duration_ms: Option<i64>,
    pub success_count: Option<i64>,
    pub fail_count: Option<i64>,
    pub timeout_count: Option<i64>,
    pub completed_at: Option<i64>,
    pub completed_event_id: Option<String>,
}

/// Field by field: a new column reaches the API only when added here, and a renamed
/// one fails to compile here instead of renaming a key.
impl RunJson {
    /// `run`, its status as shown at `stale`.
    pub fn new(run: RunRecord, stale: StaleCutoff) -> Self {
        Self {
            status: stale.shown(&run.status, run.started_at).to_owned(),
            run_id: run.run_id,
            shop_id: run.shop_id,
            request_id: run.request_id,
            product_asset_id: run.product_asset_id,
            room_session_id: run.room_session_id,
            prompt_pack_version: run.prompt_pack_version,
            model: run.model,
            product_image_hash: run.product_image_hash,
            product_image_width: run.product_image_width,
            product_image_height: run.product_image_height,
            product_image_format: run.product_image_format,
            product_image_bytes: run.product_image_bytes,
            room_image_hash: run.room_image_hash,
            room_image_width: run.room_image_width,
            room_image_height: run.room_image_height,
            room_image_format: run.room_image_format,
            room_image_bytes: run.room_image_bytes,
            resolved_facts_hash: run.resolved_facts_hash,
            resolved_facts: JsonBlob::from_stored(run.resolved_facts_json),
            prompt_pack_hash: run.prompt_pack_hash,
            prompt_pack: JsonBlob::from_stored(run.prompt_pack_json),
            variant_count: run.variant_count,
            started_at: run.started_at,
            started_event_id: run.started_event_id,
            stored_status: run.status,
            total_duration_ms: run.total_duration_ms,
            success_count: run.success_count,
            fail_count: run.fail_count,
            timeout_count: run.timeout_count,
            completed_at: run.completed_at,
            completed_event_id: run.completed_event_id,
        }
    }
}

/// A page of runs: `{ runs, next_cursor }`; pass `next_cursor` back as `cursor`.
#[derive(Debug, Serialize)]
pub struct RunsJson {
    pub runs: Vec<RunJson>,
    /// `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `/api/v1/runs`.
pub async fn api(
    State(state): State<AppState>,
    Params(query): Params<RunsParams>,
) -> Result<Json<RunsJson>, AppError> {
    let stale = state.monitor.stale_cutoff();
    let listed = list(&state, &query.filter(stale)?).await?;
    Ok(Json(RunsJson {
        runs: listed
            .rows
            .into_iter()
            .map(|run| RunJson::new(run, stale))
            .collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// The first page of runs under the filters of a query, as the runs table with its
/// "Older runs" link; stale ones as of each read.
struct LiveRuns(RunsParams);

impl Fragment for LiveRuns {
    async fn render(&self, state: &AppState) -> Result<Option<(String, bool)>, AppError> {
        let stale = state.monitor.stale_cutoff();
        let mut filter = self.0.filter(stale)?;
        filter.before = None;
        let listed = list(state, &filter).await?;
        let table = RunsTable::new(&listed, &self.0.query_string(), stale);
        Ok(table.render().ok().map(|html| (html, true)))
    }
}

/// `/monitor/live/runs?<filters>`: the first page of runs as the runs table.
pub async fn live(
    State(state): State<AppState>,
    Params(query): Params<RunsParams>,
) -> Result<Response, AppError> {
    // Refuse a wrong filter now (400), not on every read of the stream.
    query.filter(state.monitor.stale_cutoff())?;
    Ok(live::open(state, LiveRuns(query)))
}
