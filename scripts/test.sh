#!/usr/bin/env bash
# The test command (README, .ci/run): brings up NATS and Postgres when they are not
# running, then runs every test of the workspace against them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
cargo test --workspace "$@"
