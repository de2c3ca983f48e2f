//! Producers: each producer's loss ledger (`/monitor/producers`, `/api/v1/producers`)
//! from its newest stats, beside what the collector stored from it, and what in it
//! does not add up ([`Assessment`]).
//!
//! The checks follow the wire contract (`ProducerStats` in the proto):
//! - `emitted = published + dropped + queue_depth` (the queue depth counts what is
//!   queued or in flight, so once the queue is empty: `emitted = published + dropped`);
//! - `dropped` is the sum of `dropped_by_reason`;
//! - anything dropped is loss;
//! - final stats (the producer shut down) leave nothing queued, and what they say was
//!   published was stored;
//! - a producer that has sent nothing for [`DEFAULT_PRODUCER_SILENT_AFTER`]
//!   (`COLLECTOR_PRODUCER_SILENT_AFTER`) without final stats is *silent*: it was killed,
//!   crashed, or lost the broker, and its last counters are not the end of its story.
//!
//! Stats are sent every 10 s (the SDK's default), so a live producer's stored count
//! can run ahead of its published count by what it published since: that is explained
//! in a note, not flagged.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use service_kit::now_ms;

use crate::http::{AppError, AppState};
use crate::store::ProducerRecord;

use super::json_blob::JsonBlob;
use super::params::{NoParams, Params};
use super::views::{fmt_age, fmt_time, num, opt, render};

/// How long a producer may send nothing before it is flagged as silent, unless its
/// last stats were final. Three of the SDK's stats intervals (10 s): one late stats
/// message is not an alarm, three missed ones are. Knob:
/// `COLLECTOR_PRODUCER_SILENT_AFTER`.
pub const DEFAULT_PRODUCER_SILENT_AFTER: Duration = Duration::from_secs(30);
/// Longest `COLLECTOR_PRODUCER_SILENT_AFTER`: a week, past which the stream no longer
/// holds what a producer sent before it went quiet.
pub const MAX_PRODUCER_SILENT_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// What the ledger of one producer says, read against the contract at `now`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessment {
    /// What does not add up, or is loss; empty when all is well.
    pub problems: Vec<String>,
    /// Sent nothing for longer than the bound, without final stats.
    pub silent: bool,
    /// Why a figure that looks wrong is not (stats lagging).
    pub note: Option<String>,
}

impl Assessment {
    /// Checks `p`'s ledger at `now` (unix ms, the collector's clock).
    pub fn of(p: &ProducerRecord, now: i64, silent_after: Duration) -> Self {
        let mut problems = Vec::new();
        let is_final = p.is_final == Some(true);
        let dropped = p.dropped.unwrap_or(0);
        if dropped > 0 {
            problems.push(format!("{dropped} dropped"));
        }
        if let Some(by_reason) = &p.dropped_by_reason {
            match reason_sum(by_reason) {
                Some(sum) if sum != i128::from(dropped) => problems.push(format!(
                    "dropped {dropped} but dropped_by_reason sums to {sum}"
                )),
                Some(_) => {}
                None => problems.push("dropped_by_reason is not a map of counts".into()),
            }
        }
        if let (Some(emitted), Some(published)) = (p.emitted, p.published) {
            let queued = p.queue_depth.unwrap_or(0);
            let accounted = i128::from(published) + i128::from(dropped) + i128::from(queued);
            if i128::from(emitted) != accounted {
                problems.push(format!(
                    "emitted {emitted} but published {published} + dropped {dropped} + \
                     queued {queued} = {accounted}"
                ));
            }
        }
        if is_final {
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
        let quiet_for = now.saturating_sub(p.last_received_at);
        let silent =
            !is_final && quiet_for > i64::try_from(silent_after.as_millis()).unwrap_or(i64::MAX);
        if silent {
            problems.push(format!(
                "silent for {} with no final stats (killed, crashed or cut off?)",
                fmt_age(quiet_for)
            ));
        }
        let note = match (is_final, p.published) {
            (false, Some(published)) if p.stored_events > published && !silent => {
                let ahead = p.stored_events - published;
                let taken = p
                    .stats_at
                    .map(|at| format!(", taken {} ago", fmt_age(now.saturating_sub(at))))
                    .unwrap_or_default();
                Some(format!(
                    "{ahead} stored since its last stats{taken}: stats count what was \
                     published when they were taken and come every few seconds"
                ))
            }
            _ => None,
        };
        Self {
            problems,
            silent,
            note,
        }
    }

    /// The problems as one line; empty when there are none.
    pub fn problem(&self) -> String {
        self.problems.join("; ")
    }
}

/// The sum of a `{reason: count}` object, `None` when it is not one.
fn reason_sum(json: &str) -> Option<i128> {
    let counts: BTreeMap<String, u64> = serde_json::from_str(json).ok()?;
    Some(counts.values().map(|n| i128::from(*n)).sum())
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
    /// Empty when nothing needs explaining.
    pub note: String,
}

impl ProducerRow {
    fn new(p: &ProducerRecord, assessment: &Assessment) -> Self {
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
            last_seen: fmt_time(p.last_received_at),
            is_final: p.is_final == Some(true),
            problem: assessment.problem(),
            note: assessment.note.clone().unwrap_or_default(),
        }
    }
}

/// The sums over every producer (the last row of the page).
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub producers: usize,
    pub emitted: i64,
    pub published: i64,
    pub dropped: i64,
    pub publish_failures: i64,
    pub queue_depth: i64,
    pub stored: i64,
    pub silent: usize,
    /// Producers with a problem (silent ones included).
    pub flagged: usize,
}

impl Totals {
    fn add(&mut self, p: &ProducerRecord, assessment: &Assessment) {
        self.producers += 1;
        self.emitted = self.emitted.saturating_add(p.emitted.unwrap_or(0));
        self.published = self.published.saturating_add(p.published.unwrap_or(0));
        self.dropped = self.dropped.saturating_add(p.dropped.unwrap_or(0));
        self.publish_failures = self
            .publish_failures
            .saturating_add(p.publish_failures.unwrap_or(0));
        self.queue_depth = self.queue_depth.saturating_add(p.queue_depth.unwrap_or(0));
        self.stored = self.stored.saturating_add(p.stored_events);
        self.silent += usize::from(assessment.silent);
        self.flagged += usize::from(!assessment.problems.is_empty());
    }
}

#[derive(Template)]
#[template(path = "producers.html")]
pub struct ProducersPage {
    pub nav: &'static str,
    pub auth: bool,
    pub rows: Vec<ProducerRow>,
    pub totals: Totals,
    /// `30s`: the silence bound, as the page explains it.
    pub silent_after: String,
}

/// Every producer's ledger, assessed now.
pub(crate) async fn assessed(
    state: &AppState,
) -> Result<Vec<(ProducerRecord, Assessment)>, AppError> {
    let producers = state.store.producers().await?;
    let now = now_ms();
    let silent_after = state.monitor.producer_silent_after();
    Ok(producers
        .into_iter()
        .map(|p| {
            let assessment = Assessment::of(&p, now, silent_after);
            (p, assessment)
        })
        .collect())
}

/// `/monitor/producers`.
pub async fn page(
    State(state): State<AppState>,
    _: Params<NoParams>,
) -> Result<Response, AppError> {
    let producers = assessed(&state).await?;
    let mut totals = Totals::default();
    for (p, assessment) in &producers {
        totals.add(p, assessment);
    }
    Ok(render(&ProducersPage {
        nav: "producers",
        auth: state.monitor.auth_required(),
        rows: producers
            .iter()
            .map(|(p, assessment)| ProducerRow::new(p, assessment))
            .collect(),
        totals,
        silent_after: fmt_age(
            i64::try_from(state.monitor.producer_silent_after().as_millis()).unwrap_or(i64::MAX),
        ),
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
    /// `producer_seq` of the stats shown (the highest received).
    pub stats_seq: Option<i64>,
    pub stats_event_id: Option<String>,
    /// When those stats were taken (producer's clock, unix ms).
    pub stats_at: Option<i64>,
    pub last_seen_at: i64,
    /// When the collector last received anything from it (unix ms).
    pub last_received_at: i64,
    pub stored_events: i64,
    /// Sent nothing for longer than `COLLECTOR_PRODUCER_SILENT_AFTER`, without final
    /// stats.
    pub silent: bool,
    /// Why the counts do not add up; `null` when they do.
    pub problem: Option<String>,
    /// Why a figure that looks wrong is not (stats lagging); `null` when none.
    pub note: Option<String>,
}

impl ProducerJson {
    fn new(ledger: ProducerRecord, assessment: Assessment) -> Self {
        let problem = Some(assessment.problem()).filter(|p| !p.is_empty());
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
            stats_seq: ledger.stats_seq,
            stats_event_id: ledger.stats_event_id,
            stats_at: ledger.stats_at,
            last_seen_at: ledger.last_seen_at,
            last_received_at: ledger.last_received_at,
            stored_events: ledger.stored_events,
            silent: assessment.silent,
            problem,
            note: assessment.note,
        }
    }
}

/// `/api/v1/producers`: every producer's ledger (one list, no pages; scripts sum the
/// totals the page shows).
pub async fn api(
    State(state): State<AppState>,
    _: Params<NoParams>,
) -> Result<Json<Vec<ProducerJson>>, AppError> {
    let producers = assessed(&state).await?;
    Ok(Json(
        producers
            .into_iter()
            .map(|(p, assessment)| ProducerJson::new(p, assessment))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> ProducerRecord {
        ProducerRecord {
            producer: "p".into(),
            service: Some("renderer".into()),
            emitted: Some(10),
            published: Some(10),
            dropped: Some(0),
            dropped_by_reason: Some("{}".into()),
            publish_failures: Some(0),
            queue_depth: Some(0),
            started_at: Some(0),
            is_final: Some(true),
            stats_seq: Some(11),
            stats_event_id: Some("e".into()),
            stats_at: Some(1_000),
            last_seen_at: 1_000,
            last_received_at: 1_000,
            stored_events: 10,
        }
    }

    const BOUND: Duration = DEFAULT_PRODUCER_SILENT_AFTER;

    #[test]
    fn a_ledger_that_adds_up_has_no_problem() {
        assert_eq!(
            Assessment::of(&ledger(), 1_000_000, BOUND),
            Assessment::default()
        );
    }

    #[test]
    fn dropped_must_equal_the_sum_of_its_reasons() {
        let mut p = ledger();
        p.dropped_by_reason = Some(r#"{"queue_full":4}"#.into());
        p.emitted = Some(14);
        p.queue_depth = Some(4);
        p.is_final = Some(false);
        p.last_received_at = 999_000;
        let found = Assessment::of(&p, 1_000_000, BOUND);
        assert_eq!(
            found.problems,
            ["dropped 0 but dropped_by_reason sums to 4"]
        );
        p.dropped_by_reason = Some("[1]".into());
        assert_eq!(
            Assessment::of(&p, 1_000_000, BOUND).problems,
            ["dropped_by_reason is not a map of counts"]
        );
    }

    #[test]
    fn silence_counts_only_without_final_stats() {
        let mut p = ledger();
        let now = p.last_received_at + 31_000;
        assert!(!Assessment::of(&p, now, BOUND).silent);
        p.is_final = Some(false);
        let found = Assessment::of(&p, now, BOUND);
        assert!(found.silent);
        assert_eq!(
            found.problems,
            ["silent for 31s with no final stats (killed, crashed or cut off?)"]
        );
        assert!(!Assessment::of(&p, p.last_received_at + 30_000, BOUND).silent);
    }
}
