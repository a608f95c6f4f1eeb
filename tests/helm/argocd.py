"""Run an Argo CD health script the way Argo CD does: `obj` global, the return value is health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa

from tests.helm.chart import ROOT

ARGOCD = ROOT / "gitops" / "argocd"
MODELDEPLOYMENT_HEALTH = ARGOCD / "health-modeldeployment.lua"
MLFLOWSERVER_HEALTH = ARGOCD / "health-mlflowserver.lua"


def run_health(script: Path, obj: dict[str, Any]) -> dict[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=False)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script.read_text())
    return {str(key): str(value) for key, value in result.items()}
