"""Manifests of an MLflowServer's children, field by field where it matters. No I/O."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest

from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.builders.meta import RESTRICTED_CONTAINER_SECURITY, Owner
from mlflow_operator.builders.mlflowserver.minio import build_minio_service, build_minio_statefulset
from mlflow_operator.builders.mlflowserver.postgres import (
    build_postgres_services,
    build_postgres_statefulset,
)
from mlflow_operator.builders.mlflowserver.secrets import build_generated_secrets
from mlflow_operator.builders.mlflowserver.server import (
    CHECK_SCHEMA_SCRIPT,
    ENSURE_BUCKET_SCRIPT,
    auth_config,
    build_auth_configmap,
    build_migration_job,
    build_tracking_deployment,
    build_tracking_pdb,
    build_tracking_service,
    migration_job_name,
    server_args,
)
from mlflow_operator.core.endpoint import CredentialsSecret
from mlflow_operator.core.mlflowserver import layout

IMAGE = "ghcr.io/mlflow-operator/mlflow-server:3.17.2"
PG_IMAGE = "postgres:16.4"
MINIO_IMAGE = "minio/minio:latest"
UID = "0b6c7a8e-0000-4000-8000-000000000001"

MANAGED_SPEC: dict[str, Any] = {
    "replicas": 2,
    "workers": 1,
    "backendStore": {"postgres": {"managed": {"storage": "5Gi", "storageClassName": "fast"}}},
    "artifactStore": {"bucket": "models", "s3": {"managed": {}}},
}
EXTERNAL_SPEC: dict[str, Any] = {
    "backendStore": {
        "postgres": {
            "external": {
                "host": "pg.example",
                "port": 6432,
                "database": "tracking",
                "sslMode": "require",
                "credentialsSecretRef": {"name": "pg-creds"},
            }
        }
    },
    "artifactStore": {
        "bucket": "mlflow",
        "s3": {
            "external": {
                "endpoint": "https://s3.example",
                "region": "eu-west-1",
                "credentialsSecretRef": {"name": "s3-creds"},
            }
        },
    },
    "auth": {"adminSecretRef": {"name": "my-admin"}},
    "metrics": {"enabled": False},
}


def make_server(
    spec: dict[str, Any] | None = None, name: str = "mlflow", namespace: str = "ml"
) -> MLflowServer:
    return MLflowServer.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": UID, "generation": 1},
            "spec": spec if spec is not None else MANAGED_SPEC,
        }
    )


def owner_of(server: MLflowServer) -> Owner:
    meta = server.metadata
    return Owner(
        "mlflowops.dev/v1alpha1", "MLflowServer", str(meta["name"]), str(meta["namespace"]), UID
    )


def counting_bytes(size: int) -> bytes:
    """Deterministic stand-in for secrets.token_bytes: different bytes on every call."""
    start = next(_counter)
    return bytes((start + i) % 256 for i in range(size))


_counter = itertools.count(1, 37)


def env_by_name(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def secret_ref(env: dict[str, Any]) -> tuple[str, str]:
    assert "value" not in env, f"{env['name']} has a plain value"
    ref = env["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def assert_owned(manifest: dict[str, Any]) -> None:
    # the label the operator's watches select its children by (handlers/startup.py)
    assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlflow-operator"
    assert manifest["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "mlflowops.dev/v1alpha1",
            "kind": "MLflowServer",
            "name": "mlflow",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def restricted(container: dict[str, Any]) -> None:
    security = container["securityContext"]
    for key, value in RESTRICTED_CONTAINER_SECURITY.items():
        assert security[key] == value
    assert security["readOnlyRootFilesystem"] is True


# --- generated Secrets -------------------------------------------------------------------


def test_managed_server_generates_four_secrets_with_stable_keys() -> None:
    secrets = build_generated_secrets(make_server(), counting_bytes)
    by_name = {s["metadata"]["name"]: s for s in secrets}
    assert set(by_name) == {"mlflow-postgres", "mlflow-minio", "mlflow-admin", "mlflow-keys"}
    assert set(by_name["mlflow-postgres"]["stringData"]) == {"username", "password"}
    assert by_name["mlflow-postgres"]["stringData"]["username"] == "mlflow"
    assert set(by_name["mlflow-minio"]["stringData"]) == {"accessKeyId", "secretAccessKey"}
    admin = by_name["mlflow-admin"]["stringData"]
    assert admin["username"] == "admin"
    assert len(admin["password"]) >= 12
    keys = by_name["mlflow-keys"]["stringData"]
    assert set(keys) == {"flaskSecretKey", "webhookEncryptionKey"}
    assert len(base64.urlsafe_b64decode(keys["webhookEncryptionKey"])) == 32  # a Fernet key


def test_generated_secrets_are_not_owned_so_they_stay_with_the_volumes() -> None:
    for secret in build_generated_secrets(make_server(), counting_bytes):
        assert "ownerReferences" not in secret["metadata"]
        assert secret["metadata"]["labels"]["mlflowops.dev/mlflowserver"] == "mlflow"
        assert secret["metadata"]["namespace"] == "ml"


def test_external_stores_and_named_admin_generate_only_the_server_keys() -> None:
    secrets = build_generated_secrets(make_server(EXTERNAL_SPEC), counting_bytes)
    assert [s["metadata"]["name"] for s in secrets] == ["mlflow-keys"]


def test_generated_values_are_random_per_call() -> None:
    first = build_generated_secrets(make_server())
    second = build_generated_secrets(make_server())
    assert first[0]["stringData"]["password"] != second[0]["stringData"]["password"]


# --- managed PostgreSQL ------------------------------------------------------------------


def test_postgres_statefulset_field_by_field() -> None:
    server = make_server()
    managed = server.spec.backend_store.postgres.managed
    assert managed is not None
    sts = build_postgres_statefulset(owner_of(server), managed, PG_IMAGE, server.spec.pod_template)
    assert_owned(sts)
    assert sts["metadata"]["name"] == "mlflow-postgres"
    spec = sts["spec"]
    assert spec["serviceName"] == "mlflow-postgres-hl"
    assert spec["replicas"] == 1
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    claim = spec["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast",
    }
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == 999
    (container,) = pod["containers"]
    assert container["image"] == PG_IMAGE
    restricted(container)
    env = env_by_name(container)
    assert secret_ref(env["POSTGRES_USER"]) == ("mlflow-postgres", "username")
    assert secret_ref(env["POSTGRES_PASSWORD"]) == ("mlflow-postgres", "password")
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert "pg_isready" in command[-1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/var/lib/postgresql/data"] == "data"
    assert "/var/run/postgresql" in mounts


def test_postgres_image_and_default_storage_class() -> None:
    spec = json.loads(json.dumps(MANAGED_SPEC))
    spec["backendStore"]["postgres"]["managed"] = {"image": "postgres:17"}
    server = make_server(spec)
    managed = server.spec.backend_store.postgres.managed
    assert managed is not None
    sts = build_postgres_statefulset(owner_of(server), managed, PG_IMAGE, server.spec.pod_template)
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "postgres:17"
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert "storageClassName" not in claim  # the cluster's default class
    assert claim["resources"]["requests"]["storage"] == "10Gi"


def test_postgres_headless_and_client_services() -> None:
    headless, client = build_postgres_services(owner_of(make_server()))
    for service in (headless, client):
        assert_owned(service)
        assert service["spec"]["ports"][0]["port"] == 5432
        assert service["spec"]["selector"] == {
            "mlflowops.dev/mlflowserver": "mlflow",
            "app.kubernetes.io/component": "postgresql",
        }
    assert headless["metadata"]["name"] == "mlflow-postgres-hl"
    assert headless["spec"]["clusterIP"] == "None"
    assert client["metadata"]["name"] == "mlflow-postgres"
    assert client["spec"]["type"] == "ClusterIP"


# --- managed MinIO -----------------------------------------------------------------------


def test_minio_statefulset_and_service() -> None:
    server = make_server()
    managed = server.spec.artifact_store.s3.managed
    assert managed is not None
    sts = build_minio_statefulset(owner_of(server), managed, MINIO_IMAGE, server.spec.pod_template)
    assert_owned(sts)
    assert sts["metadata"]["name"] == "mlflow-minio"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "50Gi"
    }
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    restricted(container)
    env = env_by_name(container)
    assert secret_ref(env["MINIO_ROOT_USER"]) == ("mlflow-minio", "accessKeyId")
    assert secret_ref(env["MINIO_ROOT_PASSWORD"]) == ("mlflow-minio", "secretAccessKey")
    assert container["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    service = build_minio_service(owner_of(server))
    assert_owned(service)
    assert service["metadata"]["name"] == "mlflow-minio"
    assert service["spec"]["ports"][0]["port"] == 9000


# --- tracking server ---------------------------------------------------------------------


def test_server_args_for_managed_stores() -> None:
    args = server_args(make_server())
    assert args[:7] == ["server", "--host", "0.0.0.0", "--port", "5000", "--workers", "1"]
    assert args[args.index("--backend-store-uri") + 1] == (
        "postgresql+psycopg2://mlflow-postgres.ml.svc:5432/mlflow?sslmode=disable"
    )
    assert args[args.index("--artifacts-destination") + 1] == "s3://models"
    assert "--serve-artifacts" in args
    assert args[args.index("--app-name") + 1] == "basic-auth"
    assert args[args.index("--expose-prometheus") + 1] == "/prometheus"
    hosts = args[args.index("--allowed-hosts") + 1].split(",")
    for host in ("mlflow", "mlflow.ml", "mlflow.ml.svc", "mlflow.ml.svc:*", "mlflow.ml.svc.*"):
        assert host in hosts
    assert "localhost:*" in hosts
    assert "10.*" in hosts


def test_server_args_for_external_stores_without_auth_or_metrics() -> None:
    spec = {**EXTERNAL_SPEC, "auth": {"enabled": False}, "workers": 3}
    args = server_args(make_server(spec))
    assert args[args.index("--workers") + 1] == "3"
    assert args[args.index("--backend-store-uri") + 1] == (
        "postgresql+psycopg2://pg.example:6432/tracking?sslmode=require"
    )
    assert "--app-name" not in args
    assert "--expose-prometheus" not in args


def test_tracking_deployment_field_by_field() -> None:
    server = make_server()
    deployment = build_tracking_deployment(owner_of(server), server, IMAGE)
    assert_owned(deployment)
    assert deployment["metadata"]["name"] == "mlflow"
    assert deployment["metadata"]["annotations"]["mlflowops.dev/image"] == IMAGE
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["mlflow"]
    assert container["args"] == server_args(server)
    assert container["ports"] == [{"name": "http", "containerPort": 5000}]
    restricted(container)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    env = env_by_name(container)
    assert secret_ref(env["PGUSER"]) == ("mlflow-postgres", "username")
    assert secret_ref(env["PGPASSWORD"]) == ("mlflow-postgres", "password")
    assert secret_ref(env["AWS_ACCESS_KEY_ID"]) == ("mlflow-minio", "accessKeyId")
    assert secret_ref(env["AWS_SECRET_ACCESS_KEY"]) == ("mlflow-minio", "secretAccessKey")
    assert secret_ref(env["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"]) == (
        "mlflow-keys",
        "webhookEncryptionKey",
    )
    assert secret_ref(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == ("mlflow-keys", "flaskSecretKey")
    assert secret_ref(env["MLFLOW_AUTH_ADMIN_USERNAME"]) == ("mlflow-admin", "username")
    assert secret_ref(env["MLFLOW_AUTH_ADMIN_PASSWORD"]) == ("mlflow-admin", "password")
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://mlflow-minio.ml.svc:9000"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == "/etc/mlflow/auth/basic_auth.ini"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/prometheus": "prometheus", "/etc/mlflow/auth": "auth-config"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth-config"]["configMap"] == {"name": "mlflow-auth"}
    (init,) = pod["initContainers"]
    assert init["name"] == "ensure-bucket"
    init_env = env_by_name(init)
    assert init_env["MLFLOW_ARTIFACTS_BUCKET"]["value"] == "models"
    assert secret_ref(init_env["AWS_SECRET_ACCESS_KEY"]) == ("mlflow-minio", "secretAccessKey")
    restricted(init)


def test_external_deployment_reads_the_named_secrets_and_creates_no_bucket() -> None:
    server = make_server(EXTERNAL_SPEC)
    deployment = build_tracking_deployment(owner_of(server), server, IMAGE)
    pod = deployment["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    env = env_by_name(pod["containers"][0])
    assert secret_ref(env["PGUSER"]) == ("pg-creds", "username")
    assert secret_ref(env["PGPASSWORD"]) == ("pg-creds", "password")
    assert secret_ref(env["AWS_ACCESS_KEY_ID"]) == ("s3-creds", "accessKeyId")
    assert secret_ref(env["AWS_SECRET_ACCESS_KEY"]) == ("s3-creds", "secretAccessKey")
    assert secret_ref(env["MLFLOW_AUTH_ADMIN_PASSWORD"]) == ("my-admin", "password")
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "https://s3.example"
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert "/prometheus" not in mounts


def test_resources_pass_through() -> None:
    spec = {**MANAGED_SPEC, "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}}}
    server = make_server(spec)
    container = build_tracking_deployment(owner_of(server), server, IMAGE)["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}}


def test_env_passes_through_and_a_user_variable_wins_by_name() -> None:
    spec = {
        **MANAGED_SPEC,
        "env": [
            {"name": "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "value": "true"},
            {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "true"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
        ],
    }
    server = make_server(spec)
    container = build_tracking_deployment(owner_of(server), server, IMAGE)["spec"]["template"][
        "spec"
    ]["containers"][0]
    env = env_by_name(container)
    assert env["MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS"]["value"] == "true"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "true"  # ours said "false"
    assert secret_ref(env["TOKEN"]) == ("t", "k")
    assert len(env) == len(container["env"])  # one entry per name
    assert secret_ref(env["PGPASSWORD"]) == ("mlflow-postgres", "password")  # ours stay


def test_a_budget_keeps_one_of_two_or_more_tracking_pods_evictable_at_a_time() -> None:
    server = make_server()
    owner = owner_of(server)
    pdb = build_tracking_pdb(owner, server)
    assert pdb is not None
    assert_owned(pdb)
    assert pdb["metadata"]["name"] == "mlflow"
    assert pdb["spec"]["maxUnavailable"] == 1
    deployment = build_tracking_deployment(owner, server, IMAGE)
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert build_tracking_pdb(owner, make_server({**MANAGED_SPEC, "replicas": 1})) is None
    assert build_tracking_pdb(owner, make_server({**MANAGED_SPEC, "replicas": 0})) is None


def test_tracking_service() -> None:
    spec = {**MANAGED_SPEC, "service": {"type": "NodePort", "port": 8080}}
    server = make_server(spec)
    service = build_tracking_service(owner_of(server), server)
    assert_owned(service)
    assert service["metadata"]["name"] == "mlflow"
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "tracking-server"


def test_auth_config_has_the_database_but_no_credentials() -> None:
    server = make_server()
    configmap = build_auth_configmap(owner_of(server), server)
    assert_owned(configmap)
    ini = configmap["data"]["basic_auth.ini"]
    assert ini == auth_config(server)
    assert "database_uri = postgresql+psycopg2://mlflow-postgres.ml.svc:5432/mlflow" in ini
    assert "@" not in ini  # no user:password@ in the URL


def test_users_without_a_grant_see_nothing_unless_asked_and_a_change_rolls_the_server() -> None:
    """Least privilege by default: a ModelDeployment's own user reads its model only."""
    server = make_server()
    assert "default_permission = NO_PERMISSIONS\n" in auth_config(server)
    hashes = set()
    for permission in ("NO_PERMISSIONS", "READ"):
        changed = make_server({**MANAGED_SPEC, "auth": {"defaultPermission": permission}})
        assert f"default_permission = {permission}\n" in auth_config(changed)
        template = build_tracking_deployment(owner_of(changed), changed, IMAGE)["spec"]["template"]
        hashes.add(template["metadata"]["annotations"]["mlflowops.dev/config-hash"])
    assert len(hashes) == 2  # MLflow reads the file once at start: new pods read the new one


# --- schema migration --------------------------------------------------------------------


def test_migration_job_runs_db_upgrade_then_auth_upgrade() -> None:
    server = make_server()
    job = build_migration_job(owner_of(server), server, IMAGE)
    assert_owned(job)
    assert job["metadata"]["name"] == migration_job_name(server, IMAGE)
    assert job["metadata"]["name"].startswith("mlflow-migrate-")
    assert job["metadata"]["annotations"]["mlflowops.dev/image"] == IMAGE
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    uri = layout.backend_store_uri(server)
    check_step, tracking_step = pod["initContainers"]
    assert check_step["name"] == "check-schema"
    assert check_step["args"] == ["-c", CHECK_SCHEMA_SCRIPT, uri]
    assert tracking_step["command"] == ["mlflow"]
    assert tracking_step["args"] == ["db", "upgrade", uri]
    (auth_step,) = pod["containers"]
    assert auth_step["args"] == ["-m", "mlflow.server.auth", "db", "upgrade", "--url", uri]
    # a newer schema fails the Job at once: retries cannot make it older
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"] == {"containerName": "check-schema", "operator": "In", "values": [3]}
    for step in (check_step, tracking_step, auth_step):
        assert step["image"] == IMAGE
        restricted(step)
        env = env_by_name(step)
        assert secret_ref(env["PGPASSWORD"]) == ("mlflow-postgres", "password")


def test_migration_without_auth_checks_then_upgrades_the_tracking_schema_only() -> None:
    server = make_server({**MANAGED_SPEC, "auth": {"enabled": False}})
    pod = build_migration_job(owner_of(server), server, IMAGE)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["check-schema"]
    assert pod["containers"][0]["args"][:2] == ["db", "upgrade"]


def test_check_schema_script_is_valid_python() -> None:
    compile(CHECK_SCHEMA_SCRIPT, "check-schema", "exec")


def test_migration_job_name_changes_with_the_image_only() -> None:
    server = make_server()
    same = migration_job_name(server, IMAGE)
    assert migration_job_name(make_server(), IMAGE) == same
    assert migration_job_name(server, IMAGE.replace("3.17.2", "3.18.0")) != same
    assert len(migration_job_name(make_server(name="m" * 63), IMAGE)) <= 63


def test_ensure_bucket_script_is_valid_python() -> None:
    compile(ENSURE_BUCKET_SCRIPT, "ensure-bucket", "exec")


# --- secrets never appear in manifests ---------------------------------------------------


@pytest.mark.parametrize("spec", [MANAGED_SPEC, EXTERNAL_SPEC], ids=["managed", "external"])
def test_no_generated_value_appears_in_any_other_manifest(spec: dict[str, Any]) -> None:
    server = make_server(spec)
    owner = owner_of(server)
    values = [
        value
        for secret in build_generated_secrets(server, counting_bytes)
        for key, value in secret["stringData"].items()
        if key not in ("username",)
    ]
    manifests: list[dict[str, Any]] = [
        build_tracking_deployment(owner, server, IMAGE),
        build_tracking_service(owner, server),
        build_migration_job(owner, server, IMAGE),
        build_auth_configmap(owner, server),
        *build_postgres_services(owner),
        build_minio_service(owner),
    ]
    if server.spec.backend_store.postgres.managed:
        manifests.append(
            build_postgres_statefulset(
                owner,
                server.spec.backend_store.postgres.managed,
                PG_IMAGE,
                server.spec.pod_template,
            )
        )
    if server.spec.artifact_store.s3.managed:
        manifests.append(
            build_minio_statefulset(
                owner, server.spec.artifact_store.s3.managed, MINIO_IMAGE, server.spec.pod_template
            )
        )
    text = json.dumps(manifests)
    assert values
    for value in values:
        assert value not in text


# --- what the ModelDeployment controller reads -------------------------------------------


def test_tracking_endpoint_of_a_server_with_generated_admin() -> None:
    endpoint = layout.tracking_endpoint(make_server())
    assert endpoint.url == "http://mlflow.ml.svc:5000"
    assert endpoint.credentials == CredentialsSecret(
        "mlflow-admin", username_key="username", password_key="password", token_key=None
    )


def test_tracking_endpoint_with_named_admin_and_port() -> None:
    spec = {**EXTERNAL_SPEC, "service": {"port": 80}}
    endpoint = layout.tracking_endpoint(make_server(spec))
    assert endpoint.url == "http://mlflow.ml.svc:80"
    assert endpoint.credentials is not None
    assert endpoint.credentials.name == "my-admin"


def test_tracking_endpoint_without_auth_has_no_credentials() -> None:
    endpoint = layout.tracking_endpoint(make_server({**MANAGED_SPEC, "auth": {"enabled": False}}))
    assert endpoint.credentials is None
