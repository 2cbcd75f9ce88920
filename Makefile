.PHONY: run test lint lock
# The README's two commands.
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy .
# After changing pyproject.toml's dependencies: resolve requirements/*.txt again, then commit them
# (bash scripts/lock.sh --upgrade moves every pin to the newest allowed).
lock:
	bash scripts/lock.sh
