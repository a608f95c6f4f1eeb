"""The leader's renewal thread (mlflow_operator.kube.leadership.Leadership.keep) when the API
server stops answering.

A fake client stands in for the API server here, and says so: the fault is an API server that
refuses every request for longer than the renew deadline, which the suite's one shared API
server cannot be made to do without failing every other test of the session at that moment.
Election, takeover and claims against the real API server are tests/e2e/test_operator_failover.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx2 as httpx
from lightkube import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from mlflow_operator.kube.leadership import Leadership, Timing


class FlakyApiServer:
    """Holds one Lease; `down` makes every request fail as a refused connection does."""

    def __init__(self) -> None:
        self.lease = Lease(metadata=ObjectMeta(name="op", namespace="ops"), spec=LeaseSpec())
        self.down = False
        self.writes = 0
        self.reads = 0
        self.conflicts = 0  # the next replaces refused with 409, as after another's write

    def get(self, _kind: Any, name: str, namespace: str) -> Lease:
        self._answer()
        self.reads += 1
        if name != "op":
            raise ApiError(response=_status(404))
        return self.lease

    def create(self, obj: Lease, **_: Any) -> Lease:
        self._answer()
        self.writes += 1
        self.lease = obj
        return obj

    def replace(self, obj: Lease, **_: Any) -> Lease:
        if self.conflicts:
            self.conflicts -= 1
            raise ApiError(response=_status(409))
        return self.create(obj)

    def _answer(self) -> None:
        if self.down:
            raise httpx.ConnectError("connection refused")


def _status(code: int) -> httpx.Response:
    body = {"kind": "Status", "code": code, "message": "not found", "reason": "NotFound"}
    return httpx.Response(code, json=body, request=httpx.Request("GET", "http://x"))


def leader(server: FlakyApiServer, now: list[float]) -> Leadership:
    leadership = Leadership(
        client=server,  # type: ignore[arg-type]
        identity="pod-a/1",
        namespace="ops",
        lease="op",
        watched=[],
        timing=Timing(lease_seconds=10, renew_deadline_seconds=7, retry_seconds=0.01),
        clock=lambda: now[0],
        sleep=lambda _: None,
    )
    # claims are the e2e's: here the install claims nothing and sees no other install
    leadership._claims = lambda: []  # type: ignore[method-assign]
    leadership._foreign_claim = lambda: None  # type: ignore[method-assign]
    return leadership


def test_a_renewal_is_one_write_and_a_read_only_after_someone_else_wrote() -> None:
    """client-go's fast path: an idle operator's requests are mostly its renewals."""
    server = FlakyApiServer()
    leadership = leader(server, [0.0])
    leadership.wait_until_leading()
    reads, writes = server.reads, server.writes
    for _ in range(3):
        assert leadership._hold("ops", "op", "pod-a/1", {}) is None
    assert (server.reads - reads, server.writes - writes) == (0, 3)
    server.conflicts = 1
    assert leadership._hold("ops", "op", "pod-a/1", {}) is None  # refused, read, written
    assert (server.reads - reads, server.writes - writes) == (1, 4)
    assert leadership._hold("ops", "op", "pod-a/1", {}) is None
    assert (server.reads - reads, server.writes - writes) == (1, 5)


def test_a_leader_that_cannot_renew_for_the_deadline_gives_up_before_its_lease_ends() -> None:
    server = FlakyApiServer()
    now = [0.0]
    leadership = leader(server, now)
    leadership.wait_until_leading()
    assert server.lease.spec.holderIdentity == "pod-a/1"

    lost: list[str] = []
    done = threading.Event()
    leadership.keep(on_lost=lambda why: (lost.append(why), done.set()))
    writes = server.writes
    deadline = time.monotonic() + 5
    while server.writes < writes + 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # renewing while the API server answers
    assert server.writes >= writes + 3
    assert lost == []
    server.down = True
    now[0] = 6.9  # within the deadline: it keeps trying
    assert not done.wait(0.1)
    now[0] = 7.5  # past it, and still 2.5 s before anyone else may take the lease
    assert done.wait(5)
    assert lost == ["lease ops/op not renewed for 7s"]
