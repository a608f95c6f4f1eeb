"""An MLflowServer's condition types and the reasons of its conditions and Events.

The stable words users match in alerts, GitOps health checks and `kubectl wait`: every one has
a row in docs/troubleshooting.md (tests/unit/test_troubleshooting.py).
"""

from __future__ import annotations

# condition types (besides READY, core/conditions.py)
DATABASE_READY = "DatabaseReady"
ARTIFACT_STORE_READY = "ArtifactStoreReady"
SCHEMA_MIGRATED = "SchemaMigrated"
BACKUP_VERIFIED = "BackupVerified"

# reasons, of conditions and of Events
ARTIFACT_STORE_NOT_READY = "ArtifactStoreNotReady"
BACKING_UP = "BackingUp"
BACKUP_FAILED = "BackupFailed"
BACKUP_STARTED = "BackupStarted"
BACKUP_UNREPORTED = "BackupUnreported"
DATABASE_NOT_READY = "DatabaseNotReady"
DEPLOYING = "Deploying"
DOWNGRADE_REFUSED = "DowngradeRefused"
EXTERNAL_DATABASE_CONFIGURED = "ExternalDatabaseConfigured"
EXTERNAL_STORE_CONFIGURED = "ExternalStoreConfigured"
MIGRATION_FAILED = "MigrationFailed"
MIGRATION_PENDING = "MigrationPending"
MIGRATION_RUNNING = "MigrationRunning"
MIGRATION_STARTED = "MigrationStarted"
MIGRATION_SUCCEEDED = "MigrationSucceeded"
MINIO_NOT_READY = "MinioNotReady"
MINIO_READY = "MinioReady"
NOT_VERIFIED = "NotVerified"
PODS_NOT_READY = "PodsNotReady"
POSTGRES_NOT_READY = "PostgresNotReady"
POSTGRES_READY = "PostgresReady"
RESTORE_FAILED = "RestoreFailed"
RESTORE_REFUSED = "RestoreRefused"
RESTORE_STARTED = "RestoreStarted"
RESTORING = "Restoring"
ROLLING_OUT = "RollingOut"
SCALED_TO_ZERO = "ScaledToZero"
SECRET_GENERATED = "SecretGenerated"
SECRET_KEY_MISSING = "SecretKeyMissing"
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_VALUE_INVALID = "SecretValueInvalid"
SERVER_IMAGE_CHANGED = "ServerImageChanged"
SERVER_STOPPED = "ServerStopped"
SERVING = "Serving"
STOPPING_SERVER = "StoppingServer"
STORAGE_CHANGE_REFUSED = "StorageChangeRefused"
STORAGE_EXPANDING = "StorageExpanding"
WAITING_FOR_DATABASE = "WaitingForDatabase"
