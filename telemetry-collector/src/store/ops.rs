//! Operations queries (retention, dead-letter handling), shared by both dialects
//! (`$n` placeholders work in both) and run on the pool that may write
//! ([`Dialect::operator`](super::Dialect::operator)); the `Store` methods that run them
//! are in [`super::queries`].
//!
//! What "older than the cutoff" means per table (the cutoff is unix ms, exclusive):
//! - `render_runs`: `started_at < cutoff` (the start time, or the completion's time
//!   while no start arrived: the list's sort key); its `variant_results` go with it.
//! - `variant_results` whose run row does not exist (a start that never arrived):
//!   by their own time, the start's or else the result's.
//! - `monitor_events`: `occurred_at < cutoff` (producer time, indexed).
//! - `dead_letters`: `received_at < cutoff` (they may have no valid time of their own).
//! - `producers` is kept: one row per producer instance, the loss ledger.
//!
//! Each prune step ([`Store::prune_step`](super::Store::prune_step)) deletes at most `limit` rows per table, oldest
//! first, in one short transaction, so a running ingest waits at most one step. A late
//! event for a run being pruned may make Postgres abort one of the two transactions
//! (deadlock detection); ingest retries its batch and retention retries next interval,
//! and the late event re-creates a partial run row that the next prune removes.

use serde::Serialize;

/// Rows per table: what a prune would delete (dry run) or did delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneCounts {
    /// `render_runs` rows.
    pub runs: u64,
    /// `variant_results` rows (of those runs, and orphans by their own time).
    pub variants: u64,
    /// `monitor_events` rows.
    pub events: u64,
    /// `dead_letters` rows.
    pub dead_letters: u64,
}

impl PruneCounts {
    /// Sum over all tables.
    pub fn total(&self) -> u64 {
        self.runs + self.variants + self.events + self.dead_letters
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &PruneCounts) {
        self.runs += other.runs;
        self.variants += other.variants;
        self.events += other.events;
        self.dead_letters += other.dead_letters;
    }
}

/// Runs older than `$1`, oldest first, at most `$2` (a subquery both deletes share).
pub(crate) const OLD_RUNS: &str = "SELECT run_id FROM render_runs WHERE started_at < $1 \
     ORDER BY started_at, run_id LIMIT $2";

/// Variants without a run row whose own time is older than `$1`.
pub(crate) const ORPHAN_VARIANTS: &str = "FROM variant_results v \
     WHERE COALESCE(v.started_at, v.finished_at) < $1 \
     AND NOT EXISTS (SELECT 1 FROM render_runs r WHERE r.run_id = v.run_id)";
