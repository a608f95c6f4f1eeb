"""The image cache keys and names (tests/images), without building: what changes a key and what
does not, the fixed pause name, and the one line a missing tool gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlflow_operator.config import MLFLOW_VERSION
from tests.images import __main__ as cli
from tests.images import base, build, buildah, gobase
from tests.images.buildah import ImageBuildError
from tests.images.dockerfile import ignored

KEYED = ("operator", "serving-cpu", "mlflow-server", "postgres", "minio", "pause")


def _repository(root: Path) -> Path:
    """A copy of what the Dockerfile is built from."""
    root.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(build.ROOT / name, root / name)
    shutil.copytree(build.ROOT / "deploy/image", root / "deploy/image")
    package = root / "operator/mlflow_operator"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""the package"""\n')
    (package / "cli.py").write_text("def main() -> None: ...\n")
    shutil.copy(build.ROOT / "operator/mlflow_operator/config.py", package)  # MLFLOW_VERSION
    serving = root / "serving/mlflow_operator_serve"
    serving.mkdir(parents=True)
    shutil.copy(build.ROOT / "serving/pyproject.toml", root / "serving")
    (serving / "cli.py").write_text("def serve() -> None: ...\n")
    return root


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository copy, and fixed answers for the tools the keys ask (no build, no buildah)."""
    root = _repository(tmp_path / "repo")
    monkeypatch.setenv("MLFLOW_OPERATOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(build, "ROOT", root)
    monkeypatch.setattr(build, "DOCKERFILE", root / "Dockerfile")
    monkeypatch.setattr(buildah, "version", lambda: "buildah version 1.28.2")
    monkeypatch.setattr(base, "key_text", lambda: "mmdebstrap 1.3.5 bookworm")
    monkeypatch.setattr(gobase, "key_text", lambda: "go1.26.8 /usr/local/go")
    pause_c = tmp_path / "pause.c"
    pause_c.write_text("int main(void) { return 0; }\n")
    monkeypatch.setattr(build, "_pause_source", lambda: pause_c)
    monkeypatch.setattr(build, "_compiler_version", lambda: "gcc 12.2.0")
    return root


def test_names_are_tagged_by_key_and_pause_is_fixed(repo: Path) -> None:
    names = build.image_names()
    assert set(names) == set(build.IMAGE_NAMES) == set(KEYED)
    assert names["pause"] == "localhost/mlflow-operator/pause:3.10"
    # the names `make images REGISTRY=localhost/mlflow-operator TAG=<key>` gives
    repositories = {"operator": "mlflow-operator"}
    for name in KEYED[:-1]:
        repository, tag = names[name].rsplit(":", 1)
        assert repository == f"localhost/mlflow-operator/{repositories.get(name, name)}"
        if name == "mlflow-server":  # the MLflow version first, as the published tag has it
            version, _, tag = tag.partition("-")
            assert version == MLFLOW_VERSION
        assert len(tag) == 16
        assert int(tag, 16) >= 0


def test_archives_live_in_the_cache_by_name_and_key(repo: Path, tmp_path: Path) -> None:
    planned = build._planned("serving-cpu")
    key = planned.name.rsplit(":", 1)[1]
    assert planned.archive == tmp_path / "cache/images/serving-cpu" / key / "image.tar"
    assert not planned.archive.exists()  # planning builds nothing


def test_keys_stay_when_nothing_changes(repo: Path) -> None:
    assert build.image_names() == build.image_names()


def test_keys_do_not_depend_on_where_the_checkout_is(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = build.image_names()
    other = _repository(tmp_path / "worktree")
    monkeypatch.setattr(build, "ROOT", other)
    monkeypatch.setattr(build, "DOCKERFILE", other / "Dockerfile")
    assert build.image_names() == before


def test_operator_source_changes_only_the_operator_image(repo: Path) -> None:
    before = build.image_names()
    (repo / "operator/mlflow_operator/cli.py").write_text("def main() -> None: print()\n")
    after = build.image_names()
    assert {name for name in before if before[name] != after[name]} == {"operator"}


def test_serving_runtime_source_changes_only_the_serving_image(repo: Path) -> None:
    before = build.image_names()
    (repo / "serving/mlflow_operator_serve/cli.py").write_text("def serve() -> None: print()\n")
    after = build.image_names()
    assert {name for name in before if before[name] != after[name]} == {"serving-cpu"}


def test_a_new_source_file_changes_the_key(repo: Path) -> None:
    before = build.image_names(["operator"])
    (repo / "operator/mlflow_operator/extra.py").write_text("")
    assert build.image_names(["operator"]) != before


def test_files_dockerignore_keeps_out_change_nothing(repo: Path) -> None:
    before = build.image_names()
    cache = repo / "operator/mlflow_operator/__pycache__"
    cache.mkdir()
    (cache / "cli.cpython-311.pyc").write_bytes(b"\0")
    tool_cache = repo / "operator/.import_linter_cache"  # a tool run with operator/ as its cwd
    tool_cache.mkdir()
    (tool_cache / "mlflow_operator.meta.json").write_text("{}")
    (repo / "tests").mkdir()
    (repo / "tests/test_x.py").write_text("")
    (repo / "README.md").write_text("changed\n")  # copied into the operator image: it counts
    after = build.image_names()
    assert {name for name in before if before[name] != after[name]} == {"operator"}


def test_the_install_script_changes_only_the_operator(repo: Path) -> None:
    before = build.image_names()
    with (repo / "deploy/image/install-operator.sh").open("a") as script:
        script.write("# changed\n")
    after = build.image_names()
    assert {name for name in before if before[name] != after[name]} == {"operator"}


def test_the_dockerfile_changes_its_targets_only(repo: Path) -> None:
    before = build.image_names()
    with (repo / "Dockerfile").open("a") as dockerfile:
        dockerfile.write("# changed\n")
    after = build.image_names()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"operator", "serving-cpu", "mlflow-server", "minio"}


def test_a_lock_changes_its_image_only(repo: Path) -> None:
    before = build.image_names()
    with (repo / "deploy/image/locks/mlflow-server.txt").open("a") as lock:
        lock.write("# changed\n")
    after = build.image_names()
    assert {name for name in before if before[name] != after[name]} == {"mlflow-server"}


def test_the_base_image_and_buildah_change_every_image_on_them(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = build.image_names()
    pause_archive = build._planned("pause").archive
    monkeypatch.setattr(base, "key_text", lambda: "mmdebstrap 1.3.6 bookworm")
    on_base = build.image_names()
    assert {name for name in before if before[name] != on_base[name]} == set(KEYED) - {"pause"}
    assert build._planned("pause").archive == pause_archive  # FROM scratch
    monkeypatch.setattr(buildah, "version", lambda: "buildah version 1.29.0")
    with_buildah = build.image_names()
    assert all(with_buildah[name] != on_base[name] for name in KEYED if name != "pause")
    assert build._planned("pause").archive != pause_archive
    assert with_buildah["pause"] == before["pause"]  # the name containerd expects never changes


def test_minio_follows_the_go_toolchain_and_pause_its_compiler(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = build.image_names()
    monkeypatch.setattr(gobase, "key_text", lambda: "go1.26.9 /usr/local/go")
    monkeypatch.setattr(build, "_compiler_version", lambda: "gcc 13.1.0")
    after = build.image_names()
    assert {name for name in before if before[name] != after[name]} == {"minio"}
    assert build._planned("pause").archive != before["pause"]  # a new build, same fixed name


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("operator/mlflow_operator/cli.py", False),
        ("operator/mlflow_operator/__pycache__/cli.cpython-311.pyc", True),
        ("operator/mlflow_operator.egg-info/PKG-INFO", True),
        ("deploy/image/install-operator.sh", False),
        ("tests/unit/test_images.py", True),
        ("pyproject.toml", False),
    ],
)
def test_dockerignore_as_docker_reads_it(path: str, excluded: bool) -> None:
    lines = (build.ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert ignored(path, patterns) is excluded


def test_a_missing_tool_ends_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    # the real tools, not answers cached by an earlier test
    monkeypatch.setattr(base, "key_text", base.key_text.__wrapped__)
    monkeypatch.setattr(buildah, "version", buildah.version.__wrapped__)
    with pytest.raises(ImageBuildError, match=r"^buildah not found: run `make env`"):
        buildah.require("buildah")
    assert cli.main(["operator"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "not found: run `make env` (it installs the Debian packages" in lines[0]


def test_an_unknown_image_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["postgresql"]) == 1
    assert "unknown image 'postgresql': choose from pause, operator" in capsys.readouterr().err
