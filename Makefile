# The project's commands. Each works on a fresh machine with Python 3.11+ and make.
# A git-ignored .env (see .env.example) configures a real vendor; `make demo` and `make ui` use
# the bundled sandbox vendor and never read it.
-include .env
export $(filter ECOM_% DESTINATION__%,$(.VARIABLES))

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dg commands run in the project's virtualenv, without asking PyPI for updates.
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
export DAGSTER_DG_UPDATE_CHECK_ENABLED := 0
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
UI_PORT ?= 3000

.PHONY: install demo ui full-refresh prune bench bench-scale bench-daemon bench-sandbox \
	reliability docs test test-fast lint system-packages clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## The main job end to end: sandbox API, backfill of every asset, checks, a printed summary.
demo: install
	$(BIN)/python -m ecom_assets.demo

## The live sandbox vendor and `dg dev` (webserver and daemon) on http://127.0.0.1:$(UI_PORT).
ui: install
	$(BIN)/python -m ecom_assets.ui --port $(UI_PORT) $(UI_ARGS)

## Reload everything the vendor has for RESOURCE (order_payments or products), validate it and
## swap the table. Needs ECOM_API_BASE_URL and ECOM_API_KEY, e.g. from .env.
RESOURCE ?= order_payments
full-refresh: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg launch --assets ecom/$(RESOURCE) \
	  --partition-range $$($(BIN)/python -c 'from ecom_assets.settings import get_settings; \
	  print(get_settings().partitions_start)')...$$(date -u +%F) \
	  --config-json '{"ops": {"ecom_vendor_sync": {"config": {"full_refresh": true}}}}'

## Delete runs (and their event logs) older than DAYS from $(DAGSTER_HOME).
DAYS ?= 30
prune: install
	$(BIN)/python -m ecom_assets.prune --older-than-days $(DAYS)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml ecom_assets/instance.py | install
	$(BIN)/python -m ecom_assets.instance $(DAGSTER_HOME)

## Side-by-side benchmark against plain dlt. Each bench target writes its section of BENCHMARKS.md.
bench: install
	$(BIN)/python -m benchmarks.bench

## One backfill of 100,000 and of 1,000,000 order payments: wall time and peak RSS.
bench-scale: install
	$(BIN)/python -m benchmarks.bench --section "make bench-scale" --scenario 100000:0 \
	  --scenario 1000000:0 --repeats 1 --variants c --no-run-costs

## The sensor through the daemon for some minutes: change-to-warehouse latency, storage growth.
bench-daemon: install
	$(BIN)/python -m benchmarks.daemon

## Pages per second the sandbox vendor serves from 1,000,000 records.
bench-sandbox: install
	$(BIN)/python -m benchmarks.sandbox

## The tables of README.md and docs/how-it-works.md that restate the settings and the checks.
docs: install
	$(BIN)/python -m ecom_assets_tests.docs_tables

## The contract's vendor faults and defects, one case each; writes docs/reliability.md.
reliability: install
	$(BIN)/python -m ecom_assets_tests.reliability --output docs/reliability.md

lint: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ruff check .
	$(BIN)/dg check defs

## Lint and the whole test suite (every file a test writes lives under pytest's tmp_path).
## Browser and PostgreSQL tests need Chromium and PostgreSQL: installed here when this machine
## can (root and apt-get), else skipped with the reason (ECOM_STRICT_TESTS=1 fails instead).
test: lint system-packages
	$(BIN)/pytest

## The unit and integration layers only (no subprocesses, browser or database server).
test-fast: install
	$(BIN)/pytest -m "not system" -n 2

## Debian's Chromium (driven by Playwright; it downloads no browser) and PostgreSQL server
## binaries (the tests start throwaway clusters of their own on loopback).
system-packages:
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
	  echo "Not installing$$missing (needs root and apt-get): the tests that need it are" \
	       "skipped and listed at the end; PostgreSQL tests use pgserver's binaries instead."; \
	fi

clean:
	rm -rf $(VENV) data dagster_home .pytest_cache .ruff_cache *.egg-info
