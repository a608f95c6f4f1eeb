"""The activator (mlflow_operator/activator.py) on loopback: real HTTP in, real HTTP out to a
stand-in for a serving pod that answers /ping only once its "model" has loaded. The real pods
behind a real Service are in tests/e2e/test_modeldeployment_pods.py (scale to zero)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from mlflow_operator.activator import Activator
from mlflow_operator.core.modeldeployment.activation import ActivatorRoute
from tests.support.polling import eventually_on_loop

ROUTE = ActivatorRoute("ml", "fraud", "fraud", "10.96.0.10")


@dataclass
class StandInPod:
    """Answers /ping with 503 until `loaded`, and /invocations with what it was sent."""

    loaded: bool = False
    pings: int = 0
    seen_hosts: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ping", self.ping)
        app.router.add_post("/invocations", self.invocations)
        return app

    async def ping(self, _: web.Request) -> web.Response:
        self.pings += 1
        return web.Response(status=200 if self.loaded else 503)

    async def invocations(self, request: web.Request) -> web.Response:
        self.seen_hosts.append(request.host)
        body = await request.read()
        if body == b"bad":
            return web.json_response({"error_code": "BAD_REQUEST"}, status=400)
        return web.Response(body=b"answer to " + body, headers={"X-Model-Version": "3"})


@dataclass
class Harness:
    pod: StandInPod
    activator: Activator
    url: str
    running: list[str]  # the pod addresses the "API server" lists now
    wakes: list[str]

    async def post(
        self, session: aiohttp.ClientSession, body: bytes, host: str
    ) -> tuple[int, bytes]:
        async with session.post(
            f"{self.url}/invocations", data=body, headers={"Host": host}
        ) as answer:
            return answer.status, await answer.read()


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def _until(check: Callable[[], bool]) -> None:
    await eventually_on_loop(check, within=10, what="the activator's own counter")


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    pod = StandInPod()
    pod_runner, pod_port = await _serve(pod.app())
    running: list[str] = []
    wakes: list[str] = []

    async def pod_addresses(route: ActivatorRoute) -> Sequence[str]:
        return list(running)

    activator = Activator(pod_addresses=pod_addresses, wake=wakes.append, pod_port=pod_port)
    activator.route(ROUTE)
    runner, port = await _serve(activator.app())
    yield Harness(pod, activator, f"http://127.0.0.1:{port}", running, wakes)
    await runner.cleanup()
    await pod_runner.cleanup()


async def test_a_request_waits_for_a_pod_that_answers_ping_and_gets_its_answer(
    harness: Harness,
) -> None:
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(harness.post(session, b"row", "fraud.ml.svc:80"))
        await asyncio.sleep(0.5)
        assert not request.done()
        assert harness.wakes == ["ml/fraud"]  # the reconcile is asked for a pod at once
        assert harness.activator.waiting("ml/fraud") == 1  # what makes the autoscaler want one
        harness.running.append("127.0.0.1")  # the pod is scheduled and starts loading
        await asyncio.sleep(0.6)
        assert harness.pod.pings >= 2
        assert not request.done()
        harness.pod.loaded = True
        status, body = await asyncio.wait_for(request, timeout=5)
    assert (status, body) == (200, b"answer to row")
    assert harness.activator.waiting("ml/fraud") == 0


async def test_a_burst_at_zero_is_answered_in_full_and_errors_pass_through(
    harness: Harness,
) -> None:
    async with aiohttp.ClientSession() as session:
        burst = [
            asyncio.create_task(harness.post(session, f"{i}".encode(), "10.96.0.10:80"))
            for i in range(50)
        ]
        bad = asyncio.create_task(harness.post(session, b"bad", "fraud.ml"))
        await _until(lambda: harness.activator.waiting("ml/fraud") == 51)
        harness.running.append("127.0.0.1")
        harness.pod.loaded = True
        answers = await asyncio.wait_for(asyncio.gather(*burst), timeout=10)
        assert answers == [(200, f"answer to {i}".encode()) for i in range(50)]
        status, body = await bad
        assert status == 400
        assert b"BAD_REQUEST" in body
        # with a pod known, the next request goes straight to it
        assert await harness.post(session, b"late", "fraud.ml") == (200, b"answer to late")
    assert harness.pod.pings == 1  # one search shared by all waiters


async def test_a_host_of_no_scaled_to_zero_service_is_refused_with_a_404(harness: Harness) -> None:
    async with aiohttp.ClientSession() as session:
        status, body = await harness.post(session, b"row", "churn.ml.svc")
    assert status == 404
    assert b"churn.ml.svc" in body
    assert harness.wakes == []


async def test_a_pod_that_never_comes_is_a_503_after_the_hold_and_no_longer_looked_for(
    harness: Harness,
) -> None:
    harness.activator.hold_seconds = 0.5
    listed: list[float] = []
    inner = harness.activator.pod_addresses

    async def counted(route: ActivatorRoute) -> Sequence[str]:
        listed.append(asyncio.get_running_loop().time())
        return await inner(route)

    harness.activator.pod_addresses = counted
    async with aiohttp.ClientSession() as session:
        status, body = await harness.post(session, b"row", "fraud.ml")
    assert status == 503
    assert b"ml/fraud" in body
    assert harness.activator.waiting("ml/fraud") == 0
    await asyncio.sleep(0.6)  # more than two probe intervals
    before = len(listed)
    await asyncio.sleep(0.6)
    assert len(listed) == before, "the pods are still listed with nobody waiting"


async def test_a_pod_gone_since_it_answered_is_replaced_by_the_next_one_found(
    harness: Harness,
) -> None:
    harness.running.append("127.0.0.1")
    harness.pod.loaded = True
    async with aiohttp.ClientSession() as session:
        assert (await harness.post(session, b"a", "fraud.ml"))[0] == 200
        harness.activator._backends["ml/fraud"] = "127.0.0.2"  # a pod IP that refuses now
        harness.pod.loaded = True
        assert await harness.post(session, b"b", "fraud.ml") == (200, b"answer to b")
