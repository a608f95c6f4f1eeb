"""The model cache's disk store: the files of model versions, by tracking server and model.

Layout: `<root>/<upstream_key>/<model>/<version>/files/<path in the version>` and, beside
`files/`, `meta.json` (upstream, model, version, artifact_root, keep_versions, complete, files
{path: {size, sha256}}, listed, last_used). Model names and versions are made safe for file
names (core/model_cache.py's upstream_key does the same for the server's URL); meta.json keeps
the real ones.

Every write is atomic: a temporary file in the same directory, then os.replace. A file is in the
store once meta.json names it, so a crash leaves at worst a file that no meta names, which the
next start deletes. The store is the index in memory, rebuilt from the meta.json files at
start; one asyncio loop uses it, so it takes no locks.

A version is `complete` when the listings of its directories that went through the cache (a
pod's load or a prefetch) name no file the store lacks: the cache cannot know a version's
files otherwise.

Eviction keeps, per tracking server and model, the `keep_versions` most recently used versions,
and with `max_bytes` the least recently used versions go (any model's) until the total fits,
never the most recently used one: a model larger than `max_bytes` is still cached, alone. A
version that is pinned (downloads or a prefetch of it running, a file of it being served) is
never evicted; the next eviction after its last pin ends takes it if it is still beyond.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mlflow_operator.core.model_cache import (
    ListedEntry,
    normalize_upstream,
    relative_to_root,
    safe_relative_path,
    upstream_key,
)

logger = logging.getLogger(__name__)

META = "meta.json"
FILES = "files"
TEMP_PREFIX = ".tmp-"
DEFAULT_KEEP_VERSIONS = 3
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

VersionKey = tuple[str, str, str]  # (upstream key, model, version)


def safe_name(name: str) -> str:
    """A file name for a model name or version: itself when it is one already, else its safe
    characters and a hash of the whole (two names must not share a directory)."""
    cleaned = _UNSAFE.sub("_", name)[:64].lstrip(".")
    if cleaned == name and name:
        return name
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class CachedFile:
    size: int
    sha256: str


@dataclass
class CachedVersion:
    """One model version in the store: its files so far, and what its listings named."""

    upstream: str
    model: str
    version: str
    artifact_root: str  # `/1/models/m-abc/artifacts` of `mlflow-artifacts:/1/models/...`
    directory: Path
    keep_versions: int = DEFAULT_KEEP_VERSIONS
    last_used: float = 0.0
    files: dict[str, CachedFile] = field(default_factory=dict)
    # directory in the version ("" for its root) -> name -> size (None: a directory)
    listed: dict[str, dict[str, int | None]] = field(default_factory=dict)
    complete: bool = False

    @property
    def key(self) -> VersionKey:
        return (upstream_key(self.upstream), self.model, self.version)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def path(self, rel: str) -> Path:
        return self.directory / FILES / rel

    def meta(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "model": self.model,
            "version": self.version,
            "artifact_root": self.artifact_root,
            "keep_versions": self.keep_versions,
            "complete": self.complete,
            "files": {rel: {"size": f.size, "sha256": f.sha256} for rel, f in self.files.items()},
            "listed": self.listed,
            "last_used": self.last_used,
        }


class Store:
    """The versions under `root`; `on_evict` (settable) hears of every version evicted."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = 0,
        clock: Callable[[], float] = time.time,
        on_evict: Callable[[CachedVersion], None] | None = None,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.evictions = 0
        self._clock = clock
        self.on_evict = on_evict
        self._versions: dict[VersionKey, CachedVersion] = {}
        self._pins: Counter[VersionKey] = Counter()
        root.mkdir(parents=True, exist_ok=True)
        self._rebuild()

    # --- reading ---------------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        return sum(v.bytes for v in self._versions.values())

    def versions(self) -> list[CachedVersion]:
        return list(self._versions.values())

    def lookup(self, upstream: str, model: str, version: str) -> CachedVersion | None:
        return self._versions.get((upstream_key(upstream), model, version))

    def attribute(
        self, upstream: str, artifact_path: str, *, directory: bool = False
    ) -> tuple[CachedVersion, str] | None:
        """The version a download's artifact path (`1/models/m-abc/artifacts/MLmodel`) is a file
        of, and the file's path in it; None when no version learned here has that root. With
        `directory`, the path of a listing, whose root itself is "". Two versions registered
        from one logged model share a root: the most recently used one gets the file."""
        ukey = upstream_key(upstream)
        found: tuple[CachedVersion, str] | None = None
        for entry in self._versions.values():
            if entry.key[0] != ukey:
                continue
            if directory and artifact_path.strip("/") == entry.artifact_root.strip("/"):
                rel: str | None = ""
            else:
                rel = relative_to_root(artifact_path.rstrip("/"), entry.artifact_root)
            if rel is not None and (found is None or entry.last_used > found[0].last_used):
                found = (entry, rel)
        return found

    def cached(self, entry: CachedVersion, rel: str) -> CachedFile | None:
        """The file, if the store has it whole."""
        info = entry.files.get(rel)
        if info is None or self._versions.get(entry.key) is not entry:
            return None
        return info

    def pinned(self, entry: CachedVersion) -> bool:
        return self._pins[entry.key] > 0

    def inventory(self) -> dict[str, Any]:
        """What `GET /cache` answers."""
        upstreams: dict[str, Any] = {}
        for entry in sorted(self._versions.values(), key=lambda v: v.key):
            ukey = entry.key[0]
            place = upstreams.setdefault(ukey, {"upstream": entry.upstream, "models": {}})
            model = place["models"].setdefault(
                entry.model, {"keep_versions": entry.keep_versions, "versions": {}}
            )
            model["versions"][entry.version] = {
                "bytes": entry.bytes,
                "files": len(entry.files),
                "complete": entry.complete,
                "last_used": entry.last_used,
                "artifact_root": entry.artifact_root,
            }
        return {
            "total_bytes": self.total_bytes,
            "max_bytes": self.max_bytes,
            "evictions": self.evictions,
            "upstreams": upstreams,
        }

    # --- writing ---------------------------------------------------------------------------

    def learn(
        self, upstream: str, model: str, version: str, root: str, keep_versions: int
    ) -> CachedVersion:
        """The tracking server said where `model`/`version`'s files are (its download URI):
        the version is in use now, with `keep_versions` for its model."""
        normal = normalize_upstream(upstream) or upstream
        key = (upstream_key(normal), model, version)
        entry = self._versions.get(key)
        if entry is not None and entry.artifact_root != root:
            # a version's files never change; a new root means the database was replaced
            self._delete(entry)
            entry = None
        if entry is None:
            directory = self.root / key[0] / safe_name(model) / safe_name(version)
            entry = CachedVersion(normal, model, version, root, directory)
            self._versions[key] = entry
        for other in self._versions.values():  # the model's keep count is the latest asked
            if other.key[0] == key[0] and other.model == model:
                other.keep_versions = keep_versions
        entry.last_used = self._clock()
        self._write_meta(entry)
        self.evict()
        return entry

    def touch(self, entry: CachedVersion) -> None:
        """A file of the version was served: it is the most recently used."""
        entry.last_used = self._clock()
        self._write_meta(entry, durable=False)  # a lost last_used costs nothing

    @contextlib.contextmanager
    def pin(self, entry: CachedVersion) -> Iterator[None]:
        """Not evicted inside the block; evicted after it if it is beyond its keep count."""
        key = entry.key
        self._pins[key] += 1
        try:
            yield
        finally:
            self._pins[key] -= 1
            if self._pins[key] <= 0:
                del self._pins[key]
                self.evict()

    def open_temp(self, entry: CachedVersion, rel: str) -> tuple[Path, IO[bytes]]:
        """A temporary file beside where `rel` goes: write it, then commit() or discard()."""
        if not safe_relative_path(rel):
            raise ValueError(f"not a path inside a version: {rel!r}")
        target = entry.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
        return Path(name), os.fdopen(fd, "wb")

    def commit(self, entry: CachedVersion, rel: str, temp: Path, size: int, sha256: str) -> bool:
        """Move a finished temporary file into place; False (and the file deleted) when the
        version was evicted meanwhile."""
        if self._versions.get(entry.key) is not entry:
            discard(temp)
            return False
        os.replace(temp, entry.path(rel))
        entry.files[rel] = CachedFile(size, sha256)
        self._update_complete(entry)
        self._write_meta(entry)
        self.evict()
        return True

    def note_listing(
        self, entry: CachedVersion, rel_dir: str, entries: Sequence[ListedEntry]
    ) -> None:
        """What a listing of a directory of the version named (rel_dir "" is its root)."""
        listed = {e.name: (None if e.is_dir else e.size) for e in entries}
        if entry.listed.get(rel_dir) == listed or self._versions.get(entry.key) is not entry:
            return
        entry.listed[rel_dir] = listed
        self._update_complete(entry)
        self._write_meta(entry)

    def evict(self) -> list[CachedVersion]:
        """Delete the versions beyond their model's keep count, then, with max_bytes, the least
        recently used until the total fits (see the module docstring)."""
        gone: list[CachedVersion] = []
        per_model: dict[tuple[str, str], list[CachedVersion]] = {}
        for entry in self._versions.values():
            per_model.setdefault((entry.key[0], entry.model), []).append(entry)
        for versions in per_model.values():
            versions.sort(key=lambda v: v.last_used, reverse=True)
            keep = versions[0].keep_versions
            gone += [v for v in versions[keep:] if not self.pinned(v)]
        for entry in gone:
            self._delete(entry)
        if self.max_bytes > 0 and self._versions:
            newest = max(self._versions.values(), key=lambda v: v.last_used)
            oldest_first = sorted(self._versions.values(), key=lambda v: v.last_used)
            total = self.total_bytes
            for entry in oldest_first:
                if total <= self.max_bytes:
                    break
                if entry is newest or self.pinned(entry):
                    continue
                total -= entry.bytes
                self._delete(entry)
                gone.append(entry)
        return gone

    # --- inside ----------------------------------------------------------------------------

    def _delete(self, entry: CachedVersion) -> None:
        self._versions.pop(entry.key, None)
        shutil.rmtree(entry.directory, ignore_errors=True)
        with contextlib.suppress(OSError):  # the model's last version: its directory goes too
            entry.directory.parent.rmdir()
        self.evictions += 1
        logger.info(
            "evicted %s version %s (%d bytes, %d files)",
            entry.model,
            entry.version,
            entry.bytes,
            len(entry.files),
        )
        if self.on_evict is not None:
            self.on_evict(entry)

    def _update_complete(self, entry: CachedVersion) -> None:
        entry.complete = "" in entry.listed and all(
            (f"{folder}/{name}".lstrip("/") in entry.listed)
            if size is None
            else (
                (info := entry.files.get(f"{folder}/{name}".lstrip("/"))) is not None
                and info.size == size
            )
            for folder, names in entry.listed.items()
            for name, size in names.items()
        )

    def _write_meta(self, entry: CachedVersion, *, durable: bool = True) -> None:
        entry.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(entry.directory / META, json.dumps(entry.meta()).encode(), durable=durable)

    def _rebuild(self) -> None:
        """The index from the meta.json files; a file that no meta names, a temporary file, a
        meta that cannot be read: deleted (a crash in the middle of a write leaves those)."""
        for meta_file in self.root.glob(f"*/*/*/{META}"):
            directory = meta_file.parent
            entry = _read_meta(meta_file)
            if entry is None or directory.parent.parent.name != entry.key[0]:
                logger.warning("cache: dropping %s (unreadable meta.json)", directory)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            entry.directory = directory
            for rel, info in list(entry.files.items()):
                path = entry.path(rel)
                if not safe_relative_path(rel) or not path.is_file():
                    del entry.files[rel]
                elif path.stat().st_size != info.size:
                    path.unlink()
                    del entry.files[rel]
            _delete_unnamed(entry)
            self._update_complete(entry)
            self._versions[entry.key] = entry
        for stray in self.root.glob(f"*/*/*/{TEMP_PREFIX}*"):
            discard(stray)
        count, total = len(self._versions), self.total_bytes
        logger.info("cache: %d versions, %d bytes in %s", count, total, self.root)


def _read_meta(meta_file: Path) -> CachedVersion | None:
    try:
        data = json.loads(meta_file.read_text())
        return CachedVersion(
            upstream=str(data["upstream"]),
            model=str(data["model"]),
            version=str(data["version"]),
            artifact_root=str(data["artifact_root"]),
            directory=meta_file.parent,
            keep_versions=int(data.get("keep_versions", DEFAULT_KEEP_VERSIONS)),
            last_used=float(data.get("last_used", 0.0)),
            files={
                str(rel): CachedFile(int(f["size"]), str(f["sha256"]))
                for rel, f in (data.get("files") or {}).items()
            },
            listed={
                str(folder): {str(n): (None if s is None else int(s)) for n, s in names.items()}
                for folder, names in (data.get("listed") or {}).items()
            },
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _delete_unnamed(entry: CachedVersion) -> None:
    files = entry.directory / FILES
    if not files.is_dir():
        return
    for path in files.rglob("*"):
        if path.is_file() and path.relative_to(files).as_posix() not in entry.files:
            path.unlink()


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `path` whole or not at all (a temporary file in its directory, os.replace)."""
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(name, path)
    except BaseException:
        discard(Path(name))
        raise


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
