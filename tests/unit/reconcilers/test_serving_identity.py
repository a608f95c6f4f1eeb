"""The serving pods' own MLflow user, as the ModelDeployment reconcile makes and keeps it.

MLflow's auth API is the in-memory one of fakes.py here; the same calls against a real MLflow
are in tests/integration/test_registry_accounts.py, and a serving pod's view of its user on the
real node in tests/e2e/test_in_cluster_loop.py.
"""

from __future__ import annotations

import base64
from typing import Any

from mlflow_operator.builders.meta import Owner
from mlflow_operator.core.modeldeployment.serving_identity import Grant
from mlflow_operator.registry.client import RegistryError
from tests.unit.reconcilers.fakes import credentials_secret, put_mlflow_server, settle
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
