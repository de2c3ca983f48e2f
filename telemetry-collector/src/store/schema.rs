//! The tables the write path fills, as data: one [`Table`] per table, listing each
//! written column once with its name, the [`Part`] of an upsert that decides it, and
//! how to read its value off a row of the batch ([`Value`], which also gives its SQL
//! type). Everything else is derived from that list: the column lists, the `ON
//! CONFLICT` clauses, the Postgres `UNNEST` array types, the SQLite bind order, and
//! the column list the round-trip test checks against the database.
//!
//! The SQL text is derived once per store (not per batch), so describing the schema
//! costs the hot path nothing: a batch only walks the column list to bind values.
//!
//! The order-free merge rules themselves are explained in [`super::projection`].

use super::projection::{DeadLetterInsert, EventInsert, ProducerUpsert, RunUpsert, VariantUpsert};
use crate::domain::clamp;

/// How a column's value is read off a row of type `R`, by SQL type.
///
/// Values that are never NULL are still returned as `Option` (always `Some`): one
/// binding path per type, and the same encoding either way.
pub(crate) enum Value<R> {
    /// `TEXT`.
    Text(fn(&R) -> Option<&str>),
    /// `BIGINT` (SQLite `INTEGER`).
    Int(fn(&R) -> Option<i64>),
    /// `BOOLEAN` (SQLite `INTEGER` 0 / 1).
    Bool(fn(&R) -> Option<bool>),
    /// `BYTEA` (SQLite `BLOB`).
    Bytes(fn(&R) -> Option<&[u8]>),
}

impl<R> Value<R> {
    /// The Postgres element type of the column's `UNNEST` array.
    pub(crate) fn pg_type(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::Int(_) => "bigint",
            Self::Bool(_) => "boolean",
            Self::Bytes(_) => "bytea",
        }
    }
}

/// Which part of an upsert decides a column when its row already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Part of the conflict key.
    Key,
    /// Written by the first insert only (tables whose rows never change).
    Once,
    /// Identity: from the winning start, or from the winning end while no start has
    /// been seen (see [`super::projection`]).
    Ident,
    /// From the envelope that wins by the table's [`Table::start_id`] columns.
    Start,
    /// From the envelope that wins by [`Table::end_id`].
    End,
    /// The greatest value written.
    Greatest,
    /// The sum of the values written.
    Sum,
}

/// One written column.
pub(crate) struct Column<R> {
    pub name: &'static str,
    pub part: Part,
    pub value: Value<R>,
}

/// One table: its written columns, in bind order, and how an upsert merges them.
pub(crate) struct Table<R> {
    pub name: &'static str,
    pub columns: Vec<Column<R>>,
    /// The columns that decide the [`Part::Start`] columns: the greatest value wins,
    /// compared as a tuple in this order (the event id, or a producer's sequence then
    /// the event id).
    pub start_id: Option<&'static [&'static str]>,
    /// The columns that decide the [`Part::End`] columns.
    pub end_id: Option<&'static [&'static str]>,
    /// Columns the database fills (not written).
    pub generated: &'static [&'static str],
}

/// SQL that differs between the dialects in the derived text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Sqlite,
    Postgres,
}

impl<R> Table<R> {
    fn new(name: &'static str, columns: Vec<Column<R>>) -> Self {
        Self {
            name,
            columns,
            start_id: None,
            end_id: None,
            generated: &[],
        }
    }

    fn halves(
        mut self,
        start_id: &'static [&'static str],
        end_id: Option<&'static [&'static str]>,
    ) -> Self {
        self.start_id = Some(start_id);
        self.end_id = end_id;
        self
    }

    /// Written column names, in bind order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|c| c.name)
    }

    /// `a, b, c`: the written columns.
    pub(crate) fn column_list(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }

    /// The `ON CONFLICT` clause: `DO NOTHING` when no column changes after the first
    /// insert, else one `SET` per column by its [`Part`]. `SET` expressions see the old
    /// row, so each condition compares against the values before this upsert.
    pub(crate) fn on_conflict(&self, syntax: Syntax) -> String {
        let table = self.name;
        let key: Vec<&str> = self.parts(Part::Key).collect();
        // The first decider is NULL until that half has been seen; the rest break ties
        // as a row-value comparison (both dialects compare tuples left to right).
        let wins = |ids: Option<&[&str]>| {
            let ids = ids.expect("a table with Start / End columns names their deciders");
            let id = ids[0];
            let tuple = |side: &str| {
                let cols: Vec<String> = ids.iter().map(|c| format!("{side}.{c}")).collect();
                if cols.len() == 1 {
                    cols[0].clone()
                } else {
                    format!("({})", cols.join(", "))
                }
            };
            format!(
                "(excluded.{id} IS NOT NULL AND ({table}.{id} IS NULL OR {} > {}))",
                tuple("excluded"),
                tuple(table)
            )
        };
        let greatest = match syntax {
            Syntax::Sqlite => "max",
            Syntax::Postgres => "GREATEST",
        };
        let mut sets = Vec::new();
        for column in &self.columns {
            let name = column.name;
            let case = |condition: String| {
                format!(
                    "{name} = CASE WHEN {condition} THEN excluded.{name} ELSE {table}.{name} END"
                )
            };
            sets.push(match column.part {
                Part::Key | Part::Once => continue,
                Part::Start => case(wins(self.start_id)),
                Part::End => case(wins(self.end_id)),
                Part::Ident => {
                    let start_id = self.start_id.expect("a table with Ident columns has halves")[0];
                    case(format!(
                        "({} OR ({table}.{start_id} IS NULL AND excluded.{start_id} IS NULL AND {}))",
                        wins(self.start_id),
                        wins(self.end_id)
                    ))
                }
                Part::Greatest => {
                    format!("{name} = {greatest}({table}.{name}, excluded.{name})")
                }
                Part::Sum => format!("{name} = {table}.{name} + excluded.{name}"),
            });
        }
        let key = key.join(", ");
        if sets.is_empty() {
            format!("ON CONFLICT ({key}) DO NOTHING")
        } else {
            format!("ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", "))
        }
    }

    /// Postgres: the whole batch as one statement with one array parameter per column,
    /// `INSERT INTO t (columns) SELECT * FROM UNNEST($1::type[], ...) ON CONFLICT ...`.
    pub(crate) fn unnest_upsert(&self) -> String {
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}[]", i + 1, c.value.pg_type()))
            .collect();
        format!(
            "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) {}",
            self.name,
            self.column_list(),
            arrays.join(", "),
            self.on_conflict(Syntax::Postgres)
        )
    }

    fn parts(&self, part: Part) -> impl Iterator<Item = &'static str> + '_ {
        self.columns
            .iter()
            .filter(move |c| c.part == part)
            .map(|c| c.name)
    }
}

fn text<R>(name: &'static str, part: Part, get: fn(&R) -> Option<&str>) -> Column<R> {
    Column {
        name,
        part,
        value: Value::Text(get),
    }
}

fn int<R>(name: &'static str, part: Part, get: fn(&R) -> Option<i64>) -> Column<R> {
    Column {
        name,
        part,
        value: Value::Int(get),
    }
}

/// `monitor_events`: every envelope, once.
pub(crate) fn events<'a>() -> Table<EventInsert<'a>> {
    use Part::{Key, Once};
    Table::new(
        "monitor_events",
        vec![
            text("event_id", Key, |e: &EventInsert<'a>| {
                Some(&e.fact.meta.event_id)
            }),
            text("kind", Once, |e| Some(e.fact.kind().as_str())),
            text("event_type", Once, |e| Some(e.fact.event_type())),
            text("source", Once, |e| e.fact.source()),
            text("shop_id", Once, |e| Some(&e.fact.meta.shop_id)),
            text("request_id", Once, |e| Some(&e.fact.meta.request_id)),
            text("run_id", Once, |e| e.fact.run_id()),
            text("variant_id", Once, |e| e.fact.variant_id()),
            text("producer", Once, |e| Some(&e.fact.meta.producer)),
            int("producer_seq", Once, |e| Some(e.fact.meta.producer_seq)),
            int("occurred_at", Once, |e| Some(e.fact.meta.occurred_at)),
            int("received_at", Once, |e| Some(e.received_at)),
            int("stream_seq", Once, |e| {
                Some(clamp(e.fact.origin.stream_seq))
            }),
            text("subject", Once, |e| Some(&e.fact.origin.subject)),
            text("payload", Once, |e| e.payload.as_deref()),
            Column {
                name: "body_hash",
                part: Once,
                value: Value::Bytes(|e| Some(&e.body_hash)),
            },
        ],
    )
}

/// `render_runs`: a run's start half and end half (see [`super::projection`]).
pub(crate) fn runs<'a>() -> Table<RunUpsert<'a>> {
    use Part::{End, Ident, Key, Start};
    Table::new(
        "render_runs",
        vec![
            text("run_id", Key, |r: &RunUpsert<'a>| Some(r.run_id)),
            text("shop_id", Ident, |r| Some(r.ident().shop_id)),
            text("request_id", Ident, |r| Some(r.ident().request_id)),
            int("started_at", Ident, |r| Some(r.ident().occurred_at)),
            text("product_asset_id", Start, |r| {
                r.started().map(|s| s.product_asset_id.as_str())
            }),
            text("room_session_id", Start, |r| {
                r.started().map(|s| s.room_session_id.as_str())
            }),
            text("prompt_pack_version", Start, |r| {
                r.started().map(|s| s.prompt_pack_version.as_str())
            }),
            text("model", Start, |r| r.started().map(|s| s.model.as_str())),
            text("product_image_hash", Start, |r| {
                r.started().map(|s| s.product_image.hash.as_str())
            }),
            int("product_image_width", Start, |r| {
                r.product_meta().map(|m| m.width)
            }),
            int("product_image_height", Start, |r| {
                r.product_meta().map(|m| m.height)
            }),
            text("product_image_format", Start, |r| {
                r.product_meta().map(|m| m.format.as_str())
            }),
            int("product_image_bytes", Start, |r| {
                r.product_meta().map(|m| m.bytes)
            }),
            text("room_image_hash", Start, |r| {
                r.started().map(|s| s.room_image.hash.as_str())
            }),
            int("room_image_width", Start, |r| {
                r.room_meta().map(|m| m.width)
            }),
            int("room_image_height", Start, |r| {
                r.room_meta().map(|m| m.height)
            }),
            text("room_image_format", Start, |r| {
                r.room_meta().map(|m| m.format.as_str())
            }),
            int("room_image_bytes", Start, |r| {
                r.room_meta().map(|m| m.bytes)
            }),
            text("resolved_facts_hash", Start, |r| {
                r.started().map(|s| s.resolved_facts_hash.as_str())
            }),
            text("resolved_facts_json", Start, |r| {
                r.started().and_then(|s| s.resolved_facts_json.as_deref())
            }),
            text("prompt_pack_hash", Start, |r| {
                r.started().map(|s| s.prompt_pack_hash.as_str())
            }),
            text("prompt_pack_json", Start, |r| {
                r.started().and_then(|s| s.prompt_pack_json.as_deref())
            }),
            int("variant_count", Start, |r| {
                r.started().map(|s| s.variant_count)
            }),
            text("started_event_id", Start, |r| {
                r.start.as_ref().map(|(i, _)| i.event_id)
            }),
            text("status", End, |r| Some(r.status())),
            int("total_duration_ms", End, |r| {
                r.completed().map(|d| d.total_duration_ms)
            }),
            int("success_count", End, |r| {
                r.completed().map(|d| d.success_count)
            }),
            int("fail_count", End, |r| r.completed().map(|d| d.fail_count)),
            int("timeout_count", End, |r| {
                r.completed().map(|d| d.timeout_count)
            }),
            int("completed_at", End, |r| {
                r.done.as_ref().map(|(i, _)| i.occurred_at)
            }),
            text("completed_event_id", End, |r| {
                r.done.as_ref().map(|(i, _)| i.event_id)
            }),
        ],
    )
    .halves(&["started_event_id"], Some(&["completed_event_id"]))
}

/// `variant_results`: a variant's start half and result half.
pub(crate) fn variants<'a>() -> Table<VariantUpsert<'a>> {
    use Part::{End, Ident, Key, Start};
    Table::new(
        "variant_results",
        vec![
            text("run_id", Key, |v: &VariantUpsert<'a>| Some(v.run_id)),
            text("variant_id", Key, |v| Some(v.variant_id)),
            text("shop_id", Ident, |v| Some(v.ident().shop_id)),
            text("request_id", Ident, |v| Some(v.ident().request_id)),
            int("started_at", Start, |v| {
                v.start.as_ref().map(|i| i.occurred_at)
            }),
            text("started_event_id", Start, |v| {
                v.start.as_ref().map(|i| i.event_id)
            }),
            text("status", End, |v| Some(v.status())),
            text("final_prompt_hash", End, |v| {
                v.outcome().map(|r| r.final_prompt_hash.as_str())
            }),
            int("latency_ms", End, |v| v.outcome().map(|r| r.latency_ms)),
            text("output_image_key", End, |v| {
                v.outcome().map(|r| r.output_image_key.as_str())
            }),
            text("output_image_hash", End, |v| {
                v.outcome().map(|r| r.output_image_hash.as_str())
            }),
            text("error_code", End, |v| {
                v.outcome().map(|r| r.error_code.as_str())
            }),
            text("error_message", End, |v| {
                v.outcome().map(|r| r.error_message.as_str())
            }),
            text("error_group", End, |v| v.error_group.as_deref()),
            int("finished_at", End, |v| {
                v.result.as_ref().map(|(i, _)| i.occurred_at)
            }),
            text("result_event_id", End, |v| {
                v.result.as_ref().map(|(i, _)| i.event_id)
            }),
        ],
    )
    .halves(&["started_event_id"], Some(&["result_event_id"]))
}

/// `producers`: the loss ledger; the `ProducerStats` with the highest `producer_seq`
/// wins (the contract: counters are totals, the newest are the truth), the event id
/// breaking a tie; the counts of what was seen accumulate.
pub(crate) fn producers<'a>() -> Table<ProducerUpsert<'a>> {
    use Part::{Greatest, Key, Start, Sum};
    Table::new(
        "producers",
        vec![
            text("producer", Key, |p: &ProducerUpsert<'a>| Some(p.producer)),
            text("service", Start, |p| p.ledger().map(|l| l.service.as_str())),
            int("emitted", Start, |p| p.ledger().map(|l| l.emitted)),
            int("published", Start, |p| p.ledger().map(|l| l.published)),
            int("dropped", Start, |p| p.ledger().map(|l| l.dropped)),
            text("dropped_by_reason", Start, |p| {
                p.ledger().map(|l| l.dropped_by_reason.as_str())
            }),
            int("publish_failures", Start, |p| {
                p.ledger().map(|l| l.publish_failures)
            }),
            int("queue_depth", Start, |p| p.ledger().map(|l| l.queue_depth)),
            int("started_at", Start, |p| p.ledger().map(|l| l.started_at)),
            Column {
                name: "final",
                part: Start,
                value: Value::Bool(|p| p.ledger().map(|l| l.is_final)),
            },
            int("stats_seq", Start, |p| p.stats.as_ref().map(|s| s.seq)),
            text("stats_event_id", Start, |p| {
                p.stats.as_ref().map(|s| s.event_id)
            }),
            int("stats_at", Start, |p| {
                p.stats.as_ref().map(|s| s.occurred_at)
            }),
            int("last_seen_at", Greatest, |p| Some(p.last_seen_at)),
            int("last_received_at", Greatest, |p| Some(p.last_received_at)),
            int("stored_events", Sum, |p| Some(p.stored_events)),
        ],
    )
    .halves(&["stats_seq", "stats_event_id"], None)
}

/// `dead_letters`: refused messages, once per stream sequence.
pub(crate) fn dead_letters<'a>() -> Table<DeadLetterInsert<'a>> {
    use Part::{Key, Once};
    let mut table = Table::new(
        "dead_letters",
        vec![
            text("stream", Key, |d: &DeadLetterInsert<'a>| Some(d.stream)),
            int("stream_seq", Key, |d| Some(clamp(d.origin.stream_seq))),
            text("subject", Once, |d| Some(&d.origin.subject)),
            text("reason", Once, |d| Some(&d.reason)),
            Column {
                name: "raw",
                part: Once,
                value: Value::Bytes(|d| Some(d.raw)),
            },
            int("received_at", Once, |d| Some(d.received_at)),
        ],
    );
    table.generated = &["id"];
    table
}

/// Every table's columns, written and generated: what the round-trip test checks
/// against the database and reads back.
pub fn tables() -> Vec<(&'static str, Vec<&'static str>)> {
    fn all<R>(table: Table<R>) -> (&'static str, Vec<&'static str>) {
        let mut columns: Vec<&'static str> = table.generated.to_vec();
        columns.extend(table.names());
        (table.name, columns)
    }
    vec![
        all(events()),
        all(runs()),
        all(variants()),
        all(producers()),
        all(dead_letters()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_split_where_the_columns_say() {
        let runs = runs();
        let start: Vec<_> = runs.parts(Part::Start).collect();
        let end: Vec<_> = runs.parts(Part::End).collect();
        assert_eq!(start.first(), Some(&"product_asset_id"));
        assert_eq!(start.last(), Some(&"started_event_id"));
        assert_eq!(end.first(), Some(&"status"));
        assert_eq!(end.last(), Some(&"completed_event_id"));
        let variants = variants();
        assert_eq!(
            variants.parts(Part::Start).collect::<Vec<_>>(),
            ["started_at", "started_event_id"]
        );
        assert_eq!(variants.parts(Part::End).last(), Some("result_event_id"));
        assert_eq!(producers().parts(Part::Start).last(), Some("stats_at"));
        // The event-id column of each half is the last one it sets, but it is
        // compared against the old row, so its position does not matter for SQL.
        assert!(runs
            .on_conflict(Syntax::Sqlite)
            .contains("status = CASE WHEN (excluded.completed_event_id"));
    }

    #[test]
    fn halves_follow_the_parts_of_the_columns() {
        let runs = runs().on_conflict(Syntax::Sqlite);
        assert!(runs.starts_with("ON CONFLICT (run_id) DO UPDATE SET shop_id = CASE WHEN"));
        assert!(runs.contains("status = CASE WHEN (excluded.completed_event_id"));
        assert!(runs.contains("model = CASE WHEN (excluded.started_event_id"));
        assert!(runs.contains("room_image_bytes = CASE WHEN (excluded.started_event_id"));
        assert!(!runs.contains("run_id = CASE"));
        let variants = variants().on_conflict(Syntax::Postgres);
        assert!(variants.starts_with("ON CONFLICT (run_id, variant_id) DO UPDATE SET"));
        assert!(variants.contains("started_at = CASE WHEN (excluded.started_event_id"));
        let producers = producers().on_conflict(Syntax::Postgres);
        assert!(producers
            .contains("last_seen_at = GREATEST(producers.last_seen_at, excluded.last_seen_at)"));
        assert!(
            producers.contains("stored_events = producers.stored_events + excluded.stored_events")
        );
        // The newest stats are the highest producer_seq, the event id breaking a tie.
        assert!(producers.contains(
            "final = CASE WHEN (excluded.stats_seq IS NOT NULL AND (producers.stats_seq IS NULL \
             OR (excluded.stats_seq, excluded.stats_event_id) > \
             (producers.stats_seq, producers.stats_event_id)))"
        ));
        assert_eq!(
            events().on_conflict(Syntax::Sqlite),
            "ON CONFLICT (event_id) DO NOTHING"
        );
        assert_eq!(
            dead_letters().on_conflict(Syntax::Postgres),
            "ON CONFLICT (stream, stream_seq) DO NOTHING"
        );
    }

    #[test]
    fn unnest_has_one_typed_array_per_column() {
        let sql = producers().unnest_upsert();
        assert!(sql.starts_with(
            "INSERT INTO producers (producer, service, emitted, published, dropped, \
             dropped_by_reason, publish_failures, queue_depth, started_at, final, \
             stats_seq, stats_event_id, stats_at, last_seen_at, last_received_at, \
             stored_events) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]"
        ));
        assert!(sql.contains(
            "$10::boolean[], $11::bigint[], $12::text[], $13::bigint[], $14::bigint[], \
             $15::bigint[], $16::bigint[])"
        ));
        assert!(dead_letters().unnest_upsert().contains("$5::bytea[]"));
    }
}
