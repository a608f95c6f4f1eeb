"""Reads from the watch (reconcilers/watched.py): what was just written is read as written
until the watch tells it."""

from __future__ import annotations

from typing import Any

from mlflow_operator.reconcilers.watched import Watched, WrittenAhead, watched_copy


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


def test_a_creation_and_a_deletion_are_read_as_written() -> None:
    ahead = WrittenAhead()
    ahead.wrote("ns/md", ("Service", "s"), None, obj("5"))  # created: the watch has none yet
    assert ahead.read("ns/md", ("Service", "s"), None) == obj("5")
    ahead.wrote("ns/md", ("Service", "s"), "5", None)  # deleted: the watch still has it
    assert ahead.read("ns/md", ("Service", "s"), obj("5")) is None
    ahead.forget("ns/md")
    assert ahead.read("ns/md", ("Service", "s"), obj("5")) == obj("5")


def test_an_index_keeps_objects_without_their_managed_fields() -> None:
    body = {"metadata": {"name": "d", "namespace": "ns", "managedFields": [{"manager": "x"}]}}
    watched = Watched({"Deployment": {("ns", "d"): [watched_copy(body)]}})
    assert watched.get("Deployment", "d", "ns") == {"metadata": {"name": "d", "namespace": "ns"}}
    assert watched.get("Deployment", "other", "ns") is None
