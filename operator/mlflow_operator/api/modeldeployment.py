"""ModelDeployment: one serving endpoint whose model version the MLflow Model Registry decides."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from mlflow_operator.api.base import ApiModel, Rule, StatusModel, exactly_one_of
from mlflow_operator.api.common import (
    Condition,
    EnvVar,
    IntOrString,
    LocalObjectReference,
    PodTemplate,
    ResourceRequirements,
    ServiceSpec,
    conditions_field,
    not_both_zero,
    service_spec_field,
)
from mlflow_operator.api.duration import Duration, parse_duration
from mlflow_operator.api.names import WRITE_BACK_TAG_PREFIX
from mlflow_operator.api.semver import SEMVER_RANGE_PATTERN, is_semver_range
from mlflow_operator.api.urls import has_userinfo

ALIAS_PATTERN = r"^[A-Za-z0-9_-]+$"
VERSION_PATTERN = r"^[1-9][0-9]*$"
MIN_POLL_INTERVAL = "5s"
MIN_SCALE_DOWN_DELAY = "10s"
Stage = Literal["Staging", "Production", "Archived"]


# What MLflow accepts as a tag key (mlflow/utils/validation.py: _validate_tag_name): these
# characters, and nothing that a path normalisation would change ("a//b", "./a", "a/..").
TAG_KEY_PATTERN = r"^[A-Za-z0-9_.\- :/]+$"
TAG_KEY_PATH_PATTERN = r"(^/|/$|//|^\.\.|(^|/)\.\.?(/|$))"
MAX_TAG_KEY_LENGTH = 250
MAX_SELECTOR_TAGS = 16


def is_mlflow_tag_key(key: str) -> bool:
    """Whether MLflow can store a model version tag with this key."""
    return (
        0 < len(key) <= MAX_TAG_KEY_LENGTH
        and re.fullmatch(TAG_KEY_PATTERN, key) is not None
        and re.search(TAG_KEY_PATH_PATTERN, key) is None
    )


def _cel_tag_key(expr: str) -> str:
    # CEL raw strings (r'...') keep the regular expressions' backslashes as they are
    return f"{expr}.matches(r'{TAG_KEY_PATTERN}') && !{expr}.matches(r'{TAG_KEY_PATH_PATTERN}')"


def _version_tag_rules(wire: str, python: str, use: str) -> tuple[Rule, Rule]:
    """The rules of a map of version tags (keys MLflow can store, not the operator's own),
    for the field `wire` (`python` in the model); `use`: what the tags do, for the message."""

    def keys(model: Any) -> list[str]:
        return list(getattr(model, python) or {})

    return (
        Rule(
            cel=f"!has(self.{wire}) || self.{wire}.all(k, size(k) <= {MAX_TAG_KEY_LENGTH} && "
            f"{_cel_tag_key('k')})",
            message="tag keys may only contain letters, digits, '_', '-', '.', ' ', ':' and '/', "
            f"at most {MAX_TAG_KEY_LENGTH} characters, and must not look like a path that "
            "normalises to another name ('/a', 'a/', 'a//b', '..', 'a/./b'): MLflow cannot "
            "store such a tag",
            holds=lambda m: all(is_mlflow_tag_key(k) for k in keys(m)),
            field_path=f".{wire}",
        ),
        Rule(
            cel=f"!has(self.{wire}) || "
            f"!self.{wire}.exists(k, k.startsWith('{WRITE_BACK_TAG_PREFIX}'))",
            message=f"tags starting with {WRITE_BACK_TAG_PREFIX} are the operator's own "
            f"(where a version serves); they cannot {use}",
            holds=lambda m: not any(k.startswith(WRITE_BACK_TAG_PREFIX) for k in keys(m)),
            field_path=f".{wire}",
        ),
    )


class VersionSelector(ApiModel):
    """Follow the best READY version whose tags match (and whose semantic version is in range)."""

    __rules__ = (
        Rule(
            cel="has(self.tags) || has(self.semver)",
            message="selector needs tags, semver or both",
            holds=lambda s: s.tags is not None or s.semver is not None,
        ),
        *_version_tag_rules("tags", "tags", "select a version"),
        Rule(
            cel=f"!has(self.semverTag) || ({_cel_tag_key('self.semverTag')})",
            message="semverTag must be a tag key MLflow can store",
            holds=lambda s: is_mlflow_tag_key(s.semver_tag),
            field_path=".semverTag",
        ),
        Rule(
            cel=f"!has(self.semver) || self.semver.matches(r'{SEMVER_RANGE_PATTERN}')",
            message="semver must be a semantic version range like ^2.1, ~1.4.0, >=1.2.0 <2.0.0, "
            "2.x or 1.0.0 - 1.5.0 (npm range syntax)",
            holds=lambda s: s.semver is None or is_semver_range(s.semver),
            field_path=".semver",
        ),
    )

    tags: dict[str, Annotated[str, Field(max_length=5000)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SELECTOR_TAGS,
        description="Version tags that must all be set to these values, e.g. {stage: prod}.",
    )
    semver: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A semantic version range (npm syntax: ^2.1, ~1.4, >=1.2.0 <2.0.0) the "
        "version's semverTag must satisfy; versions without a valid semantic version tag are "
        "not candidates.",
    )
    semver_tag: str = Field(
        default="semver",
        min_length=1,
        max_length=MAX_TAG_KEY_LENGTH,
        description="The version tag that holds the semantic version (e.g. 2.1.3 or v2.1.3).",
    )
    order: Literal["newest", "highestSemver"] = Field(
        default="newest",
        description="Which candidate wins: the newest version number, or the highest semantic "
        "version (ties: the newest).",
    )


class ModelSelector(ApiModel):
    """Which registered model, and which of its versions, to serve."""

    __rules__ = (
        exactly_one_of("alias", "stage", "version", "selector"),
        Rule(
            cel="!has(self.alias) || (self.alias.lowerAscii() != 'latest' && "
            "!self.alias.matches('^[vV][0-9]+$'))",
            message="alias 'latest' and aliases of the form v<number> are reserved by MLflow",
            holds=lambda m: (
                m.alias is None or (m.alias.lower() != "latest" and not _is_version_alias(m.alias))
            ),
            field_path=".alias",
        ),
    )

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[^/:]+$",
        description="Registered model name in MLflow (no '/' or ':').",
    )
    alias: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=ALIAS_PATTERN,
        description="Follow the version this alias points to (e.g. champion).",
    )
    stage: Stage | None = Field(
        default=None, description="Follow the newest version in this stage (legacy MLflow stages)."
    )
    version: str | None = Field(
        default=None,
        pattern=VERSION_PATTERN,
        max_length=18,
        description='Pin one version: a positive integer written as a string, e.g. "12".',
    )
    selector: VersionSelector | None = Field(
        default=None,
        description="Follow the best READY version matching version tags and/or a semantic "
        "version range.",
    )


def _is_version_alias(alias: str) -> bool:
    return len(alias) > 1 and alias[0] in "vV" and alias[1:].isdigit()


class RegistrySpec(ApiModel):
    """Where the MLflow Model Registry is and how often to read it."""

    __rules__ = (
        exactly_one_of("serverRef", "trackingUri"),
        Rule(
            cel=f"!has(self.pollInterval) || "
            f"duration(self.pollInterval) >= duration('{MIN_POLL_INTERVAL}')",
            message=f"pollInterval must be at least {MIN_POLL_INTERVAL}",
            holds=lambda r: parse_duration(r.poll_interval) >= parse_duration(MIN_POLL_INTERVAL),
            field_path=".pollInterval",
        ),
        Rule(
            # credentials in the URL would reach status, logs, metric labels and pod env
            cel="!has(self.trackingUri) || !self.trackingUri.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@')",
            message="trackingUri must not contain credentials (user:password@host): "
            "put them in the Secret named by credentialsSecretRef",
            holds=lambda r: r.tracking_uri is None or not has_userinfo(r.tracking_uri),
            field_path=".trackingUri",
        ),
        Rule(
            # with serverRef the operator makes each ModelDeployment a read-only MLflow user
            cel="!has(self.serverRef) || !has(self.servingCredentialsSecretRef)",
            message="servingCredentialsSecretRef is for trackingUri: with serverRef the "
            "operator gives the serving pods a read-only MLflow user of their own",
            holds=lambda r: r.server_ref is None or r.serving_credentials_secret_ref is None,
            field_path=".servingCredentialsSecretRef",
        ),
    )

    server_ref: LocalObjectReference | None = Field(
        default=None, description="An MLflowServer in this namespace."
    )
    tracking_uri: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="URL of an MLflow tracking server (http or https).",
    )
    credentials_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
        "or MLFLOW_TRACKING_TOKEN: what the operator reads the registry with (trackingUri). "
        "Serving pods get it too unless servingCredentialsSecretRef is set.",
    )
    serving_credentials_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with the same keys for the serving pods only (trackingUri), e.g. "
        "a user that can read this model and nothing else; then the operator's own "
        "credentials never reach a pod.",
    )
    poll_interval: Duration = Field(
        default="30s", description="How often the registry is read (minimum 5s), e.g. 30s, 2m."
    )


class GpuSpec(ApiModel):
    """GPUs per serving pod."""

    count: int = Field(
        default=0,
        ge=0,
        le=64,
        description="GPUs per pod; > 0 sets the GPU limit, the GPU image and the GPU toleration.",
    )
    resource_name: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
        description="Extended resource name of the GPU.",
    )


class ServingCache(ApiModel):
    """The node-local model cache (docs/model-delivery.md): pods load the model through the
    cache of their node, a new version is prefetched onto the nodes that serve before any pod
    is replaced, and a rollback to a version still cached there downloads nothing."""

    enabled: bool = Field(
        default=False,
        description="Load through the operator's model cache (chart value modelCache.enabled); "
        "off: every pod downloads the model from MLflow, as before.",
    )
    keep_versions: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Versions of this model each node's cache keeps (the least recently used "
        "beyond are deleted).",
    )


DEFAULT_DRIFT_REFERENCE_ROWS = 1000


class DriftMonitoring(ApiModel):
    """Per-feature drift scores of the live inputs against a reference (`drift: {}` turns them
    on with the defaults)."""

    reference_rows: int = Field(
        default=DEFAULT_DRIFT_REFERENCE_ROWS,
        ge=100,
        le=100_000,
        description="How many live input rows become the drift reference when the version's "
        "run holds no reference dataset (monitoring/reference.json).",
    )


DEFAULT_QUALITY_WINDOW = 1000
DEFAULT_QUALITY_MIN_LABELLED = 100


class QualityMonitoring(ApiModel):
    """The live quality of the serving version, from ground-truth labels posted to its pods
    (POST /labels) and matched with sampled requests by request id."""

    metric: Literal["accuracy", "rmse", "mae"] = Field(
        description="accuracy: the share of labelled rows predicted exactly (classifiers); "
        "rmse, mae: root mean squared and mean absolute error (regressors)."
    )
    training_metric: str | None = Field(
        default=None,
        min_length=1,
        max_length=250,
        description="A metric of the version's run to compare with, in the same units (e.g. "
        "the test-set accuracy logged in training); thresholds.quality needs it.",
    )
    window: int = Field(
        default=DEFAULT_QUALITY_WINDOW,
        ge=10,
        le=100_000,
        description="The live metric is computed over the latest this many labelled rows.",
    )
    min_labelled: int = Field(
        default=DEFAULT_QUALITY_MIN_LABELLED,
        ge=1,
        le=100_000,
        description="Labelled rows needed before the live metric is given (fewer are noise).",
    )


class MonitoringThresholds(ApiModel):
    """Where a monitored score starts to count."""

    drift: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="Population Stability Index above which a feature counts as drifting "
        "(usual reading: 0.1 slight, 0.25 significant); setting it turns drift on.",
    )
    quality: float | None = Field(
        default=None,
        ge=0,
        le=1e9,
        description="How much worse than quality.trainingMetric the live metric may be, in "
        "the metric's own units (0.05: five points of accuracy), before the version counts "
        "as degraded.",
    )


class ServingMonitoring(ApiModel):
    """Watching the model in production (docs/monitoring.md): sampled requests and answers,
    per-feature drift of the inputs, and live quality from ground truth. Columns in
    excludeColumns are never written with a sample nor tracked for drift."""

    __rules__ = (
        Rule(
            cel="!has(self.quality) || (has(self.sampleRate) && double(self.sampleRate) > 0.0)",
            message="monitoring.quality needs sampleRate above 0 (labels are matched with "
            "sampled requests)",
            holds=lambda m: m.quality is None or m.sample_rate > 0,
            field_path=".quality",
        ),
        Rule(
            cel="!has(self.thresholds) || !has(self.thresholds.quality) || "
            "(has(self.quality) && has(self.quality.trainingMetric))",
            message="thresholds.quality needs quality.trainingMetric (what the live metric "
            "is compared with)",
            holds=lambda m: (
                m.thresholds is None
                or m.thresholds.quality is None
                or (m.quality is not None and m.quality.training_metric is not None)
            ),
            field_path=".thresholds.quality",
        ),
    )

    sample_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share (0-1) of the requests answered 200 that are written, with their "
        "answers, to the artifacts of the version's run in MLflow (predictions/...jsonl), off "
        "the request path; 0: none. Runtime batched only.",
    )
    exclude_columns: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Input columns never written with a sample nor tracked for drift (secrets, "
        "personal data): their values would otherwise land in the stored reference profile.",
    )
    drift: DriftMonitoring | None = Field(
        default=None,
        description="Per-feature drift scores (PSI) of the live inputs against the version's "
        "reference; {} turns them on. Runtime batched only.",
    )
    quality: QualityMonitoring | None = Field(
        default=None,
        description="The live quality metric from labels posted to the pods (POST /labels), "
        "compared with the version's training metric. Needs sampleRate.",
    )
    thresholds: MonitoringThresholds | None = Field(
        default=None,
        description="When a score counts as bad; thresholds.drift alone turns drift on too.",
    )

    @property
    def drift_enabled(self) -> bool:
        """Drift is computed: drift is set, or a drift threshold is."""
        return self.drift is not None or (
            self.thresholds is not None and self.thresholds.drift is not None
        )

    def writes_to_mlflow(self, runtime: str) -> bool:
        """The serving pods write samples or a drift reference to MLflow."""
        return runtime == "batched" and (self.sample_rate > 0 or self.drift_enabled)

    @property
    def drift_reference_rows(self) -> int:
        return self.drift.reference_rows if self.drift else DEFAULT_DRIFT_REFERENCE_ROWS


class ScalingTarget(ApiModel):
    """What one serving pod should carry, on average over the ready pods."""

    __rules__ = (exactly_one_of("concurrency", "queueDepth", "requestsPerSecond"),)

    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Requests in flight per pod (received, not answered yet).",
    )
    queue_depth: int | None = Field(
        default=None, ge=1, le=100_000, description="Requests waiting for the model per pod."
    )
    requests_per_second: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Requests answered per second per pod."
    )


class AutoscalingSpec(ApiModel):
    """The operator scales the serving pods on the batched runtime's own load metrics."""

    __rules__ = (
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="minReplicas must not exceed maxReplicas",
            holds=lambda a: a.min_replicas <= a.max_replicas,
            field_path=".minReplicas",
        ),
        Rule(
            cel=f"duration(self.scaleDownDelay) >= duration('{MIN_SCALE_DOWN_DELAY}')",
            message=f"scaleDownDelay must be at least {MIN_SCALE_DOWN_DELAY}",
            holds=lambda a: (
                parse_duration(a.scale_down_delay) >= parse_duration(MIN_SCALE_DOWN_DELAY)
            ),
            field_path=".scaleDownDelay",
        ),
    )

    min_replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Fewest pods; 0: none while idle (scaleDownDelay after the last request), "
        "the first request starts one and waits for it at the operator's activator.",
    )
    max_replicas: int = Field(ge=1, le=1000, description="Most pods.")
    target: ScalingTarget = Field(description="The load per pod to keep: exactly one metric.")
    scale_down_delay: Duration = Field(
        default="5m",
        description="Pods are removed only after the load has wanted fewer for this long "
        "(minimum 10s); more pods are added at once.",
    )


class ServingSpec(ApiModel):
    """How the model is served."""

    __rules__ = (
        Rule(
            cel="!has(self.runtime) || self.runtime != 'custom' || (has(self.image) && "
            "self.image != '' && has(self.command) && size(self.command) > 0)",
            message="runtime custom needs image and command",
            holds=lambda s: s.runtime != "custom" or (bool(s.image) and bool(s.command)),
        ),
        Rule(
            cel="!has(self.autoscaling) || (has(self.runtime) && self.runtime == 'batched')",
            message="autoscaling needs runtime batched (the load metrics are its own)",
            holds=lambda s: s.autoscaling is None or s.runtime == "batched",
            field_path=".autoscaling",
        ),
        Rule(
            cel="!has(self.envManager) || self.envManager == 'local' || "
            "!has(self.runtime) || self.runtime == 'mlflow'",
            message="envManager uv needs runtime mlflow: batched and custom serve "
            "with the image's own packages (envManager local)",
            holds=lambda s: s.env_manager == "local" or s.runtime == "mlflow",
            field_path=".envManager",
        ),
        Rule(
            cel="!has(self.envManager) || self.envManager == 'local' || "
            "!has(self.image) || self.image == ''",
            message="envManager uv needs the operator's serving image (serving.image empty): "
            "its Job builds each version's environment with the image's own tools",
            holds=lambda s: s.env_manager == "local" or not s.image,
            field_path=".envManager",
        ),
        Rule(
            cel="!has(self.monitoring) || !has(self.monitoring.sampleRate) || "
            "double(self.monitoring.sampleRate) == 0.0 || "
            "(has(self.runtime) && self.runtime == 'batched')",
            message="monitoring.sampleRate needs runtime batched (its server writes the samples)",
            holds=lambda s: s.monitoring.sample_rate == 0 or s.runtime == "batched",
            field_path=".monitoring.sampleRate",
        ),
        Rule(
            cel="!has(self.monitoring) || !(has(self.monitoring.drift) || "
            "(has(self.monitoring.thresholds) && has(self.monitoring.thresholds.drift))) || "
            "(has(self.runtime) && self.runtime == 'batched')",
            message="monitoring.drift needs runtime batched (its server computes the scores)",
            holds=lambda s: not s.monitoring.drift_enabled or s.runtime == "batched",
            field_path=".monitoring.drift",
        ),
    )

    runtime: Literal["mlflow", "batched", "custom"] = Field(
        default="mlflow",
        description="mlflow: MLflow's scoring server; batched: the operator's server with "
        "adaptive batching (same HTTP API); custom: your image and command.",
    )
    image: str = Field(
        default="",
        max_length=1024,
        description="Serving image; empty takes the operator's default (CPU or GPU image).",
    )
    command: list[str] = Field(
        default_factory=list,
        description="Command of the serving container (runtime custom only). "
        "MODEL_URI, PORT and MLFLOW_TRACKING_URI are set in its environment.",
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Number of serving pods; with autoscaling, ignored (the autoscaler sets the "
        "count).",
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None,
        description="Scale between minReplicas and maxReplicas on the pods' load (runtime "
        "batched).",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="core/v1 ResourceRequirements."
    )
    gpu: GpuSpec = Field(default_factory=GpuSpec, description="GPUs per pod.")
    env_manager: Literal["local", "uv"] = Field(
        default="local",
        description="How the model's Python dependencies are provided: local uses the image's; "
        "uv (runtime mlflow, the operator's image) installs each version's requirements once, "
        "in a Job, into an environment kept in MLflow; pods start from it without reaching a "
        "package index.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server workers per pod; keep 1 for mlflow (more are slower), scale replicas.",
    )
    timeout_seconds: int = Field(
        default=60, ge=1, le=3600, description="Request timeout of the scoring server."
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Extra environment variables (core/v1 EnvVar)."
    )
    pod_template: PodTemplate = Field(
        default_factory=PodTemplate, description="Pod-level settings of the serving pods."
    )
    cache: ServingCache = Field(
        default_factory=ServingCache,
        description="The node-local model cache and prefetch of new versions.",
    )
    monitoring: ServingMonitoring = Field(
        default_factory=ServingMonitoring,
        description="Sampled prediction logging to MLflow and per-feature drift of the inputs "
        "(runtime batched).",
    )


MAX_CANARY_STEPS = 10


class CanaryStep(ApiModel):
    """One step of a canary: a share of the traffic, held at least `pause`."""

    weight: int = Field(
        ge=1, le=99, description="Percent of the serving pods that run the new version."
    )
    pause: Duration = Field(
        default="1m",
        description="How long the step lasts at least (and until the analysis has seen "
        "minRequests), e.g. 60s, 2m.",
    )


class CanaryAnalysis(ApiModel):
    """How a canary is judged, from the serving pods' own /metrics (runtime: batched)."""

    interval: Duration = Field(default="30s", description="How often the canary is judged.")
    min_requests: int = Field(
        default=50,
        ge=1,
        le=1_000_000,
        description="Requests the canary pods must have answered before a judgement counts.",
    )
    max_error_rate: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="How much the canary's share of failed answers (not 2xx: a model's "
        "exception is a 400 in MLflow's protocol) may exceed the stable pods' share.",
    )
    max_p99_latency_ratio: float | None = Field(
        default=1.5,
        ge=1,
        description="The highest canary p99 latency, as a multiple of the stable pods' p99 "
        "(null: not judged).",
    )
    failure_limit: int = Field(
        default=1, ge=1, le=100, description="Failed judgements that abort the canary."
    )


class CanarySpec(ApiModel):
    """Steps of a canary rollout and how each is judged."""

    __rules__ = (
        Rule(
            cel="self.steps.map(s, s.weight).isSorted() && "
            "self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight))",
            message="step weights must increase (the last step is followed by 100%)",
            holds=lambda c: all(a.weight < b.weight for a, b in itertools.pairwise(c.steps)),
            field_path=".steps",
        ),
    )

    steps: list[CanaryStep] = Field(
        min_length=1,
        max_length=MAX_CANARY_STEPS,
        description="Increasing weights, e.g. [{weight: 10, pause: 60s}, {weight: 50, pause: 2m}]; "
        "100% follows the last.",
    )
    analysis: CanaryAnalysis = Field(
        default_factory=CanaryAnalysis, description="How each step is judged."
    )
    http_route_ref: LocalObjectReference | None = Field(
        default=None,
        description="A Gateway API HTTPRoute (same namespace) whose rules send to this "
        "ModelDeployment's Service: the operator splits them by weight between <name> and "
        "<name>-canary (the canary's pods, then outside <name>), each step's weight exactly, "
        "instead of by pod count.",
    )


class ShadowAnalysis(CanaryAnalysis):
    """How a shadow is judged: a canary's limits on the candidate's answers to the copies, and
    how often it may disagree with the serving version."""

    max_disagreement_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The highest share of copies both versions answered whose predictions "
        "differ (numbers within a relative 1e-6 are equal); null: reported, not judged.",
    )


class ShadowSpec(ApiModel):
    """A shadow rollout: the candidate answers copies of live requests; callers never see it."""

    percent: int = Field(
        default=20,
        ge=1,
        le=100,
        description="Percent of the live requests the serving pods copy to the candidate.",
    )
    duration: Duration = Field(
        default="10m",
        description="How long the shadow runs at least (and until the analysis has seen "
        "minRequests copies answered) before the version is promoted.",
    )
    analysis: ShadowAnalysis = Field(
        default_factory=ShadowAnalysis, description="How the shadow is judged."
    )


class RolloutSpec(ApiModel):
    """How a new version replaces the serving one."""

    __rules__ = (
        not_both_zero("maxSurge", "maxUnavailable"),
        Rule(
            cel="!has(self.strategy) || self.strategy != 'Canary' || has(self.canary)",
            message="strategy Canary needs canary.steps",
            holds=lambda r: r.strategy != "Canary" or r.canary is not None,
            field_path=".canary",
        ),
    )

    strategy: Literal["Replace", "RollingUpdate", "Canary", "Shadow"] = Field(
        default="Replace",
        description="Replace: every pod moves to the new version by a rolling update "
        "(RollingUpdate is the same, its earlier name). Canary: a share of the pods runs the "
        "new version first, step by step, judged on its own metrics. Shadow: the new version "
        "answers copies of live requests, never returned to callers, then replaces the serving "
        "one. Canary and Shadow need runtime: batched.",
    )
    canary: CanarySpec | None = Field(
        default=None, description="Steps and analysis of strategy Canary."
    )
    shadow: ShadowSpec = Field(
        default_factory=ShadowSpec,
        description="Share, duration and analysis of strategy Shadow (defaults: 20% for 10m).",
    )
    max_surge: IntOrString = Field(
        default=1, description="Extra pods during a rollout: a number or a percentage."
    )
    max_unavailable: IntOrString = Field(
        default=0, description="Pods that may be unavailable during a rollout."
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="A version not available within this time has failed.",
    )
    auto_rollback: bool = Field(
        default=True, description="Go back to the last good version when a rollout fails."
    )
    on_incompatible: Literal["Hold", "Fail"] = Field(
        default="Hold",
        description="A version the pre-flight check finds the serving image cannot run never "
        "gets a pod. Hold: it waits, not counted as failed, and is checked again once the "
        "serving image changes (an operator upgrade). Fail: it is a failed version "
        "(failedVersions, the rollout ledger, Degraded VersionIncompatible), not retried while "
        "the registry still selects it.",
    )

    @property
    def incompatible_fails(self) -> bool:
        """onIncompatible Fail: a version the serving image cannot run is a failed version."""
        return self.on_incompatible == "Fail"


MAX_GATES = 16


class MetricGate(ApiModel):
    """A threshold on a metric of the MLflow run that produced the version."""

    __rules__ = (
        Rule(
            cel="has(self.min) || has(self.max)",
            message="a metric gate needs min, max or both",
            holds=lambda g: g.min is not None or g.max is not None,
        ),
        Rule(
            cel="!has(self.min) || !has(self.max) || self.min <= self.max",
            message="min must not be above max",
            holds=lambda g: g.min is None or g.max is None or g.min <= g.max,
        ),
        Rule(
            cel=_cel_tag_key("self.name"),
            message="name must be a metric name MLflow can store (letters, digits, '_', '-', "
            "'.', ' ', ':', '/')",
            holds=lambda g: is_mlflow_tag_key(g.name),
            field_path=".name",
        ),
    )

    name: str = Field(
        min_length=1, max_length=MAX_TAG_KEY_LENGTH, description="The metric, e.g. accuracy."
    )
    min: float | None = Field(default=None, description="The lowest value that passes.")
    max: float | None = Field(default=None, description="The highest value that passes.")


class ServingComparison(ApiModel):
    """A metric of the version's run compared with the same metric of the serving version's."""

    __rules__ = (
        Rule(
            cel=_cel_tag_key("self.metric"),
            message="metric must be a metric name MLflow can store",
            holds=lambda c: is_mlflow_tag_key(c.metric),
            field_path=".metric",
        ),
    )

    metric: str = Field(
        min_length=1, max_length=MAX_TAG_KEY_LENGTH, description="The metric, e.g. accuracy."
    )
    tolerance: float = Field(
        default=0.0, ge=0, description="How much worse than the serving version still passes."
    )
    better: Literal["higher", "lower"] = Field(
        default="higher",
        description="Which way is better: higher (accuracy, AUC) or lower (RMSE, log loss).",
    )


class GatesSpec(ApiModel):
    """Checks a new version must pass before any pod of it is created. A blocked version is
    checked again when its tags change."""

    __rules__ = (
        Rule(
            cel="has(self.requireTags) || (has(self.metrics) && size(self.metrics) > 0) || "
            "(has(self.notWorseThanServing) && size(self.notWorseThanServing) > 0)",
            message="gates need requireTags, metrics or notWorseThanServing",
            holds=lambda g: bool(g.require_tags or g.metrics or g.not_worse_than_serving),
        ),
        *_version_tag_rules("requireTags", "require_tags", "approve a version"),
    )

    require_tags: dict[str, Annotated[str, Field(max_length=5000)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SELECTOR_TAGS,
        description="Version tags that must be set to these values, e.g. "
        "{validation_status: approved}.",
    )
    metrics: list[MetricGate] = Field(
        default_factory=list,
        max_length=MAX_GATES,
        description="Thresholds on metrics of the version's run, e.g. "
        "[{name: accuracy, min: 0.9}].",
    )
    not_worse_than_serving: list[ServingComparison] = Field(
        default_factory=list,
        max_length=MAX_GATES,
        description="Metrics of the version's run that must not be worse than the serving "
        "version's by more than a tolerance (compare and promote).",
    )


class PromoteSpec(ApiModel):
    """What the registry is told when the cluster promotes a version."""

    __rules__ = (
        Rule(
            cel="!has(self.setAlias) || (self.setAlias.lowerAscii() != 'latest' && "
            "!self.setAlias.matches('^[vV][0-9]+$'))",
            message="alias 'latest' and aliases of the form v<number> are reserved by MLflow",
            holds=lambda p: (
                p.set_alias is None
                or (p.set_alias.lower() != "latest" and not _is_version_alias(p.set_alias))
            ),
            field_path=".setAlias",
        ),
    )

    set_alias: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=ALIAS_PATTERN,
        description="After a canary or shadow promoted a version to every pod, move this MLflow "
        "alias to it (e.g. champion, for a ModelDeployment that follows challenger).",
    )


class ModelDeploymentSpec(ApiModel):
    """Desired state of a ModelDeployment."""

    __rules__ = (
        Rule(
            cel="!has(self.rollout) || !has(self.rollout.strategy) || "
            "!(self.rollout.strategy in ['Canary', 'Shadow']) || "
            "(has(self.serving) && has(self.serving.runtime) && self.serving.runtime == 'batched')",
            message="rollout strategies Canary and Shadow need serving.runtime batched: the new "
            "version is judged on the batched runtime's own /metrics (and its pods copy requests "
            "to a shadow)",
            holds=lambda s: (
                s.rollout.strategy not in ("Canary", "Shadow") or s.serving.runtime == "batched"
            ),
            field_path=".rollout.strategy",
        ),
        Rule(
            cel="!has(self.promote) || !has(self.promote.setAlias) || (has(self.rollout) && "
            "has(self.rollout.strategy) && self.rollout.strategy in ['Canary', 'Shadow'])",
            message="promote.setAlias needs rollout strategy Canary or Shadow: only they promote",
            holds=lambda s: (
                s.promote is None
                or s.promote.set_alias is None
                or s.rollout.strategy in ("Canary", "Shadow")
            ),
            field_path=".promote.setAlias",
        ),
        Rule(
            cel="!has(self.promote) || !has(self.promote.setAlias) || !has(self.model.alias) || "
            "self.promote.setAlias != self.model.alias",
            message="promote.setAlias is the alias this ModelDeployment follows: it points at "
            "the promoted version already",
            holds=lambda s: (
                s.promote is None
                or s.promote.set_alias != s.model.alias
                or s.promote.set_alias is None
            ),
            field_path=".promote.setAlias",
        ),
    )

    model: ModelSelector = Field(description="Registered model and version selector.")
    registry: RegistrySpec = Field(description="The MLflow registry to follow.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Serving pods.")
    service: ServiceSpec = service_spec_field(80)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Rollout policy.")
    promote: PromoteSpec | None = Field(
        default=None,
        description="What the operator records in MLflow when a canary or shadow promotes a "
        "version (an alias it moves).",
    )
    gates: GatesSpec | None = Field(
        default=None,
        description="Checks a new version must pass before any pod of it is created (a version "
        "tag, metric thresholds, not worse than the serving version).",
    )
    suspend: bool = Field(
        default=False,
        description="true: stop following the registry and keep serving what serves now.",
    )


class RolloutRecord(StatusModel):
    """One rollout in the history."""

    version: str = Field(description="Model version rolled out.")
    started: datetime | None = Field(
        default=None,
        description="When the rollout began (none for a version failed by the pre-flight check: "
        "it never got a pod).",
    )
    finished: datetime | None = Field(default=None, description="When it ended.")
    result: Literal["Succeeded", "Failed", "RolledBack", "Superseded", "InProgress"] = Field(
        description="How it ended."
    )
    message: str | None = Field(
        default=None,
        description="Why a Failed or RolledBack rollout failed, as seen on its pods at the "
        "deadline (e.g. CrashLoopBackOff with the last log lines, OOMKilled with the limit), or "
        "why the serving image cannot run it (rollout.onIncompatible: Fail).",
    )


class AutoscalingStatus(StatusModel):
    """What the autoscaler saw and decided last."""

    desired_replicas: int = Field(description="The pod count it wants now.")
    load: str | None = Field(
        default=None, description="The load it decided on, e.g. 'concurrency 5.5/pod (target 2)'."
    )
    last_scale_time: datetime | None = Field(
        default=None, description="When it last changed the count."
    )


class GatesStatus(StatusModel):
    """The last judgement of spec.gates."""

    version: str = Field(description="The version judged.")
    verdict: Literal["Passed", "Blocked"] = Field(description="Passed or Blocked.")
    message: str = Field(description="Each gate with the values it saw.")


class PreflightStatus(StatusModel):
    """The last pre-flight check of a new version against the serving image."""

    version: str = Field(description="The version checked.")
    verdict: Literal["Compatible", "Incompatible", "Unknown"] = Field(
        description="Compatible; Incompatible: it gets no pod (the requirement and what the "
        "image has are in message); Unknown: not checked fully (message says why), rolled out."
    )
    message: str = Field(description="What was checked, or what is wrong.")
    notes: list[str] = Field(
        default_factory=list,
        description="Differences that do not block (e.g. a pinned minor version the image has "
        "another of).",
    )


class NodePrefetchStatus(StatusModel):
    """The prefetch of a version onto one node's model cache."""

    node: str = Field(description="The node.")
    phase: Literal["Running", "Done", "Failed", "Unsupported", "NoCache"] = Field(
        description="Done: cached; Failed, Unsupported (the MLflow server does not proxy "
        "artifacts), NoCache (no ready cache pod on the node): its pods download themselves."
    )
    bytes: int = Field(default=0, description="Bytes of the version in the node's cache.")
    message: str = Field(default="", description="Why, when not Done.")


class PrefetchStatus(StatusModel):
    """The last prefetch of a new version onto the model caches of the nodes that serve
    (serving.cache), before any pod of it is created."""

    version: str = Field(description="The version prefetched.")
    phase: Literal["Running", "Done", "Incomplete"] = Field(
        description="Running: the rollout waits for it; Done: cached on every node that serves; "
        "Incomplete: not on some (failed, or past the deadline): the rollout went on anyway."
    )
    started: datetime = Field(description="When it began.")
    finished: datetime | None = Field(default=None, description="When it ended.")
    message: str = Field(description="Nodes done, and what failed.")
    nodes: list[NodePrefetchStatus] = Field(default_factory=list, description="Per node.")


class EnvironmentStatus(StatusModel):
    """The build of a version's Python environment by a Job (serving.envManager uv)."""

    version: str = Field(description="The version whose environment is built.")
    phase: Literal["Building", "Built", "Failed"] = Field(
        description="Building: its Job runs and no pod of the version exists yet; Built: kept "
        "in MLflow, the pods start from it; Failed: the version gets no pod (delete the Job to "
        "build it again)."
    )
    job: str = Field(description="The Job that builds it.")
    started: datetime = Field(description="When the operator first saw it building.")
    finished: datetime | None = Field(default=None, description="When it ended.")
    message: str = Field(description="What the Job did, or why it failed.")


class FeatureDrift(StatusModel):
    """One feature's drift score, the largest any serving pod reports."""

    feature: str = Field(description="The input column, or the output (kind output).")
    kind: Literal["input", "output"] = Field(description="A request column or the answer.")
    drift: float = Field(description="Population Stability Index against the reference.")


class QualityStatus(StatusModel):
    """The serving version's quality on the labelled rows of its live traffic."""

    metric: str = Field(description="quality.metric.")
    value: float | None = Field(
        default=None, description="The live metric; none until minLabelled rows are labelled."
    )
    labelled: int = Field(default=0, description="Labelled rows it is computed over.")
    training: float | None = Field(
        default=None, description="quality.trainingMetric of the version's run, if it has it."
    )
    threshold: float | None = Field(default=None, description="thresholds.quality, if set.")
    message: str = Field(default="", description="The judgement in words.")


class MonitoringStatus(StatusModel):
    """What the serving pods of the version say about its live traffic
    (serving.monitoring.drift; docs/monitoring.md)."""

    version: str = Field(description="The version whose pods were read.")
    reference: str | None = Field(
        default=None,
        description="What the scores compare with: a dataset logged with the version, or the "
        "first rows served, and how many rows.",
    )
    threshold: float | None = Field(default=None, description="thresholds.drift, if set.")
    drifting: list[str] = Field(
        default_factory=list,
        description="Features above thresholds.drift, highest first (outputs marked).",
    )
    features: list[FeatureDrift] = Field(
        default_factory=list, description="The highest scores (up to 10), highest first."
    )
    message: str = Field(default="", description="The judgement in words.")
    quality: QualityStatus | None = Field(
        default=None, description="The live quality from ground truth (serving.monitoring.quality)."
    )


class CanaryStatus(StatusModel):
    """Where a canary rollout stands (strategy Canary)."""

    phase: Literal["Canary", "Shadow", "Promoting", "Promoted", "Aborted"] = Field(
        description="Canary: steps run; Shadow: the version answers copies of live requests; "
        "Promoting: every pod moves to the version; Promoted, Aborted: how the last one ended."
    )
    version: str = Field(description="The version under test.")
    step: int = Field(default=0, description="The step running (0-based).")
    weight: int = Field(
        default=0,
        description="Percent of the serving pods that run the version now (steps rounded to "
        "whole pods).",
    )
    canary_replicas: int = Field(default=0, description="Pods of the version.")
    step_started: datetime | None = Field(default=None, description="When the step began.")
    last_analysis: datetime | None = Field(default=None, description="When it was last judged.")
    failures: int = Field(default=0, description="Failed judgements so far.")
    analysis: str | None = Field(
        default=None,
        description="The last judgement, e.g. 'canary: 120 requests, 0.0% errors (stable "
        "0.1%), p99 12ms; stable p99 10ms (1.2x)'.",
    )
    disagreement_rate: float | None = Field(
        default=None,
        description="Shadow: the share of copies both versions answered whose predictions "
        "differ, at the last judgement.",
    )


class ModelDeploymentStatus(StatusModel):
    """Observed state of a ModelDeployment."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation this status describes."
    )
    conditions: list[Condition] = conditions_field()
    follows: str | None = Field(
        default=None, description="The selector in short form, e.g. alias:champion."
    )
    target_version: str | None = Field(
        default=None, description="The version the registry selects now."
    )
    selection: str | None = Field(
        default=None,
        description="Why spec.model.selector chose targetVersion (its tags, semantic version "
        "and how many versions matched).",
    )
    serving_version: str | None = Field(
        default=None, description="The version all ready pods serve."
    )
    previous_version: str | None = Field(default=None, description="The version served before.")
    model_uri: str | None = Field(default=None, description="models:/<name>/<version> served.")
    run_id: str | None = Field(default=None, description="MLflow run that produced the version.")
    last_registry_sync: datetime | None = Field(
        default=None, description="When the registry was last read successfully."
    )
    url: str | None = Field(default=None, description="In-cluster URL of the Service.")
    replicas: int | None = Field(default=None, description="Serving pods.")
    ready_replicas: int | None = Field(default=None, description="Ready serving pods.")
    selector: str | None = Field(
        default=None,
        description="Label selector of the serving pods, for the scale subresource (kubectl "
        "scale, HorizontalPodAutoscaler, KEDA).",
    )
    failed_versions: list[str] = Field(
        default_factory=list,
        description="Versions whose rollout failed; not retried until the registry moves on.",
    )
    history: list[RolloutRecord] = Field(
        default_factory=list, description="The last 10 rollouts, newest last."
    )
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="The autoscaler's last decision (serving.autoscaling)."
    )
    gates: GatesStatus | None = Field(
        default=None, description="The last judgement of spec.gates on a new version."
    )
    preflight: PreflightStatus | None = Field(
        default=None,
        description="The last pre-flight check of a new version: its MLmodel and requirements "
        "against what the serving image has installed, before any pod of it is created.",
    )
    prefetch: PrefetchStatus | None = Field(
        default=None,
        description="The last prefetch of a new version onto the nodes' model caches "
        "(serving.cache).",
    )
    environment: EnvironmentStatus | None = Field(
        default=None,
        description="The build of a new version's Python environment (serving.envManager uv), "
        "before any pod of it is created.",
    )
    monitoring: MonitoringStatus | None = Field(
        default=None,
        description="Drift and quality of the serving version's live traffic (serving.monitoring).",
    )
    rollout: CanaryStatus | None = Field(
        default=None, description="The last canary or shadow rollout (strategy Canary, Shadow)."
    )
