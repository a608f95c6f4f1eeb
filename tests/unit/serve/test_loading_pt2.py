"""A `pt2` PyTorch model moved to the serving device answers as MLflow's own load does.

Needs torch (never an operator dependency; skipped where it is not installed). On a machine
without a GPU the move is to the CPU, which proves the wrapping; the move to CUDA of a model
exported on a CPU is proven by tests/integration/test_batched_gpu.py on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def save_pt2(path: Path) -> Path:
    import mlflow.pytorch
    from mlflow.models import infer_signature

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    example = np.random.default_rng(0).random((2, 8)).astype("float32")
    output = model(torch.from_numpy(example)).detach().numpy()
    mlflow.pytorch.save_model(
        model.eval(),
        str(path),
        signature=infer_signature(example, output),
        input_example=example,
        serialization_format="pt2",
    )
    return path


def test_the_moved_program_predicts_what_mlflows_load_predicts(tmp_path: Path) -> None:
    import mlflow.pyfunc

    from mlflow_operator_serve import loading

    model_dir = save_pt2(tmp_path / "pt2")
    exported = loading._exported_program(model_dir)
    assert exported == model_dir / "data" / "model.pt2"
    moved = loading._load_exported_on(model_dir, exported, "cpu")
    theirs = mlflow.pyfunc.load_model(str(model_dir), model_config={"device": "cpu"})
    rows = np.random.default_rng(1).random((5, 8)).astype("float32")
    np.testing.assert_array_equal(moved.predict(rows), theirs.predict(rows))  # type: ignore[attr-defined]
    assert moved.metadata.get_input_schema() == theirs.metadata.get_input_schema()  # type: ignore[attr-defined]


def test_other_models_are_not_taken_for_exported_programs(tmp_path: Path) -> None:
    import mlflow.pyfunc

    from mlflow_operator_serve import loading

    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context: object, model_input: object, params: object = None) -> object:
            return model_input

    path = tmp_path / "identity"
    mlflow.pyfunc.save_model(str(path), python_model=Identity())
    assert loading._exported_program(path) is None


@pytest.mark.parametrize(
    ("config", "env", "expected"),
    [
        ('{"device": "cuda:1"}', None, "cuda:1"),
        (None, "cpu", "cpu"),
        (None, None, "cuda" if torch.cuda.is_available() else "cpu"),
    ],
)
def test_the_device_is_the_one_mlflows_loader_aims_at(
    config: str | None, env: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow_operator_serve import loading

    if env is None:
        monkeypatch.delenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_DEFAULT_PREDICTION_DEVICE", env)
    assert loading._pytorch_device(config) == expected
