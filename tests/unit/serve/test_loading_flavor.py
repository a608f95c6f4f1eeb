"""The flavor imported before the model load leaves out what serving never uses.

MLflow's pytorch flavor imports pytorch_lightning, when installed, for a training-time
callback; on the H100 machine's image that was 6.8 s of a 9.9 s start. The real packages are
not installed here (torch is never an operator dependency): a stand-in pytorch_lightning
notes that it was imported, an empty torch lets mlflow.pytorch reach the line that imports it.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_operator_serve import loading


@pytest.fixture
def lightning_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A pytorch_lightning that writes the returned file when imported, then fails as a broken
    install would (the flavor catches that)."""
    imported = tmp_path / "imported"
    package = tmp_path / "site" / "pytorch_lightning"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"from pathlib import Path\nPath({str(imported)!r}).write_text('yes')\n"
        "raise ImportError('a stand-in')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    if "torch" not in sys.modules:
        monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    before = set(sys.modules)
    for name in [n for n in before if n.startswith(("mlflow.pytorch", "pytorch_lightning"))]:
        monkeypatch.delitem(sys.modules, name)
    yield imported
    for name in set(sys.modules) - before:  # what this test imported, the stand-ins with it
        if name.startswith(("mlflow.pytorch", "pytorch_lightning")):
            del sys.modules[name]


def pytorch_model(path: Path) -> Path:
    path.mkdir()
    (path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pytorch\n"
        "  pytorch:\n    pytorch_version: 2.11.0\n"
    )
    return path


def test_the_pytorch_flavor_is_imported_without_pytorch_lightning(
    lightning_stand_in: Path, tmp_path: Path
) -> None:
    loading.import_flavor(pytorch_model(tmp_path / "model"))
    assert "mlflow.pytorch" in sys.modules
    assert not lightning_stand_in.exists()
    # importable again after: a pickled LightningModule imports it when it is loaded
    with pytest.raises(ImportError, match="a stand-in"):
        importlib.import_module("pytorch_lightning")
    assert lightning_stand_in.exists()


def test_without_the_block_mlflow_pytorch_would_import_it(lightning_stand_in: Path) -> None:
    # the control: the stand-in is reached by a plain import of the flavor
    importlib.import_module("mlflow.pytorch")
    assert lightning_stand_in.exists()
