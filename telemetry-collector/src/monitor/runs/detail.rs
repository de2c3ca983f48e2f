//! One run: its metadata, variants and the timeline of its request
//! (`/monitor/runs/{id}`, `/api/v1/runs/{id}`, and a live stream while it runs). The
//! page and the API read it the same way (`read`).
//!
//! The live stream sends the whole run view (metadata with status and completion
//! time, variants, timeline), so no part of the page can contradict another. It ends
//! once the run and its variants are finished, or once the run is stale (no
//! completion `COLLECTOR_STALE_RUN_AFTER` after its start): a run whose renderer died
//! would otherwise hold a live slot and poll the database for ever. A completion that
//! comes after that shows on the next load.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use service_kit::now_ms;

use crate::http::{AppError, AppState};
use crate::store::stale::RUNNING;
use crate::store::{RunDetail, StaleCutoff, VariantRecord};

use super::super::events::{request_href, EventJson, EventRow};
use super::super::live::{self, Fragment};
use super::super::params::{self, path_segment, NoParams, Params};
use super::super::views::{fmt_ms, fmt_time, num, opt, pretty_json, render, status_class, When};
use super::timeline::Timeline;
use super::{Linked, RunJson, RunRow};

/// The run `id` from a path: 400 for a control character, 404 when not stored.
async fn read(state: &AppState, id: &str) -> Result<RunDetail, AppError> {
    let id = params::run_id(id)?;
    state.store.run(id).await?.ok_or(AppError::NotFound)
}

/// Characters of a hash shown before it is opened.
pub const HASH_SHOWN_CHARS: usize = 12;

/// A hash shown folded: its first [`HASH_SHOWN_CHARS`], the whole on opening.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hash {
    pub short: String,
    pub full: String,
}

impl Hash {
    pub fn new(full: &str) -> Self {
        let short: String = full.chars().take(HASH_SHOWN_CHARS).collect();
        let cut = if short.len() < full.len() { "…" } else { "" };
        Self {
            short: short + cut,
            full: full.to_owned(),
        }
    }

    /// Whether there is anything to show.
    pub fn is_empty(&self) -> bool {
        self.full.is_empty()
    }
}

/// A value of the run's metadata.
#[derive(Debug, Clone)]
pub enum Meta {
    Text(String),
    /// A link to the list filtered to it.
    Link(Linked),
    /// A hash, folded; with what follows it (an image's size and format).
    Hash(Hash, String),
}

/// A variant on the run page.
#[derive(Debug, Clone)]
pub struct VariantRow {
    pub variant_id: String,
    pub status: String,
    pub status_class: &'static str,
    pub latency: String,
    /// The runs that failed with this code.
    pub error_code: Linked,
    pub error_message: String,
    pub prompt_hash: Hash,
    pub image_key: String,
    pub image_hash: Hash,
    /// `{image base}/{key}`, each key segment percent-encoded.
    pub image_url: Option<String>,
}

impl VariantRow {
    pub fn new(variant: &VariantRecord, image_base_url: Option<&str>) -> Self {
        let key = opt(&variant.output_image_key);
        let image_url = match (image_base_url, key.is_empty()) {
            (Some(base), false) => {
                let path: Vec<String> = key.split('/').map(path_segment).collect();
                Some(format!("{base}/{}", path.join("/")))
            }
            _ => None,
        };
        // `unspecified` is the wire's "no error".
        let error_code = variant
            .error_code
            .clone()
            .filter(|code| code != "unspecified")
            .unwrap_or_default();
        Self {
            variant_id: variant.variant_id.clone(),
            status: variant.status.clone(),
            status_class: status_class(&variant.status),
            latency: fmt_ms(variant.latency_ms),
            error_code: Linked::runs("error_code", &error_code),
            error_message: opt(&variant.error_message),
            prompt_hash: Hash::new(&opt(&variant.final_prompt_hash)),
            image_key: key,
            image_hash: Hash::new(&opt(&variant.output_image_hash)),
            image_url,
        }
    }
}

/// A run's page: what happened first (status, counts, the variants' timeline and
/// table), then its metadata and the events of its request.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: RunRow,
    /// When it completed (`None` while it has not).
    pub completed: Option<When>,
    pub timeline: Timeline,
    /// Label and value of each metadata field that is set.
    pub meta: Vec<(&'static str, Meta)>,
    pub facts_json: String,
    pub pack_json: String,
    pub variants: Vec<VariantRow>,
    pub events: Vec<EventRow>,
    /// When stale: the time of the run's last event, after which nothing came.
    pub stale_since: Option<String>,
    /// Still changing: the page listens for updates.
    pub live: bool,
    /// The events page filtered to the run's request.
    pub events_href: String,
}

impl RunView {
    /// The view of `detail`, stale as of `stale`.
    pub fn new(detail: &RunDetail, image_base_url: Option<&str>, stale: StaleCutoff) -> Self {
        let now = now_ms();
        let r = &detail.run;
        let row = RunRow::new(r, stale, now);
        let text = |value: &Option<String>| value.clone().map(Meta::Text);
        let hash = |value: &Option<String>| {
            value
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(|h| Meta::Hash(Hash::new(h), String::new()))
        };
        let link = |name: &str, value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| Meta::Link(Linked::runs(name, v)))
        };
        let image = |hash: &Option<String>,
                     w: Option<i64>,
                     h: Option<i64>,
                     f: &Option<String>,
                     b: Option<i64>| {
            hash.as_ref().map(|hash| {
                Meta::Hash(
                    Hash::new(hash),
                    format!("{}x{} {}, {} bytes", num(w), num(h), opt(f), num(b)),
                )
            })
        };
        let fields: Vec<(&'static str, Option<Meta>)> = vec![
            ("Run id", Some(Meta::Text(r.run_id.clone()))),
            (
                "Request id",
                Some(Meta::Link(Linked::request(&r.request_id))),
            ),
            ("Shop", Some(Meta::Link(Linked::runs("shop", &r.shop_id)))),
            ("Status", Some(Meta::Text(row.status.clone()))),
            ("Started", Some(Meta::Text(fmt_time(r.started_at)))),
            (
                "Completed",
                r.completed_at.map(|at| Meta::Text(fmt_time(at))),
            ),
            (
                "Total duration",
                r.total_duration_ms.map(|d| Meta::Text(fmt_ms(Some(d)))),
            ),
            ("Model", link("model", &r.model)),
            (
                "Prompt pack version",
                link("prompt_pack_version", &r.prompt_pack_version),
            ),
            ("Prompt pack hash", hash(&r.prompt_pack_hash)),
            ("Resolved facts hash", hash(&r.resolved_facts_hash)),
            ("Product asset", text(&r.product_asset_id)),
            ("Room session", text(&r.room_session_id)),
            (
                "Product image",
                image(
                    &r.product_image_hash,
                    r.product_image_width,
                    r.product_image_height,
                    &r.product_image_format,
                    r.product_image_bytes,
                ),
            ),
            (
                "Room image",
                image(
                    &r.room_image_hash,
                    r.room_image_width,
                    r.room_image_height,
                    &r.room_image_format,
                    r.room_image_bytes,
                ),
            ),
            (
                "Variants planned",
                r.variant_count.map(|n| Meta::Text(n.to_string())),
            ),
        ];
        let origin = detail.events.first().map(|e| e.occurred_at);
        let unfinished = r.status == RUNNING || detail.variants.iter().any(|v| v.status == RUNNING);
        // Past the stale time nothing more is expected: a variant without its result
        // in a finished run (the result was lost) stops the listening too.
        let live = unfinished && !stale.is_stale(RUNNING, r.started_at);
        let last = last_event_at(detail);
        let stale_since = stale
            .is_stale(&r.status, r.started_at)
            .then(|| fmt_time(last));
        Self {
            run: row,
            completed: r.completed_at.map(|at| When::new(at, now)),
            timeline: Timeline::new(detail, stale, last),
            meta: fields
                .into_iter()
                .filter_map(|(label, value)| value.map(|v| (label, v)))
                .collect(),
            facts_json: pretty_json(&r.resolved_facts_json),
            pack_json: pretty_json(&r.prompt_pack_json),
            variants: detail
                .variants
                .iter()
                .map(|v| VariantRow::new(v, image_base_url))
                .collect(),
            events: detail
                .events
                .iter()
                .map(|e| EventRow::new(e, origin, true, now))
                .collect(),
            stale_since,
            live,
            events_href: request_href(&r.request_id),
        }
    }
}

/// When the last of the run's envelopes occurred: its start, its variants' starts and
/// results, and the events of its request (the detail holds at most
/// [`MAX_RUN_EVENTS`](crate::store::MAX_RUN_EVENTS) of those; the variants' times
/// cover the run's own).
fn last_event_at(detail: &RunDetail) -> i64 {
    let variants = detail
        .variants
        .iter()
        .flat_map(|v| [v.started_at, v.finished_at])
        .flatten();
    let events = detail.events.iter().map(|e| e.occurred_at);
    variants.chain(events).fold(detail.run.started_at, i64::max)
}

/// A run's metadata, variants and timeline (also what its live stream sends).
#[derive(Template)]
#[template(path = "run_live.html")]
pub struct RunLive {
    pub run: RunView,
}

#[derive(Template)]
#[template(path = "run.html")]
pub struct RunPage {
    pub nav: &'static str,
    pub auth: bool,
    pub run: RunView,
    pub live_url: Option<String>,
}

/// `/monitor/runs/{id}`.
pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: Params<NoParams>,
) -> Result<Response, AppError> {
    let detail = read(&state, &id).await?;
    let run = RunView::new(
        &detail,
        state.monitor.image_base_url(),
        state.monitor.stale_cutoff(),
    );
    let live_url = run
        .live
        .then(|| format!("/monitor/live/runs/{}", path_segment(&run.run.run_id)));
    Ok(render(&RunPage {
        nav: "runs",
        auth: state.monitor.auth_required(),
        run,
        live_url,
    }))
}

/// A variant as `/api/v1` shows it.
#[derive(Debug, Serialize)]
pub struct VariantJson {
    pub run_id: String,
    pub variant_id: String,
    pub shop_id: String,
    pub request_id: String,
    pub started_at: Option<i64>,
    pub started_event_id: Option<String>,
    pub status: String,
    pub final_prompt_hash: Option<String>,
    pub latency_ms: Option<i64>,
    pub output_image_key: Option<String>,
    pub output_image_hash: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub finished_at: Option<i64>,
    pub result_event_id: Option<String>,
}

impl From<VariantRecord> for VariantJson {
    fn from(variant: VariantRecord) -> Self {
        Self {
            run_id: variant.run_id,
            variant_id: variant.variant_id,
            shop_id: variant.shop_id,
            request_id: variant.request_id,
            started_at: variant.started_at,
            started_event_id: variant.started_event_id,
            status: variant.status,
            final_prompt_hash: variant.final_prompt_hash,
            latency_ms: variant.latency_ms,
            output_image_key: variant.output_image_key,
            output_image_hash: variant.output_image_hash,
            error_code: variant.error_code,
            error_message: variant.error_message,
            finished_at: variant.finished_at,
            result_event_id: variant.result_event_id,
        }
    }
}

/// A run with its variants and the events of its request: `{ run, variants, events }`.
#[derive(Debug, Serialize)]
pub struct RunDetailJson {
    pub run: RunJson,
    pub variants: Vec<VariantJson>,
    pub events: Vec<EventJson>,
}

impl RunDetailJson {
    /// `detail`, the run's status as shown at `stale`.
    pub fn new(detail: RunDetail, stale: StaleCutoff) -> Self {
        Self {
            run: RunJson::new(detail.run, stale),
            variants: detail.variants.into_iter().map(VariantJson::from).collect(),
            events: detail.events.into_iter().map(EventJson::from).collect(),
        }
    }
}

/// `/api/v1/runs/{id}`.
pub async fn api(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: Params<NoParams>,
) -> Result<Json<RunDetailJson>, AppError> {
    let detail = read(&state, &id).await?;
    Ok(Json(RunDetailJson::new(
        detail,
        state.monitor.stale_cutoff(),
    )))
}

/// A run's whole view until the run and its variants are finished or it is stale.
struct LiveRun(String);

impl Fragment for LiveRun {
    async fn render(&self, state: &AppState) -> Result<Option<(String, bool)>, AppError> {
        let Some(detail) = state.store.run(&self.0).await? else {
            return Ok(None);
        };
        let run = RunView::new(
            &detail,
            state.monitor.image_base_url(),
            state.monitor.stale_cutoff(),
        );
        let live = run.live;
        Ok(RunLive { run }.render().ok().map(|html| (html, live)))
    }
}

/// `/monitor/live/runs/{id}`: the run's view until it ends or is stale.
pub async fn live(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: Params<NoParams>,
) -> Response {
    if let Err(refused) = params::run_id(&id) {
        return refused.into_response();
    }
    live::open(state, LiveRun(id))
}
