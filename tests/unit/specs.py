"""The ModelDeployment spec the unit tests start from, changed field by field where they need."""

from __future__ import annotations

from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec


def spec(model: str = "fraud-model", /, **overrides: Any) -> ModelDeploymentSpec:
    """Serve `model` (alias champion) from the MLflowServer "mlflow", with each top-level spec
    field in `overrides` (a whole section, e.g. `serving={...}`) in place of the default.

    The model name is positional-only, so that `model={...}` is still an override of the whole
    section.
    """
    body: dict[str, Any] = {
        "model": {"name": model, "alias": "champion"},
        "registry": {"serverRef": {"name": "mlflow"}},
    }
    body.update(overrides)
    return ModelDeploymentSpec.model_validate(body)
