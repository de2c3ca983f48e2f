//! The health strip on every monitor page (`/monitor/health`, a fragment every page
//! loads and refreshes; `/api/v1/health`): is the pipeline healthy now? Eight signals,
//! each green, amber or red by the rules below, the strip as bad as its worst.
//!
//! | signal | amber | red |
//! |---|---|---|
//! | last run | none for [`IDLE_AMBER`] though runs came in the last 24 h | — |
//! | runs / min | — (the rate over the last 15 min, for reading) | — |
//! | failure rate, 15 min against 24 h | [`FAILURE_AMBER_POINTS`] points above the 24 h rate | [`FAILURE_RED_POINTS`] points above and at least twice it |
//! | ingest lag | oldest unacked message older than [`LAG_AMBER`] | older than [`LAG_RED`] |
//! | broker | — | not connected, or the consumer not attached |
//! | database | — | unreachable or refusing writes |
//! | producers | one seen in the last 24 h is silent or its ledger does not add up | — |
//! | dead letters, 24 h | any | — |
//!
//! The failure rate is judged only with at least [`FAILURE_MIN_VARIANTS`] finished
//! variants in the last 15 minutes: three failures of four say little.
//!
//! What it costs: the 15-minute figures and the counts are small indexed reads; the
//! 24-hour failure rate is the overview's query, kept for [`BASELINE_TTL`] and
//! refreshed by one request at a time, so many open pages cost one query a minute.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use service_kit::now_ms;

use crate::http::{AppError, AppState};
use crate::store::{Overview, OverviewFilter};

use super::params::{NoParams, Params};
use super::views::{fmt_age, render};

/// The recent window the strip reads: runs per minute, the current failure rate.
pub const RECENT: Duration = Duration::from_secs(15 * 60);
/// The baseline window: the usual failure rate, dead letters, producers.
pub const BASELINE: Duration = Duration::from_secs(24 * 3600);
/// How long the 24-hour failure rate is reused before it is read again.
pub const BASELINE_TTL: Duration = Duration::from_secs(60);
/// No run for this long (while there were runs in the last 24 h) is amber: the
/// storefront, the renderer or the pipeline may have stopped.
pub const IDLE_AMBER: Duration = Duration::from_secs(15 * 60);
/// Ingest lag (the oldest unacked message's age) that is amber: a minute behind.
pub const LAG_AMBER: Duration = Duration::from_secs(60);
/// Ingest lag that is red: five minutes behind, the monitor is showing the past.
pub const LAG_RED: Duration = Duration::from_secs(5 * 60);
/// Fewest finished variants in the last 15 minutes for the failure rate to be judged.
pub const FAILURE_MIN_VARIANTS: i64 = 10;
/// Percentage points above the 24-hour failure rate that make the recent one amber.
pub const FAILURE_AMBER_POINTS: f64 = 10.0;
/// Percentage points above the 24-hour rate that make it red, when it is also at
/// least twice the 24-hour rate (so a model that always fails half the time is not
/// an outage).
pub const FAILURE_RED_POINTS: f64 = 25.0;

/// Green, amber or red; ordered so the strip takes the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Green,
    Amber,
    Red,
}

impl Level {
    /// The word, also the CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Green => "green",
            Level::Amber => "amber",
            Level::Red => "red",
        }
    }
}

/// One signal of the strip.
#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    /// Machine name (`failure_rate`, `ingest_lag`, ...).
    pub name: &'static str,
    /// Its label on the page.
    pub label: &'static str,
    pub level: Level,
    /// The figure, as shown (`12.5% vs 3.1%`).
    pub value: String,
    /// Why it has its level, in words; empty when green and obvious.
    pub detail: String,
    /// Where to look next.
    pub link: Option<String>,
}

/// The strip: the worst level and every signal.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub level: Level,
    /// When it was read (unix ms).
    pub checked_at: i64,
    pub signals: Vec<Signal>,
}

/// The 24-hour failure rate, kept for [`BASELINE_TTL`].
#[derive(Default)]
pub(crate) struct BaselineCache {
    kept: Mutex<Option<(Instant, Rates)>>,
    /// One refresh at a time; the others use the kept value (or wait for the first).
    refresh: tokio::sync::Mutex<()>,
}

/// Finished and failed (failed + timed out) variants of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub finished: i64,
    pub failed: i64,
}

impl Rates {
    fn of(overview: &Overview) -> Self {
        overview
            .by_model
            .iter()
            .fold(Rates::default(), |rates, group| Rates {
                finished: rates.finished + group.success + group.failed + group.timeout,
                failed: rates.failed + group.failed + group.timeout,
            })
    }

    /// The failure rate in percent, `None` without finished variants.
    pub fn percent(self) -> Option<f64> {
        (self.finished > 0).then(|| self.failed as f64 * 100.0 / self.finished as f64)
    }
}

/// The level of the recent failure rate against the baseline.
pub fn failure_level(recent: Rates, baseline: Rates) -> Level {
    let (Some(now), Some(usual)) = (recent.percent(), baseline.percent()) else {
        return Level::Green;
    };
    if recent.finished < FAILURE_MIN_VARIANTS {
        return Level::Green;
    }
    if now >= usual + FAILURE_RED_POINTS && now >= usual * 2.0 {
        Level::Red
    } else if now >= usual + FAILURE_AMBER_POINTS {
        Level::Amber
    } else {
        Level::Green
    }
}

/// The level of the ingest lag (the oldest unacked message's age).
pub fn lag_level(oldest_unacked: Option<Duration>) -> Level {
    match oldest_unacked {
        Some(age) if age >= LAG_RED => Level::Red,
        Some(age) if age >= LAG_AMBER => Level::Amber,
        _ => Level::Green,
    }
}

impl BaselineCache {
    /// The 24-hour rates at `now`, read again when older than [`BASELINE_TTL`].
    async fn rates(&self, state: &AppState, now: i64) -> Result<Rates, AppError> {
        if let Some(rates) = self.fresh() {
            return Ok(rates);
        }
        let _one = self.refresh.lock().await;
        if let Some(rates) = self.fresh() {
            return Ok(rates);
        }
        let from = now - BASELINE.as_millis() as i64;
        let filter = OverviewFilter {
            from,
            to: now,
            model: None,
        };
        let stale = state.monitor.stale_cutoff();
        let overview = state
            .monitor
            .aggregate(state.store.monitor_stats(&filter, stale))
            .await?;
        let rates = Rates::of(&overview);
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), rates));
        Ok(rates)
    }

    fn fresh(&self) -> Option<Rates> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.filter(|(at, _)| at.elapsed() < BASELINE_TTL)
            .map(|(_, rates)| rates)
    }
}

/// Reads every signal now.
pub async fn read(state: &AppState) -> Result<Health, AppError> {
    let now = now_ms();
    let recent_from = now - RECENT.as_millis() as i64;
    let day_from = now - BASELINE.as_millis() as i64;
    let counts = state.store.health_counts(recent_from, day_from).await?;
    let recent = Rates::of(
        &state
            .store
            .monitor_stats(
                &OverviewFilter {
                    from: recent_from,
                    to: now,
                    model: None,
                },
                state.monitor.stale_cutoff(),
            )
            .await?,
    );
    let baseline = state.monitor.health_baseline().rates(state, now).await?;
    let mut signals = Vec::with_capacity(8);

    let (value, level, detail) = match counts.last_run_at {
        None => ("none yet".to_owned(), Level::Green, String::new()),
        Some(at) => {
            let age = now.saturating_sub(at);
            // Idle matters only where runs are usual: one came in the last day.
            let idle = age >= IDLE_AMBER.as_millis() as i64 && age < BASELINE.as_millis() as i64;
            (
                format!("{} ago", fmt_age(age)),
                if idle { Level::Amber } else { Level::Green },
                if idle {
                    format!(
                        "no run for {}, though runs came in the last 24 h",
                        fmt_age(age)
                    )
                } else {
                    String::new()
                },
            )
        }
    };
    signals.push(Signal {
        name: "last_run",
        label: "Last run",
        level,
        value,
        detail,
        link: Some("/monitor".to_owned()),
    });
    signals.push(Signal {
        name: "runs_per_minute",
        label: "Runs / min",
        level: Level::Green,
        value: format!(
            "{:.1}",
            counts.runs_recent as f64 / (RECENT.as_secs() as f64 / 60.0)
        ),
        detail: "over the last 15 min".to_owned(),
        link: Some(format!("/monitor?from={}", rfc3339(recent_from))),
    });
    let fmt_rate = |rates: Rates| {
        rates
            .percent()
            .map(|p| format!("{p:.1}%"))
            .unwrap_or_else(|| "–".to_owned())
    };
    let level = failure_level(recent, baseline);
    signals.push(Signal {
        name: "failure_rate",
        label: "Failures 15 min / 24 h",
        level,
        value: format!("{} / {}", fmt_rate(recent), fmt_rate(baseline)),
        detail: match level {
            Level::Green if recent.finished < FAILURE_MIN_VARIANTS => format!(
                "{} finished variants in 15 min: too few to judge",
                recent.finished
            ),
            Level::Green => String::new(),
            _ => format!(
                "{} of {} variants failed or timed out in the last 15 min",
                recent.failed, recent.finished
            ),
        },
        link: Some("/monitor/overview?window=1h".to_owned()),
    });

    let (pending, oldest_unacked_ms) = state.metrics.backlog();
    let oldest =
        oldest_unacked_ms.map(|at| Duration::from_millis(now.saturating_sub(at).max(0) as u64));
    let (value, level) = match (&state.nats, oldest) {
        (None, _) => ("not ingesting".to_owned(), Level::Green),
        (Some(_), oldest) => (
            format!(
                "{pending} pending, oldest unacked {}",
                oldest
                    .map(|age| fmt_age(age.as_millis() as i64))
                    .unwrap_or_else(|| "none".to_owned())
            ),
            lag_level(oldest),
        ),
    };
    signals.push(Signal {
        name: "ingest_lag",
        label: "Ingest lag",
        level,
        detail: match level {
            Level::Green => String::new(),
            _ => "the collectors are behind: the monitor shows the past".to_owned(),
        },
        value,
        link: None,
    });

    let broker = match &state.nats {
        None => Ok("not used".to_owned()),
        Some(client) => match (client.connection_state(), state.metrics.consumer_down()) {
            (async_nats::connection::State::Connected, None) => Ok("connected".to_owned()),
            (async_nats::connection::State::Connected, Some(reason)) => {
                Err(format!("consumer not attached: {reason}"))
            }
            (other, _) => Err(format!("not connected ({other})")),
        },
    };
    signals.push(match broker {
        Ok(value) => Signal {
            name: "broker",
            label: "Broker",
            level: Level::Green,
            value,
            detail: String::new(),
            link: None,
        },
        Err(detail) => Signal {
            name: "broker",
            label: "Broker",
            level: Level::Red,
            value: "down".to_owned(),
            detail,
            link: None,
        },
    });

    let database = crate::http::database_state(state).await;
    signals.push(Signal {
        name: "database",
        label: "Database",
        level: if database.is_some() {
            Level::Red
        } else {
            Level::Green
        },
        value: if database.is_some() { "down" } else { "ok" }.to_owned(),
        // Off loopback only "unavailable", as on `/readyz`: the cause is in the log.
        detail: database
            .map(|down| state.monitor.readyz_database(Some(down.to_string())))
            .unwrap_or_default(),
        link: None,
    });

    let assessed = super::producers::assessed(state).await?;
    let recent_producers = assessed
        .iter()
        .filter(|(p, _)| p.last_received_at >= day_from);
    let (mut silent, mut lossy) = (0, 0);
    for (_, assessment) in recent_producers {
        if assessment.silent {
            silent += 1;
        } else if !assessment.problems.is_empty() {
            lossy += 1;
        }
    }
    signals.push(Signal {
        name: "producers",
        label: "Producers",
        level: if silent + lossy > 0 {
            Level::Amber
        } else {
            Level::Green
        },
        value: if silent + lossy == 0 {
            "ok".to_owned()
        } else {
            format!("{silent} silent, {lossy} with loss")
        },
        detail: String::new(),
        link: Some("/monitor/producers".to_owned()),
    });

    signals.push(Signal {
        name: "dead_letters",
        label: "Dead letters 24 h",
        level: if counts.dead_letters_24h > 0 {
            Level::Amber
        } else {
            Level::Green
        },
        value: counts.dead_letters_24h.to_string(),
        detail: String::new(),
        link: Some("/monitor/dead-letters".to_owned()),
    });

    Ok(Health {
        level: signals
            .iter()
            .map(|s| s.level)
            .max()
            .unwrap_or(Level::Green),
        checked_at: now,
        signals,
    })
}

/// `ms` as an RFC 3339 time the list filters take (`2026-12-02T07:00:00Z`).
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The strip's HTML, loaded by every page.
#[derive(Template)]
#[template(path = "health.html")]
pub struct HealthStrip {
    pub health: Health,
}

/// `/monitor/health`: the strip as an HTML fragment.
pub async fn fragment(
    State(state): State<AppState>,
    _: Params<NoParams>,
) -> Result<Response, AppError> {
    Ok(render(&HealthStrip {
        health: read(&state).await?,
    }))
}

/// `/api/v1/health`.
pub async fn api(
    State(state): State<AppState>,
    _: Params<NoParams>,
) -> Result<Json<Health>, AppError> {
    Ok(Json(read(&state).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(finished: i64, failed: i64) -> Rates {
        Rates { finished, failed }
    }

    #[test]
    fn the_failure_rate_is_judged_against_the_usual_one() {
        // A usual 5%: 40% now is an outage, 20% is worth a look, 8% is noise.
        assert_eq!(failure_level(rates(100, 40), rates(1000, 50)), Level::Red);
        assert_eq!(failure_level(rates(100, 20), rates(1000, 50)), Level::Amber);
        assert_eq!(failure_level(rates(100, 8), rates(1000, 50)), Level::Green);
        // A model that always fails half the time is not an outage at 60%.
        assert_eq!(
            failure_level(rates(100, 60), rates(1000, 500)),
            Level::Amber
        );
        // Too few finished variants to say.
        assert_eq!(failure_level(rates(4, 3), rates(1000, 50)), Level::Green);
        assert_eq!(failure_level(rates(0, 0), rates(0, 0)), Level::Green);
    }

    #[test]
    fn ingest_lag_goes_amber_at_a_minute_and_red_at_five() {
        assert_eq!(lag_level(None), Level::Green);
        assert_eq!(lag_level(Some(Duration::from_secs(59))), Level::Green);
        assert_eq!(lag_level(Some(LAG_AMBER)), Level::Amber);
        assert_eq!(lag_level(Some(LAG_RED)), Level::Red);
    }
}
