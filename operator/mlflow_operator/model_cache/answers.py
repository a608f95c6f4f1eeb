"""The answers that the proxy (server.py) and the prefetch (prefetch.py) both deal in: the
cache's own plain-text answers, the JSON of a tracking server's answer, and how a download into
the store ended."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web


def plain(status: int, message: str) -> web.Response:
    """An answer of the cache's own: one line of text."""
    return web.Response(status=status, text=message + "\n")


def json_object(body: bytes) -> dict[str, Any]:
    """The JSON object of an answer's body; {} when it is none."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Fetched:
    """How a download into the store ended: status 200 (the file is in the store) or the
    upstream's answer (status, body, headers) to pass on; status 0: not cacheable, forward."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] | None = None
    size: int = 0
