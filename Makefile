# genvault: `make run` starts everything locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck pytest bench clean

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

# Every figure with its baseline from the same run, in under 5 minutes. wrk (Debian's
# package) drives the ingest bench: installed here when missing and we are root; otherwise
# that bench says it is missing and the others still run.
bench: $(VENV)/.dev-stamp
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } \
		|| echo "bench: wrk is missing (apt-get install wrk); the ingest figures are skipped"
	$(BIN)/python bench/ingest.py --duration 8
	$(BIN)/python bench/latency.py --jobs 20 --burst 50
	$(BIN)/python bench/queue_throughput.py --tasks 5000 --concurrency 4
	$(BIN)/python bench/queue_throughput.py --tasks 5000 --concurrency 32
	$(BIN)/python bench/archive_throughput.py
	$(BIN)/python bench/archive_memory.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
