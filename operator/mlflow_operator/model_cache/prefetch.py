"""The prefetch of model versions (POST /prefetch, GET /prefetch): every file of a version
downloaded into the store ahead of the pods that will load it, through the proxy's single-flight
downloads (server.py), as a job whose state the operator polls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from mlflow_operator.core.model_cache import (
    ARTIFACT_FILE_PREFIX,
    ARTIFACTS_PATH,
    DONE,
    DOWNLOAD_URI_PATH,
    FAILED,
    MAX_KEEP_VERSIONS,
    MIN_KEEP_VERSIONS,
    RUNNING,
    UNSUPPORTED,
    PrefetchState,
    artifact_root,
    listing_entries,
    normalize_upstream,
    unsupported_reason,
    upstream_key,
)
from mlflow_operator.core.redact import redact
from mlflow_operator.model_cache.answers import Fetched, json_object, plain
from mlflow_operator.model_cache.metrics import CacheMetrics
from mlflow_operator.model_cache.store import (
    DEFAULT_KEEP_VERSIONS,
    CachedVersion,
    Store,
    VersionKey,
)

logger = logging.getLogger(__name__)

PREFETCH_PARALLEL = 4  # files of one version downloaded at once by a prefetch

# The proxy's download of one file of a version into the store, once however many ask at the
# same time (server.py: ModelCache._fetch): (entry, path in the version, URL, headers).
Fetch = Callable[[CachedVersion, str, URL, CIMultiDict[str]], Awaitable[tuple[Fetched, bool]]]


@dataclass
class _Prefetch:
    state: PrefetchState
    task: asyncio.Task[None] | None = None


class PrefetchError(Exception):
    """A prefetch cannot go on; the message is for status (no credentials in it)."""


class Prefetcher:
    """The prefetches of one cache process, by (upstream, model, version)."""

    def __init__(
        self,
        store: Store,
        metrics: CacheMetrics,
        session: Callable[[], aiohttp.ClientSession],
        fetch: Fetch,
        *,
        parallel: int = PREFETCH_PARALLEL,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self._session = session  # the proxy's, asked for at each use (it may be reopened)
        self._fetch = fetch
        self._parallel = parallel
        self._prefetches: dict[VersionKey, _Prefetch] = {}

    def tasks(self) -> list[asyncio.Task[None]]:
        """The prefetches' tasks, for the cache to cancel when it closes."""
        return [p.task for p in self._prefetches.values() if p.task is not None]

    async def post(self, request: web.Request) -> web.Response:
        """POST /prefetch: the version's prefetch started, unless one is running or done (with
        the version still in the store); its state, 202."""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return plain(400, "want JSON {upstream, model, version, keepVersions}")
        if not isinstance(body, dict):
            return plain(400, "want JSON {upstream, model, version, keepVersions}")
        upstream = normalize_upstream(str(body.get("upstream", "")))
        model, version = str(body.get("model") or ""), str(body.get("version") or "")
        keep = body.get("keepVersions", DEFAULT_KEEP_VERSIONS)
        if upstream is None or not model or not version:
            return plain(400, "want an http(s) upstream without credentials, model and version")
        if not isinstance(keep, int) or not MIN_KEEP_VERSIONS <= keep <= MAX_KEEP_VERSIONS:
            return plain(400, f"keepVersions: an integer in 1..{MAX_KEEP_VERSIONS}")
        key = (upstream_key(upstream), model, version)
        known = self._prefetches.get(key)
        if known is not None and (
            known.state.state == RUNNING
            or (
                known.state.state == DONE
                and self.store.lookup(upstream, model, version) is not None
            )
        ):
            return _state(known.state, 202)
        state = PrefetchState(model, version, RUNNING)
        job = _Prefetch(state)
        self._prefetches[key] = job
        # the caller's Authorization lives in this task only: never stored, never logged
        auth = request.headers.get("Authorization")
        job.task = asyncio.create_task(self._prefetch(job, upstream, keep, auth))
        return _state(state, 202)

    async def get(self, request: web.Request) -> web.Response:
        """GET /prefetch: the state of a version's prefetch."""
        upstream = normalize_upstream(request.query.get("upstream", ""))
        model, version = request.query.get("model", ""), request.query.get("version", "")
        job = self._prefetches.get((upstream_key(upstream), model, version)) if upstream else None
        if job is None:
            return plain(404, "no prefetch of that version")
        return _state(job.state, 200)

    async def _prefetch(self, job: _Prefetch, upstream: str, keep: int, auth: str | None) -> None:
        model, version = job.state.model, job.state.version
        headers = CIMultiDict({"Accept-Encoding": "identity"})
        if auth:
            headers["Authorization"] = auth
        try:
            url = URL(upstream + DOWNLOAD_URI_PATH, encoded=True).with_query(
                name=model, version=version
            )
            uri = str((await self._json_get(url, headers, "get-download-uri")).get("artifact_uri"))
            root = artifact_root(uri)
            if root is None:
                job.state = replace(job.state, state=UNSUPPORTED, message=unsupported_reason(uri))
            else:
                entry = self.store.learn(upstream, model, version, root, keep)
                with self.store.pin(entry):
                    await self._prefetch_files(job, entry, headers)
                job.state = replace(job.state, state=DONE, bytes=entry.bytes)
        except PrefetchError as exc:
            job.state = replace(job.state, state=FAILED, message=redact(str(exc))[:500])
        except (aiohttp.ClientError, TimeoutError) as exc:
            job.state = replace(
                job.state,
                state=FAILED,
                message=f"the tracking server did not answer: {type(exc).__name__}",
            )
        except Exception:
            logger.exception("prefetch of %s version %s failed", model, version)
            job.state = replace(job.state, state=FAILED, message="internal error of the cache")
        self.metrics.prefetches.labels(job.state.state).inc()
        logger.info(
            "prefetch of %s version %s: %s (%d files, %d bytes)%s",
            model,
            version,
            job.state.state,
            job.state.files,
            job.state.bytes,
            f": {job.state.message}" if job.state.message else "",
        )

    async def _prefetch_files(
        self, job: _Prefetch, entry: CachedVersion, headers: CIMultiDict[str]
    ) -> None:
        """Every file of the version into the store, as a pod's misses would bring them."""
        files = await self._list_tree(entry, headers)
        limit = asyncio.Semaphore(self._parallel)
        root = entry.artifact_root.strip("/")

        async def one(rel: str, size: int | None) -> None:
            async with limit:
                cached = self.store.cached(entry, rel)
                if cached is None or (size is not None and cached.size != size):
                    url = URL(
                        entry.upstream + ARTIFACT_FILE_PREFIX + quote(f"{root}/{rel}"),
                        encoded=True,
                    )
                    fetched, _ = await self._fetch(entry, rel, url, headers)
                    if fetched.status == 0:
                        raise PrefetchError(f"{rel}: {fetched.body.decode() or 'not cacheable'}")
                    if fetched.status != 200:
                        raise PrefetchError(f"{rel}: {_failure(fetched.status, fetched.body)}")
                job.state = replace(job.state, files=job.state.files + 1, bytes=entry.bytes)

        try:
            async with asyncio.TaskGroup() as group:
                for rel, size in files:
                    group.create_task(one(rel, size))
        except* PrefetchError as failed:
            raise failed.exceptions[0] from None
        if not entry.complete:
            raise PrefetchError("the files downloaded differ from the version's listing")

    async def _list_tree(
        self, entry: CachedVersion, headers: CIMultiDict[str]
    ) -> list[tuple[str, int | None]]:
        """(path in the version, size) of every file, by listing directory after directory."""
        root = entry.artifact_root.strip("/")
        files: list[tuple[str, int | None]] = []
        folders = [""]
        while folders:
            folder = folders.pop()
            url = URL(entry.upstream + ARTIFACTS_PATH, encoded=True).with_query(
                path=f"{root}/{folder}".rstrip("/")
            )
            entries = listing_entries(await self._json_get(url, headers, "listing"))
            self.store.note_listing(entry, folder, entries)
            for item in entries:
                rel = f"{folder}/{item.name}".lstrip("/")
                if item.is_dir:
                    folders.append(rel)
                else:
                    files.append((rel, item.size))
        return files

    async def _json_get(self, url: URL, headers: CIMultiDict[str], what: str) -> dict[str, Any]:
        async with self._session().get(url, headers=headers, allow_redirects=False) as got:
            body = await got.read()
            if got.status != 200:
                raise PrefetchError(f"{what}: {_failure(got.status, body)}")
            return json_object(body)


def _state(state: PrefetchState, status: int) -> web.Response:
    return web.Response(status=status, text=state.to_json(), content_type="application/json")


def _failure(status: int, body: bytes) -> str:
    """An upstream's refusal for a person: its status and MLflow's message, if any."""
    message = str(json_object(body).get("message") or "")
    if not message:
        message = body[:200].decode("utf-8", "replace").strip()
    return redact(f"HTTP {status}" + (f": {message}" if message else ""))[:300]
