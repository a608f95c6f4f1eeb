"""Operator configuration: defaults, then a YAML file, then MLFLOW_OPERATOR_* variables, then flags.

Validated once at start; a bad value stops the operator with one line that names the setting.
The config object is passed down explicitly, never read from a global.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mlflow_operator import __version__
from mlflow_operator.core.modeldeployment.prefetch import equality_selector
from mlflow_operator.core.redact import redact

ENV_PREFIX = "MLFLOW_OPERATOR_"
CONFIG_FILE_ENV = f"{ENV_PREFIX}CONFIG"
# written by the operator image's build (Dockerfile) from the serving images' locks
DEFAULT_SERVING_IMAGE_CONTENTS = "/etc/mlflow-operator/serving-images.json"

IMAGE_REPOSITORY = "ghcr.io/mlflow-operator"  # where the project's release images are published
MLFLOW_VERSION = "3.17.2"
# The official image's current patch release of PostgreSQL 16 (2026-11-12). The project builds
# no PostgreSQL image: Docker's official one is maintained and patched upstream.
POSTGRES_IMAGE = "postgres:16.16"
# The project's images, by the name `make images` gives them (<registry>/<name>:<tag>).
PROJECT_IMAGES = ("mlflow-operator", "serving-cpu", "serving-gpu", "mlflow-server", "minio")


def project_image(name: str, registry: str = IMAGE_REPOSITORY, tag: str = __version__) -> str:
    """One of the project's images. The tracking server's tag starts with its MLflow version:
    the operator reads an MLflowServer's version from it (status.version)."""
    if name not in PROJECT_IMAGES:
        raise ValueError(f"not one of the project's images: {name}")
    return (
        f"{registry}/{name}:{MLFLOW_VERSION}-{tag}"
        if name == "mlflow-server"
        else (f"{registry}/{name}:{tag}")
    )


class ConfigError(ValueError):
    """A configuration value is wrong; the message is one line naming the setting."""


class OperatorConfig(BaseSettings):
    """Settings of the operator process (not of any one resource)."""

    # extra="ignore": other MLFLOW_OPERATOR_* variables (CONFIG, test settings) are not settings;
    # unknown keys in the config file are refused by _read_file.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch; empty means all namespaces.",
    )
    image_registry: str = Field(
        default=IMAGE_REPOSITORY,
        min_length=1,
        description="Registry (and path) of the project's images: the default serving, tracking "
        "server and MinIO images are <image_registry>/<name>:<image_tag>.",
    )
    image_tag: str = Field(
        default=__version__, min_length=1, description="Tag of the project's images."
    )
    # Empty: the project's image from image_registry and image_tag (see _default_images).
    serving_image_cpu: str = Field(
        default="", description="Default serving image for pods without GPUs."
    )
    serving_image_gpu: str = Field(
        default="", description="Default serving image for pods with gpu.count > 0."
    )
    tracking_server_image: str = Field(
        default="", description="Default MLflow tracking server image (MLflow, psycopg2, boto3)."
    )
    postgres_image: str = Field(
        default=POSTGRES_IMAGE, min_length=1, description="Default managed PostgreSQL image."
    )
    minio_image: str = Field(default="", description="Default managed MinIO image.")
    gpu_toleration_key: str = Field(
        default="nvidia.com/gpu", description="Taint key tolerated by pods that request GPUs."
    )
    write_back_tags: bool = Field(
        default=True, description="Tag deployed (and failed) model versions in MLflow."
    )
    webhook_enabled: bool = Field(default=True, description="Serve the MLflow webhook receiver.")
    webhook_port: int = Field(default=8443, ge=1, le=65535, description="Webhook receiver port.")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC secret of MLflow webhook deliveries (set it when you register the "
        "operator's webhook in an MLflow server yourself).",
    )
    webhook_secret_file: str = Field(
        default="",
        description="File of HMAC secrets of MLflow webhook deliveries, one per line (a mounted "
        "Secret): re-read when it changes, so a rotation needs no restart.",
    )
    webhook_tls_cert_file: str = Field(
        default="",
        description="PEM certificate (chain) of the webhook receiver; with the key file, the "
        "receiver serves HTTPS, and a renewed certificate is loaded without a restart.",
    )
    webhook_tls_key_file: str = Field(
        default="", description="PEM private key of the webhook receiver's certificate."
    )
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Prometheus port; 0: off.")
    health_port: int = Field(
        default=8081,
        ge=1,
        le=65535,
        description="Port of /healthz (liveness) and /readyz (readiness).",
    )
    activator_port: int = Field(
        default=8082,
        ge=0,
        le=65535,
        description="Port of the activator, which holds the requests of a ModelDeployment "
        "scaled to zero until a pod answers; 0: off (minReplicas 0 then keeps one pod).",
    )
    activator_address: str = Field(
        default="",
        description="The IP address at which Services reach the activator (the operator "
        "pod's IP: the chart sets it from status.podIP). Empty: scale to zero is off.",
    )
    model_cache_url: str = Field(
        default="",
        description="URL of the node-local model cache's Service (the chart's modelCache), e.g. "
        "http://mlflow-operator-model-cache.mlflow-operator.svc:8090. Empty: no cache; "
        "ModelDeployments with serving.cache.enabled download as without it, and are told.",
    )
    model_cache_namespace: str = Field(
        default="", description="Namespace of the model cache's pods (prefetch talks to them)."
    )
    model_cache_selector: str = Field(
        default="app.kubernetes.io/component=model-cache",
        description="Label selector of the model cache's pods in model_cache_namespace.",
    )
    prefetch_timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="How long a rollout waits for the prefetch of a new version before it "
        "goes on without it (the pods then download what is missing).",
    )
    log_format: Literal["text", "json"] = Field(default="text", description="Log line format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe level logged."
    )
    max_workers: int = Field(
        default=8, ge=1, le=256, description="Threads for blocking calls (MLflow client)."
    )
    max_concurrent_reconciles: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="ModelDeployments and MLflowServers reconciled at once; the others "
        "woken meanwhile wait their turn (a registry move can wake thousands at once).",
    )
    timed_reconciles_per_second: float = Field(
        default=20.0,
        ge=1,
        le=1000,
        description="Reconciles per second that are due on a clock (a rollout looked at "
        "again, a poll interval) rather than woken by a change; the others due meanwhile wait "
        "their turn or are woken sooner.",
    )
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Timeout of one Kubernetes API request."
    )
    watch_timeout_seconds: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="Server-side timeout of a watch; the watch restarts after it.",
    )

    leader_election: bool = Field(
        default=False,
        description="Run as one of several replicas: only the holder of the Lease "
        "leader_election_lease in leader_election_namespace acts, the others stand by; and "
        "refuse to act where another install already does (the chart turns it on).",
    )
    leader_election_namespace: str = Field(
        default="",
        description="Namespace of the leader Lease (the install's own); needed with "
        "leader_election.",
    )
    leader_election_lease: str = Field(
        default="mlflow-operator",
        min_length=1,
        description="Name of the leader Lease; replicas of one install share it, and other "
        "installs know this one by <namespace>/<name>.",
    )
    lease_duration_seconds: int = Field(
        default=10,
        ge=2,
        le=300,
        description="How long after its last renewal a leader that stopped (killed, cut off) "
        "is replaced.",
    )
    lease_renew_deadline_seconds: float = Field(
        default=7.0,
        gt=0,
        le=300,
        description="A leader that could not renew its Lease for this long exits, before "
        "anyone can take over; less than lease_duration_seconds.",
    )
    lease_retry_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often the leader renews, and a standby looks for a free Lease.",
    )

    network_policies: bool = Field(
        default=False,
        description="Create NetworkPolicies: managed PostgreSQL and MinIO take connections "
        "only from their MLflowServer's pods that use them; tracking server and serving pods "
        "only on their port.",
    )
    openshift: bool = Field(
        default=False,
        description="Leave user and group ids to the platform (OpenShift's restricted-v2 SCC "
        "assigns them from the namespace's range): pods set no runAsUser, runAsGroup or "
        "fsGroup. The chart sets it when the cluster serves security.openshift.io.",
    )
    ca_bundle_file: str = Field(
        default="",
        description="PEM file of CAs to trust, besides the system's, for https:// MLflow "
        "tracking servers (a private CA). Proxies: HTTPS_PROXY, HTTP_PROXY and NO_PROXY.",
    )
    serving_image_contents: str = Field(
        default=DEFAULT_SERVING_IMAGE_CONTENTS,
        description="JSON file saying what the default serving images (serving_image_cpu, "
        "serving_image_gpu) have installed, for the pre-flight check of new versions; the "
        "operator image has one for the project's images (`mlflow-operator image-contents` "
        "writes one). Empty or missing: requirements are not checked (verdict Unknown).",
    )
    # repr=False: the URL may carry user:password, and a config printed while debugging
    # would show them
    prometheus_url: str | None = Field(
        default=None,
        repr=False,
        description="Prometheus to read canary analysis from instead of the pods' /metrics.",
    )

    @field_validator("ca_bundle_file")
    @classmethod
    def _loadable_ca_bundle(cls, value: str) -> str:
        if value:
            try:
                ssl.create_default_context().load_verify_locations(cafile=value)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load CA certificates from {value}: {exc}") from None
        return value

    @field_validator("webhook_secret_file")
    @classmethod
    def _readable_secret_file(cls, value: str) -> str:
        if value and not os.access(value, os.R_OK):
            raise ValueError(f"cannot read {value}")
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Empty is "not set": the chart and a config file can only write a string.
        if not value:
            return None
        parts = urlsplit(value)
        if (
            parts.scheme not in {"http", "https"}
            or not parts.hostname
            or any(char.isspace() for char in value)
        ):
            # redacted: the URL may carry user:password (basic auth in front of Prometheus)
            raise ValueError(f"{redact(value)!r} is not an http:// or https:// URL")
        return value

    @field_validator("model_cache_selector")
    @classmethod
    def _equality_selector(cls, value: str) -> str:
        equality_selector(value)  # ValueError names what is wrong
        return value

    @field_validator("model_cache_url")
    @classmethod
    def _cache_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in {"http", "https"} or not parts.hostname):
            raise ValueError(f"{redact(value)!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("activator_address")
    @classmethod
    def _activator_ip(cls, value: str) -> str:
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an IP address (an EndpointSlice points at an IP)"
                ) from None
        return value

    @property
    def scale_to_zero(self) -> bool:
        """The activator runs and Services can reach it."""
        return bool(self.activator_port and self.activator_address)

    @model_validator(mode="after")
    def _webhook_tls_pair(self) -> OperatorConfig:
        cert, key = self.webhook_tls_cert_file, self.webhook_tls_key_file
        if bool(cert) != bool(key):
            missing = "webhook_tls_key_file" if cert else "webhook_tls_cert_file"
            raise ValueError(f"{missing} must be set too: the receiver needs both to serve TLS")
        if cert:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"cannot load the certificate {cert} with key {key}: {exc}"
                ) from None
        return self

    @model_validator(mode="after")
    def _lease_timing(self) -> OperatorConfig:
        if self.leader_election and not self.leader_election_namespace:
            raise ValueError(
                "leader_election_namespace must be set with leader_election (the chart sets "
                "it to the release's namespace)"
            )
        retry, deadline = self.lease_retry_seconds, self.lease_renew_deadline_seconds
        if not retry < deadline < self.lease_duration_seconds:
            raise ValueError(
                f"lease_retry_seconds ({retry:g}) < lease_renew_deadline_seconds "
                f"({deadline:g}) < lease_duration_seconds ({self.lease_duration_seconds}) "
                "must hold: a leader must give up before a standby can take over"
            )
        return self

    @model_validator(mode="after")
    def _default_images(self) -> OperatorConfig:
        # One registry and tag name every image of the project, as the chart's imageRegistry
        # does; an image set on its own wins. (After validation: the settings sources, env
        # included, are merged by then. The model is frozen, hence object.__setattr__.)
        for field, name in _PROJECT_IMAGE_FIELDS.items():
            if not getattr(self, field):
                image = project_image(name, self.image_registry, self.image_tag)
                object.__setattr__(self, field, image)
        return self

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: "a,b,c"
            return [ns.strip() for ns in value.split(",") if ns.strip()]
        return value

    @property
    def cluster_wide(self) -> bool:
        return not self.namespaces


_PROJECT_IMAGE_FIELDS = {
    "serving_image_cpu": "serving-cpu",
    "serving_image_gpu": "serving-gpu",
    "tracking_server_image": "mlflow-server",
    "minio_image": "minio",
}


def load_config(file: Path | None = None, **overrides: Any) -> OperatorConfig:
    """Read the config file (if any), the environment and explicit overrides, in that order."""
    path = file or (Path(os.environ[CONFIG_FILE_ENV]) if os.environ.get(CONFIG_FILE_ENV) else None)
    from_file = _read_file(path) if path else {}
    # pydantic-settings ranks init arguments above the environment; the file must rank below.
    env_keys = {
        name for name in OperatorConfig.model_fields if f"{ENV_PREFIX}{name.upper()}" in os.environ
    }
    values = {k: v for k, v in from_file.items() if k not in env_keys}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return OperatorConfig(**values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path}: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings")
    settings = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(settings) - set(OperatorConfig.model_fields))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]}")
    return settings


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    name = ".".join(str(part) for part in error["loc"]) or "config"
    env = f"{ENV_PREFIX}{str(error['loc'][0]).upper()}" if error["loc"] else ""
    where = f"{name} ({env})" if env else name
    return f"invalid setting {where}: {error['msg']}"
