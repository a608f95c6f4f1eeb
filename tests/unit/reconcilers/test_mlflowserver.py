"""The MLflowServer reconcile's glue: what it writes, what it announces, and what it skips.

Against the in-memory API server of tests/unit/reconcilers/fakes.py; the decisions are
tested in tests/unit/test_mlflowserver_status.py and end to end in tests/e2e/.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow_operator.builders.mlflowserver.backup import JOB_NAME_LABEL
from mlflow_operator.builders.mlflowserver.common import COMPONENT_SERVER, selector_labels
from mlflow_operator.config import OperatorConfig
from mlflow_operator.reconcilers.common import ReconcileResult
from mlflow_operator.reconcilers.mlflowserver import (
    SETTLED_RECHECK_SECONDS,
    MLflowServerReconciler,
)
from tests.unit.reconcilers.fakes import NAMESPACE, FakeKube, api_error


def mlflow_server(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlflowops.dev/v1alpha1",
        "kind": "MLflowServer",
        "metadata": {"name": "mlflow", "namespace": NAMESPACE, "uid": "uid-2"},
        "spec": {
            "backendStore": {"postgres": {"managed": {"storage": "1Gi"}}},
            "artifactStore": {"bucket": "mlflow", "s3": {"managed": {"storage": "2Gi"}}},
            **spec,
        },
    }


class World:
    def __init__(self, **spec: Any) -> None:
        self.kube = FakeKube()
        self.reconciler = MLflowServerReconciler(self.kube, OperatorConfig())  # type: ignore[arg-type]
        self.events: list[tuple[str, str, str]] = []
        self.kube.put(mlflow_server(**spec))

    async def reconcile(self) -> ReconcileResult:
        def emit(type_: str, reason: str, message: str) -> None:
            self.events.append((type_, reason, message))

        body = self.kube.stored("MLflowServer", "mlflow")
        assert body is not None
        return await self.reconciler.reconcile(body, emit)  # type: ignore[arg-type]

    def ready(self) -> dict[str, Any]:
        server = self.kube.stored("MLflowServer", "mlflow") or {}
        conditions = (server.get("status") or {}).get("conditions") or []
        return next(c for c in conditions if c["type"] == "Ready")


async def test_a_second_reconcile_with_nothing_changed_writes_nothing() -> None:
    """The 10 s timer re-applied every child of every MLflowServer, changed or not."""
    world = World()
    await world.reconcile()
    first = list(world.kube.writes)
    assert {"apply:StatefulSet", "create:Secret", "status"} <= set(first)
    announced = len(world.events)
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.writes == []
    assert len(world.events) == announced


async def test_a_child_changed_by_hand_is_applied_again() -> None:
    world = World()
    await world.reconcile()
    postgres = world.kube.stored("StatefulSet", "mlflow-postgres")
    assert postgres is not None
    postgres["spec"]["template"]["spec"]["containers"][0]["image"] = "postgres:9"
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.writes == ["apply:StatefulSet"]
    again = world.kube.stored("StatefulSet", "mlflow-postgres")
    assert again is not None
    assert again["spec"]["template"]["spec"]["containers"][0]["image"] != "postgres:9"


async def test_a_node_selector_taken_out_of_the_spec_is_taken_out_of_the_children() -> None:
    """The live StatefulSet still held every field the smaller manifest sets, so the operator
    skipped the apply and the selector stayed."""
    world = World(podTemplate={"nodeSelector": {"pool": "cpu"}})
    await world.reconcile()

    def selector() -> Any:
        postgres = world.kube.stored("StatefulSet", "mlflow-postgres")
        assert postgres is not None
        return postgres["spec"]["template"]["spec"].get("nodeSelector")

    assert selector() == {"pool": "cpu"}
    del world.kube.objects[("MLflowServer", NAMESPACE, "mlflow")]["spec"]["podTemplate"]
    await world.reconcile()
    assert selector() is None


async def test_an_invalid_spec_is_reported_once_not_at_every_reconcile() -> None:
    """kopf's PermanentError was raised again by the 10 s timer: a Warning Event each time."""
    world = World(replicas=-1)
    result = await world.reconcile()
    assert world.ready()["reason"] == "InvalidSpec"
    assert "replicas" in world.ready()["message"]
    assert [e[:2] for e in world.events] == [("Warning", "InvalidSpec")]
    assert result.recheck_after == SETTLED_RECHECK_SECONDS
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.writes == []
    assert len(world.events) == 1
    assert not any(k[0] != "MLflowServer" for k in world.kube.objects), "no child for it"


async def test_a_status_decided_from_an_older_object_is_not_written() -> None:
    """kopf adds its finalizer while the first reconcile runs: the status write must not land
    on the newer object, and the next reconcile decides again from it."""
    world = World()
    world.kube.fail["status"] = api_error(409, "Conflict", "the object has been modified")
    result = await world.reconcile()
    assert result.recheck_after < 1
    assert "status" not in world.kube.writes
    # what was done is told (the Secrets exist); the conditions, not recorded, are not
    assert {reason for _, reason, _ in world.events} == {"SecretGenerated"}
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.writes == ["status"]
    assert world.ready()["reason"] == "DatabaseNotReady"  # decided and recorded this time


async def test_a_namespace_being_deleted_gets_no_warning() -> None:
    """Events into a terminating namespace are refused and held kopf's posting queue."""
    world = World()
    world.kube.fail["apply:StatefulSet"] = api_error(
        403,
        "Forbidden",
        'statefulsets.apps "mlflow-postgres" is forbidden: unable to create new content in '
        "namespace ml because it is being terminated",
    )
    await world.reconcile()
    assert not any(type_ == "Warning" for type_, _, _ in world.events)
    server = world.kube.stored("MLflowServer", "mlflow") or {}
    assert "KubernetesForbidden" not in str(server.get("status"))


def settle_stores(kube: FakeKube) -> None:
    for name in ("mlflow-postgres", "mlflow-minio"):
        store = kube.stored("StatefulSet", name)
        assert store is not None
        store["status"] = {
            "readyReplicas": 1,
            "observedGeneration": store["metadata"]["generation"],
        }


def jobs(kube: FakeKube, component: str) -> list[dict[str, Any]]:
    return [
        obj
        for (kind, _, _), obj in kube.objects.items()
        if kind == "Job" and obj["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]


def complete(job: dict[str, Any]) -> None:
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}


async def test_an_upgrade_creates_the_backup_job_first_and_the_migration_after_it() -> None:
    """The order of Jobs through the glue, with the store step's report read from its pod."""
    world = World(image="mlflow-server:3.17.2")
    await world.reconcile()
    settle_stores(world.kube)
    await world.reconcile()
    (first,) = jobs(world.kube, "schema-migration")
    assert jobs(world.kube, "backup") == []  # a first install has nothing to lose
    complete(first)
    await world.reconcile()
    server = world.kube.stored("MLflowServer", "mlflow")
    assert server is not None
    assert server["status"]["migratedImage"] == "mlflow-server:3.17.2"

    server["spec"]["image"] = "mlflow-server:3.18.0"
    await world.reconcile()
    (backup,) = jobs(world.kube, "backup")
    assert len(jobs(world.kube, "schema-migration")) == 1  # no migration before the backup
    assert ("Normal", "BackupStarted") in [(t, r) for t, r, _ in world.events]

    complete(backup)
    key = "s3://mlflow-backups/default/mlflow/20260101T000000Z-b.dump"
    report = {
        "key": key, "time": "2026-01-01T00:00:00Z", "sizeBytes": 10, "verified": True,
        "rows": {"runs": 3}, "beforeImage": "mlflow-server:3.18.0",
        "job": backup["metadata"]["name"],
    }  # fmt: skip
    world.kube.pods = [
        {
            "metadata": {
                "name": "b-1",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {JOB_NAME_LABEL: backup["metadata"]["name"]},
            },
            "status": {
                "containerStatuses": [
                    {
                        "name": "store",
                        "state": {"terminated": {"exitCode": 0, "message": json.dumps(report)}},
                    }
                ]
            },
        }
    ]
    server_pod = {"metadata": {"name": "mlflow-1", "labels": server_pod_labels()}}
    world.kube.pods.append(server_pod)
    await world.reconcile()
    # the backup is stored: the server stops, and the migration waits for its last pod
    deployment = world.kube.stored("Deployment", "mlflow")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 0
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "mlflow-server:3.17.2"
    )
    assert ("Normal", "ServerStopped") in [(t, r) for t, r, _ in world.events]
    assert len(jobs(world.kube, "schema-migration")) == 1
    assert world.ready()["message"].endswith("(1 pods left).")
    server = world.kube.stored("MLflowServer", "mlflow")
    assert server is not None
    assert [b["key"] for b in server["status"]["backups"]] == [key]
    verified = next(c for c in server["status"]["conditions"] if c["type"] == "BackupVerified")
    assert (verified["status"], verified["reason"]) == ("True", "BackupVerified")

    world.kube.pods.remove(server_pod)
    await world.reconcile()
    migrations = jobs(world.kube, "schema-migration")
    assert len(migrations) == 2
    assert "The server is stopped until it ends." in world.ready()["message"]
    (upgrade,) = [m for m in migrations if m is not first]
    complete(upgrade)
    await world.reconcile()
    deployment = world.kube.stored("Deployment", "mlflow")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2  # spec.replicas (the default) again, new image
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "mlflow-server:3.18.0"
    )


def server_pod_labels() -> dict[str, str]:
    return selector_labels("mlflow", COMPONENT_SERVER)


def volume_claim(name: str, size: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        "status": {"phase": "Bound", "capacity": {"storage": size}},
    }


def claim_template_size(kube: FakeKube, statefulset: str) -> str:
    sts = kube.stored("StatefulSet", statefulset)
    assert sts is not None
    return str(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"])


async def grow_postgres_volume(world: World, size: str) -> None:
    await world.reconcile()
    settle_stores(world.kube)
    world.kube.put(volume_claim("data-mlflow-postgres-0", "1Gi"))
    server = world.kube.stored("MLflowServer", "mlflow")
    assert server is not None
    server["spec"]["backendStore"]["postgres"]["managed"]["storage"] = size
    world.kube.writes.clear()
    world.events.clear()
    await world.reconcile()


async def test_a_larger_volume_expands_the_claim_then_recreates_the_statefulset() -> None:
    """A StatefulSet's claim template is immutable: the claim is asked for the size, the
    StatefulSet deleted with its pods orphaned, and created again with the new template."""
    world = World()
    await grow_postgres_volume(world, "3Gi")
    writes = world.kube.writes
    assert writes.index("apply:PersistentVolumeClaim") < writes.index("delete:StatefulSet orphan")
    claim = world.kube.stored("PersistentVolumeClaim", "data-mlflow-postgres-0")
    assert claim is not None
    assert claim["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert [e[:2] for e in world.events if e[1] == "StorageExpanding"] == [
        ("Normal", "StorageExpanding")
    ]
    assert world.kube.stored("StatefulSet", "mlflow-postgres") is None
    world.kube.writes.clear()
    await world.reconcile()  # the deletion's watch event
    assert claim_template_size(world.kube, "mlflow-postgres") == "3Gi"
    assert "delete:StatefulSet orphan" not in world.kube.writes
    assert "apply:PersistentVolumeClaim" not in world.kube.writes  # asked once


async def test_an_expansion_the_api_refuses_keeps_the_claim_and_applies_the_rest() -> None:
    world = World()
    world.kube.fail["apply:PersistentVolumeClaim"] = api_error(
        403,
        "Forbidden",
        'persistentvolumeclaims "data-mlflow-postgres-0" is forbidden: only dynamically '
        "provisioned pvc can be resized and the storageclass that provisions the pvc must "
        "support resize",
    )
    await grow_postgres_volume(world, "3Gi")
    assert "delete:StatefulSet orphan" not in world.kube.writes
    assert claim_template_size(world.kube, "mlflow-postgres") == "1Gi"
    ready = world.ready()
    assert (ready["status"], ready["reason"]) == ("False", "StorageChangeRefused")
    assert ready["message"].startswith(
        "spec.backendStore.postgres.managed: cannot expand the volume of StatefulSet "
        'mlflow-postgres from 1Gi to 3Gi: persistentvolumeclaims "data-mlflow-postgres-0" is '
        "forbidden: only dynamically provisioned pvc can be resized"
    )
    assert [e[:2] for e in world.events if e[1] == "StorageChangeRefused"] == [
        ("Warning", "StorageChangeRefused")
    ]


async def test_a_smaller_volume_is_refused_without_touching_the_claim() -> None:
    world = World()
    await grow_postgres_volume(world, "512Mi")
    assert not any(
        "PersistentVolumeClaim" in w or w.startswith("delete:") for w in world.kube.writes
    )
    assert world.ready()["reason"] == "StorageChangeRefused"
    assert "cannot change storage from 1Gi to 512Mi" in world.ready()["message"]
