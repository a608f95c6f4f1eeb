#!/usr/bin/env bash
# Build the test control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
# KWOK in one binary) into ~/.cache/mlflow-operator/cluster/<key>/cluster. Idempotent: with a
# warm cache it only prints the binary's path. See tests/cluster/README.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$python" ]] || python="python3"  # the build needs only the standard library
cd "$repo"
exec "$python" -m tests.cluster.build "$@"
