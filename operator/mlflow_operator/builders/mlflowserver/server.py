"""The MLflow tracking server: schema-migration Job, Deployment, Service, auth config.

Credentials reach the containers only as env vars from Secrets (secretKeyRef). The database
URL carries host, port, database and sslmode; libpq takes the user and password from PGUSER
and PGPASSWORD, so no credential is ever part of a URL, an argument or a file.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mlflow_operator.api import API_GROUP
from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.builders.meta import RESTRICTED_CONTAINER_SECURITY, Owner, child_metadata
from mlflow_operator.builders.mlflowserver.common import (
    COMPONENT_AUTH,
    COMPONENT_MIGRATION,
    COMPONENT_SERVER,
    empty_dir,
    plain_env,
    pod_metadata,
    pod_security_context,
    secret_env,
    selector_labels,
    server_labels,
)
from mlflow_operator.builders.pod import (
    disruption_budget,
    http_probe,
    placement,
    requests_defaulted,
    with_default_requests,
)
from mlflow_operator.core.mlflowserver import layout
from mlflow_operator.core.naming import ANNOTATION_CONFIG_HASH, ANNOTATION_IMAGE

SERVER_UID = 65532  # the "nonroot" user of the mlflow-server image (Dockerfile)
TRACKING_REQUESTS = {"cpu": "100m", "memory": "512Mi"}
AUTH_CONFIG_DIR = "/etc/mlflow/auth"
AUTH_CONFIG_FILE = "basic_auth.ini"
PROMETHEUS_DIR = "/prometheus"
LABEL_MIGRATION_KEY = f"{API_GROUP}/migration-key"

# Creates the bucket unless it exists; safe to run in every pod start and in parallel.
# The bucket name comes from the environment, never spliced into the code.
ENSURE_BUCKET_SCRIPT = """\
import os, sys, time
import boto3
from botocore.exceptions import ClientError, EndpointConnectionError
bucket = os.environ["MLFLOW_ARTIFACTS_BUCKET"]
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
for attempt in range(60):
    try:
        s3.head_bucket(Bucket=bucket)
        print(f"bucket {bucket} exists")
        sys.exit(0)
    except EndpointConnectionError:
        print("object store not reachable yet; retrying", flush=True)
        time.sleep(5)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as create_err:
            if create_err.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise
        print(f"bucket {bucket} created")
        sys.exit(0)
sys.exit("object store not reachable")
"""


NEWER_SCHEMA_EXIT = layout.NEWER_SCHEMA_EXIT
STEP_CHECK_SCHEMA = layout.STEP_CHECK_SCHEMA
# Before `mlflow db upgrade`: a database migrated by a newer MLflow has a revision this image's
# migrations do not know. MLflow cannot migrate back; its own error ("Can't locate revision")
# says little, so this step says what happened, and exits 3, which fails the Job at once.
CHECK_SCHEMA_SCRIPT = """\
import os, sys
import mlflow
import sqlalchemy
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

scripts = ScriptDirectory(os.path.join(os.path.dirname(mlflow.__file__), "store", "db_migrations"))
known = {script.revision for script in scripts.walk_revisions()}
engine = sqlalchemy.create_engine(sys.argv[1])
try:
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
finally:
    engine.dispose()
if current is not None and current not in known:
    print(
        f"the database schema is at revision {current}, which MLflow {mlflow.__version__} of "
        "this image does not know: a newer MLflow migrated it, and MLflow cannot migrate a "
        "schema back",
        file=sys.stderr,
    )
    sys.exit(NEWER_SCHEMA_EXIT)
print(f"schema revision {current or 'none (empty database)'}: known to MLflow {mlflow.__version__}")
""".replace("NEWER_SCHEMA_EXIT", str(NEWER_SCHEMA_EXIT))


def database_env(server: MLflowServer) -> list[dict[str, Any]]:
    """libpq's PGUSER/PGPASSWORD from the database Secret, by reference."""
    secret = layout.database_secret(server)
    return [
        secret_env("PGUSER", secret.name, secret.username_key),
        secret_env("PGPASSWORD", secret.name, secret.password_key),
    ]


def object_store_env(server: MLflowServer) -> list[dict[str, Any]]:
    """boto3's S3 settings; only the tracking server holds them (it proxies artifacts)."""
    secret = layout.object_store_secret(server)
    return [
        plain_env("MLFLOW_S3_ENDPOINT_URL", layout.s3_endpoint(server)),
        plain_env("AWS_DEFAULT_REGION", layout.s3_region(server)),
        secret_env("AWS_ACCESS_KEY_ID", secret.name, secret.username_key),
        secret_env("AWS_SECRET_ACCESS_KEY", secret.name, secret.password_key),
    ]


def server_args(server: MLflowServer) -> list[str]:
    """Arguments of `mlflow server` (after the command `mlflow`); no credential among them."""
    args = [
        "server",
        "--host",
        "0.0.0.0",  # noqa: S104 - a pod listens on its own IP
        "--port",
        str(layout.TRACKING_PORT),
        "--workers",
        str(server.spec.workers),
        "--backend-store-uri",
        layout.backend_store_uri(server),
        "--artifacts-destination",
        f"s3://{server.spec.artifact_store.bucket}",
        # clients and serving pods get artifacts through the server: they need no S3 keys
        "--serve-artifacts",
        "--allowed-hosts",
        ",".join(layout.allowed_hosts(server)),
    ]
    if server.spec.auth.enabled:
        args += ["--app-name", "basic-auth"]
    if server.spec.metrics.enabled:
        args += ["--expose-prometheus", PROMETHEUS_DIR]
    return args


def server_env(server: MLflowServer) -> list[dict[str, Any]]:
    names = layout.ServerNames(str(server.metadata["name"]))
    env = [
        *database_env(server),
        *object_store_env(server),
        # The job runner would start ~8 consumers in every replica and must run on at most
        # one; a Deployment's replicas are alike, so none runs it.
        plain_env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
        plain_env("MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS", "false"),
        # the same key on every replica, or webhook secrets written by one are garbage to another
        secret_env(
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", names.keys_secret, layout.WEBHOOK_KEY_KEY
        ),
        plain_env("HOME", "/tmp"),  # noqa: S108 - an emptyDir; the root filesystem is read-only
        plain_env("PYTHONUNBUFFERED", "1"),
    ]
    if server.spec.auth.enabled:
        admin = layout.admin_secret(server)
        env += [
            plain_env("MLFLOW_AUTH_CONFIG_PATH", f"{AUTH_CONFIG_DIR}/{AUTH_CONFIG_FILE}"),
            secret_env(
                "MLFLOW_FLASK_SERVER_SECRET_KEY", names.keys_secret, layout.FLASK_SECRET_KEY_KEY
            ),
            # used only on the first start against an empty user table
            secret_env("MLFLOW_AUTH_ADMIN_USERNAME", admin.name, admin.username_key),
            secret_env("MLFLOW_AUTH_ADMIN_PASSWORD", admin.name, admin.password_key),
        ]
    # the user's variables win over ours, by name (as for serving pods)
    by_name = {e["name"]: e for e in env} | {e.name: e.to_wire() for e in server.spec.env}
    return list(by_name.values())


def build_tracking_pdb(owner: Owner, server: MLflowServer) -> dict[str, Any] | None:
    """At most one tracking server pod evicted at a time (node drains), with 2+ replicas."""
    metadata = child_metadata(
        layout.ServerNames(owner.name).deployment,
        owner,
        server_labels(owner.name, COMPONENT_SERVER),
    )
    return disruption_budget(
        metadata, selector_labels(owner.name, COMPONENT_SERVER), server.spec.replicas
    )


def auth_config(server: MLflowServer) -> str:
    """MLflow's basic_auth.ini; its users live in the tracking database (own tables and own
    alembic version table), so every replica sees the same users."""
    return (
        "[mlflow]\n"
        f"default_permission = {server.spec.auth.default_permission}\n"
        f"database_uri = {layout.backend_store_uri(server)}\n"
        f"admin_username = {layout.ADMIN_USERNAME}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def build_auth_configmap(owner: Owner, server: MLflowServer) -> dict[str, Any]:
    names = layout.ServerNames(owner.name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(
            names.auth_config, owner, server_labels(owner.name, COMPONENT_AUTH)
        ),
        "data": {AUTH_CONFIG_FILE: auth_config(server)},
    }


def migration_job_name(server: MLflowServer, image: str) -> str:
    key = layout.migration_key(image, layout.backend_store_uri(server))
    return layout.ServerNames(str(server.metadata["name"])).migration_job(key)


def build_migration_job(owner: Owner, server: MLflowServer, image: str) -> dict[str, Any]:
    """`mlflow db upgrade` for one image: the name carries a hash of image and database, so
    each new image migrates once, and a Job that exists is never changed (Jobs are immutable).
    With auth on, the auth tables are migrated after, so replicas do not race to create them.
    """
    uri = layout.backend_store_uri(server)
    key = layout.migration_key(image, uri)
    labels = {**server_labels(owner.name, COMPONENT_MIGRATION), LABEL_MIGRATION_KEY: key}
    env = database_env(server)
    steps = [
        _step(STEP_CHECK_SCHEMA, image, ["python"], ["-c", CHECK_SCHEMA_SCRIPT, uri], env),
        _step("upgrade-tracking-schema", image, ["mlflow"], ["db", "upgrade", uri], env),
    ]
    if server.spec.auth.enabled:
        steps.append(
            _step(
                "upgrade-auth-schema",
                image,
                ["python"],
                ["-m", "mlflow.server.auth", "db", "upgrade", "--url", uri],
                env,
            )
        )
    *init_steps, last_step = steps
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security_context(SERVER_UID),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "containers": [last_step],
        "volumes": [empty_dir("tmp")],
        **placement(server.spec.pod_template),
    }
    if init_steps:
        pod_spec["initContainers"] = init_steps
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(
            layout.ServerNames(owner.name).migration_job(key),
            owner,
            labels,
            annotations={ANNOTATION_IMAGE: image},
        ),
        "spec": {
            # migrations are not transactional: a few retries, then a person looks
            "backoffLimit": 2,
            # a newer schema does not become older by retrying
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": STEP_CHECK_SCHEMA,
                            "operator": "In",
                            "values": [NEWER_SCHEMA_EXIT],
                        },
                    }
                ]
            },
            "activeDeadlineSeconds": 3600,
            "template": {
                "metadata": pod_metadata(server.spec.pod_template, labels),
                "spec": with_default_requests(pod_spec),
            },
        },
    }


def build_tracking_deployment(
    owner: Owner, server: MLflowServer, image: str, replicas: int | None = None
) -> dict[str, Any]:
    """The server Deployment at `image`, which the caller passes only once it is migrated;
    `replicas` overrides spec.replicas (0 while an upgrade's migration runs)."""
    spec = server.spec
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    volumes = [empty_dir("tmp")]
    if spec.metrics.enabled:
        mounts.append({"name": "prometheus", "mountPath": PROMETHEUS_DIR})
        volumes.append(empty_dir("prometheus"))
    if spec.auth.enabled:
        mounts.append({"name": "auth-config", "mountPath": AUTH_CONFIG_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "auth-config",
                "configMap": {"name": layout.ServerNames(owner.name).auth_config},
            }
        )
    container: dict[str, Any] = {
        "name": "mlflow",
        "image": image,
        "command": ["mlflow"],
        "args": server_args(server),
        "ports": [{"name": "http", "containerPort": layout.TRACKING_PORT}],
        "env": server_env(server),
        # /health answers before the database is touched; startup allows a slow first start
        # Short periods: after an upgrade's migration every pod starts at once, and the
        # kubelet's first readiness probe waits one period after the startup probe passed;
        # /health is a constant answer, cheap at any rate.
        "startupProbe": http_probe("/health", "http", period=2, failures=150),
        "readinessProbe": http_probe("/health", "http", period=3, failures=3),
        "livenessProbe": http_probe("/health", "http", period=20, failures=6),
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        "volumeMounts": mounts,
    }
    # gunicorn workers of `mlflow server` take ~150 MiB each: more than the pods' default
    container["resources"] = requests_defaulted(spec.resources.to_wire(), TRACKING_REQUESTS)
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(SERVER_UID),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        # `mlflow server` installs no SIGTERM handler, and PID 1 ignores unhandled signals:
        # with pause as PID 1, a rolling update stops old pods at once, not after the grace
        # period.
        "shareProcessNamespace": True,
        "containers": [container],
        "volumes": volumes,
        **placement(spec.pod_template),
    }
    if spec.artifact_store.s3.managed is not None:
        pod_spec["initContainers"] = [_ensure_bucket_container(server, image)]
    labels = server_labels(owner.name, COMPONENT_SERVER)
    template_metadata = pod_metadata(spec.pod_template, labels)
    if spec.auth.enabled:
        # MLflow reads basic_auth.ini once at start: a changed one rolls the pods
        digest = hashlib.sha256(auth_config(server).encode()).hexdigest()[:16]
        template_metadata.setdefault("annotations", {})[ANNOTATION_CONFIG_HASH] = digest
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(
            layout.ServerNames(owner.name).deployment,
            owner,
            labels,
            annotations={ANNOTATION_IMAGE: image},
        ),
        "spec": {
            "replicas": spec.replicas if replicas is None else replicas,
            "selector": {"matchLabels": selector_labels(owner.name, COMPONENT_SERVER)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": template_metadata,
                "spec": with_default_requests(pod_spec),
            },
        },
    }


def build_tracking_service(owner: Owner, server: MLflowServer) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(
            layout.ServerNames(owner.name).service,
            owner,
            server_labels(owner.name, COMPONENT_SERVER),
        ),
        "spec": {
            "type": server.spec.service.type,
            "selector": selector_labels(owner.name, COMPONENT_SERVER),
            "ports": [
                {
                    "name": "http",
                    "port": server.spec.service.port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def _ensure_bucket_container(server: MLflowServer, image: str) -> dict[str, Any]:
    return {
        "name": "ensure-bucket",
        "image": image,
        "command": ["python", "-c", ENSURE_BUCKET_SCRIPT],
        "env": [
            *object_store_env(server),
            plain_env("MLFLOW_ARTIFACTS_BUCKET", server.spec.artifact_store.bucket),
            plain_env("HOME", "/tmp"),  # noqa: S108
        ],
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }


def _step(
    name: str, image: str, command: list[str], args: list[str], env: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": command,
        "args": args,
        "env": [*env, plain_env("HOME", "/tmp")],  # noqa: S108
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        # a failed step's last log lines become its message, which the operator reports
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }
