/**
 * docs/contract.md against this SDK: each limit the document gives for SDKs and the
 * stream is this SDK's constant, and the stream JSON it documents is accepted by a real
 * broker and gives the stream this SDK creates. (telemetry-collector/tests/contract.rs
 * holds the Rust side and the collector to the same table.)
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";

import * as config from "../src/config.js";
import { DROP_REASONS } from "../src/ledger.js";
import { StreamSpec, Subjects, SUBJECT_SUFFIX } from "../src/subjects.js";
import { Telemetry } from "../src/telemetry.js";
import { REPO_ROOT } from "../scripts/calls.js";
import { Isolation, STREAM_MAX_BYTES, withJsm } from "./support.js";

const doc = readFileSync(join(REPO_ROOT, "docs", "contract.md"), "utf8");

function limitsTable(): Map<string, number> {
  const section = doc.split("\n## Limits\n")[1]?.split("\n## ")[0];
  assert.ok(section, "a `## Limits` section");
  const rows = new Map<string, number>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 4 || !cells[1]!.startsWith("`")) continue;
    const value = Number(cells[2]);
    assert.ok(Number.isInteger(value), `row ${cells[1]}: ${cells[2]} is not a whole number`);
    rows.set(cells[1]!.replaceAll("`", ""), value);
  }
  return rows;
}

/** This SDK's value for every row that concerns an SDK or the stream. */
const THIS_SDK: Record<string, number> = {
  max_id_bytes: config.DEFAULT_MAX_FIELD_BYTES,
  max_json_bytes: config.DEFAULT_MAX_JSON_BYTES,
  max_error_message_bytes: config.DEFAULT_MAX_ERROR_MESSAGE_BYTES,
  max_message_bytes: StreamSpec.DEFAULT_MAX_MESSAGE_SIZE,
  duplicate_window_ms: StreamSpec.DEFAULT_DUPLICATE_WINDOW_MS,
  max_age_ms: StreamSpec.DEFAULT_MAX_AGE_MS,
  stream_max_bytes: StreamSpec.DEFAULT_MAX_BYTES,
  min_stream_max_bytes: StreamSpec.MIN_MAX_BYTES,
  max_replicas: StreamSpec.MAX_REPLICAS,
  queue_capacity: config.DEFAULT_QUEUE_CAPACITY,
  queue_max_bytes: config.DEFAULT_QUEUE_MAX_BYTES,
  max_in_flight: config.DEFAULT_MAX_IN_FLIGHT,
  ack_timeout_ms: config.DEFAULT_ACK_TIMEOUT_MS,
  min_backoff_ms: config.DEFAULT_MIN_BACKOFF_MS,
  max_backoff_ms: config.DEFAULT_MAX_BACKOFF_MS,
  publish_linger_ms: config.DEFAULT_PUBLISH_LINGER_MS,
  max_rejected_attempts: config.MAX_REJECTED_ATTEMPTS,
  stats_interval_ms: config.DEFAULT_STATS_INTERVAL_MS,
  final_stats_reserve_ms: config.FINAL_STATS_RESERVE_MS,
  queue_full_warn_interval_ms: config.QUEUE_FULL_WARN_INTERVAL_MS,
};
/** Rows only the collector enforces. */
const COLLECTOR_ONLY = ["max_run_key_bytes", "max_clock_ahead_ms", "producer_silent_after_ms"];

test("every limit the contract gives for SDKs and the stream is this SDK's", () => {
  const table = limitsTable();
  assert.deepEqual([...table.keys()].sort(), [...Object.keys(THIS_SDK), ...COLLECTOR_ONLY].sort(), "rows checked here or by the Rust test");
  const differ = Object.entries(THIS_SDK)
    .filter(([key, value]) => table.get(key) !== value)
    .map(([key, value]) => `${key}: docs/contract.md says ${table.get(key)}, this SDK has ${value}`);
  assert.deepEqual(differ, []);
  const defaults = config.defaultConfig();
  assert.equal(defaults.limits.maxFieldBytes, table.get("max_id_bytes"));
  assert.equal(defaults.limits.maxJsonBytes, table.get("max_json_bytes"));
  assert.equal(defaults.queueCapacity, table.get("queue_capacity"));
  assert.equal(defaults.streamMaxBytes, table.get("stream_max_bytes"));
});

test("the contract's subjects and drop reasons are this SDK's", () => {
  for (const suffix of Object.values(SUBJECT_SUFFIX)) {
    assert.ok(doc.includes(`\`{prefix}.v1.${suffix}\``), `subject ${suffix}`);
  }
  for (const reason of DROP_REASONS) assert.ok(doc.includes(`\`${reason}\``), `drop reason ${reason}`);
});

const isolations: Isolation[] = [];
after(async () => {
  await Promise.all(isolations.map((iso) => iso.cleanup()));
});

test("the documented stream JSON is accepted by the broker and is the stream this SDK creates", async () => {
  const json = doc.split("```json\n")[1]?.split("```")[0];
  assert.ok(json, "the stream JSON block");
  const documented = JSON.parse(json) as Record<string, unknown>;
  const spec = new StreamSpec(StreamSpec.DEFAULT_STREAM, new Subjects(Subjects.DEFAULT_PREFIX));
  assert.deepEqual(documented, spec.config(), "the document's JSON is StreamSpec's config");

  // On the shared broker, under a test name and subjects (and a small cap): created from
  // the document, then compared with a stream this SDK creates itself.
  const byHand = await Isolation.create();
  const bySdk = await Isolation.create();
  isolations.push(byHand, bySdk);
  const created = await withJsm(byHand.natsUrl, async (jsm) => {
    const info = await jsm.streams.add({
      ...documented,
      name: byHand.stream,
      subjects: [`${byHand.prefix}.v1.>`],
      max_bytes: STREAM_MAX_BYTES,
    });
    return info.config;
  });
  const telemetry = Telemetry.start(bySdk.options());
  await telemetry.emit({ shopId: "s", requestId: "r", source: 1, type: 1 });
  assert.equal((await telemetry.shutdown(5_000)).published, 1);
  const sdkCreated = await withJsm(bySdk.natsUrl, async (jsm) => (await jsm.streams.info(bySdk.stream)).config);
  for (const key of ["storage", "retention", "discard", "duplicate_window", "max_age", "max_bytes", "max_msg_size", "num_replicas", "description"] as const) {
    assert.deepEqual(created[key], sdkCreated[key], key);
  }
});
