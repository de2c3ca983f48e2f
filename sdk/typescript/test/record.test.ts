/** The call checks and conversions, without a broker (the Rust SDK's `record.rs` tests). */

import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULT_LIMITS } from "../src/config.js";
import {
  checkEmit,
  checkStartRun,
  checkVariantResult,
  EmitError,
  errorCode,
  ErrorCode,
  EventSource,
  EventType,
  hashPrompt,
  runStatus,
  RunStatus,
  toU32,
  toU64,
  truncateMessage,
  u64,
  variantStatus,
  VariantStatus,
} from "../src/record.js";

test("hashPrompt is lowercase hex sha256 of the UTF-8 text", () => {
  assert.equal(hashPrompt("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert.match(hashPrompt("é"), /^[0-9a-f]{64}$/);
  assert.notEqual(hashPrompt("é"), hashPrompt("e"));
});

test("long error messages are truncated on a character boundary, marked, within the limit", () => {
  const cut = truncateMessage("é".repeat(100), 51);
  assert.ok(Buffer.byteLength(cut) <= 51, `${Buffer.byteLength(cut)} bytes`);
  assert.ok(cut.endsWith("…[truncated]"));
  assert.equal(cut, "é".repeat(18) + "…[truncated]");
  assert.equal(truncateMessage("short", 51), "short");
  assert.equal(truncateMessage("😀".repeat(20), 30), "😀".repeat(4) + "…[truncated]");
  const exact = "x".repeat(51);
  assert.equal(truncateMessage(exact, 51), exact, "at the limit: kept whole");
});

test("numbers from JavaScript become protobuf integers: rounded, never negative, capped", () => {
  const wire = (value: number | bigint | undefined) => u64(toU64(value));
  assert.equal(wire(1234.6), 1235n);
  assert.equal(wire(-5), 0n);
  assert.equal(wire(Number.NaN), 0n);
  assert.equal(wire(undefined), 0n);
  assert.equal(wire(Infinity), (1n << 64n) - 1n);
  assert.equal(wire(2 ** 70), (1n << 64n) - 1n);
  assert.equal(wire(5_000_000_000), 5_000_000_000n);
  assert.equal(wire(1n << 70n), (1n << 64n) - 1n);
  assert.equal(wire(-1n), 0n);
  assert.equal(toU32(2 ** 33), 0xffff_ffff);
  assert.equal(toU32(-1), 0);
  assert.equal(toU32(2.5), 3);
});

test("statuses and codes are taken by the original app's names, any case, with or without the proto prefix", () => {
  assert.equal(variantStatus("success"), VariantStatus.SUCCESS);
  assert.equal(variantStatus("TIMEOUT"), VariantStatus.TIMEOUT);
  assert.equal(variantStatus("VARIANT_STATUS_FAILED"), VariantStatus.FAILED);
  assert.equal(variantStatus(VariantStatus.FAILED), VariantStatus.FAILED);
  assert.equal(variantStatus("exploded"), VariantStatus.UNSPECIFIED);
  assert.equal(runStatus("complete"), RunStatus.COMPLETE);
  assert.equal(runStatus("interrupted"), RunStatus.INTERRUPTED);
  assert.equal(runStatus(RunStatus.PARTIAL), RunStatus.PARTIAL);
  assert.equal(errorCode("PROVIDER_ERROR"), ErrorCode.PROVIDER_ERROR);
  assert.equal(errorCode("timeout"), ErrorCode.TIMEOUT);
  assert.equal(errorCode("ERROR_CODE_INTERRUPTED"), ErrorCode.INTERRUPTED);
  assert.equal(errorCode(undefined), ErrorCode.UNSPECIFIED);
  assert.equal(errorCode(null), ErrorCode.UNSPECIFIED);
  assert.equal(errorCode(42), 42, "a newer value passes through");
  assert.equal(errorCode("toString"), ErrorCode.UNSPECIFIED, "no prototype key is a code");
  assert.equal(variantStatus("constructor"), VariantStatus.UNSPECIFIED);
});

test("an oversized JSON blob is refused with the field named, its size and the limit", () => {
  const refused = checkStartRun({ runId: "r", shopId: "s", requestId: "q", resolvedFactsJson: '{"a":"0123456789"}' }, { ...DEFAULT_LIMITS, maxJsonBytes: 8 });
  assert.ok(refused instanceof EmitError);
  assert.equal(refused.reason, "payload_too_large");
  assert.equal(refused.field, "resolved_facts_json");
  assert.equal(refused.len, 18);
  assert.equal(refused.limit, 8);
  assert.equal(refused.message, "telemetry field `resolved_facts_json` is 18 bytes, over the 8-byte limit; event dropped");
});

test("sizes are counted in bytes of UTF-8, not in characters", () => {
  const fits = checkEmit({ shopId: "é".repeat(512), requestId: "r", source: EventSource.APP_PROXY, type: EventType.SF_RENDER_REQUESTED }, DEFAULT_LIMITS);
  assert.ok(!(fits instanceof EmitError));
  const over = checkEmit({ shopId: "é".repeat(512) + "x", requestId: "r", source: EventSource.APP_PROXY, type: EventType.SF_RENDER_REQUESTED }, DEFAULT_LIMITS);
  assert.ok(over instanceof EmitError);
  assert.equal(over.len, 1025);
});

test("a JSON object is written at the call: later changes to it do not reach the event", () => {
  const payload: Record<string, unknown> = { productId: "p-1" };
  const checked = checkEmit({ shopId: "s", requestId: "r", source: EventSource.APP_PROXY, type: EventType.SF_RENDER_REQUESTED, payload }, DEFAULT_LIMITS);
  payload.productId = "changed";
  assert.ok(!(checked instanceof EmitError));
  assert.equal(checked.kind, "event");
  if (checked.kind === "event") assert.equal(checked.body.payloadJson, '{"productId":"p-1"}');
});

test("null and undefined optional fields are empty on the wire, as in the original app", () => {
  const checked = checkVariantResult(
    { renderRunId: "r", variantId: "v", requestId: null, shopId: undefined, status: "success", outputImageKey: null, errorCode: undefined, errorMessage: null },
    DEFAULT_LIMITS,
  );
  assert.ok(!(checked instanceof EmitError));
  if (checked.kind === "variant_result") {
    assert.equal(checked.requestId, "");
    assert.equal(checked.body.outputImageKey, "");
    assert.equal(checked.body.errorCode, ErrorCode.UNSPECIFIED);
    assert.equal(checked.body.errorMessage, "");
  }
});
