"""An async client for the few MLflow registry REST calls the operator makes.

Why not MlflowClient: it reads credentials from process-wide environment variables, so one
process cannot hold the credentials of several tracking servers, and it is synchronous. The
calls used here are documented REST endpoints whose shapes are pinned in mlflow-facts.md.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlparse

import aiohttp

from mlflow_operator.api.names import WRITE_BACK_TAG_PREFIX
from mlflow_operator.core.modeldeployment.conditions import (
    REGISTRY_BAD_RESPONSE,
    REGISTRY_CREDENTIALS_REFUSED,
    REGISTRY_HTTP_ERROR,
    REGISTRY_UNREACHABLE,
)
from mlflow_operator.core.modeldeployment.preflight import ModelFiles
from mlflow_operator.core.redact import redact
from mlflow_operator.core.registry_view import VERSION_READY, ModelSnapshot, VersionInfo

API = "/api/2.0/mlflow"
API_V3 = "/api/3.0/mlflow"  # MLflow 3's permission API (users/permissions/...)
PAGE_SIZE = 1000  # the server's maximum for registered-models/search
VERSIONS_PAGE_SIZE = 10_000  # model-versions/search allows 200,000; ~5 MB of JSON per page
MAX_FILTER_CHARS = 4000  # keep URLs well under common proxy limits
PROXIED_ARTIFACTS = "mlflow-artifacts"  # the scheme of artifacts served by the tracking server
MODEL_FILES = ("MLmodel", "requirements.txt", "python_env.yaml")  # what pre-flight reads
# read too when one of the last two is missing: older MLflow versions, and conda environments,
# record the requirements and the Python there alone
CONDA_FILE = "conda.yaml"
MAX_MODEL_FILE_BYTES = 1 << 20  # each of those is a few KB; a larger one is not what it says
# a file of prediction samples holds up to 1,000 requests with their inputs
MAX_MONITORING_FILE_BYTES = 32 << 20


class RegistryError(Exception):
    """MLflow could not be read; the message names the endpoint, never its credentials."""

    def __init__(self, message: str, reason: str = REGISTRY_UNREACHABLE) -> None:
        super().__init__(message)
        self.reason = reason


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


def trusting(ca_bundle_file: str) -> ssl.SSLContext | None:
    """TLS settings that trust the CAs of a PEM bundle besides the system's; None (aiohttp's
    defaults, the system's CAs) without one. Raises OSError or ssl.SSLError for a bad file."""
    if not ca_bundle_file:
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=ca_bundle_file)
    return context


class RegistryClient:
    """Reads registered models and versions from one MLflow tracking server."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        *,
        timeout_seconds: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._tls = tls
        self.display_url = redact(self.url)  # for messages, logs and metric labels
        self.credentials = credentials or Credentials()
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self.requests = 0  # requests sent, for metrics and tests

    async def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # trust_env: HTTP(S)_PROXY and NO_PROXY of the operator's environment apply, as
            # for any HTTP client a platform team runs behind an egress proxy
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                trust_env=True,
                connector=aiohttp.TCPConnector(ssl=self._tls) if self._tls else None,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        *,
        api: str = API,
    ) -> dict[str, Any]:
        """One request to MLflow's REST API (`registry/accounts.py` builds on it too); every
        way it can go wrong is a RegistryError with its reason."""
        session = await self._session_()
        self.requests += 1
        url = f"{self.url}{api}/{path}"
        where = self.display_url
        try:
            async with session.request(
                method, url, params=params, json=body, headers=self.credentials.headers()
            ) as resp:
                try:
                    text = await resp.text()
                except (aiohttp.ClientPayloadError, UnicodeDecodeError) as exc:
                    raise RegistryError(
                        f"MLflow at {where} sent a broken answer to {path} ({type(exc).__name__})",
                        REGISTRY_BAD_RESPONSE,
                    ) from None
                if resp.status >= 400:
                    raise _http_error(where, resp.status, path, text)
                return _json_object(where, path, resp.content_type, text)
        except aiohttp.ClientError as exc:
            raise RegistryError(f"cannot reach MLflow at {where}: {type(exc).__name__}") from None
        except TimeoutError:
            raise RegistryError(
                f"MLflow at {where} did not answer {path} within {self._timeout.total:.0f}s"
            ) from None

    async def search_models(self, names: Sequence[str]) -> dict[str, ModelSnapshot]:
        """Aliases, newest version per stage and those versions, of the named models.

        One request per page of up to 1,000 models: the cost grows with the number of
        models, never with the number of ModelDeployments that follow them.
        """
        path = "registered-models/search"
        found: dict[str, ModelSnapshot] = {}
        async for model in self._search(path, "registered_models", names, PAGE_SIZE):
            with self._shape(path):
                snapshot = _snapshot(model)
            found[snapshot.name] = snapshot
        return found

    async def search_versions(self, names: Sequence[str]) -> dict[str, list[VersionInfo]]:
        """Every version, with its tags, of the named models (those that have versions).

        One request per page of up to 10,000 versions of models named in one URL's filter:
        like search_models, the cost never grows with the number of ModelDeployments.
        """
        path = "model-versions/search"
        found: dict[str, list[VersionInfo]] = {}
        async for data in self._search(path, "model_versions", names, VERSIONS_PAGE_SIZE):
            with self._shape(path):
                found.setdefault(str(data["name"]), []).append(_version(data))
        return found

    async def _search(
        self, path: str, items_key: str, names: Sequence[str], page_size: int
    ) -> AsyncIterator[Any]:
        """The items of a paged search over the named models: `name IN (...)` filters short
        enough for one URL, one request per page."""
        for chunk in _name_filters(sorted(set(names))):
            token = ""
            while True:
                params = {"filter": chunk, "max_results": str(page_size)}
                if token:
                    params["page_token"] = token
                page = await self.call("GET", path, params)
                with self._shape(path):
                    items = list(page.get(items_key, []))
                    token = str(page.get("next_page_token", ""))
                for item in items:
                    yield item
                if not token:
                    break

    async def get_version(self, name: str, version: str) -> VersionInfo | None:
        """One model version, or None when it does not exist."""
        try:
            data = await self.call("GET", "model-versions/get", {"name": name, "version": version})
        except RegistryNotFound:
            return None
        with self._shape("model-versions/get"):
            return _version(data["model_version"])

    async def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric of a run (promotion gates read these)."""
        data = await self.call("GET", "runs/get", {"run_id": run_id})
        with self._shape("runs/get"):
            metrics = data["run"].get("data", {}).get("metrics", [])
            return {str(m["key"]): float(m["value"]) for m in metrics}

    async def model_files(self, name: str, version: str) -> ModelFiles:
        """The small files of a version that say what it needs (MLmodel, requirements.txt,
        python_env.yaml, and conda.yaml when one of those two is missing), through the tracking
        server's artifact proxy: a few kilobytes, never the model itself. Only the files that
        the listing shows are read. What cannot be read is said in ModelFiles.error."""
        path = "model-versions/get-download-uri"
        try:
            data = await self.call("GET", path, {"name": name, "version": version})
            with self._shape(path):
                uri = str(data["artifact_uri"])
        except RegistryError as exc:
            return ModelFiles(location=f"models:/{name}/{version}", error=str(exc))
        parsed = urlparse(uri)
        if parsed.scheme != PROXIED_ARTIFACTS:
            return ModelFiles(
                location=redact(uri),
                error=f"its artifacts are at {redact(uri)}, and the operator reads artifacts "
                f"only through the tracking server's proxy ({PROXIED_ARTIFACTS}:)",
                lasting=True,
            )
        base = parsed.path.strip("/")
        try:
            # listed first: the proxy answers HTTP 500 for a file that is not there (S3's
            # NoSuchKey), which must not read as MLflow failing
            present = await self._artifact_names(base)
            texts = [
                await self._artifact_text(f"{base}/{f}") if f in present else None
                for f in MODEL_FILES
            ]
            mlmodel, requirements, python_env = texts
            conda = None
            if CONDA_FILE in present and (requirements is None or python_env is None):
                conda = await self._artifact_text(f"{base}/{CONDA_FILE}")
        except RegistryError as exc:
            return ModelFiles(location=uri, error=str(exc))
        return ModelFiles(uri, mlmodel, requirements, python_env, conda)

    async def run_artifact_root(self, run_id: str) -> str:
        """Where a run's artifacts are in the artifact proxy (the path below
        mlflow-artifacts:/); RegistryError when they are not served by the proxy."""
        data = await self.call("GET", "runs/get", {"run_id": run_id})
        with self._shape("runs/get"):
            uri = str(data["run"]["info"]["artifact_uri"])
        parsed = urlparse(uri)
        if parsed.scheme != PROXIED_ARTIFACTS:
            raise RegistryError(
                f"the artifacts of run {run_id} are at {redact(uri)}, and the operator reads "
                f"artifacts only through the tracking server's proxy ({PROXIED_ARTIFACTS}:)"
            )
        return parsed.path.strip("/")

    async def artifact_text(self, path: str) -> str | None:
        """A monitoring file (samples, labels) through the artifact proxy; None if gone."""
        return await self._artifact_text(path, MAX_MONITORING_FILE_BYTES)

    async def artifact_listing(self, directory: str) -> tuple[set[str], set[str]]:
        """The names of the files, and of the directories, in one directory of the artifact
        proxy; both empty when there is no such directory."""
        path = "mlflow-artifacts/artifacts"
        listing = await self.call("GET", path, {"path": directory}, api="/api/2.0")
        with self._shape(path):
            entries = [
                (str(f["path"]).rsplit("/", 1)[-1], bool(f.get("is_dir")))
                for f in listing.get("files", [])
            ]
        return {n for n, is_dir in entries if not is_dir}, {n for n, is_dir in entries if is_dir}

    async def _artifact_names(self, directory: str) -> set[str]:
        """The names of the files in one directory of the artifact proxy."""
        files, _ = await self.artifact_listing(directory)
        return files

    async def _artifact_text(self, path: str, limit: int = MAX_MODEL_FILE_BYTES) -> str | None:
        """One file through the artifact proxy, or None when there is none."""
        session = await self._session_()
        self.requests += 1
        url = f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{quote(path)}"
        where = self.display_url
        try:
            async with session.get(url, headers=self.credentials.headers()) as resp:
                if resp.status == 404:
                    return None
                if resp.status >= 400:
                    raise _http_error(where, resp.status, "mlflow-artifacts", await resp.text())
                body = await resp.content.read(limit + 1)
        except aiohttp.ClientError as exc:
            raise RegistryError(f"cannot reach MLflow at {where}: {type(exc).__name__}") from None
        except TimeoutError:
            raise RegistryError(
                f"MLflow at {where} did not send {path.rsplit('/', 1)[-1]} within "
                f"{self._timeout.total:.0f}s"
            ) from None
        if len(body) > limit:
            raise RegistryError(
                f"{path.rsplit('/', 1)[-1]} is larger than {limit} bytes",
                REGISTRY_BAD_RESPONSE,
            )
        return body.decode(errors="replace")

    @contextmanager
    def _shape(self, path: str) -> Iterator[None]:
        """JSON that is not in the shape of MLflow's API (a proxy's, another service's)."""
        try:
            yield
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise RegistryError(
                f"MLflow at {self.display_url} answered {path} with JSON that is not MLflow's "
                f"({type(exc).__name__}: {exc})"[:300],
                REGISTRY_BAD_RESPONSE,
            ) from None

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        body = {"name": name, "version": version, "key": key, "value": value}
        await self.call("POST", "model-versions/set-tag", body=body)

    async def set_model_alias(self, name: str, alias: str, version: str) -> None:
        body = {"name": name, "alias": alias, "version": version}
        await self.call("POST", "registered-models/alias", body=body)

    async def create_webhook(self, name: str, url: str, events: list[str], secret: str) -> str:
        """Register a model-registry webhook; events like 'model_version_alias.created'."""
        body = {
            "name": name,
            "url": url,
            "events": [_event(e) for e in events],
            "secret": secret,
            "status": "ACTIVE",
        }
        data = await self.call("POST", "webhooks", body=body)
        return str(data.get("webhook", {}).get("webhook_id", ""))


class RegistryNotFound(RegistryError):  # noqa: N818  (reads as the situation, like FileNotFoundError)
    """The model or version does not exist."""


class RegistryAlreadyExists(RegistryError):  # noqa: N818  (the situation, like FileExistsError)
    """What a create call asked for exists already (a user, a permission)."""


def _http_error(where: str, status: int, path: str, text: str) -> RegistryError:
    try:
        code = json.loads(text).get("error_code", "")
    except (ValueError, AttributeError):
        code = ""
    if status == 404 or code == "RESOURCE_DOES_NOT_EXIST":
        return RegistryNotFound(f"{path}: not found", REGISTRY_HTTP_ERROR)
    if code == "RESOURCE_ALREADY_EXISTS":
        return RegistryAlreadyExists(f"{path}: already exists", REGISTRY_HTTP_ERROR)
    if status in (401, 403):
        return RegistryError(
            f"MLflow at {where} refused the credentials (HTTP {status})",
            REGISTRY_CREDENTIALS_REFUSED,
        )
    return RegistryError(
        f"MLflow at {where} answered HTTP {status} {code} to {path}".replace("  ", " "),
        REGISTRY_HTTP_ERROR,
    )


def _json_object(where: str, path: str, content_type: str, text: str) -> dict[str, Any]:
    """The JSON object of a 200 answer; anything else (an HTML login page of an SSO proxy, a
    truncated or empty-but-not-JSON body) is a bad response, not a crash of the watcher."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        hint = " (a login page of a proxy or SSO?)" if "html" in content_type else ""
        raise RegistryError(
            f"MLflow at {where} answered {path} with HTTP 200 but not MLflow's JSON: "
            f"content type {content_type or 'unknown'}{hint}",
            REGISTRY_BAD_RESPONSE,
        )
    return data


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
        status=str(data.get("status", VERSION_READY)),
        status_message=str(data.get("status_message", "")),
        run_id=str(data.get("run_id", "")),
        current_stage=str(data.get("current_stage", "None")),
        tags={
            str(t["key"]): str(t.get("value", ""))
            for t in data.get("tags", [])
            # the operator's own write-back tags change with every rollout: kept, each rollout
            # would change the snapshot and wake every follower of the model (a storm at scale)
            if not str(t["key"]).startswith(WRITE_BACK_TAG_PREFIX)
        },
    )


def _snapshot(model: dict[str, Any]) -> ModelSnapshot:
    latest = [_version(v) for v in model.get("latest_versions", [])]
    return ModelSnapshot(
        name=str(model["name"]),
        aliases={str(a["alias"]): str(a["version"]) for a in model.get("aliases", [])},
        latest_by_stage={v.current_stage: v.version for v in latest},
        versions={v.version: v for v in latest},
    )
