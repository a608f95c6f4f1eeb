"""Reads from the watch (reconcilers/watched.py): what was just written is read as written
until the watch tells it."""

from __future__ import annotations

import json
from typing import Any

from mlflow_operator.builders.modeldeployment import mounts_mirror_config
from mlflow_operator.core.modeldeployment.prefetch import serving_nodes
from mlflow_operator.reconcilers.watched import Watched, WrittenAhead, watched_copy, watched_pod


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
