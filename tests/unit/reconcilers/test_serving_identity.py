"""The serving pods' own MLflow user, as the ModelDeployment reconcile makes and keeps it.

MLflow's auth API is the in-memory one of fakes.py here; the same calls against a real MLflow
are in tests/integration/test_registry_accounts.py, and a serving pod's view of its user on the
real node in tests/e2e/test_in_cluster_loop.py.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from cachetools import LRUCache

from mlflow_operator.builders.meta import Owner
from mlflow_operator.core.modeldeployment.serving_identity import Grant
from mlflow_operator.registry.client import RegistryError
from tests.unit.reconcilers.fakes import api_error, credentials_secret, put_mlflow_server, settle
from tests.unit.reconcilers.test_modeldeployment import World

USER = "modeldeployment/ml/fraud"
READER = "fraud-mlflow-reader"
EXPECTED = {Grant("registered_model", "fraud"), Grant("experiment", "7")}


def server_ref_world(**spec: Any) -> World:
    world = World(registry={"serverRef": {"name": "mlflow"}}, **spec)
    put_mlflow_server(world.kube)
    return world


def pod_secrets(world: World) -> set[str]:
    env = world.deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}


def reader_password(world: World) -> str:
    data = world.kube.objects[("Secret", "ml", READER)]["data"]
    return base64.b64decode(data["MLFLOW_TRACKING_PASSWORD"]).decode()


async def test_serving_pods_get_a_read_only_user_of_their_own_never_the_admin() -> None:
    world = server_ref_world()
    await world.reconcile()
    assert pod_secrets(world) == {READER}
    secret = world.kube.objects[("Secret", "ml", READER)]
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    client = world.hub.client
    assert client.users == {USER: reader_password(world)}
    assert len(reader_password(world)) >= 24
    assert client.grants[USER] == EXPECTED
    assert world.events == [e for e in world.events if e[1] != "ServingIdentityFailed"]


async def test_at_rest_mlflow_is_not_asked_again() -> None:
    world = server_ref_world()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    world.hub.client.calls.clear()
    await world.reconcile()
    assert world.hub.client.calls == []


async def test_deleting_the_secret_rotates_the_password() -> None:
    world = server_ref_world()
    await world.reconcile()
    first = reader_password(world)
    world.kube.drop("Secret", READER)
    await world.reconcile()
    second = reader_password(world)
    assert second != first
    assert world.hub.client.users[USER] == second
    assert pod_secrets(world) == {READER}


async def test_a_renamed_model_takes_the_old_models_permission_away() -> None:
    world = server_ref_world()
    await world.reconcile()
    body = world.body
    body["spec"]["model"]["name"] = "fraud-v2"
    world.kube.put(body)
    world.hub.registry.model = "fraud-v2"
    await world.reconcile()
    assert world.hub.client.grants[USER] == {
        Grant("registered_model", "fraud-v2"),
        Grant("experiment", "7"),
    }


async def test_a_permission_someone_raised_is_put_back_to_read() -> None:
    world = server_ref_world()
    await world.reconcile()
    client = world.hub.client
    client.grants[USER] = {Grant("registered_model", "fraud", "MANAGE"), Grant("experiment", "7")}
    world.reconciler.identities.forget(Owner.from_body(world.body))  # as after a restart
    await world.reconcile()
    assert client.grants[USER] == EXPECTED


async def test_without_the_user_nothing_is_applied_and_one_warning_tells_why() -> None:
    world = server_ref_world()
    world.hub.client.refusing = RegistryError("MLflow at http://mlflow answered HTTP 500")
    for _ in range(3):
        await world.reconcile()
    assert world.kube.stored("Deployment", "fraud") is None
    warnings = [e for e in world.events if e[1] == "ServingIdentityFailed"]
    assert len(warnings) == 1
    assert "HTTP 500" in warnings[0][2]
    world.hub.client.refusing = None
    await world.reconcile()
    assert pod_secrets(world) == {READER}


async def test_while_mlflow_refuses_the_serving_version_keeps_serving() -> None:
    world = server_ref_world()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    world.hub.client.refusing = RegistryError("cannot reach MLflow")
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert (
        world.deployment()["spec"]["template"]["metadata"]["labels"]["mlflowops.dev/model-version"]
        == "1"
    )


async def test_deleting_the_model_deployment_deletes_the_user() -> None:
    world = server_ref_world()
    await world.reconcile()
    assert await world.reconciler.remove_serving_identity(world.body) is None
    assert world.hub.client.users == {}
    again = await world.reconciler.remove_serving_identity(world.body)
    assert again is None  # already gone: nothing to say


async def test_a_user_that_cannot_be_deleted_is_reported_not_waited_for() -> None:
    world = server_ref_world()
    await world.reconcile()
    world.hub.client.refusing = RegistryError("cannot reach MLflow at http://mlflow")
    problem = await world.reconciler.remove_serving_identity(world.body)
    assert problem is not None
    assert "cannot reach MLflow" in problem


async def test_tracking_uri_pods_get_the_serving_credentials_when_given() -> None:
    world = World(
        registry={
            "trackingUri": "http://mlflow.ml.svc:5000",
            "credentialsSecretRef": {"name": "mlflow-creds"},
            "servingCredentialsSecretRef": {"name": "pod-creds"},
        }
    )
    await world.reconcile()
    assert pod_secrets(world) == {"pod-creds"}
    assert world.hub.client.users == {}  # no user is made for a server the operator does not run


async def test_a_secret_edited_into_something_unusable_is_reported_not_overwritten() -> None:
    """The operator may create Secrets, never change them (least privilege)."""
    world = server_ref_world()
    world.kube.put(credentials_secret(READER) | {"stringData": {"MLFLOW_TRACKING_USERNAME": "x"}})
    await world.reconcile()
    assert world.kube.stored("Deployment", "fraud") is None
    (warning,) = [e for e in world.events if e[1] == "ServingIdentityFailed"]
    assert "delete it" in warning[2]
    world.kube.drop("Secret", READER)
    await world.reconcile()
    assert pod_secrets(world) == {READER}


def put_second_server(world: World, name: str = "mlflow-b", *, auth: bool = True) -> None:
    """Another MLflowServer (or `mlflow` again, with `auth` as given) and its admin Secret."""
    server = copy.deepcopy(world.kube.stored("MLflowServer", "mlflow"))
    assert server is not None
    server["metadata"] = {"name": name, "namespace": "ml"}
    server["spec"]["auth"] = {"enabled": auth}
    world.kube.put(server)
    admin = {"username": "admin", "password": "p" * 12}
    world.kube.put(credentials_secret(f"{name}-admin") | {"stringData": admin})


def clients_made(world: World) -> list[str]:
    """The URLs the operator made an admin client for (deleting a user goes through one)."""
    urls: list[str] = []
    made = world.hub.new_client

    def new_client(url: str, credentials: Any) -> Any:
        urls.append(url)
        return made(url, credentials)

    world.hub.new_client = new_client  # type: ignore[method-assign]
    return urls


def move_registry(world: World, registry: dict[str, Any]) -> None:
    body = world.body
    body["spec"]["registry"] = registry
    world.kube.put(body)


def recorded(world: World) -> str | None:
    secret = world.kube.stored("Secret", READER)
    assert secret is not None
    return secret["metadata"]["annotations"].get("mlflowops.dev/mlflow-server")


async def test_the_secret_records_the_server_its_user_lives_on() -> None:
    world = server_ref_world()
    await world.reconcile()
    assert recorded(world) == "mlflow"


async def test_moving_to_a_tracking_uri_deletes_the_user_and_its_secret() -> None:
    world = server_ref_world()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    urls = clients_made(world)
    move_registry(
        world,
        {"trackingUri": "http://other.example", "credentialsSecretRef": {"name": "mlflow-creds"}},
    )
    await world.reconcile()
    assert world.hub.client.users == {}
    assert urls == ["http://mlflow.ml.svc:5000"]  # deleted where it lived
    assert world.kube.stored("Secret", READER) is None
    assert pod_secrets(world) == {"mlflow-creds"}
    assert not [e for e in world.events if e[1] == "ServingIdentityFailed"]
    world.hub.client.calls.clear()
    await world.reconcile()
    assert world.hub.client.calls == []  # done once


async def test_moving_to_another_server_makes_a_new_secret_for_it() -> None:
    world = server_ref_world()
    await world.reconcile()
    first = reader_password(world)
    put_second_server(world)
    urls = clients_made(world)
    world.hub.client.calls.clear()
    move_registry(world, {"serverRef": {"name": "mlflow-b"}})
    await world.reconcile()
    assert urls == ["http://mlflow.ml.svc:5000"]
    assert world.hub.client.calls[:1] == ["DELETE users/delete"]  # on the old server, first
    assert recorded(world) == "mlflow-b"
    assert reader_password(world) != first
    assert world.hub.client.users == {USER: reader_password(world)}  # made on the new one
    assert pod_secrets(world) == {READER}


async def test_turning_basic_auth_off_drops_the_secret() -> None:
    world = server_ref_world()
    await world.reconcile()
    put_second_server(world, "mlflow", auth=False)
    await world.reconcile()
    assert world.kube.stored("Secret", READER) is None
    assert pod_secrets(world) == set()  # no auth: no credentials


async def test_a_secret_of_the_release_before_churns_nothing() -> None:
    """It records no server: it counts as made for the one the spec names."""
    world = server_ref_world()
    await world.reconcile()
    secret = world.kube.objects[("Secret", "ml", READER)]
    del secret["metadata"]["annotations"]
    password = reader_password(world)
    world.reconciler.identities.forget(Owner.from_body(world.body))  # as after an upgrade
    await world.reconcile()
    assert reader_password(world) == password
    assert world.hub.client.users == {USER: password}
    assert "delete:Secret" not in world.kube.writes


async def test_a_user_that_cannot_be_deleted_on_the_old_server_is_told_once() -> None:
    world = server_ref_world()
    await world.reconcile()
    world.kube.drop("Secret", "mlflow-admin")  # the operator cannot log in there now
    move_registry(
        world,
        {"trackingUri": "http://other.example", "credentialsSecretRef": {"name": "mlflow-creds"}},
    )
    for _ in range(3):
        await world.reconcile()
    (warning,) = [e for e in world.events if e[1] == "ServingIdentityFailed"]
    assert "MLflowServer 'mlflow'" in warning[2]
    assert "not deleted" in warning[2]
    assert world.kube.stored("Secret", READER) is None  # a new server gets a new one
    assert pod_secrets(world) == {"mlflow-creds"}  # the rollout went on


async def test_a_secret_the_operator_may_not_delete_holds_nothing_up() -> None:
    """An older chart's role has no `delete` on Secrets."""
    world = server_ref_world()
    await world.reconcile()
    world.kube.fail["delete:Secret"] = api_error(403, "Forbidden", "secrets is forbidden")
    move_registry(
        world,
        {"trackingUri": "http://other.example", "credentialsSecretRef": {"name": "mlflow-creds"}},
    )
    await world.reconcile()
    assert world.hub.client.users == {}
    (warning,) = [e for e in world.events if e[1] == "ServingIdentityFailed"]
    assert "Forbidden" in warning[2] or "forbidden" in warning[2]
    assert pod_secrets(world) == {"mlflow-creds"}


async def test_deleting_the_model_deployment_deletes_the_user_where_the_secret_says() -> None:
    world = server_ref_world()
    await world.reconcile()
    put_second_server(world)
    move_registry(world, {"serverRef": {"name": "mlflow-b"}})  # deleted before a reconcile
    urls = clients_made(world)
    assert await world.reconciler.remove_serving_identity(world.body) is None
    assert urls == ["http://mlflow.ml.svc:5000"]
    assert world.hub.client.users == {}


async def test_the_experiments_remembered_stay_bounded_and_still_answer() -> None:
    world = server_ref_world()
    identities = world.reconciler.identities
    identities._experiments = LRUCache(3)
    owner = Owner.from_body(world.body)
    for version in range(10):
        await identities.ensure(owner, "mlflow", "fraud", [str(version)], world.hub.client)
    assert len(identities._experiments) == 3
    assert list(identities._experiments) == [
        (world.hub.client.url, "fraud", v) for v in ("7", "8", "9")
    ]
    world.hub.client.calls.clear()
    await identities.ensure(owner, "mlflow", "fraud", ["0"], world.hub.client)
    assert "GET model-versions/get" in world.hub.client.calls  # asked again: dropped
    assert len(identities._experiments) == 3


def pod_command(world: World) -> list[str]:
    command: list[str] = world.deployment()["spec"]["template"]["spec"]["containers"][0]["command"]
    return command


async def test_monitoring_pods_write_to_their_own_experiment_and_only_there() -> None:
    monitoring = {"sampleRate": 0.1, "drift": {}}
    world = server_ref_world(serving={"runtime": "batched", "monitoring": monitoring})
    await world.reconcile()
    client = world.hub.client
    experiment = client.experiments["mlflow-operator/ml/fraud"]
    # read the model and its versions' experiment, write to the monitoring experiment alone
    assert client.grants[USER] == {*EXPECTED, Grant("experiment", experiment, "EDIT")}
    ((run, (where, tags)),) = client.runs.items()
    assert (where, tags) == (experiment, {"mlflowops.dev/model": "fraud",
                                          "mlflowops.dev/version": "1"})  # fmt: skip
    command = pod_command(world)
    assert command[command.index("--monitoring-run-id") + 1] == run

    settle(world.kube, "fraud")
    await world.reconcile()  # the same run: found, not made again
    assert len(client.runs) == 1

    # monitoring off: the write permission goes, the read ones stay
    body = world.body
    body["spec"]["serving"]["monitoring"] = {}
    world.kube.put(body)
    await world.reconcile()
    assert client.grants[USER] == EXPECTED
    assert "--monitoring-run-id" not in pod_command(world)


async def test_uv_jobs_may_write_the_environments_to_their_own_experiment_and_only_there() -> None:
    world = server_ref_world(serving={"envManager": "uv"})
    await world.reconcile()
    client = world.hub.client
    experiment = client.experiments["mlflow-operator/ml/fraud"]
    assert client.grants[USER] == {*EXPECTED, Grant("experiment", experiment, "EDIT")}
    assert client.runs == {}  # no monitoring run: the Job makes the environment's own
    (job,) = (obj for (kind, _, _), obj in world.kube.objects.items() if kind == "Job")
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e} == {READER}
