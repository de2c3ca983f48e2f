#!/usr/bin/env bash
# The quickstart, tested the way a newcomer runs it: a fresh clone of this checkout's
# HEAD in a temp dir, `bash scripts/demo.sh` there; passes when renders show up in the
# collector's API (some of them with FAILED and TIMEOUT variants) within a bound, and
# when, after SIGINT to the script, no process started from the clone is left and the
# shared NATS server on NATS_URL is the same one, still running. Also checks what a
# newcomer sees: cargo's own build output (not a silent wait), and service logs that,
# written to a file, carry no ANSI escape sequences. Called by .ci/run.
#
# Isolation: free ports, a random subject prefix and stream (deleted at the end) on the
# shared NATS, the clone's own ./data. The clone builds into this checkout's target dir
# (CARGO_TARGET_DIR), with the dev profile unless QUICKSTART_PROFILE=release, so CI
# reuses what `cargo test` just compiled instead of compiling everything again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE="${QUICKSTART_PROFILE:-dev}"
# Seconds for the first render to appear, and then for a FAILED and a TIMEOUT variant.
FIRST_RENDER_SECS="${QUICKSTART_FIRST_RENDER_SECS:-60}"
FAULTS_SECS="${QUICKSTART_FAULTS_SECS:-90}"
# Seconds the script gets to stop everything after SIGINT.
STOP_SECS="${QUICKSTART_STOP_SECS:-60}"
# The build comes first and may wait on the target-dir lock behind other builds.
BUILD_SECS="${QUICKSTART_BUILD_SECS:-1800}"

say() { echo "quickstart-test: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

if ! command -v curl >/dev/null; then
  say "installing curl (Debian package)"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

hostport() { local rest="${NATS_URL#*://}"; rest="${rest##*@}"; rest="${rest%%,*}"; echo "${rest%%/*}"; }
NATS_HP=$(hostport)
# The server's INFO line: its server_id tells whether the same server is still up.
nats_info() {
  (exec 3<>"/dev/tcp/${NATS_HP%:*}/${NATS_HP##*:}" && IFS= read -r -t 3 line <&3 && echo "$line") 2>/dev/null
}
server_id() { nats_info | sed -n 's/.*"server_id":"\([^"]*\)".*/\1/p'; }
# Deletes a stream through the JetStream API, in NATS' text protocol (no client needed).
nats_delete_stream() {
  (exec 3<>"/dev/tcp/${NATS_HP%:*}/${NATS_HP##*:}" || exit 0
    IFS= read -r -t 3 _ <&3
    printf 'CONNECT {"verbose":false}\r\nPUB $JS.API.STREAM.DELETE.%s 0\r\n\r\nPING\r\n' "$1" >&3
    timeout 3 grep -q -m1 PONG <&3) 2>/dev/null || true
}
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  fail "no free port found"
}
# Pids whose working directory or command line is inside the clone.
processes_in() {
  local dir=$1 pid
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
    # (Processes may end while we look: errors are ignored.)
    if [[ "$(readlink "$proc/cwd" 2>/dev/null)" == "$dir"* ]] ||
      { tr '\0' ' ' <"$proc/cmdline" | grep -qF "$dir"; } 2>/dev/null; then
      echo "$pid"
    fi
  done
}

before_id=$(server_id)
[ -n "$before_id" ] || fail "no NATS server answers on $NATS_URL: run \`bash scripts/services.sh\`"
grep -q '"jetstream":true' <<<"$(nats_info)" || fail "NATS on $NATS_URL has no JetStream (start it with -js)"

TMP=$(mktemp -d /tmp/quickstart.XXXXXX)
TAG="qs$(date +%s)$RANDOM"
export TELEMETRY_SUBJECT_PREFIX="$TAG" TELEMETRY_STREAM="QUICKSTART_$TAG"
export COLLECTOR_ADDR="127.0.0.1:$(free_port)" RENDERER_ADDR="127.0.0.1:$(free_port)"
# More faults and a faster trickle than the demo's defaults, so both kinds show up in
# seconds; demo.sh's own defaults are the same code path with other rates.
export LOCAL_FAILURE_RATE=0.2 LOCAL_TIMEOUT_RATE=0.15 VARIANT_TIMEOUT_MS=1000
export DEMO_INTERVAL_MS=300 DEMO_PROFILE="$PROFILE"
demo_pid=

finish() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM -- "-$demo_pid" 2>/dev/null || true
    sleep 2
  fi
  # Whatever is still left from the clone (only on failure) is ours to end.
  for pid in $(processes_in "$TMP"); do kill -KILL "$pid" 2>/dev/null || true; done
  nats_delete_stream "$TELEMETRY_STREAM"
  if [ "$status" -ne 0 ] && [ -f "$TMP/demo.log" ]; then
    say "demo.sh output (last 40 lines):"; tail -n 40 "$TMP/demo.log" >&2
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

say "cloning HEAD ($(git rev-parse --short HEAD)) into $TMP/repo"
git clone -q --no-hardlinks "$ROOT" "$TMP/repo"
git -C "$TMP/repo" checkout -q "$(git rev-parse HEAD)"

# Job control: demo.sh gets its own process group (the cleanup signals the group).
# demo.sh itself makes sure it starts with SIGINT at its default.
# NO_COLOR and CARGO_TERM_COLOR unset: the log file must be free of colour because it is
# not a terminal, not because something asked for plain output.
set -m
(cd "$TMP/repo" && exec env -u NO_COLOR -u CARGO_TERM_COLOR bash scripts/demo.sh) >"$TMP/demo.log" 2>&1 &
demo_pid=$!
set +m
say "demo.sh started (pid $demo_pid, $PROFILE build, collector $COLLECTOR_ADDR)"

API="http://$COLLECTOR_ADDR/api/v1/runs?limit=200"
runs_json() { curl -fsS --max-time 5 "$API" 2>/dev/null || true; }
count_of() { { grep -o "\"$1\":[1-9]" <<<"$2" || true; } | wc -l; }

deadline=$((SECONDS + BUILD_SECS))
until curl -fsS --max-time 2 -o /dev/null "http://$COLLECTOR_ADDR/healthz" 2>/dev/null; do
  kill -0 "$demo_pid" 2>/dev/null || fail "demo.sh exited before the collector came up"
  [ $SECONDS -lt $deadline ] || fail "collector not up within ${BUILD_SECS}s (build included)"
  sleep 1
done
up=$SECONDS
say "collector up after ${up}s (build included)"
# cargo's own lines, not only demo.sh's: "Compiling …" for a build, or just "Finished …"
# when the shared target dir was already fresh. Either shows cargo is not silenced.
build_lines=$(grep -E '^ *(Compiling|Finished) ' "$TMP/demo.log" || true)
[ -n "$build_lines" ] ||
  fail "demo.sh showed none of cargo's build output (no Compiling or Finished line): is cargo run with -q?"
say "cargo's build output visible: $(grep -c 'Compiling ' <<<"$build_lines") Compiling lines, then: $(grep -E 'Finished ' <<<"$build_lines" | tail -n 1 | sed 's/^ *//')"

deadline=$((SECONDS + FIRST_RENDER_SECS))
until grep -q '"status":"\(complete\|partial\|failed\)"' <<<"$(runs_json)"; do
  kill -0 "$demo_pid" 2>/dev/null || fail "demo.sh exited before a render showed up"
  [ $SECONDS -lt $deadline ] || fail "no completed render in $API within ${FIRST_RENDER_SECS}s"
  sleep 0.5
done
say "first render in the collector's API $((SECONDS - up))s after start-up"

deadline=$((SECONDS + FAULTS_SECS))
while :; do
  runs=$(runs_json)
  failed=$(count_of fail_count "$runs")
  timed_out=$(count_of timeout_count "$runs")
  [ "$failed" -gt 0 ] && [ "$timed_out" -gt 0 ] && break
  kill -0 "$demo_pid" 2>/dev/null || fail "demo.sh exited while waiting for faults"
  [ $SECONDS -lt $deadline ] ||
    fail "within ${FAULTS_SECS}s: $failed runs with FAILED, $timed_out with TIMEOUT variants (want both > 0)"
  sleep 1
done
say "runs with FAILED variants: $failed, with TIMEOUT variants: $timed_out"

say "sending SIGINT to demo.sh"
kill -INT "$demo_pid"
deadline=$((SECONDS + STOP_SECS))
while kill -0 "$demo_pid" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "demo.sh still running ${STOP_SECS}s after SIGINT"
  sleep 0.2
done
wait "$demo_pid" 2>/dev/null || true
demo_pid=

left=$(processes_in "$TMP")
if [ -n "$left" ]; then
  for pid in $left; do say "left behind: $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"; done
  fail "processes started from the clone survived SIGINT"
fi
after_id=$(server_id)
[ "$after_id" = "$before_id" ] ||
  fail "the shared NATS server changed or stopped (server_id $before_id -> ${after_id:-none})"
grep -q "demo: reusing the NATS server" "$TMP/demo.log" || fail "demo.sh did not reuse the running NATS"

# The services' logs went to a file: no colour codes (ESC [), and the check is not
# vacuous (both wrote plain INFO lines).
if esc=$(grep -n -m 3 $'\x1b\\[' "$TMP/demo.log"); then
  fail "ANSI escape sequences in a log written to a file (colour must be for terminals only); first lines: $(cat -v <<<"$esc")"
fi
for target in telemetry_collector renderer; do
  grep -q " INFO $target" "$TMP/demo.log" || fail "no plain INFO line from $target in demo.sh's output"
done
say "logs written to a file: no escape sequences"
say "ok: cargo output shown, renders seen, plain logs in a file, SIGINT left nothing behind, shared NATS $before_id still up"
