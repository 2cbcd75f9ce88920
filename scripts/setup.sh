#!/usr/bin/env bash
# Creates .venv if missing and installs the project into it (again only when pyproject.toml
# changes). Sourced by scripts/run.sh and scripts/test.sh; EXTRAS picks the extras to install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-}
# torch first and pinned: on this project's machines torch==2.13.0 is a CPU build on local disk;
# an unpinned torch would pull a 5.5 GB CUDA build. On a GPU box set HOFFDESK_TORCH_SPEC to the
# build you want (for example "torch==2.13.0" from PyPI, which is the CUDA build there).
TORCH_SPEC=${HOFFDESK_TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# One stamp per pyproject.toml content and extras; a plain run accepts any install of this
# pyproject (the test extras include everything the run needs).
hash=$(sha256sum pyproject.toml | cut -c1-16)
stamp=".venv/.hoffdesk-installed-$hash-${EXTRAS:-runtime}"
if [ ! -f "$stamp" ] && { [ -n "$EXTRAS" ] || ! compgen -G ".venv/.hoffdesk-installed-$hash-*" >/dev/null; }; then
  echo "[setup] installing dependencies (${EXTRAS:-runtime only}); the first time takes a few minutes"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
  target="."
  [ -n "$EXTRAS" ] && target=".[$EXTRAS]"
  .venv/bin/python -m pip install --quiet -e "$target"
  touch "$stamp"
fi
