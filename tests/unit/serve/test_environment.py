"""`mlflow-operator-serve-env`'s pure parts: the environment's name and key as MLflow computes
them, the Python check, and the archive (its round trip, and what unpacking refuses). The build
and the pods' download against a real MLflow: tests/integration/test_uv_environment.py."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from mlflow_operator_serve import environment
from mlflow_operator_serve.environment import (
    ModelEnvironmentError,
    UnsafeArchiveError,
    check_members,
    check_python,
    environment_key,
    extract,
    model_environment,
    pack,
)

ENV = "mlflow-0123456789abcdef"


def write_model(path: Path, requirements: list[str], python: str = "3.11.7") -> Path:
    """The files MLflow reads to name a model's environment (what save_model writes)."""
    path.mkdir(parents=True, exist_ok=True)
    mlmodel = {
        "flavors": {
            "python_function": {
                "loader_module": "mlflow.pyfunc.model",
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            }
        }
    }
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    python_env = {
        "python": python,
        "build_dependencies": ["pip==24.0", "setuptools", "wheel"],
        "dependencies": ["-r requirements.txt"],
    }
    (path / "python_env.yaml").write_text(yaml.safe_dump(python_env))
    (path / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return path


def test_the_name_is_the_directory_mlflow_serves_from_and_installs_nothing_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.utils import virtualenv

    model = write_model(tmp_path / "model", ["mlflow-skinny==3.17.2", "inflection==0.5.1"])
    env = model_environment(model)
    assert env.name.startswith("mlflow-")
    assert env.python == "3.11.7"
    assert env.dependencies == ("-r requirements.txt",)
    root = tmp_path / "envs"
    (root / env.name).mkdir(parents=True)
    monkeypatch.setenv("MLFLOW_ENV_ROOT", str(root))

    def no_command(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"MLflow ran {args}")

    monkeypatch.setattr(virtualenv, "_exec_cmd", no_command)
    # what `mlflow models serve --env-manager uv` calls (pyfunc/backend.py prepare_env)
    activate = virtualenv._get_or_create_virtualenv(
        model, None, env_root_dir=None, env_manager="uv"
    )
    assert activate == f"source {root / env.name / 'bin' / 'activate'}"


def test_the_name_follows_the_requirements_and_the_key_the_image(tmp_path: Path) -> None:
    one = model_environment(write_model(tmp_path / "a", ["inflection==0.5.1"]))
    same = model_environment(write_model(tmp_path / "b", ["inflection==0.5.1"]))
    other = model_environment(write_model(tmp_path / "c", ["inflection==0.5.0"]))
    assert one.name == same.name != other.name
    image = "ghcr.io/x/serving-cpu:1.2.0"
    key = environment_key(image, one.name)
    assert key == hashlib.sha256(f"{image}\n{one.name}".encode()).hexdigest()[:32]
    assert environment_key("ghcr.io/x/serving-cpu:1.3.0", one.name) != key
    assert environment_key("ghcr.io/x/serving-cpu:1.2.0", other.name) != key


@pytest.mark.parametrize("model_python", ["3.11.7", "3.11", "3.11.2", " 3.11.9 "])
def test_another_patch_version_of_the_same_minor_is_accepted(model_python: str) -> None:
    check_python(model_python, (3, 11, 2))


def test_another_minor_version_is_refused_in_one_line() -> None:
    with pytest.raises(ModelEnvironmentError) as refused:
        check_python("3.9.18", (3, 11, 2))
    assert str(refused.value) == (
        "the model needs Python 3.9 (python_env.yaml: 3.9.18), the serving image has 3.11.2"
    )
    with pytest.raises(ModelEnvironmentError, match="is not a version"):
        check_python("latest", (3, 11, 2))


def make_env(root: Path) -> Path:
    """A virtualenv's shape: bin/python an absolute link to the interpreter, links inside."""
    env = root / ENV
    (env / "bin").mkdir(parents=True)
    (env / "lib" / "python3.11" / "site-packages" / "pkg").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys._base_executable)
    (env / "bin" / "python3").symlink_to("python")
    script = env / "bin" / "uvicorn"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    (env / "lib" / "python3.11" / "site-packages" / "pkg" / "__init__.py").write_text("X = 1\n")
    (env / "lib64").symlink_to("lib")
    (env / "pyvenv.cfg").write_text("relocatable = true\n")
    return env


@pytest.mark.parametrize("filters", [True, False])
def test_an_environment_packed_and_unpacked_keeps_its_links_and_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: bool
) -> None:
    if not filters:  # the serving images' Debian Python 3.11.2 predates extraction filters
        monkeypatch.setattr(environment, "_TAR_FILTERS", False)
    env = make_env(tmp_path / "built")
    archive = tmp_path / f"{ENV}.tar.gz"
    assert pack(env, archive) == archive.stat().st_size
    with tarfile.open(archive) as tar:
        assert all(n == ENV or n.startswith(f"{ENV}/") for n in tar.getnames())
    unpacked = extract(archive, tmp_path / "pod" / "staging", ENV)
    assert unpacked == tmp_path / "pod" / "staging" / ENV
    assert os.readlink(unpacked / "bin" / "python") == sys._base_executable
    assert os.readlink(unpacked / "bin" / "python3") == "python"
    assert os.readlink(unpacked / "lib64") == "lib"
    assert os.access(unpacked / "bin" / "uvicorn", os.X_OK)
    assert (unpacked / "lib64" / "python3.11" / "site-packages" / "pkg" / "__init__.py").read_text()
    with pytest.raises(FileExistsError):  # only into a new directory
        extract(archive, tmp_path / "pod" / "staging", ENV)


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


def archive_of(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member(ENV, tarfile.DIRTYPE))
        tar.addfile(member(f"{ENV}/bin", tarfile.DIRTYPE))
        tar.addfile(member(f"{ENV}/bin/python", tarfile.SYMTYPE, sys._base_executable))
        for info in members:
            data = b"x" if info.isreg() else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([member("../x")], "outside"),
        ([member(f"{ENV}/../x")], "outside"),
        ([member("/etc/x")], "outside"),
        ([member("other/x")], "outside"),
        ([member(f"{ENV}-other/x")], "outside"),
        ([member(f"{ENV}/lib/evil", tarfile.SYMTYPE, "../../../etc")], "links to"),
        ([member(f"{ENV}/evil", tarfile.SYMTYPE, "..")], "links to"),
        ([member(f"{ENV}/etc", tarfile.SYMTYPE, "/etc"), member(f"{ENV}/etc/passwd")],
         "under a link"),
        ([member(f"{ENV}/x", tarfile.SYMTYPE, "/etc/passwd"), member(f"{ENV}/x")], "twice"),
        ([member(f"{ENV}/bin/python/x")], "under a link"),
        ([member(f"{ENV}/h", tarfile.LNKTYPE, "/etc/passwd")], "hard link"),
        ([member(f"{ENV}/h", tarfile.LNKTYPE, f"{ENV}/bin")], "hard link"),
        ([member(f"{ENV}/dev", tarfile.CHRTYPE)], "not a file"),
        ([member(f"{ENV}/fifo", tarfile.FIFOTYPE)], "not a file"),
    ],
)  # fmt: skip
def test_a_member_that_could_write_outside_the_environment_is_refused(
    tmp_path: Path, members: list[tarfile.TarInfo], says: str
) -> None:
    archive = archive_of(tmp_path / "evil.tar.gz", members)
    with pytest.raises(UnsafeArchiveError, match=says):
        extract(archive, tmp_path / "out", ENV)
    # refused before anything was written
    assert list((tmp_path / "out").iterdir()) == []


def test_links_inside_the_environment_and_to_absolute_paths_are_allowed() -> None:
    members = [
        member(ENV, tarfile.DIRTYPE),
        member(f"{ENV}/bin", tarfile.DIRTYPE),
        member(f"{ENV}/bin/python", tarfile.SYMTYPE, "/usr/local/bin/python3.11"),
        member(f"{ENV}/bin/python3", tarfile.SYMTYPE, "python"),
        member(f"{ENV}/lib64", tarfile.SYMTYPE, "lib"),
        member(f"{ENV}/bin/tool", tarfile.SYMTYPE, "../lib/tool"),
        member(f"{ENV}/bin/a"),
        member(f"{ENV}/bin/b", tarfile.LNKTYPE, f"{ENV}/bin/a"),
        member(f"{ENV}/bin/setuid"),
    ]
    members[-1].mode = 0o4777
    checked = check_members(members, ENV)
    assert [m.name for m in checked] == [m.name for m in members]
    assert checked[-1].mode == 0o755


def test_an_archive_its_download_decompressed_is_unpacked_too(tmp_path: Path) -> None:
    # an object store serves the .tar.gz with Content-Encoding: gzip, which HTTP clients decode
    env = make_env(tmp_path / "built")
    plain = tmp_path / f"{ENV}.tar.gz"
    with tarfile.open(plain, "w") as tar:
        tar.add(env, arcname=ENV)
    unpacked = extract(plain, tmp_path / "out", ENV)
    assert os.readlink(unpacked / "bin" / "python") == sys._base_executable


def test_an_archive_without_a_virtualenv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member(ENV, tarfile.DIRTYPE))
    with pytest.raises(ModelEnvironmentError, match="no virtualenv"):
        extract(path, tmp_path / "out", ENV)


def test_a_failure_is_one_line_without_credentials_in_the_termination_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "termination-log"
    log.write_text("")
    monkeypatch.setenv(environment.TERMINATION_LOG_VAR, str(log))
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-secret")
    with pytest.raises(SystemExit) as exited:
        environment.fail(
            "API request to https://alice:hunter2-secret@mlflow.example/api failed\n"
            "  password hunter2-secret again"
        )
    assert exited.value.code == 1
    said = "API request to https://***@mlflow.example/api failed password *** again"
    assert log.read_text() == said + "\n"
    assert capsys.readouterr().err == said + "\n"


def test_no_termination_log_is_made_outside_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(environment.TERMINATION_LOG_VAR, str(tmp_path / "absent"))
    with pytest.raises(SystemExit):
        environment.fail("no")
    assert not (tmp_path / "absent").exists()


def test_uvs_error_report_or_the_last_lines_say_what_went_wrong() -> None:
    uv = (
        "Using Python 3.11.7 environment at: /tmp/mlflow-envs/mlflow-0123\n"
        "error: No solution found when resolving dependencies\n"
        "  cause: Because pyfiglet was not found in the cache and you require pyfiglet==1.0.2,"
        " we can conclude that your requirements are unsatisfiable.\n\n"
        "hint: Packages were unavailable because the network was disabled.\n"
    )
    assert environment.tail(uv) == (
        "error: No solution found when resolving dependencies cause: Because pyfiglet was not"
        " found in the cache and you require pyfiglet==1.0.2, we can conclude that your"
        " requirements are unsatisfiable. hint: Packages were unavailable because the network"
        " was disabled."
    )
    older_uv = (
        "  \u00d7 No solution found\n  \u2570\u2500\u25b6 Because no-such-package was not found\n"
    )
    assert environment.tail(older_uv).startswith("\u00d7 No solution found")
    python = (
        "Traceback (most recent call last):\n"
        '  File "/tmp/m/code/model.py", line 2, in <module>\n'
        "    import inflection\n"
        "ModuleNotFoundError: No module named 'inflection'\n"
    )
    assert environment.tail(python).endswith("ModuleNotFoundError: No module named 'inflection'")
    assert environment.tail("") == "(no output)"


@pytest.mark.parametrize(
    ("value", "flag"), [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_uv_no_index_which_uv_does_not_read_becomes_its_flag(
    monkeypatch: pytest.MonkeyPatch, value: str, flag: bool
) -> None:
    monkeypatch.setenv("UV_NO_INDEX", value)
    assert environment._no_index() == (["--no-index"] if flag else [])


def test_the_pods_fail_in_one_line_without_the_operators_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(environment.EXPERIMENT_VAR, raising=False)
    monkeypatch.setenv(environment.IMAGE_VAR, "serving-cpu:1")
    monkeypatch.setenv(environment.TERMINATION_LOG_VAR, str(tmp_path / "absent"))
    with pytest.raises(SystemExit):
        environment.fetch(tmp_path, model_uri="models:/m/3")
    assert capsys.readouterr().err.startswith(
        f"no environment built for models:/m/3: {environment.EXPERIMENT_VAR} and "
    )
