#!/usr/bin/env bash
# Fills ./.whl (gitignored) with the wheels that tests/bench/gpu_run.sh installs on a GPU
# machine that reaches no package index: MLflow and the packages it needs, for CPython 3.12
# on x86-64 Linux (the GPU machines' Python has torch, pandas, scikit-learn and pytest, not
# MLflow). Run here, from the repository root, where PyPI is reachable; about 17 MB:
#
#     bash tests/bench/gpu_wheels.sh [PYTHON_VERSION]
#
# The versions are the serving-gpu image's (deploy/image/locks/serving-gpu.txt).
set -euo pipefail
python_version=${1:-3.12}
lock=deploy/image/locks/serving-gpu.txt
pinned() { grep -m1 -o "^$1==[^ ;\\]*" "$lock"; }
platforms=()
for tag in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 \
    manylinux_2_34 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download --quiet --only-binary=:all: --implementation cp \
    --python-version "$python_version" "${platforms[@]}" --platform any --dest .whl \
    "$(pinned mlflow-skinny)" "$(pinned fastapi)" "$(pinned uvicorn)" "$(pinned orjson)"
du -sh .whl
