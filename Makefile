# One entry point per task; each runs scripts/setup.sh first, so a fresh clone needs only `make`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
# two worker processes, a module per worker at a time (its module-scoped fixtures start
# once): on two cores the suite takes about half as long. PYTEST_ARGS= runs it in one.
PYTEST_ARGS ?= -n 2 --dist loadscope
SANDBOX_DIR ?= .sandbox
PORT ?= 3000

.PHONY: setup demo test lint typecheck check sandbox-up sandbox-down sandbox-status

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/syncswim demo --dir $(SANDBOX_DIR) --port $(PORT)

# pytest exit 5 means "no tests collected": for a suite that is never a pass.
test: setup
	rc=0; $(VENV)/bin/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# strict, over the packages pyproject.toml names (syncswim_lib and syncswim_defs)
typecheck: setup
	$(VENV)/bin/mypy

# what CI runs: lint, format, types, then the tests (in this order; stops at the first failure)
check: lint typecheck test

sandbox-up: setup
	$(VENV)/bin/syncswim sandbox up --dir $(SANDBOX_DIR)

sandbox-down: setup
	$(VENV)/bin/syncswim sandbox down --dir $(SANDBOX_DIR)

sandbox-status: setup
	$(VENV)/bin/syncswim sandbox status --dir $(SANDBOX_DIR)
