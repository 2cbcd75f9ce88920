.PHONY: run test lint
# The README's two commands.
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy .
