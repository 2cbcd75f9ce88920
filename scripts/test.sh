#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run calls it): installs what the tests need,
# system packages included, then runs ruff, mypy and pytest.
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
echo "[test] pytest on SQLite"
.venv/bin/python -m pytest "$@"
bash scripts/test-postgres.sh "$@"
