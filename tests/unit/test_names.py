"""No name the API server accepts leads to a child it would refuse (defect 6).

`fraud.v2`, `1model` or a name of 64+ characters was accepted and then half-applied (the
Deployment created, the Service refused with 422); an MLflowServer name of 44+ characters
never got a PostgreSQL pod (the StatefulSet's controller-revision-hash label was too long).
Now the CRDs refuse such names (CEL on metadata.name); these properties check every name the
rules accept against the rules of the children the operator builds from it.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec
from mlflow_operator.api.names import name_errors
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.modeldeployment import build_serving_deployment, build_serving_service
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.endpoint import TrackingEndpoint
from mlflow_operator.core.mlflowserver.layout import ServerNames, max_server_name
from mlflow_operator.crds import MLFLOW_SERVER, MODEL_DEPLOYMENT, build_crd

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SPEC = ModelDeploymentSpec.model_validate(
    {"model": {"name": "m", "alias": "champion"}, "registry": {"serverRef": {"name": "mlflow"}}}
)


def names(max_size: int) -> st.SearchStrategy[str]:
    """Names as people write them, and the edge cases: dots, digits first, long ones."""
    return st.text(alphabet="abcz019-.", min_size=1, max_size=max_size)


def accepted(name: str, rules: Any) -> bool:
    return not name_errors(name, rules)


def test_the_mlflowserver_limit_comes_from_its_children() -> None:
    assert max_server_name() == 43
    assert ServerNames("m" * 43).fit()
    assert not ServerNames("m" * 44).fit()
    assert len(ServerNames("m" * 43).postgres) == 52  # <sts>-<10-char hash> is then 63
    assert accepted("m" * 43, MLFLOW_SERVER.name_rules)
    assert not accepted("m" * 44, MLFLOW_SERVER.name_rules)


@settings(max_examples=500)
@given(names(70))
def test_every_accepted_model_deployment_name_gives_valid_children(name: str) -> None:
    if not accepted(name, MODEL_DEPLOYMENT.name_rules):
        return
    owner = Owner("mlflowops.dev/v1alpha1", "ModelDeployment", name, "ml", "uid")
    deployment = build_serving_deployment(
        SPEC, owner, "1", TrackingEndpoint("http://mlflow:5000"), OperatorConfig()
    )
    service = build_serving_service(SPEC, owner)
    assert DNS_1035.match(service["metadata"]["name"])
    assert len(service["metadata"]["name"]) <= 63
    assert len(deployment["metadata"]["name"]) <= 253
    for labels in (
        deployment["metadata"]["labels"],
        deployment["spec"]["template"]["metadata"]["labels"],
        service["spec"]["selector"],
    ):
        for value in labels.values():
            assert LABEL_VALUE.match(value), value
            assert len(value) <= 63, value


@settings(max_examples=500)
@given(names(70))
def test_every_accepted_mlflowserver_name_gives_valid_children(name: str) -> None:
    if not accepted(name, MLFLOW_SERVER.name_rules):
        return
    server = ServerNames(name)
    assert server.fit()
    for _, child, _ in server.limits():
        assert LABEL_VALUE.match(child)
    for service in (server.service, server.postgres, server.postgres_headless, server.minio):
        assert DNS_1035.match(service)


def test_the_crds_carry_the_name_rules_at_the_root() -> None:
    for kind in (MODEL_DEPLOYMENT, MLFLOW_SERVER):
        root = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        rules = root["x-kubernetes-validations"]
        assert [r["rule"] for r in rules] == [r.cel for r in kind.name_rules]
        assert all(r["message"].startswith("metadata.name must") for r in rules)
