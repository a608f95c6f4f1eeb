"""The whole loop inside the cluster, as a user runs it: the operator installed with helm from
the locally built image, an MLflowServer with managed PostgreSQL and MinIO, a model logged and
registered through that server from outside the cluster, and a ModelDeployment with `serverRef`
serving it. Every pod here runs for real on the real node, the operator's included, in a
namespace that assigns user ids as OpenShift's restricted-v2 does (the chart's `openshift: true`).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.parse
from typing import Any

import mlflow
import pytest

from tests.cluster.fixtures import create_namespace
from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.e2e.kube import ASSIGNED_UID, ASSIGNED_UID_RANGE, emulate_restricted_v2, get_json
from tests.e2e.mlflowservers import admin_of, as_admin, http_status, tracking_url
from tests.e2e.modeldeployments import is_ready_on
from tests.e2e.test_install import fullname, helm_in, install
from tests.e2e.test_modeldeployment_pods import eventually_served, predict, service_url
from tests.mlflowstack.models import DIFFERENT_C, ModelRegistry
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
TIMEOUT = 300.0


def chart_values(node: NodeInfo, namespace: str) -> dict[str, Any]:
    repository, tag = node.images["operator"].rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "watchNamespaces": [namespace],
        "openshift": True,
        "nodeSelector": node.placement["nodeSelector"],
        "tolerations": node.placement["tolerations"],
        "operator": {
            "logFormat": "text",
            "images": {
                "servingCpu": node.images["serving-cpu"],
                "trackingServer": node.images["mlflow-server"],
                "postgres": node.images["postgres"],
                "minio": node.images["minio"],
            },
        },
    }


def assert_ids_are_assigned_and_enforced(cluster: KubeCluster, namespace: str) -> None:
    """The emulation bites (server-side dry runs, which pass through admission): a pod with
    a uid of its own is refused, one without gets the namespace's."""

    def dry_run(security: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                    **security,
                },
                "containers": [
                    {
                        "name": "c",
                        "image": "probe",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
        return cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-",
            input=json.dumps(pod), check=False,
        )  # fmt: skip

    # The API server loads new policies a moment after they are created, and each kind of
    # policy on its own watch: the validating one may bite before the mutating one assigns.
    def refused_own_uid() -> subprocess.CompletedProcess[str] | None:
        result = dry_run({"runAsUser": 1000})
        return result if result.returncode != 0 else None

    def assigned_uid() -> subprocess.CompletedProcess[str] | None:
        result = dry_run({})
        return result if result.returncode == 0 else None

    refused = eventually(
        refused_own_uid, timeout=30, what="emulated restricted-v2 refuses a uid of the pod's own"
    )
    assert "must be in the namespace's range" in refused.stderr, refused.stderr
    assigned = eventually(
        assigned_uid, timeout=30, what="emulated restricted-v2 admits a pod without a uid"
    )
    assert json.loads(assigned.stdout)["spec"]["securityContext"]["runAsUser"] == ASSIGNED_UID


READER_SECRET = "iris-mlflow-reader"
# Run in a serving pod with its own environment: what a model's code could do with it.
TRY_WITH_POD_CREDENTIALS = """
import base64, json, os, sys, urllib.error, urllib.request
model, other = sys.argv[1], sys.argv[2]
base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/"
token = os.environ["MLFLOW_TRACKING_USERNAME"] + ":" + os.environ["MLFLOW_TRACKING_PASSWORD"]
auth = "Basic " + base64.b64encode(token.encode()).decode()
def status(path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method="POST" if data else "GET",
        headers={"Authorization": auth, "Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as err:
        return err.code
print(json.dumps({
    "user": os.environ["MLFLOW_TRACKING_USERNAME"],
    "password": os.environ["MLFLOW_TRACKING_PASSWORD"],
    "read": status("registered-models/get?name=" + model),
    "set_alias": status("registered-models/alias",
                        {"name": model, "alias": "champion", "version": "1"}),
    "create_version": status("model-versions/create",
                             {"name": model, "source": "models:/m-0123456789abcdef"}),
    "read_another_model": status("registered-models/get?name=" + other),
}))
"""


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def reader_credentials(cluster: KubeCluster, namespace: str) -> tuple[str, str]:
    found = cluster.kubectl("get", "secret", "-n", namespace, READER_SECRET, "-o", "json",
                            check=False)  # fmt: skip
    if found.returncode != 0:
        return "", ""
    data = {k: base64.b64decode(v).decode() for k, v in json.loads(found.stdout)["data"].items()}
    return data["MLFLOW_TRACKING_USERNAME"], data["MLFLOW_TRACKING_PASSWORD"]


def assert_pods_read_as_their_own_read_only_user(
    cluster: KubeCluster, namespace: str, name: str, model: str
) -> str:
    """Issue 16: the serving pods' credentials read their model and cannot set an alias,
    create a version or read another model; they are not the admin's. Returns the password."""
    template = get_json(cluster, "-n", namespace, "deployment", name)["spec"]["template"]
    env = template["spec"]["containers"][0]["env"]
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
    assert secrets == {READER_SECRET}
    tried = json.loads(
        cluster.kubectl(
            "exec", "-n", namespace, f"deployment/{name}", "--",
            "python", "-c", TRY_WITH_POD_CREDENTIALS, model, "someone-elses-model",
        ).stdout
    )  # fmt: skip
    assert tried["user"] == f"modeldeployment/{namespace}/{name}"
    assert (tried["user"], tried["password"]) == reader_credentials(cluster, namespace)
    outcome = {k: tried[k] for k in ("read", "set_alias", "create_version", "read_another_model")}
    assert outcome == {
        "read": 200, "set_alias": 403, "create_version": 403, "read_another_model": 403,
    }  # fmt: skip
    return str(tried["password"])


def test_a_model_registered_in_the_in_cluster_server_is_served_by_server_ref(
    kube_cluster: KubeCluster,
    crds_installed: KubeCluster,
    real_node: NodeInfo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = kube_cluster
    ns = create_namespace(cluster, prefix="loop")
    release = "mlflow-operator"
    forget_policies = emulate_restricted_v2(cluster, ns)
    try:
        assert_ids_are_assigned_and_enforced(cluster, ns)
        install(cluster, release, ns, chart_values(real_node, ns))
        # the operator's pod (with modelCache.enabled the cache's pods are the release's too)
        operator_pods = (
            f"app.kubernetes.io/name=mlflow-operator,app.kubernetes.io/instance={release}"
        )
        pods = get_json(cluster, "-n", ns, "pods", "-l", operator_pods)["items"]
        assert len(pods) == 2  # the chart's default: one acts, one stands by
        assert {p["spec"]["nodeName"] for p in pods} == {real_node.name}  # real processes
        leader_selector = f"{operator_pods},mlflowops.dev/leader=true"
        (pod,) = eventually(
            lambda: get_json(cluster, "-n", ns, "pods", "-l", leader_selector)["items"],
            timeout=60,
            what="the leader's pod label",
        )
        lease = get_json(cluster, "-n", ns, "lease", fullname(release))
        assert lease["spec"]["holderIdentity"].startswith(pod["metadata"]["name"] + "/")

        cluster.apply(
            {
                "apiVersion": "mlflowops.dev/v1alpha1",
                "kind": "MLflowServer",
                "metadata": {"name": "mlflow", "namespace": ns},
                "spec": {
                    "replicas": 1,
                    "backendStore": {"postgres": {"managed": {"storage": "1Gi"}}},
                    "artifactStore": {"s3": {"managed": {"storage": "1Gi"}}},
                    "podTemplate": dict(real_node.placement),
                },
            }
        )
        cluster.kubectl(
            "wait", "-n", ns, "--for=condition=Ready", "mlflowserver/mlflow",
            f"--timeout={TIMEOUT:.0f}s", timeout=TIMEOUT + 10,
        )  # fmt: skip

        # A data scientist registers a model through the server (from outside the cluster).
        url, admin = tracking_url(cluster, ns), admin_of(cluster, ns)
        model = "iris"
        with as_admin(monkeypatch, admin):
            registry = ModelRegistry(url)
            v1 = registry.log_version(model)
            registry.set_alias(model, "champion", v1.version)
            registry.log_version("someone-elses-model")

        cluster.apply(
            {
                "apiVersion": "mlflowops.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris", "namespace": ns},
                "spec": {
                    "model": {"name": model, "alias": "champion"},
                    "registry": {"serverRef": {"name": "mlflow"}, "pollInterval": "5s"},
                    "serving": {"replicas": 1, "podTemplate": dict(real_node.placement)},
                },
            }
        )
        eventually(
            lambda: is_ready_on(cluster, ns, "iris", v1.version),
            timeout=TIMEOUT,
            what="Ready on v1",
        )
        serving = service_url(cluster, ns, "iris")
        eventually_served(serving, v1)
        first_password = assert_pods_read_as_their_own_read_only_user(cluster, ns, "iris", model)

        # Rotation: delete the Secret; a new password, the old one refused by MLflow.
        cluster.kubectl("delete", "secret", "-n", ns, READER_SECRET)
        second_password = eventually(
            lambda: (p := reader_credentials(cluster, ns)[1]) != first_password and p,
            timeout=60,
            what="a new reader password",
        )
        user = reader_credentials(cluster, ns)[0]
        models_get = f"{url}/api/2.0/mlflow/registered-models/get?name={model}"
        eventually(
            lambda: http_status(models_get, {"Authorization": basic(user, second_password)}) == 200,
            timeout=60,
            what="MLflow takes the new password",
        )
        assert http_status(models_get, {"Authorization": basic(user, first_password)}) == 401

        # Moving the alias in the in-cluster registry is the whole release.
        with as_admin(monkeypatch, admin):
            v2 = registry.log_version(model, c=DIFFERENT_C)
            moved = time.monotonic()
            registry.set_alias(model, "champion", v2.version)
        eventually(
            lambda: is_ready_on(cluster, ns, "iris", v2.version),
            timeout=TIMEOUT,
            what="Ready on v2",
        )
        print(f"in-cluster alias move to Ready on v2: {time.monotonic() - moved:.1f}s")
        eventually_served(serving, v2)
        # the pods of v2 started after the rotation: they read with the new password
        assert (
            assert_pods_read_as_their_own_read_only_user(cluster, ns, "iris", model)
            == second_password
        )
        key = f"mlflow-operator.{ns}.iris"
        with as_admin(monkeypatch, admin):
            tagged = eventually(
                lambda: registry.get_version(model, v2.version).tags.get(key),
                timeout=30,
                what="write-back tag",
            )
        assert tagged.startswith("serving since ")

        # Scale to zero through the chart's activator: the operator pod's own IP (downward
        # API), its EndpointSlice rights; the first request after the idle spell is answered.
        cluster.kubectl(
            "-n", ns, "patch", "mdep", "iris", "--type=merge", "-p",
            json.dumps({"spec": {"serving": {"runtime": "batched", "autoscaling": {
                "minReplicas": 0, "maxReplicas": 1, "target": {"concurrency": 4},
                "scaleDownDelay": "10s",
            }, "monitoring": {"drift": {"referenceRows": 100}}}}}),
        )  # fmt: skip
        eventually(
            lambda: (
                (get_json(cluster, "-n", ns, "mdep", "iris").get("status") or {})
                .get("autoscaling", {})
                .get("desiredReplicas")
                == 0
                and not get_json(
                    cluster, "-n", ns, "pods", "-l", "mlflowops.dev/modeldeployment=iris"
                )["items"]
            ),
            timeout=TIMEOUT,
            what="the batched pods, then none",
        )
        operator_ip = get_json(cluster, "-n", ns, "pod", pod["metadata"]["name"])["status"]["podIP"]
        activator = get_json(cluster, "-n", ns, "endpointslice", "iris-activator")
        assert activator["endpoints"][0]["addresses"] == [operator_ip]
        woken = time.monotonic()
        # held by the activator until a pod answers (a cold start: seconds)
        assert predict(serving, timeout=TIMEOUT) == v2.predict()
        print(f"in-cluster: first answer {time.monotonic() - woken:.1f}s after zero pods")

        # serving.monitoring: the read-only user writes its drift reference (the first 100
        # rows) to the ModelDeployment's monitoring experiment, and nothing to v2's own run
        with as_admin(monkeypatch, admin):
            mlflow_client = mlflow.MlflowClient(url)
            watched = mlflow_client.get_experiment_by_name(f"mlflow-operator/{ns}/iris")
            assert watched is not None
            (run,) = mlflow_client.search_runs([watched.experiment_id])
            assert run.data.tags["mlflowops.dev/version"] == v2.version
            profile = f"monitoring/{v2.version}/reference-profile.json"

            def reference_stored() -> bool:
                # Requests go on while waiting: a pod idle for scaleDownDelay (10 s) is
                # stopped, and its first lookups as the basic-auth reader take seconds.
                predict(serving, timeout=TIMEOUT)
                listed = mlflow_client.list_artifacts(run.info.run_id, f"monitoring/{v2.version}")
                return [a.path for a in listed] == [profile]

            eventually(
                reference_stored,
                timeout=120,
                interval=1,
                what="the drift reference in the monitoring run",
            )
            assert not mlflow_client.list_artifacts(v2.run_id, "monitoring")
        watching = get_json(cluster, "-n", ns, "deployment", "iris")["spec"]["template"]
        command = watching["spec"]["containers"][0]["command"]
        assert command[command.index("--monitoring-run-id") + 1] == run.info.run_id

        # both replicas: the leader's work, and the standby's (it only ever read its Lease)
        log = "".join(cluster.kubectl("logs", "-n", ns, p["metadata"]["name"]).stdout for p in pods)
        for refusal in ("Forbidden", "forbidden", "Traceback"):
            assert refusal not in log, log[-3000:]
        events = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
        for secret in (first_password, second_password, admin.password):
            assert secret not in log
            assert secret not in events

        # every pod ran under the uid the namespace assigned, none under an id of its own
        first, last = ASSIGNED_UID_RANGE
        # (on the real node: a pod on a KWOK node runs only in simulation)
        running = [
            p for p in get_json(cluster, "-n", ns, "pods")["items"]
            if p["status"].get("phase") == "Running" and p["spec"]["nodeName"] == real_node.name
        ]  # fmt: skip
        components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in running}
        assert {"operator", "postgresql", "minio", "tracking-server", "serving"} <= components
        for running_pod in running:
            assert running_pod["spec"]["securityContext"]["runAsUser"] == ASSIGNED_UID
            name = running_pod["metadata"]["name"]
            uid = cluster.kubectl("exec", "-n", ns, name, "--", "id", "-u").stdout.strip()
            assert first <= int(uid) <= last, (name, uid)

        # The ModelDeployment's user goes with it (and its Secret, by owner reference).
        cluster.kubectl("delete", "mdep", "-n", ns, "iris", "--timeout=120s", timeout=130)
        users_get = f"{url}/api/2.0/mlflow/users/get?username={urllib.parse.quote(user)}"
        assert http_status(users_get, {"Authorization": admin.header}) == 404
        eventually(
            lambda: cluster.kubectl(
                "get", "secret", "-n", ns, READER_SECRET, check=False
            ).returncode != 0,
            timeout=60,
            what="the reader Secret garbage-collected",
        )  # fmt: skip
    finally:
        forget_policies()
        cluster.kubectl(
            "delete", "-n", ns, "mdep,mlflowserver", "--all", "--timeout=60s", check=False
        )
        helm_in(cluster, "uninstall", release, "-n", ns, check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
