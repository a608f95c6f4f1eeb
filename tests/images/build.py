"""The project's container images, built locally with buildah and cached by their inputs.

The Dockerfile's targets (operator, serving-cpu, mlflow-server, minio) are built by the code
`make images` runs (deploy/image/publish.py), with buildah and what this machine needs: a
Debian stand-in for the python and golang base images, runc, the host's network and CA bundle.
Each image is keyed by a hash of its inputs (Containerfile or Dockerfile, the files it copies,
its base image's key, the build arguments, the buildah version) and saved as a docker-archive tar
in ``<cache_root>/images/<name>/<key>/image.tar``, tagged ``localhost/mlflow-operator/<name>:<key>``
(the pause image: the fixed tag containerd's sandbox_image names). A warm cache runs no build;
a cold one builds once, under a lock, and writes the archive atomically. The archives are what a
real test node's containerd imports: no registry is involved anywhere.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from mlflow_operator.config import MLFLOW_VERSION
from tests.cluster.build import KUBERNETES_VERSION
from tests.images import base, buildah, gobase
from tests.images.buildah import ImageBuildError, require
from tests.images.dockerfile import context_files
from tests.support.cache import cache_root, content_key
from tests.support.gobuild import ensure_cached

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DOCKERFILE = ROOT / "Dockerfile"
REPOSITORY = "localhost/mlflow-operator"
PAUSE_IMAGE = f"{REPOSITORY}/pause:3.10"
BASE = "debian-python"  # stands in for the Dockerfile's PYTHON_IMAGE
GO_BASE = "debian-go"  # stands in for its GO_IMAGE
KEEP_VERSIONS = 2  # builds of each image kept in the cache: the current one and the one before
IMAGE_NAMES: tuple[str, ...] = (
    "pause",
    "operator",
    "serving-cpu",
    "mlflow-server",
    "postgres",
    "minio",
)
DOCKERFILE_TARGETS = ("operator", "serving-cpu", "mlflow-server", "minio")
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
    # build argument -> the stand-in image it names (BASE or GO_BASE)
    bases: Mapping[str, str] = field(default_factory=lambda: {"BASE_IMAGE": BASE})
    tag: str | None = None  # a fixed tag instead of the key


def _recipe(name: str) -> _Recipe:
    if name in DOCKERFILE_TARGETS:
        files = tuple(context_files(DOCKERFILE, name))
        bases = {"PYTHON_IMAGE": BASE}
        if name == "minio":
            bases["GO_IMAGE"] = GO_BASE
        return _Recipe(DOCKERFILE, files, target=name, bases=bases)
    if name == "postgres":
        return _Recipe(HERE / "postgres.Containerfile")
    if name == "pause":
        return _Recipe(
            HERE / "pause.Containerfile",
            (_pause_source(),),
            extra=f"{_compiler_version()} {PAUSE_CFLAGS}",
            prepare=_compile_pause,
            bases={},
            tag=PAUSE_IMAGE,
        )
    raise ImageBuildError(f"unknown image {name!r}: choose from {', '.join(IMAGE_NAMES)}")


def publish_module() -> ModuleType:
    """deploy/image/publish.py, the code `make images` runs (not a package: it needs none)."""
    name = "mlflow_operator_publish"
    path = ROOT / "deploy" / "image" / "publish.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImageBuildError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _planned(name: str) -> BuiltImage:
    """The image's name and archive for the inputs as they are now; builds nothing."""
    if name in (BASE, GO_BASE):
        text = base.key_text() if name == BASE else f"{_planned(BASE).name}\n{gobase.key_text()}"
        key = content_key([base.APT_CLEAN], extra=f"{text}\n{buildah.version()}")
        fixed = None
    else:
        recipe = _recipe(name)
        files = [recipe.containerfile, *recipe.inputs]
        where = [
            str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
            for path in files
        ]
        bases = [f"{arg}={_planned(image).name}" for arg, image in sorted(recipe.bases.items())]
        extra = "\n".join([name, buildah.version(), *bases, recipe.extra, *where])
        key = content_key(files, extra=extra)
        fixed = recipe.tag
    archive = cache_root() / "images" / name / key / "image.tar"
    return BuiltImage(fixed or _keyed_name(name, key), archive)


def _keyed_name(name: str, key: str) -> str:
    """The name of one build of an image: for a Dockerfile target the name `make images
    REGISTRY=localhost/mlflow-operator TAG=<key>` gives it (the tracking server's tag starts
    with its MLflow version, as the published one does), <REPOSITORY>/<name>:<key> else."""
    if name in DOCKERFILE_TARGETS:
        (image,) = publish_module().select([name])
        return str(image.reference(REPOSITORY, key))
    return f"{REPOSITORY}/{name}:{key}"


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
            elif name == GO_BASE:
                debian = _ensure(BASE, quiet)
                buildah.load(debian.archive, debian.name, quiet=quiet)
                gobase.build(image.name, debian.name, quiet)
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
    for arg, stand_in in recipe.bases.items():
        built = _ensure(stand_in, quiet)
        buildah.load(built.archive, built.name, quiet=quiet)
        build_args[arg] = built.name
    if recipe.target:
        _build_target(recipe.target, tag, build_args)
        return
    if recipe.prepare:
        recipe.prepare(workdir)
    buildah.bud(recipe.containerfile, workdir, tag, build_args=build_args, quiet=quiet)


def _build_target(target: str, name: str, build_args: Mapping[str, str]) -> None:
    """A target of the Dockerfile, built as `make images` builds it, with this machine's flags."""
    publish = publish_module()
    repository, tag = name.rsplit(":", 1)
    if target == "mlflow-server":
        tag = tag.removeprefix(f"{MLFLOW_VERSION}-")
    volumes = [f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    if "GO_IMAGE" in build_args:
        volumes += gobase.cache_volumes()
    flags = [
        "--pull=never",
        f"--runtime={require('runc')}",
        *buildah.RUN_FLAGS,
        *(f"--volume={volume}" for volume in volumes),
        *(f"--build-arg={arg}={value}" for arg, value in build_args.items()),
    ]
    tool = publish.Tool("buildah", require("buildah"), tuple(buildah.storage_flags()))
    request = publish.Request(
        registry=repository.rsplit("/", 1)[0],
        tag=tag,
        images=publish.select([target]),
        build_flags=tuple(flags),
    )
    try:
        (built,) = publish.publish(tool, request)
    except publish.PublishError as error:
        raise ImageBuildError(
            f"{error}: see the output above; a network error means PyPI or deb.debian.org "
            "was unreachable, run again once it is"
        ) from None
    if built != name:
        raise ImageBuildError(f"publish.py named the image {built}, expected {name}")


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
