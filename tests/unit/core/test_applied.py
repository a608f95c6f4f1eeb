"""already_applied: skip a server-side apply only when the live object holds every field."""

from __future__ import annotations

import copy
from typing import Any

from mlflow_operator.core.applied import already_applied

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
