//! HTML pages. Each handler reads through the store's monitor queries, turns rows into
//! [`super::views`] and renders an askama template (HTML-escaped).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use service_kit::now_ms;

use crate::http::{AppError, AppState};
use crate::store::EventRecord;

use super::charts;
use super::ledger::{DeadLetterRow, ProducerRow};
use super::params::{self, present, EventsParams, PageParams, RunsParams, StatsParams};
use super::views::{EventRow, RunRow, RunView};

/// Run statuses offered by the filter.
pub const RUN_STATUSES: [&str; 5] = ["running", "complete", "partial", "failed", "unknown(0)"];

/// Renders a template, or an opaque 500 (the cause logged).
pub fn render<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn text(value: &Option<String>) -> String {
    present(value).unwrap_or_default()
}

/// The events table's rows (also what the live stream sends).
#[derive(Template)]
#[template(path = "events_rows.html")]
pub struct EventsRows {
    pub rows: Vec<EventRow>,
}

impl EventsRows {
    /// The rows of a page of events, as the events list shows them.
    pub fn new(events: &[EventRecord]) -> Self {
        Self {
            rows: events
                .iter()
                .map(|e| EventRow::new(e, None, false))
                .collect(),
        }
    }
}

/// The runs table's rows (also what the live stream sends).
#[derive(Template)]
#[template(path = "runs_rows.html")]
pub struct RunsRows {
    pub rows: Vec<RunRow>,
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

pub async fn runs(
    State(state): State<AppState>,
    Query(query): Query<RunsParams>,
) -> Result<Response, AppError> {
    let filter = query.filter()?;
    let runs = state.store.monitor_runs(&filter).await?;
    let filters = query.query_string();
    let next_href = params::next_cursor(&runs, filter.limit, |r| {
        format!("{}:{}", r.started_at, r.run_id)
    })
    .map(|cursor| with_cursor("/monitor", &filters, &cursor));
    let live_url = filter
        .before
        .is_none()
        .then(|| join("/monitor/live/runs", &filters));
    Ok(render(&RunsPage {
        nav: "runs",
        auth: state.monitor.auth_required(),
        shop: text(&query.shop),
        status: text(&query.status),
        statuses: RUN_STATUSES
            .iter()
            .map(|s| (*s, query.status.as_deref() == Some(*s)))
            .collect(),
        model: text(&query.model),
        pack: text(&query.prompt_pack_version),
        from: text(&query.from),
        to: text(&query.to),
        q: text(&query.q),
        rows: runs.iter().map(RunRow::from).collect(),
        next_href,
        live_url,
    }))
}

fn join(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

fn with_cursor(path: &str, filters: &str, cursor: &str) -> String {
    let cursor = form_urlencoded::Serializer::new(String::new())
        .append_pair("cursor", cursor)
        .finish();
    if filters.is_empty() {
        format!("{path}?{cursor}")
    } else {
        format!("{path}?{filters}&{cursor}")
    }
}

/// A run's variants and timeline (also what its live stream sends).
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

pub async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = params::run_id(&id)?;
    let detail = state.store.run(id).await?.ok_or(AppError::NotFound)?;
    let run = RunView::new(&detail, state.monitor.image_base_url());
    let live_url = run.live.then(|| {
        format!(
            "/monitor/live/runs/{}",
            super::params::path_segment(&run.run.run_id)
        )
    });
    Ok(render(&RunPage {
        nav: "runs",
        auth: state.monitor.auth_required(),
        run,
        live_url,
    }))
}

#[derive(Template)]
#[template(path = "events.html")]
pub struct EventsPage {
    pub nav: &'static str,
    pub auth: bool,
    pub event_type: String,
    pub source: String,
    pub shop: String,
    pub request_id: String,
    pub from: String,
    pub to: String,
    pub rows: Vec<EventRow>,
    pub next_href: Option<String>,
    /// The first page follows new events (none on older pages).
    pub live_url: Option<String>,
}

pub async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsParams>,
) -> Result<Response, AppError> {
    let filter = query.filter()?;
    let events = state.store.monitor_events(&filter).await?;
    let filters = query.query_string();
    let next_href = params::next_cursor(&events, filter.limit, |e| {
        format!("{}:{}", e.occurred_at, e.event_id)
    })
    .map(|cursor| with_cursor("/monitor/events", &filters, &cursor));
    let live_url = filter
        .before
        .is_none()
        .then(|| join("/monitor/live/events", &filters));
    Ok(render(&EventsPage {
        nav: "events",
        auth: state.monitor.auth_required(),
        event_type: text(&query.event_type),
        source: text(&query.source),
        shop: text(&query.shop),
        request_id: text(&query.request_id),
        from: text(&query.from),
        to: text(&query.to),
        rows: EventsRows::new(&events).rows,
        next_href,
        live_url,
    }))
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
pub struct DeadLettersPage {
    pub nav: &'static str,
    pub auth: bool,
    pub rows: Vec<DeadLetterRow>,
    pub next_href: Option<String>,
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<PageParams>,
) -> Result<Response, AppError> {
    let (before, limit) = query.page()?;
    let dead = state.store.monitor_dead_letters(before, limit).await?;
    let filters = params::encode(&[("limit", &query.limit)]);
    let next_href = params::next_cursor(&dead, limit, |d| d.id.to_string())
        .map(|cursor| with_cursor("/monitor/dead-letters", &filters, &cursor));
    Ok(render(&DeadLettersPage {
        nav: "dead",
        auth: state.monitor.auth_required(),
        rows: dead.iter().map(DeadLetterRow::from).collect(),
        next_href,
    }))
}

#[derive(Template)]
#[template(path = "producers.html")]
pub struct ProducersPage {
    pub nav: &'static str,
    pub auth: bool,
    pub rows: Vec<ProducerRow>,
}

pub async fn producers(State(state): State<AppState>) -> Result<Response, AppError> {
    let producers = state.store.producers().await?;
    Ok(render(&ProducersPage {
        nav: "producers",
        auth: state.monitor.auth_required(),
        rows: producers.iter().map(ProducerRow::from).collect(),
    }))
}

/// One table row of the overview.
pub struct StatsLine {
    pub key: String,
    pub total: i64,
    pub success: String,
    pub failed: String,
    pub timeout: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
}

impl From<&crate::store::GroupStats> for StatsLine {
    fn from(g: &crate::store::GroupStats) -> Self {
        let ms = super::views::fmt_ms;
        Self {
            key: g.key.clone(),
            total: g.total,
            success: format!("{:.1}%", g.rate(g.success)),
            failed: format!("{:.1}%", g.rate(g.failed)),
            timeout: format!("{:.1}%", g.rate(g.timeout)),
            p50: ms(g.p50_ms),
            p95: ms(g.p95_ms),
            p99: ms(g.p99_ms),
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

pub async fn overview(
    State(state): State<AppState>,
    Query(query): Query<StatsParams>,
) -> Result<Response, AppError> {
    let (from, to, window) = query.window(now_ms())?;
    let stats = state.monitor.stats(state.store.as_ref(), from, to).await?;
    Ok(render(&OverviewPage {
        nav: "overview",
        auth: state.monitor.auth_required(),
        windows: params::WINDOWS
            .iter()
            .map(|(name, _)| (*name, *name == window))
            .collect(),
        window,
        from: super::views::fmt_time(from),
        to: super::views::fmt_time(to),
        by_model: stats.by_model.iter().map(StatsLine::from).collect(),
        by_pack: stats.by_prompt_pack.iter().map(StatsLine::from).collect(),
        model_rates: charts::rates(&stats.by_model, "Outcomes per model"),
        model_latency: charts::latency(&stats.by_model, "Latency per model"),
        pack_rates: charts::rates(&stats.by_prompt_pack, "Outcomes per prompt pack"),
        pack_latency: charts::latency(&stats.by_prompt_pack, "Latency per prompt pack"),
    }))
}
