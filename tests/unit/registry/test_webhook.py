"""Webhook deliveries: only signed, fresh, first-time deliveries make the registry sweep."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mlflow_operator.registry.webhook import (
    PATH,
    ReplayGuard,
    Verdict,
    WebhookSecrets,
    build_app,
    reload_tls_on_change,
    server_tls,
    sign,
    verify,
)
from tests.cluster.pki import create_pki

SECRET = "s3cret-for-tests"
NOW = 1_800_000_000.0
BODY = json.dumps(
    {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": "fraud", "alias": "champion", "version": "2"},
    }
).encode()


def check(
    delivery: str = "d1", ts: float = NOW, sig: str | None = None, guard: ReplayGuard | None = None
) -> Verdict:
    signature = sig if sig is not None else sign(SECRET, delivery, str(int(ts)), BODY)
    return verify([SECRET], delivery, str(int(ts)), signature, BODY, NOW, guard or ReplayGuard())


def test_signature_matches_mlflows_scheme() -> None:
    # v1,<base64(HMAC-SHA256(secret, "<id>.<ts>.<body>"))>, as mlflow/webhooks/delivery.py signs
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(
        hmac.new(SECRET.encode(), b"d1.1800000000." + BODY, hashlib.sha256).digest()
    ).decode()
    assert sign(SECRET, "d1", "1800000000", BODY) == f"v1,{expected}"


def test_good_delivery_is_accepted() -> None:
    assert check() is Verdict.ACCEPTED


def test_forged_unsigned_stale_and_replayed_are_refused() -> None:
    assert check(sig=sign("other-secret", "d1", str(int(NOW)), BODY)) is Verdict.BAD_SIGNATURE
    assert check(sig="") is Verdict.UNSIGNED
    assert check(sig="v1,\u00e9t\u00e9") is Verdict.BAD_SIGNATURE  # not a TypeError
    assert check(ts=NOW - 3600) is Verdict.STALE
    assert check(ts=NOW + 3600) is Verdict.STALE
    guard = ReplayGuard()
    assert check(guard=guard) is Verdict.ACCEPTED
    assert check(guard=guard) is Verdict.REPLAYED


def test_body_tampering_breaks_the_signature() -> None:
    signature = sign(SECRET, "d1", str(int(NOW)), BODY)
    verdict = verify([SECRET], "d1", str(int(NOW)), signature, BODY + b" ", NOW, ReplayGuard())
    assert verdict is Verdict.BAD_SIGNATURE


def test_replay_memory_is_bounded() -> None:
    guard = ReplayGuard(limit=100)
    for i in range(1000):
        guard.first_time(f"d{i}", NOW)
    assert len(guard._seen) <= 100


@pytest.mark.asyncio
async def test_receiver_pokes_only_for_accepted_deliveries() -> None:
    poked: list[str] = []

    def on_change(model: str) -> int:
        poked.append(model)
        return 1

    app = build_app(lambda: [SECRET], on_change, clock=lambda: NOW)
    async with TestClient(TestServer(app)) as client:
        headers = {
            "X-MLflow-Delivery-Id": "abc",
            "X-MLflow-Timestamp": str(int(NOW)),
            "X-MLflow-Signature": sign(SECRET, "abc", str(int(NOW)), BODY),
        }
        ok = await client.post(PATH, data=BODY, headers=headers)
        assert ok.status == 200
        again = await client.post(PATH, data=BODY, headers=headers)
        assert (await again.json())["reason"] == "replayed"
        forged = await client.post(
            PATH, data=BODY, headers={**headers, "X-MLflow-Delivery-Id": "x"}
        )
        assert forged.status == 401
        unsigned = await client.post(PATH, data=BODY)
        assert unsigned.status == 401
    assert poked == ["fraud"]


def test_a_rotated_secret_file_takes_effect_without_a_restart(tmp_path: Path) -> None:
    """The kubelet swaps a mounted Secret's files in place; the receiver re-reads the file."""
    file = tmp_path / "secret"
    file.write_text("old-secret\n")
    secrets = WebhookSecrets(fixed="from-env", file=file)
    assert secrets() == ["from-env", "old-secret"]
    replacement = tmp_path / "next"
    replacement.write_text("old-secret\nnew-secret\n\n")  # both while MLflow switches over
    replacement.replace(file)
    assert secrets() == ["from-env", "old-secret", "new-secret"]
    replacement.write_text("new-secret")
    replacement.replace(file)
    assert secrets() == ["from-env", "new-secret"]
    file.unlink()  # unreadable for a moment: what was read last still counts
    assert secrets() == ["from-env", "new-secret"]
    assert WebhookSecrets()() == []


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    """cert-manager renews the Secret in place; new connections get the new certificate."""
    first, renewed = create_pki(tmp_path / "first"), create_pki(tmp_path / "renewed")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(first.server_cert, cert)
    shutil.copy(first.server_key, key)
    tls = server_tls(str(cert), str(key))
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server(ssl=tls)
    reloading = asyncio.create_task(reload_tls_on_change(tls, str(cert), str(key), interval=0.05))

    async def issuer_accepted(ca: Path) -> bool:
        context = ssl.create_default_context(cafile=str(ca))
        async with aiohttp.ClientSession() as session:
            try:
                async with session.get(f"https://127.0.0.1:{server.port}/", ssl=context):
                    return True
            except aiohttp.ClientConnectorCertificateError:
                return False

    try:
        assert await issuer_accepted(first.ca_cert)
        await asyncio.sleep(0.01)  # a later modification time than the first files
        shutil.copy(renewed.server_cert, cert)
        shutil.copy(renewed.server_key, key)
        for _ in range(100):
            if await issuer_accepted(renewed.ca_cert):
                break
            await asyncio.sleep(0.05)
        assert await issuer_accepted(renewed.ca_cert)
        assert not await issuer_accepted(first.ca_cert)
    finally:
        reloading.cancel()
        await server.close()


@pytest.mark.asyncio
async def test_a_tag_the_operator_wrote_itself_makes_no_sweep() -> None:
    """The operator's own tags (a rollout's outcome) select nothing; a user's tag may (gates,
    a selection by tags), and an alias always does."""
    poked: list[str] = []

    def on_change(model: str) -> int:
        poked.append(model)
        return 1

    def tag(action: str, key: str) -> bytes:
        data = {"name": "fraud", "version": "2", "key": key, "value": "x"}
        return json.dumps({"entity": "model_version_tag", "action": action, "data": data}).encode()

    app = build_app(lambda: [SECRET], on_change, clock=lambda: NOW)
    async with TestClient(TestServer(app)) as client:
        for n, body in enumerate(
            [
                tag("set", "mlflow-operator.ml.fraud"),
                tag("set", "mlflow-operator.ml.fraud.drift"),
                tag("deleted", "mlflow-operator.ml.fraud"),
                tag("set", "validation_status"),
                BODY,
            ]
        ):
            delivery = f"tag-{n}"
            headers = {
                "X-MLflow-Delivery-Id": delivery,
                "X-MLflow-Timestamp": str(int(NOW)),
                "X-MLflow-Signature": sign(SECRET, delivery, str(int(NOW)), body),
            }
            answer = await client.post(PATH, data=body, headers=headers)
            assert answer.status == 200
    assert poked == ["fraud", "fraud"]  # the user's tag and the alias
