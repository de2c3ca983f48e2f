/**
 * Sends the run of proto/fixtures/e2e-run.json through this SDK's module functions, the
 * way the original app calls them (each awaited), then shuts down and prints the report
 * as one JSON line. Run by telemetry-collector/tests/typescript_sdk.rs, which sends the
 * same run through the Rust SDK and compares what the collector stores.
 *
 * Settings come from the environment (NATS_URL, TELEMETRY_SUBJECT_PREFIX,
 * TELEMETRY_STREAM, TELEMETRY_STREAM_MAX_BYTES, ...); E2E_RUN_ID and E2E_REQUEST_ID name
 * the run. Exits 1 unless every event was published and the final stats acknowledged.
 */

import * as telemetry from "../src/index.js";
import { E2E_RUN_FILE, readJson, type CallSpec } from "./calls.js";

const runId = process.env.E2E_RUN_ID;
const requestId = process.env.E2E_REQUEST_ID;
if (!runId || !requestId) {
  console.error("set E2E_RUN_ID and E2E_REQUEST_ID");
  process.exit(2);
}
const text = JSON.stringify(readJson<{ calls: CallSpec[] }>(E2E_RUN_FILE).calls)
  .replaceAll("$RUN_ID", runId)
  .replaceAll("$REQUEST_ID", requestId);
const calls = JSON.parse(text) as CallSpec[];

telemetry.init({ service: process.env.TELEMETRY_SERVICE ?? "e2e" });
const names = { startRun: telemetry.startRun, recordVariantStart: telemetry.recordVariantStart, recordVariantResult: telemetry.recordVariantResult, completeRun: telemetry.completeRun, emit: telemetry.emit };
for (const { call, input } of calls) {
  if (call === "producerStats") continue;
  const argument: Record<string, unknown> = { ...input };
  if (call === "emit") {
    argument.source = telemetry.EventSource[argument.source as keyof typeof telemetry.EventSource];
    argument.type = telemetry.EventType[argument.type as keyof typeof telemetry.EventType];
  }
  const refused = await names[call](argument as never);
  if (refused) {
    console.error(`${call} refused: ${refused.message}`);
    process.exit(1);
  }
}
const report = await telemetry.shutdown(10_000);
console.log(JSON.stringify({ producer: telemetry.getTelemetry().producerId, ...report }));
process.exit(report.left === 0 && report.dropped === 0 && report.finalStatsSent ? 0 : 1);
