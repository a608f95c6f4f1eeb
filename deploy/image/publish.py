"""Build the project's images for a registry, push them, and print the helm line that uses them.

    make images REGISTRY=registry.example.com/ml [PUSH=1] [TAG=0.1.0] [IMAGES="operator ..."]
    python3 deploy/image/publish.py --registry registry.example.com/ml [--push] [--tag TAG]
        [--only NAME ...] [--tool docker|podman|buildah] [--build-flag=FLAG ...]
        [--push-flag=FLAG ...] [--dry-run]

Builds every target of the Dockerfile that is an image (operator, serving-cpu, serving-gpu,
mlflow-server, minio) with the first of docker, podman and buildah that works here, names them
<registry>/<name>:<tag> as the operator's defaults and the chart's `imageRegistry` expect, and
with --push pushes them. The test cluster's images are built by this same code (tests/images).
Standard library only: it runs before anything of the project is installed.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
TOOLS = ("docker", "podman", "buildah")
CHART = "charts/mlflow-operator"
RELEASE = NAMESPACE = "mlflow-operator"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REGISTRY = re.compile(r"[a-z0-9]([a-z0-9._:-]*[a-z0-9])?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*")


class PublishError(RuntimeError):
    """What went wrong, in one line that says what to do."""


@dataclass(frozen=True)
class Image:
    target: str  # the Dockerfile's target, and the name `--only` takes
    repository: str  # its name under the registry
    mlflow_tagged: bool = False  # the tag starts with the MLflow version it serves

    def reference(self, registry: str, tag: str) -> str:
        if self.mlflow_tagged:
            tag = f"{mlflow_version()}-{tag}"
        return f"{registry}/{self.repository}:{tag}"


# In build order. The names agree with mlflow_operator.config.project_image (a test checks).
IMAGES = (
    Image("operator", "mlflow-operator"),
    Image("serving-cpu", "serving-cpu"),
    Image("serving-gpu", "serving-gpu"),
    Image("mlflow-server", "mlflow-server", mlflow_tagged=True),
    Image("minio", "minio"),
)


def _version_of(path: Path, name: str) -> str:
    match = re.search(rf'^{name}\s*=\s*"([^"]+)"', path.read_text(), re.M)
    if match is None:
        raise PublishError(f"{name} not found in {path}")
    return match.group(1)


def operator_version() -> str:
    """The package's version (pyproject.toml [project] version): the images' default tag."""
    return _version_of(ROOT / "pyproject.toml", "version")


def mlflow_version() -> str:
    return _version_of(ROOT / "operator" / "mlflow_operator" / "config.py", "MLFLOW_VERSION")


@dataclass(frozen=True)
class Tool:
    """A container build tool, as this script runs it."""

    name: str  # docker, podman or buildah
    program: str  # its path
    global_flags: tuple[str, ...] = ()  # before the subcommand (buildah's --root, ...)

    def build_argv(self, image: Image, reference: str, flags: Sequence[str]) -> list[str]:
        build = ["bud", "--layers"] if self.name == "buildah" else ["build"]
        return [
            self.program,
            *self.global_flags,
            *build,
            f"--file={DOCKERFILE}",
            f"--target={image.target}",
            f"--tag={reference}",
            *flags,
            str(ROOT),
        ]

    def push_argv(self, reference: str, flags: Sequence[str]) -> list[str]:
        return [self.program, *self.global_flags, "push", *flags, reference]


def _probe(name: str) -> list[str]:
    """docker needs its daemon (`docker info`); podman and buildah need nothing running."""
    return ["version"] if name == "buildah" else ["info"]


def _works(program: str, name: str) -> bool:
    try:
        result = subprocess.run(
            [program, *_probe(name)], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def find_tool(wanted: str | None = None, global_flags: Sequence[str] = ()) -> Tool:
    """The first of docker, podman and buildah that is installed and works (or `wanted`)."""
    tried = []
    for name in [wanted] if wanted else TOOLS:
        program = shutil.which(name, path=None)
        if program is None:
            tried.append(f"{name}: not installed")
            continue
        if not _works(program, name):
            tried.append(f"{name}: installed, but `{shlex.join([name, *_probe(name)])}` fails")
            continue
        return Tool(name, program, tuple(global_flags))
    raise PublishError(
        f"no container build tool works here ({'; '.join(tried)}): install docker (with its "
        "daemon running), podman or buildah"
    )


def select(only: Sequence[str]) -> list[Image]:
    names = [name for part in only for name in re.split(r"[,\s]+", part) if name]
    known = {image.target: image for image in IMAGES}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise PublishError(f"unknown image {unknown[0]!r}: choose from {', '.join(known)}")
    return [image for image in IMAGES if not names or image.target in names]


def check_names(registry: str, tag: str) -> None:
    if not _REGISTRY.fullmatch(registry):
        raise PublishError(
            f"REGISTRY {registry!r} is not a registry and path like registry.example.com/ml "
            "(lower case, no tag, no trailing slash)"
        )
    if not _TAG.fullmatch(tag):
        raise PublishError(f"TAG {tag!r} is not a valid image tag")


def helm_line(registry: str, tag: str) -> str:
    """The helm install that runs the operator with these images."""
    line = [
        "helm", "install", RELEASE, CHART, "--namespace", NAMESPACE, "--create-namespace",
        "--wait", "--set", f"imageRegistry={registry}",
    ]  # fmt: skip
    if tag != operator_version():
        line += ["--set", f"imageTag={tag}"]
    return shlex.join(line)


def run(argv: Sequence[str], *, dry_run: bool) -> None:
    print(f"+ {shlex.join(argv)}", file=sys.stderr, flush=True)
    if dry_run:
        return
    # the tool's own output goes to stderr; stdout is the summary
    result = subprocess.run(argv, stdout=sys.stderr, check=False)
    if result.returncode != 0:
        raise PublishError(f"`{shlex.join(argv[:3])} ...` failed (exit {result.returncode})")


@dataclass(frozen=True)
class Request:
    registry: str
    tag: str
    images: list[Image]
    push: bool = False
    build_flags: tuple[str, ...] = ()
    push_flags: tuple[str, ...] = ()
    dry_run: bool = False


def publish(tool: Tool, request: Request) -> list[str]:
    """Build (and push) the images; returns their references."""
    check_names(request.registry, request.tag)
    references = []
    for image in request.images:
        reference = image.reference(request.registry, request.tag)
        run(tool.build_argv(image, reference, request.build_flags), dry_run=request.dry_run)
        references.append(reference)
    if request.push:
        for reference in references:
            run(tool.push_argv(reference, request.push_flags), dry_run=request.dry_run)
    return references


def summary(request: Request, references: Sequence[str], tool: Tool) -> str:
    width = max(len(image.target) for image in request.images)
    lines = [f"Built with {tool.name}:"]
    lines += [
        f"  {image.target:<{width}}  {ref}"
        for image, ref in zip(request.images, references, strict=True)
    ]
    if request.push:
        lines.append(f"Pushed to {request.registry}.")
    else:
        lines.append(
            "Not pushed: run again with PUSH=1 (or --push), or load them into your nodes yourself."
        )
    if len(request.images) < len(IMAGES):
        left = [image.target for image in IMAGES if image not in request.images]
        lines.append(f"Not built: {', '.join(left)} (the operator's defaults name them too).")
    lines += ["Install the operator with them:", f"  {helm_line(request.registry, request.tag)}"]
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Request]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True, help="e.g. registry.example.com/ml")
    parser.add_argument("--tag", default="", help="default: the operator's version")
    parser.add_argument("--push", action="store_true", help="push after building")
    parser.add_argument("--only", action="append", default=[], help="these images only")
    parser.add_argument("--tool", choices=TOOLS, help="default: the first that works")
    parser.add_argument("--build-flag", action="append", default=[], help="passed to the build")
    parser.add_argument("--push-flag", action="append", default=[], help="passed to push")
    parser.add_argument("--global-flag", action="append", default=[], help="before the command")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    request = Request(
        registry=args.registry.rstrip("/"),
        tag=args.tag or operator_version(),
        images=select(args.only),
        push=args.push,
        build_flags=tuple(args.build_flag),
        push_flags=tuple(args.push_flag),
        dry_run=args.dry_run,
    )
    return args, request


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, request = parse(argv)
        tool = find_tool(args.tool, args.global_flag)
        references = publish(tool, request)
    except PublishError as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    print(summary(request, references, tool))
    return 0


if __name__ == "__main__":
    sys.exit(main())
