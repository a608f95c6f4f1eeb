"""A reverse proxy on loopback that counts the HTTP requests reaching a real server.

Used to count, at the server's door, what the operator sends to MLflow: the proxy forwards
every request unchanged to the real tracking server and records its method and path. With
`tls`, it is an HTTPS front of the plain-HTTP server. It also serves as a plain-HTTP forward
proxy (HTTP_PROXY): a request in absolute form is forwarded to `upstream` all the same.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.support.processes import free_port

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class CountingProxy:
    upstream: str
    port: int = field(default_factory=free_port)
    counts: Counter[str] = field(default_factory=Counter)
    tls: ssl.SSLContext | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def total(self, prefix: str = "") -> int:
        return sum(n for path, n in self.counts.items() if path.startswith(prefix))

    def start(self) -> CountingProxy:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("counting proxy did not start")
        return self

    def _serve(self, started: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._start_app())
        started.set()
        self._loop.run_forever()

    async def _start_app(self) -> None:
        session = aiohttp.ClientSession()

        async def handle(request: web.Request) -> web.StreamResponse:
            self.counts[f"{request.method} {request.path}"] += 1
            return await self.answer(request, session)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        app.on_cleanup.append(lambda _: session.close())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls).start()

    async def answer(
        self, request: web.Request, session: aiohttp.ClientSession
    ) -> web.StreamResponse:
        """Forward unchanged to the real server (subclasses answer otherwise)."""
        return await forward(self.upstream, request, session)

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


async def forward(
    upstream: str, request: web.Request, session: aiohttp.ClientSession
) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    async with session.request(
        request.method,
        f"{upstream}{request.path_qs}",
        headers=headers,
        data=await request.read(),
    ) as resp:
        body = await resp.read()
        out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
        return web.Response(status=resp.status, body=body, headers=out)
