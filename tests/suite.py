"""The whole suite as `make test` runs it: the e2e tier in two processes, the rest beside them.

On the 2-core machine the e2e tier (one test cluster, real pods) mostly waits: for pods,
rollouts, the kubelet. So three pytest processes run at once:

- the e2e tier's first process (the owner) starts the test cluster and runs most e2e modules,
  its output in the foreground;
- a second e2e process (the guest) runs the modules of `sharing.GUEST_MODULES` on the same
  cluster, in namespaces of its own; tests that act on the whole cluster are marked
  `exclusive` and never run next to one of its tests (tests/cluster/sharing.py);
- the unit, helm and integration tests (no cluster) at `nice 10`, which the cluster tier's
  processes outrank whenever they want a core.

The other two keep their output in files, printed after the owner's, so none interleaves.
Two pytest-xdist workers with a cluster each were tried and were slower (docs/testing.md):
a second cluster doubles the load that is always there; a second process on one cluster
and a cluster-less tier do not.

    python -m tests.suite [pytest arguments for every process]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster import sharing

NO_TESTS = 5  # pytest's exit code when nothing was collected
CLUSTER_TIER = "e2e"
OTHER_TIERS = "not e2e"


def _pytest(marker: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-m", marker, *extra]


def _verdict(name: str, rc: int, seconds: float) -> str:
    state = "passed" if rc == 0 else f"FAILED (pytest exit {rc})"
    if rc == NO_TESTS:
        state = "FAILED: collected no tests"
    return f"{name}: {state} in {seconds / 60:.1f} min"


@dataclass
class _Background:
    """A pytest process whose output goes to a file, and when it ended."""

    name: str
    log_path: Path
    popen: subprocess.Popen[bytes]
    ended: list[float] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> _Background:
        with log_path.open("w") as log:
            popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, pass_fds=pass_fds
            )
        started = cls(name, log_path, popen)
        threading.Thread(target=started._wait, daemon=True).start()
        return started

    def _wait(self) -> None:
        self.popen.wait()
        self.ended.append(time.monotonic())

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait()

    def report(self, started: float) -> str:
        self.popen.wait()
        while not self.ended:  # the waiting thread records the time right after wait()
            time.sleep(0.01)
        print(f"\n{'=' * 30} {self.name} {'=' * 30}", flush=True)
        sys.stdout.write(self.log_path.read_text())
        return _verdict(self.name, self.popen.returncode, self.ended[0] - started)


def main(argv: list[str]) -> int:
    # the cache plugin of several sessions would race on .pytest_cache: only the owner keeps it
    quiet_cache = ["-p", "no:cacheprovider", *argv]
    with tempfile.TemporaryDirectory(prefix="mlflow-operator-suite-") as work_name:
        work = Path(work_name)
        share = work / "cluster"
        share.mkdir()
        shared = {sharing.DIR_ENV: str(share)}
        started = time.monotonic()
        session_lock = sharing.open_session_lock(share)
        try:
            guest = _Background.start(
                "e2e tier, second process",
                _pytest(CLUSTER_TIER, quiet_cache),
                work / "e2e-second.log",
                env={
                    **os.environ,
                    **shared,
                    sharing.ROLE_ENV: "guest",
                    sharing.NAMESPACE_PREFIX_ENV: sharing.GUEST_NAMESPACE_PREFIX,
                },
                pass_fds=(session_lock,),  # the guest holds it until it exits
            )
        finally:
            os.close(session_lock)
        others = _Background.start(
            "unit, helm and integration tests",
            ["nice", "-n", "10", *_pytest(OTHER_TIERS, quiet_cache)],
            work / "other-tiers.log",
        )
        try:
            print(f"a second e2e process and the other tiers run alongside; their logs: {work}")
            owner_rc = subprocess.call(
                _pytest(CLUSTER_TIER, argv), env={**os.environ, **shared, sharing.ROLE_ENV: "owner"}
            )
            owner_seconds = time.monotonic() - started
            # An owner that started the cluster waited for the guest before stopping it; a
            # guest still running waits for a cluster that never came (or is gone).
            guest.stop()
            verdicts = [
                _verdict("e2e tier", owner_rc, owner_seconds),
                guest.report(started),
                others.report(started),
            ]
        finally:
            guest.stop()
            others.stop()
    print()
    print("\n".join(verdicts))
    failed = owner_rc != 0 or guest.popen.returncode != 0 or others.popen.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
