"""A minimal Kubernetes REST client for starting the test cluster.

The launcher talks to the API server directly instead of through kubectl: each kubectl call
costs a process start (~0.3 s on a busy machine) and the start-up makes a dozen calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

FIELD_MANAGER = "mlflow-operator-test-cluster"


@dataclass
class ApiClient:
    server: str
    ca_cert: Path
    client_cert: Path
    client_key: Path
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self.session = requests.Session()
        # Else REQUESTS_CA_BUNDLE (set on many machines) silently replaces the cluster's CA.
        self.session.trust_env = False
        self.session.verify = str(self.ca_cert)
        self.session.cert = (str(self.client_cert), str(self.client_key))

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.server + path, timeout=self.timeout)

    def ok(self, path: str) -> bool:
        return self.get(path).status_code == 200

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of one object; returns the object the server stored."""
        response = self.session.patch(
            self.server + object_path(manifest),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            data=json.dumps(manifest),
            headers={"Content-Type": "application/apply-patch+yaml"},
            timeout=self.timeout,
        )
        if response.status_code >= 300:
            raise RuntimeError(
                f"apply {manifest['kind']}/{manifest['metadata']['name']}: "
                f"{response.status_code} {response.text}"
            )
        result: dict[str, Any] = response.json()
        return result

    def create(self, manifest: dict[str, Any]) -> None:
        """Create one object (status included, which apply would drop for Nodes)."""
        collection = object_path(manifest).rsplit("/", 1)[0]
        response = self.session.post(
            self.server + collection,
            params={"fieldManager": FIELD_MANAGER},
            data=json.dumps(manifest),
            headers={"Content-Type": "application/json"},
            timeout=self.timeout,
        )
        if response.status_code not in (201, 409):  # 409: exists already
            raise RuntimeError(
                f"create {manifest['kind']}/{manifest['metadata']['name']}: "
                f"{response.status_code} {response.text}"
            )


# The few cluster-scoped kinds the launcher writes; plural names are not derivable in general.
_PATHS = {
    ("v1", "Node"): "/api/v1/nodes",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    ),
    ("kwok.x-k8s.io/v1alpha1", "Stage"): "/apis/kwok.x-k8s.io/v1alpha1/stages",
}


def object_path(manifest: dict[str, Any]) -> str:
    key = (manifest["apiVersion"], manifest["kind"])
    if key not in _PATHS:
        raise ValueError(f"no REST path known for {key}")
    return f"{_PATHS[key]}/{manifest['metadata']['name']}"
