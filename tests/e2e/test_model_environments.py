"""`serving.envManager: uv` on the real node: each version's environment is built once, by a
Job of the serving image, from a package index the pods never reach; the pods of the version
start only after the Job succeeded, and start from what it built. The index is one of the
test's own (tests/support/package_index.py), which counts every request, so "the pods asked
the index nothing" is measured, not assumed. A version whose requirement the index lacks gets
no pod, and what serves keeps serving.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from importlib.metadata import version as installed
from typing import Any

import pytest
import requests

from tests.cluster.launcher import KubeCluster
from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import (
    RealPodsEnv,
    condition,
    event_reasons,
    is_ready_on,
    model_deployment,
    status,
)
from tests.e2e.test_modeldeployment_pods import (
    ROLLOUT_TIMEOUT,
    on_real_node,
    pods_of_version,
    restarts,
    service_url,
)
from tests.e2e.test_modeldeployment_pods import serving_pods as model_deployment_pods
from tests.support.package_index import PackageIndex, package_index
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# A pyfunc whose library no serving image has: only an environment built for it serves it.
# Imported when the model loads (load_context), not when MLflow logs it here, where it is
# not installed either.
CAMEL_MODEL = """
import mlflow


class Camel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import inflection

        self.camelize = inflection.camelize

    def predict(self, context, model_input, params=None):
        return [self.camelize(str(text)) for text in model_input["text"]]


mlflow.models.set_model(Camel())
"""
NEEDS = "inflection==0.5.1"
MISSING = "this-package-is-not-on-the-index==1.0"
# What MLflow writes into python_env.yaml (build dependencies of the logging environment) and
# what the scoring server needs in the environment: all of them must be on the index.
REQUIREMENTS = [
    f"mlflow-skinny=={installed('mlflow-skinny')}",
    f"numpy=={installed('numpy')}",
    f"pandas=={installed('pandas')}",
    NEEDS,
]
INDEX = [
    *REQUIREMENTS,
    f"pip=={installed('pip')}",
    f"setuptools=={installed('setuptools')}",
    "wheel",
]
# a Job installs ~40 wheels from the index, loads the model, packs and uploads ~150 MB
BUILD_TIMEOUT = 420.0


@pytest.fixture
def index() -> Any:
    with package_index(INDEX) as served:
        yield served


def predict(url: str) -> list[str]:
    body = {"dataframe_split": {"columns": ["text"], "data": [["model_delivery"], ["uv_env"]]}}
    session = requests.Session()
    session.trust_env = False
    response = session.post(f"{url}/invocations", json=body, timeout=30)
    response.raise_for_status()
    return [str(p) for p in response.json()["predictions"]]


def jobs(cluster: KubeCluster, namespace: str, version: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get_json(
        cluster, "-n", namespace, "jobs", "-l",
        f"app.kubernetes.io/component=environment,mlflowops.dev/model-version={version}",
    )["items"]  # fmt: skip
    return found


def serving_pods(cluster: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The ModelDeployment's serving pods; not its environment Jobs' (which carry its name)."""
    return [
        pod for pod in model_deployment_pods(cluster, namespace, name)
        if pod["metadata"]["labels"].get("app.kubernetes.io/component") == "serving"
    ]  # fmt: skip


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def uv_serving(pods_env: RealPodsEnv, index: PackageIndex) -> dict[str, Any]:
    address = pods_env.cluster.expose_to_pods(index.port)
    index_env = [
        {"name": "UV_FIND_LINKS", "value": f"http://{address}/"},
        {"name": "UV_NO_INDEX", "value": "1"},  # never PyPI: it is out of the pods' reach
    ]
    return on_real_node(pods_env.node, runtime="mlflow", envManager="uv", replicas=2, env=index_env)


def test_uv_builds_each_version_once_in_a_job_and_the_pods_never_reach_the_index(
    pods_env: RealPodsEnv, index: PackageIndex
) -> None:
    cluster, ns, model = pods_env.cluster, pods_env.namespace, pods_env.model
    v1 = pods_env.registry.log_code_version(model, CAMEL_MODEL, requirements=REQUIREMENTS)
    pods_env.registry.set_alias(model, "champion", v1)
    manifest = model_deployment(
        "camel", ns, model, pods_env.tracking_uri, serving=uv_serving(pods_env, index)
    )
    cluster.apply(manifest)
    started = time.monotonic()

    # the Job first, alone: no serving pod exists while it builds
    eventually(lambda: jobs(cluster, ns, v1), timeout=60, what="v1's environment Job")
    eventually(
        lambda: (
            condition(status(cluster, ns, "camel"), "Progressing").get("reason")
            == "BuildingEnvironment"
        ),
        timeout=60,
        what="Progressing BuildingEnvironment",
    )
    assert serving_pods(cluster, ns, "camel") == []
    eventually(
        lambda: (status(cluster, ns, "camel").get("environment") or {}).get("phase") == "Built",
        timeout=BUILD_TIMEOUT,
        what="v1's environment built",
    )
    built = time.monotonic()
    (job,) = jobs(cluster, ns, v1)
    asked_by_the_job = index.asked()
    assert asked_by_the_job > 0  # the Job installed from the index
    eventually(
        lambda: is_ready_on(cluster, ns, "camel", v1),
        timeout=ROLLOUT_TIMEOUT,
        what="Ready on v1",
    )
    print(
        f"uv: environment built {built - started:.1f}s after the apply, Ready on v1 "
        f"{time.monotonic() - built:.1f}s later; the Job made {asked_by_the_job} index requests"
    )
    url = service_url(cluster, ns, "camel")
    eventually(
        lambda: predict(url) == ["ModelDelivery", "UvEnv"], timeout=30, what="camelized answers"
    )
    pods = pods_of_version(serving_pods(cluster, ns, "camel"), v1)
    assert len(pods) == 2
    completed = when(job["status"]["completionTime"])
    for pod in pods:
        assert when(pod["metadata"]["creationTimestamp"]) >= completed.replace(microsecond=0)
        assert restarts(pod) == 0
    # two pods started, downloaded the built environment, served: not one request to the index
    assert index.asked() == asked_by_the_job, index.requests[asked_by_the_job:]

    # a version whose requirement the index lacks: its Job fails, it gets no pod, v1 serves
    v2 = pods_env.registry.log_code_version(
        model, CAMEL_MODEL, requirements=[*REQUIREMENTS, MISSING]
    )
    pods_env.registry.set_alias(model, "champion", v2)
    eventually(
        lambda: (
            condition(status(cluster, ns, "camel"), "Progressing").get("reason")
            == "EnvironmentFailed"
        ),
        timeout=BUILD_TIMEOUT,
        what="v2's environment failed",
    )
    st = status(cluster, ns, "camel")
    message = st["environment"]["message"]
    assert "this-package-is-not-on-the-index" in message, message
    print(f"uv: v2 held back: {message}")
    assert condition(st, "Ready")["status"] == "True"
    assert st["servingVersion"] == v1
    assert pods_of_version(serving_pods(cluster, ns, "camel"), v2) == []
    assert "EnvironmentFailed" in event_reasons(cluster, ns, "camel")
    assert predict(url) == ["ModelDelivery", "UvEnv"]

    # a replaced pod of v1 starts from the built environment too: still nothing asked
    asked = index.asked()
    victim = pods_of_version(serving_pods(cluster, ns, "camel"), v1)[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", "-n", ns, victim, "--wait=false")

    def replaced() -> bool:
        pods = pods_of_version(serving_pods(cluster, ns, "camel"), v1)
        names = {p["metadata"]["name"] for p in pods}
        ready = [
            p for p in pods
            if all(c.get("ready") for c in p["status"].get("containerStatuses", [{}]))
        ]  # fmt: skip
        return victim not in names and len(ready) == 2

    eventually(replaced, timeout=ROLLOUT_TIMEOUT, what="v1's pod replaced and ready")
    assert len(jobs(cluster, ns, v1)) == 1  # built once
    assert index.asked() == asked, index.requests[asked:]
    print(json.dumps({"index_requests_by_the_job": asked_by_the_job, "by_the_pods": 0}))
