"""The pre-flight check's reads of a version's small files through the artifact proxy: only
what the listing shows, and conda.yaml only when requirements.txt or python_env.yaml is
missing. A tiny local HTTP server plays MLflow; tests/integration/test_preflight.py reads the
same files from a real one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mlflow_operator.registry.client import RegistryClient

ARTIFACTS = "1/models/m-0123456789abcdef/artifacts"
MLMODEL = "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
REQUIREMENTS = "mlflow==3.17.2\n"
PYTHON_ENV = "python: 3.11.7\n"
CONDA = "dependencies:\n- python=3.11.7\n- pip:\n  - mlflow==3.17.2\n"


@dataclass
class ArtifactProxy:
    """The version's directory as the tracking server's artifact proxy serves it."""

    files: dict[str, str]
    fetched: list[str] = field(default_factory=list)  # the files read, in order

    async def download_uri(self, request: web.Request) -> web.Response:
        return web.json_response({"artifact_uri": f"mlflow-artifacts:/{ARTIFACTS}"})

    async def listing(self, request: web.Request) -> web.Response:
        assert request.query["path"] == ARTIFACTS
        return web.json_response({
            "files": [{"path": name, "is_dir": False} for name in self.files]
            + [{"path": "data", "is_dir": True}]
        })  # fmt: skip

    async def artifact(self, request: web.Request) -> web.Response:
        directory, name = request.match_info["path"].rsplit("/", 1)
        assert directory == ARTIFACTS
        self.fetched.append(name)
        if name not in self.files:  # what S3 behind the proxy answers (NoSuchKey)
            return web.Response(status=500, text="NoSuchKey")
        return web.Response(text=self.files[name])


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[ArtifactProxy, RegistryClient]]:
    fake = ArtifactProxy({})
    app = web.Application()
    app.router.add_get("/api/2.0/mlflow/model-versions/get-download-uri", fake.download_uri)
    app.router.add_get("/api/2.0/mlflow-artifacts/artifacts", fake.listing)
    app.router.add_get("/api/2.0/mlflow-artifacts/artifacts/{path:.+}", fake.artifact)
    server = TestServer(app)
    await server.start_server()
    client = RegistryClient(str(server.make_url("")).rstrip("/"))
    yield fake, client
    await client.close()
    await server.close()


async def test_a_version_with_all_three_files_costs_five_requests_and_no_conda_read(
    proxy: tuple[ArtifactProxy, RegistryClient],
) -> None:
    fake, client = proxy
    fake.files = {
        "MLmodel": MLMODEL, "requirements.txt": REQUIREMENTS, "python_env.yaml": PYTHON_ENV,
        "conda.yaml": CONDA, "model.pkl": "not read",
    }  # fmt: skip
    files = await client.model_files("m", "1")
    assert files.error == ""
    assert (files.mlmodel, files.requirements, files.python_env) == (
        MLMODEL, REQUIREMENTS, PYTHON_ENV,
    )  # fmt: skip
    assert files.conda is None  # the other two said all of it
    assert fake.fetched == ["MLmodel", "requirements.txt", "python_env.yaml"]
    assert client.requests == 5


@pytest.mark.parametrize(
    "others",
    [{}, {"requirements.txt": REQUIREMENTS}, {"python_env.yaml": PYTHON_ENV}],
    ids=["conda-only", "no-python-env", "no-requirements"],
)
async def test_conda_yaml_is_read_when_requirements_or_python_env_is_missing(
    proxy: tuple[ArtifactProxy, RegistryClient], others: dict[str, str]
) -> None:
    fake, client = proxy
    fake.files = {"MLmodel": MLMODEL, **others, "conda.yaml": CONDA}
    files = await client.model_files("m", "1")
    assert files.error == ""
    assert files.conda == CONDA
    assert files.requirements == others.get("requirements.txt")
    assert files.python_env == others.get("python_env.yaml")
    assert fake.fetched == ["MLmodel", *others, "conda.yaml"]
    assert client.requests <= 5  # conda.yaml takes the place of a missing file


async def test_a_file_the_listing_lacks_is_never_asked_for(
    proxy: tuple[ArtifactProxy, RegistryClient],
) -> None:
    fake, client = proxy
    fake.files = {"MLmodel": MLMODEL}
    files = await client.model_files("m", "1")
    assert files.error == ""
    assert (files.requirements, files.python_env, files.conda) == (None, None, None)
    assert fake.fetched == ["MLmodel"]
