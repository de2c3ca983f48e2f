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
pub mod timeline;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use service_kit::now_ms;

use crate::http::{AppError, AppState};
use crate::store::{RunFilter, RunOrder, RunRecord, StaleCutoff};

use super::events::request_href;
use super::json_blob::JsonBlob;
use super::live::{self, Fragment};
use super::params::{self, bad, encode, parse_cursor, parse_time, present, Listed, Params};
use super::views::{
    field, fmt_ms, num, opt, picker_value, render, run_href, runs_href, status_class, When,
};

/// Run statuses offered by the filter (`stale` is derived, see the module doc;
/// `interrupted`: the producer stopped before the run finished). A status the wire
/// did not know (`unknown(n)`) is shown on its run, and can be asked for, but is not
/// offered.
pub const RUN_STATUSES: [&str; 6] = [
    "running",
    "stale",
    "complete",
    "partial",
    "failed",
    "interrupted",
];

pub use super::params::{QuickRange, RANGES};

/// The orders of the runs list: `sort=started` (newest first, the default) or
/// `sort=duration` (longest first; only runs with a duration).
pub const SORTS: [(&str, &str); 2] = [("started", "newest first"), ("duration", "longest first")];

/// Query string of the runs list (page, API and live stream); any other name is a 400
/// ([`Params`]).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RunsParams {
    /// A shop id's prefix, any case.
    pub shop: Option<String>,
    /// Any case.
    pub status: Option<String>,
    /// Any case.
    pub model: Option<String>,
    pub prompt_pack_version: Option<String>,
    /// Runs with a variant that ended with this error code.
    pub error_code: Option<String>,
    pub min_duration_ms: Option<String>,
    pub max_duration_ms: Option<String>,
    /// A quick range: `15m`, `1h`, `6h`, `24h`, `7d`, `30d` before `to` (or now); with
    /// `from` too, both bounds apply.
    pub range: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// A run id or request id.
    pub q: Option<String>,
    /// `started` (default) or `duration`.
    pub sort: Option<String>,
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A duration bound: whole milliseconds, 0 or more.
fn duration(name: &str, value: &Option<String>) -> Result<Option<i64>, AppError> {
    let Some(text) = params::text(name, value)? else {
        return Ok(None);
    };
    match text.parse::<i64>() {
        Ok(ms) if ms >= 0 => Ok(Some(ms)),
        _ => Err(bad(format!(
            "{name} must be a whole number of milliseconds, 0 or more"
        ))),
    }
}

impl RunsParams {
    /// The page's order.
    pub fn order(&self) -> Result<RunOrder, AppError> {
        match present(&self.sort).as_deref() {
            None | Some("started") => Ok(RunOrder::Started),
            Some("duration") => Ok(RunOrder::Duration),
            Some(_) => Err(bad("sort must be started or duration")),
        }
    }

    /// `[from, to)` of the page: `from`/`to` as given, the quick range before `to` (or
    /// before `now`) narrowing `from`.
    pub fn window(&self, now: i64) -> Result<(Option<i64>, Option<i64>), AppError> {
        params::quick_window(&self.range, &self.from, &self.to, now)
    }

    /// The store's filter, runs still `running` before `stale` being stale.
    pub fn filter(&self, stale: StaleCutoff) -> Result<RunFilter, AppError> {
        let order = self.order()?;
        let (from, to) = self.window(now_ms())?;
        let min_duration_ms = duration("min_duration_ms", &self.min_duration_ms)?;
        let max_duration_ms = duration("max_duration_ms", &self.max_duration_ms)?;
        if let (Some(min), Some(max)) = (min_duration_ms, max_duration_ms) {
            if min > max {
                return Err(bad("min_duration_ms must not be above max_duration_ms"));
            }
        }
        let before = match order {
            RunOrder::Started => parse_cursor(&self.cursor)?,
            // `d{duration}:{run_id}`: a cursor of the other order is refused.
            RunOrder::Duration => match params::text("cursor", &self.cursor)? {
                None => None,
                Some(cursor) => parse_cursor(&Some(
                    cursor
                        .strip_prefix('d')
                        .ok_or_else(|| bad(params::BAD_CURSOR))?
                        .to_owned(),
                ))?,
            },
        };
        Ok(RunFilter {
            shop_id: params::text("shop", &self.shop)?,
            status: params::text("status", &self.status)?,
            stale_before: Some(stale),
            model: params::text("model", &self.model)?,
            prompt_pack_version: params::text("prompt_pack_version", &self.prompt_pack_version)?,
            error_code: params::text("error_code", &self.error_code)?,
            min_duration_ms,
            max_duration_ms,
            from,
            to,
            text: params::text("q", &self.q)?,
            order,
            before,
            limit: params::limit(&self.limit)?,
        })
    }

    /// The filters (not the cursor) as a query string.
    pub fn query_string(&self) -> String {
        encode(&self.pairs(true))
    }

    /// Every parameter but the cursor; without the time ones unless `times`.
    fn pairs(&self, times: bool) -> Vec<(&'static str, &Option<String>)> {
        let mut pairs = vec![
            ("shop", &self.shop),
            ("status", &self.status),
            ("model", &self.model),
            ("prompt_pack_version", &self.prompt_pack_version),
            ("error_code", &self.error_code),
            ("min_duration_ms", &self.min_duration_ms),
            ("max_duration_ms", &self.max_duration_ms),
        ];
        if times {
            pairs.extend([
                ("range", &self.range),
                ("from", &self.from),
                ("to", &self.to),
            ]);
        }
        pairs.extend([("q", &self.q), ("sort", &self.sort), ("limit", &self.limit)]);
        pairs
    }

    /// No filter is set (the order and page size aside): the whole history.
    pub fn unfiltered(&self) -> bool {
        self.pairs(true)
            .iter()
            .filter(|(name, _)| !matches!(*name, "sort" | "limit"))
            .all(|(_, value)| present(value).is_none())
    }

    /// The quick ranges as links keeping the other filters (`any`: no time filter),
    /// each with whether it is the one shown.
    pub fn range_links(&self) -> Vec<QuickRange> {
        let others = encode(&self.pairs(false));
        params::range_links("/monitor", &others, &self.range, &self.from, &self.to)
    }
}

/// A runs page's cursor of a row, in the page's order.
fn cursor_of(order: RunOrder) -> impl Fn(&RunRecord) -> String {
    move |r| match order {
        RunOrder::Started => format!("{}:{}", r.started_at, r.run_id),
        RunOrder::Duration => format!("d{}:{}", r.total_duration_ms.unwrap_or(0), r.run_id),
    }
}

/// The page of runs `filter` asks for.
async fn list(state: &AppState, filter: &RunFilter) -> Result<Listed<RunRecord>, AppError> {
    let runs = state.store.monitor_runs(filter).await?;
    Ok(Listed::new(
        runs,
        filter.limit,
        filter.before.is_none(),
        cursor_of(filter.order),
    ))
}

/// A value shown as a link to the runs (or events) list filtered to it; no link
/// when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linked {
    pub text: String,
    pub href: Option<String>,
}

impl Linked {
    /// `value` linking to the runs list with `name={value}`.
    pub fn runs(name: &str, value: &str) -> Self {
        Self {
            text: value.to_owned(),
            href: (!value.is_empty()).then(|| runs_href(name, value)),
        }
    }

    /// A request id linking to its events.
    pub fn request(request_id: &str) -> Self {
        Self {
            text: request_id.to_owned(),
            href: (!request_id.is_empty()).then(|| request_href(request_id)),
        }
    }
}

/// A run in the list (and the head of its own page).
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: String,
    pub href: String,
    pub started: When,
    pub shop: Linked,
    pub request: Linked,
    pub status: String,
    pub status_class: &'static str,
    pub model: Linked,
    pub pack: Linked,
    pub success: String,
    pub failed: String,
    pub timeout: String,
    pub duration: String,
}

impl RunRow {
    /// The row of `run`, its status as shown at `stale`, its time relative to `now`.
    pub fn new(run: &RunRecord, stale: StaleCutoff, now: i64) -> Self {
        let status = stale.shown(&run.status, run.started_at);
        Self {
            run_id: run.run_id.clone(),
            href: run_href(&run.run_id),
            started: When::new(run.started_at, now),
            shop: Linked::runs("shop", &run.shop_id),
            request: Linked::request(&run.request_id),
            status: status.to_owned(),
            status_class: status_class(status),
            model: Linked::runs("model", &opt(&run.model)),
            pack: Linked::runs("prompt_pack_version", &opt(&run.prompt_pack_version)),
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
    /// "Older runs" or "Shorter runs".
    pub next_label: &'static str,
    /// Nothing stored yet: the page says how to send the first render.
    pub first_render_help: bool,
}

impl RunsTable {
    /// The table of a page of runs read with `query`.
    pub fn new(
        listed: &Listed<RunRecord>,
        query: &RunsParams,
        stale: StaleCutoff,
        now: i64,
    ) -> Self {
        let duration = query.order().ok() == Some(RunOrder::Duration);
        Self {
            rows: listed
                .rows
                .iter()
                .map(|r| RunRow::new(r, stale, now))
                .collect(),
            next_href: listed.next_href("/monitor", &query.query_string()),
            next_label: if duration {
                "Shorter runs →"
            } else {
                "Older runs →"
            },
            first_render_help: listed.rows.is_empty() && listed.first && query.unfiltered(),
        }
    }
}

/// A choice of a `<select>`: value, label, chosen.
pub type Choice = (&'static str, &'static str, bool);

#[derive(Template)]
#[template(path = "runs.html")]
pub struct RunsPage {
    pub nav: &'static str,
    pub auth: bool,
    pub shop: String,
    /// Each status and whether it is the one chosen.
    pub statuses: Vec<(&'static str, bool)>,
    pub model: String,
    pub pack: String,
    pub error_code: String,
    pub min_duration_ms: String,
    pub max_duration_ms: String,
    /// The quick range shown (`1h`), empty when none.
    pub range: String,
    pub ranges: Vec<QuickRange>,
    /// `from` / `to` as the date-time picker shows them (UTC, `2026-11-29T13:45:07`).
    pub from: String,
    pub to: String,
    pub q: String,
    pub sorts: Vec<Choice>,
    /// The table's ([`RunsTable`]'s fields, which `runs_live.html` reads).
    pub rows: Vec<RunRow>,
    pub next_href: Option<String>,
    pub next_label: &'static str,
    pub first_render_help: bool,
    /// SSE URL, on the first page only.
    pub live_url: Option<String>,
}

/// `/monitor`.
pub async fn page(
    State(state): State<AppState>,
    Params(query): Params<RunsParams>,
) -> Result<Response, AppError> {
    let stale = state.monitor.stale_cutoff();
    let filter = query.filter(stale)?;
    let listed = list(&state, &filter).await?;
    let filters = query.query_string();
    let status = present(&query.status).map(|s| s.to_ascii_lowercase());
    let range = present(&query.range)
        .map(|r| r.to_ascii_lowercase())
        .unwrap_or_default();
    // A quick range's start moves with the clock: the picker shows only a chosen one.
    let from = parse_time("from", &query.from)?;
    let table = RunsTable::new(&listed, &query, stale, now_ms());
    Ok(render(&RunsPage {
        nav: "runs",
        auth: state.monitor.auth_required(),
        shop: field(&query.shop),
        statuses: RUN_STATUSES
            .iter()
            .map(|s| (*s, status.as_deref() == Some(*s)))
            .collect(),
        model: field(&query.model),
        pack: field(&query.prompt_pack_version),
        error_code: field(&query.error_code),
        min_duration_ms: field(&query.min_duration_ms),
        max_duration_ms: field(&query.max_duration_ms),
        ranges: query.range_links(),
        range,
        from: picker_value(from),
        to: picker_value(filter.to),
        q: field(&query.q),
        sorts: SORTS
            .iter()
            .map(|(value, label)| {
                let duration = *value == "duration";
                (
                    *value,
                    *label,
                    duration == (filter.order == RunOrder::Duration),
                )
            })
            .collect(),
        rows: table.rows,
        next_href: table.next_href,
        next_label: table.next_label,
        first_render_help: table.first_render_help,
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
        let table = RunsTable::new(&listed, &self.0, stale, now_ms());
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
