"""The registry hub: one watcher per endpoint, and a follower on one endpoint at a time."""

from __future__ import annotations

from mlflow_operator.registry.client import Credentials
from mlflow_operator.registry.watcher import Follower, RegistryHub

# Nothing listens there: the watchers' sweeps fail at once, which is all these tests need.
A = "http://127.0.0.1:9/a"
B = "http://127.0.0.1:9/b"


async def test_a_follower_that_moves_to_another_endpoint_leaves_the_old_one() -> None:
    """Defect 8: after a change of trackingUri, serverRef or credentials Secret, the watcher of
    the old endpoint kept polling it forever.

    Failed on the code before the fix: RegistryHub had no follow(); its watcher() kept the
    old endpoint's watcher with its follower.
    """
    hub = RegistryHub(timeout_seconds=1)
    try:
        hub.follow("ml/fraud", f"{A}|-", A, Credentials(), Follower("fraud", 5.0))
        hub.follow("ml/other", f"{A}|-", A, Credentials(), Follower("other", 5.0))
        assert hub.endpoints() == [f"{A}|-"]
        hub.follow("ml/fraud", f"{B}|-", B, Credentials(), Follower("fraud", 5.0))
        assert hub.endpoints() == [f"{A}|-", f"{B}|-"]  # A still has a follower
        hub.follow("ml/other", f"{B}|ml/creds", B, Credentials("u", "p"), Follower("other", 5.0))
        assert hub.endpoints() == [f"{B}|-", f"{B}|ml/creds"]
        hub.unfollow("ml/fraud")
        assert hub.endpoints() == [f"{B}|ml/creds"]
    finally:
        await hub.close()
