"""Operator settings: file < environment < flags, and one clear line for a bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_operator.config import ConfigError, OperatorConfig, load_config
from tests.cluster.pki import create_pki


def test_defaults_watch_all_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_OPERATOR_CONFIG", raising=False)
    config = load_config()
    assert config.cluster_wide
    assert config.write_back_tags


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("metrics-port: 9000\nhealth_port: 9001\nlog_format: json\nnamespaces: [a, b]\n")
    monkeypatch.setenv("MLFLOW_OPERATOR_HEALTH_PORT", "9100")
    config = load_config(file, log_format="text")
    assert config.metrics_port == 9000  # from the file
    assert config.health_port == 9100  # the environment beats the file
    assert config.log_format == "text"  # a flag beats both
    assert config.namespaces == ["a", "b"]
    assert not config.cluster_wide


def test_namespaces_from_environment_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_OPERATOR_NAMESPACES", "ml-prod, ml-staging")
    assert load_config().namespaces == ["ml-prod", "ml-staging"]


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("MLFLOW_OPERATOR_METRICS_PORT", "eighty", "metrics_port"),
        ("MLFLOW_OPERATOR_WEBHOOK_PORT", "70000", "webhook_port"),
        ("MLFLOW_OPERATOR_REQUEST_TIMEOUT_SECONDS", "soon", "request_timeout_seconds"),
        ("MLFLOW_OPERATOR_LOG_FORMAT", "xml", "log_format"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert named in str(info.value)
    assert env in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("metrics_prot: 9000\n")
    with pytest.raises(ConfigError, match="unknown setting metrics_prot"):
        load_config(file)


def test_run_exits_non_zero_with_one_line_for_a_bad_value() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_operator", "run"],
        env={"MLFLOW_OPERATOR_METRICS_PORT": "abc", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "metrics_port" in lines[0]


def test_run_help_documents_every_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_operator", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    from mlflow_operator.cli import run

    for param in run.params:
        assert param.help, f"{param.name} has no help"
        assert param.opts[0] in result.stdout


def test_every_setting_is_documented() -> None:
    for name, field in OperatorConfig.model_fields.items():
        assert field.description, name
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name in OperatorConfig.model_fields:
        assert f"MLFLOW_OPERATOR_{name.upper()}" in doc, name


def test_version_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_operator", "version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().count(".") >= 2


def test_a_ca_bundle_that_cannot_be_loaded_stops_the_operator_naming_the_setting(
    tmp_path: Path,
) -> None:
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("not a certificate\n")
    for path in (tmp_path / "missing.crt", not_pem):
        with pytest.raises(ConfigError) as refused:
            load_config(ca_bundle_file=str(path))
        message = str(refused.value)
        assert message.startswith(
            "invalid setting ca_bundle_file (MLFLOW_OPERATOR_CA_BUNDLE_FILE)"
        ), message
        assert str(path) in message
        assert "\n" not in message


def test_the_webhook_certificate_needs_its_key_and_both_must_load(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki")
    with pytest.raises(ConfigError, match="webhook_tls_key_file must be set too"):
        load_config(webhook_tls_cert_file=str(pki.server_cert))
    with pytest.raises(ConfigError, match="cannot load the certificate"):
        load_config(
            webhook_tls_cert_file=str(pki.server_cert), webhook_tls_key_file=str(pki.ca_key)
        )
    config = load_config(
        webhook_tls_cert_file=str(pki.server_cert), webhook_tls_key_file=str(pki.server_key)
    )
    assert config.webhook_tls_key_file == str(pki.server_key)
    with pytest.raises(ConfigError, match=r"webhook_secret_file .* cannot read"):
        load_config(webhook_secret_file=str(tmp_path / "absent"))


@pytest.mark.parametrize(
    "url",
    [
        "http://prometheus.monitoring.svc:9090",
        "https://example.com/prometheus/",
        "http://[::1]:9090",
    ],
)
def test_a_prometheus_url_is_http_or_https(url: str) -> None:
    assert load_config(prometheus_url=url).prometheus_url == url


def test_an_empty_prometheus_url_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_OPERATOR_PROMETHEUS_URL", "")
    assert load_config().prometheus_url is None


@pytest.mark.parametrize(
    "url", ["prometheus:9090", "ftp://prometheus", "http://", "http://prom etheus:9090"]
)
def test_a_prometheus_url_that_is_not_http_stops_the_operator(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(prometheus_url=url)
    assert str(refused.value).startswith(
        "invalid setting prometheus_url (MLFLOW_OPERATOR_PROMETHEUS_URL)"
    ), refused.value


def test_the_credentials_of_a_prometheus_url_are_never_shown() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(prometheus_url="ftp://reader:s3cret@prometheus")
    assert "s3cret" not in str(refused.value)
    config = load_config(prometheus_url="https://reader:s3cret@prometheus.example.com")
    assert config.prometheus_url == "https://reader:s3cret@prometheus.example.com"
    assert "s3cret" not in repr(config)
