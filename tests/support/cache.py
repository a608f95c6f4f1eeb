"""Where built programs and session state live: outside the repository, keyed by their inputs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def cache_root() -> Path:
    """~/.cache/mlflow-operator, or $MLFLOW_OPERATOR_CACHE."""
    root = os.environ.get("MLFLOW_OPERATOR_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlflow-operator"


def state_dir() -> Path:
    """Per-machine state of test sessions (PIDs of started programs)."""
    path = cache_root() / "state"
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_key(files: Iterable[Path], extra: str = "") -> str:
    """A short hash of the files' contents (and extra text): the cache key of a build."""
    digest = hashlib.sha256(extra.encode())
    for path in sorted(files):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
