"""The Secrets an MLflowServer generates: database password, MinIO keys, admin, server keys.

They are created once (create-if-absent, never applied) and carry no owner reference on
purpose: they unlock data that outlives the MLflowServer (the PostgreSQL and MinIO volumes
are kept, the admin user lives in the database, webhook secrets are encrypted with the
webhook key). A recreated MLflowServer of the same name finds them and its data again.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

from mlflow_operator.api import API_GROUP
from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.builders.mlflowserver.common import COMPONENT_CREDENTIALS, server_labels
from mlflow_operator.core.mlflowserver import layout

RandomBytes = Callable[[int], bytes]
ANNOTATION_GENERATED = f"{API_GROUP}/generated"
ANNOTATION_RETAINED = f"{API_GROUP}/retained"


def build_generated_secrets(
    server: MLflowServer, random_bytes: RandomBytes = secrets.token_bytes
) -> list[dict[str, Any]]:
    """Every Secret this spec needs the operator to generate, each with fresh random values.

    The caller creates each only if absent, so the random values of a later call are thrown
    away: the first values stay for the life of the data.
    """
    name = str(server.metadata["name"])
    names = layout.ServerNames(name)
    wanted: list[tuple[str, dict[str, str]]] = []
    if server.spec.backend_store.postgres.managed is not None:
        wanted.append(
            (
                names.postgres,
                {
                    layout.USERNAME_KEY: layout.MANAGED_DATABASE_USER,
                    layout.PASSWORD_KEY: _token(random_bytes, 24),
                },
            )
        )
    if server.spec.artifact_store.s3.managed is not None:
        wanted.append(
            (
                names.minio,
                {
                    layout.ACCESS_KEY_ID_KEY: random_bytes(10).hex(),
                    layout.SECRET_ACCESS_KEY_KEY: _token(random_bytes, 30),
                },
            )
        )
    if server.spec.auth.enabled and not server.spec.auth.admin_secret_ref.name:
        wanted.append(
            (
                names.admin_secret,
                {
                    layout.USERNAME_KEY: layout.ADMIN_USERNAME,
                    # 32 characters: MLflow refuses admin passwords under 12
                    layout.PASSWORD_KEY: _token(random_bytes, 24),
                },
            )
        )
    wanted.append(
        (
            names.keys_secret,
            {
                layout.FLASK_SECRET_KEY_KEY: random_bytes(32).hex(),
                # a Fernet key (urlsafe base64 of 32 bytes), as MLflow's webhook store expects
                layout.WEBHOOK_KEY_KEY: base64.urlsafe_b64encode(random_bytes(32)).decode(),
            },
        )
    )
    namespace = str(server.metadata.get("namespace") or "default")
    return [_secret(secret_name, namespace, name, data) for secret_name, data in wanted]


def _secret(name: str, namespace: str, server: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": server_labels(server, COMPONENT_CREDENTIALS),
            "annotations": {
                ANNOTATION_GENERATED: "true",
                # tells people why deleting the MLflowServer left this Secret behind
                ANNOTATION_RETAINED: (
                    "kept when the MLflowServer is deleted; it unlocks the retained volumes"
                ),
            },
        },
        "type": "Opaque",
        "stringData": data,
    }


def _token(random_bytes: RandomBytes, size: int) -> str:
    """URL-safe text (no characters that need quoting in URLs, shells or ini files)."""
    return base64.urlsafe_b64encode(random_bytes(size)).decode().rstrip("=")
