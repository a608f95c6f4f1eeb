#!/usr/bin/env bash
# Build the helm CLI (helm.sh/helm/v4, version pinned in tests/helm/go.mod) into
# ~/.cache/mlflow-operator/helm/<key>/helm. Idempotent: with a warm cache it only prints the path.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$python" ]] || python="python3"  # the build needs only the standard library
cd "$repo"
exec "$python" -m tests.helm.build "$@"
