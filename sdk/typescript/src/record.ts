/**
 * What the calls take — the original app's argument shapes, field for field — and how
 * one is checked and turned into the body it will be published as (the Rust SDK's
 * `telemetry/src/record.rs`).
 *
 * Checking runs on the caller's turn of the event loop and is kept small: sizes against
 * the limits (bytes of UTF-8, fields named as on the wire), required ids, JSON objects to
 * text (so a later change to the caller's object changes nothing), numbers to integers.
 * Encoding to protobuf happens later, on the publisher's turn.
 */

import { createHash } from "node:crypto";

import type { Limits } from "./config.js";
import {
  ErrorCode,
  EventSource,
  EventType,
  RunStatus,
  VariantStatus,
} from "./gen/telemetry/v1/telemetry_pb.js";
import type { DropReason } from "./ledger.js";
import type { BodyKind } from "./subjects.js";

/**
 * sha256 of `text`, lowercase hex: the original app's `hashPrompt`, used for prompts,
 * resolved facts and prompt packs.
 */
export function hashPrompt(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** A string field as callers hand it over (`null` and `undefined` are empty). */
export type Text = string | null | undefined;
/** A JSON blob: an object (stringified at the call) or JSON text as is. */
export type JsonInput = string | Record<string, unknown> | unknown[] | null | undefined;

/** Width, height, format and size of an input image. */
export interface ImageMetaInput {
  width?: number | null;
  height?: number | null;
  /** `png`, `jpeg`, `webp`, ... */
  format?: Text;
  /** Size in bytes. */
  bytes?: number | bigint | null;
}

/** The original app's `startRun`. */
export interface StartRunInput {
  /** Required. UUIDv7 text recommended. */
  runId: string;
  shopId: Text;
  requestId: Text;
  productAssetId?: Text;
  roomSessionId?: Text;
  promptPackVersion?: Text;
  model?: Text;
  /** sha256 (lowercase hex) of the product image bytes. */
  productImageHash?: Text;
  productImageMeta?: ImageMetaInput | null;
  roomImageHash?: Text;
  roomImageMeta?: ImageMetaInput | null;
  resolvedFactsHash?: Text;
  resolvedFactsJson?: JsonInput;
  promptPackHash?: Text;
  promptPackJson?: JsonInput;
  /** How many variants the run will render (0 or absent = not known). */
  variantCount?: number | null;
}

/** The original app's `recordVariantStart`. */
export interface VariantStartInput {
  /** Required. */
  runId: string;
  /** Required. */
  variantId: string;
  requestId: Text;
  shopId: Text;
}

/** A variant's outcome as the original app names it, or the enum value. */
export type VariantStatusInput = "success" | "failed" | "timeout" | VariantStatus;

/** An error code by name (the enum's names without `ERROR_CODE_`), or the enum value. */
export type ErrorCodeInput =
  | "TIMEOUT"
  | "PROVIDER_ERROR"
  | "INVALID_INPUT"
  | "STORAGE_ERROR"
  | "INTERNAL"
  | "INTERRUPTED"
  | ErrorCode;

/** The original app's `recordVariantResult` (`renderRunId` is the run's id). */
export interface VariantResultInput {
  /** Required. */
  renderRunId: string;
  /** Required. */
  variantId: string;
  /** `hashPrompt` of the prompt actually sent to the model. */
  finalPromptHash?: Text;
  requestId: Text;
  shopId: Text;
  status: VariantStatusInput;
  /** Milliseconds; fractions are rounded, negatives count as 0. */
  latencyMs?: number | null;
  outputImageKey?: Text;
  outputImageHash?: Text;
  /** `TIMEOUT` for a timeout, `PROVIDER_ERROR` for a failure, nothing on success. */
  errorCode?: ErrorCodeInput | null;
  /** Truncated to `Limits.maxErrorMessageBytes` (marked `…[truncated]`). */
  errorMessage?: Text;
}

/** A run's outcome as lowercase text, or the enum value. */
export type RunStatusInput = "complete" | "completed" | "partial" | "failed" | "interrupted" | RunStatus;

/** The original app's `completeRun`. */
export interface CompleteRunInput {
  /** Required. */
  runId: string;
  requestId: Text;
  shopId: Text;
  status: RunStatusInput;
  totalDurationMs?: number | null;
  successCount?: number | null;
  failCount?: number | null;
  timeoutCount?: number | null;
}

/** The original app's `emit`: a typed event with a JSON payload. */
export interface EmitInput {
  shopId: Text;
  requestId: Text;
  source: EventSource;
  type: EventType;
  /** A JSON object (or JSON text); absent means none. */
  payload?: JsonInput;
  /** The run the event belongs to, if any. */
  runId?: Text;
}

/** Why a call's event was not accepted; the same reasons as the Rust SDK's `EmitError`. */
export class EmitError extends Error {
  constructor(
    /** The ledger key the drop was counted under. */
    readonly reason: DropReason,
    message: string,
    /** The offending field, named as on the wire (`run_id`, `product_image.hash`). */
    readonly field?: string,
    /** Its size in bytes. */
    readonly len?: number,
    /** The limit it exceeded. */
    readonly limit?: number,
  ) {
    super(message);
    this.name = "EmitError";
  }
}

/** The two errors without details are shared: a drop storm allocates nothing. */
export const QUEUE_FULL = Object.freeze(
  new EmitError("queue_full", "telemetry queue full; event dropped (counted as queue_full)"),
);
export const CLOSED = Object.freeze(new EmitError("closed", "telemetry is shut down; event dropped"));

function tooLarge(field: string, len: number, limit: number): EmitError {
  return new EmitError(
    "payload_too_large",
    `telemetry field \`${field}\` is ${len} bytes, over the ${limit}-byte limit; event dropped`,
    field,
    len,
    limit,
  );
}

function missing(field: string): EmitError {
  return new EmitError(
    "missing_field",
    `telemetry field \`${field}\` is required and was empty; event dropped`,
    field,
  );
}

function notJson(field: string, err: unknown): EmitError {
  return new EmitError(
    "invalid_json",
    `telemetry field \`${field}\` cannot be written as JSON (${(err as Error)?.message ?? err}); event dropped`,
    field,
  );
}

/** Image data as it goes on the wire. */
export interface ImageBody {
  hash: string;
  meta: { width: number; height: number; format: string; bytes: U64 };
}

export interface RunStartedBody {
  runId: string;
  productAssetId: string;
  roomSessionId: string;
  promptPackVersion: string;
  model: string;
  productImage: ImageBody;
  roomImage: ImageBody;
  resolvedFactsHash: string;
  resolvedFactsJson: string;
  promptPackHash: string;
  promptPackJson: string;
  variantCount: number;
}

export interface VariantStartedBody {
  runId: string;
  variantId: string;
}

export interface VariantResultBody {
  runId: string;
  variantId: string;
  finalPromptHash: string;
  status: number;
  latencyMs: U64;
  outputImageKey: string;
  outputImageHash: string;
  errorCode: number;
  errorMessage: string;
}

export interface RunCompletedBody {
  runId: string;
  status: number;
  totalDurationMs: U64;
  successCount: number;
  failCount: number;
  timeoutCount: number;
}

export interface EventBody {
  source: number;
  type: number;
  payloadJson: string;
  runId: string;
}

/** A checked call: what the envelope will say, minus its id, time and sequence. */
export type Checked =
  | { kind: "run_started"; shopId: string; requestId: string; body: RunStartedBody; bytes: number }
  | { kind: "variant_started"; shopId: string; requestId: string; body: VariantStartedBody; bytes: number }
  | { kind: "variant_result"; shopId: string; requestId: string; body: VariantResultBody; bytes: number }
  | { kind: "run_completed"; shopId: string; requestId: string; body: RunCompletedBody; bytes: number }
  | { kind: "event"; shopId: string; requestId: string; body: EventBody; bytes: number };

/** Sums field sizes (approximate encoded size, for the queue's byte bound) and checks limits. */
class Sizes {
  total = 64;
  error: EmitError | undefined;

  constructor(private readonly limits: Limits) {}

  short(field: string, value: string): string {
    return this.limit(field, value, this.limits.maxFieldBytes);
  }

  required(field: string, value: string): string {
    if (this.error === undefined && value.length === 0) this.error = missing(field);
    return this.short(field, value);
  }

  json(field: string, value: JsonInput): string {
    let text: string;
    if (typeof value === "string") {
      text = value;
    } else if (value === null || value === undefined) {
      text = "";
    } else {
      try {
        text = JSON.stringify(value) ?? "";
      } catch (err) {
        this.error ??= notJson(field, err);
        return "";
      }
    }
    return this.limit(field, text, this.limits.maxJsonBytes);
  }

  limit(field: string, value: string, limit: number): string {
    if (this.error !== undefined) return value;
    // A UTF-16 unit is at most 3 bytes of UTF-8: most strings need no exact count.
    if (value.length * 3 > limit) {
      const len = Buffer.byteLength(value, "utf8");
      if (len > limit) {
        this.error = tooLarge(field, len, limit);
        return value;
      }
    }
    this.total += value.length;
    return value;
  }
}

/** A caller's string, `null`/`undefined` as empty, anything else as its text. */
function text(value: unknown): string {
  return typeof value === "string" ? value : value === null || value === undefined ? "" : String(value);
}

const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

/** A JS number as a uint32: rounded, negatives and NaN as 0, capped at 2^32-1. */
export function toU32(value: number | null | undefined): number {
  if (typeof value !== "number" || !(value > 0)) return 0;
  return Math.min(Math.round(value), U32_MAX);
}

/**
 * A uint64 as the call left it: a whole, non-negative number (or a bigint when the
 * caller gave one). `u64` makes the wire's bigint on the publisher's turn, not the
 * caller's.
 */
export type U64 = number | bigint;

/** A JS number (or bigint) as a uint64: rounded, negatives and NaN as 0. */
export function toU64(value: number | bigint | null | undefined): U64 {
  if (typeof value === "number") return value > 0 ? Math.round(value) : 0;
  if (typeof value === "bigint") return value < 0n ? 0n : value > U64_MAX ? U64_MAX : value;
  return 0;
}

/** The wire value of a `U64`, capped at 2^64-1. */
export function u64(value: U64): bigint {
  if (typeof value === "bigint") return value;
  return value >= 18446744073709551615 ? U64_MAX : BigInt(value);
}

function enumValue(value: unknown): number {
  return typeof value === "number" && Number.isInteger(value) && value >= -0x8000_0000 && value <= 0x7fff_ffff
    ? value
    : 0;
}

const VARIANT_STATUS: ReadonlyMap<string, number> = new Map([
  ["success", VariantStatus.SUCCESS],
  ["failed", VariantStatus.FAILED],
  ["timeout", VariantStatus.TIMEOUT],
]);

const RUN_STATUS: ReadonlyMap<string, number> = new Map([
  ["complete", RunStatus.COMPLETE],
  ["completed", RunStatus.COMPLETE],
  ["partial", RunStatus.PARTIAL],
  ["failed", RunStatus.FAILED],
  ["interrupted", RunStatus.INTERRUPTED],
]);

const ERROR_CODE: ReadonlyMap<string, number> = new Map([
  ["TIMEOUT", ErrorCode.TIMEOUT],
  ["PROVIDER_ERROR", ErrorCode.PROVIDER_ERROR],
  ["INVALID_INPUT", ErrorCode.INVALID_INPUT],
  ["STORAGE_ERROR", ErrorCode.STORAGE_ERROR],
  ["INTERNAL", ErrorCode.INTERNAL],
  ["INTERRUPTED", ErrorCode.INTERRUPTED],
]);

/** `value`'s entry in `table` as written, else in any case and without `prefix`. */
function named(table: ReadonlyMap<string, number>, value: string, prefix: string, upper: boolean): number {
  const exact = table.get(value);
  if (exact !== undefined) return exact;
  const name = upper ? value.toUpperCase() : value.toLowerCase();
  return table.get(name.startsWith(prefix) ? name.slice(prefix.length) : name) ?? 0;
}

/** `success`/`SUCCESS`/`VARIANT_STATUS_SUCCESS` or the number; anything else is UNSPECIFIED. */
export function variantStatus(value: unknown): number {
  return typeof value === "string" ? named(VARIANT_STATUS, value, "variant_status_", false) : enumValue(value);
}

/** `complete`/`COMPLETE`/`RUN_STATUS_COMPLETE` or the number; anything else is UNSPECIFIED. */
export function runStatus(value: unknown): number {
  return typeof value === "string" ? named(RUN_STATUS, value, "run_status_", false) : enumValue(value);
}

/** `PROVIDER_ERROR`/`provider_error`/`ERROR_CODE_PROVIDER_ERROR` or the number; none is UNSPECIFIED. */
export function errorCode(value: unknown): number {
  if (value === undefined || value === null || value === "") return ErrorCode.UNSPECIFIED;
  return typeof value === "string" ? named(ERROR_CODE, value, "ERROR_CODE_", true) : enumValue(value);
}

/**
 * Cuts `message` to at most `limit` bytes of UTF-8 on a character boundary, marking
 * the cut (`…[truncated]`): byte for byte what the Rust SDK sends.
 */
export function truncateMessage(message: string, limit: number): string {
  const MARK = "…[truncated]";
  if (message.length * 3 <= limit) return message;
  const bytes = Buffer.from(message, "utf8");
  if (bytes.length <= limit) return message;
  let end = Math.max(0, limit - Buffer.byteLength(MARK, "utf8"));
  // A byte 0b10xxxxxx continues a character: back off to the character's first byte.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end -= 1;
  return bytes.subarray(0, end).toString("utf8") + MARK;
}

function image(sizes: Sizes, hashField: string, hash: Text, formatField: string, meta: ImageMetaInput | null | undefined): ImageBody {
  return {
    hash: sizes.short(hashField, text(hash)),
    meta: {
      width: toU32(meta?.width),
      height: toU32(meta?.height),
      format: sizes.short(formatField, text(meta?.format)),
      bytes: toU64(meta?.bytes),
    },
  };
}

export function checkStartRun(input: StartRunInput, limits: Limits): Checked | EmitError {
  const s = new Sizes(limits);
  const runId = s.required("run_id", text(input.runId));
  const shopId = s.short("shop_id", text(input.shopId));
  const requestId = s.short("request_id", text(input.requestId));
  const body: RunStartedBody = {
    runId,
    productAssetId: s.short("product_asset_id", text(input.productAssetId)),
    roomSessionId: s.short("room_session_id", text(input.roomSessionId)),
    promptPackVersion: s.short("prompt_pack_version", text(input.promptPackVersion)),
    model: s.short("model", text(input.model)),
    productImage: image(s, "product_image.hash", input.productImageHash, "product_image.meta.format", input.productImageMeta),
    roomImage: image(s, "room_image.hash", input.roomImageHash, "room_image.meta.format", input.roomImageMeta),
    resolvedFactsHash: s.short("resolved_facts_hash", text(input.resolvedFactsHash)),
    promptPackHash: s.short("prompt_pack_hash", text(input.promptPackHash)),
    resolvedFactsJson: s.json("resolved_facts_json", input.resolvedFactsJson),
    promptPackJson: s.json("prompt_pack_json", input.promptPackJson),
    variantCount: toU32(input.variantCount),
  };
  return s.error ?? { kind: "run_started", shopId, requestId, body, bytes: s.total };
}

export function checkVariantStart(input: VariantStartInput, limits: Limits): Checked | EmitError {
  const s = new Sizes(limits);
  const body: VariantStartedBody = {
    runId: s.required("run_id", text(input.runId)),
    variantId: s.required("variant_id", text(input.variantId)),
  };
  const shopId = s.short("shop_id", text(input.shopId));
  const requestId = s.short("request_id", text(input.requestId));
  return s.error ?? { kind: "variant_started", shopId, requestId, body, bytes: s.total };
}

export function checkVariantResult(input: VariantResultInput, limits: Limits): Checked | EmitError {
  const s = new Sizes(limits);
  const runId = s.required("run_id", text(input.renderRunId));
  const variantId = s.required("variant_id", text(input.variantId));
  const shopId = s.short("shop_id", text(input.shopId));
  const requestId = s.short("request_id", text(input.requestId));
  const errorMessage = truncateMessage(text(input.errorMessage), limits.maxErrorMessageBytes);
  const body: VariantResultBody = {
    runId,
    variantId,
    finalPromptHash: s.short("final_prompt_hash", text(input.finalPromptHash)),
    status: variantStatus(input.status),
    latencyMs: toU64(input.latencyMs),
    outputImageKey: s.short("output_image_key", text(input.outputImageKey)),
    outputImageHash: s.short("output_image_hash", text(input.outputImageHash)),
    errorCode: errorCode(input.errorCode),
    errorMessage,
  };
  return s.error ?? { kind: "variant_result", shopId, requestId, body, bytes: s.total + errorMessage.length };
}

export function checkCompleteRun(input: CompleteRunInput, limits: Limits): Checked | EmitError {
  const s = new Sizes(limits);
  const body: RunCompletedBody = {
    runId: s.required("run_id", text(input.runId)),
    status: runStatus(input.status),
    totalDurationMs: toU64(input.totalDurationMs),
    successCount: toU32(input.successCount),
    failCount: toU32(input.failCount),
    timeoutCount: toU32(input.timeoutCount),
  };
  const shopId = s.short("shop_id", text(input.shopId));
  const requestId = s.short("request_id", text(input.requestId));
  return s.error ?? { kind: "run_completed", shopId, requestId, body, bytes: s.total };
}

export function checkEmit(input: EmitInput, limits: Limits): Checked | EmitError {
  const s = new Sizes(limits);
  const shopId = s.short("shop_id", text(input.shopId));
  const requestId = s.short("request_id", text(input.requestId));
  const body: EventBody = {
    source: enumValue(input.source),
    type: enumValue(input.type),
    runId: s.short("run_id", text(input.runId)),
    payloadJson: s.json("payload_json", input.payload),
  };
  return s.error ?? { kind: "event", shopId, requestId, body, bytes: s.total };
}

/** The checker of each call, by the name the original app gives it. */
export const CHECKS = {
  startRun: checkStartRun,
  recordVariantStart: checkVariantStart,
  recordVariantResult: checkVariantResult,
  completeRun: checkCompleteRun,
  emit: checkEmit,
} as const;

export type BodyKindOf<C extends Checked> = C["kind"] & BodyKind;
export { ErrorCode, EventSource, EventType, RunStatus, VariantStatus };
