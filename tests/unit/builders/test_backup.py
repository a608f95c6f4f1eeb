"""The backup Job's manifest and how its finished pods are read. No I/O.

The scripts themselves run for real in tests/integration/test_backup_scripts.py (local
PostgreSQL and MinIO) and in the e2e upgrade (tests/e2e/test_mlflowserver.py).
"""

from __future__ import annotations

import json
from typing import Any

from mlflow_operator.builders.meta import RESTRICTED_CONTAINER_SECURITY
from mlflow_operator.builders.mlflowserver.backup import (
    build_backup_cronjob,
    build_backup_job,
    build_restore_job,
)
from mlflow_operator.builders.mlflowserver.minio import build_minio_statefulset
from mlflow_operator.builders.mlflowserver.network import build_network_policies
from mlflow_operator.builders.mlflowserver.postgres import build_postgres_statefulset
from mlflow_operator.builders.mlflowserver.server import (
    build_migration_job,
    build_tracking_deployment,
)
from mlflow_operator.builders.pod import without_fixed_ids
from mlflow_operator.core.mlflowserver import layout
from mlflow_operator.core.mlflowserver.backup import observe_backup
from tests.unit.test_mlflowserver_builders import (
    EXTERNAL_SPEC,
    MANAGED_SPEC,
    env_by_name,
    make_server,
    owner_of,
    secret_ref,
)

OLD = "ghcr.io/mlflow-operator/mlflow-server:3.17.2"
NEW = "ghcr.io/mlflow-operator/mlflow-server:3.18.0"
PG = "postgres:16.4"


def backup_job(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    server = make_server(spec)
    return build_backup_job(
        owner_of(server),
        server,
        migration_key="abcdef0123",
        before_image=NEW,
        postgres_image=PG,
        store_image=OLD,
    )


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_dump_then_verify_then_store_each_in_the_image_that_can() -> None:
    job = backup_job()
    assert job["metadata"]["name"] == "mlflow-backup-abcdef0123"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"
    spec = pod_spec(job)
    steps = [(c["name"], c["image"]) for c in spec["initContainers"] + spec["containers"]]
    assert steps == [("dump", PG), ("verify", PG), ("store", OLD)]
    for container in spec["initContainers"] + spec["containers"]:
        assert container["securityContext"].items() >= RESTRICTED_CONTAINER_SECURITY.items()
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["spec"]["backoffLimit"] == 1


def test_only_the_dump_and_store_steps_hold_credentials_and_only_by_reference() -> None:
    dump, verify = pod_spec(backup_job())["initContainers"]
    store = pod_spec(backup_job())["containers"][0]
    assert secret_ref(env_by_name(dump)["PGPASSWORD"]) == ("mlflow-postgres", "password")
    assert secret_ref(env_by_name(store)["AWS_SECRET_ACCESS_KEY"]) == (
        "mlflow-minio",
        "secretAccessKey",
    )
    assert not any("valueFrom" in e for e in verify["env"])  # a throwaway local database
    assert env_by_name(dump)["PGHOST"]["value"] == "mlflow-postgres"


def test_backups_go_to_their_own_bucket_under_the_servers_prefix() -> None:
    env = env_by_name(pod_spec(backup_job())["containers"][0])
    assert env["BACKUP_BUCKET"]["value"] == "models-backups"
    assert env["BACKUP_PREFIX"]["value"] == "ml/mlflow/"
    assert env["BACKUP_KEEP"]["value"] == "7"
    assert env["BACKUP_BEFORE_IMAGE"]["value"] == NEW


def test_a_long_bucket_name_still_gives_a_valid_backup_bucket() -> None:
    spec = {**MANAGED_SPEC, "artifactStore": {"bucket": "a" * 54 + ".b", "s3": {"managed": {}}}}
    bucket = layout.backup_bucket(make_server(spec))
    assert len(bucket) <= 63
    assert bucket == "a" * 54 + "-backups"


def test_an_external_database_is_dumped_where_it_is_and_verify_can_be_off() -> None:
    job = backup_job({**EXTERNAL_SPEC, "backup": {"verify": False, "keep": 3}})
    spec = pod_spec(job)
    assert [c["name"] for c in spec["initContainers"]] == ["dump"]
    env = env_by_name(spec["initContainers"][0])
    assert (env["PGHOST"]["value"], env["PGPORT"]["value"]) == ("pg.example", "6432")
    assert (env["PGDATABASE"]["value"], env["PGSSLMODE"]["value"]) == ("tracking", "require")
    assert secret_ref(env["PGUSER"]) == ("pg-creds", "username")
    assert env_by_name(spec["containers"][0])["BACKUP_KEEP"]["value"] == "3"


def test_scheduled_backups_run_the_same_steps_one_at_a_time() -> None:
    server = make_server({**MANAGED_SPEC, "backup": {"schedule": "0 3 * * *"}})
    cronjob = build_backup_cronjob(owner_of(server), server, postgres_image=PG, store_image=OLD)
    assert cronjob["metadata"]["name"] == "mlflow-backup"
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["concurrencyPolicy"]) == ("0 3 * * *", "Forbid")
    template = spec["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"
    assert "mlflowops.dev/migration-key" not in template["metadata"]["labels"]  # never pruned
    steps = template["spec"]["initContainers"] + template["spec"]["containers"]
    assert [c["name"] for c in steps] == ["dump", "verify", "store"]
    job_name = env_by_name(steps[-1])["BACKUP_NAME"]["valueFrom"]["fieldRef"]
    assert job_name == {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}
    assert env_by_name(steps[-1])["BACKUP_BEFORE_IMAGE"]["value"] == ""


def test_a_restore_fetches_with_store_credentials_and_restores_with_database_ones() -> None:
    key = "s3://models-backups/ml/old/20260101T000000Z-old-backup-1.dump"
    server = make_server({**MANAGED_SPEC, "restoreFrom": {"key": key}})
    job = build_restore_job(owner_of(server), server, postgres_image=PG, fetch_image=NEW)
    assert job["metadata"]["name"] == "mlflow-restore"
    assert job["spec"]["backoffLimit"] == 0  # never again over a half-done restore
    spec = pod_spec(job)
    (fetch,), (restore,) = spec["initContainers"], spec["containers"]
    assert (fetch["name"], fetch["image"], restore["name"], restore["image"]) == (
        "fetch",
        NEW,
        "restore",
        PG,
    )
    assert env_by_name(fetch)["RESTORE_KEY"]["value"] == key
    assert secret_ref(env_by_name(fetch)["AWS_ACCESS_KEY_ID"]) == ("mlflow-minio", "accessKeyId")
    assert "PGPASSWORD" not in env_by_name(fetch)
    assert secret_ref(env_by_name(restore)["PGPASSWORD"]) == ("mlflow-postgres", "password")
    assert "AWS_SECRET_ACCESS_KEY" not in env_by_name(restore)


def finished_job(condition: str, reason: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "mlflow-backup-abcdef0123"},
        "status": {"conditions": [{"type": condition, "status": "True", "reason": reason}]},
    }


def pod(created: str, init: list[dict[str, Any]], main: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": created},
        "status": {"initContainerStatuses": init, "containerStatuses": main},
    }


def exited(name: str, code: int, message: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"terminated": {"exitCode": code, "message": message}}}


def test_a_succeeded_backup_is_what_the_store_step_reported() -> None:
    result = {
        "key": "s3://models-backups/ml/mlflow/20260101T000000Z-x.dump",
        "time": "2026-01-01T00:00:00Z",
        "sizeBytes": 123456,
        "verified": True,
        "rows": {"experiments": 2, "runs": 7},
        "beforeImage": NEW,
    }
    done = pod(
        "2026-01-01T00:00:00Z",
        [exited("dump", 0), exited("verify", 0)],
        [exited("store", 0, json.dumps(result))],
    )
    state = observe_backup(finished_job("Complete"), [done])
    assert state.succeeded
    assert state.record is not None
    assert state.record.key == result["key"]
    assert (state.record.size_bytes, state.record.rows["runs"]) == (123456, 7)


def test_a_failed_backup_says_which_step_of_the_last_try_failed_and_why() -> None:
    first = pod("2026-01-01T00:00:00Z", [exited("dump", 1, "rows changed")], [])
    last = pod(
        "2026-01-01T00:01:00Z",
        [exited("dump", 0), exited("verify", 1, "the restored copy differs\nruns 7 6\n")],
        [],
    )
    state = observe_backup(finished_job("Failed", "BackoffLimitExceeded"), [last, first])
    assert state.failed
    assert state.message == (
        "BackoffLimitExceeded; step verify exited 1: the restored copy differs runs 7 6"
    )


def test_a_running_backup_has_no_verdict() -> None:
    state = observe_backup({"metadata": {"name": "b"}, "status": {}}, [])
    assert (state.succeeded, state.failed, state.record) == (False, False, None)


def every_pod_manifest(**spec: Any) -> list[dict[str, Any]]:
    """Every child of a managed MLflowServer that runs pods."""
    key = "s3://models-backups/ml/old/20260101T000000Z-old-backup-1.dump"
    server = make_server({**MANAGED_SPEC, "restoreFrom": {"key": key}, **spec})
    owner = owner_of(server)
    managed = server.spec
    return [
        build_backup_job(
            owner,
            server,
            migration_key="abcdef0123",
            before_image=NEW,
            postgres_image=PG,
            store_image=OLD,
        ),
        build_restore_job(owner, server, postgres_image=PG, fetch_image=NEW),
        build_backup_cronjob(owner, server, postgres_image=PG, store_image=OLD),
        build_tracking_deployment(owner, server, NEW),
        build_migration_job(owner, server, NEW),
        build_postgres_statefulset(
            owner, managed.backend_store.postgres.managed, PG, managed.pod_template
        ),
        build_minio_statefulset(
            owner, managed.artifact_store.s3.managed, "minio", managed.pod_template
        ),
    ]


def template_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def containers_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template_spec(manifest)
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_container_of_every_mlflowserver_pod_requests_cpu_and_memory() -> None:
    """A namespace whose ResourceQuota counts requests refuses a pod if one container of it
    (init containers included) requests nothing."""
    manifests = every_pod_manifest()
    containers = [c for manifest in manifests for c in containers_of(manifest)]
    assert len(containers) >= 10
    for container in containers:
        assert set(container["resources"]["requests"]) >= {"cpu", "memory"}, container["name"]
    (server_container,) = template_spec(manifests[3])["containers"]
    assert server_container["resources"]["requests"]["memory"] == "512Mi"


def test_without_fixed_ids_no_pod_sets_a_user_or_group_and_nothing_else_changes() -> None:
    """OpenShift's restricted-v2 assigns uid and fsGroup and refuses pods that set others."""
    ids = {"runAsUser", "runAsGroup", "fsGroup"}
    for manifest in every_pod_manifest():
        before = json.dumps(manifest, sort_keys=True)
        platform = without_fixed_ids(manifest)
        assert json.dumps(manifest, sort_keys=True) == before  # the input is left alone
        spec = template_spec(platform)
        assert not ids & set(spec["securityContext"]), manifest["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in containers_of(platform):
            assert not ids & set(container.get("securityContext", {})), container["name"]
        # put back what was removed: the rest is identical
        for original, changed in zip(containers_of(manifest), containers_of(platform), strict=True):
            security = original.get("securityContext", {})
            changed.get("securityContext", {}).update({k: security[k] for k in ids & set(security)})
        original_pod = template_spec(manifest)["securityContext"]
        spec["securityContext"].update({k: original_pod[k] for k in ids & set(original_pod)})
        assert json.dumps(platform, sort_keys=True) == before


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label selection, for the matchLabels and `In` expressions the builders use."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels_of(manifest: dict[str, Any]) -> dict[str, str]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    labels: dict[str, str] = spec["template"]["metadata"]["labels"]
    return labels


def test_the_stores_take_connections_only_from_the_pods_that_use_them() -> None:
    manifests = {m["metadata"]["name"]: m for m in every_pod_manifest()}
    server = make_server(MANAGED_SPEC)
    policies = {p["metadata"]["name"]: p for p in build_network_policies(owner_of(server), server)}
    assert set(policies) == {"mlflow", "mlflow-postgres", "mlflow-minio"}
    for name, policy in policies.items():
        # each policy holds its own component's pods
        (target,) = [m for m in manifests.values() if m["metadata"]["name"] == name]
        assert selects(policy["spec"]["podSelector"], pod_labels_of(target)), name
        assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress is the platform's
    tracking = policies["mlflow"]["spec"]["ingress"]
    assert tracking == [{"ports": [{"protocol": "TCP", "port": 5000}]}]  # from anywhere
    allowed = {
        name: {
            m["metadata"]["name"]
            for m in manifests.values()
            if selects(policy["spec"]["ingress"][0]["from"][0]["podSelector"], pod_labels_of(m))
        }
        for name, policy in policies.items()
        if name != "mlflow"
    }
    jobs = {n for n, m in manifests.items() if m["kind"] in ("Job", "CronJob")}
    migration = {n for n in jobs if "migrate" in n}
    assert allowed["mlflow-postgres"] == {"mlflow"} | jobs
    assert allowed["mlflow-minio"] == {"mlflow"} | (jobs - migration)


def test_image_pull_secrets_reach_every_pod_of_the_server() -> None:
    """Images from a private registry: podTemplate.imagePullSecrets on every pod it runs."""
    for manifest in every_pod_manifest(podTemplate={"imagePullSecrets": [{"name": "regcred"}]}):
        secrets = template_spec(manifest)["imagePullSecrets"]
        assert secrets == [{"name": "regcred"}], manifest["metadata"]["name"]
