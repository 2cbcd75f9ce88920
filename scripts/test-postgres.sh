#!/usr/bin/env bash
# Runs the database-facing tests again on a real PostgreSQL: a throw-away server on
# 127.0.0.1:54329, started here and stopped on exit. Called by scripts/test.sh; needs Debian's
# postgresql package (scripts/test.sh installs it) and, as root, the postgres system user.
#
# Usage: scripts/test-postgres.sh [pytest options]            (tests/generation and tests/gallery)
#        scripts/test-postgres.sh TEST_PATH... [pytest options] (only those)
# HOFFDESK_TEST_PG_PORT picks another port (one server per port on a machine).
# The tests that restart the server under a worker (tests/generation/test_faults.py) read
# HOFFDESK_TEST_PG_CTL, _DATA, _LOG, _OPTIONS (the server's, for a start after a stop) and _USER
# (who runs pg_ctl; empty: this user), exported here.
set -euo pipefail
cd "$(dirname "$0")/.."

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PGPORT=${HOFFDESK_TEST_PG_PORT:-54329}
PGDIR=$(mktemp -d /tmp/hoffdesk-pg.XXXXXX)
AS=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$PGDIR"
  AS=(runuser -u postgres --)
fi
stop() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
}
trap stop EXIT

"${AS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U hoffdesk >/dev/null
PGOPTS="-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off"
"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -o "$PGOPTS" start >/dev/null

export HOFFDESK_TEST_PG_CTL="$PGBIN/pg_ctl" HOFFDESK_TEST_PG_DATA="$PGDIR/data" HOFFDESK_TEST_PG_LOG="$PGDIR/server.log"
export HOFFDESK_TEST_PG_OPTIONS="$PGOPTS"
export HOFFDESK_TEST_PG_USER=""
[ "$(id -u)" -eq 0 ] && HOFFDESK_TEST_PG_USER=postgres

paths=(tests/generation tests/gallery)
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  paths=()
fi

echo "[test] pytest on PostgreSQL ($("$PGBIN/postgres" --version))"
status=0
DATABASE_URL="postgres://hoffdesk@127.0.0.1:$PGPORT/hoffdesk" \
  .venv/bin/python -m pytest "${paths[@]}" "$@" || status=$?
# 5 = no test selected (e.g. `-k browser` picks only tests that do not run here).
[ "$status" -eq 5 ] && status=0
exit "$status"
