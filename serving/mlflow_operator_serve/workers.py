"""How many serving processes the container may run, and running them.

A pod's CPU limit is what the container may use, not what `os.cpu_count()` shows (the node's
CPUs). MLflow's container entrypoint uses `multiprocessing.cpu_count()` and so starts too many
workers in a pod with a small limit; the processes then fight for the CFS quota and latency
suffers. We read the limit from the cgroup instead.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

_logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The container's CPU limit in CPUs, or None when it has none (or it cannot be read).

    cgroup v2: `cpu.max` is "<quota> <period>" or "max <period>".
    cgroup v1: `cpu.cfs_quota_us` (-1 when unlimited) and `cpu.cfs_period_us`.
    """
    v2 = root / "cpu.max"
    with contextlib.suppress(OSError, ValueError):
        quota_text, period_text = v2.read_text().split()[:2]
        if quota_text == "max":
            return None
        return int(quota_text) / int(period_text)
    for v1_dir in (root / "cpu", root / "cpu,cpuacct", root):
        with contextlib.suppress(OSError, ValueError):
            quota = int((v1_dir / "cpu.cfs_quota_us").read_text())
            period = int((v1_dir / "cpu.cfs_period_us").read_text())
            if quota <= 0 or period <= 0:
                return None
            return quota / period
    return None


def available_cpus() -> int:
    """CPUs this process may be scheduled on (cpusets included), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_worker_count(root: Path = CGROUP_ROOT) -> int:
    """One worker per whole CPU of the limit, at least 1, at most the CPUs we may run on.

    Rounded down: a worker keeps a CPU busy under load, and a fractional CPU's worth of extra
    worker is throttled by the CFS quota, which costs more tail latency than it adds throughput.
    """
    cpus = available_cpus()
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return cpus
    return max(1, min(cpus, math.floor(limit)))


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A bound, listening TCP socket with TCP_NODELAY set.

    Linux copies TCP_NODELAY from the listening socket to every accepted one; aiohttp also sets
    it on each connection it accepts. Without it a keep-alive client that sends small requests
    one after another waits for delayed ACKs (about 40 ms each) - the bug that makes
    `mlflow models serve -w 2` ten times slower than `-w 1`.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def run_forked(
    count: int, child_main: Callable[[], int], then: Callable[[], None] | None = None
) -> int:
    """Fork `count` children that each run `child_main`, run `then` once, and supervise them.

    The parent has already done the work all children share (imports, the model download),
    so each child starts warm and the pages stay shared copy-on-write. SIGTERM and SIGINT are
    passed on to the children, which drain their in-flight requests and exit. When one child
    dies on its own, the others are stopped too and the parent exits non-zero: Kubernetes then
    restarts the container, which is simpler to reason about than a half-alive pod.
    """
    children: set[int] = set()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child_main()
            finally:
                # Never run the parent's atexit handlers or return into its stack.
                logging.shutdown()
                sys.stdout.flush()
                os._exit(code)
        children.add(pid)

    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if then is not None:
        then()

    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        _on_child_exit(pid)
        if not stopping:
            _logger.error("worker %d exited with %d; stopping the others", pid, code)
            exit_code = 1
            forward(signal.SIGTERM, None)
        elif code != 0:
            exit_code = exit_code or code
    return exit_code


def _on_child_exit(pid: int) -> None:
    # Live gauges of a dead worker must not count any more (prometheus multiprocess mode).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
