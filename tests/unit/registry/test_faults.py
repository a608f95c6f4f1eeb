"""Every way a registry can misbehave is a RegistrySynced=False reason, never a dead watcher.

A tiny local HTTP server plays MLflow here, answering what proxies and broken servers answer;
tests/integration/test_registry_faults.py puts the same faults in front of a real MLflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mlflow_operator.registry.client import Credentials, RegistryClient, RegistryError
from mlflow_operator.registry.watcher import Follower, RegistryWatcher

SEARCH_OK = {
    "registered_models": [
        {"name": "fraud", "aliases": [{"alias": "champion", "version": "1"}], "latest_versions": []}
    ]
}
VERSION_OK = {"model_version": {"version": "1", "status": "READY", "current_stage": "None"}}
LOGIN_PAGE = "<html><body><form action='/sso/login'>Sign in</form></body></html>"


@dataclass
class Misbehaving:
    """What the fake MLflow answers next: 'ok' or the name of a fault."""

    mode: str = "ok"
    requests: int = field(default=0)

    async def handle(self, request: web.Request) -> web.StreamResponse:  # noqa: PLR0911
        self.requests += 1
        search = request.path.endswith("registered-models/search")
        good = SEARCH_OK if search else VERSION_OK
        match self.mode:
            case "html":
                return web.Response(text=LOGIN_PAGE, content_type="text/html")
            case "500":
                return web.Response(status=503, text="<html>Service Unavailable</html>")
            case "malformed":
                return web.Response(text='{"registered_models": [', content_type="application/json")
            case "missing-key":
                return web.json_response({"registered_models": [{"aliases": []}]})
            case "not-an-object":
                return web.json_response(["registered_models"])
            case "slow":
                await asyncio.sleep(5)
                return web.json_response(good)
            case "truncated":
                response = web.StreamResponse(headers={"Content-Length": "1000"})
                response.content_type = "application/json"
                await response.prepare(request)
                await response.write(b'{"registered_models": [')
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-body
                return response
            case _:
                return web.json_response(good)


@pytest.fixture
async def mlflow() -> AsyncIterator[tuple[Misbehaving, str]]:
    fake = Misbehaving()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


FAULTS = {
    "html": ("RegistryBadResponse", "HTTP 200 but not MLflow's JSON: content type text/html"),
    "500": ("RegistryHttpError", "answered HTTP 503"),
    "malformed": ("RegistryBadResponse", "HTTP 200 but not MLflow's JSON"),
    "missing-key": ("RegistryBadResponse", "JSON that is not MLflow's (KeyError"),
    "not-an-object": ("RegistryBadResponse", "HTTP 200 but not MLflow's JSON"),
    "slow": ("RegistryUnreachable", "did not answer registered-models/search within 1s"),
    "truncated": ("RegistryBadResponse", "sent a broken answer to registered-models/search"),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_each_fault_is_a_registry_error_naming_the_endpoint(
    mlflow: tuple[Misbehaving, str], fault: str
) -> None:
    """Defect 5: a non-JSON 200 (an SSO login page), malformed JSON or a missing key raised
    an exception that was not a RegistryError and killed the watcher.

    Failed on the code before the fix for html, malformed, missing-key and not-an-object.
    """
    fake, url = mlflow
    fake.mode = fault
    client = RegistryClient(url, Credentials("admin", "s3cret-pw"), timeout_seconds=1)
    try:
        with pytest.raises(RegistryError) as raised:
            await client.search_models(["fraud"])
    finally:
        await client.close()
    reason, text = FAULTS[fault]
    assert getattr(raised.value, "reason", None) == reason
    assert text in str(raised.value)
    assert url in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)


async def test_the_watcher_reports_every_fault_and_recovers(
    mlflow: tuple[Misbehaving, str],
) -> None:
    fake, url = mlflow
    watcher = RegistryWatcher(RegistryClient(url, timeout_seconds=1))
    watcher._followers["ml/fraud"] = Follower("fraud", 5.0)
    try:
        await watcher.sweep()
        assert watcher.state("fraud").synced
        for fault, (reason, text) in FAULTS.items():
            fake.mode = fault
            await watcher.sweep()
            state = watcher.state("fraud")
            assert (state.synced, state.reason) == (False, reason), fault
            assert text in state.error
            assert state.snapshot is not None  # what was known is kept (serving is unchanged)
        fake.mode = "ok"
        await watcher.sweep()
        assert watcher.state("fraud").synced
        assert watcher.state("fraud").error == ""
    finally:
        await watcher.client.close()


async def test_the_watcher_loop_survives_a_login_page(mlflow: tuple[Misbehaving, str]) -> None:
    """Defect 5: the watcher task died on the first non-JSON answer and never swept again.

    Failed on the code before the fix: no request reached MLflow after the login page.
    """
    fake, url = mlflow
    fake.mode = "html"
    watcher = RegistryWatcher(RegistryClient(url, timeout_seconds=1))
    watcher.follow("ml/fraud", Follower("fraud", 0.05))
    try:
        await asyncio.sleep(0.3)
        assert not watcher.state("fraud").synced
        fake.mode = "ok"
        for _ in range(100):
            await asyncio.sleep(0.05)
            if watcher.state("fraud").synced:
                break
        assert watcher.state("fraud").synced
    finally:
        await watcher.stop()


async def test_a_watcher_silent_for_three_intervals_says_so(
    mlflow: tuple[Misbehaving, str],
) -> None:
    """Whatever stops the sweeps (a hung request, a dead loop), status must not stay True."""
    _, url = mlflow
    now = [1000.0]
    watcher = RegistryWatcher(RegistryClient(url, timeout_seconds=1), clock=lambda: now[0])
    watcher._followers["ml/fraud"] = Follower("fraud", 10.0)
    try:
        await watcher.sweep()
        now[0] += 29
        assert watcher.state("fraud").synced
        now[0] += 2
        state = watcher.state("fraud")
        assert (state.synced, state.reason) == (False, "RegistryStalled")
        assert state.error == (f"no sweep of {url} has completed for 31s (3 poll intervals of 10s)")
        await watcher.sweep()
        assert watcher.state("fraud").synced
    finally:
        await watcher.client.close()


async def test_followers_are_woken_when_a_hung_sweep_becomes_a_stall(
    mlflow: tuple[Misbehaving, str],
) -> None:
    """A ModelDeployment at rest is reconciled only when woken: the watchdog's verdict must
    wake it, though no sweep finished to do so (found by the e2e of registry faults)."""
    fake, url = mlflow
    seen: list[tuple[bool, str]] = []
    watcher = RegistryWatcher(RegistryClient(url, timeout_seconds=1))

    def wake() -> None:
        state = watcher.state("fraud")
        seen.append((state.synced, state.reason))

    watcher.follow("ml/fraud", Follower("fraud", 0.05, wake=wake))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if watcher.state("fraud").synced:
                break
        seen.clear()
        fake.mode = "slow"  # the next sweep hangs for the client's 1 s timeout
        await asyncio.sleep(0.6)
        assert (False, "RegistryStalled") in seen
    finally:
        await watcher.stop()
