"""What `mlflow-operator-serve` was asked to do."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_BATCH_DELAY_MS = 0.0
DEFAULT_DRAIN_SECONDS = 30.0
DEFAULT_DRIFT_REFERENCE_ROWS = 1000


@dataclass(frozen=True)
class ServeSettings:
    """Options of one serving process tree; built by the CLI, read by everything else."""

    model_uri: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    # Seconds a request may take before it is answered 504, as MLflow's
    # MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT does.
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    # Rows in one merged predict call; a single request larger than this still runs (alone).
    # 1 turns batching off.
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    # Under load only: how long the next batch may wait for more requests after the model
    # frees up. A request that finds the model idle never waits.
    max_batch_delay_ms: float = DEFAULT_MAX_BATCH_DELAY_MS
    # How long SIGTERM waits for in-flight requests before the process exits anyway.
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    # Where a `models:/` or remote URI is downloaded to; None: a temporary directory.
    download_dir: str | None = None
    warm_up: bool = True
    # A JSON file (the operator's ConfigMap of strategy Shadow) naming a candidate to copy a
    # share of requests to; None, a missing or an empty file: no mirroring. See mirror.py.
    mirror_config: str | None = None
    # Share (0-1) of the requests answered 200 written, with their answers, to the version's
    # run in MLflow; 0: none. See prediction_log.py.
    sample_rate: float = 0.0
    # Input columns never written with a sample nor scored for drift (secrets, personal data).
    sample_exclude: tuple[str, ...] = ()
    # Per-feature drift scores against a reference (drift.py); the rows of live traffic that
    # become the reference when the version's run has none.
    drift: bool = False
    drift_reference_rows: int = DEFAULT_DRIFT_REFERENCE_ROWS
    # The run samples and drift references are written to; None: the version's own run.
    monitoring_run_id: str | None = None
