//! The order-free projection, shared by both dialects.
//!
//! A run (and a variant) has two halves: what its start says and what its end says.
//! Each half is decided by the envelope with the greatest `event_id` among those that
//! carry it, so the result does not depend on arrival order or redelivery:
//!
//! - start half: metadata (model, images, JSON blobs, ...) from the winning start;
//! - end half: status and counters from the winning completion / result; `status` is
//!   `running` only while no end has been seen, so a terminal status is never
//!   overwritten by `running`;
//! - identity (`shop_id`, `request_id`, the run's sort time): from the winning start,
//!   or from the winning end while no start has been seen.
//!
//! A batch is first folded in memory with the same rule ([`Prepared::from_batch`]), so
//! each key appears once per statement (Postgres refuses to upsert a row twice in one
//! statement), then merged into the table by the `ON CONFLICT` clauses below.

use std::collections::{BTreeMap, HashSet};

use super::Batch;
use crate::domain::{Body, Fact, RunOutcome, RunStart, Stats, VariantOutcome};

/// Identity fields carried by both halves.
#[derive(Debug, Clone)]
pub(crate) struct Ident<'a> {
    pub event_id: &'a str,
    pub occurred_at: i64,
    pub shop_id: &'a str,
    pub request_id: &'a str,
}

impl<'a> Ident<'a> {
    fn of(fact: &'a Fact) -> Self {
        Self {
            event_id: &fact.meta.event_id,
            occurred_at: fact.meta.occurred_at,
            shop_id: &fact.meta.shop_id,
            request_id: &fact.meta.request_id,
        }
    }
}

/// One `render_runs` row to upsert.
#[derive(Debug, Clone)]
pub(crate) struct RunRow<'a> {
    pub run_id: &'a str,
    pub start: Option<(Ident<'a>, &'a RunStart)>,
    pub done: Option<(Ident<'a>, &'a RunOutcome)>,
}

impl RunRow<'_> {
    /// Identity from the start when there is one, else from the end.
    pub fn ident(&self) -> &Ident<'_> {
        match (&self.start, &self.done) {
            (Some((ident, _)), _) | (None, Some((ident, _))) => ident,
            (None, None) => unreachable!("a run row has a start or an end"),
        }
    }

    /// `running` until an end is known.
    pub fn status(&self) -> &str {
        self.done
            .as_ref()
            .map_or("running", |(_, done)| done.status.as_str())
    }
}

/// One `variant_results` row to upsert.
#[derive(Debug, Clone)]
pub(crate) struct VariantRow<'a> {
    pub run_id: &'a str,
    pub variant_id: &'a str,
    pub start: Option<Ident<'a>>,
    pub result: Option<(Ident<'a>, &'a VariantOutcome)>,
}

impl VariantRow<'_> {
    /// Identity from the start when there is one, else from the result.
    pub fn ident(&self) -> &Ident<'_> {
        match (&self.start, &self.result) {
            (Some(ident), _) | (None, Some((ident, _))) => ident,
            (None, None) => unreachable!("a variant row has a start or a result"),
        }
    }

    /// `running` until a result is known.
    pub fn status(&self) -> &str {
        self.result
            .as_ref()
            .map_or("running", |(_, result)| result.status.as_str())
    }
}

/// One `producers` row to upsert.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerRow<'a> {
    pub stats: Option<(&'a str, &'a Stats)>,
    pub last_seen_at: i64,
    /// Filled after the event insert: only rows that were new.
    pub stored_events: i64,
}

/// A batch folded into one row per key.
#[derive(Debug, Default)]
pub(crate) struct Prepared<'a> {
    /// Unique by event id.
    pub events: Vec<&'a Fact>,
    /// Sorted by key (a stable lock order between concurrent collectors).
    pub runs: Vec<RunRow<'a>>,
    pub variants: Vec<VariantRow<'a>>,
    pub producers: BTreeMap<&'a str, ProducerRow<'a>>,
}

fn wins(new: &Ident<'_>, old: Option<&Ident<'_>>) -> bool {
    old.is_none_or(|old| new.event_id > old.event_id)
}

impl<'a> Prepared<'a> {
    /// Folds the batch with the projection's rule.
    pub fn from_batch(batch: &'a Batch) -> Self {
        let mut seen = HashSet::with_capacity(batch.facts.len());
        let mut runs: BTreeMap<&str, RunRow<'_>> = BTreeMap::new();
        let mut variants: BTreeMap<(&str, &str), VariantRow<'_>> = BTreeMap::new();
        let mut producers: BTreeMap<&str, ProducerRow<'_>> = BTreeMap::new();
        let mut events = Vec::with_capacity(batch.facts.len());
        for fact in &batch.facts {
            if !seen.insert(fact.meta.event_id.as_str()) {
                continue;
            }
            events.push(fact);
            let ident = Ident::of(fact);
            let producer = producers.entry(&fact.meta.producer).or_default();
            producer.last_seen_at = producer.last_seen_at.max(fact.meta.occurred_at);
            match &fact.body {
                Body::RunStarted(start) => {
                    let row = runs.entry(&start.run_id).or_insert_with(|| RunRow {
                        run_id: &start.run_id,
                        start: None,
                        done: None,
                    });
                    if wins(&ident, row.start.as_ref().map(|(i, _)| i)) {
                        row.start = Some((ident, start));
                    }
                }
                Body::RunCompleted(done) => {
                    let row = runs.entry(&done.run_id).or_insert_with(|| RunRow {
                        run_id: &done.run_id,
                        start: None,
                        done: None,
                    });
                    if wins(&ident, row.done.as_ref().map(|(i, _)| i)) {
                        row.done = Some((ident, done));
                    }
                }
                Body::VariantStarted(start) => {
                    let row = variant_entry(&mut variants, &start.run_id, &start.variant_id);
                    if wins(&ident, row.start.as_ref()) {
                        row.start = Some(ident);
                    }
                }
                Body::VariantResult(result) => {
                    let row = variant_entry(&mut variants, &result.run_id, &result.variant_id);
                    if wins(&ident, row.result.as_ref().map(|(i, _)| i)) {
                        row.result = Some((ident, result));
                    }
                }
                Body::ProducerStats(stats) => {
                    if producer
                        .stats
                        .is_none_or(|(old, _)| fact.meta.event_id.as_str() > old)
                    {
                        producer.stats = Some((&fact.meta.event_id, stats));
                    }
                }
                Body::Event(_) => {}
            }
        }
        Self {
            events,
            runs: runs.into_values().collect(),
            variants: variants.into_values().collect(),
            producers,
        }
    }

    /// Adds `stored` newly stored envelopes (not `ProducerStats`) to `producer`.
    pub fn add_stored(&mut self, producer: &str, stored: u64) {
        if let Some(row) = self.producers.get_mut(producer) {
            row.stored_events += crate::domain::clamp(stored);
        }
    }
}

fn variant_entry<'m, 'a>(
    variants: &'m mut BTreeMap<(&'a str, &'a str), VariantRow<'a>>,
    run_id: &'a str,
    variant_id: &'a str,
) -> &'m mut VariantRow<'a> {
    variants
        .entry((run_id, variant_id))
        .or_insert_with(|| VariantRow {
            run_id,
            variant_id,
            start: None,
            result: None,
        })
}

/// Columns of `render_runs`, in bind order.
pub(crate) const RUN_COLUMNS: &[&str] = &[
    "run_id",
    "shop_id",
    "request_id",
    "started_at",
    "product_asset_id",
    "room_session_id",
    "prompt_pack_version",
    "model",
    "product_image_hash",
    "product_image_width",
    "product_image_height",
    "product_image_format",
    "product_image_bytes",
    "room_image_hash",
    "room_image_width",
    "room_image_height",
    "room_image_format",
    "room_image_bytes",
    "resolved_facts_hash",
    "resolved_facts_json",
    "prompt_pack_hash",
    "prompt_pack_json",
    "variant_count",
    "started_event_id",
    "status",
    "total_duration_ms",
    "success_count",
    "fail_count",
    "timeout_count",
    "completed_at",
    "completed_event_id",
];

/// Columns of `variant_results`, in bind order.
pub(crate) const VARIANT_COLUMNS: &[&str] = &[
    "run_id",
    "variant_id",
    "shop_id",
    "request_id",
    "started_at",
    "started_event_id",
    "status",
    "final_prompt_hash",
    "latency_ms",
    "output_image_key",
    "output_image_hash",
    "error_code",
    "error_message",
    "finished_at",
    "result_event_id",
];

/// Columns of `monitor_events`, in bind order.
pub(crate) const EVENT_COLUMNS: &[&str] = &[
    "event_id",
    "kind",
    "event_type",
    "source",
    "shop_id",
    "request_id",
    "run_id",
    "variant_id",
    "producer",
    "producer_seq",
    "occurred_at",
    "received_at",
    "stream_seq",
    "subject",
    "payload",
];

/// Binds one `producers` row (`producer`, its [`ProducerRow`]) in [`PRODUCER_COLUMNS`]
/// order onto a query of either dialect.
macro_rules! bind_producer {
    ($query:expr, $producer:expr, $row:expr) => {{
        let row: &$crate::store::projection::ProducerRow<'_> = $row;
        let stats = row.stats.map(|(_, s)| s);
        $query
            .bind($producer)
            .bind(stats.map(|s| s.service.as_str()))
            .bind(stats.map(|s| s.emitted))
            .bind(stats.map(|s| s.published))
            .bind(stats.map(|s| s.dropped))
            .bind(stats.map(|s| s.dropped_by_reason.as_str()))
            .bind(stats.map(|s| s.publish_failures))
            .bind(stats.map(|s| s.queue_depth))
            .bind(stats.map(|s| s.started_at))
            .bind(stats.map(|s| s.is_final))
            .bind(row.stats.map(|(id, _)| id))
            .bind(row.last_seen_at)
            .bind(row.stored_events)
    }};
}
pub(crate) use bind_producer;

/// Columns of `producers`, in bind order.
pub(crate) const PRODUCER_COLUMNS: &[&str] = &[
    "producer",
    "service",
    "emitted",
    "published",
    "dropped",
    "dropped_by_reason",
    "publish_failures",
    "queue_depth",
    "started_at",
    "final",
    "stats_event_id",
    "last_seen_at",
    "stored_events",
];

/// Columns of `dead_letters`, in bind order.
pub(crate) const DEAD_LETTER_COLUMNS: &[&str] = &[
    "stream",
    "stream_seq",
    "subject",
    "reason",
    "raw",
    "received_at",
];

/// The `ON CONFLICT ... DO UPDATE SET` of a two-half table. SET expressions see the
/// old row, so the conditions compare against the values before this upsert.
fn two_halves(
    table: &str,
    key: &str,
    start_id: &str,
    end_id: &str,
    ident: &[&str],
    start: &[&str],
    end: &[&str],
) -> String {
    let start_wins = format!(
        "(excluded.{start_id} IS NOT NULL AND ({table}.{start_id} IS NULL OR excluded.{start_id} > {table}.{start_id}))"
    );
    let end_wins = format!(
        "(excluded.{end_id} IS NOT NULL AND ({table}.{end_id} IS NULL OR excluded.{end_id} > {table}.{end_id}))"
    );
    let ident_wins = format!(
        "({start_wins} OR ({table}.{start_id} IS NULL AND excluded.{start_id} IS NULL AND {end_wins}))"
    );
    let mut sets = Vec::new();
    for (columns, condition) in [(ident, &ident_wins), (start, &start_wins), (end, &end_wins)] {
        for column in columns {
            sets.push(format!(
                "{column} = CASE WHEN {condition} THEN excluded.{column} ELSE {table}.{column} END"
            ));
        }
    }
    format!("ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", "))
}

/// Upsert tail for `render_runs`.
pub(crate) fn runs_conflict() -> String {
    two_halves(
        "render_runs",
        "run_id",
        "started_event_id",
        "completed_event_id",
        &["shop_id", "request_id", "started_at"],
        &RUN_COLUMNS[4..24],
        &RUN_COLUMNS[24..],
    )
}

/// Upsert tail for `variant_results`.
pub(crate) fn variants_conflict() -> String {
    two_halves(
        "variant_results",
        "run_id, variant_id",
        "started_event_id",
        "result_event_id",
        &["shop_id", "request_id"],
        &VARIANT_COLUMNS[4..6],
        &VARIANT_COLUMNS[6..],
    )
}

/// Upsert tail for `producers`; `greatest` is `max` (SQLite) or `GREATEST` (Postgres).
pub(crate) fn producers_conflict(greatest: &str) -> String {
    let wins = "(excluded.stats_event_id IS NOT NULL AND (producers.stats_event_id IS NULL OR excluded.stats_event_id > producers.stats_event_id))";
    let mut sets: Vec<String> = PRODUCER_COLUMNS[1..11]
        .iter()
        .map(|column| {
            format!(
                "{column} = CASE WHEN {wins} THEN excluded.{column} ELSE producers.{column} END"
            )
        })
        .collect();
    sets.push(format!(
        "last_seen_at = {greatest}(producers.last_seen_at, excluded.last_seen_at)"
    ));
    sets.push("stored_events = producers.stored_events + excluded.stored_events".to_owned());
    format!("ON CONFLICT (producer) DO UPDATE SET {}", sets.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_slices_split_where_the_halves_do() {
        assert_eq!(RUN_COLUMNS[4], "product_asset_id");
        assert_eq!(RUN_COLUMNS[23], "started_event_id");
        assert_eq!(RUN_COLUMNS[24], "status");
        assert_eq!(RUN_COLUMNS.last(), Some(&"completed_event_id"));
        assert_eq!(VARIANT_COLUMNS[4..6], ["started_at", "started_event_id"]);
        assert_eq!(VARIANT_COLUMNS.last(), Some(&"result_event_id"));
        assert_eq!(PRODUCER_COLUMNS[10], "stats_event_id");
        // The event-id column of each half is the last one it sets, but it is
        // compared against the old row, so its position does not matter for SQL.
        assert!(runs_conflict().contains("status = CASE WHEN (excluded.completed_event_id"));
    }
}
