"""PostgreSQL from the Debian packages, run as a throwaway cluster on a free loopback port.

The server refuses to run as root, so when the tests run as root the data directory is handed to
the unprivileged `postgres` account (created by the Debian package) and the programs are started
through `setpriv`, which execs in place: the PID we record is the postmaster itself.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from tests.support.processes import ManagedProcess, free_port, wait_until

RUN_AS = "postgres"
SUPERUSER = "postgres"
START_TIMEOUT_S = 30.0
# a throwaway cluster needs no durability; these make initdb and MLflow's migrations faster
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "listen_addresses": "127.0.0.1",
    # TCP only: no socket file to place somewhere the postgres account can write
    "unix_socket_directories": "",
    "max_connections": "100",
}


def bin_dir() -> Path:
    """The newest server installed from the Debian packages, or whatever `postgres` is on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server not installed: run tests/mlflowstack/setup.sh")


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return [
        "setpriv",
        f"--reuid={RUN_AS}",
        f"--regid={RUN_AS}",
        "--init-groups",
        "--reset-env",
        "--",
        *argv,
    ]


@dataclass
class PostgresServer:
    """A running throwaway cluster and the database/user made for MLflow."""

    process: ManagedProcess
    port: int
    data_dir: Path
    database: str
    user: str
    password: str
    superuser_password: str

    @property
    def url(self) -> str:
        """SQLAlchemy/MLflow URL of the MLflow database."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def connect(self, database: str | None = None):  # type: ignore[no-untyped-def]
        """A psycopg2 connection as the MLflow user (autocommit, so reads see fresh data)."""
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
        )
        conn.autocommit = True
        return conn

    def create_database(self, name: str) -> str:
        """Another database owned by the MLflow user; returns its URL."""
        with contextlib.closing(_superuser(self)) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _superuser(server: PostgresServer):  # type: ignore[no-untyped-def]
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=server.port,
        user=SUPERUSER,
        password=server.superuser_password,
        dbname="postgres",
    )
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    return conn


def _accepts_connections(server: PostgresServer) -> bool:
    _superuser(server).close()
    return True


def _init_cluster(data_dir: Path, superuser_password: str, log: Path) -> None:
    pwfile = data_dir.parent / "pwfile"
    pwfile.write_text(superuser_password + "\n")
    if os.geteuid() == 0:
        account = pwd.getpwnam(RUN_AS)
        for path in (data_dir.parent, data_dir, pwfile):
            os.chown(path, account.pw_uid, account.pw_gid)
    argv = [
        str(bin_dir() / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        "--pwfile",
        str(pwfile),
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.run(_as_server_user(argv), check=True, stdout=out, stderr=subprocess.STDOUT)
    pwfile.unlink()


def start(workdir: Path, database: str = "mlflow", user: str = "mlflow") -> PostgresServer:
    """initdb a fresh cluster, start it on a free port and create the MLflow database and user."""
    # not under workdir: pytest's tmp dirs are private to root, and the postgres account
    # must be able to reach its data directory
    root = Path(tempfile.mkdtemp(prefix="mlflow-pg-"))
    data_dir = root / "data"
    data_dir.mkdir(mode=0o700)
    superuser_password = secrets.token_urlsafe(16)
    log = workdir / "logs" / "postgres.log"
    _init_cluster(data_dir, superuser_password, log)

    port = free_port()
    settings = [
        arg
        for key, value in {**FAST_SETTINGS, "port": str(port)}.items()
        for arg in ("-c", f"{key}={value}")
    ]
    process = ManagedProcess(
        name="postgres",
        argv=_as_server_user([str(bin_dir() / "postgres"), "-D", str(data_dir), *settings]),
        log_path=log,
    ).start()
    server = PostgresServer(
        process, port, root, database, user, secrets.token_urlsafe(16), superuser_password
    )
    try:
        wait_until(
            lambda: _accepts_connections(server),
            START_TIMEOUT_S,
            "PostgreSQL accepting connections",
            processes=[process],
        )
        with contextlib.closing(_superuser(server)) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD %s', (server.password,))
            cur.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
    except BaseException:
        server.stop()
        raise
    return server
