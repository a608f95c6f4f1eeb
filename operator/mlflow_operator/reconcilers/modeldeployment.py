"""One reconcile of a ModelDeployment: gather, decide, build, act."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import LRUCache
from lightkube import ApiError

from mlflow_operator import metrics
from mlflow_operator.activator import Activator
from mlflow_operator.api import API_GROUP, API_VERSION
from mlflow_operator.api.duration import parse_duration
from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.api.modeldeployment import (
    AutoscalingStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from mlflow_operator.api.validation import object_errors
from mlflow_operator.builders.httproute import (
    GATEWAY_API_VERSION,
    HTTP_ROUTE,
    route_patch,
    weighted_rules,
)
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.modeldeployment import (
    SERVING_PORT,
    activator_slice_name,
    build_activator_endpoint_slice,
    build_canary_service,
    build_mirror_config,
    build_serving_deployment,
    build_serving_network_policy,
    build_serving_pdb,
    build_serving_service,
    build_shadow_service,
    canary_name,
    mirror_config_digest,
    mounts_mirror_config,
    pod_selector,
    routed,
    selector_labels,
    service_url,
    serving_image,
    serving_name,
    shadow_name,
)
from mlflow_operator.builders.pod import without_fixed_ids
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.api_refusal import ApiRefusal
from mlflow_operator.core.applied import already_applied, stamped
from mlflow_operator.core.conditions import READY, get_condition
from mlflow_operator.core.endpoint import CredentialsSecret, TrackingEndpoint
from mlflow_operator.core.mlflowserver import layout
from mlflow_operator.core.modeldeployment.activation import ActivatorRoute, activator_wanted
from mlflow_operator.core.modeldeployment.autoscaling import (
    LoadSample,
    decide_replicas,
    measured_load,
    rollout_needs_a_pod,
    scale_message,
)
from mlflow_operator.core.modeldeployment.canary import (
    CanaryInputs,
    CanaryObservation,
    CanaryPlan,
    Judgement,
    Traffic,
    analysis_due,
    judge,
    judge_shadow,
    plan_canary,
    trial_of,
)
from mlflow_operator.core.modeldeployment.conditions import (
    CANARY,
    CREDENTIALS_NOT_FOUND,
    HTTP_ROUTE_UNUSABLE,
    MODEL_CACHE_UNAVAILABLE,
    ROLLING_BACK,
    ROLLOUT_STARTED,
    SCALE_TO_ZERO_UNAVAILABLE,
    SCALED,
    SERVER_NOT_FOUND,
    SERVING_IDENTITY_FAILED,
    SHADOW,
    SUSPENDED,
)
from mlflow_operator.core.modeldeployment.environment import (
    EnvironmentVerdict,
    builds_environments,
    environment_versions,
)
from mlflow_operator.core.modeldeployment.gates import (
    GateVerdict,
    RunMetrics,
    gate_question,
)
from mlflow_operator.core.modeldeployment.gates import (
    judge as judge_gates,
)
from mlflow_operator.core.modeldeployment.monitoring import (
    DriftVerdict,
    drifting_count,
    judge_drift,
)
from mlflow_operator.core.modeldeployment.observation import (
    DeploymentObservation,
    observe_deployment,
    settled_versions,
)
from mlflow_operator.core.modeldeployment.prefetch import PrefetchVerdict, prefetch_version
from mlflow_operator.core.modeldeployment.preflight import (
    ImageContents,
    Preflight,
    check_version,
    preflight_version,
)
from mlflow_operator.core.modeldeployment.quality import (
    QualityVerdict,
    judge_quality,
    quality_degraded,
)
from mlflow_operator.core.modeldeployment.recheck import recheck_after
from mlflow_operator.core.modeldeployment.resolution import Resolution, Resolved, resolve_target
from mlflow_operator.core.modeldeployment.rollout import (
    PlannedEvent,
    RolloutPlan,
    deployment_recreated,
    plan_rollout,
    recreating,
)
from mlflow_operator.core.modeldeployment.serving_identity import reader_secret_name
from mlflow_operator.core.modeldeployment.status import (
    invalid_status,
    not_ready_status,
    status_changed,
)
from mlflow_operator.core.modeldeployment.write_back import (
    drift_tag_value,
    quality_tag_value,
    version_tag_values,
)
from mlflow_operator.core.naming import (
    ANNOTATION_MIRROR_CONFIG,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_MODEL_VERSION,
    drift_tag,
    quality_tag,
    write_back_tag,
)
from mlflow_operator.core.registry_view import RegistryState
from mlflow_operator.crds import MODEL_DEPLOYMENT
from mlflow_operator.image_contents import (
    SERVING_IMAGE_CPU,
    SERVING_IMAGE_GPU,
    read_image_contents,
)
from mlflow_operator.kube.refusals import Kube, KubernetesRefused, NamingKube
from mlflow_operator.podmetrics import PodMetricsReader, running_pod_addresses, starting_pods
from mlflow_operator.promquery import PrometheusTraffic
from mlflow_operator.reconcilers.common import (
    CONFLICT_RETRY_SECONDS,
    EventSink,
    ReconcileResult,
    ToldOnce,
    status_patch,
)
from mlflow_operator.reconcilers.environments import EnvironmentBuilds
from mlflow_operator.reconcilers.prefetch import Prefetches
from mlflow_operator.reconcilers.quality import LiveQuality
from mlflow_operator.reconcilers.secret_watch import SecretWatch
from mlflow_operator.reconcilers.serving_identity import SecretUnusable, ServingIdentities
from mlflow_operator.reconcilers.watched import Watched, WrittenAhead
from mlflow_operator.reconcilers.watched import resource_version as version_of
from mlflow_operator.registry.client import Credentials, RegistryClient, RegistryError
from mlflow_operator.registry.tag_writer import AliasMove, RegistryWrite, TagWriter, VersionTag
from mlflow_operator.registry.watcher import Follower, RegistryHub

logger = logging.getLogger(__name__)

API = f"{API_GROUP}/{API_VERSION}"
KIND = "ModelDeployment"
# the shortest window of a Prometheus analysis query: increase() needs two scrapes in it
PROMETHEUS_MIN_WINDOW_SECONDS = 60
FIRST_SWEEP_WAIT_SECONDS = 10.0
RUN_METRICS_KEPT = 4096  # runs whose metrics promotion gates read (oldest dropped first)
PREFLIGHTS_KEPT = 4096  # pre-flight verdicts kept (least recently used dropped first)


@dataclass(frozen=True)
class _RegistryView:
    state: RegistryState
    endpoint: TrackingEndpoint | None = None  # None: it cannot be determined now
    client: RegistryClient | None = None
    lag: float | None = None  # seconds since a sweep saw the model change


class EndpointProblem(Exception):  # noqa: N818  (a situation reported in status, not a bug)
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ModelDeploymentReconciler:
    """Shared by every ModelDeployment of this operator process."""

    kube: Kube
    hub: RegistryHub
    config: OperatorConfig
    # the last refusal reported per object: one Event per distinct error, not one per retry
    _refusals: ToldOnce = field(default_factory=ToldOnce)
    # serving Deployment (uid, generation) -> the generation of its last spec change, when the
    # operator's own writes since changed only its annotations (core/modeldeployment/observation.py)
    _spec_generations: dict[str, tuple[str | None, int | None, int]] = field(default_factory=dict)
    tag_writer: TagWriter = field(default_factory=TagWriter)
    # the last problem reported per object in making its serving pods' MLflow user
    _identity_problems: ToldOnce = field(default_factory=ToldOnce)
    pod_metrics: PodMetricsReader = field(default_factory=PodMetricsReader)
    # serving.monitoring.quality: the joined samples and labels per object
    live_quality: LiveQuality = field(default_factory=LiveQuality)
    # where canaries and shadows are judged from, when the operator is given a Prometheus
    # (prometheus_url); else from the pods' own /metrics
    prometheus: PrometheusTraffic | None = None
    # why a canary's HTTPRoute could not be weighted, per object (told once)
    _route_problems: ToldOnce = field(default_factory=ToldOnce)
    # per autoscaled object: its last load sample (for rates) and since when the load has
    # wanted fewer pods than it has (core/modeldeployment/autoscaling.py)
    _load_samples: dict[str, LoadSample] = field(default_factory=dict)
    _busy_since: dict[str, datetime] = field(default_factory=dict)
    # scale to zero: the activator holding requests for Services with no ready pod (None: off),
    # the objects routed through it, and those told once that it is off
    activator: Activator | None = None
    _activated: set[str] = field(default_factory=set)
    _told_no_activator: set[str] = field(default_factory=set)
    # (MLflow URL, run id) -> (its version's tags when read, the run's metrics): spec.gates
    _run_metrics: LRUCache[tuple[str, str], tuple[str, RunMetrics]] = field(
        default_factory=lambda: LRUCache(RUN_METRICS_KEPT)
    )
    # (MLflow URL, model, version, image, gpu) -> the pre-flight verdict: a version's files do
    # not change, so each is read once
    _preflights: LRUCache[tuple[str, str, str, str, bool], Preflight] = field(
        default_factory=lambda: LRUCache(PREFLIGHTS_KEPT)
    )
    # what the default serving images have installed (config.serving_image_contents)
    _image_contents: dict[str, ImageContents] | None = None
    # objects told that serving.cache is on but the operator has no model cache
    _told_no_cache: ToldOnce = field(default_factory=ToldOnce)
    # its own status and its children as last written, until the watch tells those writes
    _ahead: WrittenAhead = field(default_factory=WrittenAhead)
    # the children read from watch streams, not GETs (set by the kopf glue once it runs)
    watched: Watched = field(default_factory=Watched)

    def __post_init__(self) -> None:
        self._api = NamingKube(self.kube)
        self.identities = ServingIdentities(self._api)
        self.prefetches = Prefetches(self._api, self.config)
        self.environments = EnvironmentBuilds(self._api, self.config)
        self.secret_watch = SecretWatch(self._api.secret_data)

    async def reconcile(
        self, body: Any, emit: EventSink, wake: Callable[[], None]
    ) -> ReconcileResult:
        """One reconcile; a Kubernetes API refusal is reported, then raised as the ApiError."""
        started = time.monotonic()
        key = _key(Owner.from_body(body))
        try:
            result = await self._reconcile(body, emit, wake)
        except KubernetesRefused as refused:
            if refused.refusal.code == 409:  # the object changed since it was read: decide again
                logger.debug("%s", refused.refusal.message)
                return ReconcileResult(recheck_after=CONFLICT_RETRY_SECONDS)
            if refused.refusal.namespace_terminating:  # it goes away with its namespace
                logger.info("%s", refused.refusal.message)
                return ReconcileResult(recheck_after=300.0)
            await self._report_refusal(body, refused.refusal, emit)
            raise refused.error from None
        finally:
            metrics.RECONCILE_SECONDS.labels(kind=KIND).observe(time.monotonic() - started)
        self._refusals.forget(key)
        return result

    async def _reconcile(
        self, body: Any, emit: EventSink, wake: Callable[[], None]
    ) -> ReconcileResult:
        fresh = self._latest(body)
        owner = Owner.from_body(fresh)
        generation = fresh["metadata"].get("generation")
        version = fresh["metadata"].get("resourceVersion")
        last = ModelDeploymentStatus.of(fresh)
        now = datetime.now(UTC)

        # gather ---------------------------------------------------------------------------
        errors = object_errors(ModelDeploymentSpec, MODEL_DEPLOYMENT.name_rules, fresh)
        if errors:
            self.hub.unfollow(_key(owner))  # an invalid spec names no endpoint to follow
            await self._write_status(
                owner, last, invalid_status(last, errors, generation, now), resource_version=version
            )
            metrics.RECONCILES.labels(kind=KIND, result="invalid").inc()
            return ReconcileResult(recheck_after=300.0)
        spec = ModelDeploymentSpec.model_validate(fresh["spec"])
        interval = parse_duration(spec.registry.poll_interval).total_seconds()
        view = await self._registry(spec, owner, interval, wake)
        registry = view.state
        resolution = resolve_target(spec.model, registry.snapshot) if registry.synced else None
        deployment = await self._read("apps/v1", "Deployment", serving_name(owner.name), owner)
        observed = observe_deployment(
            deployment,
            await self._pods(owner, deployment),
            spec_generation=self._spec_generation(owner, deployment),
        )

        gate, preflight, environment, prefetch = await self._check_new_version(
            spec, owner, resolution, registry, observed,
            last=last, view=view, now=now, emit=emit, wake=wake,
        )  # fmt: skip
        # a blocked or incompatible version gets no canary either, nor does one being prepared
        held = (
            (gate is not None and not gate.passed)
            or (preflight is not None and preflight.blocks)
            or (environment is not None and (environment.holds or environment.failed))
            or (prefetch is not None and prefetch.holds)
        )

        # decide ---------------------------------------------------------------------------
        spec, scaled, scale_events = await self._autoscale(
            spec, owner, last, now, resolution=resolution, observed=observed, emit=emit
        )
        canary = await self._canary(
            spec, owner, last, None if held else resolution, registry, observed, now
        )
        plan = plan_rollout(
            spec, generation, last, registry, resolution, observed, now,
            endpoint_known=view.endpoint is not None, url=service_url(spec, owner),
            selector=pod_selector(owner.name), gate=gate, preflight=preflight, prefetch=prefetch,
            environment=environment, canary=canary, drift=await self._drift(spec, owner, last),
            quality=await self._quality(spec, owner, last, registry, view.client),
        )  # fmt: skip

        plan.status.autoscaling = scaled
        # act: the decision is durable before anything acts on it --------------------------
        await self._write_status(owner, last, plan.status, resource_version=version)
        # Events tell of the decision, now recorded: a refused apply below must not lose them
        # (the next reconcile knows the decision was announced and does not repeat it).
        for event in (*scale_events, *plan.events):
            emit(event.type, event.reason, event.message)
        endpoint, client = view.endpoint, view.client
        # before the Deployment goes to zero pods, the Service has somewhere else to send to
        await self._route_through_activator(spec, owner, scaled, observed.ready_replicas)
        if plan.deploy_version is not None:
            if plan.apply and endpoint is not None:
                testing = canary.canary_version if canary is not None else None
                versions = [plan.deploy_version, *filter(None, [testing])]
                endpoint = await self._for_pods(
                    spec, owner, endpoint, client, versions=versions, emit=emit, wake=wake
                )
            if plan.apply and endpoint is not None:
                await self._apply_serving(spec, owner, plan, endpoint, deployment, emit)
            if canary is not None and plan.apply:
                await self._apply_trial(spec, owner, canary, endpoint, emit)
            name = serving_name(owner.name)
            await self._ensure(build_serving_service(spec, owner), "v1", "Service", name, owner)
            pdb = build_serving_pdb(spec, owner)
            await self._ensure(pdb, "policy/v1", "PodDisruptionBudget", name, owner)
            if self.config.network_policies:  # off: no reads either (turning it off keeps it)
                policy = build_serving_network_policy(owner)
                await self._ensure(policy, "networking.k8s.io/v1", "NetworkPolicy", name, owner)
        self._write_back(spec, owner, plan, client, now)
        self._count(owner, plan)
        if view.lag is not None and any(e.reason == ROLLOUT_STARTED for e in plan.events):
            metrics.RESOLUTION_LAG_SECONDS.observe(view.lag)
        recheck = recheck_after(plan, spec, interval, autoscaled=scaled is not None)
        return ReconcileResult(recheck_after=recheck)

    def forget(self, body: Any) -> None:
        """The ModelDeployment is gone (or this operator stops following it)."""
        owner = Owner.from_body(body)
        self.hub.unfollow(_key(owner))
        self._spec_generations.pop(_key(owner), None)
        self._ahead.forget(_key(owner))
        self.secret_watch.forget(_key(owner))
        self.secret_watch.forget(f"{_key(owner)}#reader")
        self._identity_problems.forget(_key(owner))
        self._refusals.forget(_key(owner))
        self._load_samples.pop(_key(owner), None)
        self._busy_since.pop(_key(owner), None)
        self._route_problems.forget(_key(owner))
        self._activated.discard(_key(owner))
        self._told_no_activator.discard(_key(owner))
        self._told_no_cache.forget(_key(owner))
        self.live_quality.forget(_key(owner))
        if self.activator is not None:
            self.activator.forget(_key(owner))
        self.identities.forget(owner)
        metrics.forget_model_deployment(owner.namespace, owner.name)

    async def remove_serving_identity(self, body: Any) -> str | None:
        """The ModelDeployment is being deleted: delete its serving pods' MLflow user, on the
        MLflowServer its reader Secret records (the spec's when it records none).

        Returns why that could not be done (the caller tells it in an Event; deletion goes
        on: a namespace being deleted may be taking the MLflowServer with it), or None.
        """
        owner = Owner.from_body(body)
        try:
            ref = ModelDeploymentSpec.model_validate(body.get("spec") or {}).registry.server_ref
        except ValueError:
            ref = None  # an invalid spec names no server; its reader Secret may
        server = await self.identities.recorded_server(owner, ref.name if ref else None)
        if server is None:
            return None  # never a serverRef: never a user
        return await self._remove_reader(owner, server)

    async def _remove_reader(self, owner: Owner, server: str) -> str | None:
        """Delete the serving pods' MLflow user on the MLflowServer `server`; why that could
        not be done, or None."""
        cannot = f"the MLflow user of its serving pods on MLflowServer {server!r} was not deleted"
        try:
            endpoint = await self._server_endpoint(server, owner)
            if endpoint.credentials is None:
                return None  # basic auth is off: there are no users
            credentials = await self._credentials(endpoint.credentials, owner.namespace)
        except EndpointProblem as problem:
            return f"{cannot}: {problem.message}"
        client = self.hub.new_client(endpoint.url, credentials)
        try:
            await self.identities.remove(owner, client)
        except RegistryError as exc:
            return f"{cannot}: {exc}"
        finally:
            await client.close()
        return None

    async def _leave_old_server(self, owner: Owner, server: str | None, emit: EventSink) -> None:
        """The reader user on a server the pods no longer read with basic auth (`server` is the
        one they do; None: none) is deleted there, and its Secret: a new one is made for
        `server`. What cannot be done is told once and holds nothing up."""
        try:
            old = await self.identities.server_to_leave(owner, server)
            if old is None:
                return
            problem = await self._remove_reader(owner, old)
            await self.identities.leave(owner, server)
        except KubernetesRefused as refused:  # no RBAC to delete Secrets (an older chart)
            problem = refused.refusal.message
        if problem is not None:
            logger.warning("%s: %s", _key(owner), problem)
            emit("Warning", SERVING_IDENTITY_FAILED, problem)

    async def _apply_serving(  # noqa: PLR0917  (what one apply needs)
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        plan: RolloutPlan,
        endpoint: TrackingEndpoint,
        deployment: dict[str, Any] | None,
        emit: EventSink,
    ) -> None:
        """The serving Deployment as the plan pins it; no write when the live one is it."""
        assert plan.deploy_version is not None  # noqa: S101  (the caller checks)
        built = build_serving_deployment(
            spec,
            owner,
            plan.deploy_version,
            endpoint,
            self.config,
            replace_in_place=plan.replace_in_place,
            ledger=plan.ledger,
        )
        desired = stamped(without_fixed_ids(built) if self.config.openshift else built)
        if deployment is not None and already_applied(deployment, desired):
            stored = deployment  # an idle reconcile writes nothing
        else:
            stored = await self._api.apply(desired)
            self._wrote(owner, "Deployment", serving_name(owner.name), deployment, stored)
        self._note_spec_generation(owner, deployment, stored)
        if deployment_recreated(deployment, stored):
            event = recreating(plan.deploy_version, "was deleted during a reconcile")
            emit(event.type, event.reason, event.message)

    async def _apply_trial(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        canary: CanaryPlan,
        endpoint: TrackingEndpoint | None,
        emit: EventSink,
    ) -> None:
        """The canary's or the shadow's objects as the plan wants them, or none. Without an
        endpoint for their pods (their MLflow user cannot be made now) they are left as they
        are. A shadow's go as soon as it is judged: promoting it is a Replace."""
        version, status = canary.canary_version, canary.status
        if version is not None and endpoint is None:
            return
        shadow = version is not None and status is not None and status.phase == SHADOW
        if routed(spec):  # first: the route takes its share off canary pods about to go
            await self._weigh_route(spec, owner, canary.route_weight, emit)
        # a canary's pods serve until its promotion is done; a shadow's never serve anyone
        canary_pods = version is not None and spec.rollout.strategy == CANARY
        for name, wanted, shadow_pods in (
            (canary_name(owner.name), canary_pods, None),
            (shadow_name(owner.name), shadow, canary.canary_replicas),
        ):
            manifest = None
            if wanted and version is not None and endpoint is not None:
                built = build_serving_deployment(
                    spec, owner, version, endpoint, self.config,
                    canary_replicas=None if shadow else canary.canary_replicas,
                    shadow_replicas=shadow_pods,
                )  # fmt: skip
                manifest = without_fixed_ids(built) if self.config.openshift else built
            await self._ensure(manifest, "apps/v1", "Deployment", name, owner)
        name = shadow_name(owner.name)
        service = build_shadow_service(owner) if shadow else None
        await self._ensure(service, "v1", "Service", name, owner)
        mirror = (
            build_mirror_config(owner, version, spec.rollout.shadow.percent)
            if shadow and version is not None
            else None
        )
        if await self._ensure(mirror, "v1", "ConfigMap", name, owner):
            await self._nudge_mirroring_pods(owner, mirror_config_digest(mirror))

    async def _nudge_mirroring_pods(self, owner: Owner, digest: str) -> None:
        """Annotate the serving pods that mount the mirror ConfigMap just written: the kubelet
        then syncs them and refreshes its files within seconds, where its periodic sync takes a
        minute or more, the whole time a shadow waits for copies. Best effort: without it (pods
        patch refused by an older RBAC) the periodic sync still gets there."""
        try:
            pods = await self._serving_pods(owner.namespace, selector_labels(owner.name))
            for pod in pods:
                meta = pod["metadata"]
                seen = (meta.get("annotations") or {}).get(ANNOTATION_MIRROR_CONFIG)
                if mounts_mirror_config(pod, owner.name) and seen != digest:
                    await self._api.annotate(
                        "v1", "Pod", meta["name"], owner.namespace,
                        {ANNOTATION_MIRROR_CONFIG: digest},
                    )  # fmt: skip
        except KubernetesRefused as refused:
            logger.warning(
                "%s/%s: the serving pods will read the mirror ConfigMap on the kubelet's next "
                "sync: %s", owner.namespace, owner.name, refused.refusal.message,
            )  # fmt: skip

    async def _weigh_route(
        self, spec: ModelDeploymentSpec, owner: Owner, weight: int, emit: EventSink
    ) -> None:
        """The user's HTTPRoute sends `weight`% to the canary's Service, which exists first,
        and the rest to the serving one (builders/httproute.py). A route that cannot be
        weighted is told once (Event, and the Progressing message of a running canary)."""
        service = build_canary_service(spec, owner)
        await self._ensure(service, "v1", "Service", canary_name(owner.name), owner)
        ref = spec.rollout.canary.http_route_ref if spec.rollout.canary else None
        assert ref is not None  # noqa: S101  (routed() says so)
        field = "spec.rollout.canary.httpRouteRef"
        problem = None
        try:
            route = await self._api.get(GATEWAY_API_VERSION, HTTP_ROUTE, ref.name, owner.namespace)
        except KubernetesRefused as refused:
            route, problem = None, f"{field}: {refused.refusal.message}"
        rules = weighted_rules(route, owner.name, spec.service.port, weight) if route else None
        if problem is None and route is None:
            problem = f"{field}: HTTPRoute {ref.name!r} not found in namespace {owner.namespace}"
        elif problem is None and rules is None:
            problem = (
                f"{field}: no rule of HTTPRoute {ref.name!r} sends to Service {owner.name!r} "
                "(or its -canary Service)"
            )
        elif route is not None and rules is not None and rules != route["spec"].get("rules"):
            try:
                await self._api.apply(route_patch(route, rules))
            except KubernetesRefused as refused:
                problem = f"{field}: {refused.refusal.message}"
        key = _key(owner)
        if self._route_problems.news(key, problem):
            logger.warning("%s: %s", key, problem)
            emit("Warning", HTTP_ROUTE_UNUSABLE, str(problem))

    async def _ensure(
        self, manifest: dict[str, Any] | None, api_version: str, kind: str, name: str, owner: Owner
    ) -> bool:
        """The child as built, applied only when the live one differs; deleted when none is
        wanted. No write at rest. Whether it wrote."""
        live = await self._read(api_version, kind, name, owner)
        if manifest is None:
            if live is None:
                return False
            await self._api.delete(api_version, kind, name, owner.namespace)
            self._wrote(owner, kind, name, live, None)
            return True
        desired = stamped(manifest)
        if already_applied(live, desired):
            return False
        self._wrote(owner, kind, name, live, await self._api.apply(desired))
        return True

    async def _read(
        self, api_version: str, kind: str, name: str, owner: Owner
    ) -> dict[str, Any] | None:
        """An object in `owner`'s namespace: from the watch when its kind is indexed
        (reconcilers/watched.py), else a GET. What this operator wrote a moment ago and the
        watch has not told yet is read as written: a reconcile woken by its own status write
        must not apply the same Deployment again (bench_scale: 4 applies per rollout, 2
        since: the template, then the ledger)."""
        if not self.watched.knows(kind):
            return await self._api.get(api_version, kind, name, owner.namespace)
        return self._ahead.read(
            _key(owner), (kind, name), self.watched.get(kind, name, owner.namespace)
        )

    async def _serving_pods(
        self, namespace: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """The pods of one ModelDeployment that carry `labels` (which name it): from the pod
        index when pods are watched (handlers/modeldeployment.py), else a LIST. A rollout read
        its pods at every reconcile while a new pod was starting: 2,222 of the 9,200 requests
        of 1,000 rollouts (bench_scale)."""
        model_deployment = labels.get(LABEL_MODEL_DEPLOYMENT)
        if self.watched.knows("Pod") and model_deployment is not None:
            return self.watched.pods(namespace, model_deployment, labels)
        return await self._api.list("v1", "Pod", namespace, dict(labels))

    def _wrote(
        self,
        owner: Owner,
        kind: str,
        name: str,
        replaced: dict[str, Any] | None,
        stored: dict[str, Any] | None,
    ) -> None:
        """`owner`'s child `replaced` (None: none) is `stored` now (None: deleted)."""
        if self.watched.knows(kind):
            self._ahead.wrote(_key(owner), (kind, name), version_of(replaced), stored)

    async def _autoscale(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        last: ModelDeploymentStatus,
        now: datetime,
        *,
        resolution: Resolution | None,
        observed: DeploymentObservation,
        emit: EventSink,
    ) -> tuple[ModelDeploymentSpec, AutoscalingStatus | None, list[PlannedEvent]]:
        """The spec with the count the load wants now in place of spec.serving.replicas, the
        autoscaler's decision and its Scaled Event if the count changes; the spec as it is and
        None without autoscaling."""
        autoscaling, key = spec.serving.autoscaling, _key(owner)
        if autoscaling is None:
            self._load_samples.pop(key, None)
            self._busy_since.pop(key, None)
            return spec, None, []
        # a new version proves itself on a pod: never rolled out on zero
        must_run = rollout_needs_a_pod(
            last.serving_version,
            last.failed_versions,
            resolution.version if isinstance(resolution, Resolved) else None,
            observed.version,
        )
        pods = await self._serving_pods(owner.namespace, selector_labels(owner.name))
        sample = await self.pod_metrics.sample(pods, SERVING_PORT, now)
        load = measured_load(autoscaling, sample, self._load_samples.get(key))
        self._load_samples[key] = sample
        waiting = self.activator.waiting(key) if self.activator is not None else 0
        if autoscaling.min_replicas == 0 and not self.config.scale_to_zero:
            self._tell_no_activator(key, emit)
        zero = self.config.scale_to_zero and not (must_run or waiting)
        decision, self._busy_since[key] = decide_replicas(
            autoscaling, last.autoscaling, spec.serving.replicas, load,
            busy_since=self._busy_since.get(key), now=now,
            floor=0 if zero else 1, settling=starting_pods(pods) > 0,
        )  # fmt: skip
        serving = spec.serving.model_copy(update={"replicas": decision.desired_replicas})
        scaled = scale_message(last.autoscaling, spec.serving.replicas, decision)
        events = [PlannedEvent("Normal", SCALED, scaled)] if scaled else []
        return spec.model_copy(update={"serving": serving}), decision, events

    def _tell_no_activator(self, key: str, emit: EventSink) -> None:
        if key in self._told_no_activator:
            return
        self._told_no_activator.add(key)
        emit("Warning", SCALE_TO_ZERO_UNAVAILABLE, "minReplicas is 0 but this operator runs no "
             "activator (activatorPort 0 or no activatorAddress): it keeps one pod")  # fmt: skip

    async def _route_through_activator(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        scaled: AutoscalingStatus | None,
        ready_replicas: int,
    ) -> None:
        """While a ModelDeployment that may scale to zero has no ready pod, its Service sends
        to the activator (core/modeldeployment/activation.py); else the activator's slice goes."""
        key, activator = _key(owner), self.activator
        autoscaling = spec.serving.autoscaling
        slice_name = activator_slice_name(owner.name)
        if (
            activator is None
            or scaled is None
            or autoscaling is None
            or autoscaling.min_replicas > 0
            or not self.config.scale_to_zero
        ):
            if key in self._activated:  # only then: no read for every ModelDeployment
                self._activated.discard(key)
                if activator is not None:
                    activator.forget(key)
                await self._ensure(None, "discovery.k8s.io/v1", "EndpointSlice", slice_name, owner)
            return
        self._activated.add(key)
        service = await self._read("v1", "Service", serving_name(owner.name), owner)
        cluster_ip = ((service or {}).get("spec") or {}).get("clusterIP")
        activator.route(
            ActivatorRoute(
                owner.namespace, owner.name, serving_name(owner.name),
                cluster_ip if cluster_ip and cluster_ip != "None" else None,
            )
        )  # fmt: skip
        wanted = activator_wanted(scaled.desired_replicas, ready_replicas)
        if wanted:
            activator.cold(key)
        manifest = (
            build_activator_endpoint_slice(
                owner, self.config.activator_address, self.config.activator_port
            )
            if wanted
            else None
        )
        await self._ensure(manifest, "discovery.k8s.io/v1", "EndpointSlice", slice_name, owner)

    async def activator_pods(self, route: ActivatorRoute) -> list[str]:
        """The activator's view of a ModelDeployment's pods (mlflow_operator/activator.py)."""
        pods = await self._serving_pods(route.namespace, selector_labels(route.name))
        return running_pod_addresses(pods)

    async def _for_pods(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        endpoint: TrackingEndpoint,
        client: RegistryClient | None,
        *,
        versions: list[str],
        emit: EventSink,
        wake: Callable[[], None],
    ) -> TrackingEndpoint | None:
        """The endpoint with the credentials the serving pods get; None while the pods' own
        MLflow user (serverRef with basic auth) cannot be made: then nothing is applied, and
        what serves now keeps serving. Its Secret is watched (reconcilers/secret_watch.py):
        deleting it (a rotation, docs/security.md) wakes the ModelDeployment at rest."""
        ref = spec.registry.server_ref
        server = ref.name if ref is not None and endpoint.credentials is not None else None
        await self._leave_old_server(owner, server, emit)
        key = _key(owner)
        reader_user, reader = f"{key}#reader", (owner.namespace, reader_secret_name(owner.name))
        if server is None:
            self.secret_watch.forget(reader_user)
            return endpoint  # trackingUri: the user's choice; no basic auth: no credentials
        if not self.secret_watch.uses(reader_user, reader):
            interval = parse_duration(spec.registry.poll_interval).total_seconds()
            data = await self._api.secret_data(reader[1], reader[0])
            self.secret_watch.use(reader_user, reader, data=data, interval=interval, wake=wake)
        problem = "the operator cannot read this MLflow server now (see RegistrySynced)"
        if client is not None:
            try:
                access = await self.identities.ensure(
                    owner, server, spec.model.name, versions, client,
                    monitors=spec.serving.monitoring.writes_to_mlflow(spec.serving.runtime),
                    environments=builds_environments(spec),
                )  # fmt: skip
            except (RegistryError, SecretUnusable) as exc:
                problem = str(exc)
            else:
                self._identity_problems.news(key, None)
                return replace(
                    endpoint,
                    serving_credentials=access.credentials,
                    monitoring_runs=access.monitoring_runs,
                )
        if self._identity_problems.news(key, problem):
            logger.warning("%s: cannot make the serving pods' MLflow user: %s", key, problem)
            emit("Warning", SERVING_IDENTITY_FAILED, f"cannot make the serving pods' MLflow user "
                 f"(nothing new is rolled out until it exists): {problem}")  # fmt: skip
        return None

    # -- gather helpers --------------------------------------------------------------------
    async def _canary(  # noqa: PLR0917  (the inputs of one decision, all needed)
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        last: ModelDeploymentStatus,
        resolution: Resolution | None,
        registry: RegistryState,
        observed: DeploymentObservation,
        now: datetime,
    ) -> CanaryPlan | None:
        """strategy Canary's or Shadow's move: the candidate's Deployment observed, and judged
        from the pods' own /metrics when its analysis is due (core/modeldeployment/canary.py).
        None, with no reads, for a ModelDeployment that never ran either."""
        trial = trial_of(spec)
        if trial is None and last.rollout is None:
            return None
        shadow = trial is not None and trial.kind == SHADOW
        name = shadow_name(owner.name) if shadow else canary_name(owner.name)
        live = await self._read("apps/v1", "Deployment", name, owner)
        seen = observe_deployment(live, await self._pods(owner, live) if live else [])
        current = observed.version if observed.exists else None
        judgement = None
        if live is not None and trial is not None and analysis_due(spec, last.rollout, now):
            version = seen.version or ""
            if self.prometheus is not None:
                age = now - _created(live, now)
                traffic = await self._trial_traffic_from_prometheus(
                    spec, owner, version, current, window=age, shadow=shadow
                )
            else:
                traffic = await self._trial_traffic(owner, live, version, current)
            if traffic is None:
                judgement = Judgement(
                    "Waiting", f"no data in Prometheus for versions {version} and {current} yet"
                )
            elif shadow:
                judgement = judge_shadow(spec.rollout.shadow.analysis, *traffic, version)
            else:
                judgement = judge(trial.analysis, *traffic)
        target = resolution.version if isinstance(resolution, Resolved) else None
        failed = set(last.failed_versions) | set(
            observed.ledger.failed_versions if observed.exists and observed.ledger else ()
        )
        inputs = CanaryInputs(
            target=target,
            current=current,
            target_failed=target in failed,
            synced=registry.synced,
            stable_pods=spec.serving.replicas,
            stable_complete=observed.rollout_complete,
            canary=CanaryObservation(
                exists=live is not None,
                version=seen.version,
                ready=seen.ready_replicas,
                deadline_exceeded=seen.exists and seen.deadline_exceeded,
                trouble=seen.pod_troubles[0] if seen.pod_troubles else None,
            ),
            judgement=judgement,
            route_problem=self._route_problems.current(_key(owner)) if routed(spec) else None,
        )
        return plan_canary(spec, last.rollout, inputs, now)

    async def _trial_traffic(
        self, owner: Owner, trial: dict[str, Any], version: str, current: str | None
    ) -> tuple[Traffic, Traffic] | None:
        """The answers of the candidate's pods (those of the `trial` Deployment, a canary's or
        a shadow's) and the stable ones' (which also count the copies they sent a shadow)."""
        ns = owner.namespace
        selector = trial["spec"]["selector"]["matchLabels"]
        candidate = _pods_by_version(await self._serving_pods(ns, selector))
        stable = _pods_by_version(await self._serving_pods(ns, selector_labels(owner.name)))
        return (
            await self.pod_metrics.traffic(candidate.get(version, []), SERVING_PORT),
            await self.pod_metrics.traffic(stable.get(current or "", []), SERVING_PORT),
        )

    async def _trial_traffic_from_prometheus(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        version: str,
        current: str | None,
        *,
        window: timedelta,
        shadow: bool,
    ) -> tuple[Traffic, Traffic] | None:
        """The same answers from Prometheus, both versions over the candidate's life (at least
        a minute: increase() needs two scrapes); None while it has no data of either."""
        assert self.prometheus is not None  # noqa: S101  (the caller checks)
        seconds = max(PROMETHEUS_MIN_WINDOW_SECONDS, math.ceil(window.total_seconds()))
        ask = {"namespace": owner.namespace, "model_name": spec.model.name}
        candidate = await self.prometheus.traffic(**ask, version=version, window_seconds=seconds)
        stable = await self.prometheus.traffic(
            **ask, version=current or "", window_seconds=seconds,
            mirrored_to=version if shadow else None,
        )  # fmt: skip
        return None if candidate is None or stable is None else (candidate, stable)

    async def _judge_gates(
        self,
        spec: ModelDeploymentSpec,
        resolution: Resolution | None,
        registry: RegistryState,
        observed: DeploymentObservation,
        *,
        last: ModelDeploymentStatus,
        client: RegistryClient | None,
    ) -> GateVerdict | None:
        """spec.gates' verdict on the version the registry selects, if it is new here."""
        settled = settled_versions(observed, last)
        question = gate_question(spec, resolution, registry.snapshot, settled, last.serving_version)
        if question is None or spec.gates is None or client is None:
            return None
        tags = "\n".join(f"{k}={v}" for k, v in sorted(question.tags.items()))
        read: dict[str, RunMetrics] = {}
        for run_id in question.runs_to_read(spec.gates):
            key = (client.url, run_id)
            seen_with, cached = self._run_metrics.get(key, (None, None))
            # the judged version's run is read again when its tags change: a pipeline that
            # logs a metric and then tags the version is seen; the serving one's is kept
            if cached is None or (run_id == question.run_id and seen_with != tags):
                try:
                    cached = RunMetrics(run_id, await client.run_metrics(run_id))
                except RegistryError as exc:
                    cached = RunMetrics(run_id, {}, error=str(exc))  # asked again next time
                else:
                    self._run_metrics[key] = (tags, cached)
            read[run_id] = cached
        return judge_gates(
            spec.gates,
            question,
            read.get(question.run_id),
            read.get(question.serving_run_id),
        )

    async def _check_new_version(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        resolution: Resolution | None,
        registry: RegistryState,
        observed: DeploymentObservation,
        *,
        last: ModelDeploymentStatus,
        view: _RegistryView,
        now: datetime,
        emit: EventSink,
        wake: Callable[[], None],
    ) -> tuple[
        GateVerdict | None, Preflight | None, EnvironmentVerdict | None, PrefetchVerdict | None
    ]:
        """What may hold back the version the registry selects before any pod of it exists:
        spec.gates, then (if they let it through) the pre-flight check, then (if that does)
        the build of its environment (envManager uv), then its prefetch onto the nodes' model
        caches."""
        client = view.client
        gate = await self._judge_gates(
            spec, resolution, registry, observed, last=last, client=client
        )
        preflight = await self._preflight(
            spec, resolution, observed, last=last, gate=gate, client=client
        )
        version = preflight_version(resolution, observed, last)
        held = gate is not None and not gate.passed
        environment = None
        endpoint = view.endpoint
        if builds_environments(spec) and endpoint is not None and client is not None:
            wanted, needed = environment_versions(
                version, observed, last, held_before=held or spec.suspend, preflight=preflight
            )

            async def pods_endpoint(versions: list[str]) -> TrackingEndpoint | None:
                return await self._for_pods(
                    spec, owner, endpoint, client, versions=versions, emit=emit, wake=wake
                )

            environment = await self.environments.judge(
                spec, owner, wanted, needed, last=last, pods_endpoint=pods_endpoint, now=now
            )
        building = environment is not None and (environment.holds or environment.failed)
        prefetch = await self._prefetch(
            spec, owner, version, observed, last,
            held=held or building, preflight=preflight, client=client, now=now, emit=emit,
        )  # fmt: skip
        return gate, preflight, environment, prefetch

    async def _preflight(
        self,
        spec: ModelDeploymentSpec,
        resolution: Resolution | None,
        observed: DeploymentObservation,
        *,
        last: ModelDeploymentStatus,
        gate: GateVerdict | None,
        client: RegistryClient | None,
    ) -> Preflight | None:
        """The pre-flight check of the version the registry selects, if it is new here and
        no gate holds it: its MLmodel and requirements (read from MLflow once) against what
        the serving image has installed. None: nothing new to check, or MLflow unknown."""
        version = preflight_version(resolution, observed, last)
        if version is None or client is None or (gate is not None and not gate.passed):
            return None
        serving = spec.serving
        gpu = serving.gpu.count > 0
        image = serving_image(spec, self.config)
        key = (client.url, spec.model.name, version, image, gpu)
        cached = self._preflights.get(key)
        if cached is not None:
            return cached
        files = await client.model_files(spec.model.name, version)
        installs = serving.env_manager != "local" and serving.runtime == "mlflow"
        contents = None if serving.image or installs else self._default_image_contents(gpu)
        verdict = check_version(
            version, files, contents, image_name=image, gpu=gpu,
            installs_requirements=serving.env_manager if installs else None,
        )  # fmt: skip
        if not files.error or files.lasting:  # a failed read is tried at the next reconcile
            self._preflights[key] = verdict
        return verdict

    async def _prefetch(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        version: str | None,
        observed: DeploymentObservation,
        last: ModelDeploymentStatus,
        *,
        held: bool,
        preflight: Preflight | None,
        client: RegistryClient | None,
        now: datetime,
        emit: EventSink,
    ) -> PrefetchVerdict | None:
        """The prefetch of the new version onto the model caches of the nodes that serve
        (serving.cache), if one is due: the rollout waits for it (core/modeldeployment/prefetch.py).
        """
        cache = spec.serving.cache
        configured = bool(self.config.model_cache_url)
        key = _key(owner)
        missing = "" if configured or not cache.enabled else "no model cache"
        if self._told_no_cache.news(key, missing or None):
            emit("Warning", MODEL_CACHE_UNAVAILABLE, "serving.cache is enabled, but this "
                 "operator has no model cache (chart value modelCache.enabled, setting "
                 "model_cache_url): the pods download the model from MLflow")  # fmt: skip
        wanted = prefetch_version(
            version, observed, cache_enabled=cache.enabled, cache_configured=configured,
            held_before=held or spec.suspend, preflight=preflight,
        )  # fmt: skip
        if wanted is None or client is None:
            return None
        pods = await self._serving_pods(owner.namespace, selector_labels(owner.name))
        return await self.prefetches.judge(spec, wanted, pods, last=last, client=client, now=now)

    def _default_image_contents(self, gpu: bool) -> ImageContents | None:
        """What the default serving image has installed, from config.serving_image_contents
        (read once); None when the file is not set, missing or malformed (logged once)."""
        if self._image_contents is None:
            self._image_contents = read_image_contents(self.config.serving_image_contents)
        return self._image_contents.get(SERVING_IMAGE_GPU if gpu else SERVING_IMAGE_CPU)

    def _spec_generation(self, owner: Owner, deployment: dict[str, Any] | None) -> int | None:
        """The generation of the serving Deployment's last spec change, if only annotations
        (the ledger) changed since; None when unknown (then its generation counts)."""
        known = self._spec_generations.get(_key(owner))
        if deployment is None or known is None:
            return None
        meta = deployment["metadata"]
        uid, generation, spec_generation = known
        return (
            spec_generation
            if (meta.get("uid"), meta.get("generation")) == (uid, generation)
            else None
        )

    def _note_spec_generation(
        self, owner: Owner, before: dict[str, Any] | None, after: dict[str, Any]
    ) -> None:
        key = _key(owner)
        meta = after["metadata"]
        if before is None or before.get("spec") != after.get("spec"):
            self._spec_generations.pop(key, None)
            return
        base = self._spec_generation(owner, before) or int(before["metadata"]["generation"])
        self._spec_generations[key] = (meta.get("uid"), meta.get("generation"), base)

    async def _registry(
        self, spec: ModelDeploymentSpec, owner: Owner, interval: float, wake: Callable[[], None]
    ) -> _RegistryView:
        """The registry as the watcher of this object's endpoint sees it (following it).

        Without the MLflowServer the endpoint is unknown: no pod template can be built. Without
        the credentials Secret the endpoint is known (the pods name the Secret, they never
        hold its values), only the operator cannot read the registry with it.
        """
        try:
            endpoint = await self._endpoint(spec, owner)
        except EndpointProblem as problem:
            self.hub.unfollow(_key(owner))
            return _RegistryView(_unreadable(problem))
        try:
            credentials = await self._credentials(
                endpoint.credentials, owner.namespace, user=(_key(owner), interval, wake)
            )
        except EndpointProblem as problem:
            self.hub.unfollow(_key(owner))  # never keep polling with credentials now gone
            return _RegistryView(_unreadable(problem), endpoint)
        pinned = frozenset({spec.model.version} if spec.model.version else ())
        # a selector ranks every version by its tags; gates need the selected version's
        # tags at each sweep (an aliased version is otherwise read once), to see an approval
        listed = spec.model.selector is not None or spec.gates is not None
        watcher = self.hub.follow(
            _key(owner),
            endpoint.identity(owner.namespace),
            endpoint.url,
            credentials,
            Follower(
                spec.model.name,
                interval,
                pinned,
                wake,
                all_versions=listed,
                aliases=spec.model.selector is None,
            ),
        )
        await watcher.wait_for(spec.model.name, within=FIRST_SWEEP_WAIT_SECONDS)
        return _RegistryView(
            watcher.state(spec.model.name),
            endpoint,
            watcher.client,
            watcher.seconds_since_change(spec.model.name),
        )

    async def _endpoint(self, spec: ModelDeploymentSpec, owner: Owner) -> TrackingEndpoint:
        registry = spec.registry
        if registry.server_ref is not None:
            endpoint = await self._server_endpoint(registry.server_ref.name, owner)
        else:
            assert registry.tracking_uri is not None  # noqa: S101  (the API rules: one of the two)
            keys = (
                CredentialsSecret(registry.credentials_secret_ref.name)
                if registry.credentials_secret_ref
                else None
            )
            serving = (
                CredentialsSecret(registry.serving_credentials_secret_ref.name)
                if registry.serving_credentials_secret_ref
                else keys
            )
            endpoint = TrackingEndpoint(registry.tracking_uri, keys, serving_credentials=serving)
        return endpoint

    async def _server_endpoint(self, name: str, owner: Owner) -> TrackingEndpoint:
        server_body = await self._read(API, "MLflowServer", name, owner)
        if server_body is None:
            raise EndpointProblem(
                SERVER_NOT_FOUND, f"MLflowServer {name!r} not found in namespace {owner.namespace}"
            )
        return layout.tracking_endpoint(MLflowServer.model_validate(server_body))

    async def _credentials(
        self,
        keys: CredentialsSecret | None,
        namespace: str,
        *,
        user: tuple[str, float, Callable[[], None]] | None = None,
    ) -> Credentials:
        """The registry credentials in the Secret `keys` names. For a `user` (its key, poll
        interval and wake), the Secret is watched from now on (reconcilers/secret_watch.py)."""
        if keys is None:
            if user is not None:
                self.secret_watch.forget(user[0])
            return Credentials()
        data = await self._api.secret_data(keys.name, namespace)
        if user is not None:
            key, interval, wake = user
            self.secret_watch.use(
                key, (namespace, keys.name), data=data, interval=interval, wake=wake
            )
        if data is None:
            raise EndpointProblem(
                CREDENTIALS_NOT_FOUND, f"Secret {keys.name!r} not found in namespace {namespace}"
            )
        credentials = Credentials(
            username=data.get(keys.username_key or "", ""),
            password=data.get(keys.password_key or "", ""),
            token=data.get(keys.token_key or "", ""),
        )
        if not (credentials.token or credentials.username):
            wanted = [k for k in (keys.username_key, keys.token_key) if k]
            raise EndpointProblem(
                CREDENTIALS_NOT_FOUND,
                f"Secret {keys.name!r} has none of the keys {', '.join(wanted)}",
            )
        return credentials

    async def _drift(
        self, spec: ModelDeploymentSpec, owner: Owner, last: ModelDeploymentStatus
    ) -> DriftVerdict | None:
        """The serving version's drift, from its ready pods' /metrics (serving.monitoring.drift;
        core/modeldeployment/monitoring.py); None when not judged."""
        monitoring, version = spec.serving.monitoring, last.serving_version
        if not monitoring.drift_enabled or spec.serving.runtime != "batched" or version is None:
            return None
        labels = {**selector_labels(owner.name), LABEL_MODEL_VERSION: version}
        pods = await self._serving_pods(owner.namespace, labels)
        readings = await self.pod_metrics.drift(pods, SERVING_PORT)
        threshold = monitoring.thresholds.drift if monitoring.thresholds else None
        return judge_drift(version, readings, threshold, last.monitoring)

    async def _quality(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        last: ModelDeploymentStatus,
        registry: RegistryState,
        client: RegistryClient | None,
    ) -> QualityVerdict | None:
        """The serving version's live quality, from the samples and labels its pods wrote to
        MLflow (serving.monitoring.quality; core/modeldeployment/quality.py); None when not
        judged now."""
        monitoring, version = spec.serving.monitoring, last.serving_version
        settings = monitoring.quality
        if settings is None or spec.serving.runtime != "batched" or version is None:
            self.live_quality.forget(_key(owner))
            return None
        info = registry.snapshot.versions.get(version) if registry.snapshot else None
        if client is None or info is None:
            return None
        # serverRef with basic auth: the pods write to their monitoring run (serving_identity)
        monitoring_run = (
            self.identities.known_monitoring_run(owner, client.url, spec.model.name, version)
            if spec.registry.server_ref is not None
            else None
        )
        reading = await self.live_quality.read(
            _key(owner), client, writes_to=monitoring_run or info.run_id, version=version,
            version_run=info.run_id, settings=settings,
        )  # fmt: skip
        if reading is None:
            return None
        last_quality = last.monitoring.quality if last.monitoring is not None else None
        return judge_quality(
            version, settings, reading.window, training=reading.training,
            threshold=monitoring.thresholds.quality if monitoring.thresholds else None,
            last=last_quality if last.monitoring and last.monitoring.version == version else None,
        )  # fmt: skip

    async def _pods(self, owner: Owner, deployment: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The serving pods, listed only while some are unavailable (their states explain why)."""
        if deployment is None:
            return []
        status = deployment.get("status") or {}
        if status.get("unavailableReplicas", 0) == 0 and status.get("replicas", 0) <= (
            deployment.get("spec") or {}
        ).get("replicas", 1):
            return []
        selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels")
        return await self._serving_pods(owner.namespace, selector or selector_labels(owner.name))

    # -- act helpers -----------------------------------------------------------------------
    async def _write_status(
        self,
        owner: Owner,
        last: ModelDeploymentStatus,
        new: ModelDeploymentStatus,
        *,
        resource_version: str | None,
    ) -> str | None:
        """Write status if it changed, only onto the object version it was decided from.

        A concurrent change (a spec edit, another writer) makes this fail with 409 Conflict
        before anything acted on the decision; the next reconcile decides again from the new
        object. Returns the resourceVersion the object has now.
        """
        if not status_changed(last, new):
            return resource_version
        stored = await self._api.patch_status(
            API, KIND, owner.name, owner.namespace, status_patch(new),
            resource_version=resource_version,
        )  # fmt: skip
        if resource_version is not None:
            self._ahead.wrote(_key(owner), (KIND, owner.name), resource_version, stored)
        meta = stored.get("metadata") or {}
        written: str | None = meta.get("resourceVersion", resource_version)
        return written

    def _latest(self, body: Any) -> dict[str, Any]:
        """The ModelDeployment to decide from: kopf's live body, which the watch keeps current,
        unless it is still the version this operator's last status write replaced (the watch
        tells a write a moment after it returns). Decisions are written onto exactly this
        version (`_write_status`), so one taken from an older one fails with 409 and is taken
        again, never acted on."""
        seen = dict(body)
        owner = Owner.from_body(seen)
        latest = self._ahead.read(_key(owner), (KIND, owner.name), seen) or seen
        return copy.deepcopy(latest)  # the live body is replaced under a running reconcile

    async def _report_refusal(self, body: Any, refusal: ApiRefusal, emit: EventSink) -> None:
        """Ready=False naming the refusal, and one Warning Event per distinct refusal."""
        logger.warning("%s", refusal.message)
        owner = Owner.from_body(body)
        key = _key(owner)
        already = not self._refusals.news(key, refusal.message)
        try:
            fresh = await self.kube.get(API, KIND, owner.name, owner.namespace)
            if fresh is not None:
                last = ModelDeploymentStatus.of(fresh)
                ready = get_condition(last.conditions, READY)
                already = already or (
                    ready is not None
                    and (ready.reason, ready.message) == (refusal.reason, refusal.message)
                )
                status = not_ready_status(
                    last, refusal.reason, refusal.message, fresh["metadata"].get("generation"),
                    datetime.now(UTC), degraded=refusal.needs_a_person,
                )  # fmt: skip
                await self._write_status(
                    owner, last, status, resource_version=fresh["metadata"].get("resourceVersion")
                )
        except (ApiError, KubernetesRefused) as exc:  # e.g. status not writable: the Event remains
            logger.warning("could not report the refusal in status: %s", exc)
        if not already:
            emit("Warning", refusal.reason, refusal.message)

    def _write_back(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        plan: RolloutPlan,
        client: RegistryClient | None,
        now: datetime,
    ) -> None:
        """Tag model versions in MLflow so an auditor can see what served where, and when.

        Sent in the background (registry/tag_writer.py): a slow MLflow must not hold up status.
        The alias of promote.setAlias goes the same way, written-back tags or not.
        """
        if client is None:
            return
        writes: list[RegistryWrite] = []
        alias = spec.promote.set_alias if spec.promote is not None else None
        if alias is not None and plan.promoted_version is not None:
            writes.append(AliasMove(spec.model.name, alias, plan.promoted_version))
        if self.config.write_back_tags:
            key = write_back_tag(owner.namespace, owner.name)
            writes.extend(
                VersionTag(spec.model.name, version, key, value)
                for version, value in version_tag_values(plan, now)
            )
            if plan.drift_detected is not None:
                version, value = drift_tag_value(plan.drift_detected, now)
                tag = drift_tag(owner.namespace, owner.name)
                writes.append(VersionTag(spec.model.name, version, tag, value))
            if plan.quality_dropped is not None:
                version, value = quality_tag_value(plan.quality_dropped, now)
                tag = quality_tag(owner.namespace, owner.name)
                writes.append(VersionTag(spec.model.name, version, tag, value))
        self.tag_writer.submit(client, writes)

    def _count(self, owner: Owner, plan: RolloutPlan) -> None:
        metrics.RECONCILES.labels(kind=KIND, result="ok").inc()
        status = plan.status
        metrics.record_model_deployment(
            owner.namespace,
            owner.name,
            target=status.target_version,
            serving=status.serving_version,
            # as status says it (Progressing reason Suspended), so the alert agrees with kubectl
            suspended=any(c.reason == SUSPENDED for c in status.conditions),
            succeeded=bool(plan.succeeded_version),
            failed=bool(plan.failed_version),
            rolled_back=any(e.reason == ROLLING_BACK for e in plan.events),
            drifting=drifting_count(status),
            quality_degraded=quality_degraded(status),
            live_quality=(
                status.monitoring.quality.value
                if status.monitoring is not None and status.monitoring.quality is not None
                else None
            ),
        )


def _created(obj: dict[str, Any], now: datetime) -> datetime:
    """When the API server created `obj` (now, if it does not say)."""
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    return datetime.fromisoformat(str(stamp)) if stamp else now


def _pods_by_version(pods: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        found.setdefault(str(labels.get(LABEL_MODEL_VERSION, "")), []).append(pod)
    return found


def _unreadable(problem: EndpointProblem) -> RegistryState:
    return RegistryState(
        snapshot=None, synced=False, last_sync=None, error=problem.message, reason=problem.reason
    )


def _key(owner: Owner) -> str:
    return f"{owner.namespace}/{owner.name}"
