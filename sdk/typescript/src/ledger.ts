/**
 * The producer's loss ledger: counters every call bumps and `ProducerStats` reports
 * (the Rust SDK's `telemetry/src/ledger.rs`).
 *
 * Invariant once the queue is drained: `emitted = published + dropped`. While events are
 * queued or in flight, the difference is `queueDepth`.
 */

import { QUEUE_FULL_WARN_INTERVAL_MS, type Logger } from "./config.js";

/**
 * Why an event was dropped: the `ProducerStats.dropped_by_reason` keys. The first six
 * are the Rust SDK's, with the same meaning; `invalid_json` is this SDK's own: a JSON
 * argument given as a value that `JSON.stringify` cannot write (a cycle, a bigint).
 * The Rust SDK takes JSON as text, so it has no such case.
 */
export const DROP_REASONS = [
  "queue_full",
  "payload_too_large",
  "missing_field",
  "closed",
  "shutdown_deadline",
  "broker_rejected",
  "invalid_json",
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** A point-in-time copy of the ledger. */
export interface StatsSnapshot {
  /** Calls made (accepted or not). Also the last producer sequence number used. */
  emitted: number;
  /** Events the broker acknowledged. */
  published: number;
  /** Sum of `droppedByReason`. */
  dropped: number;
  /** Drops per reason, keys in sorted order; reasons with no drops are left out. */
  droppedByReason: Partial<Record<DropReason, number>>;
  /** Failed publish attempts (retried; not loss by themselves). */
  publishFailures: number;
  /** Events queued or awaiting an ack. */
  queueDepth: number;
  /** Whether the publisher's NATS connection is up. */
  connected: boolean;
}

const SORTED_REASONS: readonly DropReason[] = [...DROP_REASONS].sort();

export class Ledger {
  emitted = 0;
  published = 0;
  publishFailures = 0;
  /** Bytes of events queued or in flight (bounded by `queueMaxBytes`). */
  queuedBytes = 0;
  connected = false;
  private readonly dropped: Record<DropReason, number> = {
    queue_full: 0,
    payload_too_large: 0,
    missing_field: 0,
    closed: 0,
    shutdown_deadline: 0,
    broker_rejected: 0,
    invalid_json: 0,
  };
  /** Monotonic ms before which no queue-full line is written; 0 until the first line. */
  private quietUntilMs = 0;
  /** The queue-full total the last line reported. */
  private reported = 0;

  /** `now`: a monotonic clock in ms (tests pass their own). */
  constructor(
    private readonly logger: Logger,
    private readonly now: () => number = () => performance.now(),
  ) {}

  dropEvent(reason: DropReason, count = 1): void {
    this.dropped[reason] += count;
  }

  /** Counts a `queue_full` drop and warns if a line is due. */
  dropQueueFull(): void {
    const total = ++this.dropped.queue_full;
    const now = this.now();
    if (now >= this.quietUntilMs) this.warnLine(total, now);
  }

  /**
   * Warns about `queue_full` drops no line has counted yet: when a line is due, or at
   * once when `force` (shutdown). Called on every stats tick.
   */
  flushQueueFullWarning(force: boolean): void {
    const total = this.dropped.queue_full;
    if (total <= this.reported) return;
    const now = this.now();
    if (now < this.quietUntilMs && !force) return;
    this.warnLine(total, now);
  }

  private warnLine(total: number, now: number): void {
    this.quietUntilMs = now + QUEUE_FULL_WARN_INTERVAL_MS;
    const since = total - this.reported;
    this.reported = total;
    if (since <= 0) return;
    this.logger.warn(
      `telemetry queue full: events dropped (counted as queue_full in ProducerStats; at most one such line every ${
        QUEUE_FULL_WARN_INTERVAL_MS / 1000
      } s)`,
      { dropped_since_last_line: since, dropped_total: total },
    );
  }

  snapshot(): StatsSnapshot {
    const droppedByReason: Partial<Record<DropReason, number>> = {};
    let dropped = 0;
    for (const reason of SORTED_REASONS) {
      const count = this.dropped[reason];
      if (count > 0) {
        droppedByReason[reason] = count;
        dropped += count;
      }
    }
    return {
      emitted: this.emitted,
      published: this.published,
      dropped,
      droppedByReason,
      publishFailures: this.publishFailures,
      queueDepth: Math.max(0, this.emitted - this.published - dropped),
      connected: this.connected,
    };
  }
}
