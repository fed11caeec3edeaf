#!/usr/bin/env bash
# The test command (README: "bash tests/run.sh"). On a fresh Debian machine with Python 3.11 it
# installs what it needs (PostgreSQL 15 server binaries, python3-venv, the virtualenv), then runs
# the whole suite: unit, integration (real PostgreSQL), end-to-end (real processes; the container
# stack when a Docker engine answers). Extra arguments go to pytest, e.g. -m "not docker".
set -Eeo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
VENV=${VENV:-$ROOT/.venv}

log() { printf 'tests/run.sh: %s\n' "$*" >&2; }

# usage: as_root CMD... — run CMD as root (directly, or through sudo)
as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

# usage: apt_install PACKAGE... — install Debian packages, refreshing the index first
apt_install() {
  log "installing $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# usage: ensure_system_packages — PostgreSQL 15 server binaries and what building the venv needs
ensure_system_packages() {
  local missing=()
  [[ -x $PG_BIN/initdb ]] || missing+=(postgresql-15)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  command -v runuser >/dev/null || missing+=(util-linux)
  command -v openssl >/dev/null || missing+=(openssl)  # the TLS test makes a certificate
  # The calendar's end-to-end tests set daemons' wall clocks with libfaketime (LD_PRELOAD).
  command -v faketime >/dev/null || missing+=(faketime)
  # The page's browser tests: Playwright drives Debian's chromium (it downloads no browser itself).
  command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

# usage: ensure_venv — the virtualenv with the pinned runtime and test dependencies
ensure_venv() {
  if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
}

# usage: ensure_promtool — Prometheus' promtool, which checks contrib/prometheus/ (the e2e test),
# taken out of Debian's `prometheus` package into the venv. Not `apt-get install prometheus`: the
# package ships a systemd unit and an init script, and installing it would start a server.
ensure_promtool() (
  if command -v promtool >/dev/null || [[ -x $VENV/bin/promtool ]]; then exit 0; fi
  log "unpacking promtool from Debian's prometheus package into $VENV/bin"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  as_root apt-get update -qq
  cd "$tmp"
  apt-get download -qq -o APT::Sandbox::User=root prometheus
  dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool
  install -m 0755 usr/bin/promtool "$VENV/bin/promtool"
)

# usage: test_paths ARGS... — prints "tests" unless ARGS already name a test path
test_paths() {
  local arg
  for arg in "$@"; do
    [[ -e ${arg%%::*} ]] && return 0
  done
  echo tests
}

main() {
  ensure_system_packages
  ensure_venv
  ensure_promtool
  cd "$ROOT"
  export PATH="$VENV/bin:$PATH"
  local paths
  read -ra paths <<<"$(test_paths "$@")"
  exec "$VENV/bin/python" -m pytest "${paths[@]}" -ra --timeout=600 --durations=25 "$@"
}

main "$@"
