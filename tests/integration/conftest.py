"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mlflowstack.stack import MlflowStack
from tests.support.counting_proxy import CountingProxy


@pytest.fixture
def counting_proxy(mlflow_stack: MlflowStack) -> Iterator[CountingProxy]:
    """A CountingProxy in front of the real MLflow stack (also a plain-HTTP forward proxy)."""
    proxy = CountingProxy(mlflow_stack.tracking_uri).start()
    yield proxy
    proxy.stop()
