# mlflow-operator: the usual targets. Everything installs what it needs by itself.
# Built programs (Kubernetes control plane, MinIO) go to ~/.cache/mlflow-operator, never the repo.

# make images: the registry (and path) to name the images for, e.g. registry.example.com/ml;
# PUSH=1 pushes them; TAG defaults to the operator's version; IMAGES picks some of them;
# IMAGE_BUILD_FLAGS are passed to the build tool (e.g. --build-flag=--platform=linux/amd64).
REGISTRY ?=
TAG ?=
PUSH ?=
IMAGES ?=
IMAGE_BUILD_FLAGS ?=

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml serving/pyproject.toml | sha256sum | cut -c1-12)

.DEFAULT_GOAL := help
.PHONY: help install env build-cluster build-helm build-prom images test-images locks manifests check-image bench lint test test-unit crds run cluster mlflow demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

# uv installs the ~150 packages in seconds where pip takes minutes (CI starts from a fresh
# clone); --native-tls trusts the system's certificates, as pip does. --compile-bytecode, as
# pip does by default: uv does not, and where PYTHONDONTWRITEBYTECODE is set (this machine)
# every process of the suite would compile what it imports from source again (4.6 s of the
# 6.7 s start of a serving process; 20 s once here).
$(STAMP): pyproject.toml serving/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q 'uv>=0.9,<1'
	$(BIN)/uv pip install -q --native-tls --compile-bytecode --python $(BIN)/python \
		-e '.[dev]' -e ./serving
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## the virtualenv with the operator and its test tools

env: install build-cluster build-helm build-prom  ## everything the tests need: Debian packages, Go builds (cached)
	bash tests/mlflowstack/setup.sh

build-cluster:  ## build the local Kubernetes control plane + KWOK (cached)
	bash tests/cluster/build.sh

build-helm:  ## build the helm CLI (cached)
	bash tests/helm/build.sh

build-prom:  ## build prometheus and promtool (cached): alert tests, dashboard test
	$(BIN)/python -m tests.prometheus.build

images:  ## build the images for REGISTRY=... [PUSH=1] [TAG=...] (docker, podman or buildah); prints the helm line
	@test -n "$(REGISTRY)" || { echo "make images: set REGISTRY, e.g. make images REGISTRY=registry.example.com/ml PUSH=1" >&2; exit 2; }
	$(PYTHON) deploy/image/publish.py --registry "$(REGISTRY)" $(if $(TAG),--tag "$(TAG)") \
	  $(if $(PUSH),--push) $(if $(IMAGES),--only "$(IMAGES)") $(IMAGE_BUILD_FLAGS)

test-images: install  ## the test cluster's images, built locally with buildah (cached)
	$(BIN)/python -m tests.images

locks: install  ## resolve the images' Python packages again (uv, PyPI): deploy/image/locks/*.txt
	$(BIN)/python -m tests.images.locks

lint: install  ## ruff, mypy (strict) and the import layers (import-linter, pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: env lint check-image  ## the whole suite: lint, image check, then e2e (two processes, one test cluster) alongside unit, helm and integration (tests/suite.py)
	$(BIN)/python -m tests.suite

test-unit: install  ## unit tests only (no I/O, seconds)
	$(BIN)/python -m pytest tests/unit

crds: install  ## regenerate crds/ from the API models (then run make manifests)
	$(BIN)/mlflow-operator crds --output-dir crds

manifests: install build-helm  ## regenerate the chart's CRDs, deploy/, argocd-cm and docs/api.md
	$(BIN)/python -m tests.helm.manifests

check-image: install  ## install the operator image's requirements as the Dockerfile does
	bash deploy/image/check-operator-venv.sh

bench: env  ## benchmarks (numbers, not pass/fail): serving runtime, MLflow stack
	$(BIN)/python -m tests.bench.bench_serving

run: install  ## run the operator against the current kubeconfig
	$(BIN)/mlflow-operator run

cluster: install build-cluster  ## start the local test cluster for interactive use
	$(BIN)/python -m tests.cluster

mlflow: install  ## start the local MLflow stack (PostgreSQL, MinIO, mlflow server)
	bash tests/mlflowstack/setup.sh
	$(BIN)/python -m tests.mlflowstack

demo: env  ## the main job on this machine: registry-driven rollout with a real model
	$(BIN)/python -m demo

clean:  ## remove the virtualenv and caches in the repo (not the Go build cache)
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info operator/*.egg-info
