"""The requests an operator made of the API server, as the embedded cluster's audit log has
them (tests/cluster/launcher.py AUDIT_POLICY: ServiceAccounts of namespace `audited` only).

Run the operator with `audited_kubeconfig(...)` and read its requests back with
`requests_of(...)`: counted by the API server itself, not estimated from the operator's side.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.cluster.launcher import AUDITED_NAMESPACE, KubeCluster
from tests.cluster.service_accounts import service_account_kubeconfig


@dataclass(frozen=True)
class AuditedRequest:
    verb: str  # the API verb: get, list, watch, create, patch, update, delete
    resource: str  # plural, with the subresource: modeldeployments/status
    namespace: str
    uri: str
    at: datetime

    @property
    def what(self) -> str:
        return f"{self.verb} {self.resource}"


def audited_kubeconfig(cluster: KubeCluster, name: str, path: Path) -> tuple[Path, str]:
    """A kubeconfig of the ServiceAccount `name` of the audited namespace, bound to
    cluster-admin (the operator of a test is the admin's elsewhere), and its user name."""
    if cluster.kubectl("get", "namespace", AUDITED_NAMESPACE, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", AUDITED_NAMESPACE, check=False)
    cluster.kubectl("create", "serviceaccount", name, "-n", AUDITED_NAMESPACE)
    cluster.kubectl(
        "create", "clusterrolebinding", f"{AUDITED_NAMESPACE}-{name}",
        "--clusterrole=cluster-admin", f"--serviceaccount={AUDITED_NAMESPACE}:{name}",
    )  # fmt: skip
    service_account_kubeconfig(cluster, AUDITED_NAMESPACE, name, path)
    return path, f"system:serviceaccount:{AUDITED_NAMESPACE}:{name}"


def forget_audited(cluster: KubeCluster, name: str) -> None:
    cluster.kubectl("delete", "clusterrolebinding", f"{AUDITED_NAMESPACE}-{name}", check=False)
    cluster.kubectl("delete", "serviceaccount", name, "-n", AUDITED_NAMESPACE, check=False)


def requests_of(cluster: KubeCluster, user: str) -> list[AuditedRequest]:
    """Every request of `user` so far: a watch when it started, anything else when answered."""
    found = []
    if not cluster.audit_log.exists():
        return found
    for line in cluster.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event["user"]["username"] != user:
            continue
        started = event["stage"] == "ResponseStarted"
        if started != (event["verb"] == "watch"):
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        found.append(
            AuditedRequest(
                verb=event["verb"],
                resource=resource,
                namespace=ref.get("namespace", ""),
                uri=event["requestURI"],
                at=datetime.fromisoformat(event["stageTimestamp"].replace("Z", "+00:00")),
            )
        )
    return found


def by_kind(requests: list[AuditedRequest]) -> dict[str, int]:
    """`verb resource` -> count, most first (for a printed breakdown)."""
    return dict(Counter(r.what for r in requests).most_common())
