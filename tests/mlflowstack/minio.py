"""MinIO: built from its Go module into the out-of-repo cache, run on loopback with throwaway data.

MinIO publishes no semver tags (its releases are `RELEASE.<date>` tags the Go module proxy does
not serve), so the pin is the pseudo-version of the last commit of the archived repository.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from tests.support.cache import cache_root, content_key
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port, http_ok

MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
# upstream builds MinIO statically; a cgo build would also tie the cached binary to this libc
BUILD_ENV = {"CGO_ENABLED": "0"}
BUILD_FLAGS = ("-trimpath",)
START_TIMEOUT_S = 30.0


def go_version() -> str:
    out = subprocess.run(
        ["go", "env", "GOVERSION", "GOOS", "GOARCH"], check=True, text=True, capture_output=True
    ).stdout
    return " ".join(out.split())


def binary_path() -> Path:
    """Where the MinIO binary for this pin, toolchain and flags lives in the cache."""
    inputs = f"{MINIO_MODULE}@{MINIO_VERSION} {go_version()} {BUILD_ENV} {BUILD_FLAGS}"
    return cache_root() / "minio" / content_key([], extra=inputs) / "minio"


def build(log: Path | None = None, target: Path | None = None) -> Path:
    """Build MinIO into the cache (or target) unless it is there already; return its path."""
    target = target or binary_path()
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # go install into a scratch dir, then rename: a build killed halfway leaves no binary
    # that a later run would mistake for a good one
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    try:
        env = {**os.environ, **BUILD_ENV, "GOBIN": str(scratch)}
        argv = ["go", "install", *BUILD_FLAGS, f"{MINIO_MODULE}@{MINIO_VERSION}"]
        with log.open("ab") if log else open(os.devnull, "wb") as out:
            subprocess.run(argv, check=True, env=env, stdout=out, stderr=subprocess.STDOUT)
        (scratch / "minio").replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


@dataclass
class MinioServer:
    """A running MinIO with its endpoint, generated keys and the bucket MLflow writes to."""

    process: ManagedProcess
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    data_dir: Path

    def s3_client(self):  # type: ignore[no-untyped-def]  # boto3 clients have no static type
        return s3_client(self.endpoint, self.access_key, self.secret_key)

    def stop(self) -> None:
        self.process.stop()


def s3_client(endpoint: str, access_key: str, secret_key: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        # MinIO serves buckets by path, not by virtual host
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def start(workdir: Path, bucket: str = "mlflow") -> MinioServer:
    """Start MinIO on a free loopback port with fresh keys and data under workdir; create bucket."""
    binary = build()
    data_dir = workdir / "minio-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port, console_port = free_port(), free_port()
    access_key = "mlflow-" + secrets.token_hex(4)
    secret_key = secrets.token_urlsafe(24)
    process = ManagedProcess(
        name="minio",
        argv=[
            str(binary),
            "server",
            str(data_dir),
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{console_port}",
            "--quiet",
        ],
        log_path=workdir / "logs" / "minio.log",
        env={
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            # no phoning home and no update checks: the sandbox has no internet anyway
            "MINIO_UPDATE": "off",
            "MINIO_CALLHOME_ENABLE": "off",
            "MINIO_BROWSER": "off",
        },
    ).start()
    endpoint = f"http://127.0.0.1:{port}"
    server = MinioServer(process, endpoint, access_key, secret_key, bucket, data_dir)
    try:
        eventually(
            lambda: http_ok(f"{endpoint}/minio/health/ready"),
            timeout=START_TIMEOUT_S,
            what="MinIO ready",
            interval=0.1,
            processes=[process],
        )
        server.s3_client().create_bucket(Bucket=bucket)
    except BaseException:
        process.stop()
        raise
    return server


def main() -> None:
    """`python -m tests.mlflowstack.minio`: build MinIO into the cache (no-op when warm)."""
    cached = binary_path().is_file()
    path = build(log=Path("/dev/stderr"))
    print(f"{'cached' if cached else 'built'}: {path}")


if __name__ == "__main__":
    main()
