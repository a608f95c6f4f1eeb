"""Where a ModelDeployment's registry is and which Secret holds the credentials to read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The MLflow client's environment variables, and by default the keys of a credentials Secret.
TRACKING_USERNAME = "MLFLOW_TRACKING_USERNAME"
TRACKING_PASSWORD = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105  (a key name)
TRACKING_TOKEN = "MLFLOW_TRACKING_TOKEN"  # noqa: S105  (a key name)


@dataclass(frozen=True)
class CredentialsSecret:
    """A Secret in the ModelDeployment's namespace and the keys of the MLflow credentials in it."""

    name: str
    username_key: str | None = TRACKING_USERNAME
    password_key: str | None = TRACKING_PASSWORD
    token_key: str | None = TRACKING_TOKEN


@dataclass(frozen=True)
class TrackingEndpoint:
    """An MLflow tracking server as clients reach it: the operator with `credentials`, the
    serving pods with `serving_credentials` (never the operator's, unless a user chose so)."""

    url: str
    credentials: CredentialsSecret | None = None
    serving_credentials: CredentialsSecret | None = None
    # version -> the run its serving pods write samples and drift references to, when that
    # is not the version's own (serverRef with basic auth: reconcilers/serving_identity.py)
    monitoring_runs: Mapping[str, str] = field(default_factory=dict)

    def identity(self, namespace: str) -> str:
        """Key of the shared registry watcher: one per URL and credentials (never their values)."""
        secret = f"{namespace}/{self.credentials.name}" if self.credentials else "-"
        return f"{self.url.rstrip('/')}|{secret}"
