#!/bin/sh
# Install the operator and its runtime dependencies into a fresh virtualenv.
# The operator image's Dockerfile runs exactly this, and so does the CI check
# (deploy/image/check-operator-venv.sh), so what CI starts is what the image ships.
#   install-operator.sh <venv-dir> <source-dir>
set -eu
venv="$1"
src="$2"
python3 -m venv "$venv"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A wheel of the package alone (its build backend runs here, not in the image), then the
# wheel with its dependencies as pyproject.toml pins them; no extras, no dev tools.
wheels="$(mktemp -d)"
"$venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$wheels" "$src"
"$venv/bin/pip" install --quiet "$wheels"/mlflow_operator-*.whl
rm -rf "$wheels"
# pip is not needed at run time; fewer tools in the image, fewer CVEs to triage.
"$venv/bin/pip" uninstall --quiet --yes pip
