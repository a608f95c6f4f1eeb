"""The model cache's HTTP server: a reverse proxy of MLflow tracking servers that keeps the
artifact files of model versions on the node's disk (store.py).

Everything is forwarded as it comes, but for: the download URI of a version (the cache learns
which artifact paths are that version's), listings (what a version has), the files of known
versions (cached), and the server's capabilities, where the cache says presigned downloads are
off (MLflow 3.17's client downloads every file from the object store itself when they are on).

Routes:
  /upstream/<base64url(tracking URI)>/keep/<n>/<MLflow API path>   the proxy (core/model_cache.py)
  POST /prefetch, GET /prefetch                                    download a version ahead
  GET /cache                                                       what the store holds
  GET /healthz, GET /metrics                                       probes, Prometheus

This module is the proxy and its downloads into the store; the prefetch is prefetch.py's, the
metrics are metrics.py's, and answers.py has the few pieces of HTTP they share.

A cached file is served only after the tracking server says the caller may read it: the cache
asks it for the listing of the file's directory with the caller's own headers, and serves from
disk when that lists the file with the size the store has. The files are the expensive part of a
load (megabytes to gigabytes); the listing is a few hundred bytes of JSON. So a cached file is
no more readable through the cache than through the server, and an outage of the server is an
outage of the cache too: the cache saves bytes, not availability.

Hand-written on aiohttp (the operator's HTTP stack) for the same reason as activator.py: the
caching is a few decisions about MLflow's own requests, which no proxy library makes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import mimetypes
import os
import posixpath
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import generate_latest
from yarl import URL

from mlflow_operator.core.model_cache import (
    ARTIFACT_FILE_PREFIX,
    ARTIFACTS_PATH,
    CACHE_PORT,
    DOWNLOAD_URI_PATH,
    MULTIPART_DOWNLOADS,
    SERVER_INFO_PATHS,
    CachedRoute,
    artifact_root,
    listing_entries,
    parse_cached_path,
)
from mlflow_operator.model_cache.answers import Fetched, json_object, plain
from mlflow_operator.model_cache.metrics import CacheMetrics
from mlflow_operator.model_cache.prefetch import PREFETCH_PARALLEL, Prefetcher
from mlflow_operator.model_cache.store import CachedVersion, Store, VersionKey, discard

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
ERROR_BODY_BYTES = 64 * 1024  # of an upstream's error answer, passed on to the caller
# Hop-by-hop headers (RFC 9110 7.6.1), and Host: aiohttp sets it from the upstream's URL.
_HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host",
    }
)  # fmt: skip
# aiohttp writes these itself for an answer whose body it has whole
_BUFFERED = frozenset({"content-length", "content-encoding"})


def _request_headers(request: web.Request) -> CIMultiDict[str]:
    """The caller's headers for the upstream, hop-by-hop ones and those the Connection header
    names taken out (repeated headers kept)."""
    named = {h.strip().lower() for h in request.headers.get("Connection", "").split(",")}
    return CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP | named
    )


def _lookup_headers(request: web.Request) -> CIMultiDict[str]:
    """The caller's headers for a small request of the cache's own on its behalf (a listing, a
    download URI): its credentials and the like, no body, the answer uncompressed."""
    headers = _request_headers(request)
    for name in ("Content-Length", "Content-Type", "Range", "If-None-Match", "If-Modified-Since"):
        headers.popall(name, None)
    headers["Accept-Encoding"] = "identity"
    return headers


def _response_headers(
    headers: CIMultiDictProxy[str], drop: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    named = {h.strip().lower() for h in headers.get("Connection", "").split(",")}
    return CIMultiDict(
        (k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP | named | drop
    )


class ModelCache:
    """The proxy and the single-flight downloads of one cache process, and its prefetcher
    (prefetch.py), which downloads through them."""

    def __init__(self, store: Store, *, prefetch_parallel: int = PREFETCH_PARALLEL) -> None:
        self.store = store
        self.metrics = CacheMetrics(store)
        store.on_evict = self.metrics.forget
        self._session: aiohttp.ClientSession | None = None
        self._downloads: dict[tuple[VersionKey, str], asyncio.Task[Fetched]] = {}
        self.prefetcher = Prefetcher(
            store, self.metrics, lambda: self.session, self._fetch, parallel=prefetch_parallel
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # trust_env: an egress proxy of the node applies, as for the operator's registry
            # client; auto_decompress off: answers are passed on byte for byte, with their
            # Content-Encoding. No total timeout: a model file may take minutes.
            self._session = aiohttp.ClientSession(
                trust_env=True,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
            )
        return self._session

    async def close(self) -> None:
        tasks: list[asyncio.Task[Any]] = [*self.prefetcher.tasks(), *self._downloads.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # --- the proxy -------------------------------------------------------------------------

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        route = parse_cached_path(request.rel_url.raw_path)
        if route is None:
            return plain(404, "not an MLflow API path under /upstream/<tracking URI>/keep/<n>")
        url = URL(route.upstream + route.rest, encoded=True)
        if request.rel_url.raw_query_string:
            url = URL(f"{url}?{request.rel_url.raw_query_string}", encoded=True)
        if request.method == "GET" and route.rest == DOWNLOAD_URI_PATH:
            return await self._download_uri(request, route, url)
        if request.method == "GET" and route.rest == ARTIFACTS_PATH:
            return await self._listing(request, route, url)
        if request.method == "GET" and route.rest.startswith(ARTIFACT_FILE_PREFIX):
            return await self._artifact(request, route, url)
        if request.method == "GET" and route.rest in SERVER_INFO_PATHS:
            return await self._server_info(request, url)
        return await self._forward(request, url)

    async def _forward(self, request: web.Request, url: URL) -> web.StreamResponse:
        """The request to `url` as it came, the answer back as it comes, both streamed."""
        out: web.StreamResponse | None = None
        try:
            async with self.session.request(
                request.method,
                url,
                headers=_request_headers(request),
                data=request.content if request.body_exists else None,
                allow_redirects=False,
            ) as answer:
                out = web.StreamResponse(
                    status=answer.status,
                    reason=answer.reason,
                    headers=_response_headers(answer.headers),
                )
                await out.prepare(request)
                async for chunk in answer.content.iter_chunked(CHUNK):
                    await out.write(chunk)
                await out.write_eof()
                return out
        except (aiohttp.ClientError, TimeoutError) as exc:
            if out is not None and out.prepared:
                raise  # half an answer sent: the connection must break, not end well
            return plain(502, f"the tracking server did not answer: {type(exc).__name__}")

    async def _buffered(
        self, request: web.Request, url: URL
    ) -> tuple[int, bytes, CIMultiDict[str]] | web.Response:
        """A small GET on the caller's behalf, read whole (a download URI, a listing)."""
        try:
            async with self.session.get(
                url, headers=_lookup_headers(request), allow_redirects=False
            ) as answer:
                body = await answer.read()
                return answer.status, body, _response_headers(answer.headers, _BUFFERED)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return plain(502, f"the tracking server did not answer: {type(exc).__name__}")

    async def _download_uri(
        self, request: web.Request, route: CachedRoute, url: URL
    ) -> web.StreamResponse:
        """Forwarded; a version whose files the server proxies is learned (its artifact root),
        so that the downloads that follow are attributed to it."""
        got = await self._buffered(request, url)
        if isinstance(got, web.Response):
            return got
        status, body, headers = got
        name, version = request.query.get("name", ""), request.query.get("version", "")
        if status == 200 and name and version:
            root = artifact_root(str(json_object(body).get("artifact_uri", "")))
            if root is not None:
                self.store.learn(route.upstream, name, version, root, route.keep_versions)
        return web.Response(status=status, body=body, headers=headers)

    async def _server_info(self, request: web.Request, url: URL) -> web.StreamResponse:
        """Forwarded, with presigned downloads turned off: a client that may use them fetches
        every file from the object store directly, and the cache sees none of them."""
        got = await self._buffered(request, url)
        if isinstance(got, web.Response):
            return got
        status, body, headers = got
        info = json_object(body)
        if status == 200 and info.get(MULTIPART_DOWNLOADS):
            body = json.dumps(info | {MULTIPART_DOWNLOADS: False}).encode()
        return web.Response(status=status, body=body, headers=headers)

    async def _listing(
        self, request: web.Request, route: CachedRoute, url: URL
    ) -> web.StreamResponse:
        """Forwarded; what it lists of a known version tells the store when it has it all."""
        got = await self._buffered(request, url)
        if isinstance(got, web.Response):
            return got
        status, body, headers = got
        found = self.store.attribute(route.upstream, request.query.get("path", ""), directory=True)
        if status == 200 and found is not None:
            self.store.note_listing(found[0], found[1], listing_entries(json_object(body)))
        return web.Response(status=status, body=body, headers=headers)

    async def _artifact(
        self, request: web.Request, route: CachedRoute, url: URL
    ) -> web.StreamResponse:
        artifact_path = unquote(route.rest[len(ARTIFACT_FILE_PREFIX) :])
        found = self.store.attribute(route.upstream, artifact_path)
        if found is None or "Range" in request.headers:
            self.metrics.uncached.inc()
            return await self._forward(request, url)
        entry, rel = found
        with self.store.pin(entry):
            cached = self.store.cached(entry, rel)
            if cached is not None:
                allowed = await self._allowed(request, route, artifact_path, cached.size)
                if isinstance(allowed, web.Response):
                    return allowed
                if allowed:
                    self.metrics.hits.inc()
                    self.store.touch(entry)
                    return await self._serve(request, entry, rel, "cache", url)
            self.metrics.misses.inc()
            return await self._miss(request, route, url, entry, rel)

    async def _miss(
        self, request: web.Request, route: CachedRoute, url: URL, entry: CachedVersion, rel: str
    ) -> web.StreamResponse:
        """The file downloaded into the store (or being so by another caller), then served."""
        fetched, mine = await self._fetch(entry, rel, url, _lookup_headers(request))
        if fetched.status == 0:
            self.metrics.uncached.inc()
            return await self._forward(request, url)
        if fetched.status != 200:
            return web.Response(status=fetched.status, body=fetched.body, headers=fetched.headers)
        if not mine:
            # another caller's credentials fetched it: this one's are asked as for a hit
            artifact_path = unquote(route.rest[len(ARTIFACT_FILE_PREFIX) :])
            allowed = await self._allowed(request, route, artifact_path, fetched.size)
            if isinstance(allowed, web.Response):
                return allowed
            if not allowed:
                self.metrics.uncached.inc()
                return await self._forward(request, url)
        self.store.touch(entry)
        return await self._serve(request, entry, rel, "upstream", url)

    async def _allowed(
        self, request: web.Request, route: CachedRoute, artifact_path: str, size: int
    ) -> bool | web.Response:
        """Whether the tracking server lets the caller read the file, by the listing of its
        directory with the caller's headers: True when it lists the file with `size`; its
        answer when it refuses (401, 403); False otherwise (serve what the server has)."""
        url = URL(route.upstream + ARTIFACTS_PATH, encoded=True).with_query(
            path=posixpath.dirname(artifact_path)
        )
        got = await self._buffered(request, url)
        if isinstance(got, web.Response):
            return False
        status, body, headers = got
        if status in (401, 403):
            return web.Response(status=status, body=body, headers=headers)
        if status != 200:
            return False
        name = posixpath.basename(artifact_path)
        return any(
            e.name == name and not e.is_dir and e.size == size
            for e in listing_entries(json_object(body))
        )

    async def _serve(
        self, request: web.Request, entry: CachedVersion, rel: str, source: str, url: URL
    ) -> web.StreamResponse:
        """The file from disk, opened first: an eviction then deletes its name, not the bytes
        being sent."""
        try:
            handle = entry.path(rel).open("rb")
        except FileNotFoundError:  # evicted between the download and now: the slow way
            self.metrics.uncached.inc()
            return await self._forward(request, url)
        with handle:
            size = os.fstat(handle.fileno()).st_size
            kind = mimetypes.guess_type(rel)[0] or "application/octet-stream"
            out = web.StreamResponse(status=200, headers={"Content-Type": kind})
            out.content_length = size
            await out.prepare(request)
            served = self.metrics.served_bytes.labels(entry.model, entry.version, source)
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                await out.write(chunk)
                served.inc(len(chunk))
            await out.write_eof()
            return out

    # --- downloads into the store ----------------------------------------------------------

    async def _fetch(
        self, entry: CachedVersion, rel: str, url: URL, headers: CIMultiDict[str]
    ) -> tuple[Fetched, bool]:
        """The file downloaded into the store, once however many ask at the same time; True
        with it for the caller whose request (and credentials) downloaded it."""
        key = (entry.key, rel)
        task = self._downloads.get(key)
        mine = task is None
        if task is None:
            task = asyncio.create_task(self._download(entry, rel, url, headers))
            self._downloads[key] = task
            task.add_done_callback(lambda _: self._downloads.pop(key, None))
        # shielded: a caller that goes away does not cancel the download the others wait for
        return await asyncio.shield(task), mine

    async def _download(
        self, entry: CachedVersion, rel: str, url: URL, headers: CIMultiDict[str]
    ) -> Fetched:
        started = time.monotonic()
        with self.store.pin(entry):
            try:
                async with self.session.get(url, headers=headers, allow_redirects=False) as got:
                    if got.status != 200:
                        body = await got.content.read(ERROR_BODY_BYTES)
                        return Fetched(got.status, body, _response_headers(got.headers, _BUFFERED))
                    if got.headers.get("Content-Encoding", "identity").lower() != "identity":
                        # asked for identity; encoded bytes are never stored
                        return Fetched(0, b"the tracking server answered encoded bytes")
                    size = await self._write(entry, rel, got)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                logger.warning(
                    "download of %s version %s file %s failed: %s",
                    entry.model,
                    entry.version,
                    rel,
                    type(exc).__name__,
                )
                return Fetched(502, f"download from the tracking server failed: {exc}\n".encode())
            except OSError as exc:  # the node's disk (full?): the caller gets the file uncached
                logger.warning(
                    "cannot keep %s version %s file %s: %s", entry.model, entry.version, rel, exc
                )
                return Fetched(0, b"the cache cannot write to its disk")
        logger.info(
            "miss: downloaded %s version %s file %s (%d bytes, %.2fs)",
            entry.model,
            entry.version,
            rel,
            size,
            time.monotonic() - started,
        )
        return Fetched(200, size=size)

    async def _write(self, entry: CachedVersion, rel: str, got: aiohttp.ClientResponse) -> int:
        """The answer's body into the store, its size and hash taken on the way; raises
        ValueError when it ends before its Content-Length."""
        temp, out = self.store.open_temp(entry, rel)
        digest, size = hashlib.sha256(), 0
        counted = self.metrics.upstream_bytes.labels(entry.model, entry.version)
        try:
            with out:
                # plain writes: into the page cache, microseconds per chunk
                async for chunk in got.content.iter_chunked(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    counted.inc(len(chunk))
                out.flush()
                os.fsync(out.fileno())  # once in the store, the bytes must survive a reboot
        except BaseException:
            discard(temp)
            raise
        if got.content_length is not None and size != got.content_length:
            discard(temp)
            raise ValueError(f"{size} of {got.content_length} bytes")
        if not self.store.commit(entry, rel, temp, size, digest.hexdigest()):
            raise ValueError("the version was evicted")
        return size

    # --- the rest --------------------------------------------------------------------------

    async def inventory(self, _: web.Request) -> web.Response:
        return web.json_response(self.store.inventory())

    async def metrics_text(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


CACHE = web.AppKey("model_cache", ModelCache)


def build_app(store: Store, *, prefetch_parallel: int = PREFETCH_PARALLEL) -> web.Application:
    """The cache's application; app[CACHE] is its ModelCache (metrics, for tests)."""
    cache = ModelCache(store, prefetch_parallel=prefetch_parallel)
    app = web.Application()
    app[CACHE] = cache
    app.router.add_route("*", "/upstream/{tail:.*}", cache.proxy)
    app.router.add_post("/prefetch", cache.prefetcher.post)
    app.router.add_get("/prefetch", cache.prefetcher.get)
    app.router.add_get("/cache", cache.inventory)
    app.router.add_get("/metrics", cache.metrics_text)
    app.router.add_get("/healthz", _healthz)

    async def close(_: web.Application) -> None:
        await cache.close()

    app.on_cleanup.append(close)
    return app


async def _healthz(_: web.Request) -> web.Response:
    return plain(200, "ok")


def run(
    directory: Path,
    *,
    host: str = "0.0.0.0",  # noqa: S104  (a DaemonSet's pod: reached at its pod IP)
    port: int = CACHE_PORT,
    max_bytes: int = 0,
) -> None:
    """Serve the cache of `directory` until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    store = Store(directory, max_bytes=max_bytes)
    web.run_app(build_app(store), host=host, port=port, access_log=None, print=None)
