"""PostgreSQL from the Debian packages, run as a throwaway cluster on a free loopback port.

The server refuses to run as root, so when the tests run as root the data directory is handed to
the unprivileged `postgres` account (created by the Debian package) and the programs are started
through `setpriv`, which execs in place: the PID we record is the postmaster itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from tests.support.cache import cache_root, content_key
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port

RUN_AS = "postgres"
SUPERUSER = "postgres"
START_TIMEOUT_S = 30.0
# the template's passwords, replaced by fresh ones in every copy
TEMPLATE_SECRETS = "passwords.json"
DATA_ROOT_PREFIX = "mlflow-pg-"
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
        return self.url_for(self.database)

    @property
    def dsn(self) -> str:
        """libpq URL of the MLflow database, for psycopg2.connect() and psql."""
        return self.url.replace("postgresql+psycopg2://", "postgresql://", 1)

    def url_for(self, database: str) -> str:
        # the driver is named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which
        # MLflow does not install (psycopg2-binary is what the project depends on)
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

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
        return self.url_for(name)

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
        for path in (data_dir, pwfile):
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


def _launch(
    data_root: Path, log: Path, passwords: tuple[str, str], database: str, user: str
) -> PostgresServer:
    """Run the cluster in data_root/data on a free port and wait until it takes connections."""
    port = free_port()
    settings = [
        arg
        for key, value in {**FAST_SETTINGS, "port": str(port)}.items()
        for arg in ("-c", f"{key}={value}")
    ]
    process = ManagedProcess(
        name="postgres",
        argv=_as_server_user(
            [str(bin_dir() / "postgres"), "-D", str(data_root / "data"), *settings]
        ),
        log_path=log,
    ).start()
    superuser_password, password = passwords
    server = PostgresServer(process, port, data_root, database, user, password, superuser_password)
    try:
        eventually(
            lambda: _accepts_connections(server),
            timeout=START_TIMEOUT_S,
            what="PostgreSQL accepting connections",
            interval=0.1,
            processes=[process],
        )
    except BaseException:
        server.stop()
        raise
    return server


def remove_orphaned_data_roots() -> None:
    """Delete data dirs left by killed sessions (their postgres was reaped by PidRecord)."""
    for root in Path(tempfile.gettempdir()).glob(f"{DATA_ROOT_PREFIX}*-*"):
        owner = root.name.removeprefix(DATA_ROOT_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(root, ignore_errors=True)


def _new_data_root() -> Path:
    # not under the caller's workdir: pytest's tmp dirs are private to root, and the postgres
    # account must be able to reach its data directory
    remove_orphaned_data_roots()
    # the owner's PID in the name lets a later session remove it if this one is killed
    root = Path(tempfile.mkdtemp(prefix=f"{DATA_ROOT_PREFIX}{os.getpid()}-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(RUN_AS)
        os.chown(root, account.pw_uid, account.pw_gid)
    return root


def _server_version() -> str:
    out = subprocess.run(
        [str(bin_dir() / "postgres"), "--version"], check=True, text=True, capture_output=True
    ).stdout
    return out.strip()


def template_dir(database: str, user: str, prepare_key: str) -> Path:
    """Where the ready-made cluster for these inputs is cached."""
    inputs = f"{_server_version()} {database} {user} {prepare_key}"
    return cache_root() / "postgres-template" / content_key([], extra=inputs)


def _build_template(
    target: Path, database: str, user: str, prepare: Callable[[str], None] | None, log: Path
) -> None:
    """initdb, create the database and user, run prepare(url), stop cleanly, keep as template."""
    root = _new_data_root()
    data_dir = root / "data"
    data_dir.mkdir(mode=0o700)
    passwords = (secrets.token_urlsafe(16), secrets.token_urlsafe(16))
    _init_cluster(data_dir, passwords[0], log)
    server = _launch(root, log, passwords, database, user)
    try:
        with contextlib.closing(_superuser(server)) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD %s', (passwords[1],))
            cur.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
        if prepare:
            prepare(server.url)
        # a fast shutdown through pg_ctl leaves a clean cluster; killing the process group
        # would leave one that needs crash recovery on every copy
        subprocess.run(
            _as_server_user(
                [str(bin_dir() / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        server.process.stop()
        (root / TEMPLATE_SECRETS).write_text(json.dumps(passwords))
        target.parent.mkdir(parents=True, exist_ok=True)
        # another session may have built it meanwhile: either copy is as good as the other
        scratch = target.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(["cp", "-a", str(root), str(scratch)], check=True)
        with contextlib.suppress(OSError):
            scratch.rename(target)
    finally:
        server.stop()
        shutil.rmtree(target.with_suffix(f".{os.getpid()}.tmp"), ignore_errors=True)


def start(
    workdir: Path,
    database: str = "mlflow",
    user: str = "mlflow",
    prepare: Callable[[str], None] | None = None,
    prepare_key: str = "",
) -> PostgresServer:
    """A fresh cluster on a free port with database owned by user (and fresh passwords).

    The cluster is a copy of a template built once per server version and inputs: initdb,
    CREATE ROLE/DATABASE and prepare(url) (e.g. MLflow's schema migrations) run only when the
    template is missing, which saves their seconds on every later start.
    """
    log = workdir / "logs" / "postgres.log"
    template = template_dir(database, user, prepare_key)
    if not (template / TEMPLATE_SECRETS).is_file():
        _build_template(template, database, user, prepare, log)
    root = _new_data_root()
    # cp -a keeps the postgres account's ownership and the 0700 mode postgres insists on
    subprocess.run(["cp", "-a", str(template / "data"), str(root / "data")], check=True)
    old_passwords = tuple(json.loads((template / TEMPLATE_SECRETS).read_text()))
    server = _launch(root, log, (old_passwords[0], old_passwords[1]), database, user)
    try:
        new_superuser, new_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        with contextlib.closing(_superuser(server)) as conn, conn.cursor() as cur:
            cur.execute(f'ALTER ROLE "{SUPERUSER}" PASSWORD %s', (new_superuser,))
            cur.execute(f'ALTER ROLE "{user}" PASSWORD %s', (new_password,))
        server.superuser_password, server.password = new_superuser, new_password
    except BaseException:
        server.stop()
        raise
    return server
