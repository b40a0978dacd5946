# kubelet-py: the two commands are `make run` and `make test`; the rest are building blocks.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
TOOLS_CACHE ?= $(HOME)/.cache/kubelet-py/tools
export TOOLS_CACHE
PYTEST_ARGS ?=

.PHONY: help deps venv tools tools-bin lint test test-unit run run-down

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

deps: ## install the Debian packages the node and its tests need (idempotent)
	@hack/install-deps.sh

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## create .venv with the package and its dev tools

tools: venv ## build the pinned upstream tools into the cache; prints TOOLS_BIN=<dir>
	@$(PY) hack/tools/build.py

tools-bin:
	@$(PY) hack/tools/build.py --print-bin

lint: venv ## ruff, mypy (strict) and the import-linter layer contracts
	@$(BIN)/ruff check kubelet_py cri engine tests bench hack
	@$(BIN)/mypy
	@$(BIN)/lint-imports

test-unit: venv ## the unit tier only (no root, no tools)
	@hack/pytest.sh tests/unit $(PYTEST_ARGS)

test: deps venv tools lint cni-config ## install everything (incl. the default CNI conflist), then run every tier of the tests
	@hack/pytest.sh tests $(PYTEST_ARGS)

run: deps venv tools ## install and run the node's main job on this machine
	@hack/run.sh

run-down: ## stop what `make run` started: its pods, its engined, the local registry
	@hack/run.sh --down

-include mk/*.mk
