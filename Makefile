# trioserver: `make run` starts a server on http://127.0.0.1:8008 with data in ./data;
# `make test` runs the linters and the test suite. Both set up .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LISTEN ?= 127.0.0.1:8008
DATA   ?= ./data
BENCH_MESSAGES ?= 20000

.PHONY: run test lint pytest bench install dev clean

$(VENV)/.python-ok:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "trioserver needs Python >= 3.11 (found: $$($(PYTHON) --version 2>&1)); set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	touch $@

$(VENV)/.runtime: $(VENV)/.python-ok pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.runtime
dev: $(VENV)/.dev

run: $(VENV)/.runtime
	$(BIN)/trioserver serve --open-registration --data-dir $(DATA) --listen $(LISTEN)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/pytest -q

test: lint pytest

bench: $(VENV)/.dev
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.events --messages $(BENCH_MESSAGES)
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.e2ee

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
