/**
 * The shared fixtures (`proto/fixtures/envelopes.json`) and the cross-SDK run
 * (`proto/fixtures/e2e-run.json`) describe calls as `{ call, input }` in the original
 * app's argument shapes, with enums by name. This turns one into a call on a handle,
 * or into the envelope it must give.
 */

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { toJson } from "@bufbuild/protobuf";

import { DEFAULT_LIMITS, type Limits } from "../src/config.js";
import { callEnvelope, encode, kindOf, statsEnvelope, type Stamp } from "../src/envelope.js";
import { EnvelopeSchema } from "../src/gen/telemetry/v1/telemetry_pb.js";
import type { StatsSnapshot } from "../src/ledger.js";
import { CHECKS, EmitError, EventSource, EventType } from "../src/record.js";
import { SUBJECT_SUFFIX } from "../src/subjects.js";
import type { EmitResult, Telemetry } from "../src/telemetry.js";

/** The repository's root (this file is compiled to sdk/typescript/dist/scripts/). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
export const FIXTURES_FILE = join(REPO_ROOT, "proto", "fixtures", "envelopes.json");
export const E2E_RUN_FILE = join(REPO_ROOT, "proto", "fixtures", "e2e-run.json");

export type CallName = keyof typeof CHECKS;
export interface CallSpec {
  call: CallName | "producerStats";
  input: Record<string, unknown>;
}

export interface FixtureCase extends CallSpec {
  name: string;
  about: string;
  limits?: Partial<Limits>;
  stamp: Stamp;
  expected?: Expected;
}

export type Expected =
  | { subject: string; envelope: unknown; hex: string }
  | { dropReason: string; field: string | null; len?: number; limit?: number };

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, "utf8")) as T;
}

/** The input as the TypeScript API takes it: `source`/`type` names become the enums. */
export function apiInput(spec: CallSpec): Record<string, unknown> {
  if (spec.call !== "emit") return spec.input;
  const input = { ...spec.input };
  if (typeof input.source === "string") input.source = EventSource[input.source as keyof typeof EventSource];
  if (typeof input.type === "string") input.type = EventType[input.type as keyof typeof EventType];
  return input;
}

/** Makes the call on `telemetry`. */
export function submit(telemetry: Telemetry, spec: CallSpec): EmitResult {
  const input = apiInput(spec) as never;
  switch (spec.call) {
    case "startRun":
      return telemetry.startRun(input);
    case "recordVariantStart":
      return telemetry.recordVariantStart(input);
    case "recordVariantResult":
      return telemetry.recordVariantResult(input);
    case "completeRun":
      return telemetry.completeRun(input);
    case "emit":
      return telemetry.emit(input);
    default:
      throw new Error(`not a call: ${spec.call}`);
  }
}

/** What this SDK gives for a fixture case. */
export function expectedFor(fixture: FixtureCase): Expected {
  if (fixture.call === "producerStats") {
    const input = fixture.input as {
      emitted: number;
      published: number;
      droppedByReason: Record<string, number>;
      publishFailures: number;
      queueDepth: number;
      startedAt: number;
      final: boolean;
      service: string;
    };
    const stats: StatsSnapshot = {
      emitted: input.emitted,
      published: input.published,
      dropped: Object.values(input.droppedByReason).reduce((a, b) => a + b, 0),
      droppedByReason: input.droppedByReason,
      publishFailures: input.publishFailures,
      queueDepth: input.queueDepth,
      connected: true,
    };
    const envelope = statsEnvelope(
      stats,
      { startedAt: input.startedAt, final: input.final, service: input.service },
      fixture.stamp,
    );
    return described(envelope);
  }
  const limits: Limits = { ...DEFAULT_LIMITS, ...fixture.limits };
  const checked = CHECKS[fixture.call](apiInput(fixture) as never, limits);
  if (checked instanceof EmitError) {
    const refused: Expected = { dropReason: checked.reason, field: checked.field ?? null };
    if (checked.len !== undefined) refused.len = checked.len;
    if (checked.limit !== undefined) refused.limit = checked.limit;
    return refused;
  }
  return described(callEnvelope(checked, fixture.stamp));
}

function described(envelope: ReturnType<typeof callEnvelope>): Expected {
  return {
    subject: SUBJECT_SUFFIX[kindOf(envelope)],
    envelope: toJson(EnvelopeSchema, envelope),
    hex: Buffer.from(encode(envelope)).toString("hex"),
  };
}
