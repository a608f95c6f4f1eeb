"""What the operator checks before kopf starts: credentials, the API server, the CRDs, RBAC.

kopf retries each of these forever and logs a traceback every minute. A person who starts the
operator wants one line that says what is wrong and what to do, and a non-zero exit, so that a
pod shows it in CrashLoopBackOff and its log instead of running without doing anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lightkube import ALL_NS, ApiError, Client, ConfigError, KubeConfig

from mlflow_operator.kube.client import MLFLOW_SERVER, MODEL_DEPLOYMENT

CRDS_HINT = (
    "install them with `kubectl apply --server-side -f deploy/crds.yaml` "
    "(or from charts/mlflow-operator/crds/)"
)
RBAC_HINT = "install the chart's RBAC (rbac.create=true) or see docs/operations.md#rbac"
CONNECT_ATTEMPTS = 3  # a pod may start a moment before its network is ready
CONNECT_PAUSE_SECONDS = 2.0
# (resource class, its name as `kubectl api-resources` shows it)
KINDS: tuple[tuple[Any, str], ...] = (
    (MODEL_DEPLOYMENT, "modeldeployments.mlflowops.dev"),
    (MLFLOW_SERVER, "mlflowservers.mlflowops.dev"),
)


class StartupError(RuntimeError):
    """The operator cannot start; the message is one line that says what to do."""


def check_cluster(
    namespaces: Iterable[str],
    timeout_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Raise StartupError unless this process can list both kinds where it will watch them.

    Returns the API server's URL (for the start-up log line).
    """
    client, server = cluster_client(timeout_seconds)
    for scope in _scopes(namespaces):
        for resource, name in KINDS:
            where = f"in namespace {scope}" if scope else "in all namespaces"
            _try_list(client, resource, scope, sleep, _Asked(name, where, server))
    return server


@dataclass(frozen=True)
class _Asked:
    """What a list asked for, to name it in the message."""

    name: str
    where: str
    server: str

    def refusal(self, code: int | None, text: str | None) -> str:
        message = " ".join((text or "").split())
        if code == 404:
            return (
                f"the CRD {self.name} is not installed in the cluster at {self.server}: {CRDS_HINT}"
            )
        if code == 403:
            return f"not allowed to list {self.name} {self.where}: {message}; {RBAC_HINT}"
        if code == 401:
            return (
                f"the API server at {self.server} refused the credentials "
                f"(401 Unauthorized): {message}"
            )
        return f"listing {self.name} {self.where} failed ({code}): {message}"


def _load_config() -> tuple[KubeConfig, str]:
    """The in-cluster service account, else $KUBECONFIG or ~/.kube/config (as kopf reads them)."""
    try:
        config = KubeConfig.from_env()
        context = config.get()
    except ConfigError as exc:
        reason = str(exc)
    else:
        if context is not None:
            return config, str(context.cluster.server)
        reason = "the kubeconfig names no current context"
    raise StartupError(
        f"no Kubernetes credentials: not in a pod with a service account, and no usable "
        f"kubeconfig ({reason}); set KUBECONFIG or create ~/.kube/config"
    )


def cluster_client(timeout_seconds: float) -> tuple[Client, str]:
    """A blocking client of the cluster kopf will talk to, and its API server's URL."""
    import httpx2  # lightkube's HTTP client

    config, server = _load_config()
    return Client(config=config, timeout=httpx2.Timeout(timeout_seconds)), server


def _scopes(namespaces: Iterable[str]) -> list[str | None]:
    """Where to try a list: each named namespace, else the whole cluster (None). A pattern
    (kopf's `-n 'ml-*'`) names no namespace to try; the cluster-wide list stands in for it."""
    named = [ns for ns in namespaces if ns]
    exact = [ns for ns in named if not _is_pattern(ns)]
    if not named or len(exact) < len(named):
        return [None, *exact]
    return list(exact)


def _is_pattern(namespace: str) -> bool:
    return namespace.startswith("!") or any(c in namespace for c in "*?[")


def _try_list(
    client: Client,
    resource: Any,
    namespace: str | None,
    sleep: Callable[[float], None],
    asked: _Asked,
) -> None:
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            next(iter(client.list(resource, namespace=namespace or ALL_NS, chunk_size=1)), None)
        except ApiError as exc:
            raise StartupError(asked.refusal(exc.status.code, exc.status.message)) from None
        except Exception as exc:  # noqa: BLE001  (whatever it is, it is said in one line)
            # An answer that is not a Kubernetes Status (the API server's plain "404 page not
            # found" for a group it does not serve) comes as the HTTP client's status error.
            response = getattr(exc, "response", None)
            if response is not None:
                raise StartupError(asked.refusal(response.status_code, response.text)) from None
            if attempt == CONNECT_ATTEMPTS:
                detail = " ".join((str(exc) or type(exc).__name__).split())
                raise StartupError(
                    f"cannot reach the Kubernetes API server at {asked.server}: {detail}"
                ) from None
            sleep(CONNECT_PAUSE_SECONDS)
        else:
            return
