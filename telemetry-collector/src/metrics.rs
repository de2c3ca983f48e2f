//! Counters and readiness shared by the ingest loop and the HTTP surface, exposed as
//! OpenMetrics text by `prometheus-client`. The ingest loop updates them once per batch:
//! counters and gauges are atomics, the two histograms take an uncontended lock.
//!
//! Names: `prometheus-client` adds `_total` to a counter's samples, so counters are
//! registered without it (`collector_batches` exposes `collector_batches_total`), and
//! no metric has a unit (which would add a suffix too): the sample names stay those the
//! dashboards and `docs/operations.md` use.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// Upper bounds (seconds) of the commit latency histogram.
const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Upper bounds (messages) of the batch size histogram.
const SIZE_BUCKETS: [f64; 8] = [1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

/// `metric`, registered under `name` in `registry` (which keeps a handle to it).
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Why the database is not usable, as `/readyz` shows it and `collector_db_up` counts it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbDown {
    /// The last batch write failed; only a commit clears it (a full disk still
    /// answers pings).
    #[error("last batch write failed: {0}")]
    WriteFailed(String),
    /// The readiness ping failed.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The readiness ping got no answer in time.
    #[error("unreachable: no answer within {} s", .0.as_secs())]
    NoAnswer(Duration),
}

/// Everything `/metrics` and `/readyz` report.
#[derive(Debug)]
pub struct Metrics {
    /// What `/metrics` encodes: every metric below, registered once.
    registry: Registry,
    batches: Counter,
    batch_size: Histogram,
    commit_seconds: Histogram,
    events_stored: Counter,
    duplicates: Counter,
    dead_letters: Counter,
    db_errors: Counter,
    /// Envelopes the database refused for good, isolated into dead letters.
    rejected: Counter,
    /// The consumer's backlog, from the broker ([`crate::backlog`]): not delivered yet,
    consumer_pending: Gauge<u64, AtomicU64>,
    /// delivered but not acked,
    consumer_ack_pending: Gauge<u64, AtomicU64>,
    /// and how old the oldest unacked message is, set from `oldest_unacked_ms` at
    /// each scrape (the age grows between two reads of the broker).
    oldest_unacked_age: Gauge<f64, AtomicU64>,
    /// When the oldest unacked message was stored (unix ms; 0: none).
    oldest_unacked_ms: AtomicI64,
    /// `collector_db_up`, set from [`Metrics::db_error`] at each scrape.
    db_up: Gauge,
    /// The ingest loop has its consumer.
    /// `None` when the consumer is attached, else why not (`/readyz` says it).
    consumer_down: Mutex<Option<String>>,
    /// The last batch write's error, cleared by the next successful commit.
    write_error: Mutex<Option<String>>,
    /// Why the last readiness ping failed, cleared by the next good one: an outage
    /// while ingest is idle shows too. `/readyz` and `collector_db_up` both read
    /// [`Metrics::db_error`], so they never disagree.
    ping_error: Mutex<Option<DbDown>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        // Help texts without a final period: the registry adds one.
        let [batches, events_stored, duplicates, dead_letters, db_errors, rejected] = [
            ("collector_batches", "Batches committed"),
            (
                "collector_events_stored",
                "Envelopes stored for the first time",
            ),
            (
                "collector_duplicates",
                "Envelopes already stored (redelivery or duplicate publish)",
            ),
            ("collector_dead_letters", "Messages stored as dead letters"),
            (
                "collector_db_errors",
                "Batch writes that failed transiently and were retried",
            ),
            (
                "collector_envelopes_rejected",
                "Envelopes the database refused for good, stored as dead letters",
            ),
        ]
        .map(|(name, help)| registered(&mut registry, name, help, Counter::default()));
        let [consumer_pending, consumer_ack_pending] = [
            (
                "collector_consumer_pending",
                "Messages on the stream not yet delivered to the consumer (read from the broker every COLLECTOR_BACKLOG_INTERVAL_SECS)",
            ),
            (
                "collector_consumer_ack_pending",
                "Messages delivered to the consumer's collectors and not yet acked",
            ),
        ]
        .map(|(name, help)| registered(&mut registry, name, help, Gauge::default()));
        let oldest_unacked_age = registered(
            &mut registry,
            "collector_oldest_unacked_age_seconds",
            "Age of the oldest message not yet acked, delivered or not (0 when none)",
            Gauge::default(),
        );
        let db_up = registered(
            &mut registry,
            "collector_db_up",
            "Whether the database is usable (as /readyz says)",
            Gauge::default(),
        );
        let [batch_size, commit_seconds] = [
            (
                "collector_batch_size",
                "Messages per batch",
                &SIZE_BUCKETS[..],
            ),
            (
                "collector_commit_seconds",
                "Time to write and commit one batch",
                &COMMIT_BUCKETS[..],
            ),
        ]
        .map(|(name, help, buckets)| {
            registered(
                &mut registry,
                name,
                help,
                Histogram::new(buckets.iter().copied()),
            )
        });
        Self {
            registry,
            batches,
            batch_size,
            commit_seconds,
            events_stored,
            duplicates,
            dead_letters,
            db_errors,
            rejected,
            consumer_pending,
            consumer_ack_pending,
            oldest_unacked_age,
            oldest_unacked_ms: AtomicI64::new(0),
            db_up,
            consumer_down: Mutex::new(Some("not attached yet".to_owned())),
            write_error: Mutex::new(None),
            ping_error: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// A batch was committed.
    pub fn committed(&self, size: usize, took: Duration, report: &crate::store::WriteReport) {
        self.batches.inc();
        self.batch_size.observe(size as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        self.events_stored.inc_by(report.stored);
        self.duplicates.inc_by(report.duplicates);
        self.dead_letters.inc_by(report.dead_letters);
        *self.write_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The database refused `count` envelopes of a committed batch for good.
    pub fn rejected(&self, count: usize) {
        self.rejected.inc_by(count as u64);
    }

    /// The outcome of a readiness ping: `None` when it answered.
    pub fn pinged(&self, outcome: Option<DbDown>) {
        *self.ping_error.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
    }

    /// A batch failed to commit (transiently: it is retried).
    pub fn db_failed(&self, reason: String) {
        self.db_errors.inc();
        *self.write_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// The consumer's backlog as the broker last reported it ([`crate::backlog`]).
    pub fn set_backlog(&self, backlog: &crate::backlog::Backlog) {
        self.consumer_pending.set(backlog.pending);
        self.consumer_ack_pending.set(backlog.ack_pending);
        self.oldest_unacked_ms
            .store(backlog.oldest_unacked_ms.unwrap_or(0), Relaxed);
    }

    /// The consumer's backlog as last read from the broker: messages pending, and when
    /// the oldest unacked one was published (unix ms; `None` when nothing is unacked).
    pub fn backlog(&self) -> (u64, Option<i64>) {
        let oldest = self.oldest_unacked_ms.load(Relaxed);
        (self.consumer_pending.get(), (oldest > 0).then_some(oldest))
    }

    /// The ingest loop attached its consumer and opened a pull.
    pub fn set_consumer_attached(&self) {
        *self.consumer_down.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The ingest loop lost its consumer, or could not attach it, because of `reason`.
    pub fn set_consumer_detached(&self, reason: String) {
        *self.consumer_down.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Why the consumer is not attached; `None` when it is.
    pub fn consumer_down(&self) -> Option<String> {
        self.consumer_down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the database is not usable: the last write's error until a commit
    /// succeeds, else the last ping's. `None` when it is up.
    pub fn db_error(&self) -> Option<DbDown> {
        self.write_error().or_else(|| {
            self.ping_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// The last batch write's error, until a commit succeeds.
    pub fn write_error(&self) -> Option<DbDown> {
        self.write_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map(DbDown::WriteFailed)
    }

    /// Envelopes the database refused, since start.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.get()
    }

    /// Envelopes stored for the first time, since start.
    pub fn events_stored(&self) -> u64 {
        self.events_stored.get()
    }

    /// Dead letters stored, since start.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.get()
    }

    /// Database errors, since start.
    pub fn db_errors(&self) -> u64 {
        self.db_errors.get()
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let oldest = self.oldest_unacked_ms.load(Relaxed);
        let oldest_age = if oldest > 0 {
            (service_kit::now_ms() - oldest).max(0) as f64 / 1000.0
        } else {
            0.0
        };
        self.oldest_unacked_age.set(oldest_age);
        self.db_up.set(i64::from(self.db_error().is_none()));
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The content type of [`Metrics::render`]'s text (and of the renderer's `/metrics`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WriteReport;

    /// Dashboards, alerts and `docs/operations.md` use these sample names.
    #[test]
    fn the_exposition_keeps_its_sample_names_and_values() {
        let metrics = Metrics::default();
        let report = WriteReport {
            stored: 7,
            duplicates: 2,
            dead_letters: 1,
            refused: Vec::new(),
        };
        metrics.committed(10, Duration::from_millis(3), &report);
        metrics.rejected(1);
        metrics.db_failed("disk full".into());
        metrics.set_backlog(&crate::backlog::Backlog {
            pending: 5,
            ack_pending: 4,
            oldest_unacked_ms: None,
        });
        let text = metrics.render();
        for line in [
            "collector_batches_total 1",
            "collector_events_stored_total 7",
            "collector_duplicates_total 2",
            "collector_dead_letters_total 1",
            "collector_db_errors_total 1",
            "collector_envelopes_rejected_total 1",
            "collector_consumer_pending 5",
            "collector_consumer_ack_pending 4",
            "collector_oldest_unacked_age_seconds 0.0",
            "collector_db_up 0",
            "collector_batch_size_bucket{le=\"1.0\"} 0",
            "collector_batch_size_bucket{le=\"10.0\"} 1",
            "collector_batch_size_bucket{le=\"+Inf\"} 1",
            "collector_batch_size_count 1",
            "collector_commit_seconds_count 1",
            "# HELP collector_db_up Whether the database is usable (as /readyz says).",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
