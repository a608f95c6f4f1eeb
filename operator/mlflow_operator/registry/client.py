"""An async client for the few MLflow registry REST calls the operator makes.

Why not MlflowClient: it reads credentials from process-wide environment variables, so one
process cannot hold the credentials of several tracking servers, and it is synchronous. The
calls used here are documented REST endpoints whose shapes are pinned in mlflow-facts.md.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from mlflow_operator.core.registry_view import ModelSnapshot, VersionInfo

API = "/api/2.0/mlflow"
PAGE_SIZE = 1000  # the server's maximum for registered-models/search
MAX_FILTER_CHARS = 4000  # keep URLs well under common proxy limits


class RegistryError(Exception):
    """MLflow could not be read; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class Credentials:
    """MLflow client credentials. repr never shows the values."""

    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username or self.password:
            raw = f"{self.username}:{self.password}".encode()
            return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
        return {}


class RegistryClient:
    """Reads registered models and versions from one MLflow tracking server."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        *,
        timeout_seconds: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.credentials = credentials or Credentials()
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self.requests = 0  # requests sent, for metrics and tests

    async def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self, method: str, path: str, params: dict[str, str] | None = None, body: Any = None
    ) -> dict[str, Any]:
        session = await self._session_()
        self.requests += 1
        url = f"{self.url}{API}/{path}"
        try:
            async with session.request(
                method, url, params=params, json=body, headers=self.credentials.headers()
            ) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise _http_error(resp.status, path, text)
                data: dict[str, Any] = json.loads(text) if text else {}
                return data
        except aiohttp.ClientError as exc:
            raise RegistryError(
                f"cannot reach MLflow at {self.url}: {type(exc).__name__}"
            ) from None
        except TimeoutError:
            raise RegistryError(f"MLflow at {self.url} did not answer in time") from None

    async def search_models(self, names: Sequence[str]) -> dict[str, ModelSnapshot]:
        """Aliases, newest version per stage and those versions, of the named models.

        One request per page of up to 1,000 models: the cost grows with the number of
        models, never with the number of ModelDeployments that follow them.
        """
        found: dict[str, ModelSnapshot] = {}
        for chunk in _name_filters(sorted(set(names))):
            token = ""
            while True:
                params = {"filter": chunk, "max_results": str(PAGE_SIZE)}
                if token:
                    params["page_token"] = token
                page = await self._call("GET", "registered-models/search", params)
                for model in page.get("registered_models", []):
                    snapshot = _snapshot(model)
                    found[snapshot.name] = snapshot
                token = page.get("next_page_token", "")
                if not token:
                    break
        return found

    async def get_version(self, name: str, version: str) -> VersionInfo | None:
        """One model version, or None when it does not exist."""
        try:
            data = await self._call("GET", "model-versions/get", {"name": name, "version": version})
        except RegistryNotFound:
            return None
        return _version(data.get("model_version", {}))

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        body = {"name": name, "version": version, "key": key, "value": value}
        await self._call("POST", "model-versions/set-tag", body=body)

    async def list_webhooks(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "webhooks", {"max_results": "1000"})
        hooks: list[dict[str, Any]] = data.get("webhooks", [])
        return hooks

    async def create_webhook(self, name: str, url: str, events: list[str], secret: str) -> str:
        """Register a model-registry webhook; events like 'model_version_alias.created'."""
        body = {
            "name": name,
            "url": url,
            "events": [_event(e) for e in events],
            "secret": secret,
            "status": "ACTIVE",
        }
        data = await self._call("POST", "webhooks", body=body)
        return str(data.get("webhook", {}).get("webhook_id", ""))


class RegistryNotFound(RegistryError):  # noqa: N818  (reads as the situation, like FileNotFoundError)
    """The model or version does not exist."""


def _http_error(status: int, path: str, text: str) -> RegistryError:
    try:
        code = json.loads(text).get("error_code", "")
    except (ValueError, AttributeError):
        code = ""
    if status == 404 or code == "RESOURCE_DOES_NOT_EXIST":
        return RegistryNotFound(f"{path}: not found")
    if status in (401, 403):
        return RegistryError(f"MLflow refused the credentials (HTTP {status})")
    return RegistryError(f"MLflow answered HTTP {status} {code} to {path}".replace("  ", " "))


def _event(name: str) -> dict[str, str]:
    # MLflow wants upper-case enum names; lower case gives HTTP 500 (mlflow-facts.md §3).
    entity, action = name.rsplit(".", 1)
    return {"entity": entity.upper(), "action": action.upper()}


def _quote(name: str) -> str | None:
    if "'" not in name:
        return f"'{name}'"
    if '"' not in name:
        return f'"{name}"'
    return None  # MLflow's filter syntax has no escape for a name with both quotes


def _name_filters(names: Sequence[str]) -> list[str]:
    """`name IN (...)` filters, each short enough for one URL."""
    filters: list[str] = []
    current: list[str] = []
    for name in names:
        quoted = _quote(name)
        if quoted is None:
            continue
        if current and sum(len(q) + 2 for q in current) + len(quoted) > MAX_FILTER_CHARS:
            filters.append(f"name IN ({', '.join(current)})")
            current = []
        current.append(quoted)
    if current:
        filters.append(f"name IN ({', '.join(current)})")
    return filters


def _version(data: dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        version=str(data.get("version", "")),
        status=str(data.get("status", "READY")),
        status_message=str(data.get("status_message", "")),
        run_id=str(data.get("run_id", "")),
        current_stage=str(data.get("current_stage", "None")),
    )


def _snapshot(model: dict[str, Any]) -> ModelSnapshot:
    latest = [_version(v) for v in model.get("latest_versions", [])]
    return ModelSnapshot(
        name=str(model["name"]),
        aliases={str(a["alias"]): str(a["version"]) for a in model.get("aliases", [])},
        latest_by_stage={v.current_stage: v.version for v in latest},
        versions={v.version: v for v in latest},
    )
