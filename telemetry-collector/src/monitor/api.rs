//! `/api/v1/...`: the monitor's data as JSON, with the pages' filters and cursors.
//! A list answers `{ <items>, next_cursor }`; pass `next_cursor` back as `cursor`.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Serialize;
use service_kit::now_ms;

use crate::http::{AppError, AppState};
use crate::store::{EventRecord, ProducerRecord, RunDetail, RunRecord, Stats};

use super::ledger::{ledger_problem, preview};
use super::params::{self, EventsParams, PageParams, RunsParams, StatsParams};

/// A page of runs.
#[derive(Debug, Serialize)]
pub struct RunsPage {
    pub runs: Vec<RunRecord>,
    /// Absent on the last page.
    pub next_cursor: Option<String>,
}

pub async fn runs(
    State(state): State<AppState>,
    Query(query): Query<RunsParams>,
) -> Result<Json<RunsPage>, AppError> {
    let filter = query.filter()?;
    let runs = state.store.monitor_runs(&filter).await?;
    let next_cursor = params::next_cursor(&runs, filter.limit, |r| {
        format!("{}:{}", r.started_at, r.run_id)
    });
    Ok(Json(RunsPage { runs, next_cursor }))
}

pub async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, AppError> {
    let id = params::run_id(&id)?;
    Ok(Json(state.store.run(id).await?.ok_or(AppError::NotFound)?))
}

/// A page of events.
#[derive(Debug, Serialize)]
pub struct EventsPage {
    pub events: Vec<EventRecord>,
    pub next_cursor: Option<String>,
}

pub async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsParams>,
) -> Result<Json<EventsPage>, AppError> {
    let filter = query.filter()?;
    let events = state.store.monitor_events(&filter).await?;
    let next_cursor = params::next_cursor(&events, filter.limit, |e| {
        format!("{}:{}", e.occurred_at, e.event_id)
    });
    Ok(Json(EventsPage {
        events,
        next_cursor,
    }))
}

/// A dead letter with a preview of its bytes (the bytes themselves are not sent).
#[derive(Debug, Serialize)]
pub struct DeadLetterJson {
    pub id: i64,
    pub stream: String,
    pub stream_seq: i64,
    pub subject: String,
    pub reason: String,
    pub received_at: i64,
    pub size: usize,
    pub preview_hex: String,
    pub preview_text: String,
}

/// A page of dead letters, newest first.
#[derive(Debug, Serialize)]
pub struct DeadLettersPage {
    pub dead_letters: Vec<DeadLetterJson>,
    pub next_cursor: Option<String>,
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<PageParams>,
) -> Result<Json<DeadLettersPage>, AppError> {
    let (before, limit) = query.page()?;
    let rows = state.store.monitor_dead_letters(before, limit).await?;
    let next_cursor = params::next_cursor(&rows, limit, |d| d.id.to_string());
    let dead_letters = rows
        .into_iter()
        .map(|d| {
            let (preview_hex, preview_text) = preview(&d.raw);
            DeadLetterJson {
                id: d.id,
                size: d.raw.len(),
                stream: d.stream,
                stream_seq: d.stream_seq,
                subject: d.subject,
                reason: d.reason,
                received_at: d.received_at,
                preview_hex,
                preview_text,
            }
        })
        .collect();
    Ok(Json(DeadLettersPage {
        dead_letters,
        next_cursor,
    }))
}

/// A producer's ledger and whether it adds up.
#[derive(Debug, Serialize)]
pub struct ProducerJson {
    #[serde(flatten)]
    pub ledger: ProducerRecord,
    /// Why the counts do not add up; absent when they do.
    pub problem: Option<String>,
}

pub async fn producers(State(state): State<AppState>) -> Result<Json<Vec<ProducerJson>>, AppError> {
    let rows = state.store.producers().await?;
    Ok(Json(
        rows.into_iter()
            .map(|ledger| {
                let problem = Some(ledger_problem(&ledger)).filter(|p| !p.is_empty());
                ProducerJson { ledger, problem }
            })
            .collect(),
    ))
}

pub async fn stats(
    State(state): State<AppState>,
    Query(query): Query<StatsParams>,
) -> Result<Json<Stats>, AppError> {
    let (from, to, _) = query.window(now_ms())?;
    Ok(Json(
        state.monitor.stats(state.store.as_ref(), from, to).await?,
    ))
}
