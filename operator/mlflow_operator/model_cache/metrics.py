"""The model cache's Prometheus metrics: its downloads, hits, misses and prefetches, and the
store's size and evictions read at scrape time."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlflow_operator.core.model_cache import DONE, FAILED, UNSUPPORTED
from mlflow_operator.model_cache.store import CachedVersion, Store


class CacheMetrics:
    """The cache's own registry (it is its own program: no operator series on its /metrics)."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.upstream_bytes = Counter(
            "mlflow_model_cache_upstream_bytes",
            "Bytes of model version files downloaded from the tracking server into the cache.",
            ["model", "version"],
            registry=self.registry,
        )
        self.served_bytes = Counter(
            "mlflow_model_cache_served_bytes",
            "Bytes of model version files served to pods, by source: cache (a hit, nothing "
            "downloaded) or upstream (downloaded for this request or one it waited for).",
            ["model", "version", "source"],
            registry=self.registry,
        )
        self.hits = Counter(
            "mlflow_model_cache_hits",
            "Artifact downloads served from the cache's disk.",
            registry=self.registry,
        )
        self.misses = Counter(
            "mlflow_model_cache_misses",
            "Artifact downloads of a known version whose file the cache had to download.",
            registry=self.registry,
        )
        self.uncached = Counter(
            "mlflow_model_cache_uncached_requests",
            "Artifact downloads forwarded without caching: not a file of a version the cache "
            "saw the download URI of, a Range request, or a compressed answer.",
            registry=self.registry,
        )
        self.prefetches = Counter(
            "mlflow_model_cache_prefetches",
            "Finished prefetches of a model version, by result (Done, Failed, Unsupported).",
            ["result"],
            registry=self.registry,
        )
        for result in (DONE, FAILED, UNSUPPORTED):  # at 0 from the start: increase() sees 1
            self.prefetches.labels(result)
        self.registry.register(_StoreCollector(store))

    def forget(self, entry: CachedVersion) -> None:
        """An evicted version's series go (the labels of versions must not grow forever)."""
        with contextlib.suppress(KeyError):
            self.upstream_bytes.remove(entry.model, entry.version)
        for source in ("cache", "upstream"):
            with contextlib.suppress(KeyError):
                self.served_bytes.remove(entry.model, entry.version, source)


class _StoreCollector(Collector):
    """The store's size and evictions, read at scrape time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "mlflow_model_cache_size_bytes",
                "Bytes of model version files in the cache.",
                value=self._store.total_bytes,
            ),
            CounterMetricFamily(
                "mlflow_model_cache_evictions",
                "Model versions deleted from the cache (beyond keepVersions, or max bytes).",
                value=self._store.evictions,
            ),
        ]
