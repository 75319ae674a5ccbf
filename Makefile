# judge-assets: `make run` builds everything on the bundled MT-Bench data, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: run test test-quick ui install install-dev clean

# The venv is rebuilt when the project's dependencies change; versions are pinned by constraints.txt.
$(BIN)/judge-assets: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.dev-installed: $(BIN)/judge-assets
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/judge-assets

install-dev: $(VENV)/.dev-installed

run: install
	$(BIN)/judge-assets run

test: install-dev
	$(BIN)/pytest

# The suite without the tests marked slow (CLI, web UI and whole-graph subprocesses): for development.
test-quick: install-dev
	$(BIN)/pytest -m "not slow"

ui: install
	$(BIN)/judge-assets ui

clean:
	rm -rf data/judge.duckdb data/judge.duckdb.wal data/judge.duckdb.ingest.lock data/batches .dagster_home
