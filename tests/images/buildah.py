"""buildah as this project runs it: its own storage under the cache, and the flags this host needs.

The storage lives in ``<cache_root>/containers`` so that builds never touch the host's
/var/lib/containers, and its layer cache survives between builds (``--layers``): a change in
operator/ reruns only the steps after the COPY of the source.

RUN steps need: runc (crun fails on hybrid cgroup hosts), rlimits no higher than the host's
(runc cannot raise them without CAP_SYS_RESOURCE, buildah's default nproc is 32768), and the
host's network (no bridge, no firewall rules on the host).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.cache import cache_root

RUN_FLAGS = (
    "--ulimit=nofile=1024:1024",
    "--ulimit=nproc=4096:4096",
    "--network=host",
)
SETUP_HINT = "run `make env` (it installs the Debian packages buildah, runc, mmdebstrap, gcc)"


class ImageBuildError(RuntimeError):
    """A build that cannot go on; the message is one line that says what to do."""


def require(program: str, hint: str = SETUP_HINT) -> str:
    """The path of program, or an ImageBuildError that says how to install it."""
    # /usr/sbin: where Debian puts runc, and not on the PATH of every user
    found = shutil.which(program, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        raise ImageBuildError(f"{program} not found: {hint}")
    return found


def storage_flags() -> list[str]:
    storage = cache_root() / "containers"
    return [
        f"--root={storage / 'storage'}",
        f"--runroot={storage / 'runroot'}",
        "--storage-driver=overlay",
    ]


@functools.cache
def version() -> str:
    """`buildah --version`: part of every image's key."""
    return run(["--version"], quiet=True).strip()


def run(args: Sequence[str], *, quiet: bool, what: str = "buildah") -> str:
    """buildah with the project's storage; its stdout when quiet, else all goes to stderr (the
    stdout of `python -m tests.images` is its result lines)."""
    argv = [require("buildah"), *storage_flags(), *args]
    result = subprocess.run(
        argv,
        stdout=subprocess.PIPE if quiet else sys.stderr,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or "").strip().splitlines()[-20:]) if quiet else ""
        if tail:
            print(tail, file=sys.stderr)
        raise ImageBuildError(
            f"{what} failed (exit {result.returncode}): see the output above; a network error "
            "means PyPI or deb.debian.org was unreachable, run again once it is"
        )
    return result.stdout or ""


def has_image(name: str) -> bool:
    argv = [require("buildah"), *storage_flags(), "inspect", "--type=image", name]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def remove(name: str) -> None:
    """Untag name (its layers stay while another image or the build cache uses them)."""
    argv = [require("buildah"), *storage_flags(), "rmi", name]
    subprocess.run(argv, capture_output=True, check=False)


def load(archive: Path, name: str, *, quiet: bool) -> None:
    """Make name (saved in archive) available to FROM, unless the storage has it already."""
    if not has_image(name):
        run(["pull", "--quiet", f"docker-archive:{archive}"], quiet=quiet, what=f"loading {name}")


def save(name: str, archive: Path, *, quiet: bool) -> None:
    """Write name to a docker-archive tar (it keeps the localhost/... name), atomically."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.partial")
    partial.unlink(missing_ok=True)
    run(["push", "--quiet", name, f"docker-archive:{partial}:{name}"], quiet=quiet, what="push")
    partial.rename(archive)


def bud(
    containerfile: Path,
    context: Path,
    name: str,
    *,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    volumes: Sequence[str] = (),
    quiet: bool,
) -> None:
    """`buildah bud` of containerfile (one target of it) in context, tagged name."""
    args = ["bud", "--layers", "--pull=never", f"--runtime={require('runc')}", *RUN_FLAGS]
    args += [f"--file={containerfile}"]
    args += [f"--tag={name}", *(f"--volume={volume}" for volume in volumes)]
    args += [f"--build-arg={key}={value}" for key, value in (build_args or {}).items()]
    if target:
        args.append(f"--target={target}")
    run([*args, str(context)], quiet=quiet, what=f"building {name}")
