"""Where an MLflowServer's pieces are found: child names, in-cluster URL, credential Secrets.

Pure: everything here follows from the MLflowServer object alone, so the MLflowServer
controller, the ModelDeployment controller (`registry.serverRef`) and the tests agree on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.api.names import MAX_CRONJOB_NAME, MAX_NAME, MAX_STATEFULSET_NAME
from mlflow_operator.core.endpoint import CredentialsSecret, TrackingEndpoint
from mlflow_operator.core.naming import child_name

TRACKING_PORT = 5000
POSTGRES_PORT = 5432
MINIO_PORT = 9000
MANAGED_DATABASE = "mlflow"
MANAGED_DATABASE_USER = "mlflow"
ADMIN_USERNAME = "admin"

# Keys of the Secrets; the generated Secrets use the same keys as the ones a user names,
# so that every pod reads its credentials the same way whichever kind of store it is.
USERNAME_KEY = "username"
PASSWORD_KEY = "password"  # noqa: S105 - a key name, not a password
ACCESS_KEY_ID_KEY = "accessKeyId"
SECRET_ACCESS_KEY_KEY = "secretAccessKey"  # noqa: S105 - a key name
FLASK_SECRET_KEY_KEY = "flaskSecretKey"  # noqa: S105 - a key name
WEBHOOK_KEY_KEY = "webhookEncryptionKey"
BUCKET_MAX = 63  # S3's longest bucket name
# the migration Job's first step, and its exit code when the database's schema is newer
STEP_CHECK_SCHEMA = "check-schema"
NEWER_SCHEMA_EXIT = 3
BACKUP_SUFFIX = "-backups"


@dataclass(frozen=True)
class ServerNames:
    """Names of the children of one MLflowServer (each at most 63 characters)."""

    server: str

    @property
    def deployment(self) -> str:
        return self.server

    @property
    def service(self) -> str:
        # the Service carries the server's own name: http://<name>.<namespace>.svc:<port>
        return self.server

    @property
    def postgres(self) -> str:
        """StatefulSet, client Service and generated Secret of managed PostgreSQL."""
        return child_name(self.server, "postgres")

    @property
    def postgres_headless(self) -> str:
        return child_name(self.server, "postgres-hl")

    @property
    def minio(self) -> str:
        """StatefulSet, Service and generated Secret of managed MinIO."""
        return child_name(self.server, "minio")

    @property
    def admin_secret(self) -> str:
        return child_name(self.server, "admin")

    @property
    def keys_secret(self) -> str:
        """Flask session key and webhook encryption key, shared by every replica."""
        return child_name(self.server, "keys")

    @property
    def auth_config(self) -> str:
        return child_name(self.server, "auth")

    def migration_job(self, migration_key: str) -> str:
        return child_name(self.server, f"migrate-{migration_key}")

    def backup_job(self, migration_key: str) -> str:
        """The backup taken before the migration of the same key."""
        return child_name(self.server, f"backup-{migration_key}")

    @property
    def backup_cronjob(self) -> str:
        """Scheduled backups; its Jobs are named <cronjob>-<minutes since 1970>."""
        return child_name(self.server, "backup")

    @property
    def restore_job(self) -> str:
        return child_name(self.server, "restore")

    def limits(self) -> list[tuple[str, str, int]]:
        """(what, name, longest allowed) of every child whose name has a limit below 253."""
        key = "0" * 10  # migration keys are 10 hex characters
        return [
            ("StatefulSet (managed PostgreSQL)", self.postgres, MAX_STATEFULSET_NAME),
            ("StatefulSet (managed MinIO)", self.minio, MAX_STATEFULSET_NAME),
            ("Service", self.service, MAX_NAME),
            ("Service (PostgreSQL)", self.postgres, MAX_NAME),
            ("Service (PostgreSQL, headless)", self.postgres_headless, MAX_NAME),
            ("Service (MinIO)", self.minio, MAX_NAME),
            ("Deployment (its name is a label value)", self.deployment, MAX_NAME),
            ("Job (its name is a label value of its pods)", self.migration_job(key), MAX_NAME),
            ("CronJob (its Jobs add 11 characters)", self.backup_cronjob, MAX_CRONJOB_NAME),
        ]

    def fit(self) -> bool:
        """Every child name fits its limit without being shortened."""
        return all(
            len(name) <= limit and name.startswith(self.server) for _, name, limit in self.limits()
        )


def max_server_name() -> int:
    """The longest MLflowServer name whose children all get their full, valid names.

    Computed from the child names themselves, so a new child or a longer suffix moves the
    limit the API server enforces (crds/, by `make crds`).
    """
    return max(n for n in range(1, MAX_NAME + 1) if ServerNames("m" * n).fit())


def migration_key(image: str, backend_store_uri: str) -> str:
    """Short hash naming one migration: a new image or a new database is a new migration."""
    return hashlib.sha256(f"{image}\n{backend_store_uri}".encode()).hexdigest()[:10]


@dataclass(frozen=True)
class SecretKeys:
    """A Secret and the keys inside it that hold a user name and a password."""

    name: str
    username_key: str
    password_key: str


def service_host(server: MLflowServer) -> str:
    return f"{ServerNames(_name(server)).service}.{_namespace(server)}.svc"


def tracking_url(server: MLflowServer) -> str:
    return f"http://{service_host(server)}:{server.spec.service.port}"


def admin_secret(server: MLflowServer) -> SecretKeys:
    """The admin Secret: the one the user named, or the one the operator generates."""
    named = server.spec.auth.admin_secret_ref.name
    return SecretKeys(
        name=named or ServerNames(_name(server)).admin_secret,
        username_key=USERNAME_KEY,
        password_key=PASSWORD_KEY,
    )


def tracking_endpoint(server: MLflowServer) -> TrackingEndpoint:
    """URL and client credentials (the admin user) of an MLflowServer, for `serverRef`."""
    if not server.spec.auth.enabled:
        return TrackingEndpoint(url=tracking_url(server))
    admin = admin_secret(server)
    return TrackingEndpoint(
        url=tracking_url(server),
        credentials=CredentialsSecret(
            admin.name, username_key=admin.username_key, password_key=admin.password_key,
            token_key=None,
        ),
    )  # fmt: skip


def database_secret(server: MLflowServer) -> SecretKeys:
    external = server.spec.backend_store.postgres.external
    name = external.credentials_secret_ref.name if external else ServerNames(_name(server)).postgres
    return SecretKeys(name=name, username_key=USERNAME_KEY, password_key=PASSWORD_KEY)


def object_store_secret(server: MLflowServer) -> SecretKeys:
    external = server.spec.artifact_store.s3.external
    name = external.credentials_secret_ref.name if external else ServerNames(_name(server)).minio
    return SecretKeys(name=name, username_key=ACCESS_KEY_ID_KEY, password_key=SECRET_ACCESS_KEY_KEY)


def backend_store_uri(server: MLflowServer) -> str:
    """SQLAlchemy URL of the database, without user or password.

    libpq fills those in from PGUSER and PGPASSWORD, which pods get from the Secret by
    reference: the credentials never appear in a URL, an argument list or a log line.
    """
    external = server.spec.backend_store.postgres.external
    if external is not None:
        return (
            f"postgresql+psycopg2://{external.host}:{external.port}/{external.database}"
            f"?sslmode={external.ssl_mode}"
        )
    host = f"{ServerNames(_name(server)).postgres}.{_namespace(server)}.svc"
    # the managed server has no TLS certificate: traffic stays inside the namespace
    return f"postgresql+psycopg2://{host}:{POSTGRES_PORT}/{MANAGED_DATABASE}?sslmode=disable"


def backup_bucket(server: MLflowServer) -> str:
    """Backups live outside the artifact bucket: `--serve-artifacts` lets every MLflow user
    read any key of that one, and a dump holds the auth tables (password hashes)."""
    stem = server.spec.artifact_store.bucket[: BUCKET_MAX - len(BACKUP_SUFFIX)].rstrip(".-")
    return f"{stem}{BACKUP_SUFFIX}"


def backup_prefix(server: MLflowServer) -> str:
    """Key prefix of one server's backups (several servers may share a store)."""
    return f"{_namespace(server)}/{_name(server)}/"


def s3_endpoint(server: MLflowServer) -> str:
    external = server.spec.artifact_store.s3.external
    if external is not None:
        return external.endpoint
    return f"http://{ServerNames(_name(server)).minio}.{_namespace(server)}.svc:{MINIO_PORT}"


def s3_region(server: MLflowServer) -> str:
    external = server.spec.artifact_store.s3.external
    return external.region if external else "us-east-1"


def allowed_hosts(server: MLflowServer) -> list[str]:
    """Host headers the server answers (MLflow 3 refuses others with 403 on API routes).

    The Service's DNS names in every form a client may use, plus what MLflow allows when no
    list is given (loopback for port-forwards, private addresses for pod and cluster IPs),
    because naming a list replaces those defaults.
    """
    short = ServerNames(_name(server)).service
    namespace = _namespace(server)
    names = [short, f"{short}.{namespace}", f"{short}.{namespace}.svc"]
    hosts = [form for name in names for form in (name, f"{name}:*")]
    hosts.append(f"{short}.{namespace}.svc.*")  # any cluster domain, with or without port
    hosts += ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"]
    hosts += ["[::1]", "[[]::1]:*"]  # fnmatch needs the bracket escaped
    hosts += ["10.*", "192.168.*", *(f"172.{i}.*" for i in range(16, 32)), "fc00:*", "fd00:*"]
    return hosts


def _name(server: MLflowServer) -> str:
    return str(server.metadata["name"])


def _namespace(server: MLflowServer) -> str:
    return str(server.metadata.get("namespace") or "default")
