"""Credentials in URLs never reach status, Events, logs or metric labels."""

from __future__ import annotations

import pytest

from mlflow_operator.api.urls import has_userinfo
from mlflow_operator.core.redact import redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://u:p4ss@mlflow.example.com/x", "https://***@mlflow.example.com/x"),
        ("http://token@10.0.0.1:5000", "http://***@10.0.0.1:5000"),
        (
            'env[0].value: Invalid value: "https://a:b@h/": bad; see http://c:d@e',
            'env[0].value: Invalid value: "https://***@h/": bad; see http://***@e',
        ),
        ("https://mlflow.example.com/path@v2", "https://mlflow.example.com/path@v2"),
        ("no url at all, user@example.com", "no url at all, user@example.com"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_has_userinfo() -> None:
    assert has_userinfo("https://u:p@h")
    assert not has_userinfo("https://h/a@b")


def test_api_refusal_names_the_api_reason_and_hides_credentials() -> None:
    from mlflow_operator.core.api_refusal import ApiRefusal

    refusal = ApiRefusal(
        "apply Deployment ml/fraud",
        422,
        "Invalid",
        'Deployment.apps "fraud" is invalid: env[0].value: Invalid value: "https://u:pw@h"',
    )
    assert refusal.reason == "KubernetesInvalid"
    assert refusal.message.startswith(
        "the Kubernetes API refused to apply Deployment ml/fraud (HTTP 422 Invalid): "
    )
    assert "pw" not in refusal.message
    assert ApiRefusal("x", 500, "", "").reason == "KubernetesHttp500"
    assert len(ApiRefusal("x", 422, "Invalid", "y" * 5000).message) == 1024
