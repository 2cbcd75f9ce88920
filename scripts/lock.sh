#!/usr/bin/env bash
# `make lock`: resolves pyproject.toml's dependencies again into the lock files in requirements/
# that scripts/setup.sh installs from. Run it after changing the dependencies, then commit
# requirements/. Pins that still fit are kept; `bash scripts/lock.sh --upgrade` moves every
# package to the newest version pyproject.toml allows.
#
# requirements/all.txt is every extra together; runtime.txt (no extra), test.txt, gpu.txt and
# postgres.txt are each resolved within all.txt's pins, so any of them installed together agree.
# torch is resolved at requirements/torch.txt's pin but left out of the files, with the CUDA
# packages it pulls (triton, nvidia-*, cuda-*): setup.sh installs torch first from
# HOFFDESK_TORCH_SPEC, a CPU or a CUDA build, and the lock must not choose for it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# The resolver, pinned so that the same pyproject.toml gives the same files on any machine.
UV_VERSION=0.13.9
upgrade=()
case "${1:-}" in
  "") ;;
  --upgrade) upgrade=(--upgrade) ;;
  *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PYTHON" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --quiet "uv==$UV_VERSION"
uv="$tools/venv/bin/uv"

# One resolution for every platform and Python that requires-python allows (>=3.11), so the
# files also install on a newer Debian's Python.
resolve=(pyproject.toml --universal --python-version 3.11 --constraint requirements/torch.txt --quiet)
torch_stack=$("$uv" pip compile "${resolve[@]}" --all-extras --no-annotate --no-header \
  | sed -nE 's/^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==.*/\1/p' | sort -u)
emit=(--generate-hashes --custom-compile-command "make lock")
for name in $torch_stack; do
  emit+=(--no-emit-package "$name")
done

echo "[lock] requirements/all.txt (leaving out: $(echo $torch_stack))"
"$uv" pip compile "${resolve[@]}" "${emit[@]}" "${upgrade[@]}" --all-extras -o requirements/all.txt
for extra in runtime test gpu postgres; do
  echo "[lock] requirements/$extra.txt"
  extra_args=()
  [ "$extra" != runtime ] && extra_args=(--extra "$extra")
  "$uv" pip compile "${resolve[@]}" "${emit[@]}" "${extra_args[@]}" \
    --constraint requirements/all.txt -o "requirements/$extra.txt"
done
