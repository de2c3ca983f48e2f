//! The runs in progress, and how shutdown ends them.
//!
//! A run is a task of its own, so a shopper who hangs up does not leave it without a
//! completion. For the same reason, waiting for the HTTP connections to close at
//! shutdown does not wait for the runs: a run whose client left has no connection. Left
//! to the end of the process, such a run would stop mid-render without a completion
//! and stay `running` in the collector for good. [`Runs`] keeps track of every run task
//! so shutdown can wait for them ([`Runs::drain`]), and interrupts the ones still going
//! at the render drain deadline: each then records its unfinished variants as FAILED
//! with `ERROR_CODE_INTERRUPTED` and completes as `RUN_STATUS_INTERRUPTED`, at once and
//! before the telemetry flush, so that record reaches the broker too.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The runs in progress. Cheap to clone: every clone sees the same runs.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every run task, until it has ended.
    tracker: TaskTracker,
    /// Cancelled at the render drain deadline: the runs still going stop and record
    /// their interruption.
    interrupt: CancellationToken,
    /// Runs that ended as interrupted.
    interrupted: AtomicU64,
}

/// How the runs in progress at shutdown ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Runs in progress when shutdown began.
    pub in_progress: usize,
    /// Runs that ended as interrupted.
    pub interrupted: u64,
    /// Runs still going when shutdown gave up waiting for them to record their
    /// interruption (0 unless something is wrong: an interrupted run records its end at
    /// its next poll).
    pub abandoned: usize,
}

impl Runs {
    /// Runs `run` as a task of its own, tracked until it ends.
    pub fn spawn<F>(&self, run: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.tracker.spawn(run)
    }

    /// The token a run watches at every await: cancelled when shutdown interrupts the
    /// runs still in progress.
    pub fn interrupt(&self) -> &CancellationToken {
        &self.inner.interrupt
    }

    /// Counts a run that ended as interrupted.
    pub fn record_interrupted(&self) {
        self.inner.interrupted.fetch_add(1, Relaxed);
    }

    /// Runs in progress now.
    pub fn in_progress(&self) -> usize {
        self.inner.tracker.len()
    }

    /// Waits until `deadline` for the runs in progress (and for any a request already
    /// being served still starts) to end; then interrupts the rest and waits up to
    /// `record_within` for them to record their interruption. Called again, it waits
    /// for the runs started since (a request that got its render slot late), and
    /// interrupts them at once if `deadline` has passed.
    pub async fn drain(&self, deadline: Instant, record_within: Duration) -> Drained {
        let tracker = &self.inner.tracker;
        // Closed, `wait` resolves once no run is left; runs can still be added.
        tracker.close();
        let in_progress = tracker.len();
        let mut abandoned = 0;
        if tokio::time::timeout_at(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                runs = tracker.len(),
                "renders still in progress at the render drain deadline \
                 (SHUTDOWN_RENDER_DRAIN_MS); interrupting them"
            );
            self.inner.interrupt.cancel();
            if tokio::time::timeout(record_within, tracker.wait())
                .await
                .is_err()
            {
                abandoned = tracker.len();
                tracing::error!(
                    runs = abandoned,
                    "interrupted renders did not record their end in time; they stay running in the monitor"
                );
            }
        }
        Drained {
            in_progress,
            interrupted: self.inner.interrupted.load(Relaxed),
            abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_ms(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn drain_waits_for_runs_that_end_in_time() {
        let runs = Runs::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = runs.spawn(async move { rx.await.is_ok() });
        let drain = tokio::spawn({
            let runs = runs.clone();
            async move { runs.drain(in_ms(10_000), Duration::from_secs(1)).await }
        });
        tokio::task::yield_now().await;
        assert!(!drain.is_finished(), "the drain waits for the run");
        tx.send(()).unwrap();
        let drained = drain.await.unwrap();
        assert!(run.await.unwrap());
        assert_eq!(
            drained,
            Drained {
                in_progress: 1,
                interrupted: 0,
                abandoned: 0
            }
        );
        assert!(!runs.interrupt().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_interrupts_runs_still_going_at_the_deadline() {
        let runs = Runs::default();
        let run = runs.spawn({
            let runs = runs.clone();
            async move {
                runs.interrupt().cancelled().await;
                runs.record_interrupted();
            }
        });
        let drained = runs.drain(in_ms(500), Duration::from_secs(1)).await;
        run.await.unwrap();
        assert_eq!(
            drained,
            Drained {
                in_progress: 1,
                interrupted: 1,
                abandoned: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_started_after_the_drain_is_waited_for_then_interrupted() {
        let runs = Runs::default();
        let deadline = in_ms(500);
        let drained = runs.drain(deadline, Duration::from_secs(1)).await;
        assert_eq!(drained.in_progress, 0);
        // A request that got its render slot late starts a run after the drain.
        let late = runs.spawn({
            let runs = runs.clone();
            async move {
                runs.interrupt().cancelled().await;
                runs.record_interrupted();
            }
        });
        let drained = runs.drain(deadline, Duration::from_secs(1)).await;
        late.await.unwrap();
        assert_eq!((drained.in_progress, drained.interrupted), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_on_a_run_that_ignores_the_interrupt() {
        let runs = Runs::default();
        let _stuck = runs.spawn(std::future::pending::<()>());
        let drained = runs.drain(in_ms(500), Duration::from_secs(1)).await;
        assert_eq!(drained.abandoned, 1);
        assert_eq!(drained.interrupted, 0);
    }
}
