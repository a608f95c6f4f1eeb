"""Model versions the serving image cannot run, registered in a real MLflow: the pre-flight
corpus (docs/model-delivery.md). Each was saved by MLflow itself and then broken the way real
versions are: a requirement the image lacks or has another major version of, a Python that a
pickled model cannot load on, a flavor or the artifacts missing, a file MLflow would not parse.
tests/integration/test_preflight.py checks each verdict against the MLflow stack;
tests/e2e/test_modeldeployment_pods.py checks that the operator gives none of them a pod.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.mlflowstack.models import ModelRegistry


@dataclass(frozen=True)
class BrokenVersion:
    key: str  # short name, also the alias an e2e ModelDeployment follows
    register: Callable[[ModelRegistry, str], str]  # (registry, model name) -> its version
    verdict: str  # what pre-flight says of it
    names: str  # what its message must contain: the requirement, file or flavor at fault


def _requirement(old: str | None, new: str) -> Callable[[Path], None]:
    """Edit: requirements.txt gets `new`, in place of the line of package `old` if given."""

    def edit(local: Path) -> None:
        path = local / "requirements.txt"
        lines = path.read_text().splitlines()
        if old is not None:
            lines = [line for line in lines if not re.match(rf"{old}\s*[=<>!~]", line)]
        path.write_text("\n".join([*lines, new]) + "\n")

    return edit


def _mlmodel(change: Callable[[dict[str, object]], None]) -> Callable[[Path], None]:
    def edit(local: Path) -> None:
        path = local / "MLmodel"
        mlmodel = yaml.safe_load(path.read_text())
        change(mlmodel)
        path.write_text(yaml.safe_dump(mlmodel))

    return edit


def _no_pyfunc(mlmodel: dict[str, object]) -> None:
    flavors = mlmodel["flavors"]
    assert isinstance(flavors, dict)
    del flavors["python_function"]


def _bad_signature(mlmodel: dict[str, object]) -> None:
    signature = mlmodel["signature"]
    assert isinstance(signature, dict)
    signature["inputs"] = '[{"type": "double", "name": "sepal'  # cut off mid-JSON


def _junk_mlmodel(local: Path) -> None:
    (local / "MLmodel").write_text("flavors: [python_function\n  loader_module: : x\n")


def _python_39(local: Path) -> None:
    """A cloudpickled custom model, as if saved on Python 3.9."""
    env = local / "python_env.yaml"
    env.write_text(re.sub(r"(?m)^python: .*$", "python: 3.9.18", env.read_text()))


def _conda_only(requirement: str) -> Callable[[Path], None]:
    """Edit: conda.yaml alone, as older MLflow versions and conda environments leave it (no
    requirements.txt, no python_env.yaml), its pip section given `requirement` too."""

    def edit(local: Path) -> None:
        (local / "requirements.txt").unlink()
        (local / "python_env.yaml").unlink()
        path = local / "conda.yaml"
        conda = yaml.safe_load(path.read_text())
        pip = next(d for d in conda["dependencies"] if isinstance(d, dict) and "pip" in d)
        pip["pip"].append(requirement)
        path.write_text(yaml.safe_dump(conda))

        def env_is_conda_yaml(mlmodel: dict[str, object]) -> None:
            flavors = mlmodel["flavors"]
            assert isinstance(flavors, dict)
            flavors["python_function"]["env"] = "conda.yaml"  # as MLflow 1.x wrote it

        _mlmodel(env_is_conda_yaml)(local)

    return edit


def _edited(
    edit: Callable[[Path], None], *, custom: bool = False
) -> Callable[[ModelRegistry, str], str]:
    return lambda registry, name: registry.log_edited_version(name, edit, custom=custom)


def _source(uri: str) -> Callable[[ModelRegistry, str], str]:
    return lambda registry, name: registry.register_source(name, uri)


INCOMPATIBLE = "Incompatible"
CORPUS = (
    BrokenVersion(
        # a custom model's code may import any requirement (a built-in flavor's extra ones are
        # notes: MLflow's inference lists what the logging environment had imported)
        "missing-package",
        _edited(_requirement(None, "nonexistent-serving-lib==1.0"), custom=True),
        INCOMPATIBLE, "nonexistent-serving-lib==1.0",
    ),
    BrokenVersion(
        # its requirements in conda.yaml alone: the pip section is read in requirements.txt's
        # place (a conda package there would be only a note: the image has no conda)
        "conda-only",
        _edited(_conda_only("nonexistent-conda-lib==1.0"), custom=True),
        INCOMPATIBLE, "nonexistent-conda-lib==1.0 (conda.yaml)",
    ),
    BrokenVersion(
        "mlflow-2", _edited(_requirement("mlflow", "mlflow==2.9.2")),
        INCOMPATIBLE, "mlflow==2.9.2",
    ),
    BrokenVersion(
        "sklearn-0", _edited(_requirement("scikit-learn", "scikit-learn==0.24.2")),
        INCOMPATIBLE, "scikit-learn==0.24.2",
    ),
    BrokenVersion(
        "pandas-1", _edited(_requirement("pandas", "pandas==1.5.3")),
        INCOMPATIBLE, "pandas==1.5.3",
    ),
    BrokenVersion(
        "numpy-1", _edited(_requirement("numpy", "numpy==1.26.4")),
        INCOMPATIBLE, "numpy==1.26.4",
    ),
    BrokenVersion(
        "bad-requirement", _edited(_requirement(None, "this is not a requirement!!")),
        INCOMPATIBLE, "this is not a requirement!!",
    ),
    BrokenVersion(
        "python-3-9", _edited(_python_39, custom=True), INCOMPATIBLE, "needs Python 3.9",
    ),
    BrokenVersion(
        "no-pyfunc", _edited(_mlmodel(_no_pyfunc)), INCOMPATIBLE, "no python_function flavor",
    ),
    BrokenVersion(
        "bad-signature", _edited(_mlmodel(_bad_signature)), INCOMPATIBLE, "bad signature",
    ),
    BrokenVersion("junk-mlmodel", _edited(_junk_mlmodel), INCOMPATIBLE, "not valid YAML"),
    BrokenVersion(
        "no-artifacts", lambda registry, name: registry.register_empty_run(name),
        INCOMPATIBLE, "artifacts missing",
    ),
    # not broken, but not readable by the operator: rolled out as before pre-flight existed
    BrokenVersion(
        "not-proxied", _source("s3://elsewhere/models/m-1/artifacts"), "Unknown",
        "through the tracking server's proxy",
    ),
)  # fmt: skip
