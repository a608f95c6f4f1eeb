# syntax=docker/dockerfile:1
# Images of mlflow-operator, one target each; `make images REGISTRY=...` builds all of them
# (deploy/image/publish.py, with docker, podman or buildah) and prints the helm line to use them.
#   operator       the operator (default target): slim Python, non-root, runtime deps only
#   serving-cpu    default serving image: MLflow scoring server, our batched runtime,
#                  scikit-learn, XGBoost, LightGBM
#   serving-gpu    serving-cpu's stack plus PyTorch with the CUDA 12 runtime
#   mlflow-server  default MLflowServer image: MLflow tracking server, psycopg2, boto3
#   minio          default managed object store: MinIO built from source (see its stage)
# Python packages come from deploy/image/locks/<image>.txt, with hashes (`make locks`).
# MLflow's version must match config.py (MLFLOW_VERSION); the locks' .in files pin it.
#
# Base images by digest, as docker-library/repo-info recorded them: python:3.12-slim-bookworm
# of 2026-08-25 (Python 3.12.14) and golang:1.26-bookworm of 2026-07-14 (Go 1.26.5). Neither
# could be pulled where this was written (no registry reachable): the tests build on a Debian
# bookworm stand-in passed as PYTHON_IMAGE and GO_IMAGE (docs/testing.md, "Images").
ARG PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:0f5b26b9518d002b6173fd61daad821fa340635ebfec5bba471013f9ca114579
ARG GO_IMAGE=golang:1.26-bookworm@sha256:551752d3ad9de9923190bf5280500617ed8fee287ffb4b0220e770ef89346258

# ---------------------------------------------------------------------------------------------
# The operator's virtualenv. The same script runs in CI (deploy/image/check-operator-venv.sh).
FROM ${PYTHON_IMAGE} AS operator-venv
COPY deploy/image/install-operator.sh /usr/local/bin/install-operator.sh
COPY deploy/image/locks/operator.txt /src/deploy/image/locks/operator.txt
COPY pyproject.toml README.md /src/
COPY operator/ /src/operator/
RUN install-operator.sh /opt/venv /src
# What the serving images install (their locks), on this same base image's Python: the
# pre-flight check of new model versions reads it (setting serving_image_contents).
COPY deploy/image/locks/serving-cpu.txt deploy/image/locks/serving-gpu.txt /src/deploy/image/locks/
RUN /opt/venv/bin/mlflow-operator image-contents \
      --lock serving-cpu=/src/deploy/image/locks/serving-cpu.txt \
      --lock serving-gpu=/src/deploy/image/locks/serving-gpu.txt \
      --output /opt/serving-images.json

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS operator
LABEL org.opencontainers.image.title="mlflow-operator" \
      org.opencontainers.image.description="Kubernetes operator for registry-driven MLflow model deployment" \
      org.opencontainers.image.source="https://github.com/mlflow-operator/mlflow-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=operator-venv /opt/venv /opt/venv
COPY --from=operator-venv /opt/serving-images.json /etc/mlflow-operator/serving-images.json
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# 65532: the conventional "nonroot" uid; no shell login, no home of its own.
USER 65532:65532
EXPOSE 8080 8081 8443
ENTRYPOINT ["mlflow-operator"]
CMD ["run"]

# ---------------------------------------------------------------------------------------------
# Serving: the pod runs `mlflow-operator-serve-mlflow` (runtime mlflow: `mlflow models serve`,
# the model downloaded once) or `mlflow-operator-serve`
# (runtime batched, serving/) with env-manager local, so the model's libraries must be in the
# image. The operator itself is not: the serving runtime is a distribution of its own.
FROM ${PYTHON_IMAGE} AS serving-deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Everything but the serving runtime's own package: the model libraries and the runtime's
# dependencies, as the lock pins them. The final images copy this virtualenv as one layer, so
# it must not change with our code: a release then ships a layer of a few hundred kilobytes
# instead of a new 1.6 GB one.
COPY deploy/image/locks/serving-cpu.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --require-hashes --no-deps --requirement /tmp/requirements.txt \
 && /opt/venv/bin/pip check \
 && rm /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS serving-gpu-deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# PyTorch's wheels on PyPI carry the CUDA runtime, cuDNN and NCCL as pip packages
# (nvidia-*-cu12), so no CUDA base image is needed: the host provides only the driver.
COPY deploy/image/locks/serving-gpu.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --require-hashes --no-deps --requirement /tmp/requirements.txt \
 && /opt/venv/bin/pip check \
 && rm /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS serving-base
# libgomp: the OpenMP runtime that LightGBM and XGBoost load; nothing else is installed.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgomp1=12.* \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MLFLOW_HOME=/tmp/mlflow
EXPOSE 8080

FROM serving-base AS serving-cpu
COPY --from=serving-deps /opt/venv /opt/venv
COPY serving/ /src/
# the runtime's package alone (mlflow-operator-serve): its dependencies are in the layer above,
# and `pip check` says the lock has them all
# skops' trusted types recorded once here rather than computed at every start (0.85 s of 3.5;
# serving/mlflow_operator_serve/skops_trusted_types.py), root-owned like the code
RUN PIP_NO_CACHE_DIR=1 /opt/venv/bin/pip install --quiet --no-deps /src \
 && /opt/venv/bin/pip check && rm -rf /src \
 && /opt/venv/bin/python -m mlflow_operator_serve.skops_trusted_types
USER 65532:65532

FROM serving-base AS serving-gpu
COPY --from=serving-gpu-deps /opt/venv /opt/venv
COPY serving/ /src/
RUN PIP_NO_CACHE_DIR=1 /opt/venv/bin/pip install --quiet --no-deps /src \
 && /opt/venv/bin/pip check && rm -rf /src \
 && /opt/venv/bin/python -m mlflow_operator_serve.skops_trusted_types
# What the NVIDIA container toolkit needs to mount the driver into the container.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 65532:65532

# ---------------------------------------------------------------------------------------------
# The MLflowServer's tracking server, its schema migrations and the bucket check.
FROM ${PYTHON_IMAGE} AS mlflow-server-venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deploy/image/locks/mlflow-server.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --require-hashes --no-deps --requirement /tmp/requirements.txt \
 && /opt/venv/bin/pip check \
 && rm /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS mlflow-server
COPY --from=mlflow-server-venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 5000
ENTRYPOINT []
CMD ["mlflow", "server", "--host", "0.0.0.0"]

# ---------------------------------------------------------------------------------------------
# MinIO for an MLflowServer's managed artifact store. Upstream publishes no image with the fix
# of CVE-2025-62506 (MinIO has been source-only since October 2025, and its repository was
# archived in February 2026), so this builds its last commit (2026-02-12), which has the fix
# (commit c1a49490, released as RELEASE.2025-10-15T17-29-55Z). The Go module proxy serves it
# as this pseudo-version; MinIO's RELEASE tags are not semver.
FROM ${GO_IMAGE} AS minio-build
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
ARG GOPROXY=https://proxy.golang.org,direct
RUN CGO_ENABLED=0 GOBIN=/out GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags="-s -w" "github.com/minio/minio@${MINIO_VERSION}"

FROM ${PYTHON_IMAGE} AS minio
LABEL org.opencontainers.image.title="minio" \
      org.opencontainers.image.description="MinIO (github.com/minio/minio, last commit) for mlflow-operator" \
      org.opencontainers.image.licenses="AGPL-3.0-only"
COPY --from=minio-build /out/minio /usr/bin/minio
# The operator's MinIO pods run as uid and gid 1000 and mount their volume at /data.
RUN install -d -o 1000 -g 1000 /data
USER 1000:1000
EXPOSE 9000
VOLUME ["/data"]
CMD ["minio"]

# The default target when none is given: the operator.
FROM operator
