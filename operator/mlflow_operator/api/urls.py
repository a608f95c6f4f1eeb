"""URLs in the API: the userinfo part (`https://user:password@host`) holds credentials.

spec.registry.trackingUri refuses it (credentials belong in a Secret), and core/redact.py
removes it from every message the operator writes, with this one pattern.
"""

from __future__ import annotations

import re

# group 1: the scheme and "://", kept when the userinfo is redacted
USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*@")


def has_userinfo(url: str) -> bool:
    return USERINFO.search(url) is not None
