# syntax=docker/dockerfile:1
# Images of mlflow-operator, one target each:
#   operator       the operator (default target): slim Python, non-root, runtime deps only
#   serving-cpu    default serving image: MLflow scoring server, our batched runtime,
#                  scikit-learn, XGBoost, LightGBM
#   serving-gpu    serving-cpu's stack plus PyTorch with the CUDA runtime
#   mlflow-server  default MLflowServer image: MLflow tracking server, psycopg2, boto3
# Build one with e.g. `docker build --target serving-cpu -t ghcr.io/mlflow-operator/serving-cpu:0.1.0 .`
# Versions below must match config.py (MLFLOW_VERSION) and pyproject.toml.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------------------------------------
# The operator's virtualenv. The same script runs in CI (deploy/image/check-operator-venv.sh).
FROM ${PYTHON_IMAGE} AS operator-venv
COPY deploy/image/install-operator.sh /usr/local/bin/install-operator.sh
COPY pyproject.toml README.md /src/
COPY operator/ /src/operator/
RUN install-operator.sh /opt/venv /src

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS operator
LABEL org.opencontainers.image.title="mlflow-operator" \
      org.opencontainers.image.description="Kubernetes operator for registry-driven MLflow model deployment" \
      org.opencontainers.image.source="https://github.com/mlflow-operator/mlflow-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=operator-venv /opt/venv /opt/venv
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
# Serving: the pod runs `mlflow models serve` (runtime mlflow) or `mlflow-operator serve`
# (runtime batched) with env-manager local, so the model's libraries must be in the image.
FROM ${PYTHON_IMAGE} AS serving-deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml /src/
# Everything but the operator's own package: the model libraries and the operator's runtime
# dependencies (read from pyproject.toml). The final images copy this virtualenv as one layer,
# so it must not change with the operator's code: an operator release then ships a layer of a
# few hundred kilobytes instead of a new 1.6 GB one.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet \
      "mlflow==3.17.2" \
      "scikit-learn>=1.4,<2" \
      "xgboost>=2.1,<4" \
      "lightgbm>=4.3,<5" \
      "uv>=0.4,<1" \
      "virtualenv>=20.26,<21" \
 && /opt/venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/venv/bin/pip install --quiet --requirement /tmp/requirements.txt \
 && rm /tmp/requirements.txt

FROM serving-deps AS serving-gpu-deps
# PyTorch's CUDA wheels carry the CUDA runtime, cuDNN and NCCL as pip packages
# (nvidia-*-cu12), so no CUDA base image is needed: the host provides only the driver.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
RUN /opt/venv/bin/pip install --quiet --index-url "${TORCH_INDEX}" \
      --extra-index-url https://pypi.org/simple "torch>=2.5,<3"

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
COPY pyproject.toml README.md /src/
COPY operator/ /src/operator/
# the operator's package alone (mlflow-operator serve): its dependencies are in the layer above
RUN PIP_NO_CACHE_DIR=1 /opt/venv/bin/pip install --quiet --no-deps /src && rm -rf /src
USER 65532:65532

FROM serving-base AS serving-gpu
COPY --from=serving-gpu-deps /opt/venv /opt/venv
COPY pyproject.toml README.md /src/
COPY operator/ /src/operator/
RUN PIP_NO_CACHE_DIR=1 /opt/venv/bin/pip install --quiet --no-deps /src && rm -rf /src
# What the NVIDIA container toolkit needs to mount the driver into the container.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 65532:65532

# ---------------------------------------------------------------------------------------------
# The MLflowServer's tracking server, its schema migrations and the bucket check.
FROM ${PYTHON_IMAGE} AS mlflow-server-venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet \
      "mlflow[auth]==3.17.2" \
      "psycopg2-binary>=2.9,<3" \
      "boto3>=1.34,<2" \
      "prometheus-flask-exporter>=0.23,<1"

FROM ${PYTHON_IMAGE} AS mlflow-server
COPY --from=mlflow-server-venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
EXPOSE 5000
ENTRYPOINT []
CMD ["mlflow", "server", "--host", "0.0.0.0"]

# The default target when none is given: the operator.
FROM operator
