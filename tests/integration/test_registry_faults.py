"""Registry faults between the operator and a real MLflow: each is a reason, then recovery.

The fault proxy (tests/support/fault_proxy.py) is the one fake here: a real `mlflow server`
cannot answer an SSO login page with 200 or drop a connection half-way; everything behind the
proxy is the real MLflow stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlflow_operator.registry.client import RegistryClient
from mlflow_operator.registry.watcher import Follower, RegistryWatcher
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

EXPECTED = {
    "html": ("RegistryBadResponse", "HTTP 200 but not MLflow's JSON: content type text/html"),
    "503": ("RegistryHttpError", "answered HTTP 503 to registered-models/search"),
    "malformed": ("RegistryBadResponse", "HTTP 200 but not MLflow's JSON"),
    "missing-key": ("RegistryBadResponse", "JSON that is not MLflow's (KeyError: 'name')"),
    "truncated": ("RegistryBadResponse", "sent a broken answer to registered-models/search"),
    "slow": ("RegistryUnreachable", "did not answer registered-models/search within 2s"),
}


@pytest.fixture
def proxy(mlflow_stack: MlflowStack) -> Iterator[FaultProxy]:
    faulty = FaultProxy(mlflow_stack.tracking_uri, slow_seconds=5).start()
    yield faulty
    faulty.stop()


async def test_every_fault_in_front_of_a_real_mlflow_is_reported_then_recovers(
    proxy: FaultProxy, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    v1 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    watcher = RegistryWatcher(RegistryClient(proxy.url, timeout_seconds=2))
    watcher._followers["ml/fraud"] = Follower(model_name, 5.0)
    try:
        await watcher.sweep()
        assert watcher.state(model_name).synced
        for fault, (reason, text) in EXPECTED.items():
            proxy.fault = fault
            await watcher.sweep()
            state = watcher.state(model_name)
            assert (state.synced, state.reason) == (False, reason), (fault, state)
            assert text in state.error, (fault, state.error)
            assert proxy.url in state.error
            # what was read before is kept: the reconcile keeps serving it
            assert state.snapshot is not None
            assert state.snapshot.aliases == {"champion": v1.version}
            proxy.fault = None
            await watcher.sweep()
            assert watcher.state(model_name).synced, fault
        v2 = mlflow_registry.log_version(model_name)
        mlflow_registry.set_alias(model_name, "champion", v2.version)
        await watcher.sweep()
        snapshot = watcher.state(model_name).snapshot
        assert snapshot is not None
        assert snapshot.aliases == {"champion": v2.version}
    finally:
        await watcher.client.close()
