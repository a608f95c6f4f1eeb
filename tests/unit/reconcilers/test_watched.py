"""Reads from the watch (reconcilers/watched.py): what was just written is read as written
until the watch tells it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mlflow_operator.builders.modeldeployment import mounts_mirror_config
from mlflow_operator.core.modeldeployment.prefetch import serving_nodes
from mlflow_operator.reconcilers.watched import (
    SharedSubtrees,
    Watched,
    WrittenAhead,
    watched_copy,
    watched_pod,
)


def obj(version: str, replicas: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "d", "resourceVersion": version}, "spec": {"replicas": replicas}}


def test_a_write_is_read_until_the_watch_tells_it_then_forgotten() -> None:
    ahead = WrittenAhead()
    ahead.wrote("ns/md", ("Deployment", "d"), "1", obj("2", replicas=3))
    # the watch still shows the version the write replaced
    assert ahead.read("ns/md", ("Deployment", "d"), obj("1")) == obj("2", replicas=3)
    assert ahead.read("ns/md", ("Deployment", "d"), obj("1")) == obj("2", replicas=3)
    # told (or changed by someone else since): the watch's, and the write is gone
    assert ahead.read("ns/md", ("Deployment", "d"), obj("2", replicas=3)) == obj("2", replicas=3)
    assert ahead.read("ns/md", ("Deployment", "d"), obj("1")) == obj("1")


def test_a_watch_several_writes_behind_reads_the_last_write() -> None:
    """Status written twice in a row (1 -> 2 -> 3) while the watch still shows 1, then 2:
    both are behind the last write; a version nobody here wrote means someone else did."""
    ahead = WrittenAhead()
    what = ("ModelDeployment", "md")
    ahead.wrote("ns/md", what, "1", obj("2", replicas=2))
    ahead.wrote("ns/md", what, "2", obj("3", replicas=3))
    assert ahead.read("ns/md", what, obj("1")) == obj("3", replicas=3)
    assert ahead.read("ns/md", what, obj("2", replicas=2)) == obj("3", replicas=3)
    assert ahead.read("ns/md", what, obj("3", replicas=3)) == obj("3", replicas=3)
    assert ahead.read("ns/md", what, obj("1")) == obj("1")  # told: forgotten


def test_a_write_onto_a_version_it_did_not_produce_starts_a_new_row() -> None:
    ahead = WrittenAhead()
    what = ("ModelDeployment", "md")
    ahead.wrote("ns/md", what, "1", obj("2"))
    ahead.wrote("ns/md", what, "7", obj("8"))  # 2 -> 7 was someone else's: 1 is not behind 8
    assert ahead.read("ns/md", what, obj("1")) == obj("1")


def test_a_creation_and_a_deletion_are_read_as_written() -> None:
    ahead = WrittenAhead()
    ahead.wrote("ns/md", ("Service", "s"), None, obj("5"))  # created: the watch has none yet
    assert ahead.read("ns/md", ("Service", "s"), None) == obj("5")
    ahead.wrote("ns/md", ("Service", "s"), "5", None)  # deleted: the watch still has it
    assert ahead.read("ns/md", ("Service", "s"), obj("5")) is None
    ahead.forget("ns/md")
    assert ahead.read("ns/md", ("Service", "s"), obj("5")) == obj("5")


def test_a_write_is_kept_as_the_watch_keeps_it() -> None:
    """A status write's answer is the whole object, managedFields included, kept until the
    next reconcile reads it (a poll interval later when idle)."""
    ahead = WrittenAhead()
    stored = obj("2")
    stored["metadata"]["managedFields"] = [{"manager": "mlflow-operator", "fieldsV1": {}}]
    ahead.wrote("ns/md", ("ModelDeployment", "md"), "1", stored)
    assert ahead.read("ns/md", ("ModelDeployment", "md"), obj("1")) == obj("2")


def test_an_index_keeps_objects_without_their_managed_fields() -> None:
    body = {"metadata": {"name": "d", "namespace": "ns", "managedFields": [{"manager": "x"}]}}
    watched = Watched({"Deployment": {("ns", "d"): [watched_copy(body)]}})
    assert watched.get("Deployment", "d", "ns") == {"metadata": {"name": "d", "namespace": "ns"}}
    assert watched.get("Deployment", "other", "ns") is None


def full_pod(name: str, md: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"mlflowops.dev/modeldeployment": md, **labels},
            "annotations": {"mlflowops.dev/mirror-config": "abc"},
            "managedFields": [{"manager": "kubelet"}],
            "ownerReferences": [{"kind": "ReplicaSet", "name": "x"}],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {
                    "name": "serve",
                    "image": "serving:1",
                    "env": [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow"}],
                    "resources": {"limits": {"memory": "2Gi", "cpu": "1"}},
                }
            ],
            "volumes": [
                {"name": "mirror", "configMap": {"name": "fraud-shadow", "items": []}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
        "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": []},
    }


def test_the_pod_index_keeps_what_the_reconcile_reads_of_a_pod_and_no_more() -> None:
    kept = watched_pod(full_pod("fraud-a", "fraud", component="serving"))
    assert kept == {
        "metadata": {
            "name": "fraud-a",
            "namespace": "ns",
            "labels": {"mlflowops.dev/modeldeployment": "fraud", "component": "serving"},
            "annotations": {"mlflowops.dev/mirror-config": "abc"},
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "serve", "resources": {"limits": {"memory": "2Gi"}}}],
            "volumes": [{"name": "mirror", "configMap": {"name": "fraud-shadow"}}],
        },
        "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": []},
    }
    # what readers of pods use, read from the kept copy as from the pod itself
    assert mounts_mirror_config(kept, "fraud")
    assert serving_nodes([kept]) == ["node-1"]
    # a pod not scheduled yet has no node, and nothing of a spec it lacks is made up
    bare = watched_pod({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})
    assert bare == {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {}}}]},
        "status": {},
    }


def test_pods_are_read_per_model_deployment_by_label_equalities() -> None:
    stable = watched_pod(full_pod("fraud-a", "fraud", component="serving"))
    canary = watched_pod(full_pod("fraud-canary-a", "fraud", component="serving", track="canary"))
    other = watched_pod(full_pod("other-a", "other", component="serving"))
    watched = Watched({"Pod": {("ns", "fraud"): [stable, canary], ("ns", "other"): [other]}})
    assert watched.pods("ns", "fraud", {"mlflowops.dev/modeldeployment": "fraud"}) == [
        stable,
        canary,
    ]
    assert watched.pods("ns", "fraud", {"track": "canary"}) == [canary]
    assert watched.pods("ns", "fraud", {"component": "shadow"}) == []
    assert watched.pods("elsewhere", "fraud", {}) == []


def test_copies_kept_share_their_keys_and_short_strings_and_equal_the_object() -> None:
    first, second = (json.loads(json.dumps(full_pod(name, "fraud"))) for name in ("a", "b"))
    kept_first, kept_second = watched_copy(first), watched_copy(second)
    del first["metadata"]["managedFields"]
    assert kept_first == first
    key_first = next(iter(kept_first["spec"]["containers"][0]))
    key_second = next(iter(kept_second["spec"]["containers"][0]))
    assert key_first == key_second == "name"
    assert key_first is key_second  # one string object for every copy's key
    image = kept_first["spec"]["containers"][0]["image"]
    assert image is kept_second["spec"]["containers"][0]["image"]
    long_value = "x" * 200  # a long string is kept as it is, not shared
    assert watched_copy({"metadata": {}, "data": long_value})["data"] is long_value


def deployment(name: str) -> dict[str, Any]:
    """A kept Deployment's shape: its own name and labels, probes like every other's."""
    probe = {"httpGet": {"path": "/ping", "port": "http"}, "periodSeconds": 3}
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "server", "readinessProbe": probe, "args": ["-w", "1"]}]},
    }


def test_parts_equal_to_ones_kept_before_are_those_very_ones_and_own_parts_are_not() -> None:
    subtrees = SharedSubtrees()
    kept = [watched_copy(deployment(f"d{i}"), subtrees) for i in range(6)]
    probes = [k["spec"]["containers"][0]["readinessProbe"] for k in kept]
    args = [k["spec"]["containers"][0]["args"] for k in kept]
    # a part is entered at its second sighting; its parent one sighting later (a parent's key
    # holds its children's identities, which are the shared ones from then on)
    assert all(a is args[1] for a in args[1:])
    assert args[0] is not args[1]
    assert all(p is probes[2] for p in probes[2:])
    assert probes[1] is not probes[2]
    assert [k["metadata"]["labels"] for k in kept] == [{"app": f"d{i}"} for i in range(6)]
    assert all(k == deployment(f"d{i}") for i, k in enumerate(kept))
    shared = len(subtrees)
    assert 0 < shared < 8  # the common parts only: no entry for each object's own ones
    del kept, probes, args
    assert len(subtrees) == 0  # parts no object keeps leave the table


def test_values_equal_in_python_but_not_in_json_are_not_shared() -> None:
    subtrees = SharedSubtrees()
    values: list[Any] = [1, True, 1.0, "1", None, [1], {"a": 1}, [True], [1.0], {"a": True}]
    for _ in range(3):
        for value in values:
            copy = subtrees.compact({"v": value})
            assert json.dumps(copy) == json.dumps({"v": value})
            assert type(copy["v"]) is type(value) or isinstance(value, (dict, list))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, 1.0, 2.5])
    | st.sampled_from(["a", "b", "x" * 100]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3)
    ),
    max_leaves=12,
)


@given(st.lists(json_values, min_size=1, max_size=8))
def test_shared_copies_equal_their_values_as_json(values: list[Any]) -> None:
    subtrees = SharedSubtrees()
    kept = [subtrees.compact(value) for value in values * 3]
    assert [json.dumps(k) for k in kept] == [json.dumps(v) for v in values * 3]
