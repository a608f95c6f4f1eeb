"""Asks the model cache of each node that serves a ModelDeployment to prefetch its new version
(serving.cache). What the answers mean for the rollout: core/modeldeployment/prefetch.py. The
cache itself: mlflow_operator/model_cache/."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.model_cache import CACHE_PORT, PrefetchState
from mlflow_operator.core.modeldeployment.prefetch import (
    NODE_FAILED,
    NODE_NO_CACHE,
    NodePrefetch,
    PrefetchVerdict,
    cache_addresses,
    equality_selector,
    finished,
    judge_prefetch,
    serving_nodes,
)
from mlflow_operator.core.redact import redact
from mlflow_operator.kube.refusals import NamingKube
from mlflow_operator.registry.client import RegistryClient

logger = logging.getLogger(__name__)

# one question to one node's cache: it answers at once (the download runs in the background)
ASK_SECONDS = 5.0


@dataclass
class Prefetches:
    """One per operator process. At each reconcile of a ModelDeployment whose new version is
    being prefetched: one list of the cache pods, one POST per node."""

    api: NamingKube
    config: OperatorConfig
    _session: aiohttp.ClientSession | None = field(default=None, init=False)

    async def judge(
        self,
        spec: ModelDeploymentSpec,
        version: str,
        pods: list[dict[str, Any]],
        *,
        last: ModelDeploymentStatus,
        client: RegistryClient,
        now: datetime,
    ) -> PrefetchVerdict:
        """Where the prefetch of `version` onto the nodes that run `pods` (the
        ModelDeployment's) stands now (started at the first call)."""
        ended = finished(last, version)
        if ended is not None:
            return ended  # a finished prefetch is not asked again
        nodes = serving_nodes(pods)
        caches = await self._cache_addresses() if nodes else {}
        answers = await asyncio.gather(
            *(self._ask(node, caches.get(node), spec, version, client) for node in nodes)
        )
        before = last.prefetch if last.prefetch and last.prefetch.version == version else None
        return judge_prefetch(
            version, list(answers), before, now,
            timeout_seconds=self.config.prefetch_timeout_seconds,
        )  # fmt: skip

    async def _cache_addresses(self) -> dict[str, str]:
        namespace = self.config.model_cache_namespace
        labels = equality_selector(self.config.model_cache_selector)
        return cache_addresses(await self.api.list("v1", "Pod", namespace, labels))

    async def _ask(
        self,
        node: str,
        address: str | None,
        spec: ModelDeploymentSpec,
        version: str,
        client: RegistryClient,
    ) -> NodePrefetch:
        if address is None:
            return NodePrefetch(node, NODE_NO_CACHE, message="no ready model cache pod there")
        body = {
            "upstream": client.url,
            "model": spec.model.name,
            "version": version,
            "keepVersions": spec.serving.cache.keep_versions,
        }
        url = f"http://{address}:{CACHE_PORT}/prefetch"
        try:
            session = await self._session_()
            # the cache downloads with the operator's MLflow credentials, and never keeps them
            async with session.post(url, json=body, headers=client.credentials.headers()) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    message = f"the cache answered HTTP {resp.status}: {redact(text[:200])}"
                    return NodePrefetch(node, NODE_FAILED, message=message)
                state = PrefetchState.from_json(text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.info("model cache on %s (%s) did not answer: %s", node, address, exc)
            message = f"the cache did not answer: {type(exc).__name__}"
            return NodePrefetch(node, NODE_FAILED, message=message)
        return NodePrefetch(node, state.state, bytes=state.bytes, message=state.message)

    async def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_SECONDS))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
