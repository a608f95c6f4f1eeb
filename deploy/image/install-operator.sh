#!/bin/sh
# Install the operator and its runtime dependencies into a fresh virtualenv.
# The operator image's Dockerfile runs exactly this, and so does the CI check
# (deploy/image/check-operator-venv.sh), so what CI starts is what the image ships.
#   install-operator.sh <venv-dir> <source-dir>
# The dependencies are the ones <source-dir>/deploy/image/locks/operator.txt pins, with hashes.
set -eu
venv="$1"
src="$2"
python3 -m venv "$venv"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/pip" install --quiet --require-hashes --no-deps \
  --requirement "$src/deploy/image/locks/operator.txt"
# A wheel of the package alone (its build backend runs here, not in the image), installed
# without dependencies: the lock above has them all, `pip check` says so.
wheels="$(mktemp -d)"
"$venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$wheels" "$src"
"$venv/bin/pip" install --quiet --no-deps "$wheels"/mlflow_operator-*.whl
rm -rf "$wheels"
"$venv/bin/pip" check
# pip is not needed at run time; fewer tools in the image, fewer CVEs to triage.
"$venv/bin/pip" uninstall --quiet --yes pip
