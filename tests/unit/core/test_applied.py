"""already_applied: skip a server-side apply only when the live object holds every field, and
stamped: a manifest that changed in any way, removals included, is never taken as applied."""

from __future__ import annotations

import copy
from typing import Any

from mlflow_operator.core.applied import already_applied, stamped
from mlflow_operator.core.naming import LABEL_APPLIED_HASH

DESIRED: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "mlflow", "namespace": "ml", "labels": {"app": "mlflow"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [{"name": "mlflow", "image": "mlflow:3.17.2", "args": ["a", "b"]}],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            }
        },
    },
}


def live_copy() -> dict[str, Any]:
    """As the API server returns it: defaults, status and other managers' labels added."""
    live = copy.deepcopy(DESIRED)
    live["metadata"] |= {"resourceVersion": "7", "uid": "u"}
    live["metadata"]["labels"]["added-by"] = "someone"
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    live["status"] = {"readyReplicas": 2}
    return live


def test_a_live_object_with_more_fields_is_already_applied() -> None:
    assert already_applied(live_copy(), DESIRED)


def test_any_difference_in_a_desired_field_needs_an_apply() -> None:
    assert not already_applied(None, DESIRED)
    scaled = live_copy()
    scaled["spec"]["replicas"] = 1  # a person scaled it by hand
    assert not already_applied(scaled, DESIRED)
    image = live_copy()
    image["spec"]["template"]["spec"]["containers"][0]["image"] = "mlflow:3.16.0"
    assert not already_applied(image, DESIRED)
    label = live_copy()
    del label["metadata"]["labels"]["app"]
    assert not already_applied(label, DESIRED)


def test_lists_match_item_by_item_in_order() -> None:
    extra = live_copy()
    extra["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b", "c"]
    assert not already_applied(extra, DESIRED)
    swapped = live_copy()
    swapped["spec"]["template"]["spec"]["containers"][0]["args"] = ["b", "a"]
    assert not already_applied(swapped, DESIRED)


def test_a_value_of_another_type_is_a_difference() -> None:
    """A number the API server would store as a string (or a bool for 1) is not assumed equal."""
    stringly = live_copy()
    stringly["spec"]["replicas"] = "2"
    assert not already_applied(stringly, DESIRED)
    one = copy.deepcopy(DESIRED)
    one["spec"]["replicas"] = 1
    boolean = live_copy()
    boolean["spec"]["replicas"] = True  # equal to 1 in Python, not in the API
    assert not already_applied(boolean, one)


def stored(manifest: dict[str, Any]) -> dict[str, Any]:
    """The object after a server-side apply of manifest: what it sent, and what others add."""
    live = copy.deepcopy(manifest)
    live["metadata"] |= {"resourceVersion": "7", "uid": "u"}
    live["status"] = {"readyReplicas": 2}
    return live


def test_a_field_taken_out_of_the_manifest_needs_an_apply() -> None:
    """Only an apply removes a field its manager stops sending; the live object still holds
    every field of the smaller manifest, so without the stamp nothing would be applied."""
    pinned = copy.deepcopy(DESIRED)
    pinned["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "gpu"}
    live = stored(stamped(pinned))
    assert already_applied(live, stamped(pinned))
    assert already_applied(live, DESIRED)  # what the stamp is for
    assert not already_applied(live, stamped(DESIRED))


def test_the_stamp_depends_on_the_content_only() -> None:
    original = copy.deepcopy(DESIRED)
    once = stamped(DESIRED)
    assert original == DESIRED  # not modified in place
    assert stamped(once) == once == stamped(copy.deepcopy(DESIRED))
    other = copy.deepcopy(DESIRED)
    other["spec"]["replicas"] = 3
    hash_of = lambda m: m["metadata"]["labels"][LABEL_APPLIED_HASH]  # noqa: E731
    assert hash_of(stamped(other)) != hash_of(once)
