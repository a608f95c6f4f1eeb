"""The backup Job of an MLflowServer's database: dump, verify, store.

Three steps in one pod, sharing an emptyDir:
  1. `dump` (PostgreSQL image): row counts, `pg_dump -Fc`, row counts again; counts that moved
     mean a writer was active, and the step fails (the Job tries once more).
  2. `verify` (PostgreSQL image, no credentials): a throwaway PostgreSQL in the emptyDir,
     `pg_restore` of the dump, the same row counts, compared with the source's. It needs no
     privilege on the real server (no scratch database there), so external databases work.
  3. `store` (tracking server image: boto3): upload to the backup bucket, delete the oldest
     beyond `keep`, and report the result as the container's termination message, which the
     operator reads (core/mlflowserver/backup.py).

Shell and Python are passed as text, with every value from the environment, never spliced.
"""

from __future__ import annotations

from typing import Any

from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.builders.meta import RESTRICTED_CONTAINER_SECURITY, Owner, child_metadata
from mlflow_operator.builders.pod import placement
from mlflow_operator.builders.postgres import POSTGRES_UID
from mlflow_operator.builders.server_common import (
    COMPONENT_BACKUP,
    empty_dir,
    plain_env,
    pod_metadata,
    pod_security_context,
    server_labels,
)
from mlflow_operator.builders.tracking_server import (
    ANNOTATION_IMAGE,
    LABEL_MIGRATION_KEY,
    SERVER_UID,
    database_env,
    object_store_env,
)
from mlflow_operator.core import tracking

BACKUP_DIR = "/backup"
# The tables a user would check after a restore: tracking and registry, tags included.
COUNTED_TABLES = (
    "experiments",
    "runs",
    "tags",
    "params",
    "metrics",
    "registered_models",
    "registered_model_tags",
    "registered_model_aliases",
    "model_versions",
    "model_version_tags",
)
ROW_COUNTS_SQL = " UNION ALL ".join(
    f"SELECT '{table}', count(*) FROM {table}"  # noqa: S608 - constant table names
    for table in COUNTED_TABLES
)

DUMP_SCRIPT = """\
set -eu
cd "$BACKUP_DIR"
counts() { psql -X -q -v ON_ERROR_STOP=1 -A -t -F ' ' -c "$ROW_COUNTS"; }
counts > rows-before
pg_dump --format=custom --no-owner --no-privileges --file=mlflow.dump
counts > rows
if ! cmp -s rows-before rows; then
  echo "rows changed while pg_dump ran (a writer is active); the dump is not consistent" >&2
  exit 1
fi
echo "dumped $(wc -c < mlflow.dump) bytes"
"""

# A throwaway server on a Unix socket in the shared directory (PGHOST), no TCP port.
VERIFY_SCRIPT = """\
set -eu
cd "$BACKUP_DIR"
rm -rf scratch verified
initdb --auth=trust --username="$PGUSER" --pgdata=scratch > /dev/null
pg_ctl --pgdata=scratch --options="-h '' -k $PGHOST" --wait --silent start
trap 'pg_ctl --pgdata=scratch --mode=fast --wait --silent stop' EXIT
createdb mlflow
pg_restore --dbname=mlflow --no-owner --no-privileges --exit-on-error mlflow.dump
psql -X -q -v ON_ERROR_STOP=1 -A -t -F ' ' -d mlflow -c "$ROW_COUNTS" > rows-restored
if ! cmp -s rows rows-restored; then
  echo "the restored copy differs from the source (source, then restored):" >&2
  paste -d ' ' rows rows-restored >&2
  exit 1
fi
touch verified
echo "restored into a scratch database: row counts match"
"""

# Writes the result as JSON to the termination message (at most 4 KiB: a few hundred bytes).
STORE_SCRIPT = """\
import datetime, json, os
import boto3
from botocore.exceptions import ClientError

bucket, prefix = os.environ["BACKUP_BUCKET"], os.environ["BACKUP_PREFIX"]
keep = int(os.environ["BACKUP_KEEP"])
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
try:
    s3.head_bucket(Bucket=bucket)
except ClientError as err:
    if err.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
        raise
    s3.create_bucket(Bucket=bucket)
now = datetime.datetime.now(datetime.timezone.utc)
stem = prefix + now.strftime("%Y%m%dT%H%M%SZ") + "-" + os.environ["BACKUP_NAME"]
here = os.environ["BACKUP_DIR"]
dump = os.path.join(here, "mlflow.dump")
with open(os.path.join(here, "rows")) as lines:
    rows = {table: int(count) for table, count in (line.split() for line in lines if line.strip())}
result = {
    "key": f"s3://{bucket}/{stem}.dump",
    "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "sizeBytes": os.path.getsize(dump),
    "verified": os.path.exists(os.path.join(here, "verified")),
    "rows": rows,
    "beforeImage": os.environ.get("BACKUP_BEFORE_IMAGE", ""),
}
s3.upload_file(dump, bucket, stem + ".dump")
s3.put_object(Bucket=bucket, Key=stem + ".json", Body=json.dumps(result).encode())
stems = sorted(
    {item["Key"].rsplit(".", 1)[0]
     for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
     for item in page.get("Contents", [])}
)
for old in stems[:-keep]:
    doomed = [{"Key": old + ".dump"}, {"Key": old + ".json"}]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed})
    print("deleted backup", old)
with open(os.environ.get("TERMINATION_LOG", "/dev/termination-log"), "w") as message:
    json.dump(result, message)
print(json.dumps(result))
"""


def build_backup_job(
    owner: Owner,
    server: MLflowServer,
    *,
    migration_key: str,
    before_image: str,
    postgres_image: str,
    store_image: str,
) -> dict[str, Any]:
    """The backup taken before the migration to `before_image` (`migration_key` names both).

    `store_image` runs the upload: the image the server runs now, which is known to work;
    `postgres_image` must be at least the database server's major version (pg_dump's rule).
    """
    backup = server.spec.backup
    name = tracking.ServerNames(owner.name).backup_job(migration_key)
    labels = {**server_labels(owner.name, COMPONENT_BACKUP), LABEL_MIGRATION_KEY: migration_key}
    row_counts = plain_env("ROW_COUNTS", ROW_COUNTS_SQL)
    steps = [_dump_step(server, postgres_image, row_counts)]
    if backup.verify:
        scratch = [row_counts, plain_env("PGHOST", BACKUP_DIR), plain_env("PGUSER", "verify")]
        steps.append(_step("verify", postgres_image, VERIFY_SCRIPT, scratch, POSTGRES_UID))
    store_env = [
        *object_store_env(server),
        plain_env("BACKUP_BUCKET", tracking.backup_bucket(server)),
        plain_env("BACKUP_PREFIX", tracking.backup_prefix(server)),
        plain_env("BACKUP_KEEP", str(backup.keep)),
        plain_env("BACKUP_NAME", name),
        plain_env("BACKUP_BEFORE_IMAGE", before_image),
    ]
    store = _step("store", store_image, STORE_SCRIPT, store_env, SERVER_UID, python=True)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # fsGroup: the store step (another user) reads what the PostgreSQL steps wrote
        "securityContext": pod_security_context(POSTGRES_UID),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "initContainers": steps,
        "containers": [store],
        "volumes": [empty_dir("tmp"), empty_dir("backup")],
        **placement(server.spec.pod_template),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(
            name, owner, labels, annotations={ANNOTATION_IMAGE: before_image}
        ),
        "spec": {
            "backoffLimit": 1,  # one more try (e.g. a writer was active); then a person looks
            "activeDeadlineSeconds": 3600,
            "template": {
                "metadata": pod_metadata(server.spec.pod_template, labels),
                "spec": pod_spec,
            },
        },
    }


def _dump_step(server: MLflowServer, image: str, row_counts: dict[str, Any]) -> dict[str, Any]:
    external = server.spec.backend_store.postgres.external
    if external is not None:
        where = [
            plain_env("PGHOST", external.host),
            plain_env("PGPORT", str(external.port)),
            plain_env("PGDATABASE", external.database),
            plain_env("PGSSLMODE", external.ssl_mode),
        ]
    else:
        where = [
            plain_env("PGHOST", tracking.ServerNames(str(server.metadata["name"])).postgres),
            plain_env("PGPORT", str(tracking.POSTGRES_PORT)),
            plain_env("PGDATABASE", tracking.MANAGED_DATABASE),
            plain_env("PGSSLMODE", "disable"),
        ]
    env = [*database_env(server), *where, row_counts]
    return _step("dump", image, DUMP_SCRIPT, env, POSTGRES_UID)


def _step(
    name: str,
    image: str,
    script: str,
    env: list[dict[str, Any]],
    uid: int,
    *,
    python: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": ["python", "-c", script] if python else ["sh", "-c", script],
        "env": [*env, plain_env("BACKUP_DIR", BACKUP_DIR), plain_env("HOME", "/tmp")],  # noqa: S108
        "securityContext": {
            **RESTRICTED_CONTAINER_SECURITY,
            "readOnlyRootFilesystem": True,
            "runAsUser": uid,
            "runAsGroup": uid,
        },
        # a failed step's last log lines become its message, which the operator reports
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            {"name": "backup", "mountPath": BACKUP_DIR},
        ],
    }
