"""The whole suite as `make test` runs it: the cluster tier and the rest side by side.

On the 2-core machine the e2e tier (one test cluster, real pods) keeps about one core busy: it
mostly waits for pods, rollouts and the kubelet. The unit, helm and integration tests (no
cluster) take about 7 minutes on their own. So they run at the same time, in a second pytest
process at `nice 10`, which the cluster tier's processes outrank whenever both want a core.
Its output is kept in a file and printed after the e2e tier's, so neither interleaves.

Two pytest-xdist workers with a cluster each were tried and were slower (docs/testing.md):
a second cluster doubles the load that is always there, a cluster-less tier does not.

    python -m tests.suite [pytest arguments for both tiers]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="mlflow-operator-suite-") as work:
        log_path = Path(work) / "other-tiers.log"
        started = time.monotonic()
        with log_path.open("w") as log:
            # the cache plugin of two sessions would race on .pytest_cache: only one keeps it
            others = subprocess.Popen(
                ["nice", "-n", "10", *_pytest(OTHER_TIERS, ["-p", "no:cacheprovider", *argv])],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            others_done: list[float] = []
            waiter = threading.Thread(
                target=lambda: (others.wait(), others_done.append(time.monotonic())), daemon=True
            )
            waiter.start()
            try:
                print(f"unit, helm and integration tests run alongside; their log: {log_path}")
                cluster_rc = subprocess.call(_pytest(CLUSTER_TIER, argv))
                cluster_seconds = time.monotonic() - started
                waiter.join()
            finally:
                if others.poll() is None:
                    others.terminate()
                    others.wait()
            others_rc = others.returncode
            others_seconds = others_done[0] - started
        print(f"\n{'=' * 30} unit, helm and integration tests {'=' * 30}", flush=True)
        sys.stdout.write(log_path.read_text())
    print()
    print(_verdict("e2e tier", cluster_rc, cluster_seconds))
    print(_verdict("unit, helm and integration tiers", others_rc, others_seconds))
    return 0 if cluster_rc == 0 and others_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
