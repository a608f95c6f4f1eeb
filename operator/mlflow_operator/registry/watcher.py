"""One registry watcher per MLflow endpoint: a sweep of all followed models serves every follower.

MLflow requests per interval grow with the number of registered models followed (one
`registered-models/search` page per 1,000 of them), never with the number of
ModelDeployments. Followers are woken only when their model changed, or when the registry
became unreachable or reachable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from mlflow_operator import metrics
from mlflow_operator.core.modeldeployment.conditions import REGISTRY_BAD_RESPONSE, REGISTRY_STALLED
from mlflow_operator.core.registry_view import (
    VERSION_READY,
    ModelSnapshot,
    RegistryState,
    VersionInfo,
)
from mlflow_operator.registry.client import (
    Credentials,
    RegistryClient,
    RegistryError,
)

logger = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 300.0
# A watcher that has not completed a sweep for this many poll intervals says so, whatever
# the cause (a request that hangs, a loop that died, an event loop that is starved).
STALL_INTERVALS = 3


@dataclass
class Follower:
    """One ModelDeployment following one registered model."""

    model: str
    interval: float
    pinned_versions: frozenset[str] = frozenset()
    wake: Callable[[], None] = field(default=lambda: None)
    all_versions: bool = False  # spec.model.selector or spec.gates: every version, with tags
    aliases: bool = True  # alias, stage and pin need registered-models/search; a selector not


class RegistryWatcher:
    """Keeps the alias/stage -> version map of the followed models of one MLflow endpoint."""

    def __init__(self, client: RegistryClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self._clock = clock
        self._since = clock()  # when this watcher started, or last succeeded
        self._followers: dict[str, Follower] = {}
        self._snapshots: dict[str, ModelSnapshot] = {}
        self._ready_versions: dict[tuple[str, str], VersionInfo] = {}  # READY is final: cache
        self._swept: set[str] = set()
        self._changed_at: dict[str, float] = {}  # monotonic time a sweep saw the model change
        self._synced = False
        self._last_sync: datetime | None = None
        self._error = ""
        self._reason = ""
        self._failures = 0
        self._told_stalled = False  # whether followers were woken to a stall not over yet
        self._poke = asyncio.Event()
        self._swept_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- followers -------------------------------------------------------------------------
    def follow(self, key: str, follower: Follower) -> None:
        known = {f.model for f in self._followers.values()}
        listed = self._listed_models()
        previous = self._followers.get(key)
        self._followers[key] = follower
        if follower.model not in known or (previous and previous.interval > follower.interval):
            self._poke.set()
        new_pins = follower.pinned_versions - (previous.pinned_versions if previous else set())
        if new_pins or (follower.all_versions and follower.model not in listed):
            self._swept.discard(follower.model)  # what it needs is read by the next sweep
            self._poke.set()
        self._ensure_running()

    def unfollow(self, key: str) -> None:
        self._followers.pop(key, None)
        if not self._followers:
            self._poke.set()  # let the loop see it is idle and end

    @property
    def idle(self) -> bool:
        return not self._followers

    @property
    def followers(self) -> tuple[str, ...]:
        """The keys (namespace/name) of the ModelDeployments that follow this endpoint."""
        return tuple(self._followers)

    def follows_model(self, model: str) -> bool:
        return any(f.model == model for f in self._followers.values())

    def poke(self) -> None:
        """Sweep now (a webhook said something changed)."""
        self._poke.set()

    def update_credentials(self, credentials: Credentials) -> None:
        self.client.credentials = credentials

    # -- reading ---------------------------------------------------------------------------
    async def wait_for(self, model: str, within: float) -> None:
        """Return once a sweep that includes `model` has run (or failed), or after `within` s."""
        deadline = time.monotonic() + within
        while model not in self._swept and self._error == "" and time.monotonic() < deadline:
            self._poke.set()
            self._swept_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._swept_event.wait(), deadline - time.monotonic())

    def seconds_since_change(self, model: str) -> float | None:
        """How long ago a sweep last saw `model` change (for the resolution-lag metric)."""
        changed = self._changed_at.get(model)
        return None if changed is None else time.monotonic() - changed

    def state(self, model: str) -> RegistryState:
        stalled = self._stalled()
        if stalled:
            return RegistryState(
                snapshot=self._snapshots.get(model),
                synced=False,
                last_sync=self._last_sync,
                error=stalled,
                reason=REGISTRY_STALLED,
            )
        return RegistryState(
            snapshot=self._snapshots.get(model),
            synced=self._synced,
            last_sync=self._last_sync,
            error=self._error
            or ("" if self._synced else f"no sweep of {self.client.display_url} completed yet"),
            reason=self._reason or REGISTRY_STALLED,
        )

    def _stalled(self) -> str:
        """Why the registry must not be trusted though no sweep failed, or ""."""
        if self._error:
            return ""  # a failed sweep says what is wrong itself
        limit = STALL_INTERVALS * self._interval()
        waited = self._clock() - self._since
        if waited <= limit:
            return ""
        what = "completed" if self._synced else "completed since this endpoint was followed"
        return (
            f"no sweep of {self.client.display_url} has {what} for {waited:.0f}s "
            f"({STALL_INTERVALS} poll intervals of {self._interval():.0f}s)"
        )

    def _interval(self) -> float:
        return min((f.interval for f in self._followers.values()), default=30.0)

    # -- the loop --------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"registry-watcher {self.client.display_url}"
            )

    async def run(self) -> None:
        while self._followers:
            self._poke.clear()
            sweeping = asyncio.ensure_future(self._guarded_sweep())
            while not sweeping.done():  # a sweep that hangs is told once it counts as stalled
                until = STALL_INTERVALS * self._interval() - (self._clock() - self._since)
                await asyncio.wait({sweeping}, timeout=until if until > 0 else self._interval())
                self._tell_stall()
            self._tell_stall()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._next_delay())
        await self.client.close()

    async def _guarded_sweep(self) -> None:
        try:
            await self.sweep()
        except Exception:  # a bug must not end the loop; the watchdog reports the silence
            logger.exception("registry sweep of %s crashed", self.client.display_url)

    def _tell_stall(self) -> None:
        """Wake every follower when the watchdog starts or stops calling this registry stalled:
        followers at rest are reconciled only when woken (core/modeldeployment/recheck.py)."""
        stalled = bool(self._stalled())
        if stalled != self._told_stalled:
            self._told_stalled = stalled
            self._wake({f.model for f in self._followers.values()})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    def _next_delay(self) -> float:
        interval = self._interval()
        if self._failures == 0:
            return interval
        backoff = interval * float(2 ** min(self._failures - 1, 6))
        return min(backoff, max(interval, MAX_BACKOFF_SECONDS))

    async def sweep(self) -> None:
        """Read every followed model once; wake the followers of what changed."""
        names = sorted({f.model for f in self._followers.values()})
        if not names:
            return
        started = time.monotonic()
        before = self.client.requests
        was_synced = self._synced
        try:
            found = await self._read(names)
            found = {name: await self._with_versions(snap) for name, snap in found.items()}
        except RegistryError as exc:
            self._failed(names, str(exc), exc.reason, was_synced)
            return
        except Exception as exc:  # whatever it is, the followers must hear of it
            logger.exception("registry sweep of %s failed", self.client.display_url)
            message = f"reading MLflow at {self.client.display_url} failed: {type(exc).__name__}"
            self._failed(names, message, REGISTRY_BAD_RESPONSE, was_synced)
            return
        finally:
            label = self.client.display_url
            metrics.REGISTRY_REQUESTS.labels(endpoint=label).inc(self.client.requests - before)
            metrics.REGISTRY_SWEEP_SECONDS.observe(time.monotonic() - started)
            self._swept_event.set()
        changed = [n for n in names if found.get(n) != self._snapshots.get(n)]
        seen = time.monotonic()
        for name in changed:
            self._changed_at[name] = seen
        newly_swept = [n for n in names if n not in self._swept]
        self._snapshots = {n: found[n] for n in names if n in found}
        self._swept.update(names)
        self._synced, self._error, self._reason, self._failures = True, "", "", 0
        self._since = self._clock()
        self._last_sync = datetime.now(UTC)
        self._wake(names if not was_synced else [*changed, *newly_swept])

    def _failed(self, names: list[str], error: str, reason: str, was_synced: bool) -> None:
        news = was_synced or self._failures == 0 or (error, reason) != (self._error, self._reason)
        self._failures += 1
        self._synced = False
        self._error, self._reason = error, reason
        metrics.REGISTRY_ERRORS.labels(endpoint=self.client.display_url).inc()
        logger.warning("registry sweep of %s failed: %s", self.client.display_url, error)
        if news:  # followers report it now (and again when the fault changes, not every retry)
            self._wake(names)

    def _listed_models(self) -> set[str]:
        return {f.model for f in self._followers.values() if f.all_versions}

    async def _read(self, names: list[str]) -> dict[str, ModelSnapshot]:
        """Snapshots of the named models, in as few requests as the followers allow.

        Models followed only through spec.model.selector are read with model-versions/search
        alone (it carries every version's tags and status, not aliases); the others with
        registered-models/search, plus model-versions/search when a selector or gates (which
        need the selected version's tags at every sweep) follow them too. A model that
        model-versions/search does not list has no versions or does not exist:
        registered-models/search tells which (only then is it asked).
        """
        listed = self._listed_models() & set(names)
        # alias, stage and pinned followers need registered-models/search
        aliased = {f.model for f in self._followers.values() if f.aliases}
        searched = [n for n in names if n in aliased]
        found = await self.client.search_models(searched) if searched else {}
        versions = await self.client.search_versions(sorted(listed)) if listed else {}
        absent = [n for n in sorted(listed) if n not in versions and n not in found]
        if absent:
            found.update(await self.client.search_models(absent))
        for name in listed:
            every = {v.version: v for v in versions.get(name, [])}
            if name in found:
                snap = found[name]
                found[name] = replace(snap, versions={**snap.versions, **every}, all_versions=True)
            elif every:
                found[name] = ModelSnapshot(name=name, versions=every, all_versions=True)
        return found

    async def _with_versions(self, snapshot: ModelSnapshot) -> ModelSnapshot:
        """Add the versions aliases and pins point to (search results carry only the latest)."""
        wanted = set(snapshot.aliases.values())
        for follower in self._followers.values():
            if follower.model == snapshot.name:
                wanted |= follower.pinned_versions
        extra: dict[str, VersionInfo] = {}
        for version in sorted(wanted - set(snapshot.versions)):
            key = (snapshot.name, version)
            info = self._ready_versions.get(key) or await self.client.get_version(*key)
            if info is None:
                continue
            if info.status == VERSION_READY:
                self._ready_versions[key] = info
            extra[version] = info
        if not extra:
            return snapshot
        return replace(snapshot, versions={**snapshot.versions, **extra})

    def _wake(self, models: Iterable[str]) -> None:
        wanted = set(models)
        for follower in list(self._followers.values()):
            if follower.model in wanted:
                follower.wake()


class RegistryHub:
    """All watchers of this operator, one per MLflow endpoint and credentials."""

    def __init__(self, timeout_seconds: float = 10.0, tls: ssl.SSLContext | None = None) -> None:
        self._watchers: dict[str, RegistryWatcher] = {}
        self._timeout = timeout_seconds
        self._tls = tls

    def follow(
        self,
        key: str,
        identity: str,
        url: str,
        credentials: Credentials,
        follower: Follower,
    ) -> RegistryWatcher:
        """Make `key` follow a model on one endpoint, and on that endpoint only.

        A ModelDeployment whose trackingUri, serverRef or credentials Secret changed leaves
        the watcher of its old endpoint here; a watcher nobody follows stops polling.
        """
        watcher = self._watchers.get(identity)
        if watcher is None:
            watcher = self._watchers[identity] = RegistryWatcher(self.new_client(url, credentials))
        elif watcher.client.credentials != credentials:
            watcher.update_credentials(credentials)
        self._unfollow(key, keep=identity)
        watcher.follow(key, follower)
        return watcher

    def unfollow(self, key: str) -> None:
        self._unfollow(key, keep=None)

    def new_client(self, url: str, credentials: Credentials) -> RegistryClient:
        """A client of its own (the caller closes it), with the hub's timeout and TLS."""
        return RegistryClient(url, credentials, timeout_seconds=self._timeout, tls=self._tls)

    def endpoints(self) -> list[str]:
        """Identities of the watchers that run (for tests and debugging)."""
        return sorted(self._watchers)

    def _unfollow(self, key: str, keep: str | None) -> None:
        for identity, watcher in list(self._watchers.items()):
            if identity == keep:
                continue
            watcher.unfollow(key)
            if watcher.idle:
                del self._watchers[identity]

    def poke_model(self, model: str) -> int:
        """Make every watcher that follows `model` sweep now; returns how many."""
        poked = [w for w in self._watchers.values() if w.follows_model(model)]
        for watcher in poked:
            watcher.poke()
        return len(poked)

    def health(self) -> list[tuple[str, bool, datetime | None, tuple[str, ...]]]:
        """Each endpoint read now: its URL, whether its last sweep succeeded, when one last
        did, and the ModelDeployments (namespace/name) that follow it (the operator's registry
        metrics; called from the scrape thread, hence the copies)."""
        found = []
        for watcher in list(self._watchers.values()):
            state = watcher.state("")  # whether and when it synced is the same for every model
            found.append((watcher.client.url, state.synced, state.last_sync, watcher.followers))
        return found

    async def close(self) -> None:
        for watcher in self._watchers.values():
            await watcher.stop()
        self._watchers.clear()
