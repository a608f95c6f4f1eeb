"""MLflowServer controller against the real control plane, with the operator as a process and
every pod on the real node: PostgreSQL, MinIO, the schema-migration Jobs and the tracking
server run the locally built images for real. The last test points a server at the local
PostgreSQL and MinIO (external stores) and logs and loads a real model through it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlflow_operator.core.mlflowserver.status import image_version
from tests.cluster.fixtures import create_namespace
from tests.cluster.launcher import EXPANDABLE_STORAGE_CLASS, KubeCluster, kubectl_binary
from tests.cluster.realnode import NodeInfo
from tests.e2e.kube import require_requests
from tests.e2e.mlflowservers import (
    HealthSampler,
    admin_of,
    as_admin,
    check_auth_hosts_and_metrics,
    log_and_load_a_model,
    server_pods,
    tracking_url,
)
from tests.e2e.operator_process import OperatorProcess, local_images_env
from tests.mlflowstack.models import ModelRegistry
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
KIND = "MLflowServer"
REPOSITORY = "localhost/mlflow-operator/mlflow-server"
# Another tag of the same image (an upgrade, as far as the operator can tell), and a tag of the
# serving image, which has MLflow but no PostgreSQL driver: its `mlflow db upgrade` really fails.
NEW_IMAGE = f"{REPOSITORY}:3.18.0-test"
FAILING_IMAGE = f"{REPOSITORY}:3.19.0-broken"
TIMEOUT = 240.0
IDLE_SECONDS = 30  # an idle MLflowServer writes nothing for this long
# The polls of this file look every half second (each check is one or more kubectl calls) and
# let an exception from a check fail the test at once rather than count as "not yet".
poll = functools.partial(eventually, interval=0.5, retry_on=())


def managed_spec(image: str, node: NodeInfo) -> dict[str, Any]:
    return {
        "image": image,
        "replicas": 2,
        "backendStore": {"postgres": {"managed": {"storage": "1Gi"}}},
        # MinIO's volume can grow; PostgreSQL's class (the cluster default) forbids it
        "artifactStore": {
            "bucket": "mlflow",
            "s3": {"managed": {"storage": "2Gi", "storageClassName": EXPANDABLE_STORAGE_CLASS}},
        },
        # in-cluster webhook receivers have private addresses (docs/mlflowserver.md)
        "env": [{"name": "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "value": "true"}],
        "podTemplate": dict(node.placement),
    }


# --- helpers -----------------------------------------------------------------------------


def get(cluster: KubeCluster, namespace: str, *args: str) -> Any:
    result = cluster.kubectl("get", "-n", namespace, *args, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    return json.loads(result.stdout)


def condition(server: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((server or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def start_operator(cluster: KubeCluster, namespace: str, workdir: Path) -> OperatorProcess:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/mlflowservers.mlflowops.dev", "--timeout=60s"
    )
    return OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        workdir=workdir,
        namespaces=(namespace,),
        extra_env={
            "MLFLOW_OPERATOR_WEBHOOK_ENABLED": "false",
            "MLFLOW_OPERATOR_NETWORK_POLICIES": "true",
            "MLFLOW_OPERATOR_LOG_LEVEL": "debug",  # the leak check reads the most it can
            **local_images_env(cluster),
        },
    ).start()


def apply_server(cluster: KubeCluster, namespace: str, spec: dict[str, Any]) -> None:
    cluster.apply(
        {
            "apiVersion": "mlflowops.dev/v1alpha1",
            "kind": "MLflowServer",
            "metadata": {"name": "mlflow", "namespace": namespace},
            "spec": spec,
        }
    )


def patch_spec(cluster: KubeCluster, namespace: str, spec: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "-n", namespace, "mlfs/mlflow", "--type=merge", "-p", json.dumps({"spec": spec})
    )


def deployment_image(cluster: KubeCluster, namespace: str) -> str | None:
    deployment = get(cluster, namespace, "deployment/mlflow")
    if deployment is None:
        return None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def migration_jobs(cluster: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    jobs = get(cluster, namespace, "jobs", "-l", "app.kubernetes.io/component=schema-migration")
    return list(jobs["items"])


def job_for(cluster: KubeCluster, namespace: str, image: str) -> dict[str, Any] | None:
    return next(
        (
            j
            for j in migration_jobs(cluster, namespace)
            if j["metadata"]["annotations"].get("mlflowops.dev/image") == image
        ),
        None,
    )


def job_complete(job: dict[str, Any] | None) -> bool:
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def secret_values(cluster: KubeCluster, namespace: str) -> list[str]:
    """Every Secret value in the namespace that is long enough to be a credential."""
    secrets = get(cluster, namespace, "secrets")["items"]
    return [
        value
        for secret in secrets
        if secret.get("type") != "kubernetes.io/service-account-token"
        for key, value in decoded(secret).items()
        if key != "username" and len(value) >= 8
    ]


def assert_no_secret_value_anywhere(
    cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    values = secret_values(cluster, namespace)
    assert values
    pods = get(cluster, namespace, "pods")["items"]
    plain = [
        text
        for pod in pods
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
        for text in [
            *(e.get("value", "") for e in container.get("env", [])),
            *container.get("args", []),
            *container.get("command", []),
        ]
    ]
    templates = json.dumps(
        [
            get(cluster, namespace, kind)["items"]
            for kind in ("deployments", "statefulsets", "jobs", "configmaps", "services")
        ]
    )
    events = json.dumps(get(cluster, namespace, "events")["items"])
    status = json.dumps((get(cluster, namespace, "mlfs/mlflow") or {}).get("status"))
    log = operator.log()
    assert log
    for value in values:
        assert not any(value in text for text in plain), "a Secret value in a pod's env/args"
        assert value not in templates, "a Secret value in a workload template"
        assert value not in events, "a Secret value in an Event"
        assert value not in status, "a Secret value in the status"
        assert value not in log, "a Secret value in the operator's log"


# --- a managed server, shared by the tests below in order ---------------------------------


@dataclass
class ManagedServer:
    cluster: KubeCluster
    namespace: str
    operator: OperatorProcess
    node: NodeInfo
    # the registry as the tracking server answered before the upgrade to NEW_IMAGE
    contents_before_upgrade: dict[str, Any] = field(default_factory=dict)
    backups_before_deletion: list[dict[str, Any]] = field(default_factory=list)

    @property
    def image(self) -> str:
        return self.node.images["mlflow-server"]


@pytest.fixture(scope="module")
def managed(
    kube_cluster: KubeCluster, real_node: NodeInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedServer]:
    # Its own operator, for this namespace only (the session's operator watches t-*).
    namespace = create_namespace(kube_cluster, prefix="mlfs")
    # every pod of the server (stores, migrations, backups, tracking server) must request
    # CPU and memory, or the API server refuses it here
    require_requests(kube_cluster, namespace)
    real_node.tag_image(real_node.images["mlflow-server"], NEW_IMAGE)
    real_node.tag_image(real_node.images["serving-cpu"], FAILING_IMAGE)
    operator = start_operator(kube_cluster, namespace, tmp_path_factory.mktemp("operator"))
    try:
        apply_server(
            kube_cluster, namespace, managed_spec(real_node.images["mlflow-server"], real_node)
        )
        yield ManagedServer(kube_cluster, namespace, operator, real_node)
    finally:
        operator.stop()
        kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def label_selector(selector: dict[str, Any]) -> str:
    """A LabelSelector as kubectl's -l string (matchLabels and `In` expressions)."""
    terms = [f"{k}={v}" for k, v in selector.get("matchLabels", {}).items()]
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        terms.append(f"{expression['key']} in ({','.join(expression['values'])})")
    return ",".join(terms)


def assert_network_policies_select_the_real_pods(cluster: KubeCluster, ns: str) -> None:
    """With no NetworkPolicy implementation here, what can be checked is that each policy's
    selectors, evaluated by the API server on the running pods, pick the intended ones."""
    policies = {p["metadata"]["name"]: p for p in get(cluster, ns, "networkpolicies")["items"]}
    assert set(policies) == {"mlflow", "mlflow-postgres", "mlflow-minio"}

    def components(selector: dict[str, Any]) -> set[str]:
        pods = get(cluster, ns, "pods", "-l", label_selector(selector))["items"]
        return {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}

    for name, component in (
        ("mlflow", "tracking-server"), ("mlflow-postgres", "postgresql"), ("mlflow-minio", "minio"),
    ):  # fmt: skip
        assert components(policies[name]["spec"]["podSelector"]) == {component}
    for name in ("mlflow-postgres", "mlflow-minio"):
        (rule,) = policies[name]["spec"]["ingress"]
        allowed = components(rule["from"][0]["podSelector"])
        # the running tracking server and the finished migration's pod; never the stores
        assert "tracking-server" in allowed, (name, allowed)
        assert not allowed & {"postgresql", "minio"}, (name, allowed)
    assert "from" not in policies["mlflow"]["spec"]["ingress"][0]  # the server: from anywhere


def test_managed_server_creates_the_expected_objects_and_becomes_ready(
    managed: ManagedServer,
) -> None:
    cluster, ns, image = managed.cluster, managed.namespace, managed.image
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "mlfs/mlflow", "--timeout=240s", timeout=250
    )
    server = get(cluster, ns, "mlfs/mlflow")
    uid = server["metadata"]["uid"]
    status = server["status"]
    assert status["url"] == f"http://mlflow.{ns}.svc:5000"
    assert status["version"] == image_version(image)
    assert status["version"].startswith("3.17.2")
    assert status["observedGeneration"] == server["metadata"]["generation"]
    assert status["migratedImage"] == image
    for type_ in ("Ready", "DatabaseReady", "ArtifactStoreReady", "SchemaMigrated"):
        cond = condition(server, type_)
        assert cond["status"] == "True", cond
        assert cond["observedGeneration"] == server["metadata"]["generation"]

    def owned(obj: dict[str, Any]) -> None:
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "MLflowServer",
            "mlflow",
            uid,
            True,
        )

    # exactly these children, each owned by the MLflowServer
    by_kind = {
        kind: sorted(o["metadata"]["name"] for o in get(cluster, ns, kind)["items"])
        for kind in ("statefulsets", "deployments", "services", "configmaps")
    }
    assert by_kind["statefulsets"] == ["mlflow-minio", "mlflow-postgres"]
    assert by_kind["deployments"] == ["mlflow"]
    assert by_kind["services"] == [
        "mlflow",
        "mlflow-minio",
        "mlflow-postgres",
        "mlflow-postgres-hl",
    ]
    assert "mlflow-auth" in by_kind["configmaps"]
    for kind in ("statefulsets", "deployments", "services"):
        for obj in get(cluster, ns, kind)["items"]:
            owned(obj)
    (job,) = migration_jobs(cluster, ns)
    owned(job)
    assert job_complete(job)
    assert_network_policies_select_the_real_pods(cluster, ns)

    # generated Secrets: created once, not owned (they unlock the retained volumes)
    generated = {
        s["metadata"]["name"]: s
        for s in get(cluster, ns, "secrets", "-l", "app.kubernetes.io/component=credentials")[
            "items"
        ]
    }
    assert sorted(generated) == ["mlflow-admin", "mlflow-keys", "mlflow-minio", "mlflow-postgres"]
    for secret in generated.values():
        assert "ownerReferences" not in secret["metadata"]
    assert len(decoded(generated["mlflow-admin"])["password"]) >= 12

    # the tracking server, field by field where it matters
    deployment = get(cluster, ns, "deployment/mlflow")
    owned(deployment)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == image
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert container[probe]["httpGet"]["port"] == "http"
    refs = {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
        if "valueFrom" in e
    }
    assert refs == {
        "PGUSER": ("mlflow-postgres", "username"),
        "PGPASSWORD": ("mlflow-postgres", "password"),
        "AWS_ACCESS_KEY_ID": ("mlflow-minio", "accessKeyId"),
        "AWS_SECRET_ACCESS_KEY": ("mlflow-minio", "secretAccessKey"),
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": ("mlflow-keys", "webhookEncryptionKey"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": ("mlflow-keys", "flaskSecretKey"),
        "MLFLOW_AUTH_ADMIN_USERNAME": ("mlflow-admin", "username"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": ("mlflow-admin", "password"),
    }
    args = container["args"]
    assert args[args.index("--backend-store-uri") + 1] == (
        f"postgresql+psycopg2://mlflow-postgres.{ns}.svc:5432/mlflow?sslmode=disable"
    )
    assert f"mlflow.{ns}.svc" in args[args.index("--allowed-hosts") + 1].split(",")
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert plain["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"] == "true"  # spec.env
    # a node drain evicts one tracking server pod at a time
    pdb = get(cluster, ns, "pdb/mlflow")
    owned(pdb)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    poll(
        lambda: (get(cluster, ns, "pdb/mlflow").get("status") or {}).get("expectedPods") == 2,
        timeout=30,
        what="the disruption controller counts both pods",
    )

    # PostgreSQL and MinIO: secretKeyRefs, probes, volumes that outlive them
    postgres = get(cluster, ns, "statefulset/mlflow-postgres")
    pg = postgres["spec"]["template"]["spec"]["containers"][0]
    assert pg["image"] == managed.node.images["postgres"]
    pg_env = {e["name"]: e for e in pg["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-postgres",
        "key": "password",
    }
    assert "pg_isready" in pg["readinessProbe"]["exec"]["command"][-1]
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "1Gi"
    }
    assert get(cluster, ns, "service/mlflow-postgres-hl")["spec"]["clusterIP"] == "None"
    minio = get(cluster, ns, "statefulset/mlflow-minio")
    assert minio["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "path"
    ] == ("/minio/health/ready")

    # the migration ran before the server existed
    created = deployment["metadata"]["creationTimestamp"]
    assert job["status"]["completionTime"] <= created
    reasons = {e["reason"] for e in get(cluster, ns, "events")["items"]}
    assert {"SecretGenerated", "MigrationStarted", "ServerImageChanged", "Serving"} <= reasons

    # every pod ran for real on the node, as the user its builder declares
    pods = get(cluster, ns, "pods")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {managed.node.name}
    users = {"mlflow-postgres-0": "999", "mlflow-minio-0": "1000"}
    for pod_name, uid_expected in users.items():
        ids = cluster.kubectl("exec", "-n", ns, pod_name, "--", "id", "-u").stdout.strip()
        assert ids == uid_expected, pod_name
    (job_pod,) = [
        p for p in pods if p["metadata"]["labels"].get("job-name") == job["metadata"]["name"]
    ]
    assert job_pod["status"]["phase"] == "Succeeded"
    # the tracking server answers through its Service, with basic auth on
    check_auth_hosts_and_metrics(
        tracking_url(cluster, ns), admin_of(cluster, ns), f"mlflow.{ns}.svc:5000"
    )


def test_reconciles_and_a_restart_leave_generated_secrets_byte_identical(
    managed: ManagedServer,
) -> None:
    cluster, ns = managed.cluster, managed.namespace

    def generated() -> dict[str, Any]:
        items = get(cluster, ns, "secrets", "-l", "app.kubernetes.io/component=credentials")
        return {
            s["metadata"]["name"]: (s["data"], s["metadata"]["resourceVersion"])
            for s in items["items"]
        }

    before = generated()
    assert len(before) == 4
    for i in range(10):
        # an annotation change is a change of the object: it wakes the reconcile
        done = managed.operator.reconciles(KIND)
        cluster.kubectl("annotate", "-n", ns, "mlfs/mlflow", f"test/touch={i}", "--overwrite")
        poll(
            lambda done=done: managed.operator.reconciles(KIND) > done,
            timeout=TIMEOUT,
            what=f"reconcile {i}",
        )
    assert generated() == before
    managed.operator.restart()
    poll(
        lambda: managed.operator.reconciles(KIND) >= 1,
        timeout=TIMEOUT,
        what="a reconcile after the restart",
    )
    poll(
        lambda: condition(get(cluster, ns, "mlfs/mlflow"), "Ready").get("status") == "True",
        timeout=TIMEOUT,
        what="Ready",
    )
    assert generated() == before


def test_an_idle_server_writes_nothing_and_a_child_change_is_acted_on_at_once(
    managed: ManagedServer,
) -> None:
    """Every MLflowServer re-applied its eight children every 10 s, changed or not; a child's
    change waited for that timer."""
    cluster, ns, operator = managed.cluster, managed.namespace, managed.operator
    poll(
        lambda: condition(get(cluster, ns, "mlfs/mlflow"), "Ready").get("status") == "True",
        timeout=TIMEOUT,
        what="Ready",
    )
    time.sleep(5)  # the reconcile woken by the last status write
    writes, reconciles = operator.kube_writes(), operator.reconciles(KIND)
    reads = operator.metric("mlflow_operator_kube_requests_total", verb="get")
    time.sleep(IDLE_SECONDS)  # three periods of the old 10 s timer
    print(
        f"idle {IDLE_SECONDS} s: {operator.kube_writes() - writes:.0f} writes, "
        f"{operator.metric('mlflow_operator_kube_requests_total', verb='get') - reads:.0f} reads, "
        f"{operator.reconciles(KIND) - reconciles:.0f} reconciles"
    )
    assert operator.kube_writes() == writes, "an idle MLflowServer wrote to the API server"

    # a person scales the tracking server by hand: its watch event brings it back at once,
    # not at the next safety-net reconcile (5 minutes while Ready)
    cluster.kubectl("scale", "-n", ns, "deployment/mlflow", "--replicas=1")
    scaled = time.monotonic()
    poll(
        lambda: get(cluster, ns, "deployment/mlflow")["spec"]["replicas"] == 2,
        timeout=60,
        what="spec.replicas back to 2",
    )
    print(f"hand-scaled Deployment restored after {time.monotonic() - scaled:.1f}s")
    assert operator.kube_writes() > writes

    # one replica: no budget (it would block every drain or protect nothing); two: back
    patch_spec(cluster, ns, {"replicas": 1})
    poll(
        lambda: get(cluster, ns, "pdb/mlflow") is None,
        timeout=60,
        what="no PDB at 1 replica",
    )
    patch_spec(cluster, ns, {"replicas": 2})
    poll(
        lambda: get(cluster, ns, "pdb/mlflow") is not None,
        timeout=60,
        what="PDB at 2 replicas",
    )
    poll(
        lambda: condition(get(cluster, ns, "mlfs/mlflow"), "Ready").get("status") == "True",
        timeout=TIMEOUT,
        what="Ready",
    )


def registry_contents(url: str) -> dict[str, Any]:
    """What a user would compare after an upgrade or a restore: experiments, runs, models,
    versions, aliases and tags, as the tracking server answers them."""
    from mlflow import MlflowClient

    # both URIs: an earlier ModelRegistry set MLflow's global registry URI (another server)
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiments = sorted((e.experiment_id, e.name) for e in client.search_experiments())
    runs = sorted(
        (r.info.run_id, tuple(sorted(r.data.params.items())))
        for experiment_id, _ in experiments
        for r in client.search_runs([experiment_id])
    )
    models = {
        m.name: (
            sorted(m.aliases.items()),
            sorted(m.tags.items()),
            sorted(
                (v.version, v.run_id, v.status, tuple(sorted(v.tags.items())))
                for v in client.search_model_versions(f"name='{m.name}'")
            ),
        )
        for m in client.search_registered_models()
    }
    return {"experiments": experiments, "runs": runs, "models": models}


def jobs_of(cluster: KubeCluster, namespace: str, component: str) -> list[dict[str, Any]]:
    found = get(cluster, namespace, "jobs", "-l", f"app.kubernetes.io/component={component}")
    return list(found["items"])


def test_image_change_backs_up_verifies_and_migrates_before_the_deployment_moves(
    managed: ManagedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, ns = managed.cluster, managed.namespace
    old_job = job_for(cluster, ns, managed.image)
    assert old_job is not None
    url = tracking_url(cluster, ns)
    with as_admin(monkeypatch, admin_of(cluster, ns)):
        registry = ModelRegistry(url)
        model = f"kept-{uuid.uuid4().hex[:6]}"
        registry.log_version(model)
        second = registry.log_version(model)
        registry.set_alias(model, "champion", second.version)
        before = registry_contents(url)
    assert jobs_of(cluster, ns, "backup") == []  # none on the first install
    health = HealthSampler(f"{url}/health").start()
    patch_spec(cluster, ns, {"image": NEW_IMAGE})
    seen: list[tuple[bool, bool, int, str | None]] = []

    def moved() -> bool:
        # The migration Job is read before and after the Deployment and the pods: a Job that
        # existed before and was still incomplete after was running while they were read. (One
        # read of each mixes moments: a migration that completed right after the Job was read
        # was seen as running next to the new server's first pod.)
        before = job_for(cluster, ns, NEW_IMAGE)
        image = deployment_image(cluster, ns)
        pods = server_pods(cluster, ns)
        after = job_for(cluster, ns, NEW_IMAGE)
        seen.append((before is not None, job_complete(after), pods, image))
        return image == NEW_IMAGE

    try:
        poll(moved, timeout=TIMEOUT, what="Deployment at the new image")
        poll(
            lambda: condition(get(cluster, ns, "mlfs/mlflow"), "Ready").get("status") == "True",
            timeout=TIMEOUT,
            what="Ready at the new image",
        )
    finally:
        health.stop()
    # never the new image before its migration completed
    assert all(complete for _, complete, _, image in seen if image == NEW_IMAGE), seen
    # MLflow migrates with every writer stopped: no server pod while the migration Job exists
    assert all(pods == 0 for exists, complete, pods, _ in seen if exists and not complete), seen
    assert any(exists and not complete for exists, complete, _, _ in seen), "migration not seen"
    print(f"upgrade: the server did not answer /health for {health.longest_outage():.1f}s")
    new_job = job_for(cluster, ns, NEW_IMAGE)
    assert new_job is not None
    replica_sets = get(cluster, ns, "replicasets")["items"]
    new_rs = next(
        rs
        for rs in replica_sets
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    )
    assert new_job["status"]["completionTime"] <= new_rs["metadata"]["creationTimestamp"]
    server = get(cluster, ns, "mlfs/mlflow")
    assert server["status"]["version"] == "3.18.0-test"
    assert server["status"]["migratedImage"] == NEW_IMAGE
    # a verified backup was stored before the migration Job was even created
    (backup_job,) = jobs_of(cluster, ns, "backup")
    assert job_complete(backup_job)
    assert backup_job["status"]["completionTime"] <= new_job["metadata"]["creationTimestamp"]
    (backup,) = server["status"]["backups"]
    assert backup["verified"] is True
    assert backup["beforeImage"] == NEW_IMAGE
    assert backup["key"].startswith(f"s3://mlflow-backups/{ns}/mlflow/")
    assert backup["sizeBytes"] > 0
    assert backup["rows"]["model_versions"] >= 2
    assert backup["rows"]["registered_model_aliases"] >= 1
    verified = condition(server, "BackupVerified")
    assert (verified["status"], verified["reason"]) == ("True", "BackupVerified")
    reasons = [e["reason"] for e in get(cluster, ns, "events")["items"]]
    assert {"BackupStarted", "ServerStopped", "ServerImageChanged"} <= set(reasons)
    with as_admin(monkeypatch, admin_of(cluster, ns)):
        assert registry_contents(url) == before
    managed.contents_before_upgrade = before  # for the rollback below
    # the superseded migration Job is cleaned up once the new image serves
    poll(
        lambda: job_for(cluster, ns, managed.image) is None,
        timeout=TIMEOUT,
        what="old migration Job pruned",
    )


def psql(cluster: KubeCluster, namespace: str, sql: str) -> str:
    """SQL as the MLflow database's owner, in the managed PostgreSQL pod."""
    return cluster.kubectl(
        "exec", "-n", namespace, "mlflow-postgres-0", "--", "sh", "-c",
        'PGPASSWORD="$POSTGRES_PASSWORD" psql -X -q -A -t -U "$POSTGRES_USER" -d "$POSTGRES_DB" '
        '-c "$0"', sql,
    ).stdout.strip()  # fmt: skip


def test_an_image_older_than_the_schema_is_refused_as_a_downgrade(managed: ManagedServer) -> None:
    """The database says it was migrated by a newer MLflow (its alembic revision is one this
    MLflow does not have: the state a newer `mlflow db upgrade` leaves; both local images have
    the same MLflow, so the revision is written by hand). Another image is then refused by the
    migration Job's check-schema step, at once, and the server is started again."""
    cluster, ns = managed.cluster, managed.namespace
    revision = psql(cluster, ns, "SELECT version_num FROM alembic_version")
    psql(cluster, ns, "UPDATE alembic_version SET version_num = 'f0e1d2c3b4a5'")
    try:
        patch_spec(cluster, ns, {"image": managed.image})

        def refused() -> dict[str, Any]:
            cond = condition(get(cluster, ns, "mlfs/mlflow"), "Ready")
            return cond if cond.get("reason") == "DowngradeRefused" else {}

        cond = poll(refused, timeout=300, what="Ready=False, DowngradeRefused")
        assert managed.image in cond["message"]
        assert NEW_IMAGE in cond["message"]
        assert "revision f0e1d2c3b4a5" in cond["message"]
        job = job_for(cluster, ns, managed.image)
        assert job is not None
        pods = get(cluster, ns, "pods", "-l", f"job-name={job['metadata']['name']}")["items"]
        assert len(pods) == 1  # failed at once: a newer schema does not get older by retrying
        # the Deployment is back on its image and replicas; its pods cannot start while the
        # revision is the made-up one (a real newer MLflow would know it), so serving again
        # is checked once the revision is put back
        assert deployment_image(cluster, ns) == NEW_IMAGE
        poll(
            lambda: get(cluster, ns, "deployment/mlflow")["spec"]["replicas"] == 2,
            timeout=TIMEOUT,
            what="the Deployment back at spec.replicas after the refused migration",
        )
    finally:
        psql(cluster, ns, f"UPDATE alembic_version SET version_num = '{revision}'")  # noqa: S608 - read from the database above
        patch_spec(cluster, ns, {"image": NEW_IMAGE})
    poll(
        lambda: condition(get(cluster, ns, "mlfs/mlflow"), "Ready").get("status") == "True",
        timeout=TIMEOUT,
        what="Ready again on the newer image",
    )
    poll(
        lambda: job_for(cluster, ns, managed.image) is None,
        timeout=TIMEOUT,
        what="the refused Job pruned",
    )


def test_a_failing_migration_starts_the_old_server_again_and_says_why(
    managed: ManagedServer,
) -> None:
    cluster, ns = managed.cluster, managed.namespace
    patch_spec(cluster, ns, {"image": FAILING_IMAGE})

    def failed() -> dict[str, Any]:
        cond = condition(get(cluster, ns, "mlfs/mlflow"), "SchemaMigrated")
        return cond if cond.get("reason") == "MigrationFailed" else {}

    # three real attempts with the Job controller's back-off between them (10 s, 20 s)
    cond = poll(failed, timeout=300, what="SchemaMigrated=False, MigrationFailed")
    assert cond["status"] == "False"
    job = job_for(cluster, ns, FAILING_IMAGE)
    assert job is not None
    failed_pod = next(
        p
        for p in get(cluster, ns, "pods", "-l", f"job-name={job['metadata']['name']}")["items"]
        if p["status"]["phase"] == "Failed"
    )
    # the first step to touch the database (check-schema) fails: that image has no driver
    log = cluster.kubectl(
        "logs", "-n", ns, failed_pod["metadata"]["name"], "-c", "check-schema"
    ).stdout
    assert "psycopg2" in log, log[-2000:]
    assert job["metadata"]["name"] in cond["message"]
    assert "BackoffLimitExceeded" in cond["message"]
    assert "step check-schema exited 1" in cond["message"]
    assert "psycopg2" in cond["message"]  # the end of the step's log, in the condition
    assert NEW_IMAGE in cond["message"]
    # the old server, stopped for the migration, serves again on its image
    assert deployment_image(cluster, ns) == NEW_IMAGE
    poll(
        lambda: get(cluster, ns, "deployment/mlflow")["status"].get("readyReplicas") == 2,
        timeout=TIMEOUT,
        what="the old server started again after the failed migration",
    )
    server = get(cluster, ns, "mlfs/mlflow")
    assert condition(server, "Ready")["reason"] == "MigrationFailed"
    assert server["status"]["version"] == "3.18.0-test"
    warnings = [
        e
        for e in get(cluster, ns, "events")["items"]
        if e["reason"] == "MigrationFailed" and e["type"] == "Warning"
    ]
    assert warnings
    # back to the good image: Ready again, no new migration for it
    patch_spec(cluster, ns, {"image": NEW_IMAGE})
    poll(
        lambda: condition(get(cluster, ns, "mlfs/mlflow"), "Ready").get("status") == "True",
        timeout=TIMEOUT,
        what="Ready after going back",
    )


def runbook(heading: str) -> list[str]:
    """The shell blocks of one runbook in docs/mlflowserver.md, in order, as a reader copies
    them (the list-item indentation removed)."""
    text = (ROOT / "docs" / "mlflowserver.md").read_text()
    section = text.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    return [
        textwrap.dedent(body)
        for _, body in re.findall(r"^( *)```sh\n(.*?)^\1```", section, re.MULTILINE | re.DOTALL)
    ]


def test_a_failed_upgrade_is_rolled_back_by_the_runbook(
    managed: ManagedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """docs/mlflowserver.md "Runbook: roll back a failed upgrade", block by block: the backup
    taken before the upgrade to NEW_IMAGE is fetched, restored, and the old image comes back.
    What was written after that backup is gone: the data really came from the dump."""
    cluster, ns = managed.cluster, managed.namespace
    before = managed.contents_before_upgrade
    assert before
    url = tracking_url(cluster, ns)
    with as_admin(monkeypatch, admin_of(cluster, ns)):
        ModelRegistry(url).log_version(f"lost-{uuid.uuid4().hex[:6]}")
        assert registry_contents(url) != before
    variables, *steps = runbook("Runbook: roll back a failed upgrade")
    assert "previous=" in variables  # the reader's own values, set here instead
    script = "\n".join(
        [
            "set -euo pipefail",
            f"ns={ns}; server=mlflow; failed={NEW_IMAGE}; previous={managed.image}",
            *steps,
        ]
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{Path(kubectl_binary()).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=1500, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "mlflow.dump").stat().st_size > 0
    server = get(cluster, ns, "mlfs/mlflow")
    assert server["status"]["migratedImage"] == managed.image
    assert deployment_image(cluster, ns) == managed.image
    with as_admin(monkeypatch, admin_of(cluster, ns)):
        assert registry_contents(url) == before


def test_scheduled_backups_run_verified_and_stop_with_the_schedule(managed: ManagedServer) -> None:
    cluster, ns = managed.cluster, managed.namespace
    before = len(get(cluster, ns, "mlfs/mlflow")["status"].get("backups", []))
    patch_spec(cluster, ns, {"backup": {"schedule": "* * * * *"}})
    cronjob = poll(
        lambda: get(cluster, ns, "cronjob/mlflow-backup"),
        timeout=TIMEOUT,
        what="the CronJob",
    )
    assert cronjob["spec"]["schedule"] == "* * * * *"

    def scheduled() -> dict[str, Any]:
        server = get(cluster, ns, "mlfs/mlflow")
        backups = server["status"].get("backups", [])[before:]
        return next((b for b in backups if b["beforeImage"] == ""), {})

    backup = poll(scheduled, timeout=180, what="a scheduled backup in status")
    assert backup["verified"] is True
    assert backup["job"].startswith("mlflow-backup-")  # <cronjob>-<scheduled minute>
    assert backup["key"].startswith(f"s3://mlflow-backups/{ns}/mlflow/")
    verified = condition(get(cluster, ns, "mlfs/mlflow"), "BackupVerified")
    assert (verified["status"], verified["reason"]) == ("True", "BackupVerified")
    patch_spec(cluster, ns, {"backup": {"schedule": ""}})
    poll(
        lambda: get(cluster, ns, "cronjob/mlflow-backup") is None,
        timeout=TIMEOUT,
        what="the CronJob deleted",
    )


def requested(obj: dict[str, Any]) -> str:
    """The storage a claim, or a StatefulSet's claim template, asks for."""
    spec = obj["spec"]
    if "volumeClaimTemplates" in spec:
        spec = spec["volumeClaimTemplates"][0]["spec"]
    return str(spec["resources"]["requests"]["storage"])


def capacity(claim: dict[str, Any]) -> str | None:
    return (claim.get("status") or {}).get("capacity", {}).get("storage")


def test_a_volume_grows_in_place_and_one_its_class_forbids_is_refused_alone(
    managed: ManagedServer,
) -> None:
    """Defect 7: a StatefulSet's volumeClaimTemplates are immutable; a new storage size made
    the whole StatefulSet apply fail (422) and the reconcile with it, while status said
    nothing. Now MinIO, on a StorageClass that allows expansion, grows: its claim is expanded
    and its StatefulSet recreated around the running pod. PostgreSQL's class forbids it: Ready
    is False StorageChangeRefused with the API server's words (one Warning), and the other
    changes of the same spec edit are applied.
    """
    cluster, ns = managed.cluster, managed.namespace
    minio_pod = get(cluster, ns, "pod/mlflow-minio-0")["metadata"]["uid"]
    patch_spec(
        cluster,
        ns,
        {
            "workers": 3,
            "backendStore": {"postgres": {"managed": {"storage": "3Gi"}}},
            "artifactStore": {"s3": {"managed": {"storage": "4Gi"}}},
        },
    )

    def refused() -> dict[str, Any] | None:
        ready = condition(get(cluster, ns, "mlfs/mlflow"), "Ready")
        return ready if ready.get("reason") == "StorageChangeRefused" else None

    ready = poll(refused, timeout=TIMEOUT, what="Ready=False StorageChangeRefused")
    assert ready["status"] == "False"
    assert ready["message"].startswith(
        "spec.backendStore.postgres.managed: cannot expand the volume of StatefulSet "
        "mlflow-postgres from 1Gi to 3Gi: "
    )
    assert "the storageclass that provisions the pvc must support resize" in ready["message"]

    def workers() -> str | None:
        args = get(cluster, ns, "deployment/mlflow")["spec"]["template"]["spec"]["containers"][0]
        command = [*args.get("command", []), *args.get("args", [])]
        return command[command.index("--workers") + 1] if "--workers" in command else None

    poll(
        lambda: workers() == "3",
        timeout=TIMEOUT,
        what="the workers change applied despite the refusal",
    )
    assert requested(get(cluster, ns, "statefulset/mlflow-postgres")) == "1Gi"
    assert requested(get(cluster, ns, "pvc/data-mlflow-postgres-0")) == "1Gi"
    warnings = get(
        cluster, ns, "events", "--field-selector",
        "involvedObject.name=mlflow,involvedObject.kind=MLflowServer,reason=StorageChangeRefused",
    )["items"]  # fmt: skip
    assert len(warnings) == 1, warnings
    assert sum(int(e.get("count") or 1) for e in warnings) == 1

    # MinIO's volume grew, through the claim, and its pod kept running
    poll(
        lambda: capacity(get(cluster, ns, "pvc/data-mlflow-minio-0")) == "4Gi",
        timeout=TIMEOUT,
        what="MinIO's claim has 4Gi",
    )
    poll(
        lambda: requested(get(cluster, ns, "statefulset/mlflow-minio")) == "4Gi",
        timeout=TIMEOUT,
        what="MinIO's StatefulSet recreated with a 4Gi claim template",
    )
    assert get(cluster, ns, "pod/mlflow-minio-0")["metadata"]["uid"] == minio_pod
    expanding = get(
        cluster, ns, "events", "--field-selector",
        "involvedObject.name=mlflow,involvedObject.kind=MLflowServer,reason=StorageExpanding",
    )["items"]  # fmt: skip
    assert [e["type"] for e in expanding] == ["Normal"], expanding
    assert "mlflow-minio from 2Gi to 4Gi" in expanding[0]["message"]

    patch_spec(
        cluster, ns, {"workers": 1, "backendStore": {"postgres": {"managed": {"storage": "1Gi"}}}}
    )
    poll(
        lambda: refused() is None,
        timeout=TIMEOUT,
        what="the refusal cleared once the spec is back",
    )
    cluster.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "mlfs/mlflow", "--timeout=120s", timeout=130
    )


def test_no_secret_value_in_pods_logs_events_or_status(managed: ManagedServer) -> None:
    assert_no_secret_value_anywhere(managed.cluster, managed.namespace, managed.operator)


def test_deleting_keeps_volumes_and_generated_secrets(managed: ManagedServer) -> None:
    cluster, ns = managed.cluster, managed.namespace
    managed.backups_before_deletion = get(cluster, ns, "mlfs/mlflow")["status"]["backups"]
    cluster.kubectl("delete", "-n", ns, "mlfs/mlflow", "--wait=true", "--timeout=60s")

    def children_gone() -> bool:
        remaining = [
            o["metadata"]["name"]
            for kind in ("deployments", "statefulsets", "jobs", "configmaps")
            for o in get(cluster, ns, kind, "-l", "mlflowops.dev/mlflowserver=mlflow")["items"]
        ]
        services = get(cluster, ns, "services", "-l", "mlflowops.dev/mlflowserver=mlflow")
        return not remaining and not services["items"]

    poll(
        children_gone,
        timeout=TIMEOUT,
        what="owned children garbage-collected",
    )
    claims = sorted(o["metadata"]["name"] for o in get(cluster, ns, "pvc")["items"])
    assert claims == ["data-mlflow-minio-0", "data-mlflow-postgres-0"]
    secrets = get(cluster, ns, "secrets", "-l", "app.kubernetes.io/component=credentials")
    assert len(secrets["items"]) == 4


def test_a_lost_database_is_restored_from_its_backup_into_a_new_server(
    managed: ManagedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disaster recovery: the database volume is gone; the MinIO volume, with the backups
    bucket, and the generated Secrets were kept. A new MLflowServer of the same name with
    spec.restoreFrom gets the registry back as it was at that backup."""
    cluster, ns = managed.cluster, managed.namespace
    # the last backup was taken (before the rollback's migration) of the restored database,
    # whose contents are those from before the upgrade
    last = managed.backups_before_deletion[-1]
    assert last["verified"] is True
    cluster.kubectl("delete", "-n", ns, "pvc", "data-mlflow-postgres-0", "--timeout=120s")
    spec = {**managed_spec(managed.image, managed.node), "restoreFrom": {"key": last["key"]}}
    apply_server(cluster, ns, spec)

    def ready() -> dict[str, Any]:
        server = get(cluster, ns, "mlfs/mlflow")
        return server if condition(server, "Ready").get("status") == "True" else {}

    server = poll(ready, timeout=420, what="Ready after the restore")
    assert server["status"]["restoredFrom"] == last["key"]
    (restore_job,) = jobs_of(cluster, ns, "restore")
    assert job_complete(restore_job)
    migration = job_for(cluster, ns, managed.image)
    assert migration is not None
    assert restore_job["status"]["completionTime"] <= migration["metadata"]["creationTimestamp"]
    assert "RestoreStarted" in [e["reason"] for e in get(cluster, ns, "events")["items"]]
    url = tracking_url(cluster, ns)
    with as_admin(monkeypatch, admin_of(cluster, ns)):
        assert registry_contents(url) == managed.contents_before_upgrade


# --- external stores ---------------------------------------------------------------------


def external_spec(
    node: NodeInfo, pg_address: str, database: str, s3_endpoint: str
) -> dict[str, Any]:
    pg_host, pg_port = pg_address.rsplit(":", 1)
    return {
        "image": node.images["mlflow-server"],
        "replicas": 1,
        "podTemplate": dict(node.placement),
        "backendStore": {
            "postgres": {
                "external": {
                    "host": pg_host,
                    "port": int(pg_port),
                    "database": database,
                    "sslMode": "disable",
                    "credentialsSecretRef": {"name": "pg-creds"},
                }
            }
        },
        "artifactStore": {
            "bucket": "mlflow",
            "s3": {
                "external": {
                    "endpoint": s3_endpoint,
                    "credentialsSecretRef": {"name": "s3-creds"},
                }
            },
        },
    }


def create_secret(cluster: KubeCluster, namespace: str, name: str, data: dict[str, str]) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": data,
        }
    )


@pytest.mark.integration
def test_external_stores_serve_a_real_model(
    kube_cluster: KubeCluster,
    real_node: NodeInfo,
    mlflow_stack: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The local PostgreSQL and MinIO as the external stores of an MLflowServer whose pods run
    on the real node (each reached through the host's address on the node link)."""
    cluster = kube_cluster
    ns = create_namespace(cluster, prefix="mlfs")
    pg = mlflow_stack.postgres
    database = f"mlfs_{uuid.uuid4().hex[:8]}"
    pg.create_database(database)
    pg_address = cluster.expose_to_pods(pg.port)
    s3_endpoint = "http://" + cluster.expose_to_pods(
        int(mlflow_stack.s3_endpoint.rsplit(":", 1)[1])
    )
    operator = start_operator(cluster, ns, tmp_path / "operator")
    try:
        # the database Secret lacks its password at first
        create_secret(cluster, ns, "pg-creds", {"username": pg.user})
        create_secret(
            cluster,
            ns,
            "s3-creds",
            {
                "accessKeyId": mlflow_stack.s3_access_key,
                "secretAccessKey": mlflow_stack.s3_secret_key,
            },
        )
        apply_server(cluster, ns, external_spec(real_node, pg_address, database, s3_endpoint))

        def missing_key() -> dict[str, Any]:
            cond = condition(get(cluster, ns, "mlfs/mlflow"), "DatabaseReady")
            return cond if cond.get("reason") == "SecretKeyMissing" else {}

        cond = poll(
            missing_key,
            timeout=TIMEOUT,
            what="DatabaseReady=False naming the missing key",
        )
        assert cond["status"] == "False"
        assert "pg-creds" in cond["message"]
        assert "password" in cond["message"]
        assert condition(get(cluster, ns, "mlfs/mlflow"), "ArtifactStoreReady")["status"] == "True"
        assert migration_jobs(cluster, ns) == []  # nothing migrates without a database

        create_secret(cluster, ns, "pg-creds", {"username": pg.user, "password": pg.password})
        cluster.kubectl(
            "wait", "-n", ns, "--for=condition=Ready", "mlfs/mlflow", "--timeout=240s", timeout=250
        )
        # no PostgreSQL or MinIO of our own
        assert get(cluster, ns, "statefulsets")["items"] == []
        assert [s["metadata"]["name"] for s in get(cluster, ns, "services")["items"]] == ["mlflow"]
        generated = get(cluster, ns, "secrets", "-l", "app.kubernetes.io/component=credentials")
        assert sorted(s["metadata"]["name"] for s in generated["items"]) == [
            "mlflow-admin",
            "mlflow-keys",
        ]
        assert_no_secret_value_anywhere(cluster, ns, operator)

        url, admin = tracking_url(cluster, ns), admin_of(cluster, ns)
        check_auth_hosts_and_metrics(url, admin, f"mlflow.{ns}.svc:5000")
        with as_admin(monkeypatch, admin):
            version = log_and_load_a_model(url)
            # MLflow 3 keeps a version's files under its logged model: models:/m-<id>
            model_id = ModelRegistry(url).get_version(version.name, version.version).source
        model_id = model_id.rsplit("/", 1)[-1]
        # it went to the database and the bucket behind the server
        with contextlib.closing(pg.connect(database)) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT name FROM registered_models")
            assert (version.name,) in cursor.fetchall()
        keys = mlflow_stack.minio.s3_client().list_objects_v2(Bucket="mlflow")
        assert any(f"/models/{model_id}/" in o["Key"] for o in keys.get("Contents", [])), keys
        server_logs = cluster.kubectl("logs", "-n", ns, "deployment/mlflow").stdout
        for value in secret_values(cluster, ns):
            assert value not in server_logs, "a Secret value in the tracking server's log"
    finally:
        operator.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
