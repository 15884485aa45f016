# trioserver: `make run` starts a server on http://127.0.0.1:8008 with data in ./data;
# `make test` runs the linters, builds the binary and runs the test suite. Both set up .venv.
# `make binary` builds the one-file executable dist/trioserver; `make smoke` also checks it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LISTEN ?= 127.0.0.1:8008
DATA   ?= ./data
BENCH_MESSAGES ?= 20000

.PHONY: run test lint pytest bench install dev clean binary smoke test-interop interop

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

# The suite includes tests/packaging, which run the freshly built binary (CI builds it here).
pytest: $(VENV)/.dev dist/trioserver
	$(BIN)/pytest -q

test: lint pytest interop

# `make test` runs the Synapse interop tests too when the reference Synapse script is there
# (it is on the development and CI machines); elsewhere it says so and skips them.
interop:
	@if [ -f "$(SYNAPSE_SH)" ]; then $(MAKE) --no-print-directory test-interop; \
	else echo "test-interop skipped: $(SYNAPSE_SH) not found (set SYNAPSE_SH)"; fi

# Federation with the reference Synapse (tests/interop): starts it in
# federation mode unless it already answers (first use installs it from PyPI), then runs the
# interop tests against it. Prints the measured join time and message rate.
SYNAPSE_SH          ?= /work/shared/tools/synapse.sh
SYNAPSE_PORT        ?= 18030
SYNAPSE_FED_PORT    ?= 18448
SYNAPSE_SERVER_NAME ?= 127.0.0.1:$(SYNAPSE_FED_PORT)

test-interop: $(VENV)/.dev
	curl -sf http://127.0.0.1:$(SYNAPSE_PORT)/_matrix/client/versions >/dev/null || \
	  SYNAPSE_SERVER_NAME=$(SYNAPSE_SERVER_NAME) SYNAPSE_FED_PORT=$(SYNAPSE_FED_PORT) \
	  SYNAPSE_PORT=$(SYNAPSE_PORT) bash $(SYNAPSE_SH) start
	TRIOSERVER_INTEROP=1 SYNAPSE_URL=http://127.0.0.1:$(SYNAPSE_PORT) \
	  SYNAPSE_SERVER_NAME=$(SYNAPSE_SERVER_NAME) $(BIN)/pytest -q tests/interop

bench: $(VENV)/.dev
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.events --messages $(BENCH_MESSAGES)
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.e2ee
	$(BIN)/python -m bench.tls
	$(BIN)/python -m bench.sliding_sync
	$(BIN)/python -m bench.appservice
	$(BIN)/python -m bench.big_room

# The one executable: PyInstaller (one-file, stripped) from packaging/trioserver.spec. Rebuilt
# when a source, the schema, the spec or the installed dependencies change.
BINARY_SOURCES  := $(shell find trioserver schema -type f -not -path '*/__pycache__/*') \
                   packaging/trioserver.spec packaging/entry.py

dist/trioserver: $(VENV)/.dev $(BINARY_SOURCES)
	$(BIN)/pyinstaller --clean --noconfirm --log-level WARN --distpath dist \
	  --workpath build/pyinstaller packaging/trioserver.spec

binary: dist/trioserver

# Runs the binary under `env -i` from a temporary directory (serve, TLS, register, thumbnails,
# SIGTERM clean-up), then prints its size, cold start, RSS and the oldest glibc it runs on.
smoke: binary
	$(BIN)/python packaging/smoke_binary.py dist/trioserver
	$(BIN)/python packaging/measure_binary.py dist/trioserver

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
