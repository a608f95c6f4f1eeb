#!/usr/bin/env bash
# Prepare this machine for the local MLflow stack; idempotent, quick when everything is there.
#   - PostgreSQL server from the Debian packages (only the client may be preinstalled)
#   - MinIO built from its Go module into ~/.cache/mlflow-operator/minio/<key>/ (needs Go)
# Python dependencies (mlflow, psycopg2-binary, boto3, Flask-WTF, scikit-learn) come from the
# project's dev extra, installed into .venv by the project setup.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"

if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && ! command -v postgres >/dev/null; then
    echo "setup: installing the PostgreSQL server (Debian package postgresql)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends postgresql
fi
# as root the tests run the server under this account (the package creates it)
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "setup: the postgres account is missing; reinstall the postgresql package" >&2
    exit 1
fi

"$PYTHON" -m tests.mlflowstack.minio
