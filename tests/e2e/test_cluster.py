"""Acceptance of the test cluster (issue 3): it behaves like a real cluster where the operator
needs it to: rollouts, scheduling of GPU pods, garbage collection, RBAC, restart after a crash,
and pods kept unready on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.launcher import KubeCluster
from tests.cluster.simulation import NEVER_READY_LABEL
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

IMAGE = "registry.example/serve"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# Test namespaces enforce Pod Security "restricted": what a pod needs to be admitted there.
RESTRICTED_POD = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
}
RESTRICTED_CONTAINER = {
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
}


def get_json(cluster: KubeCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def deployment(
    name: str,
    replicas: int,
    image: str = f"{IMAGE}:v1",
    labels: dict[str, str] | None = None,
    progress_deadline: int = 600,
) -> dict[str, Any]:
    pod_labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    **RESTRICTED_POD,
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            **RESTRICTED_CONTAINER,
                        }
                    ],
                },
            },
        },
    }


def pod(name: str, gpus: int = 0, tolerate_gpu: bool = False, **spec: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "100m"}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    body: dict[str, Any] = {
        **RESTRICTED_POD,
        "containers": [
            {"name": "app", "image": f"{IMAGE}:v1", "resources": resources, **RESTRICTED_CONTAINER}
        ],
        **spec,
    }
    if tolerate_gpu:
        body["tolerations"] = [GPU_TOLERATION]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def apply_in(cluster: KubeCluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))


def rollout_status(cluster: KubeCluster, namespace: str, name: str, timeout: str = "90s") -> None:
    cluster.kubectl(
        "rollout", "status", "-n", namespace, f"deployment/{name}", f"--timeout={timeout}"
    )


def pods_of(cluster: KubeCluster, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(cluster, "pods", "-n", namespace, "-l", f"app={app}")[
        "items"
    ]
    return [p for p in items if "deletionTimestamp" not in p["metadata"]]


def is_ready(pod_obj: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod_obj.get("status", {}).get("conditions", [])
    )


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj["status"].get("conditions", []) if c["type"] == kind), {})


# -- Deployments -------------------------------------------------------------------------------


def test_deployment_becomes_available_scales_and_rolls_out(
    kube_cluster: KubeCluster, k8s_namespace: str
) -> None:
    apply_in(kube_cluster, k8s_namespace, deployment("web", replicas=3))
    rollout_status(kube_cluster, k8s_namespace, "web")
    pods = pods_of(kube_cluster, k8s_namespace, "web")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" and is_ready(p) for p in pods)
    assert all(p["spec"]["nodeName"].startswith("kwok-cpu-") for p in pods)
    assert all(p["status"].get("podIP") for p in pods)

    kube_cluster.kubectl("scale", "-n", k8s_namespace, "deployment/web", "--replicas=5")
    rollout_status(kube_cluster, k8s_namespace, "web")
    assert (
        get_json(kube_cluster, "deployment/web", "-n", k8s_namespace)["status"]["availableReplicas"]
        == 5
    )

    kube_cluster.kubectl("set", "image", "-n", k8s_namespace, "deployment/web", f"app={IMAGE}:v2")
    rollout_status(kube_cluster, k8s_namespace, "web")
    eventually(
        lambda: len(pods_of(kube_cluster, k8s_namespace, "web")) == 5,
        timeout=30,
        what="old pods gone after the rollout",
        interval=0.1,
    )
    pods = pods_of(kube_cluster, k8s_namespace, "web")
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {f"{IMAGE}:v2"}
    replica_sets = get_json(kube_cluster, "replicasets", "-n", k8s_namespace, "-l", "app=web")
    assert sorted(rs["status"]["replicas"] for rs in replica_sets["items"]) == [0, 5]


# -- scheduling on simulated CPU and GPU nodes -------------------------------------------------


def test_the_simulated_nodes_advertise_cpu_memory_and_gpus(kube_cluster: KubeCluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in get_json(kube_cluster, "nodes")["items"]}
    cpu = [n for name, n in nodes.items() if name.startswith("kwok-cpu-")]
    gpu = [n for name, n in nodes.items() if name.startswith("kwok-gpu-")]
    assert len(cpu) == 3
    assert len(gpu) == 2
    for node in cpu:
        assert node["status"]["allocatable"]["cpu"] == "8"
        assert node["status"]["allocatable"]["memory"] == "32Gi"
        assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    for node in gpu:
        assert node["status"]["allocatable"]["memory"] == "64Gi"
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
        assert node["spec"]["taints"] == [
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
        ]


def test_a_pod_asking_for_one_gpu_lands_on_a_gpu_node(
    kube_cluster: KubeCluster, k8s_namespace: str
) -> None:
    apply_in(kube_cluster, k8s_namespace, pod("gpu-one", gpus=1, tolerate_gpu=True))
    kube_cluster.kubectl(
        "wait", "-n", k8s_namespace, "--for=condition=Ready", "pod/gpu-one", "--timeout=60s"
    )
    placed = get_json(kube_cluster, "pod/gpu-one", "-n", k8s_namespace)
    assert placed["spec"]["nodeName"].startswith("kwok-gpu-")


def test_a_pod_asking_for_more_gpus_than_a_node_has_stays_pending(
    kube_cluster: KubeCluster, k8s_namespace: str
) -> None:
    apply_in(kube_cluster, k8s_namespace, pod("gpu-eight", gpus=8, tolerate_gpu=True))
    kube_cluster.kubectl(
        "wait",
        "-n",
        k8s_namespace,
        "--for=jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}=Unschedulable",
        "pod/gpu-eight",
        "--timeout=60s",
    )
    pending = get_json(kube_cluster, "pod/gpu-eight", "-n", k8s_namespace)
    assert pending["status"]["phase"] == "Pending"
    assert "nvidia.com/gpu" in condition(pending, "PodScheduled")["message"]
    assert "nodeName" not in pending["spec"]


def test_pods_without_the_gpu_toleration_never_land_on_gpu_nodes(
    kube_cluster: KubeCluster, k8s_namespace: str
) -> None:
    # Many pods, so that the spread would put some on the (emptier) GPU nodes if it could.
    apply_in(kube_cluster, k8s_namespace, deployment("cpu-only", replicas=10))
    rollout_status(kube_cluster, k8s_namespace, "cpu-only")
    nodes = {p["spec"]["nodeName"] for p in pods_of(kube_cluster, k8s_namespace, "cpu-only")}
    assert nodes
    assert all(n.startswith("kwok-cpu-") for n in nodes)

    # Asking for a GPU node without tolerating its taint: unschedulable, with the taint named.
    apply_in(
        kube_cluster,
        k8s_namespace,
        pod("gpu-no-toleration", nodeSelector={"nvidia.com/gpu.present": "true"}),
    )
    kube_cluster.kubectl(
        "wait",
        "-n",
        k8s_namespace,
        "--for=jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}=Unschedulable",
        "pod/gpu-no-toleration",
        "--timeout=60s",
    )
    stuck = get_json(kube_cluster, "pod/gpu-no-toleration", "-n", k8s_namespace)
    assert "untolerated taint" in condition(stuck, "PodScheduled")["message"]


# -- garbage collection ------------------------------------------------------------------------


def test_deleting_an_owner_deletes_its_dependents(
    kube_cluster: KubeCluster, k8s_namespace: str
) -> None:
    owner = json.loads(
        kube_cluster.kubectl(
            "create", "configmap", "owner", "-n", k8s_namespace, "-o", "json"
        ).stdout
    )
    owner_ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    for index in range(3):
        apply_in(
            kube_cluster,
            k8s_namespace,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"dependent-{index}", "ownerReferences": [owner_ref]},
                "data": {"index": str(index)},
            },
        )
    apply_in(kube_cluster, k8s_namespace, deployment("owned", replicas=2))
    rollout_status(kube_cluster, k8s_namespace, "owned")

    kube_cluster.kubectl("delete", "configmap", "owner", "-n", k8s_namespace)
    kube_cluster.kubectl("delete", "deployment", "owned", "-n", k8s_namespace, "--wait=false")

    def dependents_gone() -> bool:
        left = get_json(kube_cluster, "configmaps,replicasets,pods", "-n", k8s_namespace)
        names = {i["metadata"]["name"] for i in left["items"]}
        return not any(n.startswith(("dependent-", "owned-")) for n in names)

    eventually(
        dependents_gone, timeout=60, what="garbage collection of the dependents", interval=0.1
    )


# -- RBAC --------------------------------------------------------------------------------------


def token_kubeconfig(cluster: KubeCluster, token: str, path: Path) -> Path:
    """The cluster's kubeconfig with its user swapped for a bearer token."""
    config = yaml.safe_load(
        cluster.kubectl("config", "view", "--raw", "--minify", "--flatten").stdout
    )
    config["users"][0]["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_service_account_is_refused_outside_its_role(
    kube_cluster: KubeCluster, k8s_namespace: str, tmp_path: Path
) -> None:
    ns = ["-n", k8s_namespace]
    kube_cluster.kubectl("create", "serviceaccount", "narrow", *ns)
    kube_cluster.kubectl(
        "create", "role", "read-configmaps", "--verb=get,list", "--resource=configmaps", *ns
    )
    kube_cluster.kubectl(
        "create",
        "rolebinding",
        "narrow-reads",
        "--role=read-configmaps",
        f"--serviceaccount={k8s_namespace}:narrow",
        *ns,
    )
    token = kube_cluster.kubectl("create", "token", "narrow", *ns).stdout.strip()
    narrow = KubeCluster(
        token_kubeconfig(kube_cluster, token, tmp_path / "narrow.kubeconfig"),
        kube_cluster.server,
        embedded=False,
    )

    assert narrow.kubectl("get", "configmaps", *ns).returncode == 0
    for refused in (
        ["get", "secrets", *ns],
        ["create", "configmap", "nope", *ns],
        ["get", "configmaps", "-n", "default"],
        ["get", "nodes"],
    ):
        result = narrow.kubectl(*refused, "-v=6", check=False)
        assert result.returncode != 0, refused
        assert "403 Forbidden" in result.stderr, (refused, result.stderr[-500:])
        assert f"system:serviceaccount:{k8s_namespace}:narrow" in result.stderr


# -- unready pods on purpose (for rollback tests) ----------------------------------------------


def test_pods_with_the_never_ready_label_run_but_never_get_ready(
    kube_cluster: KubeCluster, k8s_namespace: str
) -> None:
    if not kube_cluster.embedded:
        pytest.skip("needs KWOK with the stages of tests/cluster (the embedded cluster)")
    stuck = deployment("stuck", replicas=2, labels={NEVER_READY_LABEL: "true"}, progress_deadline=5)
    apply_in(kube_cluster, k8s_namespace, stuck)
    kube_cluster.kubectl(
        "wait",
        "-n",
        k8s_namespace,
        "deployment/stuck",
        "--timeout=60s",
        "--for=jsonpath={.status.conditions[?(@.type=='Progressing')].reason}"
        "=ProgressDeadlineExceeded",
    )
    pods = pods_of(kube_cluster, k8s_namespace, "stuck")
    assert pods
    assert all(p["status"]["phase"] == "Running" and not is_ready(p) for p in pods)
    status = get_json(kube_cluster, "deployment/stuck", "-n", k8s_namespace)["status"]
    assert status.get("readyReplicas", 0) == 0


@pytest.fixture
def unready_rules(kube_cluster: KubeCluster) -> Iterator[KubeCluster]:
    if not kube_cluster.embedded:
        pytest.skip("needs KWOK with the stages of tests/cluster (the embedded cluster)")
    yield kube_cluster
    kube_cluster.reset_unready_rules()


def test_pods_of_a_chosen_model_version_stay_unready_and_a_rollback_recovers(
    unready_rules: KubeCluster, k8s_namespace: str
) -> None:
    cluster = unready_rules
    cluster.keep_pods_unready("mlflowops.dev/model-version", ["8"])
    version = "mlflowops.dev/model-version"
    apply_in(
        cluster, k8s_namespace, deployment("model", 2, labels={version: "7"}, progress_deadline=5)
    )
    rollout_status(cluster, k8s_namespace, "model")

    apply_in(
        cluster, k8s_namespace, deployment("model", 2, labels={version: "8"}, progress_deadline=5)
    )
    cluster.kubectl(
        "wait",
        "-n",
        k8s_namespace,
        "deployment/model",
        "--timeout=60s",
        "--for=jsonpath={.status.conditions[?(@.type=='Progressing')].reason}"
        "=ProgressDeadlineExceeded",
    )
    pods = pods_of(cluster, k8s_namespace, "model")
    by_version = {v: [p for p in pods if p["metadata"]["labels"][version] == v] for v in "78"}
    assert len(by_version["7"]) == 2
    assert all(is_ready(p) for p in by_version["7"])
    assert by_version["8"]
    assert not any(is_ready(p) for p in by_version["8"])
    assert all(p["status"]["phase"] == "Running" for p in by_version["8"])

    cluster.kubectl("rollout", "undo", "-n", k8s_namespace, "deployment/model")
    rollout_status(cluster, k8s_namespace, "model")
    eventually(
        lambda: (
            {p["metadata"]["labels"][version] for p in pods_of(cluster, k8s_namespace, "model")}
            == {"7"}
        ),
        timeout=30,
        what="version 8 pods gone after the rollback",
        interval=0.1,
    )


# -- a crashed session does not break the next one ---------------------------------------------


def start_launcher(info_file: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # Without images: what is checked is the crash and the clean-up, and a slot other
        # than the session's starts with an empty image store (gigabytes to import).
        [sys.executable, "-m", "tests.cluster", "--info-file", str(info_file), "--without-images"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=dict(os.environ, MLFLOW_OPERATOR_TEST_CLUSTER="embedded"),
    )


def wait_for_info(launcher: subprocess.Popen[bytes], info_file: Path, log: Path) -> dict[str, Any]:
    def ready() -> bool:
        if launcher.poll() is not None:
            raise AssertionError(
                f"launcher exited {launcher.returncode}:\n{log.read_text()[-3000:]}"
            )
        return info_file.exists()

    try:
        # 60-90 s on a quiet machine; once over 180 s in a full run on a busy one
        eventually(ready, timeout=300, what="launcher in a subprocess", interval=0.1)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{log.read_text()[-3000:]}") from None
    info: dict[str, Any] = json.loads(info_file.read_text())
    return info


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_session_started_after_a_crashed_one_works(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    if not kube_cluster.embedded:
        pytest.skip("starts embedded clusters of its own")
    crashed = start_launcher(tmp_path / "crashed.json", tmp_path / "crashed.log")
    try:
        first = wait_for_info(crashed, tmp_path / "crashed.json", tmp_path / "crashed.log")
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(timeout=10)
        orphans = list(first["pids"].values())
        assert all(group_alive(pid) for pid in orphans)  # nobody stopped them
    finally:
        crashed.kill()
        crashed.wait()

    second = start_launcher(tmp_path / "second.json", tmp_path / "second.log")
    try:
        info = wait_for_info(second, tmp_path / "second.json", tmp_path / "second.log")
        assert not any(group_alive(pid) for pid in orphans)  # reaped by PID at start
        assert not Path(first["workdir"]).exists()  # stale files removed
        fresh = KubeCluster(Path(info["kubeconfig"]), info["server"])
        fresh.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=30s")
        # The running session's cluster was left alone.
        kube_cluster.kubectl("get", "--raw", "/readyz")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    assert not any(group_alive(pid) for pid in info["pids"].values())
    assert not Path(info["workdir"]).exists()
