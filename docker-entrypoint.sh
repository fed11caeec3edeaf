#!/usr/bin/env bash
# Start-up of the scheduler: wait for PostgreSQL, apply the pending migrations, then become the
# command (default: python -m daemon). Works in the image and from a checkout with DB_* set:
#   ./docker-entrypoint.sh true    # apply the migrations and exit 0
set -Eeo pipefail

# The project root: where this script really lives (the image links /docker-entrypoint.sh here).
APP_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# The interpreter: $PYTHON if set; in a checkout, the virtualenv tests/run.sh builds; else python3
# (the image's PATH leads to its venv).
if [[ -z ${PYTHON:-} && -x $APP_DIR/.venv/bin/python ]]; then
  PYTHON=$APP_DIR/.venv/bin/python
fi
PYTHON=${PYTHON:-python3}

# usage: run_daemon_command COMMAND — one of the daemon's own subcommands, from the project root
run_daemon_command() {
  (cd "$APP_DIR" && "$PYTHON" -m daemon "$1")
}

# usage: wait_for_postgres — until DB_WAIT_TIMEOUT_SECONDS; names host and port, never the password
wait_for_postgres() {
  run_daemon_command wait-db
}

# usage: apply_migrations — sql/NNN_*.sql in order, each once, serialized across containers
apply_migrations() {
  run_daemon_command migrate
}

main() {
  export PYTHONPATH="$APP_DIR${PYTHONPATH:+:$PYTHONPATH}"
  wait_for_postgres
  apply_migrations
  if [[ $# -eq 0 ]]; then
    set -- "$PYTHON" -m daemon
  fi
  exec "$@"
}

main "$@"
