"""The model cache against a real MLflow (PostgreSQL, MinIO, `mlflow server`): MLflow's own
client loads `models:/name/version` through the cache, as a serving pod does with the cached
tracking URI, and what a user checks holds: a version's bytes come from the tracking server
once, a second load and a load after a prefetch download nothing, keepVersions evicts the older
version from the node's disk, and a cached file is refused to a caller the server refuses."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from mlflow_operator.core.model_cache import cached_tracking_uri
from mlflow_operator.model_cache.server import build_app
from mlflow_operator.model_cache.store import Store
from tests.mlflowstack.mlflow_server import MlflowServer
from tests.mlflowstack.models import DIFFERENT_C, ModelRegistry, sample_input
from tests.mlflowstack.stack import MlflowStack
from tests.support.polling import eventually
from tests.support.threaded_app import ThreadedApp

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVER_INFO = "/api/3.0/mlflow/server-info"
# What a serving pod runs, in short: load a version through MLFLOW_TRACKING_URI, predict. The
# process starts (and imports MLflow, seconds of it) before the test needs it, then waits for
# the model URI and the rows on stdin: one fresh MLflow client per load, as in a new pod.
LOAD = """
import json, sys
import mlflow.pyfunc, mlflow.sklearn
import pandas as pd
uri, rows = json.loads(sys.stdin.readline())
model = mlflow.pyfunc.load_model(uri)
print(json.dumps([int(p) for p in model.predict(pd.DataFrame(**rows))]))
"""


@dataclass
class RunningCache:
    """The cache server on loopback, in a thread of its own (the MLflow client is not async);
    `requests` records every request it was sent (method and path with query)."""

    directory: Path
    requests: list[str] = field(default_factory=list)
    store: Store | None = None
    _server: ThreadedApp | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def start(self) -> RunningCache:
        self._server = ThreadedApp(self._app).start()
        return self

    async def _app(self) -> web.Application:
        self.store = Store(self.directory)
        app = build_app(self.store)

        @web.middleware
        async def record(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            self.requests.append(f"{request.method} {request.path_qs}")
            return await handler(request)

        app.middlewares.append(record)
        return app

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 202
            return json.loads(resp.read())

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the cache's /metrics (0 when it has none)."""
        status, text = self.get("/metrics")
        assert status == 200
        for family in text_string_to_metric_families(text.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def inventory(self) -> dict[str, Any]:
        status, body = self.get("/cache")
        assert status == 200
        return dict(json.loads(body))

    def prefetch(
        self, upstream: str, model: str, version: str, keep: int, auth: str = ""
    ) -> dict[str, Any]:
        body = {"upstream": upstream, "model": model, "version": version, "keepVersions": keep}
        first = self.post("/prefetch", body, {"Authorization": auth} if auth else {})
        assert first["state"] in ("Running", "Done"), first
        query = urllib.parse.urlencode({"upstream": upstream, "model": model, "version": version})

        def finished() -> dict[str, Any] | None:
            status, text = self.get(f"/prefetch?{query}")
            assert status == 200
            state = dict(json.loads(text))
            return None if state["state"] == "Running" else state

        return dict(eventually(finished, timeout=60, what=f"prefetch of {model} {version}"))


@pytest.fixture
def model_cache(tmp_path: Path) -> Iterator[RunningCache]:
    cache = RunningCache(tmp_path / "cache").start()
    yield cache
    cache.stop()


def version_files(tracking_uri: str, name: str, version: str, auth: str = "") -> dict[str, int]:
    """Path -> size of every file of the version, asked of the tracking server itself."""
    headers = {"Authorization": auth} if auth else {}

    def get(endpoint: str, **params: str) -> Any:
        url = f"{tracking_uri}{endpoint}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
            return json.loads(resp.read())

    uri = get("/api/2.0/mlflow/model-versions/get-download-uri", name=name, version=version)
    root = uri["artifact_uri"].removeprefix("mlflow-artifacts:").strip("/")
    files: dict[str, int] = {}
    folders = [""]
    while folders:
        folder = folders.pop()
        listing = get("/api/2.0/mlflow-artifacts/artifacts", path=f"{root}/{folder}".rstrip("/"))
        for item in listing.get("files", []):
            rel = f"{folder}/{item['path']}".lstrip("/")
            if item["is_dir"]:
                folders.append(rel)
            else:
                files[rel] = int(item["file_size"])
    return files


class Pod:
    """A process that loads one model version and predicts, with a serving pod's environment:
    the (cached) tracking URI, downloads through the tracking server, no object-store keys."""

    def __init__(self, tracking_uri: str, *, proxied_downloads_env: bool = True) -> None:
        # mlflow.set_registry_uri (the registry helpers) exports MLFLOW_REGISTRY_URI: a pod has
        # none, and with it the client would ask the real server for the download URI
        dropped = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL")
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in dropped and not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_"))
        }
        environ["MLFLOW_TRACKING_URI"] = tracking_uri
        environ.pop("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", None)
        if proxied_downloads_env:  # what the operator sets in serving pods
            environ["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] = "false"
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOAD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
            cwd=REPO,
            text=True,
        )

    def load(self, model_uri: str) -> list[int]:
        rows = sample_input().to_dict(orient="split")
        out, err = self.process.communicate(json.dumps([model_uri, rows]) + "\n", timeout=120)
        assert self.process.returncode == 0, err[-3000:]
        return list(json.loads(out.strip().splitlines()[-1]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def pods() -> Iterator[Callable[..., Pod]]:
    started: list[Pod] = []

    def start(tracking_uri: str, *, proxied_downloads_env: bool = True) -> Pod:
        started.append(Pod(tracking_uri, proxied_downloads_env=proxied_downloads_env))
        return started[-1]

    yield start
    for pod in started:
        pod.stop()


def test_a_version_is_downloaded_once_prefetched_ahead_and_evicted_beyond_keep(
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    model_cache: RunningCache,
    pods: Callable[..., Pod],
) -> None:
    started = time.monotonic()
    upstream = mlflow_stack.tracking_uri
    keep2 = cached_tracking_uri(model_cache.url, upstream, 2)
    keep1 = cached_tracking_uri(model_cache.url, upstream, 1)
    # the third without the operator's MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD=false, as a
    # user's env may have it: the cache's server-info keeps its downloads coming through it
    first, second = pods(keep2), pods(keep2)
    third = pods(keep1, proxied_downloads_env=False)
    v1 = mlflow_registry.log_version(model_name)
    v2 = mlflow_registry.log_version(model_name, c=DIFFERENT_C)
    size1 = sum(version_files(upstream, model_name, v1.version).values())
    size2 = sum(version_files(upstream, model_name, v2.version).values())
    assert size1 > 0
    assert size2 > 0
    downloaded = "mlflow_model_cache_upstream_bytes_total"

    # first load: every byte of the version from the tracking server, once
    loaded = time.monotonic()
    assert first.load(v1.uri) == v1.predict()
    first_load_s = time.monotonic() - loaded
    print(f"requests of a first load of {v1.uri}:", *model_cache.requests, sep="\n  ")
    assert model_cache.metric(downloaded, model=model_name, version=v1.version) == size1
    assert model_cache.metric("mlflow_model_cache_misses_total") > 0
    assert model_cache.metric("mlflow_model_cache_uncached_requests_total") == 0
    cached = place_of(model_cache)["models"][model_name]["versions"][v1.version]
    assert cached["bytes"] == size1
    assert cached["complete"] is True  # the load's listings named no file it lacks
    model_dir = next(model_cache.directory.glob(f"*/{model_name}"))
    assert (model_dir / v1.version / "files" / "MLmodel").is_file()

    # second load of the same version: nothing more downloaded, the same answers
    hits = model_cache.metric("mlflow_model_cache_hits_total")
    model_cache.requests.clear()
    loaded = time.monotonic()
    assert second.load(v1.uri) == v1.predict()
    second_load_s = time.monotonic() - loaded
    print(f"requests of a second load of {v1.uri}:", *model_cache.requests, sep="\n  ")
    assert model_cache.metric(downloaded, model=model_name, version=v1.version) == size1
    assert model_cache.metric("mlflow_model_cache_hits_total") > hits
    assert (
        model_cache.metric(
            "mlflow_model_cache_served_bytes_total",
            model=model_name,
            version=v1.version,
            source="cache",
        )
        == size1
    )

    # prefetch of version 2 with keepVersions 1: version 2 downloaded ahead, version 1 evicted
    state = model_cache.prefetch(upstream, model_name, v2.version, keep=1)
    assert state["state"] == "Done", state
    assert state["bytes"] == size2
    assert model_cache.metric(downloaded, model=model_name, version=v2.version) == size2
    assert model_cache.metric("mlflow_model_cache_prefetches_total", result="Done") == 1
    assert model_cache.metric("mlflow_model_cache_evictions_total") == 1
    versions = place_of(model_cache)["models"][model_name]["versions"]
    assert set(versions) == {v2.version}
    assert versions[v2.version]["complete"] is True
    assert not (model_dir / v1.version).exists()
    assert sorted(p.name for p in model_dir.iterdir()) == [v2.version]
    assert model_cache.metric("mlflow_model_cache_size_bytes") == size2
    again = model_cache.prefetch(upstream, model_name, v2.version, keep=1)
    assert again["state"] == "Done"

    # the load of the prefetched version downloads nothing
    status, body = model_cache.get(keep1.removeprefix(model_cache.url) + SERVER_INFO)
    assert status == 200
    assert json.loads(body)["multipart_downloads_enabled"] is False
    assert third.load(v2.uri) == v2.predict()
    assert model_cache.metric(downloaded, model=model_name, version=v2.version) == size2
    served = "mlflow_model_cache_served_bytes_total"
    assert model_cache.metric(served, model=model_name, version=v2.version, source="cache") == size2
    print(
        f"version {v1.version}: {size1} bytes, version {v2.version}: {size2} bytes; "
        f"first load {first_load_s:.1f}s, second {second_load_s:.1f}s; "
        f"whole test {time.monotonic() - started:.1f}s"
    )


def place_of(cache: RunningCache) -> dict[str, Any]:
    [place] = cache.inventory()["upstreams"].values()
    return dict(place)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_a_cached_file_is_refused_to_a_caller_the_tracking_server_refuses(
    mlflow_auth_server: MlflowServer,
    mlflow_registry: ModelRegistry,
    model_name: str,
    model_cache: RunningCache,
) -> None:
    admin = mlflow_auth_server.auth
    assert admin is not None
    right = basic(admin.username, admin.password)
    upstream = mlflow_auth_server.tracking_uri
    version = mlflow_registry.log_version(model_name).version  # same database and bucket
    files = version_files(upstream, model_name, version, auth=right)
    state = model_cache.prefetch(upstream, model_name, version, keep=2, auth=right)
    assert state["state"] == "Done", state
    assert state["bytes"] == sum(files.values())
    assert model_cache.store is not None
    entry = model_cache.store.lookup(upstream, model_name, version)
    assert entry is not None
    downloaded = model_cache.metric("mlflow_model_cache_upstream_bytes_total")
    base = cached_tracking_uri("", upstream, 2)
    file = f"{base}/api/2.0/mlflow-artifacts/artifacts{entry.artifact_root}/MLmodel"

    status, body = model_cache.get(file, {"Authorization": right})
    assert status == 200
    assert len(body) == files["MLmodel"]
    assert model_cache.metric("mlflow_model_cache_hits_total") == 1
    for refused in (basic(admin.username, admin.password + "-wrong"), ""):
        status, _ = model_cache.get(file, {"Authorization": refused} if refused else {})
        assert status == 401
    assert model_cache.metric("mlflow_model_cache_hits_total") == 1
    assert model_cache.metric("mlflow_model_cache_upstream_bytes_total") == downloaded
    # a prefetch with a wrong password fails with the server's word, and keeps nothing new
    other = mlflow_registry.log_version(model_name).version
    wrong = basic(admin.username, "not-the-password")
    failed = model_cache.prefetch(upstream, model_name, other, keep=2, auth=wrong)
    assert failed["state"] == "Failed"
    assert "401" in failed["message"]
    assert "not-the-password" not in json.dumps(failed)
    assert model_cache.store.lookup(upstream, model_name, other) is None


def test_concurrent_misses_download_once_and_what_fails_upstream_is_not_kept(
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    model_cache: RunningCache,
) -> None:
    upstream = mlflow_stack.tracking_uri
    version = mlflow_registry.log_version(model_name).version
    files = version_files(upstream, model_name, version)
    base = cached_tracking_uri("", upstream, 3)
    query = urllib.parse.urlencode({"name": model_name, "version": version})
    status, body = model_cache.get(f"{base}/api/2.0/mlflow/model-versions/get-download-uri?{query}")
    assert status == 200
    root = json.loads(body)["artifact_uri"].removeprefix("mlflow-artifacts:")
    biggest = max(files, key=lambda rel: files[rel])
    url = f"{base}/api/2.0/mlflow-artifacts/artifacts{root}/{biggest}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: model_cache.get(url), range(8)))
    assert {(status, len(body)) for status, body in answers} == {(200, files[biggest])}
    downloaded = model_cache.metric(
        "mlflow_model_cache_upstream_bytes_total", model=model_name, version=version
    )
    assert downloaded == files[biggest]  # one download for eight callers

    status, _ = model_cache.get(f"{base}/api/2.0/mlflow-artifacts/artifacts{root}/no-such-file")
    assert status >= 400
    assert model_cache.store is not None
    entry = model_cache.store.lookup(upstream, model_name, version)
    assert entry is not None
    assert set(entry.files) == {biggest}
    assert not any(p.name.startswith(".tmp-") for p in entry.directory.rglob("*"))

    # not an MLflow API path, or no tracking URI: not forwarded anywhere
    for path in (
        f"{base}/admin",
        f"{base}/api/2.0/mlflow/../../admin",
        "/upstream/x/keep/1/health",
    ):
        status, _ = model_cache.get(path)
        assert status == 404
