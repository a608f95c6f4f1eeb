"""One registry sweep serves many ModelDeployments: requests grow with models, not followers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.modeldeployments import ModelDeploymentEnv, is_ready_on, model_deployment
from tests.mlflowstack.stack import MlflowStack
from tests.support.counting_proxy import CountingProxy
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
MODELS = 5
POLL = 5.0
WINDOW = 4 * POLL


@pytest.fixture
def proxy(mlflow_stack: MlflowStack) -> Iterator[CountingProxy]:
    counting = CountingProxy(mlflow_stack.tracking_uri).start()
    yield counting
    counting.stop()


def requests_in_window(proxy: CountingProxy) -> int:
    before = proxy.total("GET /api/2.0/mlflow/")
    time.sleep(WINDOW)
    return proxy.total("GET /api/2.0/mlflow/") - before


def test_fifty_deployments_of_five_models_cost_what_five_cost(
    proxy: CountingProxy, env: ModelDeploymentEnv
) -> None:
    models = [f"{env.model}-{i}" for i in range(MODELS)]
    for name in models:
        env.registry.set_alias(name, "champion", env.registry.log_version(name).version)

    def deploy(index: int) -> str:
        name = f"md-{index}"
        env.cluster.apply(
            model_deployment(
                name, env.namespace, models[index % MODELS], proxy.url,
                poll=f"{POLL:.0f}s", serving={"replicas": 1},
            )
        )  # fmt: skip
        return name

    first = [deploy(i) for i in range(MODELS)]
    for name in first:
        eventually(
            lambda n=name: is_ready_on(env.cluster, env.namespace, n, "1"), timeout=60, what=name
        )
    with_five = requests_in_window(proxy)
    rest = [deploy(i) for i in range(MODELS, 50)]
    for name in rest:
        eventually(
            lambda n=name: is_ready_on(env.cluster, env.namespace, n, "1"), timeout=120, what=name
        )
    with_fifty = requests_in_window(proxy)
    print(f"MLflow GET requests in {WINDOW:.0f}s: 5 deployments {with_five}, 50 {with_fifty}")
    # one registered-models/search per interval, whatever the number of followers
    assert with_fifty <= with_five + 1
    assert with_fifty <= WINDOW / POLL + 2
