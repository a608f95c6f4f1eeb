"""MLflow users and their permissions, through the basic-auth app's REST API (as an admin).

The operator gives every serving pod of a `serverRef` ModelDeployment a user of its own that
may read that one registered model (and, because MLflow's artifact proxy judges downloads by
experiment, the experiments its versions were logged in): model code is arbitrary code, and
with the admin's password it could move an alias and get any version deployed. MLflow's Python
client has no API for this (it lives in the auth app), hence these few REST calls.
"""

from __future__ import annotations

import contextlib

from mlflow_operator.core.modeldeployment.serving_identity import (
    MONITORING_MODEL_TAG,
    MONITORING_VERSION_TAG,
    Grant,
)
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

    async def experiment_named(self, name: str) -> str:
        """The id of the experiment `name`, created when there is none."""
        with contextlib.suppress(RegistryNotFound):
            return await self._experiment_id(name)
        with contextlib.suppress(RegistryAlreadyExists):  # made meanwhile: the same end
            created = await self._client.call("POST", "experiments/create", body={"name": name})
            return str(created["experiment_id"])
        return await self._experiment_id(name)

    async def _experiment_id(self, name: str) -> str:
        data = await self._client.call("GET", "experiments/get-by-name", {"experiment_name": name})
        return str(data["experiment"]["experiment_id"])

    async def monitoring_run(self, experiment_id: str, model: str, version: str) -> str:
        """The run of `experiment_id` tagged with `model` and `version`, created when there is
        none: where the serving pods of that version write what they watch."""
        # the version is digits; the model name is compared here, so that no quoting of it
        # in MLflow's filter syntax can go wrong
        found = await self._client.call(
            "POST", "runs/search",
            body={
                "experiment_ids": [experiment_id],
                "filter": f"tags.`{MONITORING_VERSION_TAG}` = '{int(version)}'",
                "max_results": 100,
            },
        )  # fmt: skip
        for run in found.get("runs") or []:
            tags = {t["key"]: t["value"] for t in (run.get("data") or {}).get("tags") or []}
            if tags.get(MONITORING_MODEL_TAG) == model:
                return str(run["info"]["run_id"])
        created = await self._client.call(
            "POST", "runs/create",
            body={
                "experiment_id": experiment_id,
                "run_name": f"{model} version {version}",
                "tags": [
                    {"key": MONITORING_MODEL_TAG, "value": model},
                    {"key": MONITORING_VERSION_TAG, "value": version},
                ],
            },
        )  # fmt: skip
        return str(created["run"]["info"]["run_id"])
