"""Pre-flight check: can this serving image load this model version at all? Pure.

A version whose pods can never start (a pickled custom model saved with another Python, an
mlflow 2 model on an mlflow 3 image, a package the image lacks, a CPU-only torch on a GPU
deployment) would otherwise be found out only by a crash-looping canary, minutes after the
rollout started and after the registry said it was ready. MLflow writes what a version needs
next to it (MLmodel, requirements.txt, python_env.yaml, and conda.yaml, which is all that older
MLflow versions and conda environments leave; all small); the operator's serving images are
built from pinned lock files, so what they have is known exactly. Comparing the two
before any pod exists turns a crash loop into a condition that names the requirement and what
the image has. Reading the files (MLflow) and the lock files is the caller's business; this
module only judges text.

The verdict is three-valued: Incompatible blocks, Compatible lets the rollout go on, and
Unknown (files unreadable, or an image that is not one of ours) lets it go on too, since not
knowing is no reason to hold a version back: the rollout's own health checks still apply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import Specifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mlflow_operator.api.modeldeployment import ModelDeploymentStatus
from mlflow_operator.core.modeldeployment.observation import (
    DeploymentObservation,
    settled_versions,
)
from mlflow_operator.core.modeldeployment.resolution import Resolution, Resolved

Verdict = Literal["Compatible", "Incompatible", "Unknown"]
COMPATIBLE: Verdict = "Compatible"
INCOMPATIBLE: Verdict = "Incompatible"
UNKNOWN: Verdict = "Unknown"

# Packages whose major versions break the saved model or its loader (file formats, pickled
# class layouts, removed APIs); a different minor of these is only reported.
MAJOR_SENSITIVE = frozenset({
    "mlflow", "mlflow-skinny", "scikit-learn", "torch", "tensorflow", "keras", "xgboost",
    "lightgbm", "numpy", "pandas", "scipy", "transformers", "onnxruntime",
})  # fmt: skip

# The library each built-in flavor's python_function loader needs (by loader_module); a
# custom model (mlflow.pyfunc.model, models from code) or an unknown loader needs everything.
FLAVOR_LIBRARIES = {
    "mlflow.sklearn": "scikit-learn",
    "mlflow.xgboost": "xgboost",
    "mlflow.lightgbm": "lightgbm",
    "mlflow.catboost": "catboost",
    "mlflow.pytorch": "torch",
    "mlflow.tensorflow": "tensorflow",
    "mlflow.keras": "keras",
    "mlflow.onnx": "onnxruntime",
    "mlflow.transformers": "transformers",
    "mlflow.statsmodels": "statsmodels",
    "mlflow.prophet": "prophet",
    "mlflow.spacy": "spacy",
}

MAX_NOTES = 10
# Further blocking problems shown after the first, so a condition stays one readable line.
_MAX_ALSO = 3

# The loader of a custom PythonModel: the model is cloudpickled Python code and its bytecode.
_PICKLED_LOADER = "mlflow.pyfunc.model"
# The loader of "models from code": MLflow records cloudpickle_version for them too, but their
# model is a source file, which loads on any Python the code itself supports.
_CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
# torch's CUDA wheels depend on nvidia-cuda-runtime-cu12 (or -cu13, or the unsuffixed name);
# a torch without one of them cannot see a GPU.
_CUDA_RUNTIME = "nvidia-cuda-runtime"
_PYTHON = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
# A conda dependency: an optional channel (`conda-forge::`), the package, then its version spec
# and build (`python=3.9.18=h955ad1f_0`, `python >=3.8`), as conda's match specs write them.
_CONDA_SPEC = re.compile(r"^(?:[^:\s]+::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<spec>.*)$")
# Its python pinned to one version (`=3.9`, `==3.9.18`, `3.9.*`, a build after it).
_CONDA_PYTHON = re.compile(r"^(?:==?|\s*)(?P<version>\d+\.\d+(?:\.\d+)?)(?:\.\*)?(?:[=\s].*)?$")
# What MLflow's environment managers take from conda.yaml besides python and the pip section:
# the build tools pip installs first. Anything else is a conda package, which pip cannot install.
_CONDA_BUILD_TOOLS = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class ImageContents:
    """What a serving image has installed."""

    python: str  # "3.11" or "3.11.2": only major.minor is compared
    packages: Mapping[str, str]  # canonical distribution name -> version

    def to_json(self) -> dict[str, Any]:
        return {"python": self.python, "packages": dict(sorted(self.packages.items()))}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageContents:
        """The inverse of to_json; ValueError naming what is wrong, so a broken table of
        images fails where it is loaded, not as a wrong verdict later."""
        if not isinstance(data, Mapping):
            raise _malformed(f"a {type(data).__name__}, not a mapping")
        python = data.get("python")
        if not isinstance(python, str) or not _PYTHON.match(python):
            raise _malformed(f"python must be a version like '3.11', not {python!r}")
        packages = data.get("packages")
        if not isinstance(packages, Mapping):
            raise _malformed(f"packages must be a mapping of name to version, not {packages!r}")
        parsed: dict[str, str] = {}
        for name, version in packages.items():
            if not isinstance(name, str) or not isinstance(version, str):
                raise _malformed(f"package {name!r}: {version!r} is not text")
            try:
                Version(version)
            except InvalidVersion:
                raise _malformed(f"package {name} has version {version!r}, not a version") from None
            key = canonicalize_name(name)
            if key in parsed:
                raise _malformed(f"package {key} is listed twice")
            parsed[key] = version
        return cls(python=python, packages=dict(sorted(parsed.items())))


def _malformed(problem: str) -> ValueError:
    # ValueError, not TypeError, for a wrong type too: callers load JSON and catch one error.
    return ValueError(f"malformed image contents: {problem}")


def contents_from_lock(lock_text: str, python: str, *, machine: str = "x86_64") -> ImageContents:
    """The packages a pip lock file installs (`name==1.2.3 \\` or `name==1.2.3 ; marker \\`
    lines, each followed by `    --hash=...` lines; `#` comments). Markers are evaluated for a
    Linux CPython of that Python on that machine, which is what the images are; requirements
    whose markers are false are left out. ValueError on a line that is not `name==version`: the
    locks pin everything exactly, and anything else would make the contents a guess."""
    environment = _environment(python, machine)
    packages: dict[str, str] = {}
    for number, raw in enumerate(lock_text.splitlines(), start=1):
        line = raw.strip()
        # Options (--hash continuations, --index-url) say where from, not what is installed.
        if not line or line.startswith(("#", "--")):
            continue
        text = line.removesuffix("\\").strip()
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            raise ValueError(f"lock line {number}: {text!r} is not `name==version`") from None
        pin = _exact_pin(requirement)
        if pin is None:
            raise ValueError(f"lock line {number}: {text!r} is not `name==version`")
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name in packages:
            raise ValueError(f"lock line {number}: {name} is pinned twice for Python {python}")
        packages[name] = pin
    return ImageContents(python=python, packages=dict(sorted(packages.items())))


@dataclass(frozen=True)
class ModelFiles:
    """A version's small files that say what it needs, as read from MLflow."""

    location: str  # where they were read (shown in messages)
    mlmodel: str | None = None  # text of MLmodel; None: there is none there
    requirements: str | None = None  # text of requirements.txt; None: absent
    python_env: str | None = None  # text of python_env.yaml; None: absent
    # text of conda.yaml; None: absent, or not read (requirements.txt and python_env.yaml, which
    # MLflow writes from the same environment, say all that the check uses of it)
    conda: str | None = None
    error: str = ""  # they could not be read at all (then the verdict is Unknown)
    lasting: bool = False  # the error is not one that asking again could change


@dataclass(frozen=True)
class Preflight:
    version: str
    verdict: Verdict
    message: str  # one line: the first blocking problem, why unknown, or what was checked
    notes: tuple[str, ...] = ()  # differences that do not block, at most MAX_NOTES

    @property
    def blocks(self) -> bool:
        return self.verdict == INCOMPATIBLE


def check_version(
    version: str,
    files: ModelFiles,
    image: ImageContents | None,
    *,
    image_name: str,
    gpu: bool,
    installs_requirements: str | None = None,
) -> Preflight:
    """The verdict on serving `version` with `image`: the checks that need only the files
    first (so a model that no image can serve says so even on a custom image), then Python,
    requirements and GPU against what the image has. The first blocking problem leads the
    message, further ones follow it. `installs_requirements`: the envManager (uv) with
    which the pods install the requirements themselves when they start: then only the files
    are checked."""
    mlmodel = _read_mlmodel(files)
    short = _short_verdict(
        version, files, mlmodel, image, image_name=image_name, installs=installs_requirements
    )
    if short is not None:
        return short
    assert isinstance(mlmodel, dict)  # noqa: S101  (_short_verdict said so)
    assert image is not None  # noqa: S101
    pyfunc = mlmodel["flavors"]["python_function"]
    problems: list[str] = []
    notes: list[str] = []
    conda = _read_conda(files.conda, notes)
    model_python = _model_python(files, pyfunc, conda, notes)
    if model_python is not None:
        _check_python(model_python, pyfunc, image, problems, notes)
    needed = _needed(pyfunc)
    requirements = _requirement_source(files, conda, notes)
    wanted = (
        []
        if requirements is None
        else _check_requirements(requirements, image, needed, problems, notes)
    )
    _check_torch(mlmodel, wanted, image, gpu, problems)
    kept = tuple(notes[:MAX_NOTES])
    if problems:
        return Preflight(version, INCOMPATIBLE, _join(problems), kept)
    shown = model_python[0] if model_python is not None else "unrecorded"
    message = f"Python {shown} and {len(wanted)} requirement(s) satisfied by image {image_name}"
    if notes:
        message += f" ({len(notes)} note(s))"
    return Preflight(version, COMPATIBLE, message, kept)


def _short_verdict(
    version: str,
    files: ModelFiles,
    mlmodel: dict[str, Any] | str,
    image: ImageContents | None,
    *,
    image_name: str,
    installs: str | None,
) -> Preflight | None:
    """The verdict when the files alone decide it, or there is no image to compare with."""
    if files.error:
        why = _one_line(files.error)
        return Preflight(
            version, UNKNOWN, f"the model's files could not be read from MLflow: {why}"
        )
    if isinstance(mlmodel, str):
        return Preflight(version, INCOMPATIBLE, mlmodel)
    if installs is not None:
        return Preflight(
            version,
            COMPATIBLE,
            f"MLmodel checked; envManager {installs}: the pods install its "
            "requirements when they start, so they are not compared with the image",
        )
    if image is None:
        return Preflight(
            version,
            UNKNOWN,
            f"image {image_name} is not one of the operator's serving images: "
            "what it has installed is unknown",
        )
    if _minor(image.python) is None:
        return Preflight(
            version, UNKNOWN, f"image {image_name} records Python {image.python!r}, not a version"
        )
    return None


def _read_mlmodel(files: ModelFiles) -> dict[str, Any] | str:
    """MLmodel as a mapping with a python_function flavor mapping, or the blocking problem."""
    where = files.location
    if files.mlmodel is None:
        return f"artifacts missing: no MLmodel at {where}"
    try:
        data = _load_yaml(files.mlmodel)
    except yaml.YAMLError as exc:
        return f"MLmodel at {where} is not valid YAML: {_yaml_error(exc)}"
    if not isinstance(data, dict):
        return f"MLmodel at {where} is not valid YAML: not a mapping but {_kind(data)}"
    flavors = data.get("flavors")
    flavors = flavors if isinstance(flavors, dict) else {}
    if not isinstance(flavors.get("python_function"), dict):
        names = ", ".join(str(name) for name in flavors) or "none"
        return f"no python_function flavor (flavors: {names}): MLflow cannot serve it"
    problem = _signature_problem(data.get("signature"))
    if problem:
        return f"bad signature: {problem}"
    return {**data, "flavors": flavors}


def _signature_problem(signature: object) -> str:
    # No signature at all is fine: MLflow serves such a model and skips input validation.
    if signature is None:
        return ""
    if not isinstance(signature, dict):
        return f"it is {_kind(signature)}, not a mapping"
    for part in ("inputs", "outputs", "params"):
        problem = _signature_part(signature.get(part))
        if problem:
            return f"its {part} {problem}"
    return ""


def _signature_part(value: object) -> str:
    # MLflow writes each part as a JSON string (null when a model has no outputs or params).
    if value is None:
        return ""
    if not isinstance(value, str):
        return f"are {_kind(value)}, not a JSON string"
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        return f"are not valid JSON ({exc})"
    if not isinstance(parsed, list):
        return f"are not a JSON list ({_kind(parsed)})"
    return ""


@dataclass(frozen=True)
class _CondaEnv:
    """What the check uses of a conda.yaml."""

    python: str | None  # the one version its python dependency pins; None: none pinned
    pip: tuple[object, ...] | None  # the entries of its pip section; None: it has none


def _read_conda(text: str | None, notes: list[str]) -> _CondaEnv | None:
    """conda.yaml's pinned Python and pip requirements (None: absent or unreadable, said in a
    note). Its conda packages are notes: the serving images have no conda to install them,
    and `mlflow models serve` leaves them out of the environments it builds with pip too."""
    if text is None:
        return None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        notes.append(f"conda.yaml is not valid YAML ({_yaml_error(exc)}): not read")
        return None
    dependencies = data.get("dependencies") if isinstance(data, dict) else None
    if not isinstance(dependencies, list):
        notes.append("conda.yaml has no list of dependencies: not read")
        return None
    python: str | None = None
    pip: list[object] | None = None
    for dependency in dependencies:
        if isinstance(dependency, dict) and "pip" in dependency:
            entries = dependency["pip"]
            entries = entries if isinstance(entries, list) else [] if entries is None else [entries]
            pip = [*(pip or []), *entries]
            continue
        match = _CONDA_SPEC.match(dependency.strip()) if isinstance(dependency, str) else None
        if match is None:
            notes.append(
                f"conda.yaml dependency {_one_line(dependency)!r} is not a package: not read"
            )
            continue
        name = match["name"].lower()
        if name == "python":
            pinned = _CONDA_PYTHON.match(match["spec"])
            if pinned is not None:
                python = python or pinned["version"]
            elif match["spec"]:
                notes.append(f"conda.yaml's {dependency!r} pins no one Python: not compared")
        elif name not in _CONDA_BUILD_TOOLS:
            notes.append(
                f"{dependency} (conda.yaml) is a conda package, not installed: the serving "
                "image has no conda"
            )
    return _CondaEnv(python, None if pip is None else tuple(pip))


def _model_python(
    files: ModelFiles, pyfunc: Mapping[str, Any], conda: _CondaEnv | None, notes: list[str]
) -> tuple[str, str] | None:
    """(the Python the model was saved with, where that was read), or None when unrecorded.
    python_env.yaml first: it is what `mlflow models serve` would build an environment for;
    then conda.yaml, which older MLflow versions write alone."""
    if files.python_env is not None:
        try:
            env = _load_yaml(files.python_env)
        except yaml.YAMLError as exc:
            env = None
            notes.append(f"python_env.yaml is not valid YAML ({_yaml_error(exc)}): not read")
        if isinstance(env, dict) and env.get("python") is not None:
            return _one_line(env["python"]), "python_env.yaml"
    if conda is not None and conda.python is not None:
        return conda.python, "conda.yaml"
    recorded = pyfunc.get("python_version")
    if recorded is not None:
        return _one_line(recorded), "MLmodel python_version"
    return None


def _check_python(
    model_python: tuple[str, str],
    pyfunc: Mapping[str, Any],
    image: ImageContents,
    problems: list[str],
    notes: list[str],
) -> None:
    recorded, source = model_python
    model = _minor(recorded)
    have = _minor(image.python)
    if model is None or have is None:
        notes.append(f"Python {recorded!r} ({source}) is not a version: not compared")
        return
    if model == have:
        return
    loader = pyfunc.get("loader_module")
    if loader == _PICKLED_LOADER:
        why = "a pickled custom model does not load across Python minor versions"
    elif "cloudpickle_version" in pyfunc and loader != _CODE_LOADER:
        why = "cloudpickled code does not load across Python minor versions"
    else:
        # Other flavors store data (skops, pickled estimators of libraries, weights) that the
        # library loads on any Python it supports; the requirements check covers the library.
        notes.append(f"saved with Python {model}, the image has {have}")
        return
    problems.append(f"needs Python {model} ({source}: {why}), the image has {have}")


def _needed(pyfunc: Mapping[str, Any]) -> frozenset[str] | None:
    """The packages without which the model cannot load (None: every requirement). A built-in
    flavor loads with MLflow and its library; the rest of its requirements.txt is whatever
    MLflow's inference saw imported in the logging environment (a test runner, a console
    library), which `mlflow models serve --env-manager local` never installs either. A custom
    model's code may import any of them."""
    library = FLAVOR_LIBRARIES.get(str(pyfunc.get("loader_module")))
    return None if library is None else frozenset({"mlflow", "mlflow-skinny", library})


@dataclass(frozen=True)
class _Requirements:
    """A version's pip requirements, as one file lists them."""

    entries: tuple[object, ...]
    source: str  # the file, named in messages
    entry: str  # what one entry is called there


def _requirement_source(
    files: ModelFiles, conda: _CondaEnv | None, notes: list[str]
) -> _Requirements | None:
    """requirements.txt, else the pip section of conda.yaml; None, said in a note, when the
    version records neither."""
    if files.requirements is not None:
        return _Requirements(tuple(files.requirements.splitlines()), "requirements.txt", "line")
    if conda is not None and conda.pip is not None:
        return _Requirements(conda.pip, "conda.yaml", "pip requirement")
    if conda is not None:
        notes.append(
            f"no requirements.txt at {files.location}, and conda.yaml has no pip section: "
            "its packages were not checked"
        )
    else:
        notes.append(f"no requirements.txt at {files.location}: its packages were not checked")
    return None


def _check_requirements(
    requirements: _Requirements,
    image: ImageContents,
    needed: frozenset[str] | None,
    problems: list[str],
    notes: list[str],
) -> list[str]:
    """Each applicable requirement against the image; returns the canonical names checked."""
    # The machine is not recorded in the contents; a requirement that depends on it is rare
    # (MLflow writes the logging host's resolved pins, not markers) and the images are x86_64.
    environment = _environment(image.python, "x86_64")
    checked: list[str] = []
    source = requirements.source
    for raw in requirements.entries:
        if not isinstance(raw, str):  # a YAML number or mapping in conda.yaml's pip section
            problems.append(
                f"{source} {requirements.entry} {_one_line(raw)!r} is not a valid requirement"
            )
            continue
        line = raw.split(" #", 1)[0].strip()
        # Options (-r, --index-url, -c) say where from, not what; MLflow writes none of them.
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            problems.append(f"{source} {requirements.entry} {line!r} is not a valid requirement")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        checked.append(name)
        installed = image.packages.get(name)
        if installed is None and needed is not None and name not in needed:
            notes.append(f"{line} ({source}) is not in the image; the flavor loads without it")
            continue
        if installed is None:
            problems.append(f"needs {line} ({source}), the image has no {name}")
            continue
        if _satisfies(requirement.specifier, installed):
            continue
        if name in MAJOR_SENSITIVE and _other_major(requirement.specifier, installed):
            problems.append(
                f"needs {line} ({source}), the image has {name} {installed}: another major version"
            )
        else:
            # MLflow pins the exact versions of the environment a model was logged from, so a
            # different minor or patch is the normal case and works.
            notes.append(f"wants {line}, the image has {installed}")
    return checked


def _check_torch(
    mlmodel: Mapping[str, Any],
    wanted: list[str],
    image: ImageContents,
    gpu: bool,
    problems: list[str],
) -> None:
    flavor = "pytorch" in mlmodel["flavors"]
    if not flavor and "torch" not in wanted:
        return
    torch = image.packages.get("torch")
    if torch is None:
        if "torch" not in wanted:  # a missing torch requirement was named already
            problems.append("the pytorch flavor (MLmodel) needs torch, the image has no torch")
        return
    if not gpu:
        return
    local = _local(torch)
    if "cpu" in local.split("."):
        problems.append(
            f"a CPU-only torch build (torch {torch}) on a deployment with gpu.count > 0"
        )
    elif not any(name.startswith(_CUDA_RUNTIME) for name in image.packages):
        problems.append(
            f"a CPU-only torch build (torch {torch}, no {_CUDA_RUNTIME} package) "
            "on a deployment with gpu.count > 0"
        )


def _satisfies(specifier: SpecifierSet, installed: str) -> bool:
    """Whether the installed version meets the requirement, local labels (+cpu, +cu128)
    aside: they name a build of the same release."""
    try:
        version = Version(installed)
    except InvalidVersion:
        return False
    return specifier.contains(version, prereleases=True) or specifier.contains(
        Version(version.public), prereleases=True
    )


def _other_major(specifier: SpecifierSet, installed: str) -> bool:
    """Whether the requirement rules out every release of the installed major version.

    The rule, per clause: a requirement is another major when one of its clauses alone
    excludes the whole major M of the installed version: `==V`, `===V`, `~=V` (and `==V.*`)
    whose V has another major; `>=V` or `>V` with V's major above M; `<V` with V <= M.0;
    `<=V` with V < M.0; `!=M.*`. Clauses that exclude M only together (`>3.5,<3.2`) are not
    seen: requirements written that way say nothing sensible, and such a version is then
    reported as a note rather than blocked."""
    try:
        major = Version(installed).major
    except InvalidVersion:
        return False
    floor = Version(str(major))
    return any(_clause_excludes_major(clause, major, floor) for clause in specifier)


def _clause_excludes_major(clause: Specifier, major: int, floor: Version) -> bool:
    operator = clause.operator
    text = clause.version.removesuffix(".*")
    try:
        bound = Version(text)
    except InvalidVersion:  # `===` accepts arbitrary strings
        return operator == "===" and not text.startswith(f"{major}.")
    if operator in {"==", "===", "~="}:
        return bound.major != major
    if operator in {">=", ">"}:
        return bound.major > major
    if operator == "<":
        return bound <= floor
    if operator == "<=":
        return bound < floor
    # "!=": only a wildcard over the whole major (!=3.*) excludes all of it.
    return clause.version.endswith(".*") and bound.release == (major,)


def _exact_pin(requirement: Requirement) -> str | None:
    clauses = list(requirement.specifier)
    if requirement.url or len(clauses) != 1:
        return None
    clause = clauses[0]
    if clause.operator not in {"==", "==="} or clause.version.endswith(".*"):
        return None
    return clause.version


def _environment(python: str, machine: str) -> dict[str, str]:
    """The marker environment of an image: Linux CPython of that Python. Spelled out in full so
    that the verdict never depends on the machine the operator happens to run on."""
    match = _PYTHON.match(python)
    if match is None:
        raise ValueError(f"Python {python!r} is not a version like '3.11' or '3.11.2'")
    full = f"{match[1]}.{match[2]}.{match[3] or '0'}"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": f"{match[1]}.{match[2]}",
        "sys_platform": "linux",
    }


def _minor(python: str) -> str | None:
    match = _PYTHON.match(python.strip())
    return f"{match[1]}.{match[2]}" if match else None


def _local(version: str) -> str:
    try:
        return Version(version).local or ""
    except InvalidVersion:
        return ""


class _TextVersionsLoader(yaml.SafeLoader):
    """SafeLoader that keeps `3.10` as text: as a float it would read as Python 3.1."""


_TextVersionsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_yaml(text: str) -> object:
    loader = _TextVersionsLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        return exc.problem + (f" (line {mark.line + 1})" if mark is not None else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _one_line(value: object) -> str:
    # Messages end up in a condition, which a person reads as one line.
    return " ".join(str(value).split())


def _kind(value: object) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _join(problems: list[str]) -> str:
    message = problems[0]
    also = problems[1 : 1 + _MAX_ALSO]
    if also:
        message += "; also: " + "; ".join(also)
    if len(problems) > 1 + _MAX_ALSO:
        message += f"; and {len(problems) - 1 - _MAX_ALSO} more"
    return message


def preflight_version(
    resolution: Resolution | None, observed: DeploymentObservation, last: ModelDeploymentStatus
) -> str | None:
    """The version to check now: the one the registry selects, unless it was decided here
    already (observation.settled_versions)."""
    if not isinstance(resolution, Resolved):
        return None
    return None if resolution.version in settled_versions(observed, last) else resolution.version
