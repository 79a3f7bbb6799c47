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
RUN_CLUSTER_COUNT ?= 4
RUN_ARGS ?=

# Stage images (images/<family>/Dockerfile). REGISTRY is empty by default: `make images` then tags
# them locally as adg-<family>:$(TAG) and `make compile` uses images/images.env unchanged.
REGISTRY ?=
TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
FAMILIES := cpu generate train eval
PLATFORM ?= linux/amd64
image = $(if $(REGISTRY),$(REGISTRY)/,)adg-$(1):$(TAG)
# With REGISTRY set, `make compile` pins every family by the digest the registry holds for
# $(REGISTRY)/adg-<family>:$(TAG) (images/digests.py asks the registry's HTTP API; tags stay for
# people to read, a run pulls name@sha256:...). REGISTRY_USERNAME/REGISTRY_PASSWORD if it needs them.
IMAGE_ENV = $(if $(REGISTRY),$$(python3 images/digests.py $(REGISTRY) $(TAG) $(FAMILIES)))

.PHONY: setup run test test-fast lint format compile check-compiled images push container-test images-test check-locks lock clean

setup: $(STAMP)
	$(BIN)/adg prepare-model

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/adg run --limit $(RUN_LIMIT) --max-new-tokens $(RUN_MAX_NEW_TOKENS) \
	  --cluster-count $(RUN_CLUSTER_COUNT) $(RUN_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit-test loop, on both cores (pytest-xdist; one torch thread per worker, since two
# workers' thread pools on two cores fight): no kfp.local runs, no embedded model, no subprocess
# runs, none of the few tests that take over ~5 s alone (markers in pyproject.toml). About 50 s
# for 1,100 tests on 2 idle cores (docs/benchmarks.md).
# `make test` (CI) runs everything, in one process.
FAST_MARKERS := not integration and not kfp_local and not subprocess and not slow and not gpu
FAST_WORKERS ?= 2
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(FAST_WORKERS) -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint images/*/Dockerfile

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# With REGISTRY set, the compiled pipeline references $(REGISTRY)/adg-<family>@sha256:... (the
# digests of what `make push` pushed as :$(TAG), read from the registry); without it, the
# references in images/images.env (the committed YAML).
compile: $(STAMP)
	set -e; refs="$(IMAGE_ENV)"; \
	env $$refs $(BIN)/adg compile --pipeline full --output pipelines/adg_pipeline.yaml; \
	env $$refs $(BIN)/adg compile --pipeline select --output pipelines/adg_select.yaml

# Fails when the committed pipeline YAML is not what `adg compile` produces now (from images.env
# alone: ADG_IMAGE_* in the caller's environment are ignored here).
check-compiled: $(STAMP)
	set -e; for p in full:adg_pipeline select:adg_select; do \
	  env $(foreach f,$(FAMILIES),-u ADG_IMAGE_$(shell echo $(f) | tr a-z A-Z)) \
	    $(BIN)/adg compile --pipeline $${p%%:*} --output $(VENV)/$${p#*:}.check.yaml; \
	  diff -u pipelines/$${p#*:}.yaml $(VENV)/$${p#*:}.check.yaml; \
	done

# Image targets: ENGINE=docker (default, with buildx) or ENGINE=podman, same tags; the build
# context is the repository root. `make push` pushes only images that `make images` built: the
# $(REGISTRY)-prefixed tag, or else the unprefixed adg-<family>:$(TAG) re-tagged; it checks every
# family before pushing any.
# IMAGE_BUILD_OPTS: more options for the engine's build (images/images-test.sh passes a CA bundle
# and pip's configuration for a proxy); PUSH_OPTS for its push (--tls-verify=false for a plain-HTTP
# registry on loopback).
ENGINE ?= docker
BUILD = $(if $(filter podman,$(ENGINE)),podman build,docker buildx build --load)
IMAGE_BUILD_OPTS ?=
PUSH_OPTS ?=
images:
	@for f in $(FAMILIES); do \
	  echo "building $(call image,$$f)"; \
	  $(BUILD) --platform $(PLATFORM) $(IMAGE_BUILD_OPTS) --file images/$$f/Dockerfile \
	    --tag $(call image,$$f) . || exit 1; \
	done

push:
	@test -n "$(REGISTRY)" || { echo "make push needs REGISTRY=<registry>/<owner>"; exit 2; }
	@for f in $(FAMILIES); do \
	  $(ENGINE) image inspect $(call image,$$f) >/dev/null 2>&1 \
	  || $(ENGINE) image inspect adg-$$f:$(TAG) >/dev/null 2>&1 \
	  || { echo "make push: neither $(call image,$$f) nor adg-$$f:$(TAG) was built (make images TAG=$(TAG))"; exit 2; }; \
	done
	@for f in $(FAMILIES); do \
	  $(ENGINE) image inspect $(call image,$$f) >/dev/null 2>&1 \
	  || $(ENGINE) tag adg-$$f:$(TAG) $(call image,$$f) || exit 1; \
	  $(ENGINE) push $(PUSH_OPTS) $(call image,$$f) || exit 1; \
	done

# The whole selection pipeline in the `cpu` image, every task a container (kfp.local's
# DockerRunner) as the image's user, without network, on a few records (images/container-test.sh;
# ENGINE=podman by default there, which the script installs from Debian when missing).
container-test: setup
	ENGINE=$(if $(filter command line environment,$(origin ENGINE)),$(ENGINE),podman) TAG=$(TAG) \
	  VENV=$(VENV) images/container-test.sh

# Every stage image as a user's CI makes it (images/images-test.sh): built from its Dockerfile,
# pushed to a registry on loopback (Debian's docker-registry, a temporary folder), its digest read
# back from the registry, both pipelines compiled with name@sha256 references and checked to name
# exactly those, each GPU image pulled by digest and run (imports, `adg`, its stage's work on CPU,
# the vLLM sampler test in `generate`), and the cpu image deleted, pulled back by digest and put
# through the container test. The release workflow runs it, and so must anyone changing images/
# before the change lands (about an hour on 2 cores from clean, docs/deploy.md); CI runs it with
# FAMILIES=cpu. REGISTRY=host/owner uses that registry instead of starting one.
images-test: setup
	FAMILIES="$(FAMILIES)" TAG=$(TAG) VENV=$(VENV) REGISTRY=$(REGISTRY) images/images-test.sh

# Without building anything (seconds, where `make images-test` takes an hour): every lock resolves
# as pinned, each package's exact version found for the image's Python and platform
# (pip --dry-run --no-deps --only-binary).
check-locks: $(STAMP)
	images/check-locks.sh

# Re-resolve the pinned dependencies of every image (images/<family>/requirements.txt) for
# x86_64 Linux with glibc 2.36 (Debian 12; Ubuntu 24.04 has 2.39), with KFP pinned by
# images/constraints.txt. CPU_TORCH says where the CPU build of torch comes from (PyTorch's CPU
# index by default; `--find-links DIR --constraint FILE` to take a local wheel instead).
LOCK = $(BIN)/uv pip compile pyproject.toml --quiet --no-annotate --custom-compile-command "make lock" \
	--python-platform x86_64-manylinux_2_36 --constraint images/constraints.txt
CPU_TORCH ?= --torch-backend cpu
lock: $(STAMP)
	$(LOCK) --python-version 3.11 $(CPU_TORCH) -o images/cpu/requirements.txt
	$(LOCK) --python-version 3.11 --extra generate -o images/generate/requirements.txt
	$(LOCK) --python-version 3.11 --extra train -o images/train/requirements.txt
	$(LOCK) --python-version 3.11 --extra eval --extra generate -o images/eval/requirements.txt

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info .pytest_cache .ruff_cache
