"""/healthz and /readyz of the operator (mlflow_operator.health) in each role, asked over HTTP
as the kubelet asks, with a stand-in for kopf's liveness endpoint on its loopback port."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlflow_operator.health import Health, Role
from tests.support.processes import free_port


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def health() -> Iterator[Health]:
    served = Health(free_port())
    served.start()
    yield served
    served.stop()


def kopf_answering(port: int, code: int) -> ThreadingHTTPServer:
    class Kopf(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(code)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Kopf)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_alive_in_every_role_ready_only_when_acting_or_standing_by(health: Health) -> None:
    expected = {Role.STARTING: 503, Role.STANDBY: 200, Role.REFUSING: 503}
    for role, ready in expected.items():
        health.role = role
        assert status(health.port, "/healthz") == 200, role
        assert status(health.port, "/readyz") == ready, role
    assert status(health.port, "/nothing") == 404


def test_an_acting_replica_is_ready_when_kopf_answers_and_dead_when_it_stops(
    health: Health,
) -> None:
    health.role = Role.LEADING
    # kopf starting: alive, not yet ready
    assert status(health.port, "/healthz") == 200
    assert status(health.port, "/readyz") == 503
    kopf = kopf_answering(health.kopf_port, 200)
    assert status(health.port, "/healthz") == 200
    assert status(health.port, "/readyz") == 200
    kopf.shutdown()
    kopf.server_close()
    # kopf answered once and stopped answering: the kubelet should restart the process
    assert status(health.port, "/healthz") == 503
    assert status(health.port, "/readyz") == 503
