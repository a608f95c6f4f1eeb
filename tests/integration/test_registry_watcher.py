"""The registry watcher against a real MLflow server (PostgreSQL + MinIO behind it)."""

from __future__ import annotations

import asyncio

import pytest

from mlflow_operator.api.modeldeployment import ModelSelector, VersionSelector
from mlflow_operator.core.modeldeployment.resolution import Resolved, Unresolved, resolve_target
from mlflow_operator.registry.client import Credentials, RegistryClient
from mlflow_operator.registry.watcher import Follower, RegistryWatcher
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.counting_proxy import CountingProxy

pytestmark = pytest.mark.integration
SEARCH = "GET /api/2.0/mlflow/registered-models/search"
VERSIONS = "GET /api/2.0/mlflow/model-versions/search"


async def test_sweep_resolves_alias_stage_and_pinned_versions(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    v1 = mlflow_registry.log_version(model_name)
    v2 = mlflow_registry.log_version(model_name)
    v3 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    mlflow_registry.transition_stage(model_name, v2.version, "Production")
    watcher = RegistryWatcher(RegistryClient(mlflow_stack.tracking_uri))
    watcher._followers["a"] = Follower(model_name, 30.0, frozenset({v3.version}))
    await watcher.sweep()
    state = watcher.state(model_name)
    assert state.synced
    snapshot = state.snapshot
    assert resolve_target(ModelSelector(name=model_name, alias="champion"), snapshot) == Resolved(
        "1", v1.run_id
    )
    assert resolve_target(ModelSelector(name=model_name, stage="Production"), snapshot) == Resolved(
        "2", v2.run_id
    )
    assert resolve_target(ModelSelector(name=model_name, version="3"), snapshot) == Resolved(
        "3", v3.run_id
    )
    missing = resolve_target(ModelSelector(name=model_name, alias="nope"), snapshot)
    assert isinstance(missing, Unresolved)
    assert missing.reason == "AliasNotFound"
    await watcher.client.close()


async def test_requests_per_sweep_do_not_grow_with_followers(
    counting_proxy: CountingProxy, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    models = [f"{model_name}-{i}" for i in range(5)]
    for name in models:
        version = mlflow_registry.log_version(name)
        mlflow_registry.set_alias(name, "champion", version.version)

    async def requests_per_sweep(followers: int) -> int:
        watcher = RegistryWatcher(RegistryClient(counting_proxy.url))
        for i in range(followers):
            watcher._followers[f"md-{i}"] = Follower(models[i % len(models)], 30.0)
        await watcher.sweep()  # the first sweep also fetches the aliased versions once
        before = counting_proxy.total()
        for _ in range(3):
            await watcher.sweep()
        await watcher.client.close()
        return (counting_proxy.total() - before) // 3

    five = await requests_per_sweep(5)
    fifty = await requests_per_sweep(50)
    print(f"MLflow requests per sweep: 5 followers {five}, 50 followers {fifty}")
    assert five == fifty == 1
    assert counting_proxy.counts[SEARCH] >= 8


async def test_selectors_read_version_tags_at_the_cost_of_aliases(
    counting_proxy: CountingProxy, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    """Tag and semver selection against MLflow's own model-versions/search: one request per
    sweep for every selector follower of every model, like aliases; a tag moved in MLflow
    moves the choice at the next sweep."""
    models = [f"{model_name}-{i}" for i in range(5)]
    for name in models:
        for semver in ("2.0.0", "2.3.1", "3.0.0"):
            version = mlflow_registry.log_version(name)
            mlflow_registry.tag_version(name, version.version, "stage", "prod")
            mlflow_registry.tag_version(name, version.version, "semver", semver)
    selector = VersionSelector(tags={"stage": "prod"}, semver="^2.1")

    watcher = RegistryWatcher(RegistryClient(counting_proxy.url))
    woken: list[int] = []
    for i in range(50):
        watcher._followers[f"md-{i}"] = Follower(
            models[i % 5],
            30.0,
            wake=lambda i=i: woken.append(i),
            all_versions=True,
            aliases=False,
        )
    await watcher.sweep()
    chosen = resolve_target(
        ModelSelector(name=models[0], selector=selector), watcher.state(models[0]).snapshot
    )
    assert isinstance(chosen, Resolved)
    assert chosen.version == "2"  # 3 is 3.0.0: outside ^2.1
    before = counting_proxy.total()
    for _ in range(3):
        await watcher.sweep()
    per_sweep = (counting_proxy.total() - before) // 3
    print(f"MLflow requests per sweep, 50 selector followers of 5 models: {per_sweep}")
    assert per_sweep == 1
    assert counting_proxy.counts[VERSIONS] >= 4
    assert counting_proxy.counts.get(SEARCH, 0) == 0  # selector-only models need no model search

    # the operator's own write-back tag (set at every rollout) wakes nobody
    woken.clear()
    mlflow_registry.tag_version(models[0], "2", "mlflow-operator.ns.md-0", "serving since now")
    await watcher.sweep()
    assert woken == []

    mlflow_registry.delete_version_tag(models[0], "2", "stage")
    await watcher.sweep()
    moved = resolve_target(
        ModelSelector(name=models[0], selector=selector), watcher.state(models[0]).snapshot
    )
    assert isinstance(moved, Unresolved)  # 1 is 2.0.0, outside ^2.1; 2 lost its tag
    assert moved.reason == "NoMatchingVersion"
    await watcher.client.close()


async def test_a_gated_alias_follower_sees_the_alias_and_an_approval_tag_at_the_next_sweep(
    counting_proxy: CountingProxy, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    """spec.gates on an alias: the sweep reads the aliases and every version's tags (two
    requests, whatever the number of followers), so an approval tag set in MLflow wakes the
    follower; an aliased version is otherwise read once and cached."""
    v1 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    watcher = RegistryWatcher(RegistryClient(counting_proxy.url))
    woken: list[str] = []
    watcher._followers["md"] = Follower(
        model_name, 30.0, wake=lambda: woken.append("md"), all_versions=True
    )
    await watcher.sweep()
    snapshot = watcher.state(model_name).snapshot
    assert snapshot is not None
    assert snapshot.aliases == {"champion": v1.version}
    assert snapshot.versions[v1.version].tags == {}
    before = counting_proxy.total()
    woken.clear()
    mlflow_registry.tag_version(model_name, v1.version, "validation_status", "approved")
    await watcher.sweep()
    assert counting_proxy.total() - before == 2  # registered-models/search + versions/search
    assert woken == ["md"]
    snapshot = watcher.state(model_name).snapshot
    assert snapshot is not None
    assert snapshot.versions[v1.version].tags == {"validation_status": "approved"}
    await watcher.client.close()


async def test_a_selector_on_a_model_without_versions_or_that_does_not_exist(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    mlflow_registry.client.create_registered_model(model_name)  # no version yet
    watcher = RegistryWatcher(RegistryClient(mlflow_stack.tracking_uri))
    watcher._followers["a"] = Follower(model_name, 30.0, all_versions=True, aliases=False)
    watcher._followers["b"] = Follower(
        f"{model_name}-missing", 30.0, all_versions=True, aliases=False
    )
    await watcher.sweep()
    selector = VersionSelector(tags={"stage": "prod"})
    empty = resolve_target(
        ModelSelector(name=model_name, selector=selector), watcher.state(model_name).snapshot
    )
    assert isinstance(empty, Unresolved)
    assert (empty.reason, empty.message) == (
        "NoMatchingVersion",
        f"no READY version of {model_name!r} matches tags:stage=prod "
        "(none of its 0 version(s) has these tags)",
    )
    missing = resolve_target(
        ModelSelector(name=f"{model_name}-missing", selector=selector),
        watcher.state(f"{model_name}-missing").snapshot,
    )
    assert isinstance(missing, Unresolved)
    assert missing.reason == "ModelNotFound"
    await watcher.client.close()


async def test_unreachable_registry_is_reported_without_credentials(
    mlflow_stack: MlflowStack,
) -> None:
    secret = "never-show-this-password"
    client = RegistryClient("http://127.0.0.1:9", Credentials("admin", secret), timeout_seconds=2)
    woken: list[str] = []
    watcher = RegistryWatcher(client)
    watcher._followers["a"] = Follower("m", 5.0, wake=lambda: woken.append("a"))
    await watcher.sweep()
    state = watcher.state("m")
    assert not state.synced
    assert "cannot reach MLflow" in state.error
    assert secret not in state.error
    assert woken == ["a"]
    assert watcher._next_delay() == 5.0
    await watcher.sweep()
    assert watcher._next_delay() == 10.0  # backs off
    await client.close()


async def test_wrong_credentials_are_a_clear_error(mlflow_stack: MlflowStack) -> None:
    server = mlflow_stack.start_basic_auth_server() if not mlflow_stack.extra_servers else None
    auth = server or mlflow_stack.extra_servers[0]
    client = RegistryClient(auth.tracking_uri, Credentials("admin", "wrong-password-123"))
    watcher = RegistryWatcher(client)
    watcher._followers["a"] = Follower("m", 5.0)
    await watcher.sweep()
    assert "refused the credentials (HTTP 401)" in watcher.state("m").error
    assert auth.auth is not None
    client.credentials = Credentials(auth.auth.username, auth.auth.password)
    await watcher.sweep()
    assert watcher.state("m").synced
    await client.close()
    await asyncio.sleep(0)
