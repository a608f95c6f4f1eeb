"""A reverse proxy on loopback that counts the HTTP requests reaching a real server.

Used to count, at the server's door, what the operator sends to MLflow: the proxy forwards
every request unchanged to the real tracking server and records its method and path. With
`tls`, it is an HTTPS front of the plain-HTTP server. It also serves as a plain-HTTP forward
proxy (HTTP_PROXY): a request in absolute form is forwarded to `upstream` all the same.
"""

from __future__ import annotations

import ssl
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.support.processes import free_port
from tests.support.threaded_app import ThreadedApp

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class CountingProxy:
    upstream: str
    port: int = field(default_factory=free_port)
    counts: Counter[str] = field(default_factory=Counter)
    tls: ssl.SSLContext | None = None
    _server: ThreadedApp | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def total(self, prefix: str = "") -> int:
        return sum(n for path, n in self.counts.items() if path.startswith(prefix))

    def start(self) -> CountingProxy:
        self._server = ThreadedApp(self._app, self.port, self.tls).start()
        return self

    async def _app(self) -> web.Application:
        session = aiohttp.ClientSession()

        async def handle(request: web.Request) -> web.StreamResponse:
            self.counts[f"{request.method} {request.path}"] += 1
            return await self.answer(request, session)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        app.on_cleanup.append(lambda _: session.close())
        return app

    async def answer(
        self, request: web.Request, session: aiohttp.ClientSession
    ) -> web.StreamResponse:
        """Forward unchanged to the real server (subclasses answer otherwise)."""
        return await forward(self.upstream, request, session)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


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
