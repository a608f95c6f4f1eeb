"""MLflowServer: an MLflow tracking server and model registry on PostgreSQL and S3 storage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlflow_operator.api.base import ApiModel, StatusModel, exactly_one_of
from mlflow_operator.api.common import (
    Condition,
    EnvVar,
    LocalObjectReference,
    OptionalObjectReference,
    PodTemplate,
    ResourceRequirements,
    ServiceSpec,
    conditions_field,
)

# S3's rules for bucket names (lower case, digits, dots and hyphens; 3-63 characters).
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
STORAGE_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
# Five fields or a macro, optionally after CRON_TZ=/TZ=; the CronJob controller checks the rest.
CRON_PATTERN = (
    r"^$|^((CRON_)?TZ=\S+ +)?(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|[0-9*/,?LW#A-Za-z-]+( +[0-9*/,?LW#A-Za-z-]+){4})$"
)


class ManagedStore(ApiModel):
    """A store the operator runs itself (a StatefulSet with a PersistentVolumeClaim)."""

    storage: str = Field(
        default="10Gi",
        pattern=STORAGE_PATTERN,
        description=(
            "Size of the volume, e.g. 10Gi. A larger size expands the volume in place when its "
            "StorageClass allows expansion; a volume never shrinks."
        ),
    )
    storage_class_name: str = Field(
        default="",
        description=(
            "StorageClass of the volume; empty uses the cluster default. Fixed once the volume "
            "exists."
        ),
    )
    image: str = Field(
        default="", description="Image of the store; empty takes the operator's default."
    )


class ManagedObjectStore(ManagedStore):
    """MinIO run by the operator."""

    storage: str = Field(
        default="50Gi",
        pattern=STORAGE_PATTERN,
        description=(
            "Size of the volume, e.g. 50Gi. A larger size expands the volume in place when its "
            "StorageClass allows expansion; a volume never shrinks."
        ),
    )


class ExternalPostgres(ApiModel):
    """A PostgreSQL database you run."""

    host: str = Field(min_length=1, max_length=253, description="Host name of the server.")
    port: int = Field(default=5432, ge=1, le=65535, description="Port of the server.")
    database: str = Field(default="mlflow", min_length=1, max_length=63, description="Database.")
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="prefer", description="libpq sslmode."
    )
    credentials_secret_ref: LocalObjectReference = Field(
        description="Secret with the keys username and password."
    )


class PostgresStore(ApiModel):
    """PostgreSQL, managed by the operator or external."""

    __rules__ = (exactly_one_of("managed", "external"),)

    managed: ManagedStore | None = Field(
        default=None, description="The operator runs PostgreSQL in this namespace."
    )
    external: ExternalPostgres | None = Field(default=None, description="A server you run.")


class BackendStore(ApiModel):
    """Where MLflow keeps runs, models and the registry."""

    postgres: PostgresStore = Field(description="PostgreSQL backend store.")


class ExternalS3(ApiModel):
    """An S3-compatible object store you run."""

    endpoint: str = Field(
        pattern=r"^https?://[^\s]+$", max_length=2048, description="S3 endpoint URL."
    )
    region: str = Field(default="us-east-1", min_length=1, description="S3 region.")
    credentials_secret_ref: LocalObjectReference = Field(
        description="Secret with the keys accessKeyId and secretAccessKey."
    )


class S3Store(ApiModel):
    """S3-compatible storage, managed (MinIO) or external."""

    __rules__ = (exactly_one_of("managed", "external"),)

    managed: ManagedObjectStore | None = Field(
        default=None, description="The operator runs MinIO in this namespace."
    )
    external: ExternalS3 | None = Field(default=None, description="A store you run.")


class ArtifactStore(ApiModel):
    """Where MLflow keeps model files and other artifacts."""

    bucket: str = Field(
        default="mlflow", pattern=BUCKET_PATTERN, description="Bucket name (S3 naming rules)."
    )
    s3: S3Store = Field(description="The S3-compatible store.")


class AuthSpec(ApiModel):
    """MLflow's basic-auth app."""

    enabled: bool = Field(default=True, description="Require a user name and password.")
    admin_secret_ref: OptionalObjectReference = Field(
        default_factory=OptionalObjectReference,
        description="Secret with keys username and password (>= 12 characters) of the admin; "
        "empty name: the operator creates one once.",
    )
    default_permission: Literal["NO_PERMISSIONS", "READ", "EDIT", "MANAGE"] = Field(
        default="NO_PERMISSIONS",
        description="What a user who is not an admin may do with an experiment or model that "
        "grants them nothing: NO_PERMISSIONS (least privilege; each ModelDeployment's own "
        "user reads its model and nothing else) or MLflow's own default, READ.",
    )


class MetricsSpec(ApiModel):
    """Prometheus metrics of the tracking server."""

    enabled: bool = Field(default=True, description="Serve /metrics.")


class TrackingServiceSpec(ServiceSpec):
    """The Service in front of the tracking server.

    Its own class because the API server fills defaults per field: a section default of {}
    plus ServiceSpec's port default would give 80, not MLflow's 5000.
    """

    port: int = Field(default=5000, ge=1, le=65535, description="Port the Service listens on.")


class BackupSpec(ApiModel):
    """Backups of the database (pg_dump) in the object store.

    One is always taken before a schema migration of an upgrade (a new image), and the
    migration starts only once it is stored (and verified, unless verify is false).
    """

    schedule: str = Field(
        default="",
        max_length=100,
        pattern=CRON_PATTERN,
        description="Cron schedule of regular backups (a CronJob, in the controller manager's "
        "time zone unless it starts with CRON_TZ=), e.g. '0 3 * * *'; empty: only before "
        "upgrades.",
    )
    keep: int = Field(
        default=7,
        ge=1,
        le=1000,
        description="Backups kept in the backup bucket; a new one deletes the oldest beyond this.",
    )
    verify: bool = Field(
        default=True,
        description="Restore each backup into a scratch database and compare the row counts of "
        "the registry and tracking tables with the source before it counts.",
    )


class RestoreSource(ApiModel):
    """A backup to fill the database of a new MLflowServer with."""

    key: str = Field(
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]+\.dump$",
        max_length=1100,
        description="s3://<bucket>/<key>.dump, as in status.backups of the server that took it; "
        "read with this server's object store credentials.",
    )


class MLflowServerSpec(ApiModel):
    """Desired state of an MLflowServer."""

    image: str = Field(
        default="",
        max_length=1024,
        description="Tracking server image (MLflow, psycopg2, boto3); empty takes the default.",
    )
    replicas: int = Field(default=2, ge=0, le=100, description="Tracking server pods.")
    workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="uvicorn workers per pod; 1 is fastest (a socket-option bug), scale replicas.",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="core/v1 ResourceRequirements."
    )
    backend_store: BackendStore = Field(description="The database.")
    artifact_store: ArtifactStore = Field(description="The object store.")
    auth: AuthSpec = Field(default_factory=AuthSpec, description="Basic authentication.")
    service: TrackingServiceSpec = Field(
        default_factory=TrackingServiceSpec,
        description="The Service in front of the pods (default ClusterIP, port 5000).",
    )
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="Prometheus metrics.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment variables of the tracking server container (core/v1 "
        "EnvVar), e.g. MLflow's webhook settings; one named like the operator's wins over it.",
    )
    backup: BackupSpec = Field(
        default_factory=BackupSpec,
        description="Database backups to the bucket <artifactStore.bucket>-backups (kept out "
        "of the artifact bucket, which every MLflow user can read through the server).",
    )
    restore_from: RestoreSource | None = Field(
        default=None,
        description="Fill the empty database of a new server from this backup before its "
        "first migration; refused for a database that holds MLflow tables.",
    )
    pod_template: PodTemplate = Field(
        default_factory=PodTemplate,
        description="Pod-level settings of every pod of the server: the tracking server, its "
        "schema-migration, backup and restore Jobs, and the managed PostgreSQL and MinIO.",
    )


class BackupRecord(StatusModel):
    """One backup stored in the object store."""

    key: str = Field(description="Where it is: s3://<bucket>/<key>.")
    time: str = Field(description="When the dump was taken (RFC 3339, UTC).")
    size_bytes: int = Field(ge=0, description="Size of the pg_dump file.")
    verified: bool = Field(
        description="Restored into a scratch database with the same row counts as the source."
    )
    rows: dict[str, int] = Field(
        default_factory=dict, description="Row counts per table at the time of the dump."
    )
    before_image: str = Field(
        default="", description="The image whose schema migration it preceded; empty for none."
    )
    job: str = Field(default="", description="The Job that took it.")


class MLflowServerStatus(StatusModel):
    """Observed state of an MLflowServer."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation this status describes."
    )
    conditions: list[Condition] = conditions_field()
    url: str | None = Field(default=None, description="In-cluster URL of the tracking server.")
    version: str | None = Field(default=None, description="MLflow version served.")
    migrated_image: str | None = Field(
        default=None, description="Image whose schema migration completed."
    )
    restored_from: str | None = Field(
        default=None, description="The backup the database was filled from (spec.restoreFrom)."
    )
    backups: list[BackupRecord] = Field(
        default_factory=list,
        max_length=10,
        description="The latest backups, newest last (at most 10 here; the bucket keeps "
        "spec.backup.keep).",
    )


class MLflowServer(StatusModel):
    """A whole MLflowServer object as read from the API server."""

    api_version: str = Field(default="mlflowops.dev/v1alpha1")
    kind: str = Field(default="MLflowServer")
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: MLflowServerSpec
    status: MLflowServerStatus = Field(default_factory=MLflowServerStatus)
