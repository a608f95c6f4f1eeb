"""The backup and restore Jobs of an MLflowServer's database.

The backup: dump, verify, store.

Three steps in one pod, sharing an emptyDir:
  1. `dump` (PostgreSQL image): row counts and `pg_dump -Fc` of one exported snapshot.
  2. `verify` (PostgreSQL image, no credentials): a throwaway PostgreSQL in the emptyDir,
     `pg_restore` of the dump, the same row counts, compared with the source's. It needs no
     privilege on the real server (no scratch database there), so external databases work.
  3. `store` (tracking server image: boto3): upload to the backup bucket, delete the oldest
     beyond `keep`, and report the result as the container's termination message, which the
     operator reads (core/mlflowserver/backup.py).

The restore (spec.restoreFrom, a new server only): `fetch` (tracking server image) the dump
and the row counts recorded beside it, then `restore` (PostgreSQL image) into the database,
which must hold no MLflow tables, and compare the counts.

Shell and Python are passed as text, with every value from the environment, never spliced.
"""

from __future__ import annotations

from typing import Any

from mlflow_operator.api import API_GROUP
from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.builders.meta import RESTRICTED_CONTAINER_SECURITY, Owner, child_metadata
from mlflow_operator.builders.mlflowserver.common import (
    COMPONENT_BACKUP,
    COMPONENT_RESTORE,
    empty_dir,
    plain_env,
    pod_metadata,
    pod_security_context,
    server_labels,
)
from mlflow_operator.builders.mlflowserver.postgres import ASSIGNED_UID_IDENTITY, POSTGRES_UID
from mlflow_operator.builders.mlflowserver.server import (
    LABEL_MIGRATION_KEY,
    SERVER_UID,
    database_env,
    object_store_env,
)
from mlflow_operator.builders.pod import placement, with_default_requests
from mlflow_operator.core.mlflowserver import layout
from mlflow_operator.core.naming import ANNOTATION_IMAGE

BACKUP_DIR = "/backup"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set on a Job's pods by the Job controller
ANNOTATION_RESTORE_KEY = f"{API_GROUP}/restore-from"
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
# One line per table, sorted: UNION ALL has no order of its own (a parallel plan, which
# PostgreSQL picks for big tables, returns its parts in any order), and bytewise ("C"): the
# source's locale and the throwaway server's may order "model_versions" and "model_version_
# tags" differently.
_COUNTS = " UNION ALL ".join(
    f"SELECT '{table}' AS name, count(*) FROM {table}"  # noqa: S608 - constant table names
    for table in COUNTED_TABLES
)
ROW_COUNTS_SQL = f'SELECT * FROM ({_COUNTS}) AS counts ORDER BY name COLLATE "C"'  # noqa: S608

# One session exports a snapshot and holds it open: the row counts and pg_dump read the same
# instant, so the server keeps serving and writers may go on meanwhile.
DUMP_SCRIPT = """\
set -eu
cd "$BACKUP_DIR"
rm -f session.in session.out
mkfifo session.in
psql -X -q -v ON_ERROR_STOP=1 -A -t -F ' ' < session.in > session.out &
session=$!
exec 3> session.in
printf '%s\\n' "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;" \\
  "SELECT pg_export_snapshot();" "$ROW_COUNTS;" '\\echo end-of-counts' >&3
waited=0
until grep -qx end-of-counts session.out; do
  if ! kill -0 "$session" 2> /dev/null; then
    echo "the database session ended before the row counts" >&2
    exit 1
  fi
  waited=$((waited + 1))
  if [ "$waited" -gt 3000 ]; then
    echo "no row counts after 300 s" >&2
    exit 1
  fi
  sleep 0.1
done
snapshot=$(head -n 1 session.out)
sed -n '2,$p' session.out | grep -vx end-of-counts > rows
pg_dump --snapshot="$snapshot" --format=custom --no-owner --no-privileges --file=mlflow.dump
printf '%s\\n' "COMMIT;" >&3
exec 3>&-
wait "$session"
echo "dumped $(wc -c < mlflow.dump) bytes at snapshot $snapshot"
"""

# A throwaway server on a Unix socket in the shared directory (PGHOST), no TCP port.
VERIFY_SCRIPT = (
    """\
set -eu
"""
    + ASSIGNED_UID_IDENTITY
    + """\
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
)

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
    "job": os.environ["BACKUP_NAME"],
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


FETCH_SCRIPT = """\
import json, os
import boto3

bucket, key = os.environ["RESTORE_KEY"].removeprefix("s3://").split("/", 1)
here = os.environ["BACKUP_DIR"]
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
s3.download_file(bucket, key, os.path.join(here, "mlflow.dump"))
record = json.loads(s3.get_object(Bucket=bucket, Key=key[: -len(".dump")] + ".json")["Body"].read())
with open(os.path.join(here, "rows"), "w") as rows:
    rows.writelines(f"{table} {count}\\n" for table, count in record["rows"].items())
print(f"fetched s3://{bucket}/{key}:", os.path.getsize(os.path.join(here, "mlflow.dump")), "bytes")
"""

RESTORE_SCRIPT = """\
set -eu
cd "$BACKUP_DIR"
found=$(psql -X -q -A -t -c "SELECT to_regclass('public.alembic_version') IS NOT NULL")
if [ "$found" = t ]; then
  echo "the database already holds MLflow tables: restoreFrom fills only an empty database" >&2
  exit 1
fi
pg_restore --dbname="$PGDATABASE" --no-owner --no-privileges --exit-on-error mlflow.dump
psql -X -q -v ON_ERROR_STOP=1 -A -t -F ' ' -c "$ROW_COUNTS" > rows-restored
if ! cmp -s rows rows-restored; then
  echo "the restored database differs from the backup's record (recorded, then restored):" >&2
  paste -d ' ' rows rows-restored >&2
  exit 1
fi
echo "restored; row counts match the backup's record"
"""


def build_restore_job(
    owner: Owner, server: MLflowServer, *, postgres_image: str, fetch_image: str
) -> dict[str, Any]:
    """Fill the empty database of a new server from spec.restoreFrom, before its migration."""
    source = server.spec.restore_from
    if source is None:
        raise ValueError("build_restore_job needs spec.restoreFrom")
    name = layout.ServerNames(owner.name).restore_job
    labels = server_labels(owner.name, COMPONENT_RESTORE)
    fetch_env = [*object_store_env(server), plain_env("RESTORE_KEY", source.key)]
    fetch = _step("fetch", fetch_image, FETCH_SCRIPT, fetch_env, SERVER_UID, python=True)
    restore_env = [*database_env(server), *_where(server), plain_env("ROW_COUNTS", ROW_COUNTS_SQL)]
    restore = _step("restore", postgres_image, RESTORE_SCRIPT, restore_env, POSTGRES_UID)
    return _job(
        name,
        owner,
        server,
        labels,
        annotations={ANNOTATION_RESTORE_KEY: source.key},
        steps=[fetch, restore],
        backoff_limit=0,  # a half-done restore must not be tried again over itself
    )


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
    name = layout.ServerNames(owner.name).backup_job(migration_key)
    labels = {**server_labels(owner.name, COMPONENT_BACKUP), LABEL_MIGRATION_KEY: migration_key}
    steps = _backup_steps(
        server, postgres_image, store_image, before_image, plain_env("BACKUP_NAME", name)
    )
    return _job(
        name,
        owner,
        server,
        labels,
        annotations={ANNOTATION_IMAGE: before_image},
        steps=steps,
        backoff_limit=1,  # one more try (a network blip); then a person looks
    )


def build_backup_cronjob(
    owner: Owner, server: MLflowServer, *, postgres_image: str, store_image: str
) -> dict[str, Any]:
    """Backups on spec.backup.schedule, the same steps as the one before an upgrade."""
    name = layout.ServerNames(owner.name).backup_cronjob
    labels = server_labels(owner.name, COMPONENT_BACKUP)
    # the Job's name is the CronJob controller's; its pods carry it as a label
    job_name = {
        "name": "BACKUP_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}},
    }
    steps = _backup_steps(server, postgres_image, store_image, "", job_name)
    job = _job(name, owner, server, labels, annotations={}, steps=steps, backoff_limit=1)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": child_metadata(name, owner, labels),
        "spec": {
            "schedule": server.spec.backup.schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,  # a missed run (operator or cluster down) still runs
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": labels}, "spec": job["spec"]},
        },
    }


def _backup_steps(
    server: MLflowServer,
    postgres_image: str,
    store_image: str,
    before_image: str,
    job_name: dict[str, Any],
) -> list[dict[str, Any]]:
    backup = server.spec.backup
    row_counts = plain_env("ROW_COUNTS", ROW_COUNTS_SQL)
    steps = [_dump_step(server, postgres_image, row_counts)]
    if backup.verify:
        scratch = [row_counts, plain_env("PGHOST", BACKUP_DIR), plain_env("PGUSER", "verify")]
        steps.append(_step("verify", postgres_image, VERIFY_SCRIPT, scratch, POSTGRES_UID))
    store_env = [
        *object_store_env(server),
        plain_env("BACKUP_BUCKET", layout.backup_bucket(server)),
        plain_env("BACKUP_PREFIX", layout.backup_prefix(server)),
        plain_env("BACKUP_KEEP", str(backup.keep)),
        job_name,
        plain_env("BACKUP_BEFORE_IMAGE", before_image),
    ]
    steps.append(_step("store", store_image, STORE_SCRIPT, store_env, SERVER_UID, python=True))
    return steps


def _job(
    name: str,
    owner: Owner,
    server: MLflowServer,
    labels: dict[str, str],
    *,
    annotations: dict[str, str],
    steps: list[dict[str, Any]],
    backoff_limit: int,
) -> dict[str, Any]:
    """Steps in order in one pod (all but the last as init containers) sharing BACKUP_DIR."""
    *init_steps, last_step = steps
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # fsGroup: a step of the other image (another user) reads what the first wrote
        "securityContext": pod_security_context(POSTGRES_UID),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "initContainers": init_steps,
        "containers": [last_step],
        "volumes": [empty_dir("tmp"), empty_dir("backup")],
        **placement(server.spec.pod_template),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(name, owner, labels, annotations=annotations),
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": 3600,
            "template": {
                "metadata": pod_metadata(server.spec.pod_template, labels),
                "spec": with_default_requests(pod_spec),
            },
        },
    }


def _where(server: MLflowServer) -> list[dict[str, Any]]:
    """libpq's PGHOST, PGPORT, PGDATABASE and PGSSLMODE of the backend store."""
    external = server.spec.backend_store.postgres.external
    if external is not None:
        return [
            plain_env("PGHOST", external.host),
            plain_env("PGPORT", str(external.port)),
            plain_env("PGDATABASE", external.database),
            plain_env("PGSSLMODE", external.ssl_mode),
        ]
    return [
        plain_env("PGHOST", layout.ServerNames(str(server.metadata["name"])).postgres),
        plain_env("PGPORT", str(layout.POSTGRES_PORT)),
        plain_env("PGDATABASE", layout.MANAGED_DATABASE),
        plain_env("PGSSLMODE", "disable"),
    ]


def _dump_step(server: MLflowServer, image: str, row_counts: dict[str, Any]) -> dict[str, Any]:
    env = [*database_env(server), *_where(server), row_counts]
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
