"""NetworkPolicies of an MLflowServer (operator setting `network_policies`): the managed stores
take connections only from the server's own pods that use them; the tracking server takes
them on its port from anywhere (serving pods, users, an Ingress)."""

from __future__ import annotations

from typing import Any

from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.builders.meta import Owner, child_metadata
from mlflow_operator.builders.mlflowserver.common import (
    COMPONENT_BACKUP,
    COMPONENT_MIGRATION,
    COMPONENT_MINIO,
    COMPONENT_POSTGRES,
    COMPONENT_RESTORE,
    COMPONENT_SERVER,
    selector_labels,
    server_labels,
)
from mlflow_operator.builders.pod import ingress_policy
from mlflow_operator.core.mlflowserver import layout
from mlflow_operator.core.naming import LABEL_COMPONENT, LABEL_MLFLOW_SERVER

# Who opens connections to each store: the tracking server (and its ensure-bucket step), the
# schema migration, backups (dump; store) and restores (fetch; restore).
POSTGRES_CLIENTS = (COMPONENT_SERVER, COMPONENT_MIGRATION, COMPONENT_BACKUP, COMPONENT_RESTORE)
MINIO_CLIENTS = (COMPONENT_SERVER, COMPONENT_BACKUP, COMPONENT_RESTORE)


def _pods_of(server: str, components: tuple[str, ...]) -> dict[str, Any]:
    return {
        "matchLabels": {LABEL_MLFLOW_SERVER: server},
        "matchExpressions": [
            {"key": LABEL_COMPONENT, "operator": "In", "values": list(components)}
        ],
    }


def build_network_policies(owner: Owner, server: MLflowServer) -> list[dict[str, Any]]:
    """One policy per component that listens: tracking server, and the managed stores."""
    names = layout.ServerNames(owner.name)
    spec = server.spec

    def policy(name: str, component: str, port: int, clients: tuple[str, ...] | None) -> Any:
        return ingress_policy(
            child_metadata(name, owner, server_labels(owner.name, component)),
            selector_labels(owner.name, component),
            port,
            _pods_of(owner.name, clients) if clients else None,
        )

    policies = [policy(names.service, COMPONENT_SERVER, layout.TRACKING_PORT, None)]
    if spec.backend_store.postgres.managed is not None:
        policies.append(
            policy(names.postgres, COMPONENT_POSTGRES, layout.POSTGRES_PORT, POSTGRES_CLIENTS)
        )
    if spec.artifact_store.s3.managed is not None:
        policies.append(policy(names.minio, COMPONENT_MINIO, layout.MINIO_PORT, MINIO_CLIENTS))
    return policies
