"""The rules of a user's HTTPRoute, weighted for a canary (canary.httpRouteRef): only the
backendRefs to this ModelDeployment's Services change, and applying it twice changes nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mlflow_operator.builders.httproute import route_patch, weighted_rules
from mlflow_operator.builders.modeldeployment import canary_name, serving_name

PARENT = {"name": "public", "namespace": "gateways"}
MATCH = [{"path": {"type": "PathPrefix", "value": "/invocations"}}]


def route(*rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud-route", "namespace": "ml-prod", "resourceVersion": "7"},
        "spec": {
            "parentRefs": [PARENT],
            "hostnames": ["fraud.example.com"],
            "rules": list(rules),
        },
    }


def plain(rules: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The rules with the operator's backendRefs written without the defaults `group: ""` and
    `kind: Service` (whether the operator writes them out is not what these tests are about)."""
    if rules is None:
        return None
    out = copy.deepcopy(rules)
    for rule in out:
        for ref in rule.get("backendRefs") or []:
            if ref.get("name") in ("fraud", "fraud-canary") and "namespace" not in ref:
                if ref.get("group") == "":
                    del ref["group"]
                if ref.get("kind") == "Service":
                    del ref["kind"]
    return out


def split(stable: int, canary: int | None, port: int = 80) -> list[dict[str, Any]]:
    refs = [{"name": "fraud", "port": port, "weight": stable}]
    if canary is not None:
        refs.append({"name": "fraud-canary", "port": port, "weight": canary})
    return refs


@pytest.mark.parametrize(
    "ref",
    [
        {"name": "fraud", "port": 80},
        {"name": "fraud", "port": 8080, "kind": "Service", "group": ""},
        {"name": "fraud", "port": 80, "kind": "Service", "weight": 3},
        {"name": "fraud", "port": 80, "weight": 60, "group": "", "kind": "Service"},
        {"name": "fraud-canary", "port": 80, "weight": 40, "group": ""},
    ],
    ids=["plain", "explicit-kind-and-group", "user-weight", "weighted-before", "canary"],
)
def test_a_backend_of_the_model_deployment_becomes_serving_and_canary_at_the_weight(
    ref: dict[str, Any],
) -> None:
    rules = weighted_rules(route({"backendRefs": [ref]}), "fraud", 80, 25)
    assert plain(rules) == [{"backendRefs": split(75, 25)}]


def test_no_canary_backend_at_weight_zero_and_no_stable_weight_at_a_hundred() -> None:
    original = route({"backendRefs": [{"name": "fraud", "port": 80}]})
    assert plain(weighted_rules(original, "fraud", 80, 0)) == [{"backendRefs": split(100, None)}]
    assert plain(weighted_rules(original, "fraud", 80, 100)) == [{"backendRefs": split(0, 100)}]
    # the Service's port as the spec says, whatever port the user wrote
    assert plain(weighted_rules(original, "fraud", 9000, 10)) == [
        {"backendRefs": split(90, 10, 9000)}
    ]


def test_the_operators_backends_are_written_as_the_api_server_defaults_them() -> None:
    """`group: ""` and `kind: Service` written out, so a route read back compares equal."""
    rules = weighted_rules(route({"backendRefs": [{"name": "fraud", "port": 80}]}), "fraud", 80, 10)
    assert rules == [
        {
            "backendRefs": [
                {"group": "", "kind": "Service", "name": "fraud", "port": 80, "weight": 90},
                {"group": "", "kind": "Service", "name": "fraud-canary", "port": 80, "weight": 10},
            ]
        }
    ]


@pytest.mark.parametrize("earlier", [10, 50, 100])
def test_back_at_weight_zero_a_route_sends_everything_to_the_serving_service(earlier: int) -> None:
    """The Service the user wrote, `<name>`, which always selects the serving pods: a route
    the operator leaves alone at 0 (httpRouteRef removed, ModelDeployment deleted) works."""
    original = route({"matches": MATCH, "backendRefs": [{"name": "fraud", "port": 80}]})
    then = weighted_rules(original, "fraud", 80, earlier)
    assert then is not None
    assert [ref["name"] for ref in then[0]["backendRefs"]] == ["fraud", "fraud-canary"]
    back = weighted_rules(route(*then), "fraud", 80, 0)
    assert plain(back) == [{"matches": MATCH, "backendRefs": split(100, None)}]


def test_other_backends_and_the_rules_other_fields_stay_as_they_are() -> None:
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "audit"}}}
    other = {"name": "legacy", "port": 80, "weight": 10}
    foreign = [
        {"name": "fraud", "port": 80, "namespace": "elsewhere"},
        {"name": "fraud", "port": 80, "kind": "ServiceImport", "group": "multicluster.x-k8s.io"},
        {"name": "fraud", "port": 80, "group": "example.com"},
        {"name": "fraudulent", "port": 80},
    ]
    rule = {
        "matches": MATCH,
        "filters": [mirror],
        "timeouts": {"request": "10s"},
        "backendRefs": [other, {"name": "fraud", "port": 80, "weight": 90}, *foreign],
    }
    rules = weighted_rules(route(rule), "fraud", 80, 10)
    assert plain(rules) == [
        {
            "matches": MATCH,
            "filters": [mirror],
            "timeouts": {"request": "10s"},
            "backendRefs": [other, *foreign, *split(90, 10)],
        }
    ]


def test_several_rules_are_each_weighted_and_a_foreign_rule_is_kept() -> None:
    foreign = {"matches": [{"path": {"value": "/other"}}], "backendRefs": [{"name": "other"}]}
    empty = {"matches": [{"path": {"value": "/nothing"}}]}  # no backendRefs: a 500 by the spec
    original = route(
        {"matches": MATCH, "backendRefs": [{"name": "fraud", "port": 80}]},
        foreign,
        empty,
        {"backendRefs": [{"name": "fraud-canary", "port": 80, "weight": 100}]},
    )
    assert plain(weighted_rules(original, "fraud", 80, 50)) == [
        {"matches": MATCH, "backendRefs": split(50, 50)},
        foreign,
        empty,
        {"backendRefs": split(50, 50)},
    ]


@pytest.mark.parametrize(
    "spec",
    [
        {"rules": [{"backendRefs": [{"name": "other", "port": 80}]}]},
        {"rules": [{"backendRefs": [{"name": "fraud", "namespace": "ml-prod", "port": 80}]}]},
        {"rules": [{"matches": MATCH}]},
        {"rules": []},
        {"parentRefs": [PARENT]},
        None,
    ],
    ids=["other-service", "namespaced", "no-backends", "no-rules", "no-rules-key", "no-spec"],
)
def test_a_route_that_never_sends_to_the_model_deployment_has_nothing_to_weight(
    spec: dict[str, Any] | None,
) -> None:
    body: dict[str, Any] = {"metadata": {"name": "r", "namespace": "ml-prod"}}
    if spec is not None:
        body["spec"] = spec
    assert weighted_rules(body, "fraud", 80, 10) is None


def test_the_route_given_is_never_changed() -> None:
    original = route(
        {"matches": MATCH, "backendRefs": [{"name": "fraud", "port": 80}, {"name": "legacy"}]}
    )
    before = copy.deepcopy(original)
    rules = weighted_rules(original, "fraud", 80, 30)
    assert original == before
    assert rules is not None
    rules[0]["matches"].append({"path": {"value": "/mutated"}})
    assert original == before  # a deep copy: the answer shares nothing with the route


@pytest.mark.parametrize("weight", [0, 10, 50, 100])
def test_weighting_its_own_output_again_gives_the_same_rules(weight: int) -> None:
    original = route(
        {"matches": MATCH, "backendRefs": [{"name": "fraud", "port": 80}, {"name": "legacy"}]},
        {"backendRefs": [{"name": "other"}]},
    )
    once = weighted_rules(original, "fraud", 80, weight)
    assert once is not None
    twice = weighted_rules(route(*once), "fraud", 80, weight)
    assert twice == once
    # and from any earlier weight to this one
    for earlier in (0, 10, 50, 100):
        then = weighted_rules(original, "fraud", 80, earlier)
        assert then is not None
        assert weighted_rules(route(*then), "fraud", 80, weight) == once


def test_a_long_name_weights_the_same_shortened_service_names_as_the_operator_makes() -> None:
    name = "f" * 60
    rules = weighted_rules(route({"backendRefs": [{"name": name, "port": 80}]}), name, 80, 20)
    assert rules is not None
    names = [ref["name"] for ref in rules[0]["backendRefs"]]
    assert names == [serving_name(name), canary_name(name)]
    assert all(len(n) <= 63 for n in names)


def test_the_patch_applies_the_rules_alone_onto_the_route_by_name() -> None:
    original = route({"backendRefs": [{"name": "fraud", "port": 80}]})
    rules = weighted_rules(original, "fraud", 80, 10)
    assert rules is not None
    assert route_patch(original, rules) == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud-route", "namespace": "ml-prod"},
        "spec": {"rules": rules},
    }
