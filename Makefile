# websim: `make demo` runs the whole pipeline on the sample data, `make test` runs the tests.
# Both install what they need first (scripts/setup.sh, idempotent).
SHELL := /bin/bash
VENV := .venv/bin
export WEBSIM_HOME ?= $(CURDIR)/.websim
export DAGSTER_HOME ?= $(WEBSIM_HOME)/dagster_home
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test ui serve bench

install:
	bash scripts/setup.sh

demo: install
	$(VENV)/websim run

test: install
	$(VENV)/python -m pytest $(PYTEST_ARGS)

ui: install
	mkdir -p $(DAGSTER_HOME) && $(VENV)/python -c "from assets.cli import ensure_dagster_home; ensure_dagster_home()"
	$(VENV)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

serve: install
	$(VENV)/websim serve

bench: install
	$(VENV)/python benchmarks/bench_ingest.py
