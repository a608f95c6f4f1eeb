"""Kubernetes API errors that say what the operator was doing when the API refused it.

The reconcilers report a refusal in status and in one Event; for that they need to know which
request failed. `NamingKube` wraps the client and turns each ApiError into `KubernetesRefused`,
which carries the original error and an `ApiRefusal` naming the action.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from lightkube import ApiError

from mlflow_operator.core.api_refusal import ApiRefusal


class KubernetesRefused(Exception):  # noqa: N818  (reads as the situation)
    def __init__(self, refusal: ApiRefusal, error: ApiError) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.error = error


def refusal_of(action: str, error: ApiError) -> ApiRefusal:
    status = error.status
    return ApiRefusal(
        action=action,
        code=int(status.code or 0),
        api_reason=str(status.reason or ""),
        api_message=str(status.message or ""),
    )


@contextmanager
def doing(action: str) -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        raise KubernetesRefused(refusal_of(action, exc), exc) from exc


class Kube(Protocol):
    """The part of KubeClient the reconcilers use (KubeClient, or a test's fake)."""

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str
    ) -> dict[str, Any] | None: ...

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]: ...

    async def list(
        self, api_version: str, kind: str, namespace: str, labels: dict[str, str]
    ) -> list[dict[str, Any]]: ...

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]: ...

    async def secret_data(self, name: str, namespace: str) -> dict[str, str] | None: ...

    async def annotate(
        self, api_version: str, kind: str, name: str, namespace: str, annotations: dict[str, str]
    ) -> None: ...

    async def create_if_absent(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]: ...

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        *,
        background: bool = False,
        orphan: bool = False,
    ) -> None: ...


class NamingKube:
    """The client, with every ApiError raised as KubernetesRefused naming the request."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str
    ) -> dict[str, Any] | None:
        with doing(f"read {kind} {namespace}/{name}"):
            return await self._kube.get(api_version, kind, name, namespace)

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        with doing(f"apply {manifest['kind']} {meta.get('namespace')}/{meta['name']}"):
            return await self._kube.apply(manifest)

    async def list(
        self, api_version: str, kind: str, namespace: str, labels: dict[str, str]
    ) -> list[dict[str, Any]]:
        with doing(f"list {kind}s in namespace {namespace}"):
            return await self._kube.list(api_version, kind, namespace, labels)

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
        with doing(f"write the status of {kind} {namespace}/{name}"):
            return await self._kube.patch_status(
                api_version, kind, name, namespace, status, resource_version=resource_version
            )

    async def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        with doing(f"read Secret {namespace}/{name}"):
            return await self._kube.secret_data(name, namespace)

    async def annotate(
        self, api_version: str, kind: str, name: str, namespace: str, annotations: dict[str, str]
    ) -> None:
        with doing(f"annotate {kind} {namespace}/{name}"):
            await self._kube.annotate(api_version, kind, name, namespace, annotations)

    async def create_if_absent(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        meta = manifest["metadata"]
        with doing(f"create {manifest['kind']} {meta.get('namespace')}/{meta['name']}"):
            return await self._kube.create_if_absent(manifest)

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
        with doing(f"delete {kind} {namespace}/{name}"):
            await self._kube.delete(
                api_version, kind, name, namespace, background=background, orphan=orphan
            )
