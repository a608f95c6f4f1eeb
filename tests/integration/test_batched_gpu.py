"""A PyTorch model on a GPU: merged requests reach it as one batch, on CUDA, with the same answers.

Skipped unless torch is installed and CUDA is available (torch is never an operator
dependency). The model (tests/bench/serving_models.py: an MLP, 256 float inputs, 10 outputs)
is saved on CPU, as one trained or exported on a CPU box would be, in both of MLflow's PyTorch
formats: `pickle` (column signature, `dataframe_split` requests) and `pt2` (torch.export, MLflow
3's default; tensor signature, `inputs` requests). MLflow itself refuses to load a pt2 model
exported on CPU onto CUDA; `mlflow-operator-serve` is to move it there.

For each: 64 concurrent single-row requests get the answers they get one at a time, those
answers are the model's (computed here on CPU), requests were merged (the batch histogram),
and a process of the server holds a CUDA context (nvidia-smi's compute apps; where a PID
namespace keeps nvidia-smi from naming them, the GPU's memory must have grown by at least a
context's worth while the server ran: nothing else should use the GPU meanwhile).
On a GPU, cuBLAS picks kernels by batch shape, so float outputs of a batch may differ from
single-row outputs in the last bits: predictions are compared with a tolerance here, exactly
everywhere else (see docs/serving.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.bench.serving_models import (
    TORCH_FORMATS,
    TorchFormat,
    build_torch_mlp,
    prediction_rows,
    random_rows,
    request_body,
    save_torch_mlp,
)
from tests.bench.serving_servers import Server, request, start_batched, wait_ready

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

REQUESTS = 64
# A CUDA context alone takes a few hundred MiB of device memory; a model on CPU, none.
CONTEXT_MIB = 100


def nvidia_smi(*query: str) -> list[str] | None:
    """The lines nvidia-smi prints for query, or None where there is no nvidia-smi."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    out = subprocess.run(
        [program, *query, "--format=csv,noheader,nounits"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_memory_used_mib() -> float | None:
    """Device memory in use on all visible GPUs (MiB), or None where nvidia-smi cannot say."""
    lines = nvidia_smi("--query-gpu=memory.used")
    values = [float(line) for line in lines or [] if line.replace(".", "", 1).isdigit()]
    return sum(values) if values else None


def process_tree(root: int) -> set[int]:
    """root and all its descendants, from /proc (the server forks its workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    tree = {root}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        grew = bool(children)
        tree |= children
    return tree


def assert_runs_on_cuda(server: Server, memory_before: float | None) -> None:
    """A process of the server holds a CUDA context (it is among nvidia-smi's compute apps);
    or, where nvidia-smi cannot name this container's processes (another PID namespace: it
    lists none, or host PIDs), the GPU's memory grew by at least a context's worth."""
    apps = nvidia_smi("--query-compute-apps=pid")
    if apps is None:
        warnings.warn(
            "nvidia-smi not found: not checked that the server runs the model on CUDA",
            stacklevel=2,
        )
        return
    tree = process_tree(server.process.pid)
    if {int(pid) for pid in apps if pid.isdigit()} & tree:
        return
    memory_after = gpu_memory_used_mib()
    assert memory_before is not None, f"nvidia-smi's memory.used unreadable; apps: {apps}"
    assert memory_after is not None, f"nvidia-smi's memory.used unreadable; apps: {apps}"
    grown = memory_after - memory_before
    assert grown >= CONTEXT_MIB, (
        f"no process of the server ({sorted(tree)}) is among nvidia-smi's compute apps "
        f"({apps}), and the GPU's memory grew by {grown:.0f} MiB while it ran: the model does "
        f"not run on CUDA\n{server.process.log_tail()}"
    )


@pytest.mark.parametrize("serialization_format", TORCH_FORMATS)
def test_concurrent_requests_are_one_gpu_batch_with_the_same_answers(
    tmp_path: Path, serialization_format: TorchFormat
) -> None:
    model = save_torch_mlp(tmp_path / serialization_format, serialization_format, device="cpu")
    memory_before = gpu_memory_used_mib()
    server = start_batched(str(model), tmp_path, ["--workers", "1"])
    try:
        wait_ready(server)
        rows = random_rows(REQUESTS, seed=1)
        bodies = [request_body(serialization_format, row) for row in rows]
        barrier = threading.Barrier(len(bodies))

        def send(body: bytes, wait: bool) -> list[list[float]]:
            if wait:
                barrier.wait()
            response = request(
                server.port, "POST", "/invocations", body=body, content_type="application/json"
            )
            assert response.status == 200, response.body
            return prediction_rows(response.body)

        with ThreadPoolExecutor(len(bodies)) as pool:
            together = list(pool.map(lambda b: send(b, True), bodies))
        alone = [send(body, False) for body in bodies]
        np.testing.assert_allclose(np.array(together), np.array(alone), rtol=1e-5, atol=1e-6)

        # The model's own answers, on CPU in this process: float32 sums of 2048 products in
        # another order (and kernel) on the GPU differ in the last bits only.
        with torch.no_grad():
            expected = build_torch_mlp("cpu")(torch.from_numpy(rows)).numpy()
        np.testing.assert_allclose(np.array(alone)[:, 0, :], expected, rtol=1e-4, atol=1e-5)

        metrics = request(server.port, "GET", "/metrics").body.decode()
        single = re.search(r'batch_size_requests_bucket\{le="1\.0"[^}]*\} (\S+)', metrics)
        total = re.search(r"batch_size_requests_count\{[^}]*\} (\S+)", metrics)
        assert single is not None
        assert total is not None
        assert float(total[1]) > float(single[1]), "no request was merged"

        assert_runs_on_cuda(server, memory_before)
    finally:
        server.stop()
