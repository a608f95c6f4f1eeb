"""The local MLflow stack: PostgreSQL + MinIO + `mlflow server`, started and stopped as one."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.mlflowstack import minio, postgres
from tests.mlflowstack.mlflow_server import BasicAuth, MlflowServer, schema_key, upgrade_schema
from tests.support.processes import ManagedProcess

BUCKET = "mlflow"
ARTIFACTS_PREFIX = "artifacts"


@dataclass
class MlflowStack:
    """A running stack and everything a test needs to reach each part of it."""

    workdir: Path
    postgres: postgres.PostgresServer
    minio: minio.MinioServer
    server: MlflowServer
    started_in_s: float = 0.0
    # seconds per start phase, for the benchmark: where a slow start spends its time
    phases: dict[str, float] = field(default_factory=dict)
    extra_servers: list[MlflowServer] = field(default_factory=list)

    @property
    def tracking_uri(self) -> str:
        return self.server.tracking_uri

    @property
    def db_url(self) -> str:
        return self.postgres.url

    @property
    def s3_endpoint(self) -> str:
        return self.minio.endpoint

    @property
    def s3_access_key(self) -> str:
        return self.minio.access_key

    @property
    def s3_secret_key(self) -> str:
        return self.minio.secret_key

    @property
    def bucket(self) -> str:
        return self.minio.bucket

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{self.bucket}/{ARTIFACTS_PREFIX}"

    def processes(self) -> list[ManagedProcess]:
        servers = [self.server, *self.extra_servers]
        return [
            self.postgres.process,
            self.minio.process,
            *(s.process for s in servers if s.process),
        ]

    def new_server(self, auth: BasicAuth | None = None, name: str = "") -> MlflowServer:
        """Another `mlflow server` on the same database and bucket (e.g. with basic auth)."""
        server = MlflowServer(
            workdir=self.workdir / (name or f"server-{len(self.extra_servers) + 1}"),
            backend_store_uri=self.db_url,
            artifacts_destination=self.artifacts_destination,
            s3_endpoint=self.s3_endpoint,
            s3_access_key=self.s3_access_key,
            s3_secret_key=self.s3_secret_key,
            auth=auth,
        )
        self.extra_servers.append(server)
        return server.start()

    def start_basic_auth_server(self) -> MlflowServer:
        """An `mlflow server` with the basic-auth app, its user store in its own database."""
        number = len(self.extra_servers) + 1  # each auth server gets its own user store
        auth_db = self.postgres.create_database(f"mlflow_auth_{number}")
        return self.new_server(BasicAuth(database_uri=auth_db), name=f"auth-{number}")

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The tracking server is down inside the block and back (same port) after it."""
        self.server.stop()
        try:
            yield
        finally:
            self.server.start()

    def connection_info(self) -> dict[str, str]:
        """What a person or another process needs to reach the stack."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "DB_URL": self.db_url,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "BUCKET": self.bucket,
        }

    def stop(self) -> None:
        """Stop everything, newest first; each part is stopped even if another fails to."""
        errors: list[BaseException] = []
        for stop in [
            *(s.stop for s in reversed(self.extra_servers)),
            self.server.stop,
            self.minio.stop,
            self.postgres.stop,
        ]:
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest, report after
                errors.append(exc)
        if errors:
            raise errors[0]


def start(workdir: Path) -> MlflowStack:
    """Start PostgreSQL and MinIO side by side, then the tracking server on top of them."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        pg_future = pool.submit(
            postgres.start, workdir, prepare=upgrade_schema, prepare_key=schema_key()
        )
        s3_future = pool.submit(minio.start, workdir, BUCKET)
    # the pool has waited for both: stop the one that came up if the other did not
    failures = [f.exception() for f in (pg_future, s3_future) if f.exception()]
    if failures:
        for future in (pg_future, s3_future):
            if not future.exception():
                future.result().stop()
        raise failures[0]  # type: ignore[misc]
    pg, s3 = pg_future.result(), s3_future.result()
    phases = {"postgres+minio": time.monotonic() - started}
    server = MlflowServer(
        workdir=workdir / "server",
        backend_store_uri=pg.url,
        artifacts_destination=f"s3://{s3.bucket}/{ARTIFACTS_PREFIX}",
        s3_endpoint=s3.endpoint,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
    )
    try:
        server.start()
    except BaseException:
        s3.stop()
        pg.stop()
        raise
    total = time.monotonic() - started
    phases["mlflow server"] = total - phases["postgres+minio"]
    return MlflowStack(workdir, pg, s3, server, started_in_s=total, phases=phases)


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[MlflowStack]:
    """The stack for the duration of a with-block, stopped however the block ends."""
    stack = start(workdir)
    try:
        yield stack
    finally:
        stack.stop()
