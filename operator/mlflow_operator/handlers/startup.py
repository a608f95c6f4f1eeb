"""Operator-wide kopf settings, applied once at start from the OperatorConfig."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from mlflow_operator.api import API_GROUP
from mlflow_operator.config import OperatorConfig

FINALIZER = f"{API_GROUP}/finalizer"


@kopf.on.startup()
def configure_kopf(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo.config
    # Progress and diff-base live in annotations: the status schema is ours alone, and kopf's
    # own status fields would be pruned by it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.execution.max_workers = config.max_workers
    settings.networking.request_timeout = config.request_timeout_seconds
    settings.networking.connect_timeout = min(10.0, config.request_timeout_seconds)
    settings.watching.server_timeout = config.watch_timeout_seconds
    settings.watching.client_timeout = config.watch_timeout_seconds + 30
    # Bound the number of objects handled at once, so 1,000 objects cannot exhaust memory.
    settings.batching.worker_limit = 64
    # Only our explicit Events reach users; handler log lines stay in the operator's log.
    settings.posting.level = logging.WARNING
