"""What kopf keeps per object: the operator's memo itself, not a copy (runner.SharedMemo), and a
record for ModelDeployments only (runner.ModelDeploymentMemories)."""

from __future__ import annotations

from kopf import Memo
from kopf._core.reactor.inventory import ResourceMemories

from mlflow_operator.runner import ModelDeploymentMemories, SharedMemo


def _body(
    uid: str, kind: str = "ModelDeployment", api_version: str = "mlflowops.dev/v1alpha1"
) -> dict[str, object]:
    return {
        "apiVersion": api_version,
        "kind": kind,
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


async def test_only_model_deployments_are_remembered_from_one_event_to_the_next() -> None:
    memories = ModelDeploymentMemories()
    md = await memories.recall(_body("md"), memobase=SharedMemo())
    md.fully_handled_once = True  # what kopf sets once a change handler's work is done
    again = await memories.recall(_body("md"), memobase=SharedMemo())
    assert again is md
    assert again.fully_handled_once

    for kind, api_version in [
        ("Deployment", "apps/v1"),
        ("Pod", "v1"),
        ("ModelDeployment", "elsewhere.example/v1"),  # a kind of the same name, not ours
        ("MLflowServer", "mlflowops.dev/v1alpha1"),
    ]:
        child = await memories.recall(_body("c", kind, api_version), memobase=SharedMemo())
        assert await memories.recall(_body("c", kind, api_version)) is not child, kind
    assert list(memories.iter_all_memories()) == [md]
