//! Storage: one small store per SQL dialect behind the [`Store`] trait, chosen by the
//! database URL's scheme ([`connect`]).
//!
//! The dialects differ only where the databases do ([`Dialect`]): migrations, the
//! batch write (multi-row `INSERT`s on SQLite's single writer, `UNNEST` arrays on
//! Postgres), the overview's query, and connection handling. Everything else, reads
//! and operations, is written once ([`queries`]), and the tables are described once
//! as data ([`schema`]) from which the write path's SQL is derived.
//!
//! A [`Batch`] is written in ONE transaction: events (`INSERT .. ON CONFLICT DO
//! NOTHING`), the order-free projection into `render_runs` / `variant_results`
//! ([`projection`]), the loss ledger in `producers`, and dead letters. Only rows that
//! were new count as stored, so a redelivered batch changes nothing.

pub mod error_groups;
mod fault;
pub mod isolate;
pub(crate) mod monitor_reads;
pub mod normalise;
pub(crate) mod ops;
pub(crate) mod overview;
mod postgres;
pub(crate) mod projection;
mod queries;
pub mod rollups;
pub mod schema;
mod sqlite;
pub mod stale;
mod writer;

use std::time::Duration;

use serde::Serialize;
use sqlx::Pool;

use crate::domain::{DeadLetter, Fact};

pub use error_groups::{ErrorFilter, ErrorGroup, ErrorGroups, ErrorSample, ErrorSampleFilter};
pub use isolate::{write_isolating, Isolated};
pub use monitor_reads::{
    EventCursor, EventFilter, RunFilter, RunOrder, MAX_SHOP_BRANCHES, MAX_SORTED_ERROR_VARIANTS,
};
pub use ops::PruneCounts;
pub use overview::{
    latency_bucket, CellStats, GroupStats, Overview, OverviewFilter, StatsRow, LATENCY_BUCKET_SQL,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use stale::StaleCutoff;

/// Default connections in a pool (Postgres), or readers (SQLite; it has one writer).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// Default batches written at once on Postgres (`DATABASE_WRITERS`), each in its own
/// transaction on its own connection. With one, the collector idles while each commit
/// waits for its WAL flush (~19% of the CPU idle during the ingest bench's Postgres
/// drain); a second transaction writes the next batch meanwhile. Batches commute (the
/// projection gives the same rows in any order), so they may commit in any order.
/// SQLite has one writer and ignores it.
pub const DEFAULT_WRITERS: u32 = 2;
/// Upper bound of `DATABASE_WRITERS`: each holds a batch unacked.
pub const MAX_WRITERS: u32 = 8;
/// Default SQLite busy timeout: how long a write waits for a lock held elsewhere.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default wait for a pooled connection (also bounds a connect to a dead server).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Runs one API page returns unless asked otherwise.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Most runs one API page returns.
pub const MAX_PAGE_SIZE: i64 = 500;
/// Most events a run's detail includes.
pub const MAX_RUN_EVENTS: i64 = 1_000;

/// A database failure. [`StoreError::is_permanent`] tells the two kinds apart: a
/// transient one (outage, disk full, lock) is retried without end and nothing is acked;
/// a permanent one (the database refuses these rows) is isolated ([`isolate`]) and the
/// refused envelopes become dead letters.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres:`, or does not parse.
    #[error("unsupported DATABASE_URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// Anything the driver reports.
    #[error("{cause}: {0}", cause = fault::cause(.0))]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database refused the data itself, so that writing the same rows
    /// again fails again (see [`fault`] for the classes). Everything else, our own
    /// bugs included, is transient: retried, never dead-lettered.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Database(err) => fault::is_permanent(err),
            Self::UnsupportedUrl(_) | Self::Migrate(_) => false,
        }
    }
}

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: u32,
    /// See [`DEFAULT_WRITERS`].
    pub writers: u32,
    /// See [`DEFAULT_BUSY_TIMEOUT`].
    pub busy_timeout: Duration,
    /// See [`DEFAULT_ACQUIRE_TIMEOUT`].
    pub acquire_timeout: Duration,
    /// SQLite's writer commits with `synchronous=FULL` (one fsync per batch), so a
    /// power loss cannot drop a batch that was acked. No setting turns it off; only
    /// the ingest bench does, to print what durability costs.
    pub durable_commits: bool,
    /// Ingest keeps the time-series rollups ([`rollups`]). No setting turns it off
    /// either: only the ingest bench does, to print what they cost. Off, the rollups
    /// go stale and the overview is wrong.
    pub rollups: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            writers: DEFAULT_WRITERS,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            durable_commits: true,
            rollups: true,
        }
    }
}

/// What one batch holds: parsed facts and dead letters, from one stream.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Stream name (dead letters are unique per stream and sequence).
    pub stream: String,
    /// When the collector took the batch, unix ms.
    pub received_at: i64,
    /// Good envelopes.
    pub facts: Vec<Fact>,
    /// Refused messages.
    pub dead: Vec<DeadLetter>,
}

/// What writing a batch changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Envelopes stored for the first time.
    pub stored: u64,
    /// Envelopes already stored (redelivery, duplicates).
    pub duplicates: u64,
    /// Dead letters stored for the first time.
    pub dead_letters: u64,
    /// Envelopes the projection refused, now dead letters, with why (an event id
    /// reused for other bytes, a clock far ahead; see [`projection::Prepared`]).
    pub refused: Vec<(crate::domain::Origin, String)>,
}

/// A `render_runs` row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RunRecord {
    pub run_id: String,
    pub shop_id: String,
    pub request_id: String,
    pub product_asset_id: Option<String>,
    pub room_session_id: Option<String>,
    pub prompt_pack_version: Option<String>,
    pub model: Option<String>,
    pub product_image_hash: Option<String>,
    pub product_image_width: Option<i64>,
    pub product_image_height: Option<i64>,
    pub product_image_format: Option<String>,
    pub product_image_bytes: Option<i64>,
    pub room_image_hash: Option<String>,
    pub room_image_width: Option<i64>,
    pub room_image_height: Option<i64>,
    pub room_image_format: Option<String>,
    pub room_image_bytes: Option<i64>,
    pub resolved_facts_hash: Option<String>,
    pub resolved_facts_json: Option<String>,
    pub prompt_pack_hash: Option<String>,
    pub prompt_pack_json: Option<String>,
    pub variant_count: Option<i64>,
    pub started_at: i64,
    pub started_event_id: Option<String>,
    pub status: String,
    pub total_duration_ms: Option<i64>,
    pub success_count: Option<i64>,
    pub fail_count: Option<i64>,
    pub timeout_count: Option<i64>,
    pub completed_at: Option<i64>,
    pub completed_event_id: Option<String>,
}

/// A `variant_results` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct VariantRecord {
    pub run_id: String,
    pub variant_id: String,
    pub shop_id: String,
    pub request_id: String,
    pub started_at: Option<i64>,
    pub started_event_id: Option<String>,
    pub status: String,
    pub final_prompt_hash: Option<String>,
    pub latency_ms: Option<i64>,
    pub output_image_key: Option<String>,
    pub output_image_hash: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// `error_message` normalised ([`normalise`]) when the result failed or timed
    /// out: what error groups group by.
    pub error_group: Option<String>,
    pub finished_at: Option<i64>,
    pub result_event_id: Option<String>,
}

/// A `monitor_events` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EventRecord {
    pub event_id: String,
    pub kind: String,
    pub event_type: String,
    pub source: Option<String>,
    pub shop_id: String,
    pub request_id: String,
    pub run_id: Option<String>,
    pub variant_id: Option<String>,
    pub producer: String,
    pub producer_seq: i64,
    pub occurred_at: i64,
    pub received_at: i64,
    pub stream_seq: i64,
    pub subject: String,
    pub payload: Option<String>,
    /// The first 16 bytes of the SHA-256 of the envelope's bytes (`None` on rows stored
    /// before it was kept): how a reused event id is told from a redelivery.
    #[serde(skip)]
    pub body_hash: Option<Vec<u8>>,
}

/// A `dead_letters` row. `Serialize` (as on the other records) serves the tests'
/// column-by-column comparisons only: `/api/v1` answers with the monitor's own types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DeadLetterRecord {
    pub id: i64,
    pub stream: String,
    pub stream_seq: i64,
    pub subject: String,
    pub reason: String,
    #[serde(skip)]
    pub raw: Vec<u8>,
    pub received_at: i64,
}

/// A `producers` row: the loss ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ProducerRecord {
    pub producer: String,
    pub service: Option<String>,
    pub emitted: Option<i64>,
    pub published: Option<i64>,
    pub dropped: Option<i64>,
    pub dropped_by_reason: Option<String>,
    pub publish_failures: Option<i64>,
    pub queue_depth: Option<i64>,
    pub started_at: Option<i64>,
    #[sqlx(rename = "final")]
    pub is_final: Option<bool>,
    /// `producer_seq` of the winning stats (the highest).
    pub stats_seq: Option<i64>,
    pub stats_event_id: Option<String>,
    /// When the winning stats were taken (producer's clock).
    pub stats_at: Option<i64>,
    /// Latest `occurred_at` stored from the producer (its clock).
    pub last_seen_at: i64,
    /// When the collector last received anything from it (collector's clock).
    pub last_received_at: i64,
    pub stored_events: i64,
}

/// A run with its variants and the events of its request (or of the run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDetail {
    pub run: RunRecord,
    pub variants: Vec<VariantRecord>,
    pub events: Vec<EventRecord>,
}

/// What one SQL dialect does its own way; every such dialect is a [`Store`], whose
/// other methods are shared ([`queries`]).
#[async_trait::async_trait]
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type Db: sqlx::Database;
    /// `sqlite` or `postgres`.
    const NAME: &'static str;
    /// The pool of reads (the monitor's, readiness).
    fn reader(&self) -> &Pool<Self::Db>;
    /// The pool of operations (retention, dead letters): SQLite's single writer, so
    /// they never wait on a lock another connection of ours holds.
    fn operator(&self) -> &Pool<Self::Db>;
    /// See [`Store::writers`].
    fn writers(&self) -> usize;
    /// See [`Store::migrate`].
    async fn migrate(&self) -> Result<(), StoreError>;
    /// See [`Store::write`].
    async fn write(&self, batch: &Batch) -> Result<WriteReport, StoreError>;
    /// See [`Store::ping`].
    async fn ping(&self) -> Result<(), StoreError>;
    /// See [`Store::close`].
    async fn close(&self);
    /// The overview's rows read from `render_runs` and `variant_results` (fine latency
    /// buckets): each database aggregates its own way. [`Store::monitor_stats`] reads
    /// only a window's sub-minute edges so; whole minutes and hours come from the
    /// rollups ([`rollups::Plan`]).
    async fn overview_rows(
        &self,
        filter: &OverviewFilter,
        stale: StaleCutoff,
    ) -> Result<Vec<StatsRow>, StoreError>;
    /// See [`Store::monitor_error_groups`] ([`error_groups`]).
    async fn error_groups(&self, filter: &ErrorFilter) -> Result<ErrorGroups, StoreError>;
    /// See [`Store::monitor_error_samples`].
    async fn error_samples(
        &self,
        filter: &ErrorSampleFilter,
    ) -> Result<Vec<ErrorSample>, StoreError>;
    /// Fills `error_group` on rows stored before it; returns how many
    /// ([`error_groups::backfill_sqlite`]).
    async fn backfill_error_groups(&self) -> Result<u64, StoreError>;
    /// Deletes at most `limit` runs started before `cutoff` with their variants, in
    /// the caller's transaction, subtracting them from the rollups; returns (runs,
    /// variants) deleted.
    async fn prune_runs(
        &self,
        conn: &mut <Self::Db as sqlx::Database>::Connection,
        cutoff: i64,
        limit: i64,
    ) -> Result<(u64, u64), StoreError>;
    /// In the caller's transaction, keeps batches from adding to the rollups until it
    /// ends (the recount replaces them).
    async fn lock_rollups(
        &self,
        conn: &mut <Self::Db as sqlx::Database>::Connection,
    ) -> Result<(), StoreError>;
}

/// What the health strip reads from the database ([`Store::health_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthCounts {
    /// Start of the latest run (unix ms); `None` when no run has a start.
    pub last_run_at: Option<i64>,
    /// Runs started in the recent window.
    pub runs_recent: i64,
    /// Dead letters received in the last day.
    pub dead_letters_24h: i64,
}

/// One dialect's store.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn dialect(&self) -> &'static str;
    /// Applies the embedded migrations, then fills what a migration cannot compute
    /// in SQL: the error groups of variants stored before them (a no-op once done).
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Writes a batch in one transaction.
    async fn write(&self, batch: &Batch) -> Result<WriteReport, StoreError>;
    /// How many [`Store::write`] calls can make progress at once (the ingest loop
    /// keeps that many batches in flight).
    fn writers(&self) -> usize;
    /// A cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// One run with its variants and events.
    async fn run(&self, run_id: &str) -> Result<Option<RunDetail>, StoreError>;
    /// Every producer's ledger.
    async fn producers(&self) -> Result<Vec<ProducerRecord>, StoreError>;
    /// How many envelopes are stored.
    async fn event_count(&self) -> Result<i64, StoreError>;
    /// The health strip's counts: the last run's start, runs started since
    /// `recent_from`, dead letters received since `day_from` (small indexed reads).
    async fn health_counts(
        &self,
        recent_from: i64,
        day_from: i64,
    ) -> Result<HealthCounts, StoreError>;
    /// Closes the pools.
    async fn close(&self);

    // --- monitor reads ---
    /// A filtered page of runs, newest (or longest) first (the index of the filter
    /// serves it), with their stored status (see [`RunFilter::stale_before`] for
    /// `stale`).
    async fn monitor_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;
    /// A filtered page of events, newest first.
    async fn monitor_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError>;
    /// A page of dead letters, newest first, with ids below `before`.
    async fn monitor_dead_letters(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError>;
    /// Rates and latency percentiles per model, prompt pack and pair over runs started
    /// in the filter's window (of its model when set); variants without a result in
    /// runs started before `stale` count as stale.
    async fn monitor_stats(
        &self,
        filter: &OverviewFilter,
        stale: StaleCutoff,
    ) -> Result<Overview, StoreError>;
    /// Runs and variants by status, and each model's failure rate and success-only
    /// latency, per step of the filter's window, from the rollups ([`rollups`]).
    async fn monitor_series(
        &self,
        filter: &rollups::SeriesFilter,
        stale: StaleCutoff,
    ) -> Result<rollups::TimeSeries, StoreError>;
    /// Failed and timed-out variants of runs started in the filter's window, grouped
    /// by model, error code and normalised message ([`error_groups`]).
    async fn monitor_error_groups(&self, filter: &ErrorFilter) -> Result<ErrorGroups, StoreError>;
    /// One error group's latest variants, with their runs.
    async fn monitor_error_samples(
        &self,
        filter: &ErrorSampleFilter,
    ) -> Result<Vec<ErrorSample>, StoreError>;

    // --- operations ---
    /// Rows a prune with this cutoff (unix ms, exclusive) would delete, per table
    /// (see `store::ops` for what "older" means per table).
    async fn prune_counts(&self, cutoff: i64) -> Result<PruneCounts, StoreError>;
    /// Deletes at most `limit` old rows per table in one short transaction.
    async fn prune_step(&self, cutoff: i64, limit: i64) -> Result<PruneCounts, StoreError>;
    /// Replaces the rollups with a recount of the stored runs and variants, in one
    /// transaction; returns the rows written. Start-up does it once, on a database
    /// whose rows predate the rollups.
    async fn recount_rollups(&self) -> Result<u64, StoreError>;
    /// Where the rollups differ from a recount (empty when they agree): what the
    /// property tests check, and what an operator can ask of a suspect database.
    async fn rollup_drift(&self) -> Result<rollups::Drift, StoreError>;
    /// One dead letter.
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, StoreError>;
    /// Dead letters with `id > after_id`, oldest first (keyset paging).
    async fn dead_letters_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError>;
    /// In one transaction: removes the `resolved` dead letters and sets the reason of
    /// the `failing` ones.
    async fn settle_dead_letters(
        &self,
        resolved: &[i64],
        failing: &[(i64, String)],
    ) -> Result<(), StoreError>;
    /// Deletes at most `limit` dead letters, oldest first; returns how many.
    async fn purge_dead_letters(&self, limit: i64) -> Result<u64, StoreError>;
}

/// Opens the store the URL names (without migrating).
pub async fn connect(
    url: &str,
    options: &StoreOptions,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStore::connect(url, options).await?,
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(
            PostgresStore::connect(url, options).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
