#!/usr/bin/env bash
# The batched runtime's GPU test and GPU benchmark in one run: what docs/serving.md's GPU
# numbers come from. CI has no GPU; run this on a machine with an NVIDIA GPU and a Python
# that has torch, from the repository root:
#
#     bash tests/bench/gpu_run.sh [OUTPUT_DIR]
#
# MLflow and the packages it needs that such a machine may lack are installed from wheels in
# ./.whl (and ./.whl/optional) without an index, for machines that reach no package index;
# fill .whl first where one is reachable: `bash tests/bench/gpu_wheels.sh` (CPython 3.12).
set -u
out=${1:-/tmp/gpu-run}
seconds=${BENCH_SECONDS:-5}
mkdir -p "$out"
python3 -m pip install -q --no-index --find-links .whl --find-links .whl/optional \
    mlflow-skinny==3.17.2 fastapi==0.165.0 uvicorn==0.54.0 orjson==3.13.0 || exit 1
export PYTHONPATH=$PWD:$PWD/serving PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    nproc
    python3 -c 'import sys, torch, mlflow; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available(), mlflow.__version__)'
} 2>&1 | tee "$out/machine.txt"
# Plain pytest settings: the project's conftest and ini need the Kubernetes and MLflow-stack
# test dependencies, which these tests do not use.
python3 -m pytest -c /dev/null --rootdir . --noconftest -p no:cacheprovider -q -rs \
    tests/integration/test_batched_gpu.py tests/unit/serve/test_loading_pt2.py \
    tests/unit/serve/test_signature_frames.py tests/unit/serve/test_decode_json.py 2>&1 | tee "$out/pytest.txt"
python3 -m tests.bench.bench_serving --gpu --seconds "$seconds" 2>&1 | tee "$out/bench-pickle.txt"
# where a cold start goes, step by step
python3 -m tests.bench.gpu_cold_start 2>&1 | tee "$out/cold-start.txt"
# pt2 exported on the CPU: MLflow's server refuses to load it on CUDA (reported, not measured)
python3 -m tests.bench.bench_serving --gpu --torch-format pt2 --seconds "$seconds" 2>&1 \
    | tee "$out/bench-pt2-cpu-export.txt"
# pt2 exported on CUDA: both servers load it, the same requests
python3 -m tests.bench.bench_serving --gpu --torch-format pt2 --export-device cuda \
    --seconds "$seconds" 2>&1 | tee "$out/bench-pt2-cuda-export.txt"
