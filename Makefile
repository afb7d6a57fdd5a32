# The README's two commands are `make run` and `make test`; both set up on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, else the copy `make setup` installs with pip.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
NODE_DIR := devstack
STAMP_DIR := .venv
PY_STAMP := $(STAMP_DIR)/.ot-synced
NODE_STAMP := $(NODE_DIR)/node_modules/.ot-installed
PY_SOURCES := pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml devstack/pyproject.toml)
PYTEST_ARGS ?=
CONFORMANCE_ARGS ?=

.PHONY: help setup run test test-unit lint typecheck check-imports format bench conformance pins clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(PY_STAMP) $(NODE_STAMP) ## Install uv, the Python workspace and the npm packages (idempotent)

$(PY_STAMP): $(PY_SOURCES)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet 'uv>=0.5'
	$(UV) lock
	$(UV) sync --locked --all-packages
	@touch $@

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json $(wildcard $(NODE_DIR)/patches/*.patch)
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 20 and npm" >&2; exit 1; }
	cd $(NODE_DIR) && npm ci --no-fund --no-audit
	@touch $@

run: setup ## Start the whole system on its local defaults (Ctrl-C stops it)
	$(UV) run --no-sync python -m devstack up

test: setup ## Run every test: unit tests, then the integration and system tests against the devstack
	$(UV) run --no-sync pytest $(PYTEST_ARGS)

test-unit: setup ## Run only the tests that need no server
	$(UV) run --no-sync pytest -m "not integration" $(PYTEST_ARGS)

lint: setup ## ruff (lint and format check) and mypy strict
	$(UV) run --no-sync ruff check --output-format concise .
	$(UV) run --no-sync ruff format --check .
	$(MAKE) --no-print-directory typecheck

typecheck: setup ## mypy strict over every member
	$(UV) run --no-sync mypy libs/otcommon/src devstack/src $(wildcard services/*/src) tools

check-imports: setup ## Each member imports only what it declares (uv sync --package, tools/check_imports.py)
	@status=0; for package in otcommon devstack $(notdir $(wildcard services/*)); do \
		env=.venv-members/$$package; \
		UV_PROJECT_ENVIRONMENT=$$env $(UV) sync --quiet --locked --no-dev --package $$package || exit 1; \
		$$env/bin/python tools/check_imports.py $${package//-/_} || status=1; \
	done; exit $$status

format: setup ## Apply ruff's formatting and safe fixes
	$(UV) run --no-sync ruff check --fix .
	$(UV) run --no-sync ruff format .

bench: setup ## Run the benchmarks; figures go to bench/results/
	@mkdir -p bench/results
	@set -e; shopt -s nullglob; benches=(bench/bench_*.py); \
	if [ $${#benches[@]} -eq 0 ]; then echo "no benchmarks yet: they arrive with the services"; fi; \
	for bench in "$${benches[@]}"; do \
		name=$$(basename "$$bench" .py); name=$${name#bench_}; \
		echo "== $$bench"; $(UV) run --no-sync python "$$bench" --out "bench/results/$$name.json"; \
	done

conformance: setup ## Run the official SDK samples against the stand-ins (CONFORMANCE_ARGS="servicebus -k send")
	$(UV) run --no-sync python -m tools.conformance $(CONFORMANCE_ARGS)

pins: ## Re-resolve dependencies to the newest allowed versions and pin them in pyproject.toml
	$(UV) run --no-sync python tools/pin_dependencies.py

clean: ## Remove the virtual environment, npm packages and caches
	rm -rf .venv .venv-members uv.lock $(NODE_DIR)/node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis .conformance
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
