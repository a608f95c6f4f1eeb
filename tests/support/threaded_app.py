"""An aiohttp application on loopback, served from a thread of its own: for tests whose other
side is synchronous (MLflow's client, requests, a subprocess) and so cannot share a loop."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class ThreadedApp:
    """`make_app` builds the application inside the server's loop (its sessions belong there).
    `port` 0 takes an ephemeral one, known once started."""

    make_app: Callable[[], Awaitable[web.Application]]
    port: int = 0
    tls: ssl.SSLContext | None = None
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> ThreadedApp:
        started = threading.Event()

        def serve() -> None:
            self._loop.run_until_complete(self._start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the test server did not start")
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(await self.make_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls).start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
