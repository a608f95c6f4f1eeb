"""Where a cold start of the batched runtime goes with a PyTorch model: the steps it takes
before it serves, timed in one process, in its order. Prints seconds per step.

    python -m tests.bench.gpu_cold_start [--device cuda|cpu]

Needs torch (run by tests/bench/gpu_run.sh on a GPU machine; CI has none). The device is
CUDA when torch sees one, else the CPU. The model is the GPU benchmark's MLP
(serving_models.py) saved as `pickle`, by a child process first: the save imports MLflow's
pytorch flavor unguarded, which would make the steps below cheaper than in a real start. The
flavor and the model are loaded as `batched` loads them (`loading.import_flavor`, which keeps
pytorch_lightning out, and `loading.load_pyfunc`); what pytorch_lightning's import would have
cost, where it is installed, is printed last, apart.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

SAVE = (
    "import sys; from pathlib import Path; "
    "from tests.bench.serving_models import save_torch_mlp; "
    "save_torch_mlp(Path(sys.argv[1]), 'pickle', 'cpu')"
)


class Clock:
    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()

    def step(self, what: str) -> None:
        now = time.perf_counter()
        print(f"{now - self.last:7.2f} s  {what}", flush=True)
        self.last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda if torch sees it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpu-cold-start-") as tmp:
        model_dir = Path(tmp) / "mlp"
        subprocess.run([sys.executable, "-c", SAVE, str(model_dir)], check=True)
        measure(model_dir, args.device)


def measure(model_dir: Path, device: str | None) -> None:
    clock = Clock()
    pandas: Any = importlib.import_module("pandas")
    clock.step("import numpy, pandas")
    importlib.import_module("mlflow.pyfunc")
    clock.step("import mlflow.pyfunc")
    torch: Any = importlib.import_module("torch")
    clock.step("import torch")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    os.environ["MLFLOW_DEFAULT_PREDICTION_DEVICE"] = device
    if device == "cuda":
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
        clock.step("CUDA context (the first tensor on the GPU)")
    from mlflow_operator_serve import loading

    lightning = find_spec("pytorch_lightning") is not None
    loading.import_flavor(model_dir)
    clock.step(f"import the flavor, mlflow.pytorch (pytorch_lightning installed: {lightning})")
    for module in ("aiohttp.web", "mlflow_operator_serve.server", "mlflow_operator_serve.protocol"):
        importlib.import_module(module)
    clock.step("import aiohttp and the batched server")
    model: Any = loading.load_pyfunc(model_dir)
    clock.step(f"load the model ({device})")
    from tests.bench.serving_models import COLUMNS, random_rows

    frame = pandas.DataFrame(random_rows(2), columns=COLUMNS)
    for which in ("first", "second"):
        model.predict(frame)
        if device == "cuda":
            torch.cuda.synchronize()
        clock.step(f"{which} predict")
    print(f"total {time.perf_counter() - clock.started:.2f} s", flush=True)
    loading.warn_about_environment(model_dir)
    clock.step("MLflow's environment warnings (after the server listens)")
    if lightning:
        importlib.import_module("pytorch_lightning")
        clock.step("import pytorch_lightning (what the flavor would import; batched does not)")


if __name__ == "__main__":
    main()
