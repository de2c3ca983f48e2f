/** The loss ledger and its rate-limited queue-full warning (the Rust SDK's `ledger.rs` tests). */

import assert from "node:assert/strict";
import { test } from "node:test";

import { QUEUE_FULL_WARN_INTERVAL_MS } from "../src/config.js";
import { Ledger } from "../src/ledger.js";
import { quietLogger } from "./support.js";

test("a burst of drops gives one line per interval, with the count since the last line", () => {
  const logger = quietLogger();
  let now = 1_000_000;
  const ledger = new Ledger(logger, () => now);
  const lines = () => logger.lines.map((l) => [l.fields?.dropped_since_last_line, l.fields?.dropped_total]);
  // The first drop is reported at once; the rest of the burst stays quiet.
  for (let i = 0; i < 5_000; i++) {
    ledger.dropQueueFull();
    now += 1;
  }
  assert.deepEqual(lines(), [[1, 1]]);
  // Not due yet: the stats tick has nothing to say either.
  now = 1_000_000 + QUEUE_FULL_WARN_INTERVAL_MS - 1;
  ledger.flushQueueFullWarning(false);
  assert.equal(logger.lines.length, 1);
  // Due: one line with what the burst dropped since the first line.
  now = 1_000_000 + QUEUE_FULL_WARN_INTERVAL_MS;
  ledger.flushQueueFullWarning(false);
  assert.deepEqual(lines(), [[1, 1], [4_999, 5_000]]);
  now += 3 * QUEUE_FULL_WARN_INTERVAL_MS;
  ledger.flushQueueFullWarning(false);
  assert.equal(logger.lines.length, 2, "nothing new, no line");
  // A later drop after a quiet interval is reported at once again.
  ledger.dropQueueFull();
  ledger.dropQueueFull();
  assert.deepEqual(lines().at(-1), [1, 5_001]);
  // Shutdown reports the remainder whatever the interval.
  for (let i = 0; i < 8; i++) ledger.dropQueueFull();
  ledger.flushQueueFullWarning(true);
  assert.deepEqual(lines().at(-1), [9, 5_010]);
  ledger.flushQueueFullWarning(true);
  assert.equal(logger.lines.length, 4);
  assert.ok(logger.lines.every((l) => l.level === "warn" && l.message.includes("queue_full")));
});

test("the snapshot: sorted reasons with drops only, dropped is their sum, depth is what is neither", () => {
  const ledger = new Ledger(quietLogger());
  ledger.emitted = 10;
  ledger.published = 4;
  ledger.dropEvent("shutdown_deadline", 2);
  ledger.dropEvent("closed");
  ledger.dropQueueFull();
  const snapshot = ledger.snapshot();
  assert.deepEqual(Object.keys(snapshot.droppedByReason), ["closed", "queue_full", "shutdown_deadline"]);
  assert.equal(snapshot.dropped, 4);
  assert.equal(snapshot.queueDepth, 2);
  assert.equal(snapshot.emitted, snapshot.published + snapshot.dropped + snapshot.queueDepth);
});
