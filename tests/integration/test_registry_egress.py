"""The operator's way out to MLflow as platforms set it up: through the egress proxy of its
environment (HTTP_PROXY, NO_PROXY), and to an https:// server signed by a private CA (the
`ca_bundle_file` setting). A real MLflow stack behind a real proxy and a real TLS front."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mlflow_operator.registry.client import RegistryClient, RegistryError, trusting
from tests.cluster.pki import create_pki
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.counting_proxy import CountingProxy

pytestmark = pytest.mark.integration

# A name no resolver knows: a request for it arrives only through a proxy.
UNRESOLVABLE = "http://mlflow.invalid:5000"


async def aliases(client: RegistryClient, model: str) -> dict[str, str]:
    try:
        return dict((await client.search_models([model]))[model].aliases)
    finally:
        await client.close()


async def test_requests_go_through_the_environments_proxy_except_for_no_proxy_hosts(
    counting_proxy: CountingProxy,
    mlflow_registry: ModelRegistry,
    model_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v1 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", counting_proxy.url)

    assert await aliases(RegistryClient(UNRESOLVABLE), model_name) == {"champion": v1.version}
    through_proxy = counting_proxy.total()
    assert through_proxy >= 1

    monkeypatch.setenv("NO_PROXY", "mlflow.invalid")
    with pytest.raises(RegistryError, match=r"cannot reach MLflow at http://mlflow\.invalid:5000"):
        await aliases(RegistryClient(UNRESOLVABLE), model_name)
    assert counting_proxy.total() == through_proxy


async def test_an_https_mlflow_of_a_private_ca_is_trusted_with_the_ca_bundle_only(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str, tmp_path: Path
) -> None:
    v1 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    pki = create_pki(tmp_path / "pki")  # a CA of its own; its server certificate names 127.0.0.1
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server_cert, pki.server_key)
    front = CountingProxy(mlflow_stack.tracking_uri, tls=tls).start()
    try:
        with pytest.raises(RegistryError, match="ClientConnectorCertificateError"):
            await aliases(RegistryClient(front.url), model_name)
        trusted = RegistryClient(front.url, tls=trusting(str(pki.ca_cert)))
        assert await aliases(trusted, model_name) == {"champion": v1.version}
    finally:
        front.stop()
    assert trusting("") is None  # no bundle: aiohttp's defaults, the system's CAs
