"""Scale to zero's pure parts (core/modeldeployment/activation.py): which ModelDeployment a
request held by the activator is for, and when the Service sends to the activator."""

from __future__ import annotations

from mlflow_operator.core.modeldeployment.activation import (
    ActivatorRoute,
    activator_wanted,
    route_for_host,
)

ROUTES = {
    r.key: r
    for r in (
        ActivatorRoute("ml", "fraud", "fraud", "10.96.0.10"),
        ActivatorRoute("ml", "churn", "churn", None),
        ActivatorRoute("team-b", "fraud", "fraud", "10.96.0.11"),
    )
}


def test_a_service_is_found_by_its_cluster_ip_or_any_form_of_its_dns_name() -> None:
    assert route_for_host("10.96.0.10:80", ROUTES) == ROUTES["ml/fraud"]
    assert route_for_host("10.96.0.11", ROUTES) == ROUTES["team-b/fraud"]
    for host in ("churn", "churn.ml", "churn.ml.svc", "churn.ml.svc.cluster.local:8080",
                 "CHURN.ML.SVC.corp.example."):  # fmt: skip
        assert route_for_host(host, ROUTES) == ROUTES["ml/churn"], host
    assert route_for_host("fraud.team-b.svc.cluster.local", ROUTES) == ROUTES["team-b/fraud"]


def test_an_ambiguous_or_foreign_host_names_no_route() -> None:
    assert route_for_host("fraud", ROUTES) is None  # a Service named so in two namespaces
    assert route_for_host("10.96.0.99:80", ROUTES) is None
    assert route_for_host("fraud.ml.example.com", ROUTES) is None  # not a Service's name
    assert route_for_host("", ROUTES) is None
    assert route_for_host("[fd00::1]:80", ROUTES) is None


def test_the_service_sends_to_the_activator_only_while_no_pod_is_ready() -> None:
    assert activator_wanted(desired_replicas=0, ready_replicas=1)  # the last one goes
    assert activator_wanted(desired_replicas=1, ready_replicas=0)  # waking up
    assert not activator_wanted(desired_replicas=1, ready_replicas=1)
