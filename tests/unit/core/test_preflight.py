"""The pre-flight check against a corpus of model versions as MLflow 3.17 writes them: a good
sklearn model, and broken versions each named with what breaks them; the image's contents read
from lock texts shaped like deploy/image/locks/*.txt."""

from __future__ import annotations

import pytest

from mlflow_operator.api.modeldeployment import ModelDeploymentStatus, RolloutRecord
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation
from mlflow_operator.core.modeldeployment.preflight import (
    COMPATIBLE,
    INCOMPATIBLE,
    UNKNOWN,
    ImageContents,
    ModelFiles,
    Preflight,
    check_version,
    contents_from_lock,
    preflight_version,
)
from mlflow_operator.core.modeldeployment.resolution import Resolved

WHERE = "mlflow-artifacts:/1/models/m-0123456789abcdef/artifacts"
IMAGE = "ghcr.io/example/mlflow-operator-serving-cpu:0.4.0"

# MLmodel of an sklearn model logged by MLflow 3.17.2.
GOOD_MLMODEL = """\
artifact_path: null
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.skops
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.skops
    serialization_format: skops
    sklearn_version: 1.9.1
    skops_trusted_types: []
is_signature_from_type_hint: false
mlflow_version: 3.17.2
model_id: m-0123456789abcdef
model_size_bytes: 2270
model_uuid: m-0123456789abcdef
signature:
  inputs: '[{"type": "double", "name": "sepal length (cm)", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
utc_time_created: '2026-12-03 03:00:00.000000'
"""
GOOD_REQUIREMENTS = """\
mlflow==3.17.2
cloudpickle==3.1.3
numpy==2.4.6
pandas==3.1.1
scikit-learn==1.9.1
scipy==1.17.1
skops==0.16.0
"""
GOOD_PYTHON_ENV = """\
python: 3.11.7
build_dependencies:
- pip==24.0
- setuptools
- wheel
dependencies:
- -r requirements.txt
"""


def conda_yaml(requirements: str, python: str = "3.11.7", extra: str = "") -> str:
    """conda.yaml as MLflow writes it (`extra`: more conda dependencies, one per line)."""
    pip = "".join(f"  - {line}\n" for line in requirements.splitlines())
    return (
        f"channels:\n- conda-forge\ndependencies:\n- python={python}\n{extra}- pip<=24.0\n"
        f"- pip:\n{pip}name: mlflow-env\n"
    )


GOOD_CONDA = conda_yaml(GOOD_REQUIREMENTS)

# A custom mlflow.pyfunc.PythonModel: the model is cloudpickled code.
CUSTOM_MLMODEL = """\
artifact_path: null
flavors:
  python_function:
    cloudpickle_version: 3.1.3
    code: null
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.pyfunc.model
    python_model: python_model.pkl
    python_version: 3.9.18
    streamable: false
is_signature_from_type_hint: false
mlflow_version: 3.17.2
model_id: m-fedcba9876543210
model_size_bytes: 1873
model_uuid: m-fedcba9876543210
signature:
  inputs: '[{"type": "string", "name": "text", "required": true}]'
  outputs: '[{"type": "double", "required": true}]'
  params: null
utc_time_created: '2026-12-03 03:10:00.000000'
"""
CUSTOM_REQUIREMENTS = "mlflow==3.17.2\ncloudpickle==3.1.3\npandas==3.1.1\n"

PYTORCH_MLMODEL = """\
artifact_path: null
flavors:
  python_function:
    data: data
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.pytorch
    pickle_module_name: mlflow.pytorch.pickle_module
    python_version: 3.11.7
  pytorch:
    code: null
    model_data: data
    pytorch_version: 2.10.0
is_signature_from_type_hint: false
mlflow_version: 3.17.2
model_id: m-00112233445566ff
model_size_bytes: 44810
model_uuid: m-00112233445566ff
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]'
  params: null
utc_time_created: '2026-12-03 03:20:00.000000'
"""
PYTORCH_REQUIREMENTS = "mlflow==3.17.2\ncloudpickle==3.1.3\nnumpy==2.4.6\ntorch==2.10.0\n"

KERAS_ONLY_MLMODEL = """\
artifact_path: null
flavors:
  keras:
    code: null
    data: data
    keras_backend: tensorflow
    keras_version: 3.12.0
    save_exported_model: false
mlflow_version: 3.17.2
model_uuid: m-0a0b0c0d0e0f1011
utc_time_created: '2026-12-03 03:30:00.000000'
"""

LOCK_HEAD = """\
# Python packages of the serving-cpu image, installed with --require-hashes --no-deps.
# Generated from serving/pyproject.toml [project.dependencies] by
# `python -m tests.images.locks` (make locks); do not edit by hand.
# inputs: sha256:0bf640dcbb1c5fda62a9cf55c9e637d0775d376e4a361cebc5651cc79852b1ee
cloudpickle==3.1.3 \\
    --hash=sha256:065665c041c42a5938ed220bdcd7230f22527fbec085e1853d2402c8a3615d9d
gunicorn==26.2.0 ; sys_platform != 'win32' \\
    --hash=sha256:9243213661e29250eb41368e5daa826fc017156c3b8a11440826b2e3ed376472
mlflow==3.17.2 \\
    --hash=sha256:0133c3c3b54a0bf1e71fa5c1ad95c93f07fd54e24ef1fe182f5122e1573d2bf1
mlflow-skinny==3.17.2 \\
    --hash=sha256:038c2c7e8caa26b6c8423779b5eaf1893904048a512c19b32fe841ffa5592b50
numpy==2.4.6 ; python_full_version < '3.12' \\
    --hash=sha256:0684952aeae1f5dbfe02d46039338513b94009baecd15d8e4098a357c4c4a2a6 \\
    --hash=sha256:0790ec66fa4013e83c53b9025a45d454723da1a2fce28b3208c9b32d08af162f
numpy==2.5.5 ; python_full_version >= '3.12' \\
    --hash=sha256:083673c7a94c3ea035caaa5ca04288bdb44887abfe1f5ba23294e6a4b03efd2d
pandas==3.1.1 \\
    --hash=sha256:09e0eb18c7e0c8777e2f9149de63799195b9b3ca1b5c81ba6f32f2c6b8628210
PyYAML==6.0.3 \\
    --hash=sha256:09ec102b4b8c9a920275733bbc11fdbb615efe6f9231a06007c0218d336fb77a
pywin32==312 ; sys_platform == 'win32' \\
    --hash=sha256:0a8ea271867e360ac985ae607f4a23ad9a38414b9aca1d49ec98839ae660e49f
scikit-learn==1.9.1 \\
    --hash=sha256:0e6f16f5e49c4b8267988c05ab07760d7064cea57d077c3d068d04b0fbb992cb
scipy==1.17.1 ; python_full_version < '3.12' \\
    --hash=sha256:1061b364556e8172e8d46b0b183adeeb73e8c42d30ebc745591e1bd89acad52e
scipy==1.18.1 ; python_full_version >= '3.12' \\
    --hash=sha256:1220353657ad49493551f089ce02f1a348fd57ffd585bfec77f2f3c4fe3a7346
skops==0.16.0 \\
    --hash=sha256:137351bf20bbed9a65e839f4a4452ac377389bdb2f2857d2acffef38f5e9f2d1
"""
CPU_TORCH = """\
torch==2.10.0+cpu \\
    --hash=sha256:149fb56caf7acb67073126f675d0958d9c4b3125fcd3f6d4877df98aa8a97ce9
"""
GPU_TORCH = """\
nvidia-cuda-runtime-cu12==12.8.90 ; platform_machine == 'x86_64' and sys_platform == 'linux' \\
    --hash=sha256:14f04769cfefe4734016a856a83af36133cd17779cef9ae817f812b8ba9d6d51
torch==2.10.0 \\
    --hash=sha256:15a310d3c71398e3d7bfc93a1a73fbe664315cd9e9016b8efc1cff85eeab7155
"""
CPU = contents_from_lock(LOCK_HEAD + CPU_TORCH, "3.11")
GPU = contents_from_lock(LOCK_HEAD + GPU_TORCH, "3.11")
NO_TORCH = contents_from_lock(LOCK_HEAD, "3.11")
TORCH_WITHOUT_CUDA = contents_from_lock(LOCK_HEAD + GPU_TORCH.split("\n", 2)[2], "3.11")


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old  # the corpus drifts from the fixture otherwise, silently
    return text.replace(old, new)


def files(
    mlmodel: str | None = GOOD_MLMODEL,
    requirements: str | None = GOOD_REQUIREMENTS,
    python_env: str | None = GOOD_PYTHON_ENV,
    error: str = "",
    conda: str | None = None,
) -> ModelFiles:
    return ModelFiles(WHERE, mlmodel, requirements, python_env, conda, error)


def conda_only(mlmodel: str, conda: str) -> ModelFiles:
    """A version with conda.yaml alone (older MLflow, a conda environment)."""
    return files(mlmodel, requirements=None, python_env=None, conda=conda)


def check(model: ModelFiles, image: ImageContents | None = CPU, *, gpu: bool = False) -> Preflight:
    return check_version("7", model, image, image_name=IMAGE, gpu=gpu)


def test_the_good_sklearn_model_is_compatible_and_says_what_was_checked() -> None:
    result = check(files())
    assert result == Preflight(
        "7", COMPATIBLE, f"Python 3.11.7 and 7 requirement(s) satisfied by image {IMAGE}"
    )
    assert not result.blocks


OUTPUTS_AS_A_MAPPING = edit(
    edit(GOOD_MLMODEL, "  outputs: '[", '  outputs: \'{"columns": ['), "[-1]}}]'", "[-1]}}]}'"
)
BROKEN: list[tuple[str, ModelFiles, ImageContents | None, bool, str, str]] = [
    (
        "missing package a custom model may import",
        files(CUSTOM_MLMODEL, CUSTOM_REQUIREMENTS + "lightgbm==4.6.0\n"),
        CPU, False, INCOMPATIBLE,
        "needs lightgbm==4.6.0 (requirements.txt), the image has no lightgbm",
    ),
    (
        "pickled custom model saved with another Python",
        files(CUSTOM_MLMODEL, CUSTOM_REQUIREMENTS, edit(GOOD_PYTHON_ENV, "3.11.7", "3.9.18")),
        CPU, False, INCOMPATIBLE,
        "needs Python 3.9 (python_env.yaml: a pickled custom model does not load across Python "
        "minor versions), the image has 3.11",
    ),
    (
        "cloudpickled model whose Python only MLmodel records",
        files(edit(CUSTOM_MLMODEL, "mlflow.pyfunc.model", "my_loader"), CUSTOM_REQUIREMENTS, None),
        CPU, False, INCOMPATIBLE,
        "needs Python 3.9 (MLmodel python_version: cloudpickled code does not load across "
        "Python minor versions), the image has 3.11",
    ),
    (
        "python 3.10 is not read as the float 3.1",
        files(CUSTOM_MLMODEL, CUSTOM_REQUIREMENTS, edit(GOOD_PYTHON_ENV, "3.11.7", "3.10")),
        CPU, False, INCOMPATIBLE,
        "needs Python 3.10 (python_env.yaml: a pickled custom model does not load across "
        "Python minor versions), the image has 3.11",
    ),
    (
        "mlflow 2 model on an mlflow 3 image",
        files(requirements=edit(GOOD_REQUIREMENTS, "mlflow==3.17.2", "mlflow==2.9.2")),
        CPU, False, INCOMPATIBLE,
        "needs mlflow==2.9.2 (requirements.txt), the image has mlflow 3.17.2: "
        "another major version",
    ),
    (
        "scikit-learn 0.x",
        files(requirements=edit(GOOD_REQUIREMENTS, "scikit-learn==1.9.1", "scikit-learn==0.24.2")),
        CPU, False, INCOMPATIBLE,
        "needs scikit-learn==0.24.2 (requirements.txt), the image has scikit-learn 1.9.1: "
        "another major version",
    ),
    (
        "numpy below 2 by a range",
        files(requirements=edit(GOOD_REQUIREMENTS, "numpy==2.4.6", "numpy<2")),
        CPU, False, INCOMPATIBLE,
        "needs numpy<2 (requirements.txt), the image has numpy 2.4.6: another major version",
    ),
    (
        "CPU torch on a GPU deployment",
        files(PYTORCH_MLMODEL, PYTORCH_REQUIREMENTS),
        CPU, True, INCOMPATIBLE,
        "a CPU-only torch build (torch 2.10.0+cpu) on a deployment with gpu.count > 0",
    ),
    (
        "torch without a CUDA runtime on a GPU deployment",
        files(PYTORCH_MLMODEL, PYTORCH_REQUIREMENTS),
        TORCH_WITHOUT_CUDA, True, INCOMPATIBLE,
        "a CPU-only torch build (torch 2.10.0, no nvidia-cuda-runtime package) on a deployment "
        "with gpu.count > 0",
    ),
    (
        "pytorch flavor on an image without torch",
        files(PYTORCH_MLMODEL, edit(PYTORCH_REQUIREMENTS, "torch==2.10.0\n", "")),
        NO_TORCH, False, INCOMPATIBLE,
        "the pytorch flavor (MLmodel) needs torch, the image has no torch",
    ),
    (
        "artifacts missing",
        files(mlmodel=None, requirements=None, python_env=None),
        CPU, False, INCOMPATIBLE,
        f"artifacts missing: no MLmodel at {WHERE}",
    ),
    (
        "no python_function flavor",
        files(KERAS_ONLY_MLMODEL, "mlflow==3.17.2\nkeras==3.12.0\ntensorflow==2.21.0\n"),
        CPU, False, INCOMPATIBLE,
        "no python_function flavor (flavors: keras): MLflow cannot serve it",
    ),
    (
        "no flavors at all",
        files("artifact_path: null\nmlflow_version: 3.17.2\n"),
        CPU, False, INCOMPATIBLE,
        "no python_function flavor (flavors: none): MLflow cannot serve it",
    ),
    (
        "bad signature JSON",
        files(edit(GOOD_MLMODEL, '"required": true}]', '"required": true]')),
        CPU, False, INCOMPATIBLE,
        "bad signature: its inputs are not valid JSON (Expecting ',' delimiter: line 1 column "
        "66 (char 65))",
    ),
    (
        "signature outputs not a list",
        files(OUTPUTS_AS_A_MAPPING),
        CPU, False, INCOMPATIBLE,
        "bad signature: its outputs are not a JSON list (a dict)",
    ),
    (
        "MLmodel not YAML",
        files(edit(GOOD_MLMODEL, "    model_path: model.skops", "  model_path: [model.skops")),
        CPU, False, INCOMPATIBLE,
        f"MLmodel at {WHERE} is not valid YAML: expected ',' or ']', but got ':' "
        "(line 9)",
    ),
    (
        "MLmodel a list",
        files("- python_function\n- sklearn\n"),
        CPU, False, INCOMPATIBLE,
        f"MLmodel at {WHERE} is not valid YAML: not a mapping but a list",
    ),
    (
        "unparsable requirements line",
        files(requirements=edit(GOOD_REQUIREMENTS, "scikit-learn==1.9.1", "scikit-learn=1.9.1")),
        CPU, False, INCOMPATIBLE,
        "requirements.txt line 'scikit-learn=1.9.1' is not a valid requirement",
    ),
    (
        "conda.yaml only: a pip package a custom model may import",
        conda_only(CUSTOM_MLMODEL, conda_yaml(CUSTOM_REQUIREMENTS + "lightgbm==4.6.0\n")),
        CPU, False, INCOMPATIBLE,
        "needs lightgbm==4.6.0 (conda.yaml), the image has no lightgbm",
    ),
    (
        "conda.yaml only: pickled custom model saved with another Python",
        conda_only(CUSTOM_MLMODEL, conda_yaml(CUSTOM_REQUIREMENTS, python="3.9.18")),
        CPU, False, INCOMPATIBLE,
        "needs Python 3.9 (conda.yaml: a pickled custom model does not load across Python "
        "minor versions), the image has 3.11",
    ),
    (
        "conda.yaml only: mlflow 2",
        conda_only(GOOD_MLMODEL, edit(GOOD_CONDA, "mlflow==3.17.2", "mlflow==2.9.2")),
        CPU, False, INCOMPATIBLE,
        "needs mlflow==2.9.2 (conda.yaml), the image has mlflow 3.17.2: another major version",
    ),
    (
        "conda.yaml only: unparsable pip requirement",
        conda_only(GOOD_MLMODEL, edit(GOOD_CONDA, "scikit-learn==1.9.1", "scikit-learn=1.9.1")),
        CPU, False, INCOMPATIBLE,
        "conda.yaml pip requirement 'scikit-learn=1.9.1' is not a valid requirement",
    ),
    (
        "files unreadable",
        files(error="MLflow at http://mlflow:5000 answered HTTP 503 to artifacts/list"),
        CPU, False, UNKNOWN,
        "the model's files could not be read from MLflow: MLflow at http://mlflow:5000 answered "
        "HTTP 503 to artifacts/list",
    ),
    (
        "custom image",
        files(),
        None, False, UNKNOWN,
        f"image {IMAGE} is not one of the operator's serving images: what it has installed is "
        "unknown",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "image", "gpu", "verdict", "message"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_each_broken_version_is_refused_naming_what_breaks_it(
    model: ModelFiles, image: ImageContents | None, gpu: bool, verdict: str, message: str
) -> None:
    result = check(model, image, gpu=gpu)
    assert (result.verdict, result.message) == (verdict, message)
    assert result.blocks == (verdict == INCOMPATIBLE)


def test_the_corpus_has_a_dozen_distinct_broken_versions() -> None:
    assert len({case[1] for case in BROKEN}) >= 12


def test_the_checks_that_need_no_image_run_before_an_unknown_image_is_reported() -> None:
    result = check(files(mlmodel=None), None)
    assert (result.verdict, result.message) == (
        INCOMPATIBLE,
        f"artifacts missing: no MLmodel at {WHERE}",
    )


def test_minor_differences_of_pinned_packages_are_notes_not_blocks() -> None:
    requirements = edit(GOOD_REQUIREMENTS, "cloudpickle==3.1.3", "cloudpickle==3.0.0")
    requirements = edit(requirements, "pandas==3.1.1", "pandas==3.0.2")
    result = check(files(requirements=requirements))
    assert result.verdict == COMPATIBLE
    assert result.message == (
        f"Python 3.11.7 and 7 requirement(s) satisfied by image {IMAGE} (2 note(s))"
    )
    assert result.notes == (
        "wants cloudpickle==3.0.0, the image has 3.1.3",
        "wants pandas==3.0.2, the image has 3.1.1",
    )


def test_another_python_minor_for_a_model_that_stores_no_code_is_only_a_note() -> None:
    result = check(files(python_env=edit(GOOD_PYTHON_ENV, "3.11.7", "3.10.14")))
    assert result.verdict == COMPATIBLE
    assert result.notes == ("saved with Python 3.10, the image has 3.11",)
    assert result.message.startswith("Python 3.10.14 and 7 requirement(s)")


def test_packages_a_built_in_flavor_does_not_load_are_notes_but_its_library_is_needed() -> None:
    """MLflow's requirement inference lists what the logging environment had imported (the
    README's quick start, logged from a venv with pytest, listed pytest and rich): a sklearn
    model loads without them, as `mlflow models serve --env-manager local` shows."""
    spurious = check(files(requirements=GOOD_REQUIREMENTS + "pytest==8.4.2\nrich==15.0.0\n"))
    assert spurious.verdict == COMPATIBLE, spurious
    assert spurious.notes == (
        "pytest==8.4.2 (requirements.txt) is not in the image; the flavor loads without it",
        "rich==15.0.0 (requirements.txt) is not in the image; the flavor loads without it",
    )
    xgboost = edit(GOOD_MLMODEL, "loader_module: mlflow.sklearn", "loader_module: mlflow.xgboost")
    needed = check(files(xgboost, GOOD_REQUIREMENTS + "xgboost==3.2.0\n"), NO_TORCH)
    assert needed.verdict == INCOMPATIBLE
    assert needed.message == "needs xgboost==3.2.0 (requirements.txt), the image has no xgboost"


def test_a_models_from_code_version_from_another_python_minor_is_only_a_note() -> None:
    """MLflow records cloudpickle_version for models from code too, but their model is a
    source file (loader code_model): it loads on any Python its code supports."""
    from_code = edit(
        edit(CUSTOM_MLMODEL, "loader_module: mlflow.pyfunc.model",
             "loader_module: mlflow.pyfunc.loaders.code_model"),
        "python_model: python_model.pkl", "model_code_path: model.py",
    )  # fmt: skip
    result = check(files(mlmodel=from_code, requirements=CUSTOM_REQUIREMENTS, python_env=None))
    assert result.verdict == COMPATIBLE, result
    assert result.notes[0] == "saved with Python 3.9, the image has 3.11"
    pickled = check(
        files(mlmodel=CUSTOM_MLMODEL, requirements=CUSTOM_REQUIREMENTS, python_env=None)
    )
    assert pickled.verdict == INCOMPATIBLE  # the same, cloudpickled: its bytecode is 3.9's


def test_python_env_yaml_is_preferred_and_mlmodel_python_version_is_the_fallback() -> None:
    # python_env.yaml says 3.11, MLmodel says 3.9: the environment file wins
    custom = files(CUSTOM_MLMODEL, CUSTOM_REQUIREMENTS, GOOD_PYTHON_ENV)
    assert check(custom).verdict == COMPATIBLE
    unrecorded = files(edit(GOOD_MLMODEL, "    python_version: 3.11.7\n", ""), python_env=None)
    assert check(unrecorded).message.startswith("Python unrecorded and 7 requirement(s)")
    broken_env = check(files(python_env="python: [3.11\n"))
    assert broken_env.verdict == COMPATIBLE  # MLmodel's python_version still says 3.11.7
    assert broken_env.notes[0].startswith("python_env.yaml is not valid YAML (")


@pytest.mark.parametrize(
    ("requirement", "another_major"),
    [
        ("mlflow==2.9.2", True),
        ("mlflow~=2.9", True),
        ("mlflow==2.*", True),
        ("mlflow>=2.0,<3", True),
        ("mlflow<3.0", True),
        ("mlflow<=2.99", True),
        ("mlflow>2.5,<2.9", True),
        ("mlflow>=4", True),
        ("mlflow!=3.*", True),
        ("mlflow===2.9.2", True),
        ("mlflow==3.5.0", False),
        ("mlflow>=3.18", False),
        ("mlflow~=3.18.0", False),
        ("mlflow<=3.0", False),
        ("mlflow<3.17", False),
        ("mlflow!=3.17.2", False),
        ("cloudpickle==2.2.1", False),  # not a package whose major breaks models
    ],
)
def test_another_major_version_is_a_clause_that_rules_out_the_whole_installed_major(
    requirement: str, another_major: bool
) -> None:
    result = check(files(requirements=requirement + "\n"))
    assert result.blocks == another_major, result
    if another_major:
        assert result.message.endswith("another major version")
    else:
        assert result.verdict == COMPATIBLE
        assert len(result.notes) == 1
        assert result.notes[0].startswith(f"wants {requirement}, the image has ")


def test_requirements_comments_options_and_false_markers_are_skipped() -> None:
    requirements = (
        "# logged from a notebook\n"
        "--index-url https://pypi.org/simple\n"
        "-r extra-requirements.txt\n"
        "\n"
        "mlflow==3.17.2  # the tracking client\n"
        'pywin32==306 ; sys_platform == "win32"\n'
        "numpy==2.5.5 ; python_version >= '3.12'\n"
        "numpy==2.4.6 ; python_version < '3.12'\n"
    )
    result = check(files(requirements=requirements))
    assert result == Preflight(
        "7", COMPATIBLE, f"Python 3.11.7 and 2 requirement(s) satisfied by image {IMAGE}"
    )


def test_a_local_version_label_does_not_fail_a_pin_and_torch_on_a_gpu_image_passes() -> None:
    pinned = files(PYTORCH_MLMODEL, PYTORCH_REQUIREMENTS)
    assert check(pinned, CPU).verdict == COMPATIBLE  # torch==2.10.0 is met by 2.10.0+cpu
    assert check(pinned, GPU, gpu=True).verdict == COMPATIBLE
    plus_cpu = files(PYTORCH_MLMODEL, edit(PYTORCH_REQUIREMENTS, "2.10.0\n", "2.10.0+cpu\n"))
    assert check(plus_cpu, CPU).verdict == COMPATIBLE


def test_every_blocking_problem_is_listed_the_first_one_leading() -> None:
    requirements = (
        "mlflow==2.9.2\ncloudpickle==3.1.3\nlightgbm==4.6.0\nxgboost==3.2.0\n"
        "catboost==1.2.8\nscikit-learn==0.24.2\n"
    )
    result = check(files(CUSTOM_MLMODEL, requirements, None))
    assert result.message == (
        "needs Python 3.9 (MLmodel python_version: a pickled custom model does not load across "
        "Python minor versions), the image has 3.11; also: needs mlflow==2.9.2 "
        "(requirements.txt), the image has mlflow 3.17.2: another major version; needs "
        "lightgbm==4.6.0 (requirements.txt), the image has no lightgbm; needs xgboost==3.2.0 "
        "(requirements.txt), the image has no xgboost; and 2 more"
    )


def test_notes_are_capped_and_the_message_counts_them_all() -> None:
    requirements = "".join(f"mlflow==3.{minor}.0\n" for minor in range(12))
    result = check(files(requirements=requirements))
    assert result.verdict == COMPATIBLE
    assert len(result.notes) == 10
    assert result.message.endswith(
        "12 requirement(s) satisfied by image " + IMAGE + " (12 note(s))"
    )


def test_no_requirements_file_is_a_note() -> None:
    result = check(files(requirements=None))
    assert result.verdict == COMPATIBLE
    assert result.notes == (f"no requirements.txt at {WHERE}: its packages were not checked",)


def test_the_lock_markers_are_evaluated_for_the_image_python() -> None:
    py311 = contents_from_lock(LOCK_HEAD, "3.11")
    py312 = contents_from_lock(LOCK_HEAD, "3.12")
    assert (py311.packages["numpy"], py311.packages["scipy"]) == ("2.4.6", "1.17.1")
    assert (py312.packages["numpy"], py312.packages["scipy"]) == ("2.5.5", "1.18.1")
    assert contents_from_lock(LOCK_HEAD, "3.11.9").packages == py311.packages
    assert "pywin32" not in py311.packages  # a Linux image
    assert py311.packages["pyyaml"] == "6.0.3"  # names canonicalized
    assert list(py311.packages) == sorted(py311.packages)
    assert GPU.packages["nvidia-cuda-runtime-cu12"] == "12.8.90"
    arm = contents_from_lock(LOCK_HEAD + GPU_TORCH, "3.11", machine="aarch64")
    assert "nvidia-cuda-runtime-cu12" not in arm.packages


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("numpy>=2.4 \\", "lock line 1: 'numpy>=2.4' is not `name==version`"),
        ("numpy \\", "lock line 1: 'numpy' is not `name==version`"),
        ("numpy==2.* \\", "lock line 1: 'numpy==2.*' is not `name==version`"),
        ("-e ./serving", "lock line 1: '-e ./serving' is not `name==version`"),
        ("numpy=2.4.6", "lock line 1: 'numpy=2.4.6' is not `name==version`"),
        ("numpy==2.4.6\nNumPy==2.4.6", "lock line 2: numpy is pinned twice for Python 3.11"),
    ],
)
def test_a_lock_line_that_is_not_an_exact_pin_is_an_error(line: str, error: str) -> None:
    with pytest.raises(ValueError) as raised:
        contents_from_lock(line, "3.11")
    assert str(raised.value) == error


def test_image_contents_survive_a_json_round_trip() -> None:
    data = GPU.to_json()
    assert list(data) == ["python", "packages"]
    assert list(data["packages"]) == sorted(data["packages"])
    assert ImageContents.from_json(data) == GPU
    assert ImageContents.from_json({"python": "3.11", "packages": {"PyYAML": "6.0.3"}}) == (
        ImageContents("3.11", {"pyyaml": "6.0.3"})
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (["3.11"], "malformed image contents: a list, not a mapping"),
        (
            {"packages": {}},
            "malformed image contents: python must be a version like '3.11', not None",
        ),
        ({"python": "3", "packages": {}}, "python must be a version like '3.11', not '3'"),
        ({"python": "3.11"}, "packages must be a mapping of name to version, not None"),
        ({"python": "3.11", "packages": {"numpy": 2}}, "package 'numpy': 2 is not text"),
        ({"python": "3.11", "packages": {"numpy": "two"}}, "package numpy has version 'two'"),
        (
            {"python": "3.11", "packages": {"PyYAML": "6.0", "pyyaml": "6.0"}},
            "pyyaml is listed twice",
        ),
    ],
)
def test_malformed_image_contents_are_a_value_error_that_says_what_is_wrong(
    data: object, error: str
) -> None:
    with pytest.raises(ValueError, match=r"^malformed image contents: ") as raised:
        ImageContents.from_json(data)  # type: ignore[arg-type]
    assert error in str(raised.value)


def test_only_a_version_not_decided_here_is_checked() -> None:
    """What runs, served, was last good, failed or succeeded before is never checked again:
    a move back to it is never held up."""
    last = ModelDeploymentStatus(
        serving_version="3",
        failed_versions=["4"],
        history=[
            RolloutRecord(version="1", result="Succeeded"),
            RolloutRecord(version="2", result="RolledBack"),
        ],
    )
    running = DeploymentObservation(exists=True, version="5")
    checked = {
        v: preflight_version(Resolved(v), running, last) for v in ("1", "2", "3", "4", "5", "6")
    }
    assert checked == {"1": None, "2": "2", "3": None, "4": None, "5": None, "6": "6"}
    assert preflight_version(None, running, last) is None


def test_a_version_with_conda_yaml_alone_is_checked_from_it() -> None:
    """Older MLflow versions (and conda environments) leave conda.yaml alone: its python
    dependency and its pip section stand for python_env.yaml and requirements.txt."""
    result = check(conda_only(GOOD_MLMODEL, GOOD_CONDA))
    assert result == Preflight(
        "7", COMPATIBLE, f"Python 3.11.7 and 7 requirement(s) satisfied by image {IMAGE}"
    )
    # the Python comes from conda.yaml, not from MLmodel's python_version
    pickled = check(conda_only(CUSTOM_MLMODEL, conda_yaml(CUSTOM_REQUIREMENTS)))
    assert pickled.verdict == COMPATIBLE, pickled
    assert pickled.message.startswith("Python 3.11.7 and 3 requirement(s)")


def test_conda_packages_are_notes_the_image_having_no_conda() -> None:
    extra = "- cudatoolkit=11.8\n- conda-forge::libgomp\n- setuptools\n"
    result = check(conda_only(GOOD_MLMODEL, conda_yaml(GOOD_REQUIREMENTS, extra=extra)))
    assert result.verdict == COMPATIBLE, result
    assert result.notes == (
        "cudatoolkit=11.8 (conda.yaml) is a conda package, not installed: the serving image "
        "has no conda",
        "conda-forge::libgomp (conda.yaml) is a conda package, not installed: the serving "
        "image has no conda",
    )


def test_requirements_txt_and_python_env_yaml_come_before_conda_yaml() -> None:
    stale = conda_yaml("mlflow==2.9.2\n", python="3.9.18")
    both = files(CUSTOM_MLMODEL, CUSTOM_REQUIREMENTS, GOOD_PYTHON_ENV, conda=stale)
    assert check(both).verdict == COMPATIBLE
    # each file stands in only for the one that is missing
    no_env = check(files(CUSTOM_MLMODEL, CUSTOM_REQUIREMENTS, None, conda=stale))
    assert no_env.message.startswith("needs Python 3.9 (conda.yaml: ")
    assert "mlflow==2.9.2" not in no_env.message
    no_requirements = check(files(requirements=None, conda=stale))
    assert no_requirements.message.startswith("needs mlflow==2.9.2 (conda.yaml)")
    assert "Python" not in no_requirements.message


@pytest.mark.parametrize(
    ("conda", "verdict", "first_note"),
    [
        (
            "dependencies: [python=3.11\n",
            COMPATIBLE,
            "conda.yaml is not valid YAML (expected ',' or ']', but got '<stream end>' (line 2)): "
            "not read",
        ),
        ("name: mlflow-env\n", COMPATIBLE, "conda.yaml has no list of dependencies: not read"),
        (
            "dependencies:\n- python>=3.8\n- pip:\n  - mlflow==3.17.2\n",
            COMPATIBLE,
            "conda.yaml's 'python>=3.8' pins no one Python: not compared",
        ),
        (
            "dependencies:\n- python=3.11.7=h955ad1f_0\n- {channel: x}\n",
            COMPATIBLE,
            "conda.yaml dependency \"{'channel': 'x'}\" is not a package: not read",
        ),
    ],
    ids=["not-yaml", "no-dependencies", "python-range", "odd-dependency"],
)
def test_an_odd_conda_yaml_is_a_note_and_the_other_records_stand(
    conda: str, verdict: str, first_note: str
) -> None:
    result = check(conda_only(GOOD_MLMODEL, conda))
    assert result.verdict == verdict, result
    assert result.notes[0] == first_note
    # MLmodel's python_version stands in for a conda.yaml that pins none
    assert result.message.startswith("Python 3.11.7 and ")


def test_conda_yaml_without_a_pip_section_or_with_an_entry_that_is_not_text() -> None:
    bare = check(conda_only(GOOD_MLMODEL, "dependencies:\n- python=3.11.7\n"))
    assert bare.verdict == COMPATIBLE
    assert bare.notes == (
        f"no requirements.txt at {WHERE}, and conda.yaml has no pip section: its packages were "
        "not checked",
    )
    mapping = "dependencies:\n- pip:\n  - mlflow==3.17.2\n  - scikit-learn: 1.9.1\n"
    refused = check(conda_only(GOOD_MLMODEL, mapping))
    assert (refused.verdict, refused.message) == (
        INCOMPATIBLE,
        "conda.yaml pip requirement \"{'scikit-learn': '1.9.1'}\" is not a valid requirement",
    )
