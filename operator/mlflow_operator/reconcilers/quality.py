"""Reads what the serving pods wrote to MLflow for serving.monitoring.quality (sampled
predictions and posted labels, core/modeldeployment/quality.py joins them), at most every
READ_SECONDS per ModelDeployment, each file once.

The pods write `<kind>/<version>/<UTC day>/<time>-<pid>-<n>.jsonl`. A day's directory is
listed until it is OPEN_DAYS old and every file in it has been read; then it is closed: never
listed again, and its file names forgotten. So the cost of a read, and what is remembered,
follow the last days, not the life of the version."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from cachetools import LRUCache

from mlflow_operator.api.modeldeployment import QualityMonitoring
from mlflow_operator.core.modeldeployment.quality import QualityWindow
from mlflow_operator.reconcilers.common import ToldOnce
from mlflow_operator.registry.client import RegistryClient, RegistryError

logger = logging.getLogger(__name__)

# How often the files of one ModelDeployment are listed (samples are flushed every 30 s).
READ_SECONDS = 15.0
# Files read per listing, oldest first; the rest wait for the next (an operator restarted
# next to a run with days of samples catches up over several reads, not in one reconcile).
FILES_PER_READ = 100
# ModelDeployments whose windows are kept (each up to its window of pairs, plus waiting rows)
KEPT = 1000
# A batch begun just before midnight (UTC) is uploaded into its first sample's day up to 30 s
# later: a day's directory is listed until it is this many days old.
OPEN_DAYS = 2


@dataclass(frozen=True)
class QualityReading:
    """The window after this read, and the training metric of the version's run."""

    window: QualityWindow
    training: float | None
    files_remembered: int  # names of files read, in the days still listed


@dataclass
class _Followed:
    identity: tuple[str, str, str, int]  # the run read, the version, the metric, the window size
    window: QualityWindow
    training: float | None = None
    read_at: float = float("-inf")
    read: set[str] = field(default_factory=set)  # files read, in open days
    closed: set[str] = field(default_factory=set)  # day directories read to the end


@dataclass
class LiveQuality:
    """The live-quality windows of the ModelDeployments that ask for them."""

    clock: Callable[[], float] = time.monotonic
    today: Callable[[], date] = lambda: datetime.now(UTC).date()
    _followed: LRUCache[str, _Followed] = field(default_factory=lambda: LRUCache(KEPT))
    _roots: LRUCache[tuple[str, str], str] = field(default_factory=lambda: LRUCache(KEPT))
    _problems: ToldOnce = field(default_factory=ToldOnce)

    async def read(
        self,
        key: str,
        client: RegistryClient,
        *,
        writes_to: str,
        version: str,
        version_run: str,
        settings: QualityMonitoring,
    ) -> QualityReading | None:
        """Read the new files of `writes_to` (the run the pods write to) for `version`;
        None when not read now (read less than READ_SECONDS ago, or MLflow failed: the last
        judgement stays). `version_run`: the run that logged the version (training metric)."""
        identity = (writes_to, version, settings.metric, settings.window)
        followed = self._followed.get(key)
        if followed is None or followed.identity != identity:
            followed = _Followed(identity, QualityWindow(settings.window))
            self._followed[key] = followed
        now = self.clock()
        if now - followed.read_at < READ_SECONDS:
            return None
        followed.read_at = now
        try:
            await self._read_new_files(client, writes_to, version, followed)
            followed.training = await _training_metric(client, version_run, settings)
        except RegistryError as exc:
            if self._problems.news(key, str(exc)):
                logger.warning("%s: cannot read the samples and labels for quality: %s", key, exc)
            return None
        self._problems.news(key, None)
        return QualityReading(followed.window, followed.training, len(followed.read))

    def forget(self, key: str) -> None:
        self._followed.pop(key, None)
        self._problems.forget(key)

    async def _read_new_files(
        self, client: RegistryClient, run_id: str, version: str, followed: _Followed
    ) -> None:
        root = self._roots.get((client.url, run_id))
        if root is None:
            root = await client.run_artifact_root(run_id)
            self._roots[(client.url, run_id)] = root
        today = self.today()
        # samples first: labels of this read then find the predictions of this read
        window = followed.window
        for kind, add in (("predictions", window.add_predictions), ("labels", window.add_labels)):
            paths = await self._open_files(client, f"{root}/{kind}/{version}", followed, today)
            for path in [p for p in paths if p not in followed.read][:FILES_PER_READ]:
                text = await client.artifact_text(path)
                if text is not None:
                    add(text)
                followed.read.add(path)

    async def _open_files(
        self, client: RegistryClient, base: str, followed: _Followed, today: date
    ) -> list[str]:
        """The files of the days not closed yet, oldest first; closes the days that are old
        enough and were read to the end."""
        files, days = await client.artifact_listing(base)
        paths = [f"{base}/{name}" for name in sorted(files)]
        for day in sorted(days):
            directory = f"{base}/{day}"
            if directory in followed.closed:
                continue
            names, _ = await client.artifact_listing(directory)
            listed = [f"{directory}/{name}" for name in sorted(names)]
            if _old(day, today) and followed.read.issuperset(listed):
                followed.closed.add(directory)
                followed.read.difference_update(listed)
                continue
            paths.extend(listed)
        return paths


def _old(day: str, today: date) -> bool:
    try:
        return (today - date.fromisoformat(day)).days >= OPEN_DAYS
    except ValueError:  # not a day the pods write: listed for ever
        return False


async def _training_metric(
    client: RegistryClient, run_id: str, settings: QualityMonitoring
) -> float | None:
    if not settings.training_metric or not run_id:
        return None
    return (await client.run_metrics(run_id)).get(settings.training_metric)
