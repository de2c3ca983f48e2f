#!/usr/bin/env bash
# The test command (README, .ci/run): brings up NATS and Postgres when they are not
# running, builds the TypeScript SDK (the Rust end-to-end test runs its node script),
# runs every test of the workspace against them, then the TypeScript SDK's tests and the
# Remix example's type check, each installed from its committed lockfile (npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "test.sh: node and npm are needed for sdk/typescript and examples/remix." >&2
  echo "test.sh: install Node.js 20 or newer with npm (e.g. \`apt-get install nodejs npm\`), then run this again." >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "test.sh: node $(node --version) is too old: the TypeScript SDK needs Node.js 20 or newer." >&2
  exit 1
fi

# Built before cargo test: telemetry-collector/tests/typescript_sdk.rs runs dist/scripts/e2e-run.js.
(cd sdk/typescript && npm ci --no-audit --no-fund && npm run build)

# Every test binary runs even after one fails, so one run reports every failure.
cargo test --workspace --no-fail-fast "$@"

(cd sdk/typescript && npm test)
(cd examples/remix && npm ci --no-audit --no-fund && npm run typecheck)
