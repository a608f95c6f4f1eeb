"""The operator's memo is not copied per object (runner.SharedMemo)."""

from __future__ import annotations

from kopf import Memo
from kopf._core.reactor.inventory import ResourceMemories

from mlflow_operator.runner import SharedMemo


def _body(uid: str) -> dict[str, object]:
    return {
        "apiVersion": "mlflowops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"namespace": "ml", "name": f"md-{uid}", "uid": uid},
    }


async def test_every_object_kopf_remembers_gets_the_operators_memo_itself() -> None:
    memo = SharedMemo(config="the config")
    memories = ResourceMemories()  # where kopf copies the memo for each object it sees
    first = await memories.recall(_body("a"), memobase=memo)
    second = await memories.recall(_body("b"), memobase=memo)
    assert first.memo is memo
    assert second.memo is memo
    memo.wakers = {}  # what the startup handler sets is seen from every object's memo
    assert first.memo.wakers is memo.wakers


async def test_kopfs_own_memo_is_copied_per_object() -> None:
    """The behaviour SharedMemo changes: fails if kopf stops copying (then it is not needed)."""

    memo = Memo(config="the config")
    memory = await ResourceMemories().recall(_body("a"), memobase=memo)
    assert memory.memo is not memo
    assert memory.memo == memo
