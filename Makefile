# ADG on Kubeflow: the targets a user expects. `make run` and `make test` install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; set TORCH_SPEC (and PIP_EXTRA_INDEX_URL for PyTorch's CPU wheel index)
# to install another.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

# `make run` sizes: small enough for about 5 minutes on 2 CPU cores; raise them for real runs.
RUN_LIMIT ?= 64
RUN_MAX_NEW_TOKENS ?= 128
RUN_ARGS ?=

REGISTRY ?= ghcr.io/adg-project
TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
FAMILIES := cpu generate train eval

.PHONY: setup run test lint format compile check-compiled images push clean

setup: $(STAMP)
	$(BIN)/adg prepare-model

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/adg run --limit $(RUN_LIMIT) --max-new-tokens $(RUN_MAX_NEW_TOKENS) $(RUN_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

compile: $(STAMP)
	$(BIN)/adg compile --output pipelines/adg_pipeline.yaml

# Fails when the committed pipeline YAML is not what `adg compile` produces now.
check-compiled: $(STAMP)
	$(BIN)/adg compile --output $(VENV)/adg_pipeline.check.yaml
	diff -u pipelines/adg_pipeline.yaml $(VENV)/adg_pipeline.check.yaml

# Image targets need a Docker engine with buildx (not available on every machine).
images:
	for f in $(FAMILIES); do \
	  docker buildx build -f images/$$f/Dockerfile -t $(REGISTRY)/adg-$$f:$(TAG) --load . || exit 1; \
	done

push:
	for f in $(FAMILIES); do docker push $(REGISTRY)/adg-$$f:$(TAG) || exit 1; done

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info .pytest_cache .ruff_cache
