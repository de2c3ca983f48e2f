//! Live updates by Server-Sent Events, for the resources that follow changes (the
//! runs list, the events list, one run); each says what its stream shows by
//! implementing [`Fragment`]. A stream re-reads its view every
//! [`LIVE_POLL_INTERVAL`](super::LIVE_POLL_INTERVAL) and sends the rendered fragment
//! (already escaped, like the page) only when it changed; `static/monitor.js` swaps
//! it in. Polling the store, rather than a signal from the ingest loop, also shows
//! what other collectors sharing the database wrote.
//!
//! At most `MONITOR_MAX_LIVE_CLIENTS` streams are open
//! ([`DEFAULT_MAX_LIVE_CLIENTS`](super::DEFAULT_MAX_LIVE_CLIENTS); 503 past that).
//! Every stream ends when the collector shuts down, so graceful shutdown does not
//! wait on browsers; a run's stream also ends (with a `done` event, so the
//! browser does not reconnect) once the run and its variants are finished.

use std::collections::hash_map::DefaultHasher;
use std::convert::Infallible;
use std::future::Future;
use std::hash::{Hash, Hasher};

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use crate::http::{AppError, AppState};

/// What a live stream shows: a fragment of its page, rendered (escaped) like the page.
pub trait Fragment: Send + Sync + 'static {
    /// The fragment now and whether it can still change; `None` while there is
    /// nothing to show (a run not stored yet).
    fn render(
        &self,
        state: &AppState,
    ) -> impl Future<Output = Result<Option<(String, bool)>, AppError>> + Send;
}

struct Live<F> {
    state: AppState,
    view: F,
    last: Option<u64>,
    finished: bool,
    first: bool,
    _permit: OwnedSemaphorePermit,
}

impl<F: Fragment> Live<F> {
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
            match self.view.render(&self.state).await {
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

/// An SSE stream of `view`, or 503 when `MONITOR_MAX_LIVE_CLIENTS` are open.
pub fn open<F: Fragment>(state: AppState, view: F) -> Response {
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
