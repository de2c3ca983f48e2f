//! Live updates by Server-Sent Events (the runs list, the events list, one run). A
//! stream re-reads its view every [`LIVE_POLL_INTERVAL`](super::LIVE_POLL_INTERVAL)
//! and sends the rendered fragment (already escaped, like the page) only when it
//! changed; `static/monitor.js` swaps it in. Polling the store, rather than a signal
//! from the ingest loop, also shows what other collectors sharing the database wrote.
//!
//! At most `MONITOR_MAX_LIVE_CLIENTS` streams are open
//! ([`DEFAULT_MAX_LIVE_CLIENTS`](super::DEFAULT_MAX_LIVE_CLIENTS); 503 past that).
//! Every stream ends when the collector shuts down, so graceful shutdown does not
//! wait on browsers; a run's stream also ends (with a `done` event, so the
//! browser does not reconnect) once the run and its variants are finished.

use std::collections::hash_map::DefaultHasher;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use crate::http::{AppError, AppState};
use crate::store::{EventFilter, RunFilter};

use super::pages::{EventsRows, RunLive, RunsRows};
use super::params::{EventsParams, RunsParams};
use super::views::{RunRow, RunView};

/// What a stream watches.
enum View {
    Runs(RunFilter),
    Run(String),
    Events(EventFilter),
}

struct Live {
    state: AppState,
    view: View,
    last: Option<u64>,
    finished: bool,
    first: bool,
    _permit: OwnedSemaphorePermit,
}

impl Live {
    /// The fragment now, and whether the view can still change.
    async fn render(&self) -> Result<Option<(String, bool)>, AppError> {
        match &self.view {
            View::Runs(filter) => {
                let runs = self.state.store.monitor_runs(filter).await?;
                let rows = RunsRows {
                    rows: runs.iter().map(RunRow::from).collect(),
                };
                Ok(rows.render().ok().map(|html| (html, true)))
            }
            View::Events(filter) => {
                let events = self.state.store.monitor_events(filter).await?;
                let rows = EventsRows::new(&events);
                Ok(rows.render().ok().map(|html| (html, true)))
            }
            View::Run(id) => {
                let Some(detail) = self.state.store.run(id).await? else {
                    return Ok(None);
                };
                let run = RunView::new(&detail, self.state.monitor.image_base_url());
                let live = run.live;
                Ok(RunLive { run }.render().ok().map(|html| (html, live)))
            }
        }
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        let shutdown = self.state.monitor.shutdown().clone();
        if self.finished {
            return None;
        }
        loop {
            if !self.first {
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(super::LIVE_POLL_INTERVAL) => {}
                }
            }
            self.first = false;
            if shutdown.is_cancelled() {
                return None;
            }
            match self.render().await {
                Ok(Some((html, live))) => {
                    let mut hasher = DefaultHasher::new();
                    html.hash(&mut hasher);
                    let hash = hasher.finish();
                    if !live {
                        // Send the final view (if new), then `done`.
                        self.finished = true;
                        let event = if self.last == Some(hash) {
                            Event::default().event("done").data("done")
                        } else {
                            Event::default().event("final").data(html)
                        };
                        return Some((Ok(event), self));
                    }
                    if self.last != Some(hash) {
                        self.last = Some(hash);
                        return Some((Ok(Event::default().event("fragment").data(html)), self));
                    }
                }
                Ok(None) => {}
                Err(AppError::Internal(err)) => {
                    tracing::warn!(error = %err, "live view read failed; retrying");
                }
                Err(_) => {}
            }
        }
    }
}

fn open(state: AppState, view: View) -> Response {
    let Ok(permit) = state.monitor.inner.sse_slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live views open; reload later",
        )
            .into_response();
    };
    let live = Live {
        state,
        view,
        last: None,
        finished: false,
        first: true,
        _permit: permit,
    };
    let stream = futures::stream::unfold(live, Live::next);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `/monitor/live/runs?<filters>`: the first page of runs as table rows.
pub async fn runs(
    State(state): State<AppState>,
    Query(query): Query<RunsParams>,
) -> Result<Response, AppError> {
    let mut filter = query.filter()?;
    filter.before = None;
    Ok(open(state, View::Runs(filter)))
}

/// `/monitor/live/events?<filters>`: the first page of events as table rows.
pub async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsParams>,
) -> Result<Response, AppError> {
    let mut filter = query.filter()?;
    filter.before = None;
    Ok(open(state, View::Events(filter)))
}

/// `/monitor/live/runs/{id}`: the run's status, variants and timeline until it ends.
pub async fn run(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(refused) = super::params::run_id(&id) {
        return refused.into_response();
    }
    open(state, View::Run(id))
}
