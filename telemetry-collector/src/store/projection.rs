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
//! A producer's ledger is one half too, decided by the contract's own rule: the
//! `ProducerStats` with the highest `producer_seq` wins (its counters are totals, so
//! the newest are the truth), the event id breaking a tie.
//!
//! A batch is first folded in memory with the same rule ([`Prepared::from_batch`]), so
//! each key appears once per statement (Postgres refuses to upsert a row twice in one
//! statement), then merged into the table by the `ON CONFLICT` clauses that
//! [`super::schema`] derives from each column's [`Part`](super::schema::Part).

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest as _, Sha256};

use super::Batch;
use crate::domain::{
    Body, Fact, ImageMeta, Origin, ProducerLedger, Rejection, RunOutcome, RunStart, VariantOutcome,
};

/// What identifies an envelope's bytes: the first 16 bytes of their SHA-256. Two
/// deliveries of one envelope (a redelivery, a producer's retry, a replay, a requeued
/// dead letter) carry the same bytes; one event id with other bytes is a conflict.
/// 128 bits make an accidental match impossible in practice, and a forged one would
/// only hide the forger's own second envelope.
pub(crate) type BodyHash = [u8; 16];

/// See [`BodyHash`].
pub(crate) fn body_hash(raw: &[u8]) -> BodyHash {
    let digest = Sha256::digest(raw);
    let mut hash = [0; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

/// An event id already stored, as the write path reads it back when a batch held
/// envelopes that were not new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvent {
    /// `None` for rows stored before bodies were hashed: taken as the same envelope.
    pub body_hash: Option<Vec<u8>>,
    pub stream_seq: i64,
}

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
pub(crate) struct RunUpsert<'a> {
    pub run_id: &'a str,
    pub start: Option<(Ident<'a>, &'a RunStart)>,
    pub done: Option<(Ident<'a>, &'a RunOutcome)>,
}

impl<'a> RunUpsert<'a> {
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

    /// The winning start's body.
    pub fn started(&self) -> Option<&'a RunStart> {
        self.start.as_ref().map(|(_, start)| *start)
    }

    /// The winning end's body.
    pub fn completed(&self) -> Option<&'a RunOutcome> {
        self.done.as_ref().map(|(_, done)| *done)
    }

    /// The product image's metadata, when the start has it.
    pub fn product_meta(&self) -> Option<&'a ImageMeta> {
        self.started().and_then(|s| s.product_image.meta.as_ref())
    }

    /// The room image's metadata, when the start has it.
    pub fn room_meta(&self) -> Option<&'a ImageMeta> {
        self.started().and_then(|s| s.room_image.meta.as_ref())
    }
}

/// One `variant_results` row to upsert.
#[derive(Debug, Clone)]
pub(crate) struct VariantUpsert<'a> {
    pub run_id: &'a str,
    pub variant_id: &'a str,
    pub start: Option<Ident<'a>>,
    pub result: Option<(Ident<'a>, &'a VariantOutcome)>,
    /// The winning result's message normalised ([`super::normalise`]) when it
    /// failed or timed out: what groups it with others.
    pub error_group: Option<String>,
}

impl<'a> VariantUpsert<'a> {
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

    /// The winning result's body.
    pub fn outcome(&self) -> Option<&'a VariantOutcome> {
        self.result.as_ref().map(|(_, result)| *result)
    }

    /// The group of the winning result's error, once the batch is folded: from the
    /// winning result alone, like every column of the end half.
    fn group_error(&mut self) {
        self.error_group = self
            .outcome()
            .filter(|r| is_error_status(&r.status))
            .map(|r| super::normalise::normalise(&r.error_message));
    }
}

/// The variant statuses error groups count: a result that failed or timed out.
pub const ERROR_STATUSES: [&str; 2] = ["failed", "timeout"];

/// Whether a variant status is one of [`ERROR_STATUSES`].
pub fn is_error_status(status: &str) -> bool {
    ERROR_STATUSES.contains(&status)
}

/// The winning `ProducerStats` of a producer in a batch.
#[derive(Debug, Clone)]
pub(crate) struct StatsUpsert<'a> {
    /// The envelope's `producer_seq`: the highest is the newest (the contract).
    pub seq: i64,
    /// Breaks a tie between two stats with one sequence number.
    pub event_id: &'a str,
    /// When the producer took them (its clock).
    pub occurred_at: i64,
    pub ledger: &'a ProducerLedger,
}

impl StatsUpsert<'_> {
    /// Whether these stats are newer than `old` by the contract's rule.
    fn newer_than(&self, old: Option<&StatsUpsert<'_>>) -> bool {
        old.is_none_or(|old| (self.seq, self.event_id) > (old.seq, old.event_id))
    }
}

/// One `producers` row to upsert.
#[derive(Debug, Clone)]
pub(crate) struct ProducerUpsert<'a> {
    pub producer: &'a str,
    /// The winning `ProducerStats` of the batch.
    pub stats: Option<StatsUpsert<'a>>,
    /// Latest `occurred_at` (producer's clock).
    pub last_seen_at: i64,
    /// The batch's receive time (collector's clock).
    pub last_received_at: i64,
    /// Filled after the event insert: only rows that were new.
    pub stored_events: i64,
}

impl<'a> ProducerUpsert<'a> {
    fn new(producer: &'a str, received_at: i64) -> Self {
        Self {
            producer,
            stats: None,
            last_seen_at: 0,
            last_received_at: received_at,
            stored_events: 0,
        }
    }

    /// The winning `ProducerStats` body.
    pub fn ledger(&self) -> Option<&'a ProducerLedger> {
        self.stats.as_ref().map(|s| s.ledger)
    }
}

/// One `monitor_events` row to insert.
#[derive(Debug, Clone)]
pub(crate) struct EventInsert<'a> {
    pub fact: &'a Fact,
    /// The batch's receive time.
    pub received_at: i64,
    /// [`Fact::payload`], made once per envelope.
    pub payload: Option<String>,
    /// [`body_hash`] of the envelope's bytes.
    pub body_hash: BodyHash,
}

/// One `dead_letters` row to insert.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterInsert<'a> {
    /// The batch's stream.
    pub stream: &'a str,
    /// The batch's receive time.
    pub received_at: i64,
    pub origin: &'a Origin,
    /// The message bytes as received.
    pub raw: &'a [u8],
    /// The rejection as text.
    pub reason: String,
}

/// A batch folded into one row per key.
#[derive(Debug, Default)]
pub(crate) struct Prepared<'a> {
    /// Unique by event id.
    pub events: Vec<EventInsert<'a>>,
    /// Sorted by key (a stable lock order between concurrent collectors).
    pub runs: Vec<RunUpsert<'a>>,
    pub variants: Vec<VariantUpsert<'a>>,
    pub producers: BTreeMap<&'a str, ProducerUpsert<'a>>,
    /// The batch's dead letters, and the facts refused here.
    pub dead: Vec<DeadLetterInsert<'a>>,
    /// Facts of the batch refused by the projection (an event id reused for another
    /// envelope, a clock far ahead), each with why: they are among [`Self::dead`].
    pub refused: Vec<(&'a Fact, Rejection)>,
}

fn wins(new: &Ident<'_>, old: Option<&Ident<'_>>) -> bool {
    old.is_none_or(|old| new.event_id > old.event_id)
}

impl<'a> Prepared<'a> {
    /// Folds the batch with the projection's rule. `stored` holds event ids of the
    /// batch already in the database with other bytes (see [`StoredEvent`]): their
    /// envelopes here are refused as conflicts.
    ///
    /// Refused before folding, each becoming a dead letter that says why:
    /// - a second envelope with one event id and other bytes. The one with the lowest
    ///   stream sequence in the batch is kept (the first the stream holds), or the one
    ///   stored earlier, so one batch or several give the same rows. An identical copy
    ///   is a duplicate, not a conflict, and is skipped.
    /// - an `occurred_at` past [`crate::domain::MAX_CLOCK_AHEAD`] of the receive time.
    pub fn from_batch(batch: &'a Batch, stored: &HashMap<String, StoredEvent>) -> Self {
        // The envelope kept for each event id: the lowest stream sequence.
        let mut kept: HashMap<&str, usize> = HashMap::with_capacity(batch.facts.len());
        for (i, fact) in batch.facts.iter().enumerate() {
            kept.entry(fact.meta.event_id.as_str())
                .and_modify(|k| {
                    if batch.facts[*k].origin.stream_seq > fact.origin.stream_seq {
                        *k = i;
                    }
                })
                .or_insert(i);
        }
        let mut runs: BTreeMap<&str, RunUpsert<'_>> = BTreeMap::new();
        let mut variants: BTreeMap<(&str, &str), VariantUpsert<'_>> = BTreeMap::new();
        let mut producers: BTreeMap<&str, ProducerUpsert<'_>> = BTreeMap::new();
        let mut events = Vec::with_capacity(kept.len());
        let mut refused = Vec::new();
        // Usually every id is new to the batch: then no envelope needs looking up again.
        let repeats = kept.len() < batch.facts.len();
        for fact in &batch.facts {
            let event_id = fact.meta.event_id.as_str();
            let first = if repeats {
                &batch.facts[kept[event_id]]
            } else {
                fact
            };
            if !std::ptr::eq(first, fact) {
                if first.raw != fact.raw {
                    refused.push((
                        fact,
                        Rejection::EventIdConflict {
                            event_id: event_id.to_owned(),
                            first: first.origin.stream_seq,
                        },
                    ));
                }
                continue;
            }
            let hash = body_hash(&fact.raw);
            if let Some(before) = stored.get(event_id) {
                if before.body_hash.as_deref().is_some_and(|h| h != hash) {
                    refused.push((
                        fact,
                        Rejection::EventIdConflict {
                            event_id: event_id.to_owned(),
                            first: u64::try_from(before.stream_seq).unwrap_or(0),
                        },
                    ));
                    continue;
                }
            }
            if let Some(rejection) =
                Rejection::clock_ahead(fact.meta.occurred_at, batch.received_at)
            {
                refused.push((fact, rejection));
                continue;
            }
            events.push(EventInsert {
                fact,
                received_at: batch.received_at,
                payload: fact.payload(),
                body_hash: hash,
            });
            let ident = Ident::of(fact);
            let producer = producers
                .entry(&fact.meta.producer)
                .or_insert_with(|| ProducerUpsert::new(&fact.meta.producer, batch.received_at));
            producer.last_seen_at = producer.last_seen_at.max(fact.meta.occurred_at);
            match &fact.body {
                Body::RunStarted(start) => {
                    let row = runs.entry(&start.run_id).or_insert_with(|| RunUpsert {
                        run_id: &start.run_id,
                        start: None,
                        done: None,
                    });
                    if wins(&ident, row.start.as_ref().map(|(i, _)| i)) {
                        row.start = Some((ident, start));
                    }
                }
                Body::RunCompleted(done) => {
                    let row = runs.entry(&done.run_id).or_insert_with(|| RunUpsert {
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
                Body::ProducerStats(ledger) => {
                    let stats = StatsUpsert {
                        seq: fact.meta.producer_seq,
                        event_id: &fact.meta.event_id,
                        occurred_at: fact.meta.occurred_at,
                        ledger,
                    };
                    if stats.newer_than(producer.stats.as_ref()) {
                        producer.stats = Some(stats);
                    }
                }
                Body::Event(_) => {}
            }
        }
        let dead_letter = |origin: &'a Origin, raw: &'a [u8], reason: String| DeadLetterInsert {
            stream: &batch.stream,
            received_at: batch.received_at,
            origin,
            raw,
            reason,
        };
        let mut dead: Vec<DeadLetterInsert<'a>> = batch
            .dead
            .iter()
            .map(|d| dead_letter(&d.origin, &d.raw, d.reason.to_string()))
            .collect();
        for (fact, rejection) in &refused {
            dead.push(dead_letter(&fact.origin, &fact.raw, rejection.to_string()));
        }
        let mut variants: Vec<VariantUpsert<'a>> = variants.into_values().collect();
        for variant in &mut variants {
            variant.group_error();
        }
        Self {
            events,
            runs: runs.into_values().collect(),
            variants,
            producers,
            dead,
            refused,
        }
    }

    /// The event ids of the envelopes to insert (each once): when some were not new,
    /// the write path reads them back ([`Self::conflicts`]).
    pub fn event_ids(&self) -> Vec<&'a str> {
        self.events
            .iter()
            .map(|e| e.fact.meta.event_id.as_str())
            .collect()
    }

    /// Of the rows read back for [`Self::event_ids`] (`event_id`, `body_hash`,
    /// `stream_seq`), those stored from other bytes than this batch's envelope.
    fn conflicts(&self, rows: Vec<(String, Option<Vec<u8>>, i64)>) -> HashMap<String, StoredEvent> {
        let ours: HashMap<&str, &BodyHash> = self
            .events
            .iter()
            .map(|e| (e.fact.meta.event_id.as_str(), &e.body_hash))
            .collect();
        rows.into_iter()
            .filter(|(id, hash, _)| {
                hash.as_deref()
                    .is_some_and(|h| ours.get(id.as_str()).is_some_and(|o| h != o.as_slice()))
            })
            .map(|(id, body_hash, stream_seq)| {
                (
                    id,
                    StoredEvent {
                        body_hash,
                        stream_seq,
                    },
                )
            })
            .collect()
    }

    /// After the events insert, given the rows read back for [`Self::event_ids`]:
    /// when some were stored from other bytes, refolds the batch refusing those
    /// (they were counted as duplicates; they are dead letters now).
    pub fn settle_conflicts(
        &mut self,
        batch: &'a Batch,
        rows: Vec<(String, Option<Vec<u8>>, i64)>,
        duplicates: &mut u64,
    ) {
        let conflicts = self.conflicts(rows);
        if !conflicts.is_empty() {
            *duplicates -= conflicts.len() as u64;
            *self = Self::from_batch(batch, &conflicts);
        }
    }

    /// The runs whose rollup contributions the batch may change ([`super::rollups`]):
    /// those of its run and variant rows, sorted, each once.
    pub fn touched_runs(&self) -> Vec<&'a str> {
        let mut ids: Vec<&'a str> = self
            .runs
            .iter()
            .map(|r| r.run_id)
            .chain(self.variants.iter().map(|v| v.run_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// [`Self::refused`] as the write report gives it.
    pub fn refused_report(&self) -> Vec<(Origin, String)> {
        self.refused
            .iter()
            .map(|(fact, rejection)| (fact.origin.clone(), rejection.to_string()))
            .collect()
    }

    /// Adds `stored` newly stored envelopes (not `ProducerStats`) to `producer`.
    pub fn add_stored(&mut self, producer: &str, stored: u64) {
        if let Some(row) = self.producers.get_mut(producer) {
            row.stored_events += crate::domain::clamp(stored);
        }
    }

    /// The `producers` rows, once [`Prepared::add_stored`] has counted what was new.
    pub fn take_producers(&mut self) -> Vec<ProducerUpsert<'a>> {
        std::mem::take(&mut self.producers).into_values().collect()
    }
}

fn variant_entry<'m, 'a>(
    variants: &'m mut BTreeMap<(&'a str, &'a str), VariantUpsert<'a>>,
    run_id: &'a str,
    variant_id: &'a str,
) -> &'m mut VariantUpsert<'a> {
    variants
        .entry((run_id, variant_id))
        .or_insert_with(|| VariantUpsert {
            run_id,
            variant_id,
            start: None,
            result: None,
            error_group: None,
        })
}
