"""MLflow webhooks make the operator resolve now; forged, stale and replayed ones are refused."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from mlflow_operator.registry.client import RegistryClient
from mlflow_operator.registry.webhook import EVENTS, sign
from tests.cluster.launcher import KubeCluster
from tests.cluster.pki import create_pki
from tests.e2e.modeldeployments import (
    ModelDeploymentEnv,
    is_ready_on,
    model_deployment,
    template_version,
)
from tests.e2e.operator_process import OperatorProcess
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# The ModelDeployments poll every 10 minutes; anything well inside that is the webhook's doing.
WELL_BEFORE_THE_POLL = 60.0


def deliver(
    operator: OperatorProcess, body: bytes, delivery: str, timestamp: str, signature: str
) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        operator.webhook_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": timestamp,
            "X-MLflow-Signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_forged_stale_and_replayed_deliveries_are_refused(operator: OperatorProcess) -> None:
    data = {"name": "any", "alias": "champion", "version": "1"}
    body = json.dumps({"entity": "model_version_alias", "action": "created", "data": data}).encode()
    now = str(int(time.time()))
    delivery = str(uuid.uuid4())
    good = sign(operator.webhook_secret, delivery, now, body)
    forged = sign("not-the-secret", delivery, now, body)
    assert deliver(operator, body, delivery, now, forged)[0] == 401
    assert deliver(operator, body, delivery, now, "")[0] == 401
    assert deliver(operator, body, delivery, now, "v1,\u00e9t\u00e9")[0] == 401  # not a 500
    old = str(int(time.time()) - 3600)
    assert (
        deliver(operator, body, delivery, old, sign(operator.webhook_secret, delivery, old, body))[
            0
        ]
        == 400
    )
    assert deliver(operator, body, delivery, now, good) == (200, {"accepted": True, "watchers": 0})
    status, answer = deliver(operator, body, delivery, now, good)
    assert (status, answer["reason"]) == (200, "replayed")


def test_real_webhook_from_mlflow_triggers_the_rollout_without_waiting_for_the_poll(
    env: ModelDeploymentEnv,
) -> None:
    v1 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v1.version)
    env.registry.tag_version(env.model, v1.version, "stage", "prod")
    # a poll interval so long that only the webhook can explain a prompt rollout
    md = model_deployment("hooked", env.namespace, env.model, env.tracking_uri, poll="10m")
    env.cluster.apply(md)
    tagged = model_deployment(
        "tagged", env.namespace, env.model, env.tracking_uri, poll="10m",
        selector={"selector": {"tags": {"stage": "prod"}}},
    )  # fmt: skip
    env.cluster.apply(tagged)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "hooked", "1"), timeout=60, what="v1"
    )
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "tagged", "1"),
        timeout=60,
        what="v1 tagged",
    )

    async def register() -> None:
        client = RegistryClient(env.tracking_uri)
        try:
            await client.create_webhook(
                f"operator-{env.model}",
                env.operator.webhook_url,
                list(EVENTS),
                env.operator.webhook_secret,
            )
        finally:
            await client.close()

    asyncio.run(register())
    time.sleep(2)  # MLflow caches its webhook list (MLFLOW_WEBHOOK_CACHE_TTL, 1s in the stack)
    v2 = env.registry.log_version(env.model)
    moved = time.monotonic()
    env.registry.set_alias(env.model, "champion", v2.version)
    # pollInterval is 10m: a rollout inside this window can only come from the webhook. How
    # fast is measured by tests/bench/bench_promotion.py (docs/benchmarks.md), not here: a
    # deadline of seconds fails on a loaded CI machine without anything being wrong.
    eventually(
        lambda: template_version(env.cluster, env.namespace, "hooked") == "2",
        timeout=WELL_BEFORE_THE_POLL,
        what="rollout of v2 began after the alias move, without a poll",
        interval=0.05,
    )
    print(f"alias move -> rollout started: {time.monotonic() - moved:.2f}s")
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "hooked", "2"), timeout=30, what="v2 Ready"
    )

    # a model_version_tag.set delivery moves a selector as promptly
    tagged_at = time.monotonic()
    env.registry.tag_version(env.model, v2.version, "stage", "prod")
    eventually(
        lambda: template_version(env.cluster, env.namespace, "tagged") == "2",
        timeout=WELL_BEFORE_THE_POLL,
        what="rollout of v2 began after the tag, without a poll",
        interval=0.05,
    )
    print(f"version tag set -> rollout started: {time.monotonic() - tagged_at:.2f}s")


def signed_delivery(secret: str) -> tuple[bytes, str, str, str]:
    data = {"name": "any", "alias": "champion", "version": "1"}
    body = json.dumps({"entity": "model_version_alias", "action": "created", "data": data}).encode()
    delivery, now = str(uuid.uuid4()), str(int(time.time()))
    return body, delivery, now, sign(secret, delivery, now, body)


def post(url: str, delivery: tuple[bytes, str, str, str], tls: ssl.SSLContext | None) -> int:
    body, delivery_id, timestamp, signature = delivery
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-MLflow-Delivery-Id": delivery_id,
            "X-MLflow-Timestamp": timestamp,
            "X-MLflow-Signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=tls) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_the_receiver_serves_https_and_a_rotated_secret_file_needs_no_restart(
    crds_installed: KubeCluster, tmp_path: Path
) -> None:
    """As the chart runs it with `webhook.tls.secretName` and `webhook.existingSecret`: the
    certificate and the secrets are files, and the secret file is rotated in place."""
    pki = create_pki(tmp_path / "pki")  # its server certificate names 127.0.0.1
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text("old-secret\n")
    receiver = OperatorProcess(
        kubeconfig=crds_installed.kubeconfig,
        workdir=tmp_path,
        namespaces=("tlshook-*",),  # no object lives there: this operator only receives
        extra_env={
            "MLFLOW_OPERATOR_WEBHOOK_SECRET": "",
            "MLFLOW_OPERATOR_WEBHOOK_SECRET_FILE": str(secret_file),
            "MLFLOW_OPERATOR_WEBHOOK_TLS_CERT_FILE": str(pki.server_cert),
            "MLFLOW_OPERATOR_WEBHOOK_TLS_KEY_FILE": str(pki.server_key),
        },
    ).start()
    try:
        https_url = receiver.webhook_url.replace("http://", "https://")
        trusting_ca = ssl.create_default_context(cafile=str(pki.ca_cert))
        assert post(https_url, signed_delivery("old-secret"), trusting_ca) == 200
        # plain HTTP is not served on that port: the TLS server closes the connection
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
            post(receiver.webhook_url, signed_delivery("old-secret"), None)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            post(https_url, signed_delivery("old-secret"), ssl.create_default_context())

        # the rotation, as a mounted Secret changes: the kubelet swaps the file
        replacement = tmp_path / "next"
        replacement.write_text("old-secret\nnew-secret\n")
        replacement.replace(secret_file)
        assert post(https_url, signed_delivery("new-secret"), trusting_ca) == 200
        assert post(https_url, signed_delivery("old-secret"), trusting_ca) == 200
        replacement.write_text("new-secret\n")
        replacement.replace(secret_file)
        assert post(https_url, signed_delivery("old-secret"), trusting_ca) == 401
        assert post(https_url, signed_delivery("new-secret"), trusting_ca) == 200
        assert receiver.starts == 1
        assert "(https)" in receiver.log()
    finally:
        receiver.stop()
