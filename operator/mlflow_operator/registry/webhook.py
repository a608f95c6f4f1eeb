"""The receiver of MLflow model-registry webhooks: verify, de-duplicate, then sweep now.

MLflow signs a delivery as `v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>` in
X-MLflow-Signature (mlflow-facts.md §3). A webhook is only a shortcut: MLflow sends nothing for
stage transitions and drops a delivery after 4 tries, so polling remains the safety net.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from aiohttp import web

from mlflow_operator import metrics
from mlflow_operator.api.names import WRITE_BACK_TAG_PREFIX

logger = logging.getLogger(__name__)

PATH = "/webhooks/mlflow"
TOLERANCE_SECONDS = 300  # deliveries older or newer than this are refused as stale
REPLAY_MEMORY = 10_000
EVENTS = (
    "model_version.created",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_tag.set",
    "model_version_tag.deleted",
)


class Verdict(Enum):
    ACCEPTED = "accepted"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"
    REPLAYED = "replayed"


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The X-MLflow-Signature value MLflow sends for this delivery."""
    message = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass
class WebhookSecrets:
    """The secrets a delivery may be signed with: the configured one, and those in `file`,
    one per line, re-read whenever the file changes.

    A Kubernetes Secret mounted as a volume is updated in place by the kubelet, so rotating it
    needs no restart: put the old and the new secret in it, change MLflow's webhook to the new
    one, then drop the old. An unreadable file keeps the secrets last read from it.
    """

    fixed: str = ""
    file: Path | None = None
    _stamp: tuple[int, int] | None = field(default=None, init=False)
    _from_file: list[str] = field(default_factory=list, init=False)

    def __call__(self) -> list[str]:
        if self.file is not None:
            self._refresh(self.file)
        return [s for s in (self.fixed, *self._from_file) if s]

    def _refresh(self, path: Path) -> None:
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_ino)
            if stamp != self._stamp:
                lines = path.read_text().splitlines()
                self._from_file = [line.strip() for line in lines if line.strip()]
                self._stamp = stamp
        except OSError as exc:
            if self._stamp is not None:  # once per loss, not once per delivery
                logger.warning("cannot read the webhook secret file %s: %s", path, exc.strerror)
            self._stamp = None


def server_tls(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS of the receiver from a certificate (chain) and key in PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def reload_tls_on_change(
    context: ssl.SSLContext, cert_file: str, key_file: str, interval: float = 30.0
) -> None:
    """Load a renewed certificate into the serving context (cert-manager renews the Secret in
    place); connections made after that get it, without a restart. Runs until cancelled."""

    def stamp() -> tuple[float, float]:
        return os.stat(cert_file).st_mtime, os.stat(key_file).st_mtime

    last = stamp()
    while True:
        await asyncio.sleep(interval)
        try:
            now = stamp()
            if now != last:
                context.load_cert_chain(cert_file, key_file)
                last = now
                logger.info("webhook receiver: loaded the renewed certificate %s", cert_file)
        except (OSError, ssl.SSLError) as exc:  # half-written during an update: next time
            logger.warning("webhook receiver: cannot load certificate %s: %s", cert_file, exc)


@dataclass
class ReplayGuard:
    """Delivery ids seen within the tolerance window (bounded memory)."""

    limit: int = REPLAY_MEMORY

    def __post_init__(self) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, delivery_id: str, now: float) -> bool:
        while self._seen and (
            len(self._seen) >= self.limit
            or next(iter(self._seen.values())) < now - 2 * TOLERANCE_SECONDS
        ):
            self._seen.popitem(last=False)
        if delivery_id in self._seen:
            return False
        self._seen[delivery_id] = now
        return True


def verify(  # noqa: PLR0917  (the parts of one delivery, in the order MLflow signs them)
    secrets: Iterable[str],
    delivery_id: str,
    timestamp: str,
    signature: str,
    body: bytes,
    now: float,
    guard: ReplayGuard,
) -> Verdict:
    """Check one delivery: signed by one of our secrets, fresh, and not seen before."""
    if not (delivery_id and timestamp and signature):
        return Verdict.UNSIGNED
    # MLflow sends ASCII only; compare_digest raises TypeError on non-ASCII str (a 500)
    ascii_only = delivery_id.isascii() and timestamp.isascii() and signature.isascii()
    signed = ascii_only and any(
        hmac.compare_digest(sign(secret, delivery_id, timestamp, body), signature)
        for secret in secrets
        if secret
    )
    if not signed:
        return Verdict.BAD_SIGNATURE
    try:
        age = abs(now - float(timestamp))
    except ValueError:
        return Verdict.STALE
    if age > TOLERANCE_SECONDS:
        return Verdict.STALE
    if not guard.first_time(delivery_id, now):
        return Verdict.REPLAYED
    return Verdict.ACCEPTED


def model_of(body: bytes) -> str | None:
    """The registered model a delivery is about."""
    try:
        data = json.loads(body).get("data", {})
    except (ValueError, AttributeError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return str(name) if name else None


def operators_own_tag(body: bytes) -> bool:
    """A version tag the operator set or deleted itself (a rollout's outcome, drift, quality:
    `mlflow-operator.<namespace>.<name>...`). No selection reads these (the API server refuses
    tags with that prefix in a selection), so such a delivery changes no ModelDeployment's
    target: bench_scale's 1,000 rollouts of one model sent 1,000 of them, each a sweep."""
    try:
        delivery = json.loads(body)
    except ValueError:
        return False
    if not isinstance(delivery, dict) or delivery.get("entity") != "model_version_tag":
        return False
    data = delivery.get("data")
    key = data.get("key") if isinstance(data, dict) else None
    return isinstance(key, str) and key.startswith(WRITE_BACK_TAG_PREFIX)


def build_app(
    secrets: Callable[[], Iterable[str]],
    on_model_changed: Callable[[str], int],
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The receiver as an aiohttp application; on_model_changed returns how many were poked."""
    guard = ReplayGuard()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        verdict = verify(
            secrets(),
            request.headers.get("X-MLflow-Delivery-Id", ""),
            request.headers.get("X-MLflow-Timestamp", ""),
            request.headers.get("X-MLflow-Signature", ""),
            body,
            clock(),
            guard,
        )
        metrics.WEBHOOK_DELIVERIES.labels(outcome=verdict.value).inc()
        if verdict is Verdict.REPLAYED:  # 2xx: MLflow must not retry what we already have
            return web.json_response({"accepted": False, "reason": "replayed"})
        if verdict is not Verdict.ACCEPTED:
            logger.warning("refused an MLflow webhook delivery: %s", verdict.value)
            status = 400 if verdict is Verdict.STALE else 401
            return web.json_response({"accepted": False, "reason": verdict.value}, status=status)
        model = model_of(body)
        if model is None:
            return web.json_response({"accepted": False, "reason": "no model"}, status=400)
        if operators_own_tag(body):
            logger.debug("webhook: %s: a tag of the operator's own, nothing to sweep", model)
            return web.json_response({"accepted": True, "watchers": 0})
        poked = on_model_changed(model)
        logger.info("webhook: %s changed; %d registry watcher(s) sweep now", model, poked)
        return web.json_response({"accepted": True, "watchers": poked})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(PATH, receive)
    return app
