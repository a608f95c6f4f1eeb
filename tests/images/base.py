"""The base of the project's images here: Debian bookworm's python3, made with mmdebstrap.

No registry is reachable from this machine, so python:3.12-slim-bookworm (the Dockerfile's
default PYTHON_IMAGE) cannot be pulled; this image stands in for it, built from Debian's archive
alone. It has what the Dockerfile uses of the python image: ``python3`` (3.11 here),
``python3 -m venv``, CA certificates and apt, with the apt housekeeping of Debian's official
images. libgomp1 (LightGBM, XGBoost) is in it already, so serving-base's apt step is a no-op.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.images import buildah
from tests.images.buildah import ImageBuildError, require

SUITE = "bookworm"
PYTHON_VERSION = "3.11"  # bookworm's python3: what the images built here run
PACKAGES = ("python3", "python3-venv", "ca-certificates", "netbase", "libgomp1")
SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    f"--include={','.join(PACKAGES)}",
    # merged /usr by mmdebstrap's hook rather than the usrmerge package and its 50 MB of perl
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--skip=output/mknod",  # no device nodes: the container runtime makes /dev
    # as Debian's slim images: no manuals, documentation (but copyrights) or translations,
    # also for what later RUN steps install (mmdebstrap keeps these in /etc/dpkg/dpkg.cfg.d)
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
)
APT_CLEAN = Path(__file__).with_name("docker-clean")  # -> /etc/apt/apt.conf.d/docker-clean
CONFIG = (
    "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--env=LANG=C.UTF-8",
    "--cmd=python3",
)


@functools.cache
def key_text() -> str:
    """Everything the base is built from besides APT_CLEAN (the Debian archive aside)."""
    mmdebstrap = subprocess.run(
        [require("mmdebstrap"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return "\n".join([mmdebstrap.strip(), SUITE, *SOURCES, *MMDEBSTRAP_OPTIONS, *CONFIG])


def build(name: str, workdir: Path, quiet: bool) -> None:
    """mmdebstrap a root file system into workdir, then commit it as the one layer of name."""
    rootfs = workdir / "rootfs.tar"
    argv = [require("mmdebstrap"), *(["--quiet"] if quiet else []), *MMDEBSTRAP_OPTIONS]
    result = subprocess.run(
        [*argv, SUITE, str(rootfs), *SOURCES], capture_output=quiet, text=True, check=False
    )
    if result.returncode != 0:
        if quiet:
            print(result.stderr, file=sys.stderr)
        raise ImageBuildError(
            f"mmdebstrap failed (exit {result.returncode}): see the output above; "
            "is http://deb.debian.org reachable?"
        )
    with tarfile.open(rootfs, "a") as tar:
        info = tar.gettarinfo(APT_CLEAN, arcname="./etc/apt/apt.conf.d/docker-clean")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o644
        with APT_CLEAN.open("rb") as content:
            tar.addfile(info, content)
    container = buildah.run(["from", "scratch"], quiet=True).strip()
    try:
        buildah.run(["add", container, str(rootfs), "/"], quiet=quiet, what="buildah add")
        buildah.run(["config", *CONFIG, container], quiet=quiet, what="buildah config")
        buildah.run(["commit", "--quiet", container, name], quiet=True, what="buildah commit")
    finally:
        buildah.run(["rm", container], quiet=True)
