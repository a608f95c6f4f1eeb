"""The model cache's routes: cached tracking URIs, which requests it forwards, artifact roots."""

from __future__ import annotations

import base64
import json

import pytest

from mlflow_operator.core.model_cache import (
    CACHE_PORT,
    DONE,
    CachedRoute,
    ListedEntry,
    PrefetchState,
    artifact_root,
    cached_tracking_uri,
    listing_entries,
    parse_cached_path,
    relative_to_root,
    unsupported_reason,
    upstream_key,
)

CACHE = f"http://mlflow-operator-model-cache.mlflow-operator.svc:{CACHE_PORT}"
UPSTREAM = "https://mlflow.example.com/mlflow"


def cached_path(upstream: str = UPSTREAM, keep: int = 3, rest: str = "") -> str:
    """The path part of a request a pod sends to the cache."""
    return cached_tracking_uri(CACHE, upstream, keep).removeprefix(CACHE) + rest


def test_a_cached_tracking_uri_names_the_cache_then_the_server_in_base64url_then_keep() -> None:
    uri = cached_tracking_uri(CACHE + "/", UPSTREAM, 2)
    prefix = f"{CACHE}/upstream/"
    assert uri.startswith(prefix)
    encoded, keep_word, keep = uri.removeprefix(prefix).split("/")
    assert (keep_word, keep) == ("keep", "2")
    assert "=" not in encoded
    assert base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode() == UPSTREAM


@pytest.mark.parametrize(
    "rest",
    [
        "/api/2.0/mlflow/model-versions/get-download-uri",
        "/api/2.0/mlflow/registered-models/get",
        "/api/2.0/mlflow-artifacts/artifacts",
        "/api/2.0/mlflow-artifacts/artifacts/1/models/m-abc/artifacts/MLmodel",
        "/api/3.0/mlflow/logged-models/m-abc",
        "/ajax-api/2.0/mlflow/runs/get",
        "/server-info",
        "/health",
    ],
)
def test_every_mlflow_api_path_round_trips_to_its_route(rest: str) -> None:
    assert parse_cached_path(cached_path(rest=rest)) == CachedRoute(UPSTREAM, 3, rest)


@pytest.mark.parametrize(
    "rest",
    [
        "",
        "/",
        "/metrics",
        "/admin",
        "/health/x",
        "/server-info/",
        "/static-files/index.html",
        "/api/2.0/mlflow",  # not under the prefix
        "/api/2.0/mlflowx/runs",
        "/api/2.0/mlflow/../../admin",
        "/api/2.0/mlflow/%2e%2e/%2E%2E/admin",
        "/api/2.0/mlflow-artifacts/artifacts/./x",
        "/api/2.0/mlflow/runs\\..\\x",
    ],
)
def test_paths_that_are_not_mlflow_api_paths_are_not_forwarded(rest: str) -> None:
    assert parse_cached_path(cached_path(rest=rest)) is None


def encoded(upstream: str) -> str:
    return base64.urlsafe_b64encode(upstream.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "path",
    [
        f"/upstream/{encoded('file:///etc')}/keep/3/health",
        f"/upstream/{encoded('ftp://mlflow.example.com')}/keep/3/health",
        f"/upstream/{encoded('https://user:secret@mlflow.example.com')}/keep/3/health",
        f"/upstream/{encoded('https://mlflow.example.com?x=1')}/keep/3/health",
        f"/upstream/{encoded('https://')}/keep/3/health",
        f"/upstream/{encoded('https://mlflow.example.com:port')}/keep/3/health",
        f"/upstream/{encoded(UPSTREAM)}/keep/0/health",
        f"/upstream/{encoded(UPSTREAM)}/keep/51/health",
        f"/upstream/{encoded(UPSTREAM)}/keep/x/health",
        f"/upstream/{encoded(UPSTREAM)}/health",
        f"/upstream/{encoded(UPSTREAM)}=/keep/3/health",
        "/upstream/!!!/keep/3/health",
        "/upstream/_w/keep/3/health",  # not UTF-8
        f"/elsewhere/{encoded(UPSTREAM)}/keep/3/health",
    ],
)
def test_a_malformed_route_or_an_upstream_the_cache_refuses_is_none(path: str) -> None:
    assert parse_cached_path(path) is None


def test_keep_bounds_are_accepted_and_refused_alike_by_both_ends() -> None:
    for keep in (1, 50):
        route = parse_cached_path(cached_path(keep=keep, rest="/health"))
        assert route is not None
        assert route.keep_versions == keep
    for keep in (0, 51):
        with pytest.raises(ValueError, match="keep_versions"):
            cached_tracking_uri(CACHE, UPSTREAM, keep)
    with pytest.raises(ValueError, match="credentials"):
        cached_tracking_uri(CACHE, "https://u:p@mlflow.example.com", 3)


def test_the_upstream_is_normalized_so_one_server_has_one_key() -> None:
    route = parse_cached_path(cached_path("HTTPS://MLflow.Example.com/mlflow/", rest="/health"))
    assert route is not None
    assert route.upstream == "https://mlflow.example.com/mlflow"
    key = upstream_key(UPSTREAM)
    assert key == upstream_key("https://MLFLOW.example.com/mlflow/")
    assert len(key) == 16
    assert int(key, 16) >= 0
    assert key != upstream_key("https://mlflow.example.com")


def test_the_artifact_root_is_learned_only_from_proxied_uris_of_the_same_server() -> None:
    assert (
        artifact_root("mlflow-artifacts:/1/models/m-abc/artifacts") == "/1/models/m-abc/artifacts"
    )
    assert (
        artifact_root("mlflow-artifacts:/1/models/m-abc/artifacts/") == "/1/models/m-abc/artifacts"
    )
    assert artifact_root("mlflow-artifacts://other:5000/1/models/m/artifacts") is None
    assert artifact_root("s3://bucket/1/models/m/artifacts") is None
    assert artifact_root("mlflow-artifacts:/") is None
    assert artifact_root("mlflow-artifacts:/1/../etc") is None
    assert "s3" in unsupported_reason("s3://bucket/x")
    assert "another MLflow server" in unsupported_reason("mlflow-artifacts://other/x")


def test_a_download_is_attributed_to_a_root_only_below_it_and_only_inside_it() -> None:
    root = "/1/models/m-abc/artifacts"
    assert relative_to_root("1/models/m-abc/artifacts/MLmodel", root) == "MLmodel"
    assert relative_to_root("1/models/m-abc/artifacts/data/model.pkl", root) == "data/model.pkl"
    assert relative_to_root("1/models/m-abc/artifactsX/MLmodel", root) is None
    assert relative_to_root("1/models/m-abc/artifacts", root) is None
    assert relative_to_root("1/models/m-abc/artifacts/../../x", root) is None
    assert relative_to_root("1/models/m-abc/artifacts//x", root) is None


def test_listing_entries_are_names_sizes_and_directories_and_unsafe_names_are_left_out() -> None:
    payload = {
        "files": [
            {"path": "MLmodel", "is_dir": False, "file_size": 512},
            {"path": "data", "is_dir": True},
            {"path": "big.bin", "is_dir": False, "file_size": "123"},
            {"path": "..", "is_dir": True},
            {"path": 7},
        ]
    }
    assert listing_entries(payload) == [
        ListedEntry("MLmodel", False, 512),
        ListedEntry("data", True, None),
        ListedEntry("big.bin", False, 123),
    ]
    assert listing_entries({}) == []
    assert listing_entries([1, 2]) == []


def test_a_prefetch_state_goes_through_json_and_anything_else_is_a_value_error() -> None:
    state = PrefetchState("iris", "3", DONE, files=7, bytes=1234, message="")
    assert PrefetchState.from_json(state.to_json()) == state
    assert PrefetchState.from_json(json.loads(state.to_json())) == state
    for bad in ("[]", "{}", '{"state": "Sleeping", "model": "m", "version": "1"}', "not json"):
        with pytest.raises(ValueError, match=r"prefetch state|Expecting"):
            PrefetchState.from_json(bad)
