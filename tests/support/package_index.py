"""A package index of our own for the tests of `envManager: uv`: wheels downloaded once from
PyPI into the cache (the only time a test reaches PyPI), served from loopback as a flat
`--find-links` page, every request counted, so that a test can tell who installed what and
prove that a serving pod asked it nothing."""

from __future__ import annotations

import hashlib
import html
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from tests.support.cache import cache_root
from tests.support.threaded_app import ThreadedApp


def wheelhouse(requirements: Sequence[str]) -> Path:
    """A directory of the wheels `requirements` resolve to (with their dependencies) for this
    Python on this platform, which is the serving images': downloaded from PyPI once, kept in
    the cache, keyed by the interpreter and the requirements."""
    key = hashlib.sha256("\n".join([sys.version, *sorted(requirements)]).encode()).hexdigest()
    path = cache_root() / "wheelhouse" / key[:16]
    if (path / ".complete").exists():
        return path
    # filled beside and renamed into place: an interrupted download is never taken as whole
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
        "--dest", str(partial), *requirements,
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=600)
    (partial / ".complete").write_text("\n".join(requirements))
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    return path


def build_requirements() -> list[str]:
    """What MLflow writes into a model's python_env.yaml as build dependencies (pip and
    setuptools pinned to this venv's, wheel): an environment installs them first, so an index
    for it must have them."""
    from mlflow.utils.environment import _PythonEnv

    return [str(r) for r in _PythonEnv.current().build_dependencies or ()]


class PackageIndex:
    """The wheels of `directory` at `/`, as a page of links (what uv's and pip's find-links
    read), on 127.0.0.1; `requests` lists every path asked for, in order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self.app = ThreadedApp(self._make_app)

    @property
    def port(self) -> int:
        return self.app.port

    def asked(self) -> int:
        with self._lock:
            return len(self.requests)

    async def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/{file}", self._file)
        return app

    def _count(self, request: web.Request) -> None:
        with self._lock:
            self.requests.append(request.path)

    async def _page(self, request: web.Request) -> web.Response:
        self._count(request)
        links = "".join(
            f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a>\n'
            for p in sorted(self.directory.glob("*.whl"))
        )
        return web.Response(text=f"<html><body>\n{links}</body></html>", content_type="text/html")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        path = self.directory / request.match_info["file"]
        if path.parent != self.directory or not path.is_file():
            raise web.HTTPNotFound
        return web.FileResponse(path)


@contextmanager
def package_index(requirements: Sequence[str]) -> Iterator[PackageIndex]:
    """A running PackageIndex of the wheels of `requirements`."""
    index = PackageIndex(wheelhouse(requirements))
    index.app.start()
    try:
        yield index
    finally:
        index.app.stop()
