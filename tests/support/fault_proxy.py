"""A reverse proxy in front of the real MLflow that can answer the way broken networks do.

This is the one fake of the registry-fault tests, and the reason it exists: a real `mlflow
server` cannot be made to answer an HTML login page with 200, a truncated body or a reply
that never comes. What users meet in front of MLflow (an SSO proxy, a load balancer, a
restarting pod) is exactly such an answer, so the proxy plays those parts; with `fault` None
it forwards every request unchanged to the real server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from tests.support.counting_proxy import CountingProxy, forward

FAULTS = ("html", "503", "malformed", "missing-key", "truncated", "slow")
LOGIN_PAGE = (
    "<!doctype html><html><head><title>Sign in</title></head>"
    "<body><form method='post' action='/oauth2/sign_in'><button>Sign in</button></form></body>"
    "</html>"
)


@dataclass
class FaultProxy(CountingProxy):
    fault: str | None = None  # one of FAULTS, or None: forward to the real MLflow
    slow_seconds: float = 30.0

    async def answer(
        self, request: web.Request, session: aiohttp.ClientSession
    ) -> web.StreamResponse:
        fault = self.fault
        canned = _CANNED.get(fault or "")
        if canned is not None:
            return canned()
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        if fault == "truncated":
            return await _truncated(await forward(self.upstream, request, session), request)
        return await forward(self.upstream, request, session)


_CANNED = {
    "html": lambda: web.Response(text=LOGIN_PAGE, content_type="text/html"),
    "503": lambda: web.Response(status=503, text="<html>503 Service Unavailable</html>"),
    "malformed": lambda: web.Response(
        text='{"registered_models": [{"na', content_type="application/json"
    ),
    "missing-key": lambda: web.json_response({"registered_models": [{"aliases": [], "x": 1}]}),
}


async def _truncated(real: web.Response, request: web.Request) -> web.StreamResponse:
    """The real answer, cut half-way through its body by a dropped connection."""
    body = bytes(real.body or b"")  # type: ignore[arg-type]
    response = web.StreamResponse(headers={"Content-Length": str(len(body))})
    response.content_type = "application/json"
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    assert request.transport is not None
    request.transport.close()
    return response
