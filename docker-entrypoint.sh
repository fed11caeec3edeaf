#!/usr/bin/env bash
# Start-up of the scheduler: wait for PostgreSQL, apply the pending migrations, then become the
# command. Without one, the daemon (`python -m daemon run --migrate`), which waits and migrates in
# its own process. Works in the image and from a checkout with DB_* set:
#   ./docker-entrypoint.sh true    # apply the migrations and exit 0
# One more use, by docker-compose.yml's one-shot `db-password` service (as root, before PostgreSQL
# starts): write the database password into the volume both services read, then exit.
#   docker-entrypoint.sh password-file FILE
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

# The daemon's user: the owner of the password file (the image's `scheduler`).
DAEMON_USER=${DAEMON_USER:-scheduler}

# usage: refuse_setting LINE — a bad setting: one line on stderr, exit 2 (as the daemon does)
refuse_setting() {
  printf 'config error: %s\n' "$1" >&2
  exit 2
}

# usage: first_line FILE — FILE's first line without a trailing \r (as the daemon reads DB_PASSWORD_FILE)
first_line() {
  local line=
  IFS= read -r line <"$1" || true
  printf '%s' "${line%$'\r'}"
}

# usage: chosen_password — on stdout: DB_PASSWORD if set, else the first line of DB_PASSWORD_FILE
# (e.g. a compose secret), else 256 new random bits as URL-safe text (no character any client needs
# to quote). An error names the setting, never the password.
chosen_password() {
  local password= allowed="a password without control characters (a stray carriage return or newline?)"
  if [[ -n ${DB_PASSWORD:-} && -n ${DB_PASSWORD_FILE:-} ]]; then
    refuse_setting "DB_PASSWORD and DB_PASSWORD_FILE=${DB_PASSWORD_FILE@Q} are both set: set only one of them"
  elif [[ -n ${DB_PASSWORD:-} ]]; then
    password=$DB_PASSWORD
    [[ $password == *[[:cntrl:]]* ]] && refuse_setting "DB_PASSWORD=<hidden> is not allowed: $allowed"
  elif [[ -n ${DB_PASSWORD_FILE:-} ]]; then
    [[ -f $DB_PASSWORD_FILE && -r $DB_PASSWORD_FILE ]] && password=$(first_line "$DB_PASSWORD_FILE")
    if [[ -z $password || $password == *[[:cntrl:]]* ]]; then
      refuse_setting "DB_PASSWORD_FILE=${DB_PASSWORD_FILE@Q} is not allowed: a regular, readable file whose first line is $allowed"
    fi
  else
    password=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')
  fi
  printf '%s' "$password"
}

# usage: write_password_file FILE — as root (CAP_CHOWN is enough), in a directory of root's: FILE
# gets DB_PASSWORD (or DB_PASSWORD_FILE's first line) when one is set, else a new random password
# unless it holds one already (made on an earlier start: the database has it). Replaced atomically,
# never read here. FILE: owner the daemon's user, mode 0400 (the daemon reads it, and root in the
# postgres container); its directory mode 0711 (passable, not listable).
write_password_file() {
  local file=$1 dir password tmp
  dir=$(dirname "$file")
  if [[ -z ${DB_PASSWORD:-} && -z ${DB_PASSWORD_FILE:-} && -s $file ]]; then
    return 0
  fi
  password=$(chosen_password)
  tmp=$(mktemp "$dir/.db_password.XXXXXX")
  printf '%s\n' "$password" >"$tmp"
  chmod 0400 "$tmp"
  chown "$DAEMON_USER:$DAEMON_USER" "$tmp"
  mv -f "$tmp" "$file"
  chmod 0711 "$dir"
}

main() {
  if [[ ${1:-} == password-file && $# -eq 2 ]]; then
    write_password_file "$2"
    return
  fi
  export PYTHONPATH="$APP_DIR${PYTHONPATH:+:$PYTHONPATH}"
  if [[ $# -eq 0 ]]; then
    # The daemon waits and migrates itself, in one process: its warm parent imports Scrapy while
    # PostgreSQL starts, so a catch-up's first crawl starts the moment it answers.
    exec "$PYTHON" -m daemon run --migrate
  fi
  wait_for_postgres
  apply_migrations
  exec "$@"
}

main "$@"
