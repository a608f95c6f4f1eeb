"""Test tiers: unit (no I/O), integration (local MLflow stack), e2e (Kubernetes test cluster).

The environment fixtures live next to the programs they start and are loaded as plugins here.

`make test` runs the suite on two pytest-xdist workers, one file at a time per worker
(`--dist loadfile`: a file's tests share module fixtures and run in order). Each worker that
runs an e2e test starts a test cluster of its own (its own real-node slot) and MLflow stack.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.cluster.fixtures",
    "tests.mlflowstack.fixtures",
]

# The files that take longest (minutes each, one module fixture or one long test) go first, so
# the two workers finish together instead of one waiting for the other's last long file.
LONGEST_FIRST = (
    "tests/e2e/test_mlflowserver.py",
    "tests/e2e/test_operator_kills.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside each rank is the collection order
