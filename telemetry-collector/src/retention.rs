//! Retention: delete what is older than a cutoff, in small batches.
//!
//! - `telemetry-collector prune --older-than 30d [--dry-run]` once, from the shell;
//! - `COLLECTOR_RETENTION=30d` on `serve` / `ingest`: the same prune every
//!   [`DEFAULT_RETENTION_INTERVAL`], beside ingest.
//!
//! Each step deletes at most [`DEFAULT_PRUNE_BATCH`] rows per table in one short
//! transaction and then pauses [`PRUNE_PAUSE`], so ingest (which shares SQLite's single
//! writer) waits at most one small step, never a whole prune. What "older" means per
//! table is written down in `store::ops`: runs by `started_at` with their variants,
//! events by `occurred_at`, dead letters by `received_at`; the `producers` ledger is
//! kept.

use std::sync::Arc;
use std::time::Duration;

use service_kit::{now_ms, ExposeSecret as _};
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseArgs;
use crate::store::{self, PruneCounts, Store, StoreError};

/// Rows per table deleted in one transaction (`COLLECTOR_PRUNE_BATCH_SIZE`).
pub const DEFAULT_PRUNE_BATCH: i64 = 1_000;
/// Upper bound of the batch knob: beyond it one step could hold the writer too long.
pub const MAX_PRUNE_BATCH: i64 = 50_000;
/// How often `serve` / `ingest` prune when retention is on
/// (`COLLECTOR_RETENTION_INTERVAL`).
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(3_600);
/// Pause between two steps, so queued ingest batches get the writer in between.
pub const PRUNE_PAUSE: Duration = Duration::from_millis(20);

/// Parses an age like `30d`, `12h`, `90m`, `45s` or `2w` (one number, one unit).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h, d or w (e.g. 30d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not an age like 30d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h, d or w")),
    };
    number
        .checked_mul(seconds)
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} must be greater than zero and reasonable"))
}

/// The cutoff (unix ms) for "older than `age`" now.
pub fn cutoff(age: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

/// Deletes everything older than `cutoff` in steps of `batch` rows per table until a
/// step finds nothing, or `stop` fires (the step in flight finishes).
pub async fn prune(
    store: &dyn Store,
    cutoff: i64,
    batch: i64,
    stop: &CancellationToken,
) -> Result<PruneCounts, StoreError> {
    let mut total = PruneCounts::default();
    loop {
        let step = store
            .prune_step(cutoff, batch.clamp(1, MAX_PRUNE_BATCH))
            .await?;
        total.add(&step);
        if step.total() == 0 || stop.is_cancelled() {
            return Ok(total);
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(total),
            _ = tokio::time::sleep(PRUNE_PAUSE) => {}
        }
    }
}

/// The periodic prune of `serve` / `ingest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Rows older than this go.
    pub max_age: Duration,
    /// Time between two prunes.
    pub interval: Duration,
    /// Rows per table per step.
    pub batch: i64,
}

impl Retention {
    /// Prunes now and then every `interval` until `stop`. A database error is logged
    /// and retried at the next tick: retention must never stop ingest.
    pub async fn run(self, store: Arc<dyn Store>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let cutoff = cutoff(self.max_age);
            match prune(store.as_ref(), cutoff, self.batch, &stop).await {
                Ok(done) if done.total() > 0 => tracing::info!(
                    runs = done.runs,
                    variants = done.variants,
                    events = done.events,
                    dead_letters = done.dead_letters,
                    cutoff,
                    "retention pruned old rows"
                ),
                Ok(_) => tracing::debug!(cutoff, "retention: nothing to prune"),
                Err(err) => {
                    tracing::warn!(error = %err, "retention prune failed; retrying next interval")
                }
            }
        }
    }
}

/// `telemetry-collector prune`.
#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    /// Database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Delete rows older than this age: 30d, 12h, 90m, 45s, 2w.
    #[arg(long = "older-than", value_parser = parse_age)]
    pub older_than: Duration,
    /// Only count what would be deleted, per table.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Rows per table deleted in one transaction.
    #[arg(long = "batch-size", env = "COLLECTOR_PRUNE_BATCH_SIZE", default_value_t = DEFAULT_PRUNE_BATCH,
          value_parser = clap::value_parser!(i64).range(1..=MAX_PRUNE_BATCH))]
    pub batch_size: i64,
}

/// Runs `prune` and prints the counts per table on stdout.
pub async fn run_prune(args: &PruneArgs) -> Result<PruneCounts, StoreError> {
    let settings = args.database.settings();
    let store = store::connect(settings.database_url.expose_secret(), &settings.store).await?;
    store.migrate().await?;
    let cutoff = cutoff(args.older_than);
    let result = if args.dry_run {
        store.prune_counts(cutoff).await
    } else {
        prune(
            store.as_ref(),
            cutoff,
            args.batch_size,
            &CancellationToken::new(),
        )
        .await
    };
    store.close().await;
    let counts = result?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    println!("cutoff {cutoff} (unix ms); {verb}:");
    println!("  render_runs      {}", counts.runs);
    println!("  variant_results  {}", counts.variants);
    println!("  monitor_events   {}", counts.events);
    println!("  dead_letters     {}", counts.dead_letters);
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_their_unit() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_age("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["30", "d", "30x", "0d", "-1d", "99999999999999999w"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
