/**
 * The generated types are committed; `npm run generate` (buf + protoc-gen-es) must give
 * the same files from proto/proto/telemetry/v1/telemetry.proto, so the committed code
 * is never edited by hand nor left behind by a proto change.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

test("regenerating the protobuf types gives the committed files", () => {
  const out = mkdtempSync(join(tmpdir(), "ts-sdk-gen-"));
  try {
    const bin = join(PACKAGE_ROOT, "node_modules", ".bin");
    execFileSync(join(bin, "buf"), ["generate", "--output", out], {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      stdio: "pipe",
    });
    const committed = join(PACKAGE_ROOT, "src", "gen");
    const regenerated = join(out, "src", "gen");
    const names = (dir: string) => files(dir).map((f) => relative(dir, f)).sort();
    assert.deepEqual(names(regenerated), names(committed));
    assert.ok(names(committed).includes(join("telemetry", "v1", "telemetry_pb.ts")));
    for (const name of names(committed)) {
      assert.equal(
        readFileSync(join(regenerated, name), "utf8"),
        readFileSync(join(committed, name), "utf8"),
        `src/gen/${name} differs from what \`npm run generate\` gives: run it and commit the result`,
      );
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
