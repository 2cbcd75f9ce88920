#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run calls it): installs what the tests need,
# system packages included, then runs ruff, mypy and pytest (SQLite and PostgreSQL side by side).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages, installed only when missing (needs root or sudo): Debian's Chromium for the
# Playwright browser tests (Playwright's own browser download is not reachable here), and
# PostgreSQL for the tests that run again on it, exiftool to read back published files' XMP, and
# git-lfs for the Git LFS export.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v exiftool >/dev/null 2>&1 || missing+=(libimage-exiftool-perl)
command -v git-lfs >/dev/null 2>&1 || missing+=(git-lfs)  # export_published --git tests
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[test] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

EXTRAS=test source scripts/setup.sh

# Tests get their own data folder, so they never touch ./data.
export HOFFDESK_DATA_DIR="${HOFFDESK_TEST_DATA_DIR:-$PWD/.test-data}"
rm -rf "$HOFFDESK_DATA_DIR"
mkdir -p "$HOFFDESK_DATA_DIR"
export DJANGO_ALLOW_ASYNC_UNSAFE=true

echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] mypy"
.venv/bin/mypy .
# The two pytest passes run side by side: most of either one's time is waiting (real qclusters,
# servers, Chromium), so on two cores the whole run takes about as long as the SQLite pass alone
# instead of the sum of both. The PostgreSQL pass gets a data folder of its own (candidate files,
# tiny models, screenshots never collide) and its output goes to a log printed when it ends.
export HOFFDESK_TEST_PG_DATA_DIR="${HOFFDESK_DATA_DIR}-pg"
rm -rf "$HOFFDESK_TEST_PG_DATA_DIR"
mkdir -p "$HOFFDESK_TEST_PG_DATA_DIR"
pg_log="$HOFFDESK_TEST_PG_DATA_DIR.log"
HOFFDESK_DATA_DIR="$HOFFDESK_TEST_PG_DATA_DIR" bash scripts/test-postgres.sh "$@" >"$pg_log" 2>&1 &
pg_pid=$!
trap 'kill "$pg_pid" 2>/dev/null || true' INT TERM
echo "[test] pytest on SQLite (the PostgreSQL pass runs beside it: $pg_log)"
status=0
.venv/bin/python -m pytest "$@" || status=$?
echo "[test] SQLite pass ended ($status); waiting for the PostgreSQL pass"
pg_status=0
wait "$pg_pid" || pg_status=$?
cat "$pg_log"
echo "[test] exit status: SQLite $status, PostgreSQL $pg_status"
[ "$status" -eq 0 ] && [ "$pg_status" -eq 0 ]
