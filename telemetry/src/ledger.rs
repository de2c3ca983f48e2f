//! The producer's loss ledger: lock-free counters that every call bumps and that
//! `ProducerStats` reports.
//!
//! Invariant once the queue is drained: `emitted = published + dropped`. While events
//! are queued or in flight, the difference is [`StatsSnapshot::queue_depth`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one `queue_full` warning line per this interval: a full queue drops events
/// by the thousand, and a line per drop would bury the log (and cost the caller).
pub const QUEUE_FULL_WARN_INTERVAL: Duration = Duration::from_secs(10);

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
    /// Whether JetStream takes the events, from the publisher's ack outcomes.
    pub jetstream: JetStreamHealth,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Rate limit of the `queue_full` warning.
    queue_full_warning: DropWarning,
}

impl Ledger {
    pub fn drop_event(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Relaxed);
    }

    /// Counts a `queue_full` drop and warns if a line is due ([`DropWarning`]).
    pub fn drop_queue_full(&self) {
        let total = self.dropped[DropReason::QueueFull as usize].fetch_add(1, Relaxed) + 1;
        self.queue_full_warning.dropped(total, monotonic_ms());
    }

    /// Warns about `queue_full` drops no line has counted yet: when a line is due, or
    /// at once when `force` (shutdown). The publisher calls it on its stats tick, so
    /// the drops of a burst that stopped are still reported within an interval.
    pub fn flush_queue_full_warning(&self, force: bool) {
        let total = self.dropped[DropReason::QueueFull as usize].load(Relaxed);
        self.queue_full_warning.flush(total, monotonic_ms(), force);
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
        let connected = self.connected.load(Relaxed);
        StatsSnapshot {
            emitted,
            published,
            dropped,
            dropped_by_reason,
            publish_failures: self.publish_failures.load(Relaxed),
            queue_depth: emitted.saturating_sub(published + dropped),
            connected,
            jetstream: if connected {
                self.jetstream.state()
            } else {
                JetStreamState::NotConnected
            },
        }
    }
}

/// Whether JetStream takes the events, as the publisher's last ack outcome says: it
/// asks nothing of the broker itself. The periodic `ProducerStats` is published (and
/// acked or not) every stats interval, so the state stays fresh while no event flows.
///
/// Only the publisher writes it. A success is one clock read and one relaxed store;
/// the mutex is taken when acks fail, and once on the first success after failures.
/// A reader takes it only while acks fail.
#[derive(Debug)]
pub(crate) struct JetStreamHealth {
    /// What `last_ack` counts from.
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last acknowledged publish, plus one; 0 until the
    /// first.
    last_ack: AtomicU64,
    /// Mirror of `failing.is_some()`, so a success or a reader need not lock.
    is_failing: AtomicBool,
    /// While acks fail: the latest failure's reason and the first failure's time.
    failing: Mutex<Option<(String, Instant)>>,
}

impl Default for JetStreamHealth {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last_ack: AtomicU64::new(0),
            is_failing: AtomicBool::new(false),
            failing: Mutex::new(None),
        }
    }
}

impl JetStreamHealth {
    /// A publish was acknowledged.
    pub fn acked(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_ack.store(nanos + 1, Relaxed);
        if self.is_failing.load(Relaxed) {
            *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.is_failing.store(false, Relaxed);
        }
    }

    /// A publish failed because of JetStream (not the event), for `reason`. The
    /// outage's start stays that of its first failure.
    pub fn failed(&self, reason: String) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *failing {
            Some((last_reason, _)) => *last_reason = reason,
            None => *failing = Some((reason, Instant::now())),
        }
        self.is_failing.store(true, Relaxed);
    }

    /// The state, assuming the connection is up.
    pub fn state(&self) -> JetStreamState {
        if self.is_failing.load(Relaxed) {
            if let Some((reason, since)) = &*self.failing.lock().unwrap_or_else(|e| e.into_inner())
            {
                return JetStreamState::Unavailable {
                    reason: reason.clone(),
                    since: *since,
                };
            }
        }
        match self.last_ack.load(Relaxed) {
            0 => JetStreamState::Unknown,
            nanos => JetStreamState::Available {
                last_ack: self.epoch + Duration::from_nanos(nanos - 1),
            },
        }
    }
}

/// Whether JetStream takes this producer's events ([`StatsSnapshot::jetstream`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JetStreamState {
    /// No NATS connection: nothing can be published (see [`StatsSnapshot::connected`]).
    #[default]
    NotConnected,
    /// Connected, and no publish has been acknowledged or has failed yet.
    Unknown,
    /// The last publish was acknowledged.
    Available {
        /// When that ack arrived.
        last_ack: Instant,
    },
    /// Publishes are failing: no ack in time (a cluster without quorum, a stream
    /// without a leader), no responders (no stream for the subjects), or JetStream's
    /// own error (e.g. 503 "JetStream system temporarily unavailable"). The SDK keeps
    /// the events queued and retries.
    Unavailable {
        /// Why the latest publish failed.
        reason: String,
        /// The first failure since the last acknowledged publish.
        since: Instant,
    },
}

impl JetStreamState {
    /// Whether the last publish was acknowledged.
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available { .. })
    }
}

/// Milliseconds of the kernel's coarse monotonic clock (a vDSO read of a few ns, one
/// scheduler tick of resolution: plenty for a 10 s rate limit).
fn monotonic_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (now.tv_sec as u64) * 1000 + (now.tv_nsec as u64) / 1_000_000
}

/// The rate limit of the `queue_full` warning: at most one line per
/// [`QUEUE_FULL_WARN_INTERVAL`], each saying how many events were dropped since the
/// previous line and in total. Only the drop path touches it (one relaxed load after a
/// clock read while no line is due); a call that queues its event never does.
#[derive(Debug, Default)]
pub(crate) struct DropWarning {
    /// Monotonic ms before which no line is written; 0 until the first line.
    quiet_until_ms: AtomicU64,
    /// The total the last line reported.
    reported: AtomicU64,
}

impl DropWarning {
    /// A drop brought the total to `total` at `now_ms`. Returns what was logged.
    #[inline]
    fn dropped(&self, total: u64, now_ms: u64) -> Option<(u64, u64)> {
        let quiet_until = self.quiet_until_ms.load(Relaxed);
        if now_ms < quiet_until {
            return None;
        }
        self.line(quiet_until, total, now_ms)
    }

    /// Reports drops not logged yet, if a line is due or `force`. Returns what was
    /// logged.
    fn flush(&self, total: u64, now_ms: u64, force: bool) -> Option<(u64, u64)> {
        if total <= self.reported.load(Relaxed) {
            return None;
        }
        let quiet_until = self.quiet_until_ms.load(Relaxed);
        if now_ms < quiet_until && !force {
            return None;
        }
        self.line(quiet_until, total, now_ms)
    }

    /// Writes the line unless another thread took this slot first.
    #[cold]
    #[inline(never)]
    fn line(&self, quiet_until: u64, total: u64, now_ms: u64) -> Option<(u64, u64)> {
        let next = now_ms + QUEUE_FULL_WARN_INTERVAL.as_millis() as u64;
        self.quiet_until_ms
            .compare_exchange(quiet_until, next, Relaxed, Relaxed)
            .ok()?;
        let before = self.reported.fetch_max(total, Relaxed);
        let since = total.checked_sub(before).filter(|since| *since > 0)?;
        tracing::warn!(
            dropped_since_last_line = since,
            dropped_total = total,
            "telemetry queue full: events dropped (counted as queue_full in ProducerStats; \
             at most one such line every {} s)",
            QUEUE_FULL_WARN_INTERVAL.as_secs()
        );
        Some((since, total))
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
    /// Whether JetStream takes the events (the last publish's outcome): a connection
    /// can be up while JetStream accepts nothing, e.g. on a cluster without quorum.
    pub jetstream: JetStreamState,
}

impl StatsSnapshot {
    /// The `ProducerStats` body of this snapshot (the publisher's and the fixtures').
    pub(crate) fn stats_body(
        &self,
        started_at_ms: i64,
        is_final: bool,
        service: &str,
    ) -> telemetry_proto::v1::ProducerStats {
        telemetry_proto::v1::ProducerStats {
            emitted: self.emitted,
            published: self.published,
            dropped: self.dropped,
            dropped_by_reason: self
                .dropped_by_reason
                .iter()
                .map(|(reason, count)| ((*reason).to_owned(), *count))
                .collect(),
            publish_failures: self.publish_failures,
            queue_depth: self.queue_depth,
            started_at: started_at_ms,
            r#final: is_final,
            service: service.to_owned(),
        }
    }

    /// Drops for one reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped_by_reason
            .get(reason.as_str())
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: u64 = QUEUE_FULL_WARN_INTERVAL.as_millis() as u64;

    #[test]
    fn a_burst_of_drops_gives_one_line_per_interval_with_the_count_since_the_last() {
        let warning = DropWarning::default();
        let start = 1_000_000;
        // The first drop is reported at once; the rest of the burst stays quiet.
        assert_eq!(warning.dropped(1, start), Some((1, 1)));
        for total in 2..=5_000 {
            assert_eq!(warning.dropped(total, start + total), None);
        }
        // Not due yet: the stats tick has nothing to say either.
        assert_eq!(warning.flush(5_000, start + INTERVAL - 1, false), None);
        // Due: one line with what the burst dropped since the first line.
        assert_eq!(
            warning.flush(5_000, start + INTERVAL, false),
            Some((4_999, 5_000))
        );
        assert_eq!(warning.flush(5_000, start + 3 * INTERVAL, false), None);
        // A later drop after a quiet interval is reported at once again.
        assert_eq!(
            warning.dropped(5_001, start + 3 * INTERVAL),
            Some((1, 5_001))
        );
        assert_eq!(warning.dropped(5_002, start + 3 * INTERVAL + 1), None);
        // Shutdown reports the remainder whatever the interval.
        assert_eq!(
            warning.flush(5_010, start + 3 * INTERVAL + 2, true),
            Some((9, 5_010))
        );
        assert_eq!(warning.flush(5_010, start + 3 * INTERVAL + 3, true), None);
    }

    #[test]
    fn jetstream_is_unavailable_from_the_first_failure_until_the_next_ack() {
        let ledger = Ledger::default();
        ledger.connected.store(true, Relaxed);
        assert_eq!(ledger.snapshot().jetstream, JetStreamState::Unknown);
        let before = Instant::now();
        ledger.jetstream.acked();
        let JetStreamState::Available { last_ack } = ledger.snapshot().jetstream else {
            panic!("{:?}", ledger.snapshot());
        };
        assert!(last_ack >= before && last_ack <= Instant::now());

        ledger.jetstream.failed("timed out".into());
        let JetStreamState::Unavailable { reason, since } = ledger.snapshot().jetstream else {
            panic!("{:?}", ledger.snapshot());
        };
        assert_eq!(reason, "timed out");
        std::thread::sleep(Duration::from_millis(5));
        // A later failure gives its reason; the outage still started at the first.
        ledger.jetstream.failed("no responders".into());
        assert_eq!(
            ledger.snapshot().jetstream,
            JetStreamState::Unavailable {
                reason: "no responders".into(),
                since
            }
        );
        // Not connected says so, whatever the last ack said.
        ledger.connected.store(false, Relaxed);
        assert_eq!(ledger.snapshot().jetstream, JetStreamState::NotConnected);
        ledger.connected.store(true, Relaxed);

        ledger.jetstream.acked();
        assert!(ledger.snapshot().jetstream.is_available());
        ledger.jetstream.failed("timed out".into());
        let JetStreamState::Unavailable { since: again, .. } = ledger.snapshot().jetstream else {
            panic!("{:?}", ledger.snapshot());
        };
        assert!(
            again > since,
            "a new outage starts at its own first failure"
        );
    }

    #[test]
    fn drops_on_many_threads_give_one_line_per_interval() {
        let ledger = Ledger::default();
        let lines = std::sync::Mutex::new(Vec::new());
        let now = 42_000;
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        let total = ledger.dropped[DropReason::QueueFull as usize]
                            .fetch_add(1, Relaxed)
                            + 1;
                        if let Some(line) = ledger.queue_full_warning.dropped(total, now) {
                            lines.lock().unwrap().push(line);
                        }
                    }
                });
            }
        });
        let lines = lines.into_inner().unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (first, _) = lines[0];
        // The next line counts every drop the first did not.
        assert_eq!(
            ledger
                .queue_full_warning
                .flush(40_000, now + INTERVAL, false),
            Some((40_000 - first, 40_000))
        );
    }
}
