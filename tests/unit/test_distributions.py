"""The two distributions of this repository: the operator (pyproject.toml) and the serving
runtime (serving/pyproject.toml), and what their images install (deploy/image/locks)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "deploy/image/locks"


def _project(path: Path) -> dict[str, object]:
    project: dict[str, object] = tomllib.loads(path.read_text())["project"]
    return project


def _locked(image: str) -> set[str]:
    text = (LOCKS / f"{image}.txt").read_text()
    return set(re.findall(r"^([a-z0-9][a-z0-9._-]*)==", text, re.M))


def test_the_serving_runtime_is_released_with_the_operator() -> None:
    # the operator's default serving image is tagged with the operator's version
    operator = _project(ROOT / "pyproject.toml")
    serving = _project(ROOT / "serving/pyproject.toml")
    assert serving["version"] == operator["version"]


def test_the_operator_image_installs_no_mlflow() -> None:
    assert not {name for name in _locked("operator") if name.startswith("mlflow")}


def test_the_serving_images_install_no_kubernetes_client() -> None:
    for image in ("serving-cpu", "serving-gpu"):
        assert not _locked(image) & {"kopf", "lightkube", "kubernetes", "pydantic-settings"}
        assert {"mlflow", "aiohttp", "prometheus-client"} <= _locked(image)
