"""The model cache's routes and words, pure: what a cached tracking URI looks like, which
requests the cache forwards, which artifact paths belong to which model version.

A serving pod's MLFLOW_TRACKING_URI names its node's cache and, inside the path, the real
tracking server: `<cache>/upstream/<base64url(tracking URI)>/keep/<n>`. MLflow's client keeps
that path prefix for every REST call and for every `mlflow-artifacts:` download, so the cache
sees the whole load of a model version without any change to the runtime.

Why this is not an open proxy: the cache forwards only MLflow API paths (the prefixes of
`_FORWARDED_PREFIXES`, and exactly /server-info and /health) to the MLflow URL the pod names,
with the pod's own credentials. It adds no reach a pod does not have already, except the cache
pod's own network position, which the NetworkPolicy of the operator's namespace governs.
Upstream URLs with credentials in them, or of another scheme than http(s), are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

CACHE_PORT = 8090
MIN_KEEP_VERSIONS = 1
MAX_KEEP_VERSIONS = 50

# The REST API of the tracking server, its artifact proxy, and its two probes: nothing else.
_FORWARDED_PREFIXES = (
    "/api/2.0/mlflow/",
    "/api/2.0/mlflow-artifacts/",
    "/api/3.0/mlflow/",
    "/ajax-api/",
)
_FORWARDED_EXACT = ("/server-info", "/health")

DOWNLOAD_URI_PATH = "/api/2.0/mlflow/model-versions/get-download-uri"
ARTIFACTS_PATH = "/api/2.0/mlflow-artifacts/artifacts"  # ?path=<dir>: a listing
ARTIFACT_FILE_PREFIX = ARTIFACTS_PATH + "/"  # + <path>: one file
ARTIFACTS_SCHEME = "mlflow-artifacts"
# Where MLflow 3.17's client asks whether it may download through presigned URLs of the object
# store, which would go around the cache (and the operator's MLFLOW_ENABLE_PROXY_MULTIPART_
# DOWNLOAD=false is a default a user's env may override): the cache answers "no" there.
SERVER_INFO_PATHS = ("/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info")
MULTIPART_DOWNLOADS = "multipart_downloads_enabled"

_CACHED = re.compile(r"^/upstream/(?P<b64>[A-Za-z0-9_-]+)/keep/(?P<keep>[0-9]{1,3})(?P<rest>/.*)$")

RUNNING = "Running"
DONE = "Done"
FAILED = "Failed"
UNSUPPORTED = "Unsupported"
PREFETCH_STATES = (RUNNING, DONE, FAILED, UNSUPPORTED)


def normalize_upstream(upstream: str) -> str | None:
    """`upstream` as the cache names it (scheme and host in lower case, no trailing slash),
    or None when it is no tracking URI the cache forwards to: not http(s), no host,
    credentials, a query or a fragment in it."""
    try:
        parts = urlsplit(upstream.strip())
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in upstream:
        return None
    if any(c.isspace() for c in upstream.strip()):
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def cached_tracking_uri(cache_url: str, upstream: str, keep_versions: int) -> str:
    """The MLFLOW_TRACKING_URI of a pod that loads through the cache at `cache_url`; raises
    ValueError for an upstream the cache would refuse or a keep count out of range."""
    normal = normalize_upstream(upstream)
    if normal is None:
        raise ValueError(f"not an http(s) tracking URI without credentials: {upstream!r}")
    if not MIN_KEEP_VERSIONS <= keep_versions <= MAX_KEEP_VERSIONS:
        raise ValueError(f"keep_versions {keep_versions} outside 1..{MAX_KEEP_VERSIONS}")
    encoded = base64.urlsafe_b64encode(normal.encode()).decode().rstrip("=")
    return f"{cache_url.rstrip('/')}/upstream/{encoded}/keep/{keep_versions}"


@dataclass(frozen=True)
class CachedRoute:
    """A request to the cache: forward `rest` (starting with `/`) to `upstream`."""

    upstream: str
    keep_versions: int
    rest: str


def parse_cached_path(path: str) -> CachedRoute | None:
    """The route of a request path (without the query, still percent-encoded) to the cache, or
    None for anything the cache does not forward (see the module docstring)."""
    match = _CACHED.match(path)
    if match is None:
        return None
    b64 = match["b64"]
    try:
        decoded = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    upstream = normalize_upstream(decoded)
    keep = int(match["keep"])
    rest = match["rest"]
    if upstream is None or not MIN_KEEP_VERSIONS <= keep <= MAX_KEEP_VERSIONS:
        return None
    if not _forwarded(rest):
        return None
    return CachedRoute(upstream, keep, rest)


def _forwarded(rest: str) -> bool:
    # Dot segments (also percent-encoded) would leave the allowed prefix once a client library
    # or the upstream's web server normalizes the path: refused, as is a backslash.
    decoded = unquote(rest)
    segments = decoded.split("/")
    if any(s in (".", "..") for s in segments) or "\\" in decoded or "\x00" in decoded:
        return False
    return rest in _FORWARDED_EXACT or rest.startswith(_FORWARDED_PREFIXES)


def upstream_key(upstream: str) -> str:
    """The directory name of an upstream's versions in the store: a hash of its normalized
    URL (a URL has characters no file name may have, and may be long)."""
    normal = normalize_upstream(upstream) or upstream
    return hashlib.sha256(normal.encode()).hexdigest()[:16]


def artifact_root(download_uri: str) -> str | None:
    """The artifact root the tracking server's proxy serves a version from (`/1/models/m-abc/
    artifacts` of `mlflow-artifacts:/1/models/m-abc/artifacts`), or None when the version's
    files do not come through that server: another scheme (the pods read the object store
    themselves) or an `mlflow-artifacts://host/...` URI naming another server."""
    parts = urlsplit(download_uri)
    if parts.scheme != ARTIFACTS_SCHEME or parts.netloc:
        return None
    root = "/" + parts.path.strip("/")
    if root == "/" or not safe_relative_path(root.lstrip("/")):
        return None
    return root


def unsupported_reason(download_uri: str) -> str:
    """Why the cache cannot keep a version downloaded from `download_uri` (for a person)."""
    scheme = urlsplit(download_uri).scheme or "a local path"
    if scheme == ARTIFACTS_SCHEME:
        return (
            "the version's artifacts are served by another MLflow server than the one the "
            "pods use; they download them from it directly"
        )
    return (
        f"the MLflow server does not proxy this version's artifacts ({scheme}); the pods "
        "download them from the artifact store directly"
    )


def safe_relative_path(path: str) -> bool:
    """A relative path that stays inside the directory it is joined to."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def relative_to_root(artifact_path: str, root: str) -> str | None:
    """The path of a file inside a version (`MLmodel`, `data/model.pkl`) from the artifact path
    of a download (`1/models/m-abc/artifacts/MLmodel`), or None when it is not below `root`."""
    base = root.strip("/") + "/"
    if not artifact_path.startswith(base):
        return None
    rel = artifact_path[len(base) :]
    return rel if safe_relative_path(rel) else None


@dataclass(frozen=True)
class ListedEntry:
    """One entry of a listing of the artifact proxy: a file (with its size) or a directory."""

    name: str
    is_dir: bool
    size: int | None


def listing_entries(payload: Any) -> list[ListedEntry]:
    """The entries of a listing answer `{"files": [{"path", "is_dir", "file_size"}]}`; the
    server names them relative to the listed directory. Entries that are not safe names are
    left out (the cache never writes outside a version's directory)."""
    if not isinstance(payload, Mapping):
        return []
    found = []
    for item in payload.get("files") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
            continue
        name = posixpath.basename(item["path"].rstrip("/"))
        if not safe_relative_path(name):
            continue
        is_dir = bool(item.get("is_dir"))
        size = item.get("file_size")
        if is_dir or not isinstance(size, int | str) or not str(size).isdigit():
            found.append(ListedEntry(name, is_dir, None))
        else:
            found.append(ListedEntry(name, is_dir, int(size)))
    return found


@dataclass(frozen=True)
class PrefetchState:
    """Where a prefetch of one model version into a node's cache stands (`POST /prefetch`)."""

    model: str
    version: str
    state: str  # one of PREFETCH_STATES
    files: int = 0
    bytes: int = 0
    message: str = ""

    def to_json(self) -> str:
        """The JSON text `POST /prefetch` and `GET /prefetch` answer."""
        return json.dumps(
            {
                "model": self.model,
                "version": self.version,
                "state": self.state,
                "files": self.files,
                "bytes": self.bytes,
                "message": self.message,
            }
        )

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> PrefetchState:
        """The state from such an answer (its text, or parsed); raises ValueError for anything
        that is not one."""
        data = text if isinstance(text, Mapping) else json.loads(text)
        if not isinstance(data, Mapping):
            # ValueError, as for bad JSON: a caller handles one kind of bad answer
            raise ValueError("not a prefetch state: not a JSON object")  # noqa: TRY004
        state = str(data.get("state", ""))
        if state not in PREFETCH_STATES:
            raise ValueError(f"not a prefetch state: {state!r}")
        try:
            return cls(
                model=str(data["model"]),
                version=str(data["version"]),
                state=state,
                files=int(data.get("files") or 0),
                bytes=int(data.get("bytes") or 0),
                message=str(data.get("message") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a prefetch state: {exc}") from exc
