"""Where a GPU cold start of the batched runtime goes: each step it takes before it serves,
timed in one process, in the order it takes them. Prints seconds per step.

    python -m tests.bench.gpu_cold_start

Needs torch and a GPU (run by tests/bench/gpu_run.sh; CI has neither). The model is the GPU
benchmark's MLP (serving_models.py) saved as `pickle`, first; the save is not part of a start and is
printed apart. `pt2` exported on a CPU is left out: MLflow's own load refuses it on CUDA.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any


class Clock:
    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()

    def step(self, what: str) -> None:
        now = time.perf_counter()
        print(f"{now - self.last:7.2f} s  {what}", flush=True)
        self.last = now


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    clock = Clock()
    importlib.import_module("pandas")
    clock.step("import numpy, pandas")
    pyfunc: Any = importlib.import_module("mlflow.pyfunc")
    clock.step("import mlflow.pyfunc")
    torch: Any = importlib.import_module("torch")
    clock.step("import torch")
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    clock.step("CUDA context (the first tensor on the GPU)")
    lightning = find_spec("pytorch_lightning") is not None
    importlib.import_module("mlflow.pytorch")
    clock.step(f"import mlflow.pytorch (pytorch_lightning installed: {lightning})")
    for module in ("aiohttp.web", "mlflow_operator_serve.server", "mlflow_operator_serve.protocol"):
        importlib.import_module(module)
    clock.step("import aiohttp and the batched server")
    from tests.bench.serving_models import COLUMNS, random_rows, save_torch_mlp

    with tempfile.TemporaryDirectory(prefix="gpu-cold-start-") as tmp:
        path = save_torch_mlp(Path(tmp) / "mlp", "pickle", "cpu")
        clock.step("(the model saved: not part of a start)")
        model = pyfunc.load_model(str(path))
        clock.step("mlflow.pyfunc.load_model")
        frame = importlib.import_module("pandas").DataFrame(random_rows(2), columns=COLUMNS)
        for which in ("first", "second"):
            model.predict(frame)
            torch.cuda.synchronize()
            clock.step(f"{which} predict")
    print(f"total {time.perf_counter() - clock.started:.2f} s, the save included")


if __name__ == "__main__":
    main()
