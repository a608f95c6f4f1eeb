"""Cold start from the registry: a large registered PyTorch model, downloaded at every start.

    python -m tests.bench.bench_registry_start [--hidden 8192] [--starts 3] [--split-cpus]
        [--also DIR]

What a serving pod does: start from a `models:/<name>/<version>` URI, download the version
through the tracking server (artifacts proxied from MinIO, as the operator's MLflowServer
serves them), import the flavor's libraries, load, answer. Runs the local MLflow stack
(PostgreSQL, MinIO, `mlflow server`), registers the benchmark's MLP (serving_models.py)
`--hidden` wide, saved as `pickle` (8192: 69 M float32 weights, 276 MB), and times, process
start to the first `/ping` 200, `mlflow models serve -w 1` and `batched -w 1` (each start
downloading anew), alternating; with --also, `batched` from another checkout's `serving/`
too. Prints seconds; nothing passes or fails.

Needs torch and the MLflow server's packages (psycopg2, boto3) in this virtualenv, whose
scripts start the servers: for instance the serving-gpu image's packages plus those two. On a
machine without CUDA both servers load the model onto the CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tests.bench.serving_models import save_torch_mlp
from tests.bench.serving_servers import Server, start_batched, start_mlflow_serve, wait_ready
from tests.mlflowstack import stack as stack_module

# batched's own log line: how long the download took
DOWNLOAD_LOG = re.compile(r"downloaded \S+ to \S+ in ([0-9.]+)s")


def register(tracking_uri: str, workdir: Path, hidden: int) -> str:
    """The MLP saved here, logged as a run's artifacts, registered: its models:/ URI."""
    import mlflow

    local = save_torch_mlp(workdir / "mlp", "pickle", "cpu", hidden)
    size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    name = f"bench-start-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(local), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    print(f"registered {name}/{version.version}: {size / 2**20:.0f} MiB in "
          f"{time.monotonic() - started:.1f}s", flush=True)  # fmt: skip
    return f"models:/{name}/{version.version}"


class StartServer:
    def __init__(
        self, label: str, uri: str, tracking_uri: str, batched: bool, source: str | None = None
    ) -> None:
        self.label, self.uri, self.batched = label, uri, batched
        self.env = {"MLFLOW_TRACKING_URI": tracking_uri}
        if source:  # the runtime's package from another checkout, ahead of the installed one
            self.env["PYTHONPATH"] = source

    def __call__(self, workdir: Path) -> Server:
        if not self.batched:
            return start_mlflow_serve(self.uri, workdir, self.env)
        download = tempfile.mkdtemp(prefix="download-", dir=workdir)
        args = ["--workers", "1", "--download-dir", download]
        return start_batched(self.uri, workdir, args, self.env)


def timed_start(start: StartServer, workdir: Path) -> tuple[float, str]:
    """Seconds to ready, and how long batched logged its download took (MLflow logs none)."""
    started = time.monotonic()
    server = start(workdir)
    try:
        wait_ready(server, timeout=600)
        seconds = time.monotonic() - started
        log = Path(server.process.log_path).read_text()
        found = DOWNLOAD_LOG.search(log)
        return seconds, f"(its download {found.group(1)}s)" if found else ""
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=8192, help="the MLP's hidden width")
    parser.add_argument("--starts", type=int, default=3, help="starts per server")
    parser.add_argument(
        "--split-cpus",
        action="store_true",
        help="the stack on all CPUs but the first, the servers on the first: a one-CPU pod "
        "and a tracking server on other machines",
    )
    parser.add_argument(
        "--also",
        metavar="SERVING_DIR",
        help="also start batched from another checkout's serving/ directory (before/after)",
    )
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if args.split_cpus and len(cpus) < 2:
        raise SystemExit("--split-cpus needs two CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-registry-start-") as tmp:
        workdir = Path(tmp)
        if args.split_cpus:  # the stack's processes inherit this
            os.sched_setaffinity(0, cpus[1:])
        with stack_module.running(workdir / "stack") as stack:
            uri = register(stack.tracking_uri, workdir, args.hidden)
            if args.split_cpus:  # and the servers this
                os.sched_setaffinity(0, cpus[:1])
            servers = [
                StartServer("mlflow models serve -w 1", uri, stack.tracking_uri, batched=False),
                StartServer("batched -w 1", uri, stack.tracking_uri, batched=True),
            ]
            if args.also:
                label = f"batched -w 1 ({args.also})"
                servers.append(StartServer(label, uri, stack.tracking_uri, True, args.also))
            times: dict[str, list[float]] = {server.label: [] for server in servers}
            for attempt in range(args.starts):
                for server in servers:
                    seconds, download = timed_start(server, workdir)
                    times[server.label].append(seconds)
                    print(
                        f"start {attempt + 1}: {server.label} {seconds:.2f}s  {download}",
                        flush=True,
                    )
    print("cold start from models:/ to ready (s): median [runs]")
    for label, runs in times.items():
        print(f"  {label:28s} {statistics.median(runs):6.2f}  {[round(r, 2) for r in runs]}")


if __name__ == "__main__":
    main()
