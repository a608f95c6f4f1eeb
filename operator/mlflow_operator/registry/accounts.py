"""MLflow users and their permissions, through the basic-auth app's REST API (as an admin).

The operator gives every serving pod of a `serverRef` ModelDeployment a user of its own that
may read that one registered model (and, because MLflow's artifact proxy judges downloads by
experiment, the experiments its versions were logged in): model code is arbitrary code, and
with the admin's password it could move an alias and get any version deployed. MLflow's Python
client has no API for this (it lives in the auth app), hence these few REST calls.
"""

from __future__ import annotations

import contextlib

from mlflow_operator.core.modeldeployment.serving_identity import Grant
from mlflow_operator.registry.client import (
    API_V3,
    RegistryAlreadyExists,
    RegistryClient,
    RegistryError,
    RegistryNotFound,
)


class MlflowAccounts:
    """User administration on one MLflow tracking server; `client` holds admin credentials."""

    def __init__(self, client: RegistryClient) -> None:
        self._client = client

    async def ensure_user(self, username: str, password: str) -> None:
        """The user exists and has this password (created, or its password set)."""
        try:
            await self._client.call(
                "POST", "users/create", body={"username": username, "password": password}
            )
        except RegistryAlreadyExists:
            await self._client.call(
                "PATCH", "users/update-password", body={"username": username, "password": password}
            )

    async def delete_user(self, username: str) -> bool:
        """Delete the user and with it every permission it had; False when there was none."""
        try:
            await self._client.call("DELETE", "users/delete", body={"username": username})
        except RegistryNotFound:
            return False
        return True

    async def grants(self, username: str) -> set[Grant]:
        """The user's own permissions (none of a role it shares with others)."""
        data = await self._client.call(
            "GET", "users/permissions/list", {"username": username}, api=API_V3
        )
        return {
            Grant(str(p["resource_type"]), str(p["resource_pattern"]), str(p["permission"]))
            for p in data.get("permissions", [])
            if str(p.get("role_name", "")).startswith("__user_")  # MLflow's per-user role
        }

    async def grant(self, username: str, grant: Grant) -> None:
        body = {
            "username": username,
            "resource_type": grant.resource_type,
            "resource_id": grant.resource_id,
            "permission": grant.permission,
        }
        # granted meanwhile (by another replica, a person): the same end
        with contextlib.suppress(RegistryAlreadyExists):
            await self._client.call("POST", "users/permissions/grant", body=body, api=API_V3)

    async def revoke(self, username: str, grant: Grant) -> None:
        body = {
            "username": username,
            "resource_type": grant.resource_type,
            "resource_id": grant.resource_id,
        }
        with contextlib.suppress(RegistryNotFound):
            await self._client.call("POST", "users/permissions/revoke", body=body, api=API_V3)

    async def experiment_of(self, model: str, version: str) -> str:
        """The experiment that holds a model version's files: of its logged model (MLflow 3),
        else of the run it came from. Raises RegistryError when neither says."""
        data = await self._client.call(
            "GET", "model-versions/get", {"name": model, "version": version}
        )
        found = data.get("model_version") or {}
        source = str(found.get("source", ""))
        if source.startswith("models:/m-"):
            model_id = source.removeprefix("models:/").split("/", 1)[0]
            logged = await self._client.call("GET", f"logged-models/{model_id}")
            experiment = (logged.get("model") or {}).get("info", {}).get("experiment_id")
            if experiment:
                return str(experiment)
        run_id = str(found.get("run_id") or "")
        if run_id:
            run = await self._client.call("GET", "runs/get", {"run_id": run_id})
            experiment = (run.get("run") or {}).get("info", {}).get("experiment_id")
            if experiment:
                return str(experiment)
        raise RegistryError(
            f"cannot tell which experiment holds version {version} of model {model!r} "
            "(its source names no logged model and it has no run)"
        )
