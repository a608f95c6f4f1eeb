"""Measure a MinIO build: wall time and peak memory of the whole `go install` process tree.

    .venv/bin/python -m tests.bench.minio_build            # build if the cache is cold
    .venv/bin/python -m tests.bench.minio_build --rebuild  # build again even if cached
    .venv/bin/python -m tests.bench.minio_build --rebuild --fresh-gocache  # compile from scratch

A rebuild goes to a scratch path and the cached binary stays in place meanwhile, so test
sessions running at the same time never find MinIO missing and start a build of their own.

Peak memory is sampled (every 0.2 s) as the summed RSS of `go` and all its descendants
(compile, link), because getrusage only reports the largest single child. A cold Go build
cache (`go clean -cache`) and module cache make the number "cold"; the script prints the
state it found so the reading is honest about what was warm.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.mlflowstack import minio

SAMPLE_INTERVAL_S = 0.2


def tree_rss_bytes(root_pid: int) -> int:
    """Summed RSS of root_pid and its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            statm = Path(entry.path, "statm").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        pid = int(entry.name)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def go_cache_sizes() -> str:
    out = subprocess.run(
        ["go", "env", "GOCACHE", "GOMODCACHE"], check=True, text=True, capture_output=True
    ).stdout.split()
    sizes = subprocess.run(["du", "-sh", *out], check=False, text=True, capture_output=True).stdout
    return " ".join(sizes.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rebuild", action="store_true", help="build again even if cached")
    parser.add_argument(
        "--fresh-gocache",
        action="store_true",
        help="compile with an empty Go build cache of its own (modules stay downloaded); "
        "cold compile without wiping the build cache other builds share",
    )
    args = parser.parse_args()
    if args.fresh_gocache:
        os.environ["GOCACHE"] = tempfile.mkdtemp(prefix="gocache-minio-")
    cached = minio.binary_path()
    if cached.exists() and not args.rebuild:
        print(f"warm: {cached} exists, nothing to build")
        return
    target = cached.with_name("minio.bench") if cached.exists() else cached
    print(f"go caches before: {go_cache_sizes()}")
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")

    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(os.getpid()) - own_rss)
            time.sleep(SAMPLE_INTERVAL_S)

    own_rss = tree_rss_bytes(os.getpid())
    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    try:
        minio.build(log=Path("/dev/stderr"), target=target)
    finally:
        done.set()
        sampler.join()
        if args.fresh_gocache:
            shutil.rmtree(os.environ["GOCACHE"], ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"built {target} ({target.stat().st_size / 2**20:.0f} MiB)")
    if target != cached:
        target.unlink()
    print(f"cold build: {elapsed:.0f} s wall, peak tree RSS {peak / 2**20:.0f} MiB")
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
