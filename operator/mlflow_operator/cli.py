"""The `mlflow-operator` command: run the operator, print CRDs, print the version."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlflow_operator import __version__

# Each command imports what it needs when it runs: `version` and `crds` need neither kopf nor
# the settings. (The serving runtime is its own program: serving/, `mlflow-operator-serve`.)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Kubernetes operator that deploys MLflow models chosen by the MLflow Model Registry."""


@main.command()
def version() -> None:
    """Print the operator's version."""
    click.echo(__version__)


@main.command("image-contents")
@click.option(
    "--lock",
    "locks",
    multiple=True,
    required=True,
    metavar="NAME=FILE",
    help="An image's name (serving-cpu, serving-gpu) and the pip lock file it installs.",
)
@click.option(
    "--python",
    default=None,
    help="The images' Python version (default: the one running this command, which in the "
    "operator image's build is the serving images' too: they share the base image).",
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File."
)
def image_contents(locks: tuple[str, ...], python: str | None, output: Path | None) -> None:
    """Write what serving images have installed (setting serving_image_contents), for the
    pre-flight check of new model versions."""
    import json

    from mlflow_operator.image_contents import contents_of_locks

    named: dict[str, Path] = {}
    for lock in locks:
        name, sep, file = lock.partition("=")
        if not sep or not name or not file:
            raise click.BadParameter(f"{lock!r}: want NAME=FILE", param_hint="--lock")
        named[name] = Path(file)
    text = json.dumps(contents_of_locks(named, python), indent=1, sort_keys=True) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)


@main.command()
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one file per CRD into this directory instead of printing them all.",
)
def crds(output_dir: Path | None) -> None:
    """Print the CustomResourceDefinitions generated from the API models."""
    from mlflow_operator.crds import KINDS, crd_filename, render_crd

    if output_dir is None:
        click.echo("---\n".join(render_crd(kind) for kind in KINDS), nl=False)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        (output_dir / crd_filename(kind)).write_text(render_crd(kind))


@main.command("model-cache")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the cached model files go (the node's disk: a hostPath of the DaemonSet).",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--port", type=int, default=8090, show_default=True, help="Port to listen on.")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Bytes the cache may hold, least recently used versions evicted beyond; 0: no bound "
    "(each model's keepVersions still applies).",
)
def model_cache(directory: Path, host: str, port: int, max_bytes: int) -> None:
    """Run the node-local model cache: a caching proxy of MLflow tracking servers."""
    from mlflow_operator.model_cache.server import run as run_cache  # aiohttp loads only here

    run_cache(directory, host=host, port=port, max_bytes=max_bytes)


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="MLFLOW_OPERATOR_CONFIG",
    help="YAML file of settings (see docs/configuration.md); env MLFLOW_OPERATOR_CONFIG.",
)
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch this namespace; repeat for several. Default: all namespaces "
    "(env MLFLOW_OPERATOR_NAMESPACES, comma-separated).",
)
@click.option(
    "--all-namespaces",
    "-A",
    is_flag=True,
    help="Watch all namespaces, even if the config names some.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Port of the Prometheus /metrics endpoint; 0 turns it off (default 8080).",
)
@click.option(
    "--health-port",
    type=int,
    default=None,
    help="Port of /healthz (liveness) and /readyz (readiness) (default 8081).",
)
@click.option(
    "--webhook-port",
    type=int,
    default=None,
    help="Port of the MLflow webhook receiver (default 8443).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Format of log lines (default text).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Least severe level logged (default info).",
)
@click.option(
    "--max-workers",
    type=int,
    default=None,
    help="Threads for blocking calls such as the MLflow client (default 8).",
)
@click.option(
    "--prometheus-url",
    default=None,
    help="Prometheus to read canary analysis from instead of the serving pods' /metrics "
    "(default: none, the pods').",
)
def run(  # noqa: PLR0917  (click passes every option as an argument)
    config_file: Path | None,
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    metrics_port: int | None,
    health_port: int | None,
    webhook_port: int | None,
    log_format: str | None,
    log_level: str | None,
    max_workers: int | None,
    prometheus_url: str | None,
) -> None:
    """Run the operator against the cluster of the current kubeconfig or service account."""
    from mlflow_operator.config import ConfigError, load_config

    try:
        config = load_config(
            config_file,
            namespaces=[] if all_namespaces else (list(namespaces) or None),
            metrics_port=metrics_port,
            health_port=health_port,
            webhook_port=webhook_port,
            log_format=log_format,
            log_level=log_level,
            max_workers=max_workers,
            prometheus_url=prometheus_url,
        )
    except ConfigError as exc:
        click.echo(f"mlflow-operator: {exc}", err=True)
        sys.exit(2)
    from mlflow_operator.kube.preflight import StartupError
    from mlflow_operator.runner import run_operator  # kopf and the handlers load only here

    try:
        run_operator(config)
    except StartupError as exc:
        click.echo(f"mlflow-operator: {exc}", err=True)
        sys.exit(1)
