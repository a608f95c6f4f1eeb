"""`mlflow-operator-serve-env`: a version's Python environment (envManager uv), built once.

`mlflow models serve --env-manager uv` installs the model's requirements at every pod start:
every start needs the package index and the install's time, and a requirement that cannot be
installed shows only as a crash-looping pod. Here the environment is built once per model
version and serving image, by the operator's Job (`mlflow-operator-serve-env build`), and kept
in MLflow as the artifact of a run of the ModelDeployment's own experiment; the serving pods
(`mlflow-operator-serve-mlflow`, `fetch` below) download and unpack it, and start with every
package index switched off.

The whole trick is where MLflow looks: `_get_or_create_virtualenv` uses
`$MLFLOW_ENV_ROOT/<name>` as it is when that directory exists, `<name>` being MLflow's own
hash of the model's python_env.yaml and requirements. The Job builds exactly that directory and
the pods unpack it at exactly that path, so MLflow finds it and installs nothing.

The build follows MLflow's `_create_virtualenv` with two differences:
- the interpreter is the serving image's own, not python_env.yaml's patch version, which uv
  would download (the pods and usually the Job have no internet, and the image has one Python).
  Patch versions of one minor share their ABI, so only major.minor must match.
- the venv is relocatable (`uv venv --relocatable`: activate scripts and entry points find
  their directory at run time), so MLFLOW_ENV_ROOT may differ between the Job and the pods.
Models logged with a uv.lock artifact, which MLflow restores with `uv sync`, are installed from
their requirements like any other: the lock is ignored.

An environment is found by the tag `mlflowops.dev/environment`: the first 32 hex digits of the
SHA-256 of the image and MLflow's name of the environment. The run is FINISHED only once the
archive is uploaded, so a FINISHED run with the tag is a complete environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ENVIRONMENT_TAG = "mlflowops.dev/environment"
ENVIRONMENT_NAME_TAG = "mlflowops.dev/environment-name"
IMAGE_TAG = "mlflowops.dev/image"
MODEL_URI_TAG = "mlflowops.dev/model-uri"
ARTIFACT_PATH = "environment"
# what the operator sets on the Job and the pods (core/modeldeployment/environment.py)
EXPERIMENT_VAR = "MLFLOW_OPERATOR_ENV_EXPERIMENT"
IMAGE_VAR = "MLFLOW_OPERATOR_SERVING_IMAGE"
ENV_ROOT_VAR = "MLFLOW_ENV_ROOT"
# Kubernetes shows this file's text as the container's termination message; a variable so
# that tests (and a run outside a pod) can point it elsewhere
TERMINATION_LOG_VAR = "MLFLOW_OPERATOR_TERMINATION_LOG"
TERMINATION_LOG = "/dev/termination-log"
# nothing in a serving pod may reach a package index once the environment is there. uv 0.13
# reads no UV_NO_INDEX (only the --no-index flag): UV_OFFLINE is what switches uv off.
OFFLINE = {"UV_OFFLINE": "1", "UV_NO_INDEX": "1", "PIP_NO_INDEX": "1"}
# half gzip -6's time for 10% more bytes: the build is once, but a large (CUDA) environment
# takes minutes to compress at -6
COMPRESS_LEVEL = 3
# the kubelet keeps 4096 bytes of a termination message; a reason is one line well under it
_MAX_REASON = 1500
_STDERR_LINES = 3


class ModelEnvironmentError(Exception):
    """Why the environment could not be built or installed, in one line for its reader."""


class UnsafeArchiveError(ModelEnvironmentError):
    """An archive member that would land outside the environment or write through a link."""


@dataclass(frozen=True)
class ModelEnvironment:
    """A model's python_env.yaml, and MLflow's name for the virtualenv made from it."""

    name: str
    python: str
    build_dependencies: tuple[str, ...]
    dependencies: tuple[str, ...]


def model_environment(local_dir: Path) -> ModelEnvironment:
    """The environment MLflow would create for the model in `local_dir` (env_id None: the
    operator's pods do not pass --install-mlflow)."""
    from mlflow.utils import virtualenv

    mlflow_virtualenv: Any = virtualenv  # untyped in MLflow
    python_env = mlflow_virtualenv._get_python_env(local_dir)
    return ModelEnvironment(
        name=str(mlflow_virtualenv._get_virtualenv_name(python_env, local_dir, None)),
        python=str(python_env.python),
        build_dependencies=tuple(map(str, python_env.build_dependencies or ())),
        dependencies=tuple(map(str, python_env.dependencies or ())),
    )


def environment_key(image: str, env_name: str) -> str:
    """The tag value that finds an environment: one per serving image and MLflow env name."""
    return hashlib.sha256(f"{image}\n{env_name}".encode()).hexdigest()[:32]


def check_python(model_python: str, running: Sequence[int] = tuple(sys.version_info[:3])) -> None:
    """Refuse a model whose Python's major.minor is not the serving image's."""
    have = ".".join(map(str, running[:3]))
    match = re.match(r"^\s*(\d+)\.(\d+)", model_python)
    if match is None:
        raise ModelEnvironmentError(
            f"the model's Python version {model_python!r} (python_env.yaml) is not a version; "
            f"the serving image has {have}"
        )
    wanted = (int(match[1]), int(match[2]))
    if wanted != tuple(running[:2]):
        raise ModelEnvironmentError(
            f"the model needs Python {wanted[0]}.{wanted[1]} (python_env.yaml: "
            f"{model_python.strip()}), the serving image has {have}"
        )


def base_interpreter() -> str:
    """The image's own interpreter (/usr/local/bin/python3.11), not the venv's the image
    runs (/opt/venv/bin/python): the environment's bin/python links to it, and owes nothing to
    a venv whose packages it does not see."""
    return getattr(sys, "_base_executable", "") or sys.executable


def uv_binary() -> str:
    """uv as the image installs it: on PATH, else beside this interpreter (pip's bin/)."""
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not os.access(found, os.X_OK):
        raise ModelEnvironmentError("uv is not installed in the serving image (not on PATH)")
    return found


def env_root() -> Path:
    root = os.environ.get(ENV_ROOT_VAR, "")
    if not root:
        raise ModelEnvironmentError(
            f"{ENV_ROOT_VAR} is not set: it is where MLflow looks for the environment"
        )
    return Path(root)


# ---------------------------------------------------------------------------- building


def create_environment(local_dir: Path, env: ModelEnvironment, env_dir: Path) -> None:
    """Build `env_dir` as MLflow's `_create_virtualenv` would, with the image's interpreter;
    nothing is left of it when it fails."""
    uv = uv_binary()
    # a half-built directory of an earlier try of this pod would be taken as it is
    shutil.rmtree(env_dir, ignore_errors=True)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run(
            [uv, "venv", "--quiet", "--relocatable", "--python", base_interpreter(), str(env_dir)],
            what="creating the virtualenv",
        )
        for deps in filter(None, (env.build_dependencies, env.dependencies)):
            _install(uv, env_dir, local_dir, deps)
    except BaseException:
        shutil.rmtree(env_dir, ignore_errors=True)
        raise


def _install(uv: str, env_dir: Path, local_dir: Path, deps: Sequence[str]) -> None:
    # MLflow's way: a requirements file beside links to the model's files, so that its
    # `-r requirements.txt` resolves, without writing into the model's (maybe read-only) dir
    with tempfile.TemporaryDirectory(prefix="mlflow-requirements-") as tmp:
        for item in os.listdir(local_dir):
            os.symlink(local_dir / item, Path(tmp) / item)
        requirements = f"requirements.{uuid.uuid4().hex}.txt"
        (Path(tmp) / requirements).write_text("\n".join(deps))
        python = str(env_dir / "bin" / "python")
        _run(
            [uv, "pip", "install", *_no_index(), "--python", python, "-r", requirements],
            what="installing the model's requirements",
            cwd=tmp,
            env={**os.environ, "PIP_NO_INPUT": "1"},
        )


def _no_index() -> list[str]:
    # uv 0.13 has --no-index but reads no UV_NO_INDEX: without this, a Job told to use its
    # find-links alone would still ask PyPI (and fail where PyPI is out of reach)
    return ["--no-index"] if os.environ.get("UV_NO_INDEX", "").lower() in _TRUE else []


_TRUE = ("1", "true", "yes", "on")


# what `mlflow models serve` runs in the environment: `uvicorn mlflow.pyfunc.scoring_server.
# app:app`, whose import loads the model. Without uvicorn in the environment, the activated
# PATH would find the image's own and serve from the wrong interpreter.
_VERIFY = (
    "import sys, uvicorn, mlflow.pyfunc, mlflow.pyfunc.scoring_server as server; "
    "server.init(mlflow.pyfunc.load_model(sys.argv[1]))"
)


def verify(env_dir: Path, local_dir: Path) -> None:
    """Load the model in the environment as the scoring server does; its imports also leave
    their bytecode in the environment, which the pods then need not compile."""
    _run(
        [str(env_dir / "bin" / "python"), "-c", _VERIFY, str(local_dir)],
        what="loading the model in the built environment",
    )
    if not (env_dir / "bin" / "uvicorn").exists():
        raise ModelEnvironmentError(
            "the built environment has no bin/uvicorn, which `mlflow models serve` runs"
        )


def _run(
    cmd: list[str], *, what: str, cwd: str | None = None, env: dict[str, str] | None = None
) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelEnvironmentError(f"{what} failed: {tail(result.stderr or result.stdout)}")


def tail(output: str, lines: int = _STDERR_LINES) -> str:
    """Where a program's output says what went wrong: uv's error report (`error:`, or a cross in
    older uv) from its start, else the last lines (a Python traceback's exception)."""
    kept = [line.strip() for line in output.splitlines() if line.strip()]
    start = next(
        (i for i, line in enumerate(kept) if line.startswith(("error:", "\u00d7"))),
        max(0, len(kept) - lines),
    )
    return " ".join(kept[start:]) or "(no output)"


# ---------------------------------------------------------------------------- the archive


def pack(env_dir: Path, archive: Path) -> int:
    """`env_dir` as `<name>/...` in a gzipped tar, symlinks kept (bin/python points at the
    image's interpreter); the archive's size."""
    with tarfile.open(archive, "w:gz", compresslevel=COMPRESS_LEVEL) as tar:
        tar.add(env_dir, arcname=env_dir.name)
    return archive.stat().st_size


def _inside(path: str, env_name: str) -> bool:
    return path == env_name or path.startswith(env_name + "/")


def check_members(members: Iterable[tarfile.TarInfo], env_name: str) -> list[tarfile.TarInfo]:
    """The members, if each stays inside `<env_name>/` and none writes through a link.

    tarfile's "data" filter would refuse the venv's own `bin/python -> /usr/...`: absolute
    link targets are allowed here, since a link is only read through. What is refused is any
    write that could land elsewhere: a name outside the environment, a member under a link (or
    under a file), a name given twice (a link, then a file through it), a hard link to other
    than an earlier file, devices and fifos; set-id bits are dropped.
    """
    seen: dict[str, tarfile.TarInfo] = {}
    checked: list[tarfile.TarInfo] = []
    for member in members:
        path = PurePosixPath(member.name)
        name = str(path)
        if path.is_absolute() or ".." in path.parts or not _inside(name, env_name):
            raise UnsafeArchiveError(f"archive member {member.name!r} is outside {env_name}/")
        if name in seen:
            raise UnsafeArchiveError(f"archive member {member.name!r} is in the archive twice")
        for parent in path.parents:
            above = seen.get(str(parent))
            if above is not None and not above.isdir():
                raise UnsafeArchiveError(f"archive member {member.name!r} is under a link or file")
        if member.issym():
            target = member.linkname
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if not target or (not target.startswith("/") and not _inside(resolved, env_name)):
                raise UnsafeArchiveError(
                    f"archive member {member.name!r} links to {target!r}, outside {env_name}/"
                )
        elif member.islnk():
            linked = seen.get(posixpath.normpath(member.linkname))
            if linked is None or not linked.isreg():
                raise UnsafeArchiveError(
                    f"archive member {member.name!r} is a hard link to {member.linkname!r}, "
                    "not to a file before it"
                )
        elif not (member.isreg() or member.isdir()):
            raise UnsafeArchiveError(f"archive member {member.name!r} is not a file, dir or link")
        member.mode &= 0o755
        seen[name] = member
        checked.append(member)
    return checked


# Python < 3.11.4 (Debian bookworm's 3.11.2) has no extraction filters
_TAR_FILTERS = hasattr(tarfile, "fully_trusted_filter")


def extract(archive: Path, destination: Path, env_name: str) -> Path:
    """Unpack `archive` into the new directory `destination`; `destination/<env_name>`."""
    destination.mkdir(parents=True, exist_ok=False)
    # "r:*": an object store keeps the archive with `Content-Encoding: gzip` (MLflow's S3
    # upload sets it from the name), so a download from it (presigned URL) may arrive as the
    # plain tar its HTTP client decoded
    with tarfile.open(archive, "r:*") as tar:
        members = check_members(tar.getmembers(), env_name)
        # checked above: "fully_trusted", since without a filter Python 3.12 warns and 3.14
        # applies "data"
        if _TAR_FILTERS:
            tar.extractall(destination, members=members, filter="fully_trusted")  # noqa: S202
        else:
            tar.extractall(destination, members=members)  # noqa: S202
    env_dir = destination / env_name
    if not (env_dir / "bin" / "python").is_symlink():
        raise ModelEnvironmentError(f"the archive of {env_name} holds no virtualenv (bin/python)")
    return env_dir


# ---------------------------------------------------------------------------- MLflow


def _client() -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if missing. By name first: the Job's MLflow user may
    only have EDIT on an experiment the operator created."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return str(client.create_experiment(name))
        except MlflowException:  # created meanwhile by another Job
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise ModelEnvironmentError(f"experiment {name!r} is deleted: restore it or purge it")
    return str(found.experiment_id)


def find_built_run(client: MlflowClient, experiment_id: str, key: str) -> str | None:
    """The id of the latest FINISHED run that holds the environment `key`."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ENVIRONMENT_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return str(runs[0].info.run_id) if runs else None


def _upload(
    client: MlflowClient,
    experiment_id: str,
    archive: Path,
    *,
    key: str,
    env: ModelEnvironment,
    image: str,
    model_uri: str,
    seconds: float,
) -> str:
    tags = {
        ENVIRONMENT_TAG: key,
        ENVIRONMENT_NAME_TAG: env.name,
        IMAGE_TAG: image,
        MODEL_URI_TAG: model_uri,
    }
    run = client.create_run(experiment_id, run_name=f"environment-{key[:12]}", tags=tags)
    run_id = str(run.info.run_id)
    try:
        client.log_param(run_id, "python", platform.python_version())
        client.log_metric(run_id, "archive_bytes", archive.stat().st_size)
        client.log_metric(run_id, "build_seconds", round(seconds, 1))
        client.log_artifact(run_id, str(archive), ARTIFACT_PATH)
    except BaseException:
        # the upload's error is the one to report
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def build_once(model_uri: str, *, experiment: str, image: str) -> str:
    """Build, check and upload the environment of `model_uri` for `image`, unless a run of
    `experiment` holds it already; the line to print."""
    import mlflow.artifacts

    phases: dict[str, float] = {}
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        phases[name] = now - clock
        clock = now

    root = env_root()
    client = _client()
    experiment_id = ensure_experiment(client, experiment)
    with tempfile.TemporaryDirectory(prefix="mlflow-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        env = model_environment(local)
        key = environment_key(image, env.name)
        built = find_built_run(client, experiment_id, key)
        if built is not None:
            return f"environment {key} for {model_uri} already built: run {built}"
        check_python(env.python)
        phase("download")
        env_dir = root / env.name
        create_environment(local, env, env_dir)
        phase("install")
        verify(env_dir, local)
        phase("load")
        archive = Path(tmp) / f"{env.name}.tar.gz"
        size = pack(env_dir, archive)
        phase("pack")
        run_id = _upload(
            client, experiment_id, archive,
            key=key, env=env, image=image, model_uri=model_uri, seconds=sum(phases.values()),
        )  # fmt: skip
        phase("upload")
    each = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items())
    return (
        f"environment {key} for {model_uri} built: run {run_id}, {_mb(size)} archive, "
        f"{sum(phases.values()):.1f}s ({each})"
    )


def install_built(
    local_dir: str | Path, *, experiment: str, image: str, model_uri: str = ""
) -> str:
    """Unpack the environment the Job built for the model in `local_dir` where MLflow will
    look for it, and switch every package index off; the line to print."""
    started = time.monotonic()
    root = env_root()
    local = Path(local_dir)
    uri = model_uri or str(local)
    env = model_environment(local)
    key = environment_key(image, env.name)
    target = root / env.name
    if not target.is_dir():  # there already after a restart of the container (/tmp is kept)
        client = _client()
        found = client.get_experiment_by_name(experiment)
        run_id = find_built_run(client, found.experiment_id, key) if found else None
        if run_id is None:
            raise ModelEnvironmentError(
                f"no environment built for {uri} with image {image} (experiment {experiment}, "
                f"key {key}): the operator builds it with a Job before any pod starts"
            )
        size = _download_into(client, run_id, env.name, root, target)
        line = f"environment {key} for {uri}: downloaded {_mb(size)} from run {run_id}"
    else:
        line = f"environment {key} for {uri}: already in {target}"
    os.environ.update(OFFLINE)
    return f"{line}, {time.monotonic() - started:.1f}s"


def _download_into(client: MlflowClient, run_id: str, name: str, root: Path, target: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    # unpacked beside the target and renamed into place: MLflow takes whatever directory is
    # there, so a half-unpacked one must never be
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        archive = Path(
            client.download_artifacts(run_id, f"{ARTIFACT_PATH}/{name}.tar.gz", str(staging))
        )
        size = archive.stat().st_size
        unpacked = extract(archive, staging / "unpacked", name)
        try:
            unpacked.rename(target)
        except OSError:
            if not target.is_dir():  # else another process of the pod was first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return size


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


# ---------------------------------------------------------------------------- failing


_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_SECRET_VARS = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY")


def redact(text: str) -> str:
    """`text` without the credentials a URL or an error message might carry."""
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    for var in _SECRET_VARS:
        secret = os.environ.get(var, "")
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def reason(error: BaseException) -> str:
    if isinstance(error, ModelEnvironmentError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def fail(message: str) -> NoReturn:
    """Say why in one line, to stderr and as the container's termination message; exit 1."""
    line = " ".join(redact(message).split())[:_MAX_REASON]
    path = os.environ.get(TERMINATION_LOG_VAR, TERMINATION_LOG)
    # the kubelet creates the file; outside a pod there is none and none is made
    if os.path.isfile(path):
        with contextlib.suppress(OSError):
            Path(path).write_text(line + "\n")
    click.echo(line, err=True)
    raise SystemExit(1)


def fetch(local_dir: str | Path, *, model_uri: str) -> None:
    """The serving pod's side (mlflow_cli.main): the built environment in place, or exit 1."""
    experiment = os.environ.get(EXPERIMENT_VAR, "")
    image = os.environ.get(IMAGE_VAR, "")
    if not experiment or not image:
        fail(
            f"no environment built for {model_uri}: {EXPERIMENT_VAR} and {IMAGE_VAR} are not "
            "set (the operator sets them on the pods of serving.envManager uv)"
        )
    try:
        line = install_built(local_dir, experiment=experiment, image=image, model_uri=model_uri)
    except Exception as error:  # noqa: BLE001 - any failure is the pod's one-line reason
        fail(reason(error))
    click.echo(line)


# ---------------------------------------------------------------------------- CLI


@click.group()
def main() -> None:
    """Model versions' Python environments (serving.envManager uv), built once, kept in MLflow."""


@main.command()
@click.option("--model-uri", required=True, help="The version: models:/<name>/<version>.")
@click.option("--experiment", required=True, help="The experiment that keeps the environments.")
@click.option("--image", required=True, help="The serving image the environment is built for.")
def build(model_uri: str, experiment: str, image: str) -> None:
    """Build the version's environment, check that the model loads in it, and upload it as a
    run of EXPERIMENT, unless it is there already. MLflow: MLFLOW_TRACKING_*; the package
    index: UV_* and PIP_* variables."""
    try:
        line = build_once(model_uri, experiment=experiment, image=image)
    except Exception as error:  # noqa: BLE001 - any failure is the Job's one-line reason
        fail(f"the environment of {model_uri}: {reason(error)}")
    click.echo(line)
