"""Makes, keeps and removes the MLflow user of each `serverRef` ModelDeployment's serving pods
(the why: core/modeldeployment/serving_identity.py)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.modeldeployment import build_reader_secret
from mlflow_operator.core.endpoint import CredentialsSecret
from mlflow_operator.core.modeldeployment.serving_identity import (
    fingerprint,
    grant_changes,
    reader_secret_name,
    reader_username,
)
from mlflow_operator.kube.refusals import NamingKube
from mlflow_operator.registry.accounts import MlflowAccounts
from mlflow_operator.registry.client import RegistryClient

USERNAME_KEY = "MLFLOW_TRACKING_USERNAME"
PASSWORD_KEY = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105  (a key name)


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
    # (MLflow URL, model, version) -> experiment id: a version never moves
    _experiments: dict[tuple[str, str, str], str] = field(default_factory=dict)

    async def ensure(
        self, owner: Owner, model: str, versions: Iterable[str], client: RegistryClient
    ) -> CredentialsSecret:
        """The Secret the serving pods read MLflow with, once its user can read `versions` of
        `model`. `client` is the admin's. Raises RegistryError when MLflow cannot be told,
        SecretUnusable when the Secret was edited into something unusable."""
        name = reader_secret_name(owner.name)
        username = reader_username(owner.namespace, owner.name)
        password = await self._password(owner, name, username)
        accounts = MlflowAccounts(client)
        experiments = {await self._experiment(accounts, client.url, model, v) for v in versions}
        mark = fingerprint(username, password, model, experiments)
        key = f"{owner.namespace}/{owner.name}"
        if self._made.get(key) != mark:
            await accounts.ensure_user(username, password)
            revoke, grant = grant_changes(await accounts.grants(username), model, experiments)
            for each in revoke:
                await accounts.revoke(username, each)
            for each in grant:
                await accounts.grant(username, each)
            self._made[key] = mark
        return CredentialsSecret(name, USERNAME_KEY, PASSWORD_KEY, token_key=None)

    async def remove(self, owner: Owner, client: RegistryClient) -> bool:
        """Delete the user (and so its permissions); False when it did not exist."""
        self.forget(owner)
        return await MlflowAccounts(client).delete_user(
            reader_username(owner.namespace, owner.name)
        )

    def forget(self, owner: Owner) -> None:
        self._made.pop(f"{owner.namespace}/{owner.name}", None)

    async def _password(self, owner: Owner, name: str, username: str) -> str:
        data = await self.api.secret_data(name, owner.namespace)
        if data and data.get(USERNAME_KEY) == username and data.get(PASSWORD_KEY):
            return data[PASSWORD_KEY]
        if data is not None:  # the operator may create Secrets, never change one (RBAC)
            raise SecretUnusable(
                f"Secret {name!r} lacks {USERNAME_KEY}={username} or a {PASSWORD_KEY}: "
                "delete it and the operator makes a new one"
            )
        secret = build_reader_secret(owner, username, self.new_password())
        await self.api.create_if_absent(secret)  # another writer's Secret stays
        data = await self.api.secret_data(name, owner.namespace) or {}
        if not data.get(PASSWORD_KEY):
            raise SecretUnusable(f"Secret {name!r} was just created but has no password")
        return data[PASSWORD_KEY]

    async def _experiment(
        self, accounts: MlflowAccounts, url: str, model: str, version: str
    ) -> str:
        key = (url, model, version)
        if key not in self._experiments:
            self._experiments[key] = await accounts.experiment_of(model, version)
        return self._experiments[key]
