"""Build the `helm` CLI (tests/helm Go module, `tool helm.sh/helm/v4/cmd/helm`) into the cache.

The binary lands in ``<cache_root>/helm/<key>/helm``; the key hashes go.mod, go.sum, the Go
version and the link flags, so a warm cache makes this a no-op and a version bump in go.mod
builds a new binary next to the old one. Nothing is written in the repository.

Run as ``python -m tests.helm.build`` (what ``tests/helm/build.sh`` does); prints the path.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.support.cache import cache_root, content_key
from tests.support.gobuild import ensure_cached, go_build, go_environment

MODULE_DIR = Path(__file__).resolve().parent
HELM_PACKAGE = "helm.sh/helm/v4/cmd/helm"
BINARY_NAME = "helm"


def helm_version() -> str:
    """The helm.sh/helm/v4 version go.mod requires (the one the binary is built from)."""
    match = re.search(r"^\s*helm\.sh/helm/v4 (v\S+)", (MODULE_DIR / "go.mod").read_text(), re.M)
    if match is None:
        raise RuntimeError("tests/helm/go.mod does not require helm.sh/helm/v4")
    return match.group(1)


def _ldflags() -> str:
    # Release builds stamp the version through the linker; unstamped, `helm version` says v4.3.
    return f"-s -w -X helm.sh/helm/v4/internal/version.version={helm_version()}"


def build_key() -> str:
    go_env = go_environment()
    return content_key([MODULE_DIR / "go.mod", MODULE_DIR / "go.sum"], extra=go_env + _ldflags())


def binary_path(key: str | None = None) -> Path:
    return cache_root() / "helm" / (key or build_key()) / BINARY_NAME


def ensure_built(quiet: bool = False) -> Path:
    """The cached binary's path, building it first when the cache has none for these inputs."""
    return ensure_cached(
        binary_path(),
        lambda target: go_build(
            target, MODULE_DIR, HELM_PACKAGE, _ldflags(), f"helm {helm_version()}", quiet
        ),
    )


def main() -> int:
    print(ensure_built())
    return 0


if __name__ == "__main__":
    sys.exit(main())
