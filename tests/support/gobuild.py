"""Go builds into the out-of-repo cache: find the toolchain, key the build, build once.

The test cluster, helm (and the demo through them) are Go programs built on first use; a
build takes minutes, so two sessions starting at once must not both run it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


def go_binary() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise RuntimeError("the Go toolchain is needed for this build (go not on PATH)")
    return go


def go_environment() -> str:
    """Go version, OS and architecture: part of every build key."""
    return subprocess.run(
        [go_binary(), "env", "GOVERSION", "GOOS", "GOARCH"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on lock_path for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_cached(target: Path, build: Callable[[Path], None]) -> Path:
    """target, calling build(target) first unless it exists (once, under a lock)."""
    if target.exists():
        return target
    with exclusive(target.parent.with_suffix(".lock")):
        if target.exists():  # another process built it while this one waited for the lock
            return target
        build(target)
    return target


def go_build(
    target: Path,
    module_dir: Path,
    package: str,
    ldflags: str,
    what: str,
    quiet: bool = False,
) -> None:
    """`go build` package of module_dir into target: static, reproducible, written atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    argv = [go_binary(), "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), package]
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false -mod=readonly")
    if not quiet:
        print(f"building {what} -> {target}", file=sys.stderr)
    started = time.monotonic()
    result = subprocess.run(
        argv, cwd=module_dir, env=env, capture_output=quiet, text=True, check=False
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = f"\n{result.stderr}" if quiet else ""
        raise RuntimeError(f"go build of {what} failed ({result.returncode}){detail}")
    partial.rename(target)  # atomic: a reader sees no binary or a whole one
    if not quiet:
        print(f"built in {time.monotonic() - started:.0f}s", file=sys.stderr)


def go_install(
    target_dir: Path,
    packages: Sequence[str],
    *,
    tags: Sequence[str] = (),
    ldflags: str = "-s -w",
    what: str,
    quiet: bool = False,
    cwd: Path | None = None,
) -> None:
    """`go install` packages (``pkg@version``, or packages of the module at cwd) into target_dir.

    Installs into a scratch directory first and renames each binary into place, so a build
    killed halfway leaves no binary that a later run would take for a good one.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target_dir))
    argv = [go_binary(), "install", "-trimpath", "-ldflags", ldflags]
    if tags:
        argv += ["-tags", ",".join(tags)]
    env = dict(os.environ, CGO_ENABLED="0", GOBIN=str(scratch), GOFLAGS="-buildvcs=false")
    if not quiet:
        print(f"building {what} -> {target_dir}", file=sys.stderr)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [*argv, *packages], cwd=cwd, env=env, capture_output=quiet, text=True, check=False
        )
        if result.returncode != 0:
            detail = f"\n{result.stderr}" if quiet else ""
            raise RuntimeError(f"go install of {what} failed ({result.returncode}){detail}")
        for binary in scratch.iterdir():
            binary.rename(target_dir / binary.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not quiet:
        print(f"built in {time.monotonic() - started:.0f}s", file=sys.stderr)
