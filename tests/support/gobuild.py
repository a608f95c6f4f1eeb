"""Go builds into the out-of-repo cache: find the toolchain, key the build, build once.

The test cluster, helm (and the demo through them) are Go programs built on first use; a
build takes minutes, so two sessions starting at once must not both run it.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
from collections.abc import Callable, Iterator
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
