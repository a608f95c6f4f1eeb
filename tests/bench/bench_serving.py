"""Benchmark of the serving runtimes: cold start, throughput and latency. Prints numbers.

    .venv/bin/python -m tests.bench.bench_serving [--seconds 5] [--levels 1,4,16,64]

Same model (LogisticRegression on iris, 4 double columns, single-row requests), same machine,
one server at a time (each alone on the CPUs while it starts and while it is measured):

- `mlflow models serve -w 1 --env-manager local` (MLflow's scoring server, /invocations)
- MLServer 1.7.1 + mlserver-mlflow, V2 infer, without and with adaptive batching (its batcher
  only wraps the V2 path), from its own virtualenv (serving_mlserver.py)
- `mlflow-operator-serve` (batched) with 1 worker, and with --workers auto (the CPU limit)

The load generator runs on the same machine and competes for the CPUs, as a sidecar would.
Cold start: from process start to the first 200 on the readiness endpoint; skops' trusted
types are recorded first in this virtualenv, as the serving images record them when built.

    python -m tests.bench.bench_serving --gpu [--torch-format pickle|pt2] [--load-processes 4]

--gpu: a PyTorch MLP instead (256 float32 inputs, 2048, 2048, 10 outputs; serving_models.py),
served by `mlflow models serve -w 1` and `batched -w 1` only (MLServer is left out); both load
it onto CUDA when torch sees a GPU (MLflow's pytorch flavor does), and the output says which
device torch sees here. `pickle` (default): requests in `dataframe_split` (columns f0..f255);
`pt2` (torch.export, saved on --export-device, cpu by default): requests in `inputs`. MLflow
itself refuses to load a pt2 model exported on CPU onto CUDA, so there `mlflow models serve`
does not start (reported, not fatal). For batched, the mean merged batch (requests and rows per
predict call, from its /metrics) per level. The load comes from --load-processes processes (4
by default with --gpu: one asyncio process tops out at a few thousand requests per second).
torch is imported only with --gpu.

    python -m tests.bench.bench_serving --tensor 256

--tensor WIDTH: a LogisticRegression on WIDTH float32 features (a tensor signature, float32
(-1, WIDTH)) and `{"inputs": [row]}` requests, the shape `pt2` models take; with 256, the GPU
benchmark's request with a model that costs little, on the CPU: MLflow's server and
`batched -w 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.serving_load import LoadResult, run_load
from tests.bench.serving_models import (
    TORCH_FORMATS,
    TorchFormat,
    request_body,
    save_torch_mlp,
    torch_module,
)
from tests.bench.serving_servers import (
    Server,
    request,
    save_iris_classifier,
    save_wide_tensor_classifier,
    start_batched,
    start_mlflow_serve,
    wait_ready,
)

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROW = [5.1, 3.5, 1.4, 0.2]
MLFLOW_BODY = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}).encode()


@dataclass
class Contender:
    label: str
    start: Callable[[Path, Path], Server]
    ready_path: str = "/ping"
    infer_path: str = "/invocations"
    body: bytes = MLFLOW_BODY
    # GET path of its Prometheus metrics, for the merged batch sizes (None: not read)
    metrics_path: str | None = None
    cold_starts: list[float] = field(default_factory=list)
    results: dict[int, LoadResult] = field(default_factory=dict)
    batches: dict[int, BatchSizes] = field(default_factory=dict)
    failure: str = ""


@dataclass(frozen=True)
class BatchSizes:
    """Predict calls during one level's load (warmup included), and the mean merged batch."""

    calls: float
    requests: float
    rows: float

    @property
    def mean_requests(self) -> float:
        return self.requests / self.calls if self.calls else float("nan")

    @property
    def mean_rows(self) -> float:
        return self.rows / self.calls if self.calls else float("nan")


def metric_total(text: str, name: str) -> float:
    """The sum of a metric's samples over all its label sets in a Prometheus text page."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def batch_counters(server: Server, path: str) -> BatchSizes:
    """The batch histograms' totals so far (predict calls, requests and rows in them)."""
    text = request(server.port, "GET", path).body.decode()
    return BatchSizes(
        metric_total(text, "mlflow_serving_batch_size_requests_count"),
        metric_total(text, "mlflow_serving_batch_size_requests_sum"),
        metric_total(text, "mlflow_serving_batch_size_rows_sum"),
    )


def contenders(include_mlserver: bool) -> list[Contender]:
    found = [
        Contender("mlflow models serve -w 1", lambda m, w: start_mlflow_serve(str(m), w)),
    ]
    if include_mlserver:
        from tests.bench.serving_mlserver import start_mlserver, v2_body

        for batching in (False, True):
            found.append(
                Contender(
                    "MLServer V2 batching" if batching else "MLServer V2",
                    lambda m, w, b=batching: start_mlserver(m, w, b),  # type: ignore[misc]
                    ready_path="/v2/models/iris/ready",
                    infer_path="/v2/models/iris/infer",
                    body=v2_body(COLUMNS, ROW),
                )
            )
    found += [
        Contender("batched -w 1", lambda m, w: start_batched(str(m), w, ["--workers", "1"])),
        Contender("batched -w auto", lambda m, w: start_batched(str(m), w, ["--workers", "auto"])),
    ]
    return found


def gpu_contenders(serialization_format: TorchFormat) -> list[Contender]:
    """The GPU comparison: MLflow's server and ours, one worker each, one model on one GPU;
    and ours with two workers sharing the GPU (each its own CUDA context and weights), which
    shows how much of one worker's limit is its one CPU core."""
    from tests.bench.serving_models import random_rows

    body = request_body(serialization_format, random_rows(1)[0])
    return [
        Contender(
            "mlflow models serve -w 1", lambda m, w: start_mlflow_serve(str(m), w), body=body
        ),
        *(
            Contender(
                f"batched -w {workers}",
                lambda m, w, n=workers: start_batched(str(m), w, ["--workers", str(n)]),  # type: ignore[misc]
                body=body,
                metrics_path="/metrics",
            )
            for workers in (1, 2)
        ),
    ]


def tensor_contenders(width: int) -> list[Contender]:
    """A model with a tensor signature, `inputs` requests of one row: MLflow's server and ours."""
    body = json.dumps({"inputs": [[0.5 + i / width for i in range(width)]]}).encode()
    return [
        Contender(
            "mlflow models serve -w 1",
            lambda m, w: start_mlflow_serve(str(m), w),
            body=body,
        ),
        Contender(
            "batched -w 1",
            lambda m, w: start_batched(str(m), w, ["--workers", "1"]),
            body=body,
            metrics_path="/metrics",
        ),
    ]


def measure(
    contender: Contender,
    model: Path,
    workdir: Path,
    *,
    levels: list[int],
    seconds: float,
    starts: int,
    load_processes: int = 1,
) -> None:
    for attempt in range(starts):
        started = time.monotonic()
        server = contender.start(model, workdir)
        try:
            wait_ready(server, path=contender.ready_path)
            contender.cold_starts.append(time.monotonic() - started)
            if attempt < starts - 1:
                continue
            url = f"{server.base_url}{contender.infer_path}"
            for level in levels:
                before = (
                    batch_counters(server, contender.metrics_path)
                    if contender.metrics_path
                    else None
                )
                contender.results[level] = run_load(
                    url,
                    contender.body,
                    "application/json",
                    concurrency=level,
                    seconds=seconds,
                    processes=load_processes,
                )
                if before is not None and contender.metrics_path:
                    after = batch_counters(server, contender.metrics_path)
                    contender.batches[level] = BatchSizes(
                        after.calls - before.calls,
                        after.requests - before.requests,
                        after.rows - before.rows,
                    )
        finally:
            server.stop()


def report(all_: list[Contender], levels: list[int]) -> None:
    failed = [c for c in all_ if c.failure]
    if failed:
        print("\nnot measured:")
        for c in failed:
            print(f"  {c.label:28s} {c.failure}")
    all_ = [c for c in all_ if not c.failure]
    if not all_:
        return
    print("\ncold start to ready (s): median of runs [runs]")
    for c in all_:
        runs = sorted(c.cold_starts)
        print(f"  {c.label:28s} {runs[len(runs) // 2]:6.2f}  {[round(r, 2) for r in runs]}")
    print("\nthroughput req/s | p50 ms | p99 ms | errors")
    header = "  " + " " * 28 + "".join(f"{'c=' + str(level):>26s}" for level in levels)
    print(header)
    for c in all_:
        cells = "".join(
            f"{r.rps:9.0f} {r.p50_ms:7.1f} {r.p99_ms:7.1f}{'!' if r.errors else ' '}"
            for r in (c.results[level] for level in levels)
        )
        print(f"  {c.label:28s}{cells}")
    batched = [c for c in all_ if c.batches]
    if batched:
        print("\nmean merged batch per predict call: requests | rows  (predict calls)")
        for c in batched:
            cells = "".join(
                f"{b.mean_requests:9.1f} {b.mean_rows:7.1f} ({b.calls:6.0f})"
                for b in (c.batches[level] for level in levels)
            )
            print(f"  {c.label:28s}{cells}")
    by = {c.label: c for c in all_}
    ours = by.get("batched -w 1")
    if ours is None:
        return
    print(
        "\nratios (batched -w 1 / other): throughput per concurrency; cold start (lower is better)"
    )
    for c in all_:
        if c is ours:
            continue
        tp = "  ".join(
            f"c={level}: {ours.results[level].rps / c.results[level].rps:5.2f}x" for level in levels
        )
        cold = (
            sorted(ours.cold_starts)[len(ours.cold_starts) // 2]
            / sorted(c.cold_starts)[len(c.cold_starts) // 2]
        )
        print(f"  vs {c.label:25s} {tp}   cold start {cold:4.2f}x")


def torch_device() -> str:
    """What torch sees here (the servers, started from this environment, see the same)."""
    try:
        torch = torch_module()
    except ImportError:
        raise SystemExit("--gpu needs torch (it is not an operator dependency)") from None
    forced = os.environ.get("MLFLOW_DEFAULT_PREDICTION_DEVICE")
    if forced:
        return (
            f"torch {torch.__version__}; MLFLOW_DEFAULT_PREDICTION_DEVICE={forced} for the servers"
        )
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"torch {torch.__version__} sees CUDA: {', '.join(names)}; the servers use cuda"
    return f"torch {torch.__version__} sees no CUDA device; the servers run the model on cpu"


def record_skops_trusted_types() -> None:
    """What the serving images do when they are built (Dockerfile): without it `batched`
    computes skops' trusted types at every start (skops_trusted_types.py)."""
    done = subprocess.run(
        [sys.executable, "-m", "mlflow_operator_serve.skops_trusted_types"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(done.stdout.strip(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level")
    parser.add_argument("--levels", help="concurrency levels (default 1,4,16,64; --gpu 1,16,64)")
    parser.add_argument("--cold-starts", type=int, help="starts per server (default 3; --gpu 1)")
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="measure in reverse order (on a machine whose load drifts, run both ways)",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="a PyTorch MLP, mlflow models serve and batched only (see above)",
    )
    parser.add_argument(
        "--tensor",
        type=int,
        metavar="WIDTH",
        help="a model with a tensor signature, float32 (-1, WIDTH), and `inputs` requests "
        "(256: the GPU benchmark's request); MLflow's server and batched -w 1 only",
    )
    parser.add_argument("--torch-format", choices=TORCH_FORMATS, default="pickle")
    parser.add_argument(
        "--export-device",
        default="cpu",
        help="the device the model is on when saved (pt2 keeps it; default cpu)",
    )
    parser.add_argument(
        "--load-processes",
        type=int,
        help="processes of the load generator (default 1; --gpu 4)",
    )
    args = parser.parse_args()
    levels = [
        int(level) for level in (args.levels or ("1,16,64" if args.gpu else "1,4,16,64")).split(",")
    ]
    starts = args.cold_starts or (1 if args.gpu else 3)
    load_processes = args.load_processes or (4 if args.gpu else 1)
    print(f"load average before: {os.getloadavg()}; CPUs: {os.cpu_count()}")
    record_skops_trusted_types()
    if args.gpu:
        print(torch_device())
        print(
            f"model: torch MLP 256-2048-2048-10, {args.torch_format}, saved on "
            f"{args.export_device}; load processes: {load_processes}",
            flush=True,
        )
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workdir = Path(tmp)
        if args.gpu:
            model = save_torch_mlp(workdir / "mlp", args.torch_format, args.export_device)
            all_ = gpu_contenders(args.torch_format)
        elif args.tensor:
            model = save_wide_tensor_classifier(workdir / "tensor", args.tensor)
            all_ = tensor_contenders(args.tensor)
        else:
            model = save_iris_classifier(workdir / "iris")
            all_ = contenders(not args.no_mlserver)
        for contender in reversed(all_) if args.reverse else all_:
            print(f"measuring {contender.label} ...", flush=True)
            try:
                measure(
                    contender,
                    model,
                    workdir,
                    levels=levels,
                    seconds=args.seconds,
                    starts=starts,
                    load_processes=load_processes,
                )
            except Exception as exc:  # noqa: BLE001  (one server failing keeps the others' numbers)
                traceback.print_exc()
                contender.failure = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    print(f"load average after: {os.getloadavg()}")
    report(all_, levels)
    if any(c.failure for c in all_):
        sys.exit(1)


if __name__ == "__main__":
    main()
