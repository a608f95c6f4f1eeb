"""Server-side apply and reads of the operator's children, through lightkube's async client.

kopf watches the custom resources and posts Events; this module does every other read and
write: the children (one field manager, forced apply: the operator is the only writer of the
fields it sets), and the status of both kinds (`patch_status`, with a resourceVersion
precondition), with typed results.
"""

from __future__ import annotations

import base64
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource, get_generic_resource
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    PersistentVolumeClaim,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import CascadeType, PatchType

from mlflow_operator.api import API_GROUP, API_VERSION
from mlflow_operator.core.naming import FIELD_MANAGER
from mlflow_operator.metrics import KUBE_REQUESTS

_KINDS: dict[tuple[str, str], Any] = {
    ("apps/v1", "Deployment"): Deployment,
    ("apps/v1", "StatefulSet"): StatefulSet,
    ("batch/v1", "CronJob"): CronJob,
    ("batch/v1", "Job"): Job,
    ("discovery.k8s.io/v1", "EndpointSlice"): EndpointSlice,
    ("policy/v1", "PodDisruptionBudget"): PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): NetworkPolicy,
    ("v1", "ConfigMap"): ConfigMap,
    ("v1", "Event"): Event,
    ("v1", "PersistentVolumeClaim"): PersistentVolumeClaim,
    ("v1", "Pod"): Pod,
    ("v1", "Secret"): Secret,
    ("v1", "Service"): Service,
    ("v1", "ServiceAccount"): ServiceAccount,
}


# Our own kinds, so children and status can be read and patched like any resource.
MODEL_DEPLOYMENT = create_namespaced_resource(
    API_GROUP, API_VERSION, "ModelDeployment", "modeldeployments"
)
MLFLOW_SERVER = create_namespaced_resource(API_GROUP, API_VERSION, "MLflowServer", "mlflowservers")
_KINDS[(f"{API_GROUP}/{API_VERSION}", "ModelDeployment")] = MODEL_DEPLOYMENT
_KINDS[(f"{API_GROUP}/{API_VERSION}", "MLflowServer")] = MLFLOW_SERVER
# a user's Gateway API route, whose weights a canary may manage (canary.httpRouteRef)
_KINDS[("gateway.networking.k8s.io/v1", "HTTPRoute")] = create_namespaced_resource(
    "gateway.networking.k8s.io", "v1", kind="HTTPRoute", plural="httproutes"
)


def resource_class(api_version: str, kind: str) -> Any:
    """lightkube's class for a kind (typed Any: lightkube's overloads want literal classes)."""
    known = _KINDS.get((api_version, kind))
    if known is not None:
        return known
    generic = get_generic_resource(api_version, kind)  # type: ignore[no-untyped-call]
    if generic is None:
        raise KeyError(f"unknown resource {api_version}/{kind}")
    return generic


class KubeClient:
    """Thin async facade; one instance per operator process (connection pooling)."""

    def __init__(self, client: AsyncClient | None = None) -> None:
        # Any: lightkube's overloads want literal resource classes, ours are looked up by kind
        self._client: Any = client or AsyncClient(field_manager=FIELD_MANAGER)

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply one manifest; returns the object as stored."""
        meta = manifest["metadata"]
        res = resource_class(manifest["apiVersion"], manifest["kind"])
        KUBE_REQUESTS.labels(verb="apply", kind=manifest["kind"]).inc()
        applied = await self._client.patch(
            res,
            meta["name"],
            manifest,
            namespace=meta.get("namespace"),
            patch_type=PatchType.APPLY,
            field_manager=FIELD_MANAGER,
            force=True,
        )
        return _to_dict(applied)

    async def annotate(
        self, api_version: str, kind: str, name: str, namespace: str, annotations: dict[str, str]
    ) -> None:
        """Set annotations on an object someone else owns (a pod of a Deployment): a merge patch
        of those keys only, so nothing else of it changes hands. One that is gone is no error."""
        res = resource_class(api_version, kind)
        KUBE_REQUESTS.labels(verb="patch", kind=kind).inc()
        try:
            await self._client.patch(
                res,
                name,
                {"metadata": {"annotations": annotations}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            if exc.status.code != 404:
                raise

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        res = resource_class(api_version, kind)
        KUBE_REQUESTS.labels(verb="get", kind=kind).inc()
        try:
            found = await self._client.get(res, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return _to_dict(found)

    async def create_if_absent(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the object unless one of that name exists; never overwrite (generated Secrets)."""
        meta = manifest["metadata"]
        existing = await self.get(
            manifest["apiVersion"], manifest["kind"], meta["name"], meta["namespace"]
        )
        if existing is not None:
            return existing, False
        res = resource_class(manifest["apiVersion"], manifest["kind"])
        try:
            obj: Any = res.from_dict(manifest)
            KUBE_REQUESTS.labels(verb="create", kind=manifest["kind"]).inc()
            created = await self._client.create(obj, namespace=meta["namespace"])
        except ApiError as exc:
            if exc.status.code == 409:  # created meanwhile by someone else: theirs stays
                again = await self.get(
                    manifest["apiVersion"], manifest["kind"], meta["name"], meta["namespace"]
                )
                if again is not None:
                    return again, False
            raise
        return _to_dict(created), True

    async def list(
        self, api_version: str, kind: str, namespace: str, labels: dict[str, str]
    ) -> list[dict[str, Any]]:
        res = resource_class(api_version, kind)
        KUBE_REQUESTS.labels(verb="list", kind=kind).inc()
        items = self._client.list(res, namespace=namespace, labels=dict(labels.items()))
        return [_to_dict(item) async for item in items]

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        *,
        background: bool = False,
        orphan: bool = False,
    ) -> None:
        """Delete; background=True also deletes dependents (a Job's pods are orphaned else);
        orphan=True keeps them running (a StatefulSet recreated with a new claim template)."""
        res = resource_class(api_version, kind)
        cascade = CascadeType.ORPHAN if orphan else CascadeType.BACKGROUND if background else None
        KUBE_REQUESTS.labels(verb="delete", kind=kind).inc()
        try:
            await self._client.delete(res, name, namespace=namespace, cascade=cascade)
        except ApiError as exc:
            if exc.status.code != 404:
                raise

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch the status subresource (lists in it are replaced whole).

        With `resource_version`, the write succeeds only if the object is still at that
        version (HTTP 409 Conflict otherwise): a status decided from an older read is refused.
        Returns the object as stored.
        """
        res = resource_class(api_version, kind)
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        KUBE_REQUESTS.labels(verb="patch_status", kind=kind).inc()
        patched = await self._client.patch(
            res.Status,
            name,
            body,
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        return _to_dict(patched)

    async def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        """The decoded values of a Secret, or None when it does not exist. Never log them."""
        secret = await self.get("v1", "Secret", name, namespace)
        if secret is None:
            return None
        data = secret.get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    async def close(self) -> None:
        await self._client.close()


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    result: dict[str, Any] = obj.to_dict()
    return result
