"""The MLflow tracking server (`mlflow server`) on PostgreSQL and MinIO, optionally basic auth."""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from cryptography.fernet import Fernet

from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port, http_ok

START_TIMEOUT_S = 90.0
ADMIN_USER = "admin"


def schema_key() -> str:
    """What the database schema depends on: the MLflow version whose migrations made it."""
    return f"mlflow=={version('mlflow')}"


def upgrade_schema(db_url: str) -> None:
    """Create MLflow's tables (all migrations to head), as the server would on first start."""
    subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", db_url], check=True, capture_output=True
    )


@dataclass
class BasicAuth:
    """Settings of MLflow's basic-auth app: admin credentials, Flask secret, auth database."""

    database_uri: str
    username: str = ADMIN_USER
    # MLflow refuses admin passwords shorter than 12 characters
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class MlflowServer:
    """One `mlflow server` process; stop() and start() again to simulate an outage."""

    workdir: Path
    backend_store_uri: str
    artifacts_destination: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    auth: BasicAuth | None = None
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    webhook_key: str = field(default_factory=lambda: Fernet.generate_key().decode())

    @property
    def name(self) -> str:
        return "mlflow-server-auth" if self.auth else "mlflow-server"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            self.artifacts_destination,
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            # one worker: faster to start, and MLflow's multi-worker mode has a Nagle latency bug
            "--workers",
            "1",
        ]
        if self.auth:
            argv += ["--app-name", "basic-auth"]
        return argv

    def env(self) -> dict[str, str]:
        env = {
            # only the server holds the S3 keys: clients get artifacts through its proxy
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            # the job runner's ~8 huey consumers slow the start and no test uses server jobs
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # webhooks to the operator on loopback: MLflow refuses private IPs and plain http
            # unless told, needs one encryption key for webhook secrets, and caches its
            # webhook list (60 s by default) - the operator's MLflowServer sets the same
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": self.webhook_key,
            "MLFLOW_WEBHOOK_CACHE_TTL": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if self.auth:
            config = self.workdir / f"{self.name}-auth.ini"
            config.write_text(
                "[mlflow]\n"
                "default_permission = NO_PERMISSIONS\n"  # as the MLflowServers the operator runs
                f"database_uri = {self.auth.database_uri}\n"
                f"admin_username = {self.auth.username}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            env |= {
                "MLFLOW_AUTH_CONFIG_PATH": str(config),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": self.auth.secret_key,
                "MLFLOW_AUTH_ADMIN_USERNAME": self.auth.username,
                "MLFLOW_AUTH_ADMIN_PASSWORD": self.auth.password,
            }
        return env

    def start(self, timeout: float = START_TIMEOUT_S) -> MlflowServer:
        """Start the server (again, on the same port) and wait for /health."""
        if self.process and self.process.alive():
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            name=self.name,
            argv=self.argv(),
            log_path=self.workdir / "logs" / f"{self.name}.log",
            env=self.env(),
            cwd=self.workdir,  # anything MLflow writes relative to its cwd lands in the workdir
        ).start()
        try:
            eventually(
                lambda: http_ok(f"{self.tracking_uri}/health"),
                timeout=timeout,
                what=f"{self.name} /health",
                interval=0.2,
                processes=[self.process],
            )
        except BaseException:
            self.process.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()
