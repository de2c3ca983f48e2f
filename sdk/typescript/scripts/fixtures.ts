/**
 * `npm run fixtures`: checks that this SDK gives every envelope of
 * proto/fixtures/envelopes.json; `npm run fixtures -- --write` fills in the `expected`
 * of each case instead (after adding a case). `cargo test -p telemetry --test fixtures`
 * then says whether the Rust SDK gives the same bytes.
 */

import { writeFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";

import { expectedFor, FIXTURES_FILE, readJson, type FixtureCase } from "./calls.js";

const doc = readJson<{ about: string; cases: FixtureCase[] }>(FIXTURES_FILE);
const write = process.argv.includes("--write");
let differ = 0;
for (const fixture of doc.cases) {
  const expected = expectedFor(fixture);
  if (write) {
    fixture.expected = expected;
  } else if (!isDeepStrictEqual(expected, fixture.expected)) {
    differ += 1;
    console.error(`${fixture.name}: this SDK gives ${JSON.stringify(expected)}`);
  }
}
if (write) {
  writeFileSync(FIXTURES_FILE, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`wrote the expected envelopes of ${doc.cases.length} cases to ${FIXTURES_FILE}`);
} else if (differ > 0) {
  console.error(`${differ} of ${doc.cases.length} cases differ`);
  process.exit(1);
} else {
  console.log(`all ${doc.cases.length} cases give their expected envelopes`);
}
