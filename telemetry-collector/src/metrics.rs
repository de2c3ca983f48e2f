//! Counters and readiness shared by the ingest loop and the HTTP surface, rendered as
//! Prometheus text. Plain atomics: the ingest loop updates them once per batch.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the commit latency histogram.
const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Upper bounds (messages) of the batch size histogram.
const SIZE_BUCKETS: [f64; 8] = [1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

/// A cumulative histogram.
#[derive(Debug)]
struct Histogram<const N: usize> {
    bounds: [f64; N],
    counts: [AtomicU64; N],
    count: AtomicU64,
    /// Sum in micro-units, to stay integral.
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [f64; N]) -> Self {
        Self {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Everything `/metrics` and `/readyz` report.
#[derive(Debug)]
pub struct Metrics {
    batches: AtomicU64,
    batch_size: Histogram<8>,
    commit_seconds: Histogram<10>,
    events_stored: AtomicU64,
    duplicates: AtomicU64,
    dead_letters: AtomicU64,
    db_errors: AtomicU64,
    /// Envelopes the database refused for good, isolated into dead letters.
    rejected: AtomicU64,
    /// The consumer's backlog, from the broker ([`crate::backlog`]): not delivered yet,
    consumer_pending: AtomicU64,
    /// delivered but not acked,
    consumer_ack_pending: AtomicU64,
    /// and when the oldest unacked message was stored (unix ms; 0: none).
    oldest_unacked_ms: AtomicI64,
    /// The ingest loop has its consumer.
    consumer_attached: AtomicBool,
    /// The last database error, cleared by the next successful commit.
    db_error: Mutex<Option<String>>,
    /// Why the last readiness ping failed, cleared by the next good one: an outage
    /// while ingest is idle shows too. `/readyz` and `collector_db_up` both read
    /// [`Metrics::db_error`], so they never disagree.
    ping_error: Mutex<Option<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            batches: AtomicU64::new(0),
            batch_size: Histogram::new(SIZE_BUCKETS),
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
            events_stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            db_errors: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            consumer_pending: AtomicU64::new(0),
            consumer_ack_pending: AtomicU64::new(0),
            oldest_unacked_ms: AtomicI64::new(0),
            consumer_attached: AtomicBool::new(false),
            db_error: Mutex::new(None),
            ping_error: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// A batch was committed.
    pub fn committed(&self, size: usize, took: Duration, report: &crate::store::WriteReport) {
        self.batches.fetch_add(1, Relaxed);
        self.batch_size.observe(size as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        self.events_stored.fetch_add(report.stored, Relaxed);
        self.duplicates.fetch_add(report.duplicates, Relaxed);
        self.dead_letters.fetch_add(report.dead_letters, Relaxed);
        *self.db_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The database refused `count` envelopes of a committed batch for good.
    pub fn rejected(&self, count: usize) {
        self.rejected.fetch_add(count as u64, Relaxed);
    }

    /// The outcome of a readiness ping.
    pub fn pinged(&self, outcome: Option<String>) {
        *self.ping_error.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
    }

    /// A batch failed to commit (transiently: it is retried).
    pub fn db_failed(&self, reason: String) {
        self.db_errors.fetch_add(1, Relaxed);
        *self.db_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// The consumer's backlog as the broker last reported it ([`crate::backlog`]).
    pub fn set_backlog(&self, backlog: &crate::backlog::Backlog) {
        self.consumer_pending.store(backlog.pending, Relaxed);
        self.consumer_ack_pending
            .store(backlog.ack_pending, Relaxed);
        self.oldest_unacked_ms
            .store(backlog.oldest_unacked_ms.unwrap_or(0), Relaxed);
    }

    /// The ingest loop attached (or lost) its consumer.
    pub fn set_consumer_attached(&self, attached: bool) {
        self.consumer_attached.store(attached, Relaxed);
    }

    /// Whether the consumer is attached.
    pub fn consumer_attached(&self) -> bool {
        self.consumer_attached.load(Relaxed)
    }

    /// Why the database is not usable: the last write's error until a commit
    /// succeeds, else the last ping's. `None` when it is up.
    pub fn db_error(&self) -> Option<String> {
        self.write_error().or_else(|| {
            self.ping_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// The last batch write's error, until a commit succeeds.
    pub fn write_error(&self) -> Option<String> {
        self.db_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|reason| format!("last batch write failed: {reason}"))
    }

    /// Envelopes the database refused, since start.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    /// Envelopes stored for the first time, since start.
    pub fn events_stored(&self) -> u64 {
        self.events_stored.load(Relaxed)
    }

    /// Dead letters stored, since start.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Relaxed)
    }

    /// Database errors, since start.
    pub fn db_errors(&self) -> u64 {
        self.db_errors.load(Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let counters = [
            (
                "collector_batches_total",
                "Batches committed.",
                &self.batches,
            ),
            (
                "collector_events_stored_total",
                "Envelopes stored for the first time.",
                &self.events_stored,
            ),
            (
                "collector_duplicates_total",
                "Envelopes already stored (redelivery or duplicate publish).",
                &self.duplicates,
            ),
            (
                "collector_dead_letters_total",
                "Messages stored as dead letters.",
                &self.dead_letters,
            ),
            (
                "collector_db_errors_total",
                "Batch writes that failed transiently and were retried.",
                &self.db_errors,
            ),
            (
                "collector_envelopes_rejected_total",
                "Envelopes the database refused for good, stored as dead letters.",
                &self.rejected,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let oldest = self.oldest_unacked_ms.load(Relaxed);
        let oldest_age = if oldest > 0 {
            (service_kit::now_ms() - oldest).max(0) as f64 / 1000.0
        } else {
            0.0
        };
        let backlog = [
            (
                "collector_consumer_pending",
                "Messages on the stream not yet delivered to the consumer (read from the broker every COLLECTOR_BACKLOG_INTERVAL_SECS).",
                self.consumer_pending.load(Relaxed) as f64,
            ),
            (
                "collector_consumer_ack_pending",
                "Messages delivered to the consumer's collectors and not yet acked.",
                self.consumer_ack_pending.load(Relaxed) as f64,
            ),
            (
                "collector_oldest_unacked_age_seconds",
                "Age of the oldest message not yet acked, delivered or not (0 when none).",
                oldest_age,
            ),
        ];
        for (name, help, value) in backlog {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP collector_db_up Whether the database is usable (as /readyz says).\n\
             # TYPE collector_db_up gauge\ncollector_db_up {}",
            u8::from(self.db_error().is_none())
        );
        self.batch_size
            .render(&mut out, "collector_batch_size", "Messages per batch.");
        self.commit_seconds.render(
            &mut out,
            "collector_commit_seconds",
            "Time to write and commit one batch.",
        );
        out
    }
}
