# The project's commands. Each works on a fresh machine with Python 3.11+ and make.
# A git-ignored .env (see .env.example) configures a real vendor.
-include .env
export $(filter ECOM_% DESTINATION__%,$(.VARIABLES))

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DAGSTER_HOME ?= $(CURDIR)/dagster_home
# `make demo` and `make ui` run against the sandbox vendor: whatever .env says for a real vendor,
# they keep their own warehouse and Dagster home (the paths ecom_assets/demo.py defaults to), so
# sandbox records never mix with real ones. Their Dagster processes run in that home, not here:
# Dagster's CLI loads a `.env` from its working directory over the environment.
SANDBOX_HOME := $(CURDIR)/data/sandbox_dagster_home
SANDBOX_ENV := DAGSTER_HOME=$(SANDBOX_HOME) DLT_PROJECT_DIR=$(CURDIR) ECOM_DESTINATION=duckdb \
	ECOM_DUCKDB_PATH=$(CURDIR)/data/sandbox.duckdb ECOM_PARTITIONS_START=2026-01-01
SANDBOX_PORT ?= 8765
UI_PORT ?= 3000

.PHONY: install demo ui full-refresh bench bench-refresh bench-sandbox reliability test lint chromium postgresql clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

%/dagster.yaml: dagster.yaml
	mkdir -p $*
	cp dagster.yaml $@

## The main job end to end: sandbox API, backfill both assets, checks, a printed summary.
demo: install $(SANDBOX_HOME)/dagster.yaml
	$(BIN)/python -m ecom_assets.demo

## The sandbox vendor plus the Dagster webserver and daemon on http://127.0.0.1:$(UI_PORT).
ui: install $(SANDBOX_HOME)/dagster.yaml
	@export $(SANDBOX_ENV) ECOM_API_BASE_URL=http://127.0.0.1:$(SANDBOX_PORT) \
	        ECOM_API_KEY=sandbox-key; \
	cd $(SANDBOX_HOME); \
	$(CURDIR)/$(BIN)/python -m ecom_assets.sandbox --port $(SANDBOX_PORT) --live 10 & sandbox=$$!; \
	trap 'kill $$sandbox 2>/dev/null' EXIT INT TERM; \
	$(CURDIR)/$(BIN)/dagster dev -w $(CURDIR)/workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

## Reload everything the vendor has for RESOURCE (order_payments or products) and swap the
## table atomically. Needs ECOM_API_BASE_URL and ECOM_API_KEY, e.g. from .env.
RESOURCE ?= order_payments
full-refresh: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster asset materialize -m ecom_assets.definitions --select ecom/$(RESOURCE) \
	  --partition-range $${ECOM_PARTITIONS_START:-2026-01-01}...$$(date -u +%F) \
	  --config-json '{"ops": {"ecom_vendor_sync": {"config": {"full_refresh": true}}}}'

## Side-by-side benchmark against plain dlt; writes BENCHMARKS.md.
bench: install
	$(BIN)/python -m benchmarks.bench

## What a refresh of one day and the checks cost on a 1,000,000-row table (a table to paste
## into BENCHMARKS.md).
bench-refresh: install
	$(BIN)/python -m benchmarks.refresh

## Pages per second the sandbox vendor serves from 1,000,000 records (for BENCHMARKS.md).
bench-sandbox: install
	$(BIN)/python -m benchmarks.sandbox

## The contract's vendor faults, one case each: prints what happens, rows and key hits.
reliability: install
	$(BIN)/python -m ecom_assets_tests.reliability

lint: install
	$(BIN)/ruff check .

## Debian's Chromium for the browser test (Playwright drives it; it downloads no browser).
chromium:
	@command -v chromium >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## Debian's PostgreSQL server binaries: the tests start a throwaway cluster of their own on
## loopback (the package's own cluster is not used).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

## Lint and the whole test suite (every file a test writes lives under pytest's tmp_path).
test: lint chromium postgresql
	$(BIN)/pytest

clean:
	rm -rf $(VENV) data dagster_home .pytest_cache .ruff_cache *.egg-info
