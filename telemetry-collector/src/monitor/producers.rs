//! Producers: each producer's loss ledger (`/monitor/producers`, `/api/v1/producers`)
//! from its last stats, beside what the collector stored from it, and why a ledger
//! does not add up ([`ledger_problem`]).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::Serialize;

use crate::http::{AppError, AppState};
use crate::store::ProducerRecord;

use super::json_blob::JsonBlob;
use super::params::{NoParams, Params};
use super::views::{fmt_time, num, opt, render};

/// Why a ledger does not add up: events dropped, or a producer that stopped
/// (final stats) with events left unpublished, or whose published count differs from
/// what the collector stored from it. Empty when it adds up.
pub fn ledger_problem(p: &ProducerRecord) -> String {
    let mut problems = Vec::new();
    if let Some(dropped) = p.dropped.filter(|n| *n > 0) {
        problems.push(format!("{dropped} dropped"));
    }
    if p.is_final == Some(true) {
        if let Some(left) = p.queue_depth.filter(|n| *n > 0) {
            problems.push(format!("{left} left unpublished"));
        }
        if let Some(published) = p.published {
            if published != p.stored_events {
                problems.push(format!(
                    "published {published} but {} stored",
                    p.stored_events
                ));
            }
        }
    }
    problems.join("; ")
}

/// A producer's ledger, with why its counts look wrong (if they do).
#[derive(Debug, Clone)]
pub struct ProducerRow {
    pub producer: String,
    pub service: String,
    pub emitted: String,
    pub published: String,
    pub dropped: String,
    pub dropped_by_reason: String,
    pub publish_failures: String,
    pub queue_depth: String,
    pub stored: i64,
    pub last_seen: String,
    pub is_final: bool,
    /// Empty when the counts add up.
    pub problem: String,
}

impl From<&ProducerRecord> for ProducerRow {
    fn from(p: &ProducerRecord) -> Self {
        Self {
            producer: p.producer.clone(),
            service: opt(&p.service),
            emitted: num(p.emitted),
            published: num(p.published),
            dropped: num(p.dropped),
            dropped_by_reason: opt(&p.dropped_by_reason),
            publish_failures: num(p.publish_failures),
            queue_depth: num(p.queue_depth),
            stored: p.stored_events,
            last_seen: fmt_time(p.last_seen_at),
            is_final: p.is_final == Some(true),
            problem: ledger_problem(p),
        }
    }
}

#[derive(Template)]
#[template(path = "producers.html")]
pub struct ProducersPage {
    pub nav: &'static str,
    pub auth: bool,
    pub rows: Vec<ProducerRow>,
}

/// `/monitor/producers`.
pub async fn page(
    State(state): State<AppState>,
    _: Params<NoParams>,
) -> Result<Response, AppError> {
    let producers = state.store.producers().await?;
    Ok(render(&ProducersPage {
        nav: "producers",
        auth: state.monitor.auth_required(),
        rows: producers.iter().map(ProducerRow::from).collect(),
    }))
}

/// A producer's ledger as `/api/v1` shows it, and whether it adds up.
#[derive(Debug, Serialize)]
pub struct ProducerJson {
    pub producer: String,
    pub service: Option<String>,
    pub emitted: Option<i64>,
    pub published: Option<i64>,
    pub dropped: Option<i64>,
    /// Drops per reason as a JSON object (`{"queue_full": 3}`).
    pub dropped_by_reason: Option<JsonBlob>,
    pub publish_failures: Option<i64>,
    pub queue_depth: Option<i64>,
    pub started_at: Option<i64>,
    pub is_final: Option<bool>,
    pub stats_event_id: Option<String>,
    pub last_seen_at: i64,
    pub stored_events: i64,
    /// Why the counts do not add up; `null` when they do.
    pub problem: Option<String>,
}

impl From<ProducerRecord> for ProducerJson {
    fn from(ledger: ProducerRecord) -> Self {
        let problem = Some(ledger_problem(&ledger)).filter(|p| !p.is_empty());
        Self {
            producer: ledger.producer,
            service: ledger.service,
            emitted: ledger.emitted,
            published: ledger.published,
            dropped: ledger.dropped,
            dropped_by_reason: JsonBlob::from_stored(ledger.dropped_by_reason),
            publish_failures: ledger.publish_failures,
            queue_depth: ledger.queue_depth,
            started_at: ledger.started_at,
            is_final: ledger.is_final,
            stats_event_id: ledger.stats_event_id,
            last_seen_at: ledger.last_seen_at,
            stored_events: ledger.stored_events,
            problem,
        }
    }
}

/// `/api/v1/producers`: every producer's ledger (one list, no pages).
pub async fn api(
    State(state): State<AppState>,
    _: Params<NoParams>,
) -> Result<Json<Vec<ProducerJson>>, AppError> {
    let producers = state.store.producers().await?;
    Ok(Json(
        producers.into_iter().map(ProducerJson::from).collect(),
    ))
}
