#!/usr/bin/env bash
# The main job, one command: NATS with JetStream (reused when one answers on NATS_URL,
# else started here with its data under ./data/nats, installed from Debian's package
# when nats-server is not on PATH), the collector on its embedded SQLite default
# (./data/telemetry.db), the renderer with the local provider (some injected failures
# and timeouts), and a steady trickle of demo renders from generated sample images.
# Ctrl-C stops everything this script started, and nothing else; so does SIGTERM.
#
# Knobs (environment): NATS_URL, COLLECTOR_ADDR, RENDERER_ADDR, DATA_DIR, DATABASE_URL,
# LOCAL_LATENCY_MS, LOCAL_FAILURE_RATE, LOCAL_TIMEOUT_RATE, VARIANT_TIMEOUT_MS,
# DEMO_INTERVAL_MS, DEMO_PROFILE (cargo profile: release, or dev for a faster build),
# CARGO_TARGET_DIR; and whatever the binaries read (`--help`).
set -euo pipefail
# Bash cannot trap a signal it was started with ignored, and a background job of a
# non-interactive shell (`nohup … &`, a CI runner) starts with SIGINT ignored. Start
# again once with SIGINT at its default, so Ctrl-C / SIGINT always stops the demo.
if [ -z "${DEMO_SIGINT_RESET:-}" ]; then
  DEMO_SIGINT_RESET=1 exec env --default-signal=INT bash "$0" "$@"
fi
cd "$(dirname "$0")/.."

export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
# A demo stores a few MB; 1 GiB (not the 8 GiB default) so that a laptop with little
# free disk can still create the stream (JetStream reserves the whole cap).
export TELEMETRY_STREAM_MAX_BYTES="${TELEMETRY_STREAM_MAX_BYTES:-1073741824}"
COLLECTOR_ADDR="${COLLECTOR_ADDR:-127.0.0.1:8080}"
RENDERER_ADDR="${RENDERER_ADDR:-127.0.0.1:8081}"
DATA_DIR="${DATA_DIR:-./data}"
DEMO_PROFILE="${DEMO_PROFILE:-release}"
# How long each process gets to stop after SIGTERM (the collector finishes its batch;
# the renderer waits up to 20 s for its renders, then flushes its telemetry within 5 s)
# before it is killed.
STOP_GRACE_SECS="${STOP_GRACE_SECS:-30}"
mkdir -p "$DATA_DIR"

pids=()
names=()
stop_one() { # pid name
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 $((STOP_GRACE_SECS * 10))); do
    kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "demo: $2 did not stop within ${STOP_GRACE_SECS}s; killing it" >&2
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] || return 0
  echo; echo "demo: stopping ${names[*]}"
  # Newest first: traffic, then the renderer (it flushes telemetry to NATS), then the
  # collector (it finishes its batch), then a nats-server this script started.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_one "${pids[i]}" "${names[i]}"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
started() { pids+=("$1"); names+=("$2"); }

hostport() { local rest="${1#*://}"; rest="${rest##*@}"; rest="${rest%%,*}"; echo "${rest%%/*}"; }
answers() { local hp; hp=$(hostport "$1"); (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null; }
wait_for() { # url name pid
  for _ in $(seq 1 600); do
    answers "$1" && return 0
    kill -0 "$3" 2>/dev/null || { echo "demo: $2 exited during start-up" >&2; exit 1; }
    sleep 0.1
  done
  echo "demo: $2 did not come up at $1" >&2; exit 1
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# A port someone else holds would make the health wait pass against the wrong process.
for addr in "$COLLECTOR_ADDR" "$RENDERER_ADDR"; do
  if answers "http://$addr"; then
    echo "demo: $addr is already in use; set COLLECTOR_ADDR / RENDERER_ADDR to free ports" >&2
    exit 1
  fi
done

if answers "$NATS_URL"; then
  echo "demo: reusing the NATS server at $NATS_URL"
else
  if ! command -v nats-server >/dev/null; then
    echo "demo: installing nats-server (Debian package)"
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
  fi
  hp=$(hostport "$NATS_URL")
  mkdir -p "$DATA_DIR/nats"
  nats-server -a "${hp%:*}" -p "${hp##*:}" -js -sd "$DATA_DIR/nats" >"$DATA_DIR/nats.log" 2>&1 &
  started $! nats-server
  wait_for "$NATS_URL" nats-server "$!"
  echo "demo: started nats-server (JetStream data in $DATA_DIR/nats)"
fi

# Say up front how long the wait is, then let cargo show it: no -q, so its
# "Compiling …" lines reach stderr whether or not that is a terminal (its progress
# bar only shows on one), and a slow build can be told from a stalled one.
if [ "$DEMO_PROFILE" = release ]; then
  echo "demo: building (release); first build: ~8 min on 2 cores, later ones rebuild" \
    "only what changed; DEMO_PROFILE=dev builds faster (unoptimised binaries)"
else
  echo "demo: building ($DEMO_PROFILE); the first build takes a few minutes on a small machine"
fi
cargo build --profile "$DEMO_PROFILE" -p telemetry-collector -p renderer
bin="${CARGO_TARGET_DIR:-target}/$([ "$DEMO_PROFILE" = dev ] && echo debug || echo "$DEMO_PROFILE")"

DATABASE_URL="${DATABASE_URL:-sqlite://$DATA_DIR/telemetry.db}" COLLECTOR_ADDR="$COLLECTOR_ADDR" \
  MONITOR_IMAGE_BASE_URL="${MONITOR_IMAGE_BASE_URL:-http://$RENDERER_ADDR/images}" \
  "$bin/telemetry-collector" serve &
started $! telemetry-collector
RENDERER_ADDR="$RENDERER_ADDR" IMAGE_STORE_DIR="$DATA_DIR/images" \
  LOCAL_LATENCY_MS="${LOCAL_LATENCY_MS:-300}" LOCAL_FAILURE_RATE="${LOCAL_FAILURE_RATE:-0.08}" \
  LOCAL_TIMEOUT_RATE="${LOCAL_TIMEOUT_RATE:-0.04}" VARIANT_TIMEOUT_MS="${VARIANT_TIMEOUT_MS:-3000}" \
  "$bin/renderer" &
started $! renderer
wait_for "http://$COLLECTOR_ADDR" telemetry-collector "${pids[-2]}"
wait_for "http://$RENDERER_ADDR" renderer "${pids[-1]}"

"$bin/demo-traffic" --renderer-url "http://$RENDERER_ADDR" &
started $! demo-traffic

cat <<MSG

  Monitor:  http://$COLLECTOR_ADDR/monitor
  Runs API: http://$COLLECTOR_ADDR/api/v1/runs
  Metrics:  http://$COLLECTOR_ADDR/metrics  http://$RENDERER_ADDR/metrics

  Ctrl-C stops everything this script started.

MSG
set +e
wait -n "${pids[@]}"
status=$?
set -e
echo "demo: a process exited (status $status); stopping the rest" >&2
exit "$status"
