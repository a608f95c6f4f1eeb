"""The activator: holds the requests a Service scaled to zero sends it, until a pod answers.

A request comes in (core/modeldeployment/activation.py says how it gets here and which
ModelDeployment it is for); the activator counts it as waiting, which makes the autoscaler
want a pod, wakes that ModelDeployment's reconcile, probes the pods as they come up on their
/ping, and forwards the request to the first that answers. Requests that arrive while a pod
answers are forwarded at once. Hand-written on aiohttp (already the operator's HTTP stack):
what it does is a few lines of holding and forwarding, which no proxy library does with a
hook to start a pod.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from mlflow_operator import metrics
from mlflow_operator.core.modeldeployment.activation import ActivatorRoute, route_for_host

logger = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp sets itself from the body it sends.
_NOT_FORWARDED = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip
PROBE_SECONDS = 0.25  # how often pods coming up are asked /ping
MAX_BODY_BYTES = 100 * 1024 * 1024  # as the batched runtime accepts

# The addresses (pod IPs) of the pods of a ModelDeployment that are running and not going away,
# ready or not: the activator asks them /ping itself, sooner than the kubelet's probe says so.
PodAddresses = Callable[[ActivatorRoute], Awaitable[Sequence[str]]]


@dataclass
class Activator:
    pod_addresses: PodAddresses
    wake: Callable[[str], None]  # the ModelDeployment's key: reconcile it now
    pod_port: int
    hold_seconds: float = 600.0  # as long as a serving pod's startup probe allows
    max_waiting: int = 1000  # per ModelDeployment; more are answered 503 at once
    routes: dict[str, ActivatorRoute] = field(default_factory=dict)
    _waiting: dict[str, int] = field(default_factory=dict)
    _backends: dict[str, str] = field(default_factory=dict)  # key -> a pod that answered /ping
    _searches: dict[str, asyncio.Task[str]] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None

    def route(self, route: ActivatorRoute) -> None:
        self.routes[route.key] = route

    def forget(self, key: str) -> None:
        self.routes.pop(key, None)
        self._backends.pop(key, None)
        search = self._searches.pop(key, None)
        if search is not None:
            search.cancel()

    def cold(self, key: str) -> None:
        """The ModelDeployment has no ready pod: the one that answered before is gone."""
        self._backends.pop(key, None)

    def waiting(self, key: str) -> int:
        """Requests held for this ModelDeployment now: while there are any, it wants a pod."""
        return self._waiting.get(key, 0)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_cleanup.append(lambda _: self.close())
        return app

    async def close(self) -> None:
        for search in self._searches.values():
            search.cancel()
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        route = route_for_host(request.host, self.routes)
        if route is None:
            metrics.ACTIVATOR_REQUESTS.labels(result="unknown_host").inc()
            return web.Response(
                status=404, text=f"no ModelDeployment scaled to zero serves {request.host}\n"
            )
        key = route.key
        if self._waiting.get(key, 0) >= self.max_waiting:
            metrics.ACTIVATOR_REQUESTS.labels(result="overloaded").inc()
            return web.Response(status=503, text="too many requests wait for a pod\n")
        body = await request.read()
        started = time.monotonic()
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            for attempt in range(2):  # a pod found earlier may have gone since: find one again
                backend = self._backends.get(key)
                if backend is None:
                    if attempt == 0:
                        self.wake(key)
                    backend = await asyncio.wait_for(
                        asyncio.shield(self._search(route)),
                        timeout=max(0.0, self.hold_seconds - (time.monotonic() - started)),
                    )
                try:
                    response = await self._forward(request, body, backend)
                except aiohttp.ClientConnectionError:
                    self._backends.pop(key, None)
                    continue
                metrics.ACTIVATOR_REQUESTS.labels(result="forwarded").inc()
                metrics.ACTIVATOR_HOLD_SECONDS.observe(time.monotonic() - started)
                return response
        except TimeoutError:
            pass
        finally:
            self._waiting[key] -= 1
        metrics.ACTIVATOR_REQUESTS.labels(result="timeout").inc()
        return web.Response(
            status=503, text=f"no pod of {key} answered (held up to {self.hold_seconds:.0f}s)\n"
        )

    def _search(self, route: ActivatorRoute) -> asyncio.Task[str]:
        """One search for an answering pod per ModelDeployment, shared by all its waiters."""
        search = self._searches.get(route.key)
        if search is None or search.done():
            search = asyncio.create_task(self._find_answering_pod(route))
            self._searches[route.key] = search
        return search

    async def _find_answering_pod(self, route: ActivatorRoute) -> str:
        """The address of the first pod that answers /ping; "" once nobody waits any more (a
        pod that never comes must not be looked for forever). A waiter counts itself before it
        takes this search, so none holds it when it ends so."""
        while self._waiting.get(route.key):
            try:
                addresses = await self.pod_addresses(route)
            except Exception as exc:  # noqa: BLE001  (the API server restarting: ask again)
                logger.debug("%s: cannot list its pods: %s", route.key, exc)
                addresses = []
            for address in addresses:
                if await self._answers_ping(address):
                    self._backends[route.key] = address
                    return address
            await asyncio.sleep(PROBE_SECONDS)
        return ""

    async def _answers_ping(self, address: str) -> bool:
        try:
            async with self._client().get(
                f"http://{address}:{self.pod_port}/ping", timeout=aiohttp.ClientTimeout(total=1)
            ) as answer:
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _forward(self, request: web.Request, body: bytes, address: str) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with self._client().request(
            request.method,
            f"http://{address}:{self.pod_port}{request.rel_url}",
            headers=headers,
            data=body,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        ) as answer:
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED}
            return web.Response(status=answer.status, body=payload, headers=kept)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no proxy: pod IPs are never what an egress proxy is for; bytes passed as sent
            self._session = aiohttp.ClientSession(trust_env=False, auto_decompress=False)
        return self._session
