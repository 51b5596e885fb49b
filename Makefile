# Twilio Send & Track for Apache Airflow.
# The two commands a newcomer needs: `make demo` and `make test`.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP_FLAGS := --disable-pip-version-check -q
# The stamp changes whenever a requirements, constraints or package file does, so a second run reuses the venv.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt requirements-celery.txt constraints.txt plugins/pyproject.toml | cksum | cut -d' ' -f1)

SANDBOX_PORT ?= 8099
# Where `make dist` writes the wheel and sdist (tests/packaging builds into a temporary folder through it).
DIST ?= dist
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on Airflow, the sandbox or a browser. On two cores, three
# workers kept 1.3 cores busy and took 500 s where two took 623 s (same machine, same commit).
TEST_WORKERS ?= 3
SANDBOX_ARGS ?=

.PHONY: help venv dist test lint format sandbox demo up down bench soak screenshots lock clean

help:
	@echo "make demo     run the workflow end to end (sandbox + Airflow), print the outcome"
	@echo "make test     run every test (what CI runs)"
	@echo "make dist     build the provider's wheel and sdist into $(DIST)/"
	@echo "make up/down  start/stop the local stack to explore the UI"
	@echo "make sandbox  run the Twilio sandbox on 127.0.0.1:$(SANDBOX_PORT)"
	@echo "make bench    run the benchmarks under bench/"
	@echo "make soak     run the long soak tests"

$(STAMP): requirements.txt requirements-dev.txt requirements-celery.txt constraints.txt plugins/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned requirements into $(VENV) ..."
	$(BIN)/pip install $(PIP_FLAGS) -r requirements.txt -r requirements-dev.txt -r requirements-celery.txt -c constraints.txt
	@# Our package as an Airflow provider (connection type, Messages plugin); editable, so plugins/ stays the code.
	$(BIN)/pip install $(PIP_FLAGS) --no-deps -e plugins
	@# The install leaves plugins/*.egg-info behind; plugins/ is Airflow's plugins folder (on sys.path), where that
	@# metadata could make Airflow see the package's entry points twice. The venv has its own .dist-info.
	rm -rf plugins/*.egg-info
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

# The provider package as users install it: wheel + sdist of plugins/ (an isolated PEP 517 build; the wheel is
# built from the sdist, so a file missing from the sdist is missing from the wheel too). uv sets up the isolated
# build env: 3 s where pip took 16 s.
dist: $(STAMP)
	rm -rf $(DIST) plugins/build plugins/*.egg-info
	$(BIN)/python -m build --installer uv --outdir $(DIST) plugins
	rm -rf plugins/build plugins/*.egg-info
	@ls -1 $(DIST)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: $(STAMP) lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

sandbox: $(STAMP)
	$(BIN)/python -m sandbox --host 127.0.0.1 --port $(SANDBOX_PORT) $(SANDBOX_ARGS)

demo: $(STAMP)
	$(BIN)/python -m scripts.stack demo

up: $(STAMP)
	$(BIN)/python -m scripts.stack up

down:
	@test -x $(BIN)/python && $(BIN)/python -m scripts.stack down || true

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -p no:cacheprovider -s $(PYTEST_ARGS) tests

screenshots: $(STAMP)
	UPDATE_DOCS_SCREENSHOTS=1 $(BIN)/python -m pytest -s tests/e2e/test_ui_browser.py tests/e2e/test_messages_tab_browser.py

lock:
	rm -rf /tmp/twilio-lock-venv && $(PYTHON) -m venv /tmp/twilio-lock-venv
	/tmp/twilio-lock-venv/bin/pip install $(PIP_FLAGS) -r requirements.txt -r requirements-dev.txt -r requirements-celery.txt
	{ head -3 constraints.txt; /tmp/twilio-lock-venv/bin/pip freeze; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .airflow-home .demo .pytest_cache .ruff_cache dist plugins/build plugins/*.egg-info
