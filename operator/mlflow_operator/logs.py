"""Logging of the operator process: text or JSON lines, through kopf's own formatter."""

from __future__ import annotations

import logging

import kopf

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def configure_logging(log_format: str, log_level: str) -> None:
    fmt = kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL
    # kopf's debug mode logs whole request and response bodies, Secrets included: never use it.
    kopf.configure(verbose=log_level == "debug", debug=False, log_format=fmt)
    logging.getLogger().setLevel(_LEVELS.get(log_level, logging.ERROR))
    # The Kubernetes and HTTP client libraries log bodies at debug level; keep them quiet.
    for noisy in ("urllib3", "httpx", "httpx2", "httpcore", "aiohttp.access", "lightkube"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
