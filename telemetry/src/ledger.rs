//! The producer's loss ledger: lock-free counters that every call bumps and that
//! `ProducerStats` reports.
//!
//! Invariant once the queue is drained: `emitted = published + dropped`. While events
//! are queued or in flight, the difference is [`StatsSnapshot::queue_depth`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Why an event was dropped. Each has its own counter and `ProducerStats` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The queue was full (by count or by bytes).
    QueueFull,
    /// A field was over its limit.
    PayloadTooLarge,
    /// A required id was empty.
    MissingField,
    /// The call came after `shutdown`.
    Closed,
    /// Still queued or unacknowledged when the shutdown deadline passed.
    ShutdownDeadline,
    /// The broker refused the message for good (e.g. over its max payload).
    BrokerRejected,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::PayloadTooLarge,
        DropReason::MissingField,
        DropReason::Closed,
        DropReason::ShutdownDeadline,
        DropReason::BrokerRejected,
    ];

    /// The key used in `ProducerStats.dropped_by_reason` and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::PayloadTooLarge => "payload_too_large",
            DropReason::MissingField => "missing_field",
            DropReason::Closed => "closed",
            DropReason::ShutdownDeadline => "shutdown_deadline",
            DropReason::BrokerRejected => "broker_rejected",
        }
    }
}

/// Keeps a value on its own cache lines, so counters written by the caller's thread and
/// by the publisher do not slow each other down (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Counters shared by the handle (writers on the hot path) and the publisher.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Written by every call.
    pub emitted: Padded<AtomicU64>,
    /// Bytes of events in the queue or in flight (bounded by `queue_max_bytes`); added
    /// by calls, subtracted by the publisher.
    pub queued_bytes: Padded<AtomicUsize>,
    /// Written by the publisher.
    pub published: Padded<AtomicU64>,
    pub publish_failures: AtomicU64,
    pub connected: AtomicBool,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl Ledger {
    pub fn drop_event(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn drop_events(&self, reason: DropReason, count: u64) {
        self.dropped[reason as usize].fetch_add(count, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        // Read `emitted` last so a concurrent call cannot make depth negative.
        let published = self.published.load(Relaxed);
        let dropped_by_reason: BTreeMap<&'static str, u64> = DropReason::ALL
            .iter()
            .map(|reason| {
                (
                    reason.as_str(),
                    self.dropped[*reason as usize].load(Relaxed),
                )
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        let dropped = dropped_by_reason.values().sum();
        let emitted = self.emitted.load(Relaxed);
        StatsSnapshot {
            emitted,
            published,
            dropped,
            dropped_by_reason,
            publish_failures: self.publish_failures.load(Relaxed),
            queue_depth: emitted.saturating_sub(published + dropped),
            connected: self.connected.load(Relaxed),
        }
    }
}

/// A point-in-time copy of the ledger (for `/metrics` and tests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Calls made (accepted or not). Also the last producer sequence number used.
    pub emitted: u64,
    /// Events the broker acknowledged.
    pub published: u64,
    /// Sum of `dropped_by_reason`.
    pub dropped: u64,
    /// Drops per [`DropReason::as_str`]; reasons with no drops are left out.
    pub dropped_by_reason: BTreeMap<&'static str, u64>,
    /// Failed publish attempts (retried; not loss by themselves).
    pub publish_failures: u64,
    /// Events queued or awaiting an ack.
    pub queue_depth: u64,
    /// Whether the publisher's NATS connection is up.
    pub connected: bool,
}

impl StatsSnapshot {
    /// Drops for one reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped_by_reason
            .get(reason.as_str())
            .copied()
            .unwrap_or(0)
    }
}
