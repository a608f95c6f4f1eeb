"""Build the control-plane binary (tests/cluster Go module) into the cache, once per input.

The binary lands in ``<cache_root>/cluster/<key>/cluster`` where key hashes go.mod, go.sum, the
Go sources, the Go version and the link flags: a warm cache makes this a no-op, and a change
to any input builds a new binary next to the old one. Nothing is written in the repository.

Run as ``python -m tests.cluster.build`` (what ``tests/cluster/build.sh`` does); prints the
binary's path.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.cache import cache_root, content_key
from tests.support.gobuild import ensure_cached, go_build, go_environment

MODULE_DIR = Path(__file__).resolve().parent
KUBERNETES_VERSION = "v1.37.2"
BINARY_NAME = "cluster"

# Upstream release builds stamp the version through the linker; without it the API server
# reports v0.0.0-master, which kubectl and clients treat as a skewed version.
_VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
_LDFLAGS = " ".join(
    [
        "-s -w",  # no symbol table or DWARF: a smaller binary and a cheaper link
        *(
            f"-X {pkg}.{var}={value}"
            for pkg in _VERSION_PACKAGES
            for var, value in (
                ("gitVersion", KUBERNETES_VERSION),
                ("gitMajor", KUBERNETES_VERSION.split(".", maxsplit=1)[0].lstrip("v")),
                ("gitMinor", KUBERNETES_VERSION.split(".")[1]),
                ("gitTreeState", "clean"),
            )
        ),
    ]
)


def build_inputs() -> list[Path]:
    return [MODULE_DIR / "go.mod", MODULE_DIR / "go.sum", *sorted(MODULE_DIR.glob("*.go"))]


def build_key() -> str:
    go_version = go_environment()
    return content_key(build_inputs(), extra=go_version + _LDFLAGS)


def binary_path(key: str | None = None) -> Path:
    return cache_root() / "cluster" / (key or build_key()) / BINARY_NAME


def ensure_built(quiet: bool = False) -> Path:
    """The path of the cached binary, building it first when the cache has none for these inputs."""
    return ensure_cached(
        binary_path(),
        lambda target: go_build(
            target,
            MODULE_DIR,
            ".",
            _LDFLAGS,
            f"the test control plane ({KUBERNETES_VERSION})",
            quiet,
        ),
    )


def main() -> int:
    print(ensure_built())
    return 0


if __name__ == "__main__":
    sys.exit(main())
