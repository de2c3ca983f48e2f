//! Stale runs: a run whose renderer died (kill -9, OOM, a lost machine) never sends
//! its completion, so its row says `running` for ever. The monitor shows such a run as
//! `stale` once it has been `running` for longer than `COLLECTOR_STALE_RUN_AFTER`
//! ([`DEFAULT_STALE_RUN_AFTER`]) after its start.
//!
//! Staleness is derived when a run is read, from the stored status and the time; it is
//! never written. The row keeps `running`, so a completion that arrives late (a
//! backlog drained after an outage, a renderer that was only slow) still wins and the
//! run shows its terminal status from then on: nothing is lost and nothing has to be
//! undone. The time compared is the run's start (`started_at`, the sort key every
//! runs index already has), so `status=stale` and `status=running` stay index ranges.

use std::time::Duration;

/// The status a stored `running` run is shown with once it is stale.
pub const STALE: &str = "stale";
/// The stored status of a run (or variant) whose end has not been seen.
pub const RUNNING: &str = "running";

/// How long after its start a run still `running` is shown as stale
/// (`COLLECTOR_STALE_RUN_AFTER`): 10 minutes. The renderer's longest normal run is
/// its render-slot wait (`RENDER_QUEUE_WAIT_MS`, 5 s) plus two waves of variants at
/// the variant timeout (8 variants at most, 4 at once, 60 s each): about 2 minutes.
/// Five times that leaves room for a renderer's clock running behind the collector's
/// and for a few minutes of ingest lag, so a run that is only slow or late is not
/// called stale; raise it with the renderer's timeouts.
pub const DEFAULT_STALE_RUN_AFTER: Duration = Duration::from_secs(10 * 60);
/// Shortest `COLLECTOR_STALE_RUN_AFTER`: the setting's unit is whole seconds.
pub const MIN_STALE_RUN_AFTER: Duration = Duration::from_secs(1);
/// Longest `COLLECTOR_STALE_RUN_AFTER`: past a week a run without completion has
/// been stale for longer than the stream keeps its messages (7 days), so no late
/// completion can come any more.
pub const MAX_STALE_RUN_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// The moment (unix ms) before which a run still `running` at read time has started
/// to be stale: `now - COLLECTOR_STALE_RUN_AFTER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleCutoff(pub i64);

impl StaleCutoff {
    /// The cutoff at `now_ms` for runs stale after `after`.
    pub fn at(now_ms: i64, after: Duration) -> Self {
        let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        Self(now_ms.saturating_sub(after))
    }

    /// Whether a run with this stored status and start is stale.
    pub fn is_stale(self, status: &str, started_at: i64) -> bool {
        status == RUNNING && started_at < self.0
    }

    /// The status a run is shown with: [`STALE`] when stale, else the stored one.
    pub fn shown(self, status: &str, started_at: i64) -> &str {
        if self.is_stale(status, started_at) {
            STALE
        } else {
            status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_runs_started_before_the_cutoff_are_stale() {
        let cutoff = StaleCutoff::at(1_000_000, Duration::from_secs(600));
        assert_eq!(cutoff, StaleCutoff(400_000));
        assert_eq!(cutoff.shown("running", 399_999), "stale");
        assert_eq!(cutoff.shown("running", 400_000), "running");
        assert_eq!(cutoff.shown("partial", 0), "partial");
        assert_eq!(StaleCutoff::at(0, Duration::MAX), StaleCutoff(-i64::MAX));
    }
}
