#!/usr/bin/env bash
# CI check of the operator image without a container engine: lint the Dockerfile, then install
# the operator into a fresh virtualenv with the very script the Dockerfile runs
# (install-operator.sh), from a copy of the build context, start `mlflow-operator --help` and
# import every module.
# Prints the virtualenv's size (the image is the Python base plus this).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
hadolint="${HADOLINT:-$repo/.venv/bin/hadolint}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$hadolint" "$repo/Dockerfile"
echo "hadolint: Dockerfile clean"

# The build context as .dockerignore admits it (the image COPYs these to /src).
mkdir -p "$work/src/deploy/image/locks"
cp "$repo/pyproject.toml" "$repo/README.md" "$work/src/"
cp "$repo/deploy/image/locks/operator.txt" "$work/src/deploy/image/locks/"
cp -r "$repo/operator" "$work/src/operator"
find "$work/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

sh "$repo/deploy/image/install-operator.sh" "$work/venv" "$work/src"
"$work/venv/bin/mlflow-operator" --help >/dev/null
# Every module imports with the locked dependencies alone, and MLflow is not among them.
"$work/venv/bin/python" -c "import importlib, pkgutil, mlflow_operator as package
for module in pkgutil.walk_packages(package.__path__, 'mlflow_operator.'):
    if not module.name.endswith('__main__'):  # runs the CLI
        importlib.import_module(module.name)"
if "$work/venv/bin/python" -c "import mlflow" 2>/dev/null; then
  echo "mlflow is in the operator's virtualenv" >&2
  exit 1
fi
echo "mlflow-operator $("$work/venv/bin/mlflow-operator" version) starts from a fresh virtualenv"
if "$work/venv/bin/python" -c "import pip" 2>/dev/null; then
  echo "pip is still in the virtualenv" >&2
  exit 1
fi
echo "virtualenv size: $(du -sh "$work/venv" | cut -f1) (image target: base + this < 300 MB)"
