"""Managed MinIO: one StatefulSet with its volume and the Service the tracking server uses."""

from __future__ import annotations

from typing import Any

from mlflow_operator.api.common import PodTemplate
from mlflow_operator.api.mlflowserver import ManagedObjectStore
from mlflow_operator.builders.meta import RESTRICTED_CONTAINER_SECURITY, Owner, child_metadata
from mlflow_operator.builders.mlflowserver.common import (
    COMPONENT_MINIO,
    empty_dir,
    plain_env,
    secret_env,
    selector_labels,
    server_labels,
    store_stateful_set,
)
from mlflow_operator.builders.mlflowserver.postgres import DATA_VOLUME, volume_claim_template
from mlflow_operator.builders.pod import http_probe
from mlflow_operator.core.mlflowserver import layout

MINIO_UID = 1000
DATA_MOUNT = "/data"


def build_minio_statefulset(
    owner: Owner, managed: ManagedObjectStore, default_image: str, pod: PodTemplate
) -> dict[str, Any]:
    names = layout.ServerNames(owner.name)
    container = {
        "name": "minio",
        "image": managed.image or default_image,
        "command": ["minio"],
        "args": ["server", DATA_MOUNT, "--address", f":{layout.MINIO_PORT}"],
        "ports": [{"name": "s3", "containerPort": layout.MINIO_PORT}],
        "env": [
            secret_env("MINIO_ROOT_USER", names.minio, layout.ACCESS_KEY_ID_KEY),
            secret_env("MINIO_ROOT_PASSWORD", names.minio, layout.SECRET_ACCESS_KEY_KEY),
            # MinIO keeps its certs directory under $HOME; the root filesystem is read-only
            plain_env("HOME", "/tmp"),  # noqa: S108 - an emptyDir of the pod
        ],
        "readinessProbe": http_probe("/minio/health/ready", "s3", period=5, failures=3),
        "livenessProbe": http_probe("/minio/health/live", "s3", period=10, failures=6),
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": DATA_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
    }
    return store_stateful_set(
        name=names.minio,
        service_name=names.minio,
        owner=owner,
        component=COMPONENT_MINIO,
        uid=MINIO_UID,
        container=container,
        volumes=[empty_dir("tmp")],
        pod=pod,
        claim=volume_claim_template(
            owner.name, managed, server_labels(owner.name, COMPONENT_MINIO)
        ),
    )


def build_minio_service(owner: Owner) -> dict[str, Any]:
    names = layout.ServerNames(owner.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(names.minio, owner, server_labels(owner.name, COMPONENT_MINIO)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name, COMPONENT_MINIO),
            "ports": [
                {"name": "s3", "port": layout.MINIO_PORT, "targetPort": "s3", "protocol": "TCP"}
            ],
        },
    }
