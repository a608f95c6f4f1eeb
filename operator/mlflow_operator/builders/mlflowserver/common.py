"""Pieces every MLflowServer child shares: labels, pod security, env vars from Secrets."""

from __future__ import annotations

from typing import Any

from mlflow_operator.api.common import PodTemplate
from mlflow_operator.builders.meta import Owner, child_metadata
from mlflow_operator.builders.pod import (
    placement,
    pod_annotations,
    pod_labels,
    with_default_requests,
)
from mlflow_operator.core.naming import LABEL_COMPONENT, LABEL_MLFLOW_SERVER, standard_labels

COMPONENT_SERVER = "tracking-server"
COMPONENT_MIGRATION = "schema-migration"
COMPONENT_BACKUP = "backup"
COMPONENT_RESTORE = "restore"
COMPONENT_POSTGRES = "postgresql"
COMPONENT_MINIO = "minio"
COMPONENT_CREDENTIALS = "credentials"
COMPONENT_AUTH = "auth"

_APP_NAMES = {
    COMPONENT_SERVER: "mlflow",
    COMPONENT_MIGRATION: "mlflow",
    COMPONENT_BACKUP: "mlflow",
    COMPONENT_RESTORE: "mlflow",
    COMPONENT_POSTGRES: "postgresql",
    COMPONENT_MINIO: "minio",
    COMPONENT_CREDENTIALS: "mlflow",
    COMPONENT_AUTH: "mlflow",
}


def server_labels(server: str, component: str) -> dict[str, str]:
    """Labels of one component of one MLflowServer (also how the operator finds its children)."""
    return {
        **standard_labels(_APP_NAMES[component], server, component),
        LABEL_MLFLOW_SERVER: server,
    }


def selector_labels(server: str, component: str) -> dict[str, str]:
    """The immutable subset used in selectors: never add to it, selectors cannot change."""
    return {LABEL_MLFLOW_SERVER: server, LABEL_COMPONENT: component}


def pod_security_context(uid: int) -> dict[str, Any]:
    """Pod-level part of the 'restricted' profile; fsGroup makes the volumes writable."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_metadata(pod: PodTemplate, labels: dict[str, str]) -> dict[str, Any]:
    """Pod template metadata: the user's labels and annotations under the operator's labels."""
    meta: dict[str, Any] = {"labels": pod_labels(pod, labels)}
    annotations = pod_annotations(pod)
    if annotations:
        meta["annotations"] = annotations
    return meta


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    """An env var whose value the kubelet reads from a Secret: the pod spec holds no value."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def plain_env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def empty_dir(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {}}


def store_stateful_set(
    *,
    name: str,
    service_name: str,
    owner: Owner,
    component: str,
    uid: int,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    claim: dict[str, Any],
    pod: PodTemplate,
    termination_grace_seconds: int | None = None,
) -> dict[str, Any]:
    """A one-pod StatefulSet for a managed store (PostgreSQL, MinIO) with its data volume.

    The claim outlives the StatefulSet: deleting the MLflowServer keeps the data.
    """
    labels = server_labels(owner.name, component)
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(uid),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if termination_grace_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = termination_grace_seconds
    pod_spec |= {"containers": [container], "volumes": volumes, **placement(pod)}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": child_metadata(name, owner, labels),
        "spec": {
            "serviceName": service_name,
            "replicas": 1,
            "selector": {"matchLabels": selector_labels(owner.name, component)},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": pod_metadata(pod, labels),
                "spec": with_default_requests(pod_spec),
            },
            "volumeClaimTemplates": [claim],
        },
    }
