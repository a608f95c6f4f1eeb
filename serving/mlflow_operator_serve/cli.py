"""`mlflow-operator-serve`: the command a `serving.runtime: batched` pod runs.

This module is imported by the operator's CLI, so it imports nothing heavy: MLflow, pandas and
numpy are imported by `server.run`, after the options are parsed.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from mlflow_operator_serve import settings as defaults

_ENV = "MLFLOW_OPERATOR_SERVE_"


def _default_timeout() -> float:
    # The variable MLflow's scoring server reads, so a pod spec works with either runtime.
    value = os.environ.get("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT")
    return float(value) if value else defaults.DEFAULT_TIMEOUT_SECONDS


@click.command("serve")
@click.option(
    "-m",
    "--model-uri",
    required=True,
    envvar=f"{_ENV}MODEL_URI",
    help="models:/<name>/<version> (through MLFLOW_TRACKING_URI), any MLflow artifact URI, "
    "or a local model directory.",
)
@click.option("--host", default="127.0.0.1", show_default=True, envvar=f"{_ENV}HOST")
@click.option(
    "-p", "--port", type=int, default=defaults.DEFAULT_PORT, show_default=True, envvar=f"{_ENV}PORT"
)
@click.option(
    "-w",
    "--workers",
    default="auto",
    show_default=True,
    envvar=f"{_ENV}WORKERS",
    help="Worker processes; 'auto': one per whole CPU of the container's CPU limit (cgroup).",
)
@click.option(
    "-t",
    "--timeout",
    type=float,
    default=_default_timeout,
    show_default="MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT or 60",
    help="Seconds before a request is answered 504.",
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=defaults.DEFAULT_MAX_BATCH_SIZE,
    show_default=True,
    envvar=f"{_ENV}MAX_BATCH_SIZE",
    help="Most rows merged into one predict call; 1 turns batching off.",
)
@click.option(
    "--max-batch-delay-ms",
    type=click.FloatRange(min=0),
    default=defaults.DEFAULT_MAX_BATCH_DELAY_MS,
    show_default=True,
    envvar=f"{_ENV}MAX_BATCH_DELAY_MS",
    help="Under load, how long a batch may wait to fill after the model frees up. "
    "A request that finds the model idle never waits.",
)
@click.option(
    "--drain-seconds",
    type=click.FloatRange(min=0),
    default=defaults.DEFAULT_DRAIN_SECONDS,
    show_default=True,
    envvar=f"{_ENV}DRAIN_SECONDS",
    help="On SIGTERM, how long in-flight requests may take to finish.",
)
@click.option(
    "--download-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar=f"{_ENV}DOWNLOAD_DIR",
    help="Where a remote model is downloaded to (default: a temporary directory).",
)
@click.option(
    "--warm-up/--no-warm-up",
    default=True,
    show_default=True,
    help="Predict the model's serving input example once before becoming ready.",
)
@click.option(
    "--mirror-config",
    type=click.Path(dir_okay=False),
    default=None,
    envvar=f"{_ENV}MIRROR_CONFIG",
    help="JSON file naming a candidate that gets copies of a share of requests "
    '({"url": ..., "percent": ..., "version": ...}); re-read when it changes. '
    "Missing or empty: no mirroring.",
)
@click.option(
    "--sample-rate",
    type=click.FloatRange(min=0, max=1),
    default=0.0,
    show_default=True,
    envvar=f"{_ENV}SAMPLE_RATE",
    help="Share of the requests answered 200 written, with their answers, to the artifacts "
    "of the version's run in MLflow (predictions/...jsonl); 0: none.",
)
@click.option(
    "--sample-exclude",
    multiple=True,
    help="An input column never written with a sample nor scored for drift (secrets, "
    "personal data); repeatable.",
)
@click.option(
    "--drift/--no-drift",
    default=False,
    show_default=True,
    envvar=f"{_ENV}DRIFT",
    help="Score each input column and output for drift against a reference "
    "(mlflow_serving_feature_drift on /metrics).",
)
@click.option(
    "--drift-reference-rows",
    type=click.IntRange(min=10, max=1_000_000),
    default=defaults.DEFAULT_DRIFT_REFERENCE_ROWS,
    show_default=True,
    envvar=f"{_ENV}DRIFT_REFERENCE_ROWS",
    help="Live rows that become the drift reference when the version's run holds none "
    "(monitoring/reference.json or a profile an earlier pod stored).",
)
@click.option(
    "--monitoring-run-id",
    default=None,
    envvar=f"{_ENV}MONITORING_RUN_ID",
    help="The MLflow run samples and drift references are written to (and looked for in "
    "first), instead of the version's own run.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    envvar=f"{_ENV}LOG_LEVEL",
)
def serve(  # click passes options by name
    *,
    model_uri: str,
    host: str,
    port: int,
    workers: str,
    timeout: float,
    max_batch_size: int,
    max_batch_delay_ms: float,
    drain_seconds: float,
    download_dir: str | None,
    warm_up: bool,
    mirror_config: str | None,
    sample_rate: float,
    sample_exclude: tuple[str, ...],
    drift: bool,
    drift_reference_rows: int,
    monitoring_run_id: str | None,
    log_level: str,
) -> None:
    """Serve one MLflow model with MLflow's scoring API, adaptive batching and metrics."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = defaults.ServeSettings(
        model_uri=model_uri,
        host=host,
        port=port,
        workers=_worker_count(workers),
        timeout_seconds=timeout,
        max_batch_size=max_batch_size,
        max_batch_delay_ms=max_batch_delay_ms,
        drain_seconds=drain_seconds,
        download_dir=download_dir,
        warm_up=warm_up,
        mirror_config=mirror_config,
        sample_rate=sample_rate,
        sample_exclude=sample_exclude,
        drift=drift,
        drift_reference_rows=drift_reference_rows,
        monitoring_run_id=monitoring_run_id,
    )
    from mlflow_operator_serve.server import run

    sys.exit(run(settings))


def _worker_count(value: str) -> int:
    if value == "auto":
        from mlflow_operator_serve.workers import default_worker_count

        return default_worker_count()
    try:
        count = int(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a positive integer, got {value!r}") from None
    if count < 1:
        raise click.BadParameter(f"expected 'auto' or a positive integer, got {value!r}")
    return count


if __name__ == "__main__":
    serve()
