# Sluice developer interface. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help setup demo demo-daily up test test-unit lint protos manifests bench images deploy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed ## create .venv and install Sluice with its dev tools

demo: setup ## start the stack, run examples/pipelines/demo.yaml into DuckDB, print the result
	$(VENV)/bin/sluice run examples/pipelines/demo.yaml

demo-daily: setup ## the daily-report example: a fetch job against a local portal, etl, a summary
	$(PY) examples/jobs/demo_daily.py --sluice $(VENV)/bin/sluice

up: setup ## start the four services locally (Ctrl-C stops them)
	$(VENV)/bin/sluice up --pipelines examples/pipelines

lint: setup ## ruff + mypy (strict on services/)
	$(VENV)/bin/ruff check services tests bench scripts
	$(VENV)/bin/ruff format --check services tests bench scripts
	$(VENV)/bin/mypy

test: setup lint ## lint, then every test: unit, integration, e2e, deploy
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: setup ## the fast unit tests only
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

protos: setup ## regenerate services/common/proto from protos/
	$(PY) scripts/gen_protos.py

manifests: setup ## from helm/sluice: k8s/base, values.schema.json, the chart README's values table
	$(PY) scripts/render_manifests.py

bench: setup ## benchmarks under bench/, each printing a table against its baselines
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

images: ## build the four images (needs a Docker engine)
	@for s in extractor transformer loader orchestrator; do \
	  docker build -f docker/$$s.Dockerfile -t sluice-$$s:dev . || exit 1; done

deploy: ## deploy to the current kube context with skaffold (needs skaffold and a cluster)
	skaffold run

clean: ## remove local state, logs and the demo database
	rm -rf .sluice
