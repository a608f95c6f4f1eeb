"""The registry credentials Secrets in use, read once per poll interval each, however many
ModelDeployments use one; those that use it are woken when it changes or goes.

The operator has no list or watch on Secrets, by design (it cannot enumerate them:
docs/operations.md#rbac), so a Secret cannot wake a ModelDeployment the way its children's
watch events do. Without this, every ModelDeployment that reads the registry with a Secret
would have to be reconciled every poll interval just to re-read it (10,000 of them at 30 s:
333 reconciles and GETs a second); with it, one GET per Secret per interval, and a
ModelDeployment at rest is not reconciled at all (core/modeldeployment/recheck.py).
Hand-written: kopf watches only what it may list.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)
SecretReader = Callable[[str, str], Awaitable[dict[str, str] | None]]  # (name, namespace)


def digest(data: dict[str, str] | None) -> str:
    """A fingerprint of a Secret's values (kept instead of the values; never logged)."""
    if data is None:
        return "absent"
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass
class _InUse:
    digest: str
    users: dict[str, tuple[float, Callable[[], None]]] = field(default_factory=dict)


@dataclass
class SecretWatch:
    """Users are keys their caller chooses: a ModelDeployment's namespace/name for its
    registry credentials, with "#reader" for its serving pods' own Secret."""

    read: SecretReader
    _secrets: dict[tuple[str, str], _InUse] = field(default_factory=dict)  # (ns, name) -> ...
    _task: asyncio.Task[None] | None = None

    def use(
        self,
        key: str,
        secret: tuple[str, str],
        *,
        data: dict[str, str] | None,
        interval: float,
        wake: Callable[[], None],
    ) -> None:
        """`key` (namespace/name of a ModelDeployment) read `data` from the Secret `secret`
        (namespace, name) now; it is woken when that changes."""
        self.forget(key, keep=secret)
        # a Secret already in use keeps the digest its last check saw: one user reading a
        # change first must not hide that change from the others
        found = self._secrets.setdefault(secret, _InUse(digest(data)))
        found.users[key] = (interval, wake)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="secret-watch")

    def forget(self, key: str, keep: tuple[str, str] | None = None) -> None:
        for secret, found in list(self._secrets.items()):
            if secret != keep:
                found.users.pop(key, None)
                if not found.users:
                    del self._secrets[secret]

    def uses(self, key: str, secret: tuple[str, str]) -> bool:
        found = self._secrets.get(secret)
        return found is not None and key in found.users

    def watched(self) -> list[tuple[str, str]]:
        """(namespace, name) of every Secret read (for tests and debugging)."""
        return sorted(self._secrets)

    async def check(self) -> None:
        """Read every Secret in use once; wake the users of each that changed or went."""
        for (namespace, name), found in list(self._secrets.items()):
            try:
                now = digest(await self.read(name, namespace))
            except Exception as exc:  # noqa: BLE001  (the reconcile reports API errors itself)
                logger.debug("reading Secret %s/%s: %s", namespace, name, type(exc).__name__)
                continue
            if now != found.digest:
                found.digest = now
                for _, wake in list(found.users.values()):
                    wake()

    async def _run(self) -> None:
        while self._secrets:
            interval = min(i for found in self._secrets.values() for i, _ in found.users.values())
            await asyncio.sleep(interval)
            await self.check()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
