"""Object metadata shared by every child: owner reference, labels, namespace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow_operator.core.naming import FIELD_MANAGER, LABEL_MANAGED_BY


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns a child: deleting it deletes the child."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(body["apiVersion"], body["kind"], meta["name"], meta["namespace"], meta["uid"])


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    name: str,
    owner: Owner,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every child carries app.kubernetes.io/managed-by=mlflow-operator: the operator's watches
    of Deployments, StatefulSets and Jobs ask the API server for that label only."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**labels, LABEL_MANAGED_BY: FIELD_MANAGER},
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""The Pod Security 'restricted' profile for a container; readOnlyRootFilesystem is per image."""
