"""Test tiers: unit (no I/O), integration (local MLflow stack), e2e (Kubernetes test cluster).

The environment fixtures live next to the programs they start and are loaded as plugins here.
"""

pytest_plugins = [
    "tests.cluster.fixtures",
    "tests.mlflowstack.fixtures",
]
