"""Start and stop the local programs of the test environment.

The control plane, PostgreSQL, MinIO and MLflow all run as local processes.

Every program is started in its own process group with its output in a log file, and is stopped
by PID (the whole group: SIGTERM, then SIGKILL) even when the test session fails. A record of the
PIDs goes to a file so that a later session can clean up after a crashed one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOG_TAIL_LINES = 40


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One program started by the test environment, with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self.popen = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.cwd,
            start_new_session=True,  # own process group: stop() takes its children too
        )
        log.close()
        PidRecord.default().add(self.popen.pid)
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return f"--- {self.name} ({self.log_path}) ---\n{tail(self.log_path, lines)}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None:
            return
        stop_group(self.popen.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)
        PidRecord.default().remove(self.popen.pid)


def stop_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by pid, then SIGKILL whatever is left after timeout."""
    stop_groups([pid], timeout)


def stop_groups(pids: Sequence[int], timeout: float = 10.0) -> None:
    """stop_group for several groups at once: they get their SIGTERM together and share one
    timeout, so stopping a crashed session's dozen programs costs one wait, not a dozen."""
    alive = list(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        signalled = []
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
                signalled.append(pid)
        deadline = time.monotonic() + timeout
        while signalled and time.monotonic() < deadline:
            signalled = [pid for pid in signalled if _group_alive(pid)]
            if signalled:
                time.sleep(0.05)
        alive = signalled
        if not alive:
            return


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def process_start_time(pid: int) -> int | None:
    """The start time of pid in clock ticks since boot (None if gone): with the PID, an identity
    that survives PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22; split after the command name, which may itself contain spaces and parentheses
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class PidEntry:
    """A recorded process group and the session (process) that started it."""

    pid: int
    owner: int = 0
    owner_started: int | None = None

    def owner_alive(self) -> bool:
        return self.owner > 0 and process_start_time(self.owner) == self.owner_started

    def line(self) -> str:
        return f"{self.pid} {self.owner} {self.owner_started or 0}\n"

    @classmethod
    def parse(cls, line: str) -> PidEntry:
        fields = [int(f) for f in line.split()]
        pid, owner, started = [*fields, 0, 0][:3]
        return cls(pid, owner, started or None)


@dataclass
class PidRecord:
    """PIDs (process-group leaders) started by test sessions, kept in a file.

    A session that crashed (SIGKILL, power loss) leaves its programs running; the next session
    reads this file and stops them before it starts its own. Each entry names the session that
    started it, so a reap never stops the programs of a session that is still running (the
    cluster and the MLflow stack fixtures, or two pytest runs, share one record).
    """

    path: Path

    @classmethod
    def default(cls) -> PidRecord:
        from tests.support.cache import state_dir

        return cls(state_dir() / "pids")

    def add(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = os.getpid()
        with self.path.open("a") as f:
            f.write(PidEntry(pid, owner, process_start_time(owner)).line())

    def remove(self, pid: int) -> None:
        self._write([e for e in self.entries() if e.pid != pid])

    def entries(self) -> list[PidEntry]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [PidEntry.parse(line) for line in lines if line.strip()]

    def pids(self) -> list[int]:
        return [e.pid for e in self.entries()]

    def _write(self, entries: list[PidEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(e.line() for e in entries))
        tmp.replace(self.path)  # atomic: a concurrent reader never sees half a file

    def reap_stale(self) -> list[int]:
        """Stop every recorded process group whose session is gone; return the PIDs stopped.

        Entries of sessions that are still running (this one included) are kept untouched.
        """
        stopped, kept = [], []
        for entry in self.entries():
            if entry.owner_alive():
                kept.append(entry)
            elif _group_alive(entry.pid):
                stopped.append(entry.pid)
        stop_groups(stopped, timeout=5)
        self._write(kept)
        return stopped


def http_ok(url: str, timeout: float = 2.0, context: object | None = None) -> bool:
    """True when GET url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # type: ignore[arg-type]
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError):
        return False
