"""The Gateway API's HTTPRoute CRD for the tests of canary.httpRouteRef, from the module
sigs.k8s.io/gateway-api on the Go module proxy (into Go's module cache, never the repository).

No Gateway implementation runs in the test cluster: the tests check what the operator writes
into the route, and the Services it points at; the analysis reads the pods either way.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.gobuild import go_binary

MODULE = "sigs.k8s.io/gateway-api"
VERSION = "v1.6.3"  # Gateway API 1.6: HTTPRoute v1 (standard channel)


def httproute_crd() -> dict[str, Any]:
    """The standard channel's HTTPRoute CustomResourceDefinition."""
    found = subprocess.run(
        [go_binary(), "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        capture_output=True, text=True, check=True, timeout=600, cwd="/",
    )  # fmt: skip
    directory = Path(json.loads(found.stdout)["Dir"])
    path = directory / "config" / "crd" / "standard" / "gateway.networking.k8s.io_httproutes.yaml"
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    return crd
