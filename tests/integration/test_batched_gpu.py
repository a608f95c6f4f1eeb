"""A PyTorch pyfunc model on a GPU: merged requests reach the model as one tensor batch.

Skipped unless torch is installed and CUDA is available (torch is never an operator
dependency). On a GPU, cuBLAS picks kernels by batch shape, so float outputs of a batch may
differ from single-row outputs in the last bits: predictions are compared with a tolerance
here, exactly everywhere else (see docs/serving.md).
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.bench.serving_servers import request, start_batched, wait_ready

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

COLUMNS = ["a", "b", "c", "d"]


def save_torch_model(path: Path) -> Path:
    import mlflow.pytorch
    import pandas as pd
    from mlflow.models import infer_signature

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    example = pd.DataFrame(np.random.default_rng(0).random((2, 4)), columns=COLUMNS).astype(
        "float32"
    )
    output = model(torch.from_numpy(example.to_numpy())).detach().numpy()
    mlflow.pytorch.save_model(
        model, str(path), signature=infer_signature(example, output), input_example=example
    )
    return path


def test_concurrent_requests_are_one_gpu_batch_with_the_same_answers(tmp_path: Path) -> None:
    server = start_batched(str(save_torch_model(tmp_path / "torch")), tmp_path, ["--workers", "1"])
    try:
        wait_ready(server)
        rng = np.random.default_rng(1)
        bodies = [
            json.dumps(
                {"dataframe_split": {"columns": COLUMNS, "data": rng.random((1, 4)).tolist()}}
            ).encode()
            for _ in range(64)
        ]
        barrier = threading.Barrier(len(bodies))

        def send(body: bytes, wait: bool) -> list[list[float]]:
            if wait:
                barrier.wait()
            response = request(
                server.port, "POST", "/invocations", body=body, content_type="application/json"
            )
            assert response.status == 200, response.body
            predictions = json.loads(response.body)["predictions"]
            return [list(row.values()) for row in predictions]

        with ThreadPoolExecutor(len(bodies)) as pool:
            together = list(pool.map(lambda b: send(b, True), bodies))
        alone = [send(body, False) for body in bodies]
        np.testing.assert_allclose(np.array(together), np.array(alone), rtol=1e-5, atol=1e-6)

        metrics = request(server.port, "GET", "/metrics").body.decode()
        single = re.search(r'batch_size_requests_bucket\{le="1\.0"[^}]*\} (\S+)', metrics)
        total = re.search(r"batch_size_requests_count\{[^}]*\} (\S+)", metrics)
        assert single is not None
        assert total is not None
        assert float(total[1]) > float(single[1]), "no request was merged"
    finally:
        server.stop()
