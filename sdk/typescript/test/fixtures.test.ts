/**
 * The shared envelope fixtures (proto/fixtures/envelopes.json): every call there must
 * give exactly the listed bytes through this SDK, as through the Rust one
 * (telemetry/tests/fixtures.rs), or be refused for the listed reason.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { fromBinary, toJson } from "@bufbuild/protobuf";

import { EnvelopeSchema } from "../src/gen/telemetry/v1/telemetry_pb.js";
import { expectedFor, FIXTURES_FILE, readJson, type FixtureCase } from "../scripts/calls.js";

const cases = readJson<{ cases: FixtureCase[] }>(FIXTURES_FILE).cases;

test("the fixtures cover every call, refusals and the ledger", () => {
  const calls = new Set(cases.map((c) => c.call));
  for (const call of ["startRun", "recordVariantStart", "recordVariantResult", "completeRun", "emit", "producerStats"]) {
    assert.ok(calls.has(call as never), `no case for ${call}`);
  }
  assert.ok(cases.some((c) => c.expected && "dropReason" in c.expected));
  assert.ok(cases.length >= 20);
});

for (const fixture of cases) {
  test(`fixture ${fixture.name}`, () => {
    assert.ok(fixture.expected, "the case has its expected answer");
    assert.deepEqual(expectedFor(fixture), fixture.expected);
    if ("hex" in fixture.expected) {
      // The readable view says what the bytes say.
      const decoded = fromBinary(EnvelopeSchema, Buffer.from(fixture.expected.hex, "hex"));
      assert.deepEqual(toJson(EnvelopeSchema, decoded), fixture.expected.envelope);
    }
  });
}

test("a JSON blob given as an object gives the bytes of its compact text", () => {
  let checked = 0;
  for (const fixture of cases) {
    const input = { ...fixture.input };
    let changed = false;
    for (const key of ["resolvedFactsJson", "promptPackJson", "payload"]) {
      const value = input[key];
      if (typeof value === "string" && value.length > 0) {
        const parsed: unknown = JSON.parse(value);
        if (JSON.stringify(parsed) !== value) continue;
        input[key] = parsed;
        changed = true;
      }
    }
    if (!changed) continue;
    checked += 1;
    assert.deepEqual(expectedFor({ ...fixture, input }), fixture.expected, fixture.name);
  }
  assert.ok(checked >= 3, `${checked} cases with JSON objects`);
});
