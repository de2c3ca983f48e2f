//! Operations queries (retention, dead-letter handling), shared by both dialects
//! (`$n` placeholders work in both). Expanded by [`ops_queries!`] in each dialect's
//! inherent `impl`, on the pool that may write, and reached through the `Store` trait.
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
//! Each [`ops_queries!`] prune step deletes at most `limit` rows per table, oldest
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

/// Inherent methods `ops_*` on a store with pool field `$pool`.
macro_rules! ops_queries {
    ($pool:ident) => {
        async fn ops_prune_counts(
            &self,
            cutoff: i64,
        ) -> Result<$crate::store::PruneCounts, $crate::store::StoreError> {
            let count = |sql: String| {
                let pool = &self.$pool;
                async move {
                    let (n,): (i64,) = sqlx::query_as(&sql).bind(cutoff).fetch_one(pool).await?;
                    Ok::<u64, $crate::store::StoreError>(n.max(0) as u64)
                }
            };
            let runs =
                count("SELECT count(*) FROM render_runs WHERE started_at < $1".to_owned()).await?;
            let with_runs = count(
                "SELECT count(*) FROM variant_results WHERE run_id IN \
                 (SELECT run_id FROM render_runs WHERE started_at < $1)"
                    .to_owned(),
            )
            .await?;
            let orphans = count(format!(
                "SELECT count(*) {}",
                $crate::store::ops::ORPHAN_VARIANTS
            ))
            .await?;
            let events =
                count("SELECT count(*) FROM monitor_events WHERE occurred_at < $1".to_owned())
                    .await?;
            let dead_letters =
                count("SELECT count(*) FROM dead_letters WHERE received_at < $1".to_owned())
                    .await?;
            Ok($crate::store::PruneCounts {
                runs,
                variants: with_runs + orphans,
                events,
                dead_letters,
            })
        }

        async fn ops_prune_step(
            &self,
            cutoff: i64,
            limit: i64,
        ) -> Result<$crate::store::PruneCounts, $crate::store::StoreError> {
            use $crate::store::ops::{OLD_RUNS, ORPHAN_VARIANTS};
            let mut done = $crate::store::PruneCounts::default();
            let mut tx = self.$pool.begin().await?;
            // Variants first, while their runs still say which ones are old.
            done.variants = sqlx::query(&format!(
                "DELETE FROM variant_results WHERE run_id IN ({OLD_RUNS})"
            ))
            .bind(cutoff)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            done.runs = sqlx::query(&format!(
                "DELETE FROM render_runs WHERE run_id IN ({OLD_RUNS})"
            ))
            .bind(cutoff)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if (done.runs as i64) < limit {
                // Old runs are gone: now the (rare) variants that never had a run row.
                // Scanned only here, not on every step.
                done.variants += sqlx::query(&format!(
                    "DELETE FROM variant_results WHERE (run_id, variant_id) IN \
                     (SELECT v.run_id, v.variant_id {ORPHAN_VARIANTS} LIMIT $2)"
                ))
                .bind(cutoff)
                .bind(limit)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            done.events = sqlx::query(
                "DELETE FROM monitor_events WHERE event_id IN (SELECT event_id \
                 FROM monitor_events WHERE occurred_at < $1 ORDER BY occurred_at, event_id \
                 LIMIT $2)",
            )
            .bind(cutoff)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            done.dead_letters = sqlx::query(
                "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters \
                 WHERE received_at < $1 ORDER BY id LIMIT $2)",
            )
            .bind(cutoff)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(done)
        }

        async fn ops_dead_letter(
            &self,
            id: i64,
        ) -> Result<Option<$crate::store::DeadLetterRecord>, $crate::store::StoreError> {
            Ok(sqlx::query_as("SELECT * FROM dead_letters WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.$pool)
                .await?)
        }

        async fn ops_dead_letters_after(
            &self,
            after_id: i64,
            limit: i64,
        ) -> Result<Vec<$crate::store::DeadLetterRecord>, $crate::store::StoreError> {
            Ok(
                sqlx::query_as("SELECT * FROM dead_letters WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await?,
            )
        }

        async fn ops_settle_dead_letters(
            &self,
            resolved: &[i64],
            failing: &[(i64, String)],
        ) -> Result<(), $crate::store::StoreError> {
            let mut tx = self.$pool.begin().await?;
            for id in resolved {
                sqlx::query("DELETE FROM dead_letters WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            for (id, reason) in failing {
                sqlx::query("UPDATE dead_letters SET reason = $1 WHERE id = $2")
                    .bind(reason)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn ops_purge_dead_letters(
            &self,
            limit: i64,
        ) -> Result<u64, $crate::store::StoreError> {
            Ok(sqlx::query(
                "DELETE FROM dead_letters WHERE id IN \
                 (SELECT id FROM dead_letters ORDER BY id LIMIT $1)",
            )
            .bind(limit)
            .execute(&self.$pool)
            .await?
            .rows_affected())
        }
    };
}
pub(crate) use ops_queries;
