"""/healthz and /readyz of the operator process, whatever its role.

kopf serves one liveness path, and only once it runs; a standby replica never runs it, and
"ready" must mean more than "alive". So this small server owns the health port for the whole
life of the process and asks kopf's liveness endpoint (on a loopback port) once kopf runs:

- /healthz (liveness, startup): the process is alive; once kopf has answered, kopf's answer.
- /readyz (readiness): this replica acts and kopf answers, or it stands by behind a replica of
  its own install that acts. Not ready while it looks for the Lease for the first time, or
  refuses to act because another install acts in its namespaces: `helm install --wait` and
  `kubectl rollout status` then return once the operator really acts.

http.server on a thread, not aiohttp: it must answer before kopf's event loop exists.
"""

from __future__ import annotations

import enum
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KOPF_PROBE_TIMEOUT = 5.0


class Role(enum.Enum):
    STARTING = "starting: looking for the leader Lease"
    STANDBY = "standing by: another replica of this install acts"
    REFUSING = "refusing to act: another install acts in these namespaces"
    LEADING = "acting"


class Health:
    """The role, set by the runner; the answers, from it and kopf's own liveness."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.role = Role.STARTING
        self.kopf_port = _free_loopback_port()
        self._kopf_answered = False
        self._server: ThreadingHTTPServer | None = None

    @property
    def kopf_liveness_endpoint(self) -> str:
        """What to give kopf.run as its liveness endpoint."""
        return f"http://127.0.0.1:{self.kopf_port}/healthz"

    def start(self) -> None:
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/healthz":
                    code, body = health.liveness()
                elif path == "/readyz":
                    code, body = health.readiness()
                else:
                    code, body = 404, "not found"
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(body.encode() + b"\n")

            def log_message(self, *_: object) -> None:  # probes every few seconds: not logged
                pass

        self._server = ThreadingHTTPServer(("0.0.0.0", self.port), Handler)  # noqa: S104
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def liveness(self) -> tuple[int, str]:
        if self.role is not Role.LEADING:
            return 200, self.role.value
        ok, said = self._ask_kopf()
        if ok:
            self._kopf_answered = True
            return 200, said
        # kopf starting (its watches, its probe server): alive; once it answered, its word
        return (503, said) if self._kopf_answered else (200, "acting: kopf starting")

    def readiness(self) -> tuple[int, str]:
        if self.role is Role.STANDBY:
            return 200, self.role.value
        if self.role is not Role.LEADING:
            return 503, self.role.value
        ok, said = self._ask_kopf()
        return (200, said) if ok else (503, f"acting, kopf not answering: {said}")

    def _ask_kopf(self) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(  # noqa: S310  (loopback, our own port)
                self.kopf_liveness_endpoint, timeout=KOPF_PROBE_TIMEOUT
            ) as answer:
                return answer.status == 200, "acting"
        except urllib.error.HTTPError as error:
            return False, f"kopf's liveness answered {error.code}"
        except OSError as error:
            return False, f"kopf's liveness: {error}"


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
