"""Fakes for reconciler tests: an API server store and a registry, both in memory.

The store keeps what the reconciler relies on from a real API server: resourceVersion
preconditions on status writes (409 Conflict), generation bumps when a spec changes, merge
patch semantics of status, and errors injected per operation. The Deployment controller is
`settle()`: the test says how the rollout of the current template went.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from mlflow_operator.core.modeldeployment.preflight import ModelFiles
from mlflow_operator.core.modeldeployment.serving_identity import Grant
from mlflow_operator.core.registry_view import ModelSnapshot, RegistryState, VersionInfo
from mlflow_operator.registry.client import (
    Credentials,
    RegistryAlreadyExists,
    RegistryError,
    RegistryNotFound,
)
from mlflow_operator.registry.watcher import Follower

NAMESPACE = "ml"


def api_error(code: int, reason: str, message: str) -> ApiError:
    return ApiError(status=Status(code=code, reason=reason, message=message, status="Failure"))


Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class FakeKube:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    pods: list[dict[str, Any]] = field(default_factory=list)
    # "apply:Deployment", "apply:Service", "status", "get:Deployment": raised on the next call
    fail: dict[str, ApiError] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)  # "status", "apply:Deployment", ... in order
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _uids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def _bump(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))

    def _raise(self, op: str) -> None:
        error = self.fail.pop(op, None)
        if error is not None:
            raise error

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        if obj["kind"] == "Secret" and "stringData" in obj:  # as the API server stores it
            text = obj.pop("stringData")
            obj.setdefault("data", {}).update(
                {k: base64.b64encode(v.encode()).decode() for k, v in text.items()}
            )
        obj["metadata"].setdefault("generation", 1)
        obj["metadata"].setdefault("uid", f"uid-{next(self._uids)}")
        self._bump(obj)
        self.objects[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return obj

    def stored(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, NAMESPACE, name))

    def drop(self, kind: str, name: str) -> None:
        """Remove an object behind the operator's back (a person's kubectl delete)."""
        self.objects.pop((kind, NAMESPACE, name), None)

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        *,
        background: bool = False,
        orphan: bool = False,
    ) -> None:
        self._raise(f"delete:{kind}")
        self.writes.append(f"delete:{kind}" + (" orphan" if orphan else ""))
        self.objects.pop((kind, namespace, name), None)

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str
    ) -> dict[str, Any] | None:
        self._raise(f"get:{kind}")
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        kind, meta = manifest["kind"], manifest["metadata"]
        self._raise(f"apply:{kind}")
        self.writes.append(f"apply:{kind}")
        key = (kind, meta["namespace"], meta["name"])
        existing = self.objects.get(key)
        if existing is None:
            return copy.deepcopy(self.put(manifest))
        before = copy.deepcopy(existing)
        annotations = dict(meta.get("annotations") or {})
        if manifest.get("spec") != existing.get("spec") or (
            # as the API server does for Deployments: their annotations go to ReplicaSets
            kind == "Deployment" and annotations != existing["metadata"].get("annotations", {})
        ):
            existing["metadata"]["generation"] += 1
        existing["spec"] = copy.deepcopy(manifest.get("spec"))
        for part in ("labels", "annotations"):
            existing["metadata"][part] = dict(meta.get(part) or {})
        if existing != before:  # an apply that changes nothing writes nothing, as in the API
            self._bump(existing)
        return copy.deepcopy(existing)

    async def annotate(
        self, api_version: str, kind: str, name: str, namespace: str, annotations: dict[str, str]
    ) -> None:
        self._raise(f"annotate:{kind}")
        self.writes.append(f"annotate:{kind}")
        found = [p for p in self.pods if p["metadata"]["name"] == name] if kind == "Pod" else []
        for obj in found or [self.objects.get((kind, namespace, name))]:
            if obj is not None:
                obj["metadata"].setdefault("annotations", {}).update(annotations)

    async def create_if_absent(self, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        meta = manifest["metadata"]
        existing = self.objects.get((manifest["kind"], meta["namespace"], meta["name"]))
        if existing is not None:
            return copy.deepcopy(existing), False
        self.writes.append(f"create:{manifest['kind']}")
        return copy.deepcopy(self.put(manifest)), True

    async def list(
        self, api_version: str, kind: str, namespace: str, labels: dict[str, str]
    ) -> list[dict[str, Any]]:
        if kind == "Pod":  # pods are not objects here: the fake's controllers make none
            return [
                copy.deepcopy(pod)
                for pod in self.pods
                if all((pod["metadata"].get("labels") or {}).get(a) == b for a, b in labels.items())
            ]
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in self.objects.items()
            if (k, ns) == (kind, namespace)
            and all((obj["metadata"].get("labels") or {}).get(a) == b for a, b in labels.items())
        ]

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        self._raise("status")
        obj = self.objects[(kind, namespace, name)]
        if resource_version is not None and resource_version != obj["metadata"]["resourceVersion"]:
            raise api_error(409, "Conflict", "the object has been modified")
        self.writes.append("status")
        current = obj.setdefault("status", {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = copy.deepcopy(value)
        self._bump(obj)
        return copy.deepcopy(obj)

    async def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        secret = self.objects.get(("Secret", namespace, name))
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def settle(kube: FakeKube, name: str, *, available: bool = True, exceeded: bool = False) -> None:
    """The Deployment controller has observed the template: complete, or stuck (past deadline)."""
    dep = kube.objects[("Deployment", NAMESPACE, name)]
    replicas = int(dep["spec"]["replicas"])
    conditions = []
    if exceeded:
        conditions.append(
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        )
    dep["status"] = {
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas if available else 0,
        "availableReplicas": replicas if available else 0,
        "unavailableReplicas": 0 if available else replicas,
        "conditions": conditions,
    }
    kube._bump(dep)


def template_version(kube: FakeKube, name: str) -> str | None:
    dep = kube.stored("Deployment", name)
    if dep is None:
        return None
    labels: dict[str, str] = dep["spec"]["template"]["metadata"]["labels"]
    return labels.get("mlflowops.dev/model-version")


class FakeRegistryClient:
    """The admin's client: version tags, and the users of MLflow's auth app (in memory; the
    real calls are proven against MLflow in tests/integration/test_registry_accounts.py).
    Every version was logged in experiment `7`."""

    url = "http://mlflow.ml.svc:5000"

    def __init__(self) -> None:
        self.tags: list[tuple[str, str, str]] = []
        self.answering = asyncio.Event()  # clear it: MLflow takes its time to answer
        self.answering.set()
        self.users: dict[str, str] = {}  # username -> password
        self.grants: dict[str, set[Grant]] = {}
        self.calls: list[str] = []  # "POST users/create", ... in order
        self.refusing: RegistryError | None = None  # raised by every call
        self.run_values: dict[str, dict[str, float]] = {}  # run id -> its metrics
        self.aliases: list[tuple[str, str]] = []  # (alias, version) moved, in order
        self.files: dict[str, ModelFiles] = {}  # version -> its MLmodel and requirements
        self.files_read: list[str] = []  # versions whose files were read, in order
        self.experiments: dict[str, str] = {}  # name -> id, made by experiments/create
        self.runs: dict[str, tuple[str, dict[str, str]]] = {}  # run id -> (experiment, tags)

    async def run_metrics(self, run_id: str) -> dict[str, float]:
        self.calls.append(f"GET runs/get {run_id}")
        if self.refusing is not None:
            raise self.refusing
        return dict(self.run_values.get(run_id, {}))

    async def model_files(self, name: str, version: str) -> ModelFiles:
        """What pre-flight reads of a version: `files[version]`, else a read error (Unknown,
        rolled out as before pre-flight existed)."""
        self.files_read.append(version)
        location = f"mlflow-artifacts:/7/models/m-{version}/artifacts"
        return self.files.get(version, ModelFiles(location, error="no files in this fake"))

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        await self.answering.wait()
        self.tags.append((version, key, value))

    async def set_model_alias(self, name: str, alias: str, version: str) -> None:
        await self.answering.wait()
        self.aliases.append((alias, version))

    async def close(self) -> None:
        pass

    def _experiments_and_runs(self, path: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """The monitoring experiment and runs (reconcilers/serving_identity.py)."""
        if path == "experiments/get-by-name":
            if args["experiment_name"] not in self.experiments:
                raise RegistryNotFound("experiments/get-by-name: not found")
            return {"experiment": {"experiment_id": self.experiments[args["experiment_name"]]}}
        if path == "experiments/create":
            self.experiments[args["name"]] = str(100 + len(self.experiments))
            return {"experiment_id": self.experiments[args["name"]]}
        if path == "runs/search":
            return {"runs": [
                {"info": {"run_id": run},
                 "data": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
                for run, (experiment, tags) in self.runs.items()
                if experiment in args["experiment_ids"]
            ]}  # fmt: skip
        if path == "runs/create":
            run = f"run-{len(self.runs)}"
            tags = {t["key"]: t["value"] for t in args["tags"]}
            self.runs[run] = (args["experiment_id"], tags)
            return {"run": {"info": {"run_id": run}}}
        return None

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        *,
        api: str = "",
    ) -> dict[str, Any]:
        self.calls.append(f"{method} {path}")
        if self.refusing is not None:
            raise self.refusing
        args = {**(params or {}), **(body or {})}
        if path == "model-versions/get":
            return {"model_version": {"source": f"models:/m-{args['version']}", "run_id": ""}}
        if path.startswith("logged-models/"):
            return {"model": {"info": {"experiment_id": "7"}}}
        tracking = self._experiments_and_runs(path, args)
        if tracking is not None:
            return tracking
        user = args.get("username", "")
        if path == "users/create":
            if user in self.users:
                raise RegistryAlreadyExists("users/create: already exists")
            self.users[user] = args["password"]
        elif path == "users/update-password":
            self.users[user] = args["password"]
        elif path == "users/delete":
            if self.users.pop(user, None) is None:
                raise RegistryNotFound("users/delete: not found")
            self.grants.pop(user, None)
        elif path == "users/permissions/list":
            return {"permissions": [
                {"resource_type": g.resource_type, "resource_pattern": g.resource_id,
                 "permission": g.permission, "role_name": "__user_2__"}
                for g in self.grants.get(user, set())
            ]}  # fmt: skip
        elif path == "users/permissions/grant":
            grant = Grant(args["resource_type"], args["resource_id"], args["permission"])
            self.grants.setdefault(user, set()).add(grant)
        elif path == "users/permissions/revoke":
            self.grants[user] = {
                g for g in self.grants.get(user, set())
                if (g.resource_type, g.resource_id) != (args["resource_type"], args["resource_id"])
            }  # fmt: skip
        return {}


@dataclass
class FakeRegistry:
    """One registered model whose alias `champion` (or version tags) the test moves."""

    model: str = "fraud"
    champion: str | None = "1"
    synced: bool = True
    tags: dict[str, dict[str, str]] | None = None  # version -> its tags: every version listed

    def state(self) -> RegistryState:
        aliases = {"champion": self.champion} if self.champion else {}
        versions = {v: VersionInfo(v) for v in aliases.values()}
        for version, tags in (self.tags or {}).items():
            versions[version] = VersionInfo(version, run_id=f"run-{version}", tags=tags)
        snapshot = ModelSnapshot(
            self.model, aliases=aliases, versions=versions, all_versions=self.tags is not None
        )
        return RegistryState(snapshot, synced=self.synced, last_sync=datetime.now(UTC))


class FakeWatcher:
    def __init__(self, registry: FakeRegistry, client: FakeRegistryClient) -> None:
        self.registry = registry
        self.client = client

    def follow(self, key: str, follower: Follower) -> None:
        pass

    async def wait_for(self, model: str, within: float) -> None:
        pass

    def state(self, model: str) -> RegistryState:
        return self.registry.state()

    def seconds_since_change(self, model: str) -> float | None:
        return None


@dataclass
class FakeHub:
    registry: FakeRegistry = field(default_factory=FakeRegistry)
    following: dict[str, str] = field(default_factory=dict)  # key -> endpoint identity
    client: FakeRegistryClient = field(default_factory=FakeRegistryClient)

    def follow(
        self, key: str, identity: str, url: str, credentials: Credentials, follower: Follower
    ) -> FakeWatcher:
        self.following[key] = identity
        return FakeWatcher(self.registry, self.client)

    def unfollow(self, key: str) -> None:
        self.following.pop(key, None)

    def new_client(self, url: str, credentials: Credentials) -> FakeRegistryClient:
        return self.client


def model_deployment(name: str = "fraud", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "mlflowops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": "uid-1"},
        "spec": {
            "model": {"name": "fraud", "alias": "champion"},
            "registry": {
                "trackingUri": "http://mlflow.ml.svc:5000",
                "credentialsSecretRef": {"name": "mlflow-creds"},
            },
            **spec,
        },
    }
    return body


def credentials_secret(name: str = "mlflow-creds") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "stringData": {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"},
    }


def put_mlflow_server(kube: FakeKube) -> None:
    """An MLflowServer `mlflow` with basic auth and its admin Secret, for serverRef."""
    kube.put(
        {
            "apiVersion": "mlflowops.dev/v1alpha1",
            "kind": "MLflowServer",
            "metadata": {"name": "mlflow", "namespace": NAMESPACE},
            "spec": {
                "backendStore": {"postgres": {"managed": {}}},
                "artifactStore": {"s3": {"managed": {}}},
            },
        }
    )
    kube.put(credentials_secret("mlflow-admin") | {
        "stringData": {"username": "admin", "password": "p" * 12}
    })  # fmt: skip
