"""Scale to zero (serving.autoscaling.minReplicas 0): which requests the operator's activator
holds for which ModelDeployment, and when the Service sends requests to it.

While a ModelDeployment has no ready pod, its Service keeps its selector and gets one more
EndpointSlice, the operator's, that points at the activator (mlflow_operator/activator.py).
kube-proxy sends the Service's requests there; the activator holds each one, wakes the
reconcile (which then wants a pod) and forwards the request once the pod answers /ping. With a
ready pod the slice goes and requests reach the pods directly again.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class ActivatorRoute:
    """The Service of one ModelDeployment that may be scaled to zero."""

    namespace: str
    name: str  # of the ModelDeployment
    service: str
    cluster_ip: str | None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def route_for_host(host: str, routes: dict[str, ActivatorRoute]) -> ActivatorRoute | None:
    """The route a request's Host header names: the Service's ClusterIP, or its DNS name in
    any of the forms the cluster's resolver accepts (`svc`, `svc.ns`, `svc.ns.svc`,
    `svc.ns.svc.<cluster domain>`), with or without a port.

    The activator cannot tell which Service a connection came through (kube-proxy's DNAT
    leaves it the activator's own address), so the Host header is all it has. A short name
    alone counts only when one namespace has that Service.
    """
    name = _without_port(host.strip().lower())
    if not name:
        return None
    if _is_ip(name):
        return next((r for r in routes.values() if r.cluster_ip == name), None)
    labels = name.rstrip(".").split(".")
    if len(labels) >= 3 and labels[2] != "svc":
        return None  # another name than a Service's
    service, namespace = labels[0], labels[1] if len(labels) > 1 else None
    found = [
        r
        for r in routes.values()
        if r.service == service and (namespace is None or r.namespace == namespace)
    ]
    return found[0] if len(found) == 1 else None


def activator_wanted(desired_replicas: int, ready_replicas: int) -> bool:
    """For a ModelDeployment that may scale to zero: the Service sends to the activator while
    there is no ready pod to send to; once one is ready the operator's slice goes, so requests
    take no detour through the operator."""
    return desired_replicas == 0 or ready_replicas == 0


def _without_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
