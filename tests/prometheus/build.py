"""Build `prometheus` and `promtool` (tests/prometheus Go module) into the cache.

The alerts of the chart are unit-tested with `promtool test rules`, and the dashboard's queries
run against a real `prometheus` that scrapes the operator and a serving pod. Both come from the
Prometheus version tests/prometheus/go.mod pins, built with `remove_all_sd`: only the static,
file and HTTP service discovery the tests use, which saves the cloud SDKs' compile time.

The binaries land in ``<cache_root>/prometheus/<key>/``; the key hashes go.mod, go.sum, the Go
version, the tags and the link flags. Run as ``python -m tests.prometheus.build``: prints the
paths.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.support.cache import cache_root, content_key
from tests.support.gobuild import ensure_cached, go_environment, go_install

MODULE_DIR = Path(__file__).resolve().parent
MODULE = "github.com/prometheus/prometheus"
PROGRAMS = ("prometheus", "promtool")
TAGS = ("remove_all_sd",)


def module_version() -> str:
    """The github.com/prometheus/prometheus version go.mod requires (v0.316.0 is Prometheus
    3.16.0: the Go module numbers major 3 as minor 300)."""
    match = re.search(rf"^\s*{re.escape(MODULE)} (v\S+)", (MODULE_DIR / "go.mod").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"tests/prometheus/go.mod does not require {MODULE}")
    return match.group(1)


def release_version() -> str:
    """3.16.0 for v0.316.0."""
    major_minor, patch = module_version().removeprefix("v0.").split(".", 1)
    major, minor = int(major_minor) // 100, int(major_minor) % 100
    return f"{major}.{minor}.{patch}"


def _ldflags() -> str:
    # What upstream's release builds stamp, so `prometheus --version` names its release.
    return f"-s -w -X github.com/prometheus/common/version.Version={release_version()}"


def build_key() -> str:
    extra = go_environment() + _ldflags() + ",".join(TAGS)
    return content_key([MODULE_DIR / "go.mod", MODULE_DIR / "go.sum"], extra=extra)


def binary_path(program: str, key: str | None = None) -> Path:
    return cache_root() / "prometheus" / (key or build_key()) / program


def ensure_built(program: str, quiet: bool = False) -> Path:
    """The cached binary, building both programs first when the cache lacks this one."""
    if program not in PROGRAMS:
        raise ValueError(f"unknown program {program!r}: one of {', '.join(PROGRAMS)}")
    return ensure_cached(
        binary_path(program),
        lambda target: go_install(
            target.parent,
            [f"{MODULE}/cmd/{name}" for name in PROGRAMS],
            tags=TAGS,
            ldflags=_ldflags(),
            what=f"prometheus and promtool {release_version()}",
            quiet=quiet,
            cwd=MODULE_DIR,
        ),
    )


def main() -> int:
    for program in PROGRAMS:
        print(ensure_built(program))
    return 0


if __name__ == "__main__":
    sys.exit(main())
