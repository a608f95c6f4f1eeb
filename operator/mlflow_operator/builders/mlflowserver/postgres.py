"""Managed PostgreSQL: one StatefulSet with its volume, a headless and a client Service."""

from __future__ import annotations

from typing import Any

from mlflow_operator.api.common import PodTemplate
from mlflow_operator.api.mlflowserver import ManagedStore
from mlflow_operator.builders.meta import RESTRICTED_CONTAINER_SECURITY, Owner, child_metadata
from mlflow_operator.builders.mlflowserver.common import (
    COMPONENT_POSTGRES,
    empty_dir,
    plain_env,
    secret_env,
    selector_labels,
    server_labels,
    store_stateful_set,
)
from mlflow_operator.builders.pod import exec_probe
from mlflow_operator.core.mlflowserver import layout

POSTGRES_UID = 999  # the postgres user of the official image
DATA_MOUNT = "/var/lib/postgresql/data"
# a subdirectory: initdb refuses a mount point that holds lost+found
PGDATA = f"{DATA_MOUNT}/pgdata"
DATA_VOLUME = "data"

# initdb and postgres look up their user by uid, and a uid the platform assigned (OpenShift, see
# config `openshift`) has no /etc/passwd entry: they would stop with "could not look up
# effective user ID". nss_wrapper gives it one, as the official image's entrypoint does (the
# official image ships the library; so must any other PostgreSQL image run that way).
ASSIGNED_UID_IDENTITY = """\
if ! id -un > /dev/null 2>&1; then
  for lib in /usr/lib/libnss_wrapper.so /usr/lib/*/libnss_wrapper.so; do
    if [ -e "$lib" ]; then
      NSS_WRAPPER_PASSWD="$(mktemp)" && NSS_WRAPPER_GROUP="$(mktemp)"
      echo "postgres:x:$(id -u):$(id -g):PostgreSQL:/tmp:/bin/false" > "$NSS_WRAPPER_PASSWD"
      echo "postgres:x:$(id -g):" > "$NSS_WRAPPER_GROUP"
      export LD_PRELOAD="$lib" NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
      break
    fi
  done
fi
"""

# The container's whole start, spelled out instead of left to an image's entrypoint script: the
# first start creates the cluster (superuser and password from the Secret, passed through a
# file in the pod's /tmp, never an argument), lets clients in by password (scram-sha-256) from
# any address, and creates MLflow's database in single-user mode (no server, no socket yet);
# every start then runs the server on all interfaces. It needs only initdb and postgres on PATH,
# so it runs the official postgres image and Debian's packages alike (and takes over a volume
# the official image's entrypoint initialised: its PG_VERSION says it is done).
START_SCRIPT = (
    """\
set -eu
"""
    + ASSIGNED_UID_IDENTITY
    + """\
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --no-locale \\
    --auth-local=trust --auth-host=scram-sha-256
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "CREATE DATABASE \\"$POSTGRES_DB\\";" | postgres --single -D "$PGDATA" postgres > /dev/null
fi
exec postgres -c listen_addresses='*'
"""
)

# pg_isready over TCP: the same path MLflow uses, and it needs no password.
_PG_ISREADY = [
    "sh",
    "-c",
    'exec pg_isready --host=127.0.0.1 --username="$POSTGRES_USER" --dbname="$POSTGRES_DB"',
]


def build_postgres_statefulset(
    owner: Owner, managed: ManagedStore, default_image: str, pod: PodTemplate
) -> dict[str, Any]:
    names = layout.ServerNames(owner.name)
    secret = names.postgres
    container = {
        "name": "postgres",
        "image": managed.image or default_image,
        "command": ["sh", "-c", START_SCRIPT],
        "ports": [{"name": "postgres", "containerPort": layout.POSTGRES_PORT}],
        "env": [
            secret_env("POSTGRES_USER", secret, layout.USERNAME_KEY),
            secret_env("POSTGRES_PASSWORD", secret, layout.PASSWORD_KEY),
            plain_env("POSTGRES_DB", layout.MANAGED_DATABASE),
            plain_env("PGDATA", PGDATA),
        ],
        # a first start runs initdb: allow it minutes before liveness counts
        "startupProbe": _pg_probe(period=5, failures=60),
        "readinessProbe": _pg_probe(period=5, failures=3),
        "livenessProbe": _pg_probe(period=10, failures=6),
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": DATA_MOUNT},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir of the pod
        ],
    }
    return store_stateful_set(
        name=names.postgres,
        service_name=names.postgres_headless,
        owner=owner,
        component=COMPONENT_POSTGRES,
        uid=POSTGRES_UID,
        container=container,
        volumes=[empty_dir("run"), empty_dir("tmp")],
        pod=pod,
        claim=volume_claim_template(
            owner.name, managed, server_labels(owner.name, COMPONENT_POSTGRES)
        ),
        termination_grace_seconds=60,
    )


def build_postgres_services(owner: Owner) -> list[dict[str, Any]]:
    """The headless Service the StatefulSet needs for pod DNS, and the Service clients use."""
    names = layout.ServerNames(owner.name)
    labels = server_labels(owner.name, COMPONENT_POSTGRES)
    port = {
        "name": "postgres",
        "port": layout.POSTGRES_PORT,
        "targetPort": "postgres",
        "protocol": "TCP",
    }
    selector = selector_labels(owner.name, COMPONENT_POSTGRES)
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(names.postgres_headless, owner, labels),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [port],
        },
    }
    client = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(names.postgres, owner, labels),
        "spec": {"type": "ClusterIP", "selector": selector, "ports": [port]},
    }
    return [headless, client]


def volume_claim_template(
    server: str, managed: ManagedStore, labels: dict[str, str]
) -> dict[str, Any]:
    """The PVC template; no owner reference is possible here, so the claim stays on delete."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": managed.storage}},
    }
    if managed.storage_class_name:  # unset, not "": "" would mean "no class at all"
        spec["storageClassName"] = managed.storage_class_name
    return {"metadata": {"name": DATA_VOLUME, "labels": dict(labels)}, "spec": spec}


def _pg_probe(*, period: int, failures: int) -> dict[str, Any]:
    return exec_probe(_PG_ISREADY, period=period, failures=failures)
