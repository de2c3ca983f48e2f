#!/usr/bin/env bash
# Makes sure the services the tests need are up: NATS with JetStream on 127.0.0.1:4222
# and PostgreSQL on 127.0.0.1:5432. Starts what is installed but stopped; installs what
# is missing (Debian packages). Starts nothing that already answers.
set -euo pipefail

NATS_PORT="${NATS_PORT:-4222}"
PG_PORT="${PG_PORT:-5432}"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name
  for _ in $(seq 1 100); do answers "$1" && return 0; sleep 0.1; done
  echo "services.sh: $2 did not come up on 127.0.0.1:$1" >&2
  return 1
}

apt_install() {
  echo "services.sh: installing $*" >&2
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! answers "$NATS_PORT"; then
  # Debian 12's nats-server is 2.9.10: the compose files pin their nats images to the
  # same 2.9 line (renderer/tests/compose.rs checks it); change them together.
  command -v nats-server >/dev/null || apt_install nats-server
  store="${NATS_STORE_DIR:-/var/lib/nats-server}"
  mkdir -p "$store"
  echo "services.sh: starting nats-server (JetStream, store $store) on :$NATS_PORT" >&2
  setsid nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$store" \
    >>"${NATS_LOG:-/tmp/nats-server.log}" 2>&1 < /dev/null &
  wait_for "$NATS_PORT" nats-server
fi

if ! answers "$PG_PORT"; then
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql
    ver=$(ls /etc/postgresql | sort -V | tail -n1)
    # Local test server only: trust connections from this machine.
    sed -i 's/^\(host.*127.0.0.1\/32\s*\)\S*$/\1trust/; s/^\(local\s*all\s*all\s*\)\S*$/\1trust/' \
      "/etc/postgresql/$ver/main/pg_hba.conf"
  fi
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "services.sh: starting PostgreSQL $ver on :$PG_PORT" >&2
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  wait_for "$PG_PORT" postgresql
fi

# The monitor's browser test (renderer/tests/browser.rs) drives Debian's headless
# Chromium through chromedriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt_install chromium chromium-driver
fi
