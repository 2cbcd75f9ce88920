#!/usr/bin/env bash
# Creates .venv if missing and installs the project into it from the lock files in requirements/
# (again only when they or pyproject.toml change). Sourced by scripts/run.sh and scripts/test.sh;
# EXTRAS picks the extras to install ("test", "gpu,postgres"), each from requirements/<extra>.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-}
# torch first and pinned (requirements/torch.txt): on this project's machines torch==2.13.0 is a
# CPU build on local disk; an unpinned torch would pull a 5.5 GB CUDA build. On a GPU box set
# HOFFDESK_TORCH_SPEC to the build you want (for example "torch==2.13.0" from PyPI, which is the
# CUDA build there). The lock files leave torch and its CUDA packages out, so either build fits.
TORCH_SPEC=${HOFFDESK_TORCH_SPEC:-$(grep -m1 '^torch==' requirements/torch.txt)}

locks=()
for extra in $(echo "${EXTRAS:-runtime}" | tr ',' ' '); do
  if [ ! -f "requirements/$extra.txt" ]; then
    echo "[setup] no lock file requirements/$extra.txt for the extra '$extra' (make lock writes them)" >&2
    exit 1
  fi
  locks+=(-r "requirements/$extra.txt")
done

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# One stamp per content of pyproject.toml and the lock files, and per extras; a plain run accepts
# any install of them (the test extras include everything the run needs).
hash=$(cat pyproject.toml requirements/*.txt | sha256sum | cut -c1-16)
stamp=".venv/.hoffdesk-installed-$hash-${EXTRAS:-runtime}"
if [ ! -f "$stamp" ] && { [ -n "$EXTRAS" ] || ! compgen -G ".venv/.hoffdesk-installed-$hash-*" >/dev/null; }; then
  echo "[setup] installing dependencies (${EXTRAS:-runtime only}); the first time takes a few minutes"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
  # Exactly the locked versions, each checked against its hash; --no-deps because the lock
  # already lists every dependency, and pip check below proves it did.
  .venv/bin/python -m pip install --quiet --no-deps --require-hashes "${locks[@]}"
  .venv/bin/python -m pip install --quiet --no-deps -e .
  .venv/bin/python -m pip check
  touch "$stamp"
fi
