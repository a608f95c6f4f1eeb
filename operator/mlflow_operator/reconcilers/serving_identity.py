"""Makes, keeps and removes the MLflow user of each `serverRef` ModelDeployment's serving pods
(the why: core/modeldeployment/serving_identity.py)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache

from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.modeldeployment import build_reader_secret
from mlflow_operator.core.endpoint import TRACKING_PASSWORD, TRACKING_USERNAME, CredentialsSecret
from mlflow_operator.core.modeldeployment.serving_identity import (
    fingerprint,
    grant_changes,
    monitoring_experiment_name,
    reader_secret_name,
    reader_username,
    recorded_server,
    server_to_leave,
)
from mlflow_operator.kube.refusals import NamingKube
from mlflow_operator.registry.accounts import MlflowAccounts
from mlflow_operator.registry.client import RegistryClient

# (MLflow URL, model, version) -> experiment id entries kept: the versions deployed now, and
# then some; the least recently used go first (MLflow is asked again if one is wanted again).
EXPERIMENTS_KEPT = 4096


@dataclass(frozen=True)
class ServingAccess:
    """What the serving pods get: the Secret they read MLflow with, and per version the run
    they write samples and drift references to (serving.monitoring; empty when off)."""

    credentials: CredentialsSecret
    monitoring_runs: dict[str, str] = field(default_factory=dict)


class SecretUnusable(Exception):  # noqa: N818  (a situation reported in an Event, not a bug)
    """The serving pods' credentials Secret exists but is not one the operator can use."""


def _new_password() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class ServingIdentities:
    """One per operator process. MLflow is asked only when the user, its password, its model
    or the experiments it needs differ from what this process last made: nothing at rest."""

    api: NamingKube
    new_password: Callable[[], str] = _new_password
    # ModelDeployment -> fingerprint of what its user was last made to be
    _made: dict[str, str] = field(default_factory=dict)
    # ModelDeployment -> the server (None: none) its reader Secret was last found to belong to
    _checked: dict[str, str | None] = field(default_factory=dict)
    # (MLflow URL, model, version) -> experiment id, least recently used first: a version
    # never moves
    _experiments: LRUCache[tuple[str, str, str], str] = field(
        default_factory=lambda: LRUCache(EXPERIMENTS_KEPT)
    )
    # (MLflow URL, "experiment", its name) -> id of a monitoring experiment, and
    # (MLflow URL, experiment id, model and version) -> id of a version's monitoring run
    _monitoring: LRUCache[tuple[str, str, str], str] = field(
        default_factory=lambda: LRUCache(EXPERIMENTS_KEPT)
    )

    async def ensure(
        self,
        owner: Owner,
        server: str,
        model: str,
        versions: Iterable[str],
        client: RegistryClient,
        *,
        monitors: bool = False,
        environments: bool = False,
    ) -> ServingAccess:
        """The Secret the serving pods read MLflow with, once its user on the MLflowServer
        `server` can read `versions` of `model`, and, when the pods `monitors`
        (serving.monitoring), write to the ModelDeployment's monitoring experiment, with the
        run of each version there. With `environments` (envManager uv) the user may write to
        that experiment too: the Jobs that build the versions' environments keep them there.
        `client` is the admin's. Raises RegistryError when MLflow cannot be told,
        SecretUnusable when the Secret was edited into something unusable."""
        name = reader_secret_name(owner.name)
        username = reader_username(owner.namespace, owner.name)
        password = await self._password(owner, server, name, username)
        accounts = MlflowAccounts(client)
        wanted = list(versions)
        experiments = {await self._experiment(accounts, client.url, model, v) for v in wanted}
        own = monitors or environments
        writes = await self._monitoring_experiment(accounts, client.url, owner) if own else None
        mark = fingerprint(username, password, model, experiments, writes)
        key = f"{owner.namespace}/{owner.name}"
        if self._made.get(key) != mark:
            await accounts.ensure_user(username, password)
            current = await accounts.grants(username)
            revoke, grant = grant_changes(current, model, experiments, writes)
            for each in revoke:
                await accounts.revoke(username, each)
            for each in grant:
                await accounts.grant(username, each)
            self._made[key] = mark
        runs = {}
        if writes is not None and monitors:
            for version in wanted:
                runs[version] = await self._monitoring_run(
                    accounts, client.url, writes, model, version
                )
        credentials = CredentialsSecret(name, TRACKING_USERNAME, TRACKING_PASSWORD, token_key=None)
        return ServingAccess(credentials, runs)

    def known_monitoring_run(self, owner: Owner, url: str, model: str, version: str) -> str | None:
        """The monitoring run `ensure` made for the version, if it is in the cache (no I/O:
        after an operator restart it is known again once `ensure` ran)."""
        experiment = self._monitoring.get(
            (url, "experiment", monitoring_experiment_name(owner.namespace, owner.name))
        )
        if experiment is None:
            return None
        return self._monitoring.get((url, experiment, f"{model}\n{version}"))

    async def _monitoring_experiment(self, accounts: MlflowAccounts, url: str, owner: Owner) -> str:
        key = (url, "experiment", monitoring_experiment_name(owner.namespace, owner.name))
        found = self._monitoring.get(key)
        if found is None:
            found = await accounts.experiment_named(key[2])
            self._monitoring[key] = found
        return found

    async def _monitoring_run(
        self, accounts: MlflowAccounts, url: str, experiment: str, model: str, version: str
    ) -> str:
        key = (url, experiment, f"{model}\n{version}")
        found = self._monitoring.get(key)
        if found is None:
            found = await accounts.monitoring_run(experiment, model, version)
            self._monitoring[key] = found
        return found

    async def remove(self, owner: Owner, client: RegistryClient) -> bool:
        """Delete the user (and so its permissions); False when it did not exist."""
        self.forget(owner)
        return await MlflowAccounts(client).delete_user(
            reader_username(owner.namespace, owner.name)
        )

    async def recorded_server(self, owner: Owner, current: str | None) -> str | None:
        """The MLflowServer the user of `owner`'s reader Secret lives on (`current`, the one
        the spec names, when the Secret records none or there is none)."""
        return recorded_server(await self._secret(owner), current)

    async def server_to_leave(self, owner: Owner, current: str | None) -> str | None:
        """The MLflowServer whose user of `owner` must go (then `leave`), as its reader Secret
        records it, when that is not `current` (the server the pods read with basic auth now;
        None: none). The Secret is read only when `current` is new to this process."""
        key = f"{owner.namespace}/{owner.name}"
        if key in self._checked and self._checked[key] == current:
            return None
        secret = await self._secret(owner)
        server = server_to_leave(secret, current)
        if server is None:
            self._checked[key] = current
        return server

    async def leave(self, owner: Owner, current: str | None) -> None:
        """Delete the reader Secret whose user was deleted (or is left behind, reported): a new
        one, with a new password, is made for the server the pods read now. Tried once per
        `current` in this process, refused or not."""
        self.forget(owner)
        try:
            await self.api.delete("v1", "Secret", reader_secret_name(owner.name), owner.namespace)
        finally:
            self._checked[f"{owner.namespace}/{owner.name}"] = current

    def forget(self, owner: Owner) -> None:
        self._made.pop(f"{owner.namespace}/{owner.name}", None)
        self._checked.pop(f"{owner.namespace}/{owner.name}", None)

    async def _secret(self, owner: Owner) -> dict[str, Any] | None:
        return await self.api.get("v1", "Secret", reader_secret_name(owner.name), owner.namespace)

    async def _password(self, owner: Owner, server: str, name: str, username: str) -> str:
        data = await self.api.secret_data(name, owner.namespace)
        if data and data.get(TRACKING_USERNAME) == username and data.get(TRACKING_PASSWORD):
            return data[TRACKING_PASSWORD]
        if data is not None:  # the operator may create Secrets, never change one (RBAC)
            raise SecretUnusable(
                f"Secret {name!r} lacks {TRACKING_USERNAME}={username} or a {TRACKING_PASSWORD}: "
                "delete it and the operator makes a new one"
            )
        secret = build_reader_secret(owner, username, self.new_password(), server)
        await self.api.create_if_absent(secret)  # another writer's Secret stays
        data = await self.api.secret_data(name, owner.namespace) or {}
        if not data.get(TRACKING_PASSWORD):
            raise SecretUnusable(f"Secret {name!r} was just created but has no password")
        return data[TRACKING_PASSWORD]

    async def _experiment(
        self, accounts: MlflowAccounts, url: str, model: str, version: str
    ) -> str:
        key = (url, model, version)
        experiment = self._experiments.get(key)
        if experiment is None:
            experiment = await accounts.experiment_of(model, version)
            self._experiments[key] = experiment
        return experiment
