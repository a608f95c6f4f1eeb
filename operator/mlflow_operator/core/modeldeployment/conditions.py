"""A ModelDeployment's condition types and the reasons of its conditions and Events.

The stable words users match in alerts, GitOps health checks and `kubectl wait`: every one has
a row in docs/troubleshooting.md (tests/unit/test_troubleshooting.py). Reasons Kubernetes
writes and the operator passes on (CrashLoopBackOff, ImagePullBackOff...) are not here: they
are read from pods (observation.py).
"""

from __future__ import annotations

# condition types (besides READY, core/conditions.py)
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
REGISTRY_SYNCED = "RegistrySynced"
# serving.monitoring.thresholds.drift: a feature of the serving version's live traffic is
# above it (True), none is (False), no pod has scores yet (Unknown)
DRIFTING = "Drifting"
# serving.monitoring.thresholds.quality: the live quality from ground truth is worse than the
# training metric by more than it (True), is not (False), cannot be told yet (Unknown)
QUALITY_DEGRADED = "QualityDegraded"

# reasons, of conditions and of Events
ALIAS_NOT_FOUND = "AliasNotFound"
ALIAS_MOVED = "AliasMoved"
AS_EXPECTED = "AsExpected"
# strategy Canary: a canary runs (Progressing), was aborted, passed its steps, moved a step
CANARY = "Canary"
CANARY_ABORTED = "CanaryAborted"
CANARY_PROMOTED = "CanaryPromoted"
CANARY_STEP = "CanaryStep"
CREDENTIALS_NOT_FOUND = "CredentialsNotFound"
# serving.monitoring: features above thresholds.drift (condition Drifting, Event, MLflow tag);
# none any more (Event); none now (condition); no scores yet (condition)
DRIFT_DETECTED = "DriftDetected"
DRIFT_RESOLVED = "DriftResolved"
NO_DRIFT = "NoDrift"
DRIFT_UNKNOWN = "DriftUnknown"
ENDPOINT_UNKNOWN = "EndpointUnknown"
# serving.envManager uv: a new version's environment is built by a Job before any pod of it
# exists (Progressing, Event), it was (Event), the Job failed: the version gets no pod
BUILDING_ENVIRONMENT = "BuildingEnvironment"
ENVIRONMENT_BUILT = "EnvironmentBuilt"
ENVIRONMENT_FAILED = "EnvironmentFailed"
# spec.gates hold a new version back: no pod of it is created
GATE_BLOCKED = "GateBlocked"
HTTP_ROUTE_UNUSABLE = "HTTPRouteUnusable"  # canary.httpRouteRef: missing, or not ours to weight
MODEL_NOT_FOUND = "ModelNotFound"
NEW_VERSION = "NewVersion"
NO_MATCHING_VERSION = "NoMatchingVersion"
NO_SELECTOR = "NoSelector"
NO_VERSION = "NoVersion"
NO_VERSION_IN_STAGE = "NoVersionInStage"
PODS_UNSCHEDULABLE = "PodsUnschedulable"
# serving.monitoring.quality: worse than trained by more than thresholds.quality (condition
# QualityDegraded, Event, MLflow tag); back within it (Event); within it (condition); too few
# labelled rows or no training metric (condition)
QUALITY_DROPPED = "QualityDropped"
QUALITY_RECOVERED = "QualityRecovered"
QUALITY_HOLDS = "QualityHolds"
QUALITY_UNKNOWN = "QualityUnknown"
# serving.cache: a new version is copied onto the nodes' model caches before any pod moves
PREFETCHING = "Prefetching"
PREFETCHED = "Prefetched"
PREFETCH_INCOMPLETE = "PrefetchIncomplete"
MODEL_CACHE_UNAVAILABLE = "ModelCacheUnavailable"  # asked for, but the operator has none
RECREATING = "Recreating"
# an answer that is not MLflow's JSON (a login page, ...)
REGISTRY_BAD_RESPONSE = "RegistryBadResponse"
REGISTRY_CREDENTIALS_REFUSED = "RegistryCredentialsRefused"  # HTTP 401/403
REGISTRY_HTTP_ERROR = "RegistryHttpError"  # any other HTTP error status
REGISTRY_STALLED = "RegistryStalled"
REGISTRY_UNREACHABLE = "RegistryUnreachable"  # no connection, or no answer in time
RESOLVED = "Resolved"
ROLLING_BACK = "RollingBack"
ROLLING_OUT = "RollingOut"
ROLLOUT_BLOCKED = "RolloutBlocked"
ROLLOUT_COMPLETE = "RolloutComplete"
ROLLOUT_FAILED = "RolloutFailed"
ROLLOUT_STARTED = "RolloutStarted"
ROLLOUT_SUCCEEDED = "RolloutSucceeded"
# the autoscaler changed the number of serving pods (an Event)
SCALED = "Scaled"
SCALE_TO_ZERO_UNAVAILABLE = "ScaleToZeroUnavailable"
SERVER_NOT_FOUND = "ServerNotFound"
SERVING = "Serving"
SHADOW = "Shadow"
# the serving pods' own MLflow user (serverRef with basic auth) could not be made
SERVING_IDENTITY_FAILED = "ServingIdentityFailed"
SERVING_PREVIOUS_VERSION = "ServingPreviousVersion"
# the pre-flight check found that the serving image cannot run a new version: it gets no pod
VERSION_INCOMPATIBLE = "VersionIncompatible"
SPEC_ROLLOUT_FAILED = "SpecRolloutFailed"
SUSPENDED = "Suspended"
VERSION_NOT_FOUND = "VersionNotFound"
VERSION_NOT_READY = "VersionNotReady"
VERSIONS_NOT_READ = "VersionsNotRead"
