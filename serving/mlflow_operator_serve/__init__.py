"""The `batched` serving runtime: MLflow's scoring HTTP API with adaptive batching and metrics.

`mlflow-operator-serve` (see `cli.py`) loads one MLflow pyfunc model and serves it. The pieces,
one job each:

- `settings.py`  what the command was asked to do (a frozen dataclass, no I/O)
- `workers.py`   how many processes the container's CPU limit allows, and forking them
- `loading.py`   downloading the model once, loading it, warming it up
- `protocol.py`  MLflow's scoring protocol: request parsing, responses and error shapes
- `jsonrows.py`  JSON tabular requests kept as rows, so a batch builds one DataFrame
- `tabular.py`   merging parsed DataFrames into one batch and splitting predictions back
- `batcher.py`   the adaptive batching queue (generic: no MLflow, no pandas)
- `metrics.py`   Prometheus metrics
- `server.py`    the aiohttp application and the process lifecycle (readiness, SIGTERM drain)

Importing this package is cheap: MLflow, pandas and numpy are imported only by the modules
that need them, which the CLI imports after it has parsed its options.
"""
