"""Build the real node's programs into the cache: containerd (with its runc shim and ctr) and
CoreDNS. The kubelet and kube-proxy are commands of the control-plane binary (build.py).

containerd comes from its Go module at a pinned version (`go install module@version`, no
go.mod of ours); CoreDNS from the small module in tests/cluster/coredns, which links only the
plugins the node needs. Each lands in ``<cache_root>/<name>/<key>/`` keyed by what it is built
from, like the control plane. ``python -m tests.cluster.nodebuild`` builds both and prints the
directories.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.cache import cache_root, content_key
from tests.support.gobuild import ensure_cached, go_environment, go_install

CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
# Kubernetes 1.37 supports containerd 2.3 and 2.4 (containerd's RELEASES.md).
CONTAINERD_VERSION = "v2.4.2"
# As upstream's Makefile for a static build: no cgo-only snapshotters, no man-page generator,
# Go's own user and DNS lookups. The shim additionally drops gRPC (it speaks ttrpc only).
CONTAINERD_TAGS = ("no_btrfs", "no_devmapper", "no_zfs", "urfave_cli_no_docs", "osusergo", "netgo")
SHIM_TAGS = (*CONTAINERD_TAGS, "no_grpc")
CONTAINERD_LDFLAGS = f"-s -w -X {CONTAINERD_MODULE}/version.Version={CONTAINERD_VERSION}"

COREDNS_DIR = Path(__file__).resolve().parent / "coredns"


@dataclass(frozen=True)
class NodePrograms:
    containerd: Path
    shim: Path  # containerd-shim-runc-v2: containerd finds it on PATH
    ctr: Path
    coredns: Path


def containerd_dir() -> Path:
    key = content_key(
        [],
        extra=f"{CONTAINERD_MODULE}@{CONTAINERD_VERSION} {CONTAINERD_TAGS} {SHIM_TAGS} "
        f"{CONTAINERD_LDFLAGS} {go_environment()}",
    )
    return cache_root() / "containerd" / key


def coredns_dir() -> Path:
    key = content_key(
        [COREDNS_DIR / "go.mod", COREDNS_DIR / "go.sum", COREDNS_DIR / "main.go"],
        extra=go_environment(),
    )
    return cache_root() / "coredns" / key


def _build_containerd(shim: Path, quiet: bool) -> None:
    packages = [
        f"{CONTAINERD_MODULE}/cmd/{name}@{CONTAINERD_VERSION}" for name in ("containerd", "ctr")
    ]
    what = f"containerd {CONTAINERD_VERSION}"
    go_install(
        shim.parent, packages, tags=CONTAINERD_TAGS, ldflags=CONTAINERD_LDFLAGS, what=what,
        quiet=quiet,
    )  # fmt: skip
    # The shim last: its presence is the sign that all three are there.
    go_install(
        shim.parent,
        [f"{CONTAINERD_MODULE}/cmd/{shim.name}@{CONTAINERD_VERSION}"],
        tags=SHIM_TAGS,
        ldflags=CONTAINERD_LDFLAGS,
        what=f"{shim.name} {CONTAINERD_VERSION}",
        quiet=quiet,
    )


def ensure_node_programs(quiet: bool = False) -> NodePrograms:
    """The cached programs, building what the cache lacks (minutes when cold)."""
    containerd = containerd_dir()
    shim = ensure_cached(
        containerd / "containerd-shim-runc-v2", lambda t: _build_containerd(t, quiet)
    )
    coredns = ensure_cached(
        coredns_dir() / "coredns",
        lambda t: go_install(
            t.parent, ["."], cwd=COREDNS_DIR, what="CoreDNS (cluster DNS plugins)", quiet=quiet
        ),
    )
    return NodePrograms(containerd / "containerd", shim, containerd / "ctr", coredns)


def main() -> int:
    programs = ensure_node_programs()
    print(programs.containerd.parent)
    print(programs.coredns.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
