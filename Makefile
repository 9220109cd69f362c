# genvault: `make run` starts everything locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck pytest bench fuzz clean

# Two stamps: a plain install for `run`, the dev extras for `test`. Both redo when
# pyproject.toml changes.
$(VENV)/.run-stamp: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "genvault needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-stamp: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "genvault needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run-stamp

run: $(VENV)/.run-stamp
	$(BIN)/genvault migrate
	$(BIN)/genvault dev

test: lint typecheck pytest

lint: $(VENV)/.dev-stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-stamp
	$(BIN)/mypy

pytest: $(VENV)/.dev-stamp
	$(BIN)/pytest

bench: $(VENV)/.dev-stamp
	$(BIN)/python bench/webhook_latency.py
	$(BIN)/python bench/archive_memory.py

# schemathesis over /openapi.json against gunicorn, 90 s on SQLite then 90 s on PostgreSQL;
# prints operations, cases and failures per database (the suite runs the same, shorter).
fuzz: $(VENV)/.dev-stamp
	GENVAULT_FUZZ_SECONDS=90 $(BIN)/pytest -q -s -p no:cacheprovider tests/e2e/test_schemathesis.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
