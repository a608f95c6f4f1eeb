"""Reads the load of serving pods from their /metrics: the input of the operator's autoscaler
(core/modeldeployment/autoscaling.py says why it reads pods and not Prometheus)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from mlflow_operator.core.modeldeployment.autoscaling import LoadSample, PodLoad
from mlflow_operator.core.modeldeployment.canary import Traffic
from mlflow_operator.core.modeldeployment.monitoring import PodDrift
from mlflow_operator.core.modeldeployment.observation import ready_address

logger = logging.getLogger(__name__)

IN_FLIGHT = "mlflow_serving_in_flight_requests"
QUEUE_DEPTH = "mlflow_serving_queue_depth"
ANSWERED = "mlflow_serving_requests_total"
LATENCY_BUCKET = "mlflow_serving_request_duration_seconds_bucket"
MIRRORED = "mlflow_serving_mirrored_requests_total"  # copies sent to a shadow (strategy Shadow)
FEATURE_DRIFT = "mlflow_serving_feature_drift"  # serving.monitoring.drift
DRIFT_REFERENCE_ROWS = "mlflow_serving_drift_reference_rows"


def parse_load(pod: str, text: str) -> PodLoad | None:
    """A pod's load from the text exposition format; None without the runtime's series (not
    the batched runtime, or an older one)."""
    totals = {IN_FLIGHT: 0.0, QUEUE_DEPTH: 0.0, ANSWERED: 0.0}
    seen = set()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in totals:
                    totals[sample.name] += sample.value
                    seen.add(sample.name)
    except ValueError:
        return None
    if IN_FLIGHT not in seen:
        return None
    return PodLoad(pod, totals[IN_FLIGHT], totals[QUEUE_DEPTH], totals[ANSWERED])


def parse_traffic(text: str) -> Traffic | None:
    """A pod's answers (all, and those not 2xx) and latency buckets, summed over its label
    sets; None without the runtime's series."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    mirrored: dict[tuple[str, str], float] = {}
    seen = False
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == ANSWERED:
                    seen = True
                    requests += sample.value
                    if not str(sample.labels.get("status", "")).startswith("2"):
                        errors += sample.value
                elif sample.name == LATENCY_BUCKET:
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
                elif sample.name == MIRRORED:
                    key = (sample.labels["candidate_version"], sample.labels["outcome"])
                    mirrored[key] = mirrored.get(key, 0.0) + sample.value
    except (ValueError, KeyError):
        return None
    return Traffic(requests, errors, buckets, mirrored) if seen or buckets else None


def parse_drift(text: str) -> PodDrift | None:
    """A pod's drift scores and reference; None when its metrics cannot be read."""
    scores: dict[tuple[str, str], float] = {}
    source, rows = None, 0
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == FEATURE_DRIFT:
                    scores[(sample.labels["kind"], sample.labels["feature"])] = sample.value
                elif sample.name == DRIFT_REFERENCE_ROWS and sample.value >= rows:
                    source, rows = sample.labels["source"], int(sample.value)
    except (ValueError, KeyError):
        return None
    return PodDrift(scores, source, rows)


def ready_pod_addresses(pods: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Pod name -> IP of the pods that are Ready and not being deleted."""
    found = {}
    for pod in pods:
        address = ready_address(pod)
        if address is not None:
            found[str((pod.get("metadata") or {}).get("name"))] = address
    return found


def running_pod_addresses(pods: Sequence[dict[str, Any]]) -> list[str]:
    """IPs of the pods that have one and are not being deleted, ready or not (the activator
    asks them /ping itself)."""
    return [
        str(pod["status"]["podIP"])
        for pod in pods
        if (pod.get("status") or {}).get("podIP")
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]


def starting_pods(pods: Sequence[dict[str, Any]]) -> int:
    """Pods not being deleted that are not Ready yet: starting, or loading their model."""
    ready = ready_pod_addresses(pods)
    return sum(
        1
        for pod in pods
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
        and str((pod.get("metadata") or {}).get("name")) not in ready
    )


class PodMetricsReader:
    """One HTTP session for all scrapes of this operator process."""

    def __init__(self, timeout_seconds: float = 2.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def sample(self, pods: Sequence[dict[str, Any]], port: int, now: datetime) -> LoadSample:
        """The load of every ready pod that answers in time; a pod that does not is left out
        (the average is over the pods that answered, as an HPA's is)."""
        addresses = ready_pod_addresses(pods)
        loads = await asyncio.gather(
            *(self._read(name, f"http://{ip}:{port}/metrics") for name, ip in addresses.items())
        )
        return LoadSample(now, tuple(load for load in loads if load is not None))

    async def traffic(self, pods: Sequence[dict[str, Any]], port: int) -> Traffic:
        """The answers of every ready pod that answers in time, summed (a canary's judgement)."""
        texts = await asyncio.gather(
            *(
                self._text(name, f"http://{ip}:{port}/metrics")
                for name, ip in ready_pod_addresses(pods).items()
            )
        )
        total = Traffic()
        for text in texts:
            traffic = parse_traffic(text) if text is not None else None
            if traffic is not None:
                total += traffic
        return total

    async def drift(self, pods: Sequence[dict[str, Any]], port: int) -> list[PodDrift]:
        """The drift metrics of every ready pod that answers in time."""
        texts = await asyncio.gather(
            *(
                self._text(name, f"http://{ip}:{port}/metrics")
                for name, ip in ready_pod_addresses(pods).items()
            )
        )
        readings = [parse_drift(text) for text in texts if text is not None]
        return [reading for reading in readings if reading is not None]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _read(self, pod: str, url: str) -> PodLoad | None:
        text = await self._text(pod, url)
        return parse_load(pod, text) if text is not None else None

    async def _text(self, pod: str, url: str) -> str | None:
        if self._session is None or self._session.closed:
            # no proxy: pod IPs are never what an egress proxy is for
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    return None
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            logger.debug("no metrics from pod %s: %s", pod, type(exc).__name__)
            return None
