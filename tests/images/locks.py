"""The lock files of the images' Python packages: deploy/image/locks/<image>.txt.

    python -m tests.images.locks          # resolves again (uv, PyPI) and writes every lock,
                                          # keeping the versions the locks pin where it can
    python -m tests.images.locks --upgrade  # the newest versions the inputs allow
    python -m tests.images.locks --check  # exit 1 when a lock's inputs changed since (offline)

Each image installs exactly its lock, with hashes (`pip install --require-hashes --no-deps`),
so a rebuild next month installs what was tested, not whatever PyPI serves then. The locks are
universal (uv's markers) for Python 3.11 and newer: the published images run Python 3.12, the
test images Debian's 3.11. Inputs: [project.dependencies] of pyproject.toml (the operator, in
its image) or of serving/pyproject.toml (the serving runtime, in the serving images), and
deploy/image/locks/<image>.in. A lock records the hash of
its inputs in its header; the check compares it, so an edited input without a new lock fails
the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "deploy" / "image" / "locks"
OPERATOR = ROOT / "pyproject.toml"
SERVING = ROOT / "serving" / "pyproject.toml"
PYTHON_FLOOR = "3.11"
UV_OPTIONS = (
    "--universal",
    f"--python-version={PYTHON_FLOOR}",
    "--generate-hashes",
    "--no-header",
    "--no-annotate",
    "--index-url=https://pypi.org/simple",
)
INPUTS_LINE = re.compile(r"^# inputs: sha256:([0-9a-f]{64})$", re.M)


@dataclass(frozen=True)
class Lock:
    image: str
    project: Path | None  # the pyproject.toml whose [project.dependencies] are part of it
    requirements: str | None  # deploy/image/locks/<name>.in, or None

    @property
    def path(self) -> Path:
        return LOCKS / f"{self.image}.txt"

    def inputs(self) -> list[Path]:
        """The .in file and the files it includes with -r."""
        if self.requirements is None:
            return []
        found: list[Path] = []
        todo = [LOCKS / self.requirements]
        while todo:
            path = todo.pop()
            found.append(path)
            for line in path.read_text().splitlines():
                if line.startswith("-r "):
                    todo.append(path.parent / line.split(maxsplit=1)[1])
        return sorted(found)

    def inputs_hash(self) -> str:
        digest = hashlib.sha256(" ".join(UV_OPTIONS).encode())
        if self.project is not None:
            digest.update("\n".join(project_dependencies(self.project)).encode())
        for path in self.inputs():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()


LOCK_FILES = (
    Lock("operator", project=OPERATOR, requirements=None),
    Lock("serving-cpu", project=SERVING, requirements="serving-cpu.in"),
    Lock("serving-gpu", project=SERVING, requirements="serving-gpu.in"),
    Lock("mlflow-server", project=None, requirements="mlflow-server.in"),
)


def project_dependencies(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["dependencies"])


def header(lock: Lock) -> str:
    sources = (
        [] if lock.project is None else [f"{lock.project.relative_to(ROOT)} [project.dependencies]"]
    )
    sources += [str(p.relative_to(ROOT)) for p in lock.inputs()]
    return (
        f"# Python packages of the {lock.image} image, installed with --require-hashes --no-deps.\n"
        f"# Generated from {' and '.join(sources)} by\n"
        "# `python -m tests.images.locks` (make locks); do not edit by hand.\n"
        f"# inputs: sha256:{lock.inputs_hash()}\n"
    )


def compile_lock(lock: Lock, *, upgrade: bool = False) -> str:
    """The lock's new text. Without `upgrade`, uv prefers the versions the lock pins now (it
    reads them from the output file), so adding one dependency does not move the others."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv not found: run `make install` (it is a dev dependency)")
    with tempfile.TemporaryDirectory() as scratch:
        sources = [str(LOCKS / lock.requirements)] if lock.requirements else []
        if lock.project is not None:
            project = Path(scratch) / "project.in"
            project.write_text("\n".join(project_dependencies(lock.project)) + "\n")
            sources.insert(0, str(project))
        output = Path(scratch) / "lock.txt"
        if lock.path.exists() and not upgrade:
            shutil.copyfile(lock.path, output)
        argv = [uv, "pip", "compile", *UV_OPTIONS, "--quiet", f"--output-file={output}", *sources]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=LOCKS)
        if result.returncode != 0:
            raise SystemExit(f"uv pip compile of {lock.image} failed:\n{result.stderr}")
        return header(lock) + output.read_text()


def stale() -> list[Lock]:
    out = []
    for lock in LOCK_FILES:
        text = lock.path.read_text() if lock.path.exists() else ""
        recorded = INPUTS_LINE.search(text)
        if recorded is None or recorded.group(1) != lock.inputs_hash():
            out.append(lock)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a lock is stale")
    parser.add_argument("--upgrade", action="store_true", help="ignore the versions pinned now")
    parser.add_argument("images", nargs="*", help="only these locks (default: all)")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for lock in old:
            print(f"stale: {lock.path.relative_to(ROOT)}; run `make locks`", file=sys.stderr)
        return 1 if old else 0
    for lock in LOCK_FILES:
        if args.images and lock.image not in args.images:
            continue
        lock.path.write_text(compile_lock(lock, upgrade=args.upgrade))
        print(lock.path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
