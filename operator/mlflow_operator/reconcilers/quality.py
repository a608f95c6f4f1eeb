"""Reads what the serving pods wrote to MLflow for serving.monitoring.quality (sampled
predictions and posted labels, core/modeldeployment/quality.py joins them), at most every
READ_SECONDS per ModelDeployment, each file once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class QualityReading:
    """The window after this read, and the training metric of the version's run."""

    window: QualityWindow
    training: float | None


@dataclass
class _Followed:
    identity: tuple[str, str, str, int]  # the run read, the version, the metric, the window size
    window: QualityWindow
    training: float | None = None
    read_at: float = float("-inf")


@dataclass
class LiveQuality:
    """The live-quality windows of the ModelDeployments that ask for them."""

    clock: Callable[[], float] = time.monotonic
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
            await self._read_new_files(client, writes_to, version, followed.window)
            followed.training = await _training_metric(client, version_run, settings)
        except RegistryError as exc:
            if self._problems.news(key, str(exc)):
                logger.warning("%s: cannot read the samples and labels for quality: %s", key, exc)
            return None
        self._problems.news(key, None)
        return QualityReading(followed.window, followed.training)

    def forget(self, key: str) -> None:
        self._followed.pop(key, None)
        self._problems.forget(key)

    async def _read_new_files(
        self, client: RegistryClient, run_id: str, version: str, window: QualityWindow
    ) -> None:
        root = self._roots.get((client.url, run_id))
        if root is None:
            root = await client.run_artifact_root(run_id)
            self._roots[(client.url, run_id)] = root
        # samples first: labels of this read then find the predictions of this read
        for kind, add in (("predictions", window.add_predictions), ("labels", window.add_labels)):
            listed = await client.artifact_files(f"{root}/{kind}/{version}", depth=1)
            new = [path for path in listed if path not in window.read][:FILES_PER_READ]
            for path in new:
                text = await client.artifact_text(path)
                if text is not None:
                    add(text)
                window.read.add(path)


async def _training_metric(
    client: RegistryClient, run_id: str, settings: QualityMonitoring
) -> float | None:
    if not settings.training_metric or not run_id:
        return None
    return (await client.run_metrics(run_id)).get(settings.training_metric)
