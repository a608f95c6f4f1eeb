"""Reading objects of the test cluster, and the namespace rules some tests run under (a
ResourceQuota, OpenShift's uid assignment), for the e2e tests and the benchmarks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.cluster.launcher import KubeCluster


def get_json(cluster: KubeCluster, *args: str) -> Any:
    """`kubectl get <args> -o json`, parsed. Raises KubectlError when kubectl fails, NotFound
    included: the polls of eventually() take that as "not there yet"."""
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def require_requests(cluster: KubeCluster, namespace: str) -> None:
    """A ResourceQuota on requests in `namespace`: the API server then refuses any pod with a
    container that requests no CPU or memory (generous totals: only their presence counts)."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "compute", "namespace": namespace},
            "spec": {"hard": {"requests.cpu": "16", "requests.memory": "32Gi"}},
        }
    )


# The uid range OpenShift gives a namespace (openshift.io/sa.scc.uid-range), as emulated here.
ASSIGNED_UID = 1000680000
ASSIGNED_UID_RANGE = (ASSIGNED_UID, ASSIGNED_UID + 9999)


def emulate_restricted_v2(cluster: KubeCluster, namespace: str) -> Callable[[], None]:
    """OpenShift's restricted-v2 SCC for one namespace, as far as ids go, with admission
    policies of the real API server: a pod that sets no runAsUser gets the namespace's uid and
    fsGroup; a pod or container whose runAsUser is outside the range is refused. Returns the
    cleanup (the policies are cluster-scoped)."""
    name = f"restricted-v2-{namespace}"
    first, last = ASSIGNED_UID_RANGE
    pods = {
        "resourceRules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
             "resources": ["pods"]}
        ]
    }  # fmt: skip
    in_namespace = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    }
    in_range = f"(u >= {first} && u <= {last})"
    assign = (
        "Object{spec: Object.spec{securityContext: Object.spec.securityContext{"
        f"runAsUser: {ASSIGNED_UID}, fsGroup: {ASSIGNED_UID}" + "}}}"
    )
    no_pod_uid = "!has(object.spec.securityContext) || !has(object.spec.securityContext.runAsUser)"
    containers = (
        "object.spec.containers"
        " + (has(object.spec.initContainers) ? object.spec.initContainers : [])"
    )
    objects: list[dict[str, object]] = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "matchConstraints": pods,
                "matchConditions": [{"name": "no-uid-of-its-own", "expression": no_pod_uid}],
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "mutations": [
                    {
                        "patchType": "ApplyConfiguration",
                        "applyConfiguration": {"expression": assign},
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": name, "matchResources": in_namespace},
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "matchConstraints": pods,
                "failurePolicy": "Fail",
                "validations": [
                    {
                        "expression": f"[object.spec.securityContext.runAsUser].all(u, {in_range})",
                        "message": f"runAsUser must be in the namespace's range {first}-{last}",
                    },
                    {
                        "expression": f"({containers}).all(c, !has(c.securityContext) || "
                        f"!has(c.securityContext.runAsUser) || "
                        f"[c.securityContext.runAsUser].all(u, {in_range}))",
                        "message": f"a container's runAsUser must be in {first}-{last}",
                    },
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": in_namespace,
            },
        },
    ]
    cluster.apply(objects)

    def cleanup() -> None:
        for kind in (
            "validatingadmissionpolicybinding", "validatingadmissionpolicy",
            "mutatingadmissionpolicybinding", "mutatingadmissionpolicy",
        ):  # fmt: skip
            cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)

    return cleanup
