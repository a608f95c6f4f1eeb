#!/usr/bin/env bash
# Prepare this machine for the local MLflow stack; idempotent, quick when everything is there.
#   - PostgreSQL server from the Debian packages (only the client may be preinstalled)
#   - what `make images` builds the container images with (tests/images): buildah, runc (the
#     runtime of its RUN steps), mmdebstrap (the Debian base image), gcc and libc6-dev (the
#     static pause binary)
#   - what the test cluster's real node runs with (tests/cluster/realnode.py): runc, the CNI
#     plugins (containernetworking-plugins), nftables (kube-proxy's mode), iproute2
#   - MinIO built from its Go module into ~/.cache/mlflow-operator/minio/<key>/ (needs Go)
# Python dependencies (mlflow, psycopg2-binary, boto3, Flask-WTF, scikit-learn) come from the
# project's dev extra, installed into .venv by the project setup.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"

missing=()
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && ! command -v postgres >/dev/null; then
    missing+=(postgresql)
fi
for package in buildah runc mmdebstrap gcc libc6-dev containernetworking-plugins nftables iproute2; do
    if ! dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
# as root the tests run the server under this account (the package creates it)
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "setup: the postgres account is missing; reinstall the postgresql package" >&2
    exit 1
fi

"$PYTHON" -m tests.mlflowstack.minio
