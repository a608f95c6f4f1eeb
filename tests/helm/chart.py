"""The chart as the tests and the plain-manifest generator use it: render it with the built helm.

`render()` runs `helm template` and returns the objects; `helm()` runs any helm command.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.helm.build import ensure_built

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlflow-operator"
CRDS = ROOT / "crds"
CHART_CRDS = CHART / "crds"


def helm(
    *args: str,
    kubeconfig: Path | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run the cached helm binary; stderr is part of the error when it fails."""
    argv = [str(ensure_built(quiet=True)), *args]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        )
    return result


def value_args(values: Mapping[str, Any] | None) -> list[str]:
    """Values as one --set-json per top-level key (typed, unlike --set)."""
    return [
        arg
        for key, value in (values or {}).items()
        for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "mlflow-operator",
    namespace: str = "mlflow-operator",
    include_crds: bool = False,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` of the chart: the rendered objects, in helm's install order."""
    args = ["template", release, str(CHART), "--namespace", namespace, *value_args(values)]
    if include_crds:
        args.append("--include-crds")
    out = helm(*args, *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def operator_service(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The operator's Service (metrics, webhook): not the model cache's."""
    return one([o for o in objects if not _model_cache(o)], "Service")


def _model_cache(obj: dict[str, Any]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return bool(labels.get("app.kubernetes.io/component") == "model-cache")


def notes(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "mlflow-operator",
    namespace: str = "mlflow-operator",
) -> str:
    """The NOTES helm prints after an install with these values."""
    args = ["install", release, str(CHART), "--dry-run=client", "--namespace", namespace]
    out = helm(*args, *value_args(values)).stdout
    return out.split("NOTES:\n", 1)[1]


def command_blocks(text: str) -> list[str]:
    """The shell commands of NOTES: each run of lines that starts with kubectl or helm, with
    the here-documents they open."""
    blocks: list[list[str]] = []
    current: list[str] = []
    heredoc: str | None = None
    for line in text.splitlines():
        if heredoc is not None:
            current.append(line)
            if line == heredoc:
                heredoc = None
            continue
        if line.startswith(("kubectl ", "helm ")):
            current.append(line)
            if "<<" in line:
                heredoc = line.rsplit("<<", 1)[1].strip().strip("'\"")
            continue
        if current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return ["\n".join(block) + "\n" for block in blocks]
