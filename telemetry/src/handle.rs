//! [`Telemetry`]: the handle the calls are made on.
//!
//! It holds only a bounded `mpsc::Sender` and the shared ledger (the mini-redis
//! `BufferedClient` pattern): cloning is cheap, and one background task owns the NATS
//! connection. Nothing here awaits anything except [`Telemetry::shutdown`].

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use service_kit::{now_ms, ConfigError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::{Limits, TelemetryConfig};
use crate::error::EmitError;
use crate::ledger::{DropReason, Ledger, StatsSnapshot};
use crate::publisher::Publisher;
use crate::record::{
    CompleteRun, EmitEvent, Item, Record, StartRun, VariantResultRecord, VariantStart,
};

/// An event accepted by a call, waiting for the publisher.
pub(crate) struct Queued {
    pub seq: u64,
    pub occurred_at_ms: i64,
    pub item: Item,
    /// Counted against `queue_max_bytes` until published or dropped.
    pub bytes: usize,
}

/// What [`Telemetry::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Calls made over the handle's life.
    pub emitted: u64,
    /// Events the broker acknowledged over the handle's life.
    pub published: u64,
    /// Events dropped over the handle's life, for any reason (including `left`).
    pub dropped: u64,
    /// Events still queued or unacknowledged when the deadline passed (counted as
    /// dropped with reason `shutdown_deadline`; some may have reached the broker
    /// without their ack arriving).
    pub left: u64,
    /// Whether the final `ProducerStats` was acknowledged.
    pub final_stats_sent: bool,
}

struct Inner {
    tx: mpsc::Sender<Queued>,
    ledger: Arc<Ledger>,
    limits: Limits,
    queue_max_bytes: usize,
    producer: String,
    closed: AtomicBool,
    /// Taken by the first `shutdown`: tells the publisher its deadline.
    stop: Mutex<Option<oneshot::Sender<Instant>>>,
    /// Taken by the first `shutdown`: the publisher's final report.
    done: Mutex<Option<oneshot::Receiver<ShutdownReport>>>,
}

/// The telemetry handle. `Clone` is cheap; all clones feed one queue.
#[derive(Clone)]
pub struct Telemetry {
    /// `None` when disabled: calls succeed and do nothing.
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("producer", &self.producer_id())
            .finish()
    }
}

impl Telemetry {
    /// Validates `config` and starts the background publisher, which connects to NATS
    /// on its own (retrying forever): this returns at once even when the broker is
    /// down. Must be called inside a Tokio runtime.
    pub fn start(config: TelemetryConfig) -> Result<Self, ConfigError> {
        let (subjects, stream) = config.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("runtime", "Telemetry::start needs a Tokio runtime"))?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let ledger = Arc::new(Ledger::default());
        let producer = format!("{}-{}", config.service, uuid::Uuid::now_v7());
        let inner = Arc::new(Inner {
            tx,
            ledger: ledger.clone(),
            limits: config.limits,
            queue_max_bytes: config.queue_max_bytes,
            producer: producer.clone(),
            closed: AtomicBool::new(false),
            stop: Mutex::new(Some(stop_tx)),
            done: Mutex::new(Some(done_rx)),
        });
        let publisher = Publisher::new(
            config,
            subjects,
            stream,
            producer,
            now_ms(),
            ledger,
            rx,
            stop_rx,
            done_tx,
        );
        runtime.spawn(publisher.run());
        Ok(Self { inner: Some(inner) })
    }

    /// A handle whose calls do nothing (telemetry switched off).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether calls go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// This producer's instance id (`{service}-{uuidv7}`), as sent in every envelope.
    pub fn producer_id(&self) -> Option<&str> {
        self.inner.as_deref().map(|inner| inner.producer.as_str())
    }

    /// The seed's `startRun`.
    pub fn start_run(&self, run: StartRun) -> Result<(), EmitError> {
        self.submit(run)
    }

    /// The seed's `recordVariantStart`.
    pub fn record_variant_start(&self, start: VariantStart) -> Result<(), EmitError> {
        self.submit(start)
    }

    /// The seed's `recordVariantResult`.
    pub fn record_variant_result(&self, result: VariantResultRecord) -> Result<(), EmitError> {
        self.submit(result)
    }

    /// The seed's `completeRun`.
    pub fn complete_run(&self, complete: CompleteRun) -> Result<(), EmitError> {
        self.submit(complete)
    }

    /// The seed's `emit`.
    pub fn emit(&self, event: EmitEvent) -> Result<(), EmitError> {
        self.submit(event)
    }

    /// The ledger as it stands.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner
            .as_deref()
            .map(|inner| inner.ledger.snapshot())
            .unwrap_or_default()
    }

    /// The hot path: count, check, stamp, `try_send`. No await, no lock, no I/O.
    fn submit<R: Record>(&self, record: R) -> Result<(), EmitError> {
        let Some(inner) = self.inner.as_deref() else {
            return Ok(());
        };
        let ledger = &*inner.ledger;
        // The emitted count doubles as the producer sequence: a gap in the sequences
        // the collector sees is exactly an event that was dropped.
        let seq = ledger.emitted.fetch_add(1, Relaxed) + 1;
        let fail = |error: EmitError, reason: DropReason| {
            ledger.drop_event(reason);
            Err(error)
        };
        // Counted, and warned about at most once per `QUEUE_FULL_WARN_INTERVAL`.
        let queue_full = || {
            ledger.drop_queue_full();
            Err(EmitError::QueueFull)
        };
        if inner.closed.load(Relaxed) {
            return fail(EmitError::Closed, DropReason::Closed);
        }
        let bytes = match record.check(&inner.limits) {
            Ok(bytes) => bytes,
            Err((error, reason)) => return fail(error, reason),
        };
        let before = ledger.queued_bytes.fetch_add(bytes, Relaxed);
        if before + bytes > inner.queue_max_bytes {
            ledger.queued_bytes.fetch_sub(bytes, Relaxed);
            return queue_full();
        }
        let queued = Queued {
            seq,
            occurred_at_ms: now_ms(),
            item: record.into_item(),
            bytes,
        };
        match inner.tx.try_send(queued) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(queued)) => {
                ledger.queued_bytes.fetch_sub(queued.bytes, Relaxed);
                queue_full()
            }
            Err(mpsc::error::TrySendError::Closed(queued)) => {
                ledger.queued_bytes.fetch_sub(queued.bytes, Relaxed);
                fail(EmitError::Closed, DropReason::Closed)
            }
        }
    }

    /// Stops taking events, publishes what is queued until `deadline` has passed, sends
    /// a final `ProducerStats`, and reports. Returns within `deadline` (plus scheduling
    /// slack) even when the broker is down: whatever is left is counted as dropped with
    /// reason `shutdown_deadline`, never silently lost. Later calls (on any clone)
    /// return the ledger as it stands.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let Some(inner) = self.inner.as_deref() else {
            return ShutdownReport::default();
        };
        inner.closed.store(true, Relaxed);
        let deadline_at = Instant::now() + deadline;
        let stop = inner.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        let done = inner.done.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (Some(stop), Some(done)) = (stop, done) {
            let _ = stop.send(deadline_at);
            // A little slack past the deadline for the publisher to write its report.
            let slack = Duration::from_millis(50);
            if let Ok(Ok(report)) = tokio::time::timeout_at(deadline_at + slack, done).await {
                return report;
            }
        }
        let stats = inner.ledger.snapshot();
        ShutdownReport {
            emitted: stats.emitted,
            published: stats.published,
            dropped: stats.dropped,
            left: stats.queue_depth,
            final_stats_sent: false,
        }
    }
}
