"""The Go toolchain image the Dockerfile's minio target builds in, here: the Debian base plus this
machine's Go.

No registry is reachable from this machine, so golang:1.26-bookworm (the Dockerfile's default
GO_IMAGE) cannot be pulled; this image stands in for it with what the minio stage uses of it:
`go` on the PATH, GOPATH=/go, GOTOOLCHAIN=local. The build mounts this machine's module and
build caches (build.py), which MinIO's test build already filled: with the same toolchain the
stage compiles nothing again, and fetches no module.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from tests.images import buildah
from tests.support.gobuild import go_binary

CONFIG = (
    "--env=GOPATH=/go",
    "--env=GOTOOLCHAIN=local",
    "--env=PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--workingdir=/go",
)


def _go_env(*names: str) -> list[str]:
    out = subprocess.run([go_binary(), "env", *names], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@functools.cache
def key_text() -> str:
    """The toolchain (its version, and where it is) and the image's settings."""
    version, goroot = _go_env("GOVERSION", "GOROOT")
    return "\n".join([version, goroot, *CONFIG])


def cache_volumes() -> list[str]:
    """This machine's module and build caches, where the minio stage's go looks for them."""
    modcache, gocache = _go_env("GOMODCACHE", "GOCACHE")
    return [f"{modcache}:/go/pkg/mod", f"{gocache}:/root/.cache/go-build"]


def build(name: str, debian: str, quiet: bool) -> None:
    """This machine's GOROOT on the Debian base, committed as name."""
    (goroot,) = _go_env("GOROOT")
    container = buildah.run(["from", "--pull=never", debian], quiet=True).strip()
    try:
        buildah.run(
            ["copy", container, str(Path(goroot)), "/usr/local/go"], quiet=quiet, what="copy Go"
        )
        buildah.run(["config", *CONFIG, container], quiet=quiet, what="buildah config")
        buildah.run(["commit", "--quiet", container, name], quiet=True, what="buildah commit")
    finally:
        buildah.run(["rm", container], quiet=True)
