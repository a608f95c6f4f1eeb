"""A PyTorch MLP for the GPU benchmark and test, saved as an MLflow model, and its requests.

256 float32 inputs -> Linear 2048 -> ReLU -> Linear 2048 -> ReLU -> Linear 10 (about 4.7 M
weights): big enough that a batch on a GPU costs about what one row costs.

Two ways to save it with `mlflow.pytorch.save_model`:

- "pickle": the whole module pickled (`torch.save`); a column signature f0..f255 and a
  DataFrame input example, so requests are `dataframe_split` with those columns.
- "pt2": `torch.export` (MLflow 3's default format), which takes only a numpy array or tensor
  as input example, hence a tensor signature (float32, shape (-1, 256)) and requests in
  `inputs`. An exported program keeps the device its weights were on when it was exported:
  `device` says which (the realistic case is "cpu": exported on a CPU box, served on a GPU).

torch is imported inside the functions: the CPU benchmark runs without it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Literal

FEATURES = 256
HIDDEN = 2048
OUTPUTS = 10
COLUMNS = [f"f{i}" for i in range(FEATURES)]
SEED = 0

TorchFormat = Literal["pickle", "pt2"]
TORCH_FORMATS: tuple[TorchFormat, ...] = ("pickle", "pt2")


def torch_module() -> Any:
    """torch, imported on first use (ImportError where it is not installed); untyped here, as
    the project's environment has no torch for mypy to read."""
    return importlib.import_module("torch")


def build_torch_mlp(device: str = "cpu", hidden: int = HIDDEN) -> Any:
    """The MLP with fixed weights (seed 0), in eval mode, on device; `hidden` wide."""
    torch = torch_module()

    torch.manual_seed(SEED)
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, OUTPUTS),
    )
    return model.eval().to(device)


def random_rows(count: int, seed: int = 1) -> Any:
    """count float32 rows of FEATURES values in [0, 1)."""
    import numpy as np

    return np.random.default_rng(seed).random((count, FEATURES), dtype=np.float32)


def save_torch_mlp(
    path: Path,
    serialization_format: TorchFormat = "pickle",
    device: str = "cpu",
    hidden: int = HIDDEN,
) -> Path:
    """Save the MLP at path in the given format; the model is on device while it is saved."""
    import mlflow.pytorch
    import pandas as pd
    from mlflow.models import infer_signature

    torch = torch_module()

    model = build_torch_mlp(device, hidden)
    rows = random_rows(64, seed=SEED)
    with torch.no_grad():
        output = model(torch.from_numpy(rows).to(device)).cpu().numpy()
    if serialization_format == "pickle":
        frame = pd.DataFrame(rows, columns=COLUMNS)
        mlflow.pytorch.save_model(
            model,
            str(path),
            serialization_format="pickle",
            signature=infer_signature(frame, output),
            input_example=frame.head(2),
        )
    elif serialization_format == "pt2":
        mlflow.pytorch.save_model(
            model.cpu(),
            str(path),
            serialization_format="pt2",
            signature=infer_signature(rows, output),
            input_example=rows[:2],
        )
        if device != "cpu":
            # MLflow exports with the numpy example on the CPU, which a CUDA module refuses;
            # the program moved to the device is the one exporting there would have made
            program_path = path / "data" / "model.pt2"
            passes = importlib.import_module("torch.export.passes")
            program = passes.move_to_device_pass(torch.export.load(str(program_path)), device)
            torch.export.save(program, str(program_path))
    else:
        raise ValueError(f"unknown serialization format {serialization_format!r}")
    return path


def request_rows(serialization_format: TorchFormat, rows: Any) -> dict[str, Any]:
    """The /invocations request (as a dict) for rows of FEATURES floats in that variant."""
    data = [[float(v) for v in row] for row in rows]
    if serialization_format == "pickle":
        return {"dataframe_split": {"columns": COLUMNS, "data": data}}
    return {"inputs": data}


def request_body(serialization_format: TorchFormat, row: Any) -> bytes:
    """The /invocations JSON body for one row of FEATURES floats in that variant."""
    return json.dumps(request_rows(serialization_format, [row])).encode()


def prediction_rows(response_body: bytes) -> list[list[float]]:
    """The predictions of an /invocations answer as rows of floats, whichever the variant.

    A DataFrame input gets records back (`[{"0": .., "1": ..}]`), a tensor input a list of
    lists (`[[.., ..]]`).
    """
    predictions = json.loads(response_body)["predictions"]
    return [
        [float(v) for v in (row.values() if isinstance(row, dict) else row)] for row in predictions
    ]
