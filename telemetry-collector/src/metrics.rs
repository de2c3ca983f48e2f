//! Counters and readiness shared by the ingest loop and the HTTP surface, rendered as
//! Prometheus text. Plain atomics: the ingest loop updates them once per batch.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
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
    consumer_pending: AtomicU64,
    /// The ingest loop has its consumer.
    consumer_attached: AtomicBool,
    /// The last database error, cleared by the next successful commit.
    db_error: Mutex<Option<String>>,
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
            consumer_pending: AtomicU64::new(0),
            consumer_attached: AtomicBool::new(false),
            db_error: Mutex::new(None),
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

    /// A batch failed to commit.
    pub fn db_failed(&self, reason: String) {
        self.db_errors.fetch_add(1, Relaxed);
        *self.db_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Messages the broker still holds for the consumer.
    pub fn set_pending(&self, pending: u64) {
        self.consumer_pending.store(pending, Relaxed);
    }

    /// The ingest loop attached (or lost) its consumer.
    pub fn set_consumer_attached(&self, attached: bool) {
        self.consumer_attached.store(attached, Relaxed);
    }

    /// Whether the consumer is attached.
    pub fn consumer_attached(&self) -> bool {
        self.consumer_attached.load(Relaxed)
    }

    /// The last database error, if the last write failed.
    pub fn db_error(&self) -> Option<String> {
        self.db_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
                "Batch writes that failed and were retried.",
                &self.db_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP collector_consumer_pending Messages the broker holds for the consumer.\n\
             # TYPE collector_consumer_pending gauge\ncollector_consumer_pending {}",
            self.consumer_pending.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP collector_db_up Whether the last batch write succeeded.\n\
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
