"""The project's container images, built locally with buildah and cached by their inputs.

Each image is keyed by a hash of its inputs (Containerfile or Dockerfile, the files it copies,
its base image's key, the build arguments, the buildah version) and saved as a docker-archive tar
in ``<cache_root>/images/<name>/<key>/image.tar``, tagged ``localhost/mlflow-operator/<name>:<key>``
(the pause image: the fixed tag containerd's sandbox_image names). A warm cache runs no build;
a cold one builds once, under a lock, and writes the archive atomically. The archives are what a
real test node's containerd imports: no registry is involved anywhere.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mlflow_operator.config import MLFLOW_VERSION
from tests.cluster.build import KUBERNETES_VERSION
from tests.images import base, buildah
from tests.images.buildah import ImageBuildError, require
from tests.images.dockerfile import context_files
from tests.support.cache import cache_root, content_key
from tests.support.gobuild import ensure_cached

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DOCKERFILE = ROOT / "Dockerfile"
REPOSITORY = "localhost/mlflow-operator"
PAUSE_IMAGE = f"{REPOSITORY}/pause:3.10"
BASE = "debian-python"
KEEP_VERSIONS = 2  # builds of each image kept in the cache: the current one and the one before
IMAGE_NAMES: tuple[str, ...] = (
    "pause",
    "operator",
    "serving-cpu",
    "mlflow-server",
    "postgres",
    "minio",
)
DOCKERFILE_TARGETS = ("operator", "serving-cpu", "mlflow-server")
PAUSE_CFLAGS = ("-Os", "-Wall", "-Werror", "-static", f"-DVERSION={KUBERNETES_VERSION}")
# pip in the Debian base trusts this file (Debian's pip wheel uses the system CA bundle); the
# host's copy also holds this machine's egress proxy CA. Mounted over the image's own file in
# RUN steps only, so neither it nor a pip config ends up in a layer.
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class BuiltImage:
    name: str  # e.g. "localhost/mlflow-operator/serving-cpu:1a2b3c4d5e6f7a8b"
    archive: Path  # docker-archive tar


@dataclass(frozen=True)
class _Recipe:
    containerfile: Path
    inputs: tuple[Path, ...] = ()  # files copied or compiled into the image
    extra: str = ""  # anything else the image is built from
    target: str | None = None  # a target of the repository's Dockerfile, built in the repository
    prepare: Callable[[Path], None] | None = None  # fills the (otherwise empty) build context
    base_arg: str | None = "BASE_IMAGE"  # the build argument that names the Debian base
    tag: str | None = None  # a fixed tag instead of the key
    version: str = ""  # a version the tag starts with, as the published tags carry it


def _recipe(name: str) -> _Recipe:
    if name in DOCKERFILE_TARGETS:
        files = tuple(context_files(DOCKERFILE, name))
        # the operator reads the MLflow version of an MLflowServer from its image's tag
        version = MLFLOW_VERSION if name == "mlflow-server" else ""
        return _Recipe(DOCKERFILE, files, target=name, base_arg="PYTHON_IMAGE", version=version)
    if name == "postgres":
        return _Recipe(HERE / "postgres.Containerfile")
    if name == "minio":
        from tests.mlflowstack.minio import binary_path  # late: the module loads boto3

        return _Recipe(HERE / "minio.Containerfile", extra=str(binary_path()), prepare=_copy_minio)
    if name == "pause":
        return _Recipe(
            HERE / "pause.Containerfile",
            (_pause_source(),),
            extra=f"{_compiler_version()} {PAUSE_CFLAGS}",
            prepare=_compile_pause,
            base_arg=None,
            tag=PAUSE_IMAGE,
        )
    raise ImageBuildError(f"unknown image {name!r}: choose from {', '.join(IMAGE_NAMES)}")


def _planned(name: str) -> BuiltImage:
    """The image's name and archive for the inputs as they are now; builds nothing."""
    if name == BASE:
        key = content_key([base.APT_CLEAN], extra=f"{base.key_text()}\n{buildah.version()}")
        fixed = None
    else:
        recipe = _recipe(name)
        files = [recipe.containerfile, *recipe.inputs]
        where = [
            str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
            for path in files
        ]
        base_name = _planned(BASE).name if recipe.base_arg else ""
        versioned = [recipe.version] if recipe.version else []  # the tag is part of the archive
        extra = "\n".join([name, *versioned, buildah.version(), base_name, recipe.extra, *where])
        key = content_key(files, extra=extra)
        fixed = recipe.tag
    archive = cache_root() / "images" / name / key / "image.tar"
    return BuiltImage(fixed or _keyed_name(name, key), archive)


def _keyed_name(name: str, key: str) -> str:
    version = _recipe(name).version if name != BASE else ""
    return f"{REPOSITORY}/{name}:{version}-{key}" if version else f"{REPOSITORY}/{name}:{key}"


def image_names(names: Iterable[str] = IMAGE_NAMES) -> dict[str, str]:
    """name -> full image name (with its tag) for the current inputs, without building."""
    return {name: _planned(name).name for name in names}


def ensure_images(names: Iterable[str] = IMAGE_NAMES, quiet: bool = False) -> dict[str, BuiltImage]:
    """The images, built first where the cache has none for their current inputs."""
    return {name: _ensure(name, quiet) for name in names}


def _ensure(name: str, quiet: bool) -> BuiltImage:
    image = _planned(name)

    def build(archive: Path) -> None:
        if not quiet:
            print(f"building image {image.name} -> {archive}", file=sys.stderr)
        started = time.monotonic()
        workdir = Path(tempfile.mkdtemp(prefix=".build-", dir=archive.parent.parent))
        try:
            if name == BASE:
                base.build(image.name, workdir, quiet)
            else:
                _bud(name, image.name, workdir, quiet)
            buildah.save(image.name, archive, quiet=quiet)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if not quiet:
            print(f"built {name} in {time.monotonic() - started:.0f}s", file=sys.stderr)

    ensure_cached(image.archive, build)
    _prune_older(name, image)
    return image


def _prune_older(name: str, current: BuiltImage) -> None:
    """Remove all but the newest KEEP_VERSIONS builds of name: every operator edit makes a new
    serving-cpu and operator image (2 GB of archives), and the disk is not endless. The one
    before the current stays for a session of another checkout that may still import it."""
    keys = sorted(
        (
            d
            for d in current.archive.parent.parent.iterdir()
            if d.is_dir() and (d / "image.tar").exists()
        ),
        key=lambda d: (d / "image.tar").stat().st_mtime,
        reverse=True,
    )
    for stale in [k for k in keys if k != current.archive.parent][KEEP_VERSIONS - 1 :]:
        stale_name = _keyed_name(name, stale.name)
        if stale_name != current.name:  # a fixed tag (pause) names the current build
            buildah.remove(stale_name)
        shutil.rmtree(stale, ignore_errors=True)
        stale.with_suffix(".lock").unlink(missing_ok=True)


def _bud(name: str, tag: str, workdir: Path, quiet: bool) -> None:
    recipe = _recipe(name)
    build_args = {}
    if recipe.base_arg:
        debian = _ensure(BASE, quiet)
        buildah.load(debian.archive, debian.name, quiet=quiet)
        build_args[recipe.base_arg] = debian.name
    if recipe.prepare:
        recipe.prepare(workdir)
    buildah.bud(
        recipe.containerfile,
        ROOT if recipe.target else workdir,
        tag,
        target=recipe.target,
        build_args=build_args,
        volumes=[f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if recipe.target else [],
        quiet=quiet,
    )


def _copy_minio(context: Path) -> None:
    from tests.mlflowstack.minio import build

    try:
        binary = build()
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        raise ImageBuildError(
            f"building MinIO failed ({error}): run `make env` (it needs Go and the module proxy)"
        ) from error
    shutil.copy2(binary, context / "minio")


def _pause_source() -> Path:
    """pause.c of the Kubernetes release the test cluster runs, from the Go module cache."""
    module = f"k8s.io/kubernetes@{KUBERNETES_VERSION}"
    go = require("go", hint="install Go and put it on PATH")
    cache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    source = Path(cache.stdout.strip()) / module / "build/pause/linux/pause.c"
    if not source.exists():
        # outside any module (cwd /): go.mod and go.sum of tests/cluster stay untouched
        download = subprocess.run([go, "mod", "download", module], cwd="/", check=False)
        if download.returncode != 0 or not source.exists():
            raise ImageBuildError(f"could not download {module}: is the Go module proxy reachable?")
    return source


def _compiler_version() -> str:
    argv = [require("gcc"), "--version"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()[0]


def _compile_pause(context: Path) -> None:
    argv = [require("gcc"), *PAUSE_CFLAGS, "-o", str(context / "pause"), str(_pause_source())]
    if subprocess.run(argv, check=False).returncode != 0:
        raise ImageBuildError(
            "compiling pause.c failed: run `make env` (it installs gcc, libc6-dev)"
        )
