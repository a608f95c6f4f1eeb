"""Drift scoring in numbers. Prints them; nothing here passes or fails.

    .venv/bin/python -m tests.bench.bench_drift [--trials 200]

1. How large a score is by chance alone: PSI between a reference and live rows drawn from the
   same distribution, for reference and window sizes a user can choose. A threshold below
   these would report drift in traffic that did not move. The values are standard normal
   draws; deciles make the score depend on ranks only, so this holds for any continuous column.
2. What the drift thread spends per 1,000 single-row requests of the iris model (four float
   columns and one answer), handed over as the batcher hands them: the CPU a saturated pod
   gives up to it. tests/bench/bench_monitoring.py measures whole servers.

Bins, score and thread code are the serving runtime's own (drift_profile.py, drift.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlflow_operator_serve.drift import DriftMonitor
from mlflow_operator_serve.drift_profile import Kind, fit_bins, psi
from tests.mlflowstack.models import iris

REFERENCE_ROWS = (100, 1000, 5000)
LIVE_ROWS = (500, 1000)  # a score covers between half the window (1,000 rows) and all of it


class _NoStore:
    def download(self, artifact_path: str, into: Path) -> Path | None:
        return None

    def upload(self, path: Path, artifact_dir: str) -> None:
        pass


class _NoGauges:
    def drift_rows(self, outcome: str, count: int) -> None:
        pass

    def drift_reference(self, source: str, rows: int) -> None:
        pass

    def drift_window(self, rows: int) -> None:
        pass

    def drift_scores(self, scores: dict[tuple[Kind, str], float]) -> None:
        pass


def thread_cost(rounds: int = 20) -> list[float]:
    """Milliseconds of process() per 1,000 single-row requests, after the reference."""
    features, _ = iris()
    requests = [features.iloc[i % 150 : i % 150 + 1] for i in range(1000)]
    answers = [np.array([i % 3]) for i in range(1000)]
    monitor = DriftMonitor(
        version="1", reference_rows=1000, excluded=frozenset(),
        store=_NoStore(), gauges=_NoGauges(),
    )  # fmt: skip
    monitor.look_up_reference()
    monitor.process(list(zip(requests, answers, strict=True)))  # the reference
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        monitor.process(list(zip(requests, answers, strict=True)))
        took.append((time.perf_counter() - started) * 1000)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"PSI of same-distribution samples, {args.trials} trials each")
    print(f"{'reference rows':>14} {'live rows':>9} {'mean':>6} {'p95':>6} {'max':>6}")
    for reference_rows in REFERENCE_ROWS:
        for live_rows in LIVE_ROWS:
            scores = []
            for _ in range(args.trials):
                reference = pd.Series(rng.normal(size=reference_rows))
                live = pd.Series(rng.normal(size=live_rows))
                bins = fit_bins("x", "input", reference)
                assert bins is not None
                scores.append(psi(bins.count(reference), bins.count(live)))
            print(
                f"{reference_rows:>14} {live_rows:>9} {np.mean(scores):>6.3f} "
                f"{np.percentile(scores, 95):>6.3f} {np.max(scores):>6.3f}"
            )
    took = thread_cost()
    print("\ndrift thread per 1,000 single-row iris requests (20 rounds): "
          f"median {np.median(took):.1f} ms, max {np.max(took):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
