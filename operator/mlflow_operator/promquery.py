"""Canary analysis read from Prometheus, when the operator is given one (prometheus_url): the
answers of one version's serving pods over a window, the same Traffic that podmetrics.py sums
from the pods' own /metrics.

Why a second source: the pods' counters start when a pod starts, so a stable pod that has run
for weeks weighs its old answers into the judgement, and a pod that restarts takes its counts
with it. Prometheus keeps every pod's series, restarts included, and increase() over a window
asks about the recent answers only. Without series (Prometheus does not scrape those pods, or
not for two scrapes yet, or the runtime exports no /metrics) the answer is None, "no data", and
the judgement waits; never zero, which would read as "no requests".

The series are selected by the runtime's own labels, `model_name` and `model_version`
(mlflow_operator_serve/metrics.py), and by the label that names the pod's namespace, which
the scraper adds: NAMESPACE_LABEL. The Prometheus Operator (the chart's PodMonitor) calls it
`namespace`, as do the `kubernetes-pods` jobs of the prometheus-community chart and of
Prometheus' own example configuration.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp

from mlflow_operator.core.modeldeployment.canary import Traffic
from mlflow_operator.core.redact import redact

if TYPE_CHECKING:
    from mlflow_operator.config import OperatorConfig

logger = logging.getLogger(__name__)

# The label a Prometheus scraping the serving pods puts their namespace in. Not the pod's own
# label: the runtime does not know its namespace, the scrape (service discovery) does.
NAMESPACE_LABEL = "namespace"
# The serving runtime's labels on every series (mlflow_operator_serve/metrics.py)
MODEL_NAME_LABEL = "model_name"
MODEL_VERSION_LABEL = "model_version"

ANSWERED = "mlflow_serving_requests_total"
LATENCY_BUCKET = "mlflow_serving_request_duration_seconds_bucket"
MIRRORED = "mlflow_serving_mirrored_requests_total"  # copies sent to a shadow, by outcome
CANDIDATE_VERSION_LABEL = "candidate_version"
QUERY_PATH = "/api/v1/query"


def promql_string(value: str) -> str:
    """`value` as a double-quoted PromQL string literal. PromQL reads Go's escapes: a
    backslash and a double quote must be escaped, and a newline ends the string unless it is."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def selector(
    *, namespace: str, model_name: str, version: str, extra: Mapping[str, str] | None = None
) -> str:
    """The label matchers of one version's serving pods, exact matches only (a model name
    may hold regex characters: `fraud.v2`)."""
    labels = {
        NAMESPACE_LABEL: namespace,
        MODEL_NAME_LABEL: model_name,
        MODEL_VERSION_LABEL: version,
        **(extra or {}),
    }
    return "{" + ", ".join(f"{name}={promql_string(value)}" for name, value in labels.items()) + "}"


def requests_query(labels: str, window_seconds: int) -> str:
    """Answers per HTTP status over the window, every pod of the version summed."""
    return f"sum by (status) (increase({ANSWERED}{labels}[{_window(window_seconds)}]))"


def buckets_query(labels: str, window_seconds: int) -> str:
    """Answers per latency bucket (cumulative, as `le` says) over the window, every pod and
    status summed."""
    return f"sum by (le) (increase({LATENCY_BUCKET}{labels}[{_window(window_seconds)}]))"


def mirrored_query(labels: str, window_seconds: int) -> str:
    """Copies the pods sent to one shadow version over the window, per outcome (the labels
    name the shadow's version in candidate_version)."""
    return f"sum by (outcome) (increase({MIRRORED}{labels}[{_window(window_seconds)}]))"


def _window(seconds: int) -> str:
    if seconds < 1:
        raise ValueError(f"the window is at least 1s, not {seconds}s")
    return f"{seconds}s"


def vector(answer: Any, label: str) -> dict[str, float] | None:
    """An instant vector answer of /api/v1/query as {value of `label`: sample value}; None when
    it is not a successful vector answer or a value is not a finite number. A series without
    the label counts under ""."""
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        return None
    data = answer.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        return None
    found: dict[str, float] = {}
    try:
        for series in data["result"]:
            key = str(series.get("metric", {}).get(label, ""))
            value = float(series["value"][1])  # [timestamp, "value"]: values are strings
            if not math.isfinite(value):
                return None
            found[key] = found.get(key, 0.0) + value
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None
    return found


def traffic_from_answers(requests_answer: Any, buckets_answer: Any) -> Traffic | None:
    """Traffic from the answers of requests_query and buckets_query; None when either is not a
    usable answer, or when neither has a series (no data, which is not zero answers).
    `errors` are the answers whose status does not start with 2, as podmetrics.py counts them."""
    statuses = vector(requests_answer, "status")
    bounds = vector(buckets_answer, "le")
    if statuses is None or bounds is None:
        return None
    if not statuses and not bounds:
        return None
    try:
        buckets = {float(le): count for le, count in bounds.items()}  # "+Inf" is inf
    except ValueError:
        return None
    return Traffic(
        requests=sum(statuses.values()),
        errors=sum(count for status, count in statuses.items() if not status.startswith("2")),
        buckets=buckets,
    )


class PrometheusTraffic:
    """One HTTP session for every query of this operator process.

    `url` is the Prometheus base URL, a path prefix allowed (`https://example.com/prometheus`);
    `user:password@` in it is sent as basic auth and never logged. Proxies: HTTPS_PROXY,
    HTTP_PROXY and NO_PROXY, as for MLflow (a Prometheus can live outside the cluster).
    """

    def __init__(
        self, url: str, *, timeout_seconds: float = 30.0, ca_bundle_file: str = ""
    ) -> None:
        self._url = url.rstrip("/")
        self._timeout_seconds = timeout_seconds
        self._tls: ssl.SSLContext | bool = True  # the system's CAs
        if ca_bundle_file:  # a private CA, besides the system's (as for MLflow)
            self._tls = ssl.create_default_context()
            self._tls.load_verify_locations(cafile=ca_bundle_file)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(cls, config: OperatorConfig) -> PrometheusTraffic | None:
        """The source the operator's settings ask for; None without prometheus_url (then the
        pods' /metrics are the source)."""
        if not config.prometheus_url:
            return None
        return cls(
            config.prometheus_url,
            timeout_seconds=config.request_timeout_seconds,
            ca_bundle_file=config.ca_bundle_file,
        )

    async def traffic(
        self,
        *,
        namespace: str,
        model_name: str,
        version: str,
        window_seconds: int,
        mirrored_to: str | None = None,
    ) -> Traffic | None:
        """The answers of the serving pods of `model_name` `version` in `namespace` over the
        last `window_seconds`; None (no data: the judgement waits) when Prometheus cannot be
        reached, answers an error, or has no series of them. Pick a window of at least two
        scrape intervals (four is Prometheus' advice): increase() needs two samples in it.

        The counts are increase()'s: extrapolated to the window's edges, so fractional, and up
        to about one scrape interval's worth larger than what was counted. `mirrored_to`: also
        the copies these pods sent to that shadow version (strategy Shadow), by outcome."""
        labels = selector(namespace=namespace, model_name=model_name, version=version)
        queries = [requests_query(labels, window_seconds), buckets_query(labels, window_seconds)]
        if mirrored_to is not None:
            copies = selector(
                namespace=namespace, model_name=model_name, version=version,
                extra={CANDIDATE_VERSION_LABEL: mirrored_to},
            )  # fmt: skip
            queries.append(mirrored_query(copies, window_seconds))
        answers = await asyncio.gather(*(self._query(query) for query in queries))
        if any(answer is None for answer in answers):
            return None
        traffic = traffic_from_answers(answers[0], answers[1])
        if traffic is not None and mirrored_to is not None:
            outcomes = vector(answers[2], "outcome") or {}
            mirrored = {(mirrored_to, outcome): n for outcome, n in outcomes.items()}
            traffic = replace(traffic, mirrored=mirrored)
        if traffic is None:
            logger.debug(
                "no canary analysis data in Prometheus for %s version %s in %s",
                model_name,
                version,
                namespace,
            )
        return traffic

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _query(self, expr: str) -> Any:
        """The JSON answer of an instant query; None, logged at debug level, when there is none
        or Prometheus says the query failed."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_seconds),
                connector=aiohttp.TCPConnector(ssl=self._tls),
                trust_env=True,
            )
        # Prometheus' own timeout too, so that it stops evaluating a query nobody waits for
        params = {"query": expr, "timeout": f"{self._timeout_seconds:g}"}
        try:
            async with self._session.get(self._url + QUERY_PATH, params=params) as resp:
                # an error answer (400 bad_data, 422 execution, 503 timeout) is JSON too
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.debug(
                "no answer from Prometheus %s: %s %s",
                redact(self._url),
                type(exc).__name__,
                redact(str(exc)),
            )
            return None
        if not isinstance(answer, Mapping) or answer.get("status") != "success":
            error = answer.get("error") if isinstance(answer, Mapping) else None
            logger.debug(
                "Prometheus %s refused a canary analysis query (HTTP %s): %s",
                redact(self._url),
                resp.status,
                redact(str(error or answer)[:200]),
            )
            return None
        return answer
