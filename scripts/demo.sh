#!/usr/bin/env bash
# The main job, one command: NATS with JetStream (reused when one answers on NATS_URL,
# else started here with its data under ./data/nats), the collector on its embedded
# SQLite default (./data/telemetry.db), the renderer with the local provider (some
# injected failures and timeouts), and a steady trickle of demo renders.
# Ctrl-C stops everything this script started, and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
COLLECTOR_ADDR="${COLLECTOR_ADDR:-127.0.0.1:8080}"
RENDERER_ADDR="${RENDERER_ADDR:-127.0.0.1:8081}"
DATA_DIR="${DATA_DIR:-./data}"
mkdir -p "$DATA_DIR"

pids=()
cleanup() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo; echo "demo: stopping ${#pids[@]} processes"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hostport() { local rest="${1#*://}"; rest="${rest##*@}"; echo "${rest%%/*}"; }
answers() { local hp; hp=$(hostport "$1"); (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null; }
wait_for() { # url name
  for _ in $(seq 1 300); do answers "$1" && return 0; sleep 0.1; done
  echo "demo: $2 did not come up at $1" >&2; exit 1
}

if answers "$NATS_URL"; then
  echo "demo: reusing the NATS server at $NATS_URL"
else
  if ! command -v nats-server >/dev/null; then
    echo "demo: installing nats-server (Debian package)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
  fi
  hp=$(hostport "$NATS_URL")
  mkdir -p "$DATA_DIR/nats"
  nats-server -a "${hp%:*}" -p "${hp##*:}" -js -sd "$DATA_DIR/nats" >"$DATA_DIR/nats.log" 2>&1 &
  pids+=($!)
  wait_for "$NATS_URL" nats-server
  echo "demo: started nats-server (JetStream data in $DATA_DIR/nats)"
fi

echo "demo: building (release)…"
cargo build --release -q -p telemetry-collector -p renderer

DATABASE_URL="${DATABASE_URL:-sqlite://$DATA_DIR/telemetry.db}" COLLECTOR_ADDR="$COLLECTOR_ADDR" \
  target/release/telemetry-collector serve &
pids+=($!)
RENDERER_ADDR="$RENDERER_ADDR" IMAGE_STORE_DIR="$DATA_DIR/images" \
  LOCAL_LATENCY_MS="${LOCAL_LATENCY_MS:-300}" LOCAL_FAILURE_RATE="${LOCAL_FAILURE_RATE:-0.08}" \
  LOCAL_TIMEOUT_RATE="${LOCAL_TIMEOUT_RATE:-0.04}" VARIANT_TIMEOUT_MS="${VARIANT_TIMEOUT_MS:-3000}" \
  target/release/renderer &
pids+=($!)
wait_for "http://$COLLECTOR_ADDR" telemetry-collector
wait_for "http://$RENDERER_ADDR" renderer

target/release/demo-traffic --renderer-url "http://$RENDERER_ADDR" &
pids+=($!)

cat <<MSG

  Monitor:  http://$COLLECTOR_ADDR/monitor
  Runs API: http://$COLLECTOR_ADDR/api/v1/runs
  Metrics:  http://$COLLECTOR_ADDR/metrics  http://$RENDERER_ADDR/metrics

  Ctrl-C stops everything this script started.

MSG
wait -n "${pids[@]}" || true
