"""README.md's quick start, run as written, on the test cluster's real node.

The commands are read from README.md's first ```sh block under "## Quick start" and run in one
bash, in order, with `set -e`. What the test adds, and why:

- The build and push (`make images ... PUSH=1`) cannot run here: no registry is reachable. It is
  checked to be the line it should be, and stands in as the locally built images (tests/images,
  the same Dockerfile targets, built by the same deploy/image/publish.py) tagged in the node's
  containerd with the names `make images` gives them; the README's helm line must be the one
  publish.py prints. PostgreSQL's default image (the official postgres:16.16) is the tests'
  Debian PostgreSQL image under that name.
- The commands place no pod; this cluster runs pods for real only on its real node. The
  namespaces the README creates are annotated (PodNodeSelector, PodTolerationRestriction) so
  that their pods go there, before the step after the one that creates them.
- The local ports of the two port-forwards are free ports of this machine instead of 5000 and
  8080, which other programs here may hold.

Then NOTES's "check that it runs" commands, as `helm get notes` prints them, run too.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_operator.config import POSTGRES_IMAGE
from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.helm.build import ensure_built as helm_binary
from tests.helm.chart import command_blocks, helm
from tests.images.build import publish_module
from tests.support.processes import free_port

# The README installs a cluster-wide operator: it would act on the other process's objects.
pytestmark = [pytest.mark.e2e, pytest.mark.exclusive]
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NAMESPACES = ("mlflow-operator", "ml")  # what the README creates
PLACEMENT_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": "node.mlflowops.dev/pool=real",
    "scheduler.alpha.kubernetes.io/defaultTolerations": (
        '[{"key": "node.mlflowops.dev/real", "operator": "Equal", "value": "true",'
        ' "effect": "NoSchedule"}]'
    ),
}
POD_SECURITY = "pod-security.kubernetes.io/enforce=restricted"
TIMEOUT = 1500.0  # the README allows 10m for the server and 5m for the model, plus the rest


def quickstart_block() -> str:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README's quick start has no sh block"
    return match.group(1)


def commands(block: str) -> list[str]:
    """The block's commands, comments and blank lines left out (no line continues another)."""
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert not any(line.endswith("\\") for line in lines)
    return lines


def setting(lines: list[str], name: str) -> str:
    (line,) = [line for line in lines if line.startswith(f"export {name}=")]
    return line.split("=", 1)[1]


def script(lines: list[str], ports: dict[str, int]) -> str:
    """The README's commands as one bash script, with the test's additions (module docstring)."""
    out = ["set -euo pipefail"]
    for number, line in enumerate(lines, 1):
        command = line
        for remote, local in ports.items():
            command = command.replace(f" {remote}:", f" {local}:").replace(
                f"localhost:{remote}", f"localhost:{local}"
            )
        if command.startswith("make images "):
            command = "true  # the images: tagged in the node's containerd by the test"
        out.append(f'echo "::step {number} $(date +%s.%N)"')
        out.append(command)
        created = re.match(r"kubectl create namespace (\S+)$", line)
        if created:
            out += [shlex.join(["kubectl", *args]) for args in place_on_real_node(created[1])]
    out.append('echo "::done $(date +%s.%N)"')
    return "\n".join(out) + "\n"


def place_on_real_node(namespace: str) -> list[list[str]]:
    """kubectl arguments that make the namespace's pods run on the real node, under Pod Security
    restricted like every test namespace."""
    annotations = [f"{key}={value}" for key, value in PLACEMENT_ANNOTATIONS.items()]
    return [
        ["annotate", "namespace", namespace, "--overwrite", *annotations],
        ["label", "namespace", namespace, "--overwrite", POD_SECURITY],
    ]


@pytest.fixture
def clean_namespaces(kube_cluster: KubeCluster, real_node: NodeInfo) -> Iterator[None]:
    def gone() -> bool:
        out = kube_cluster.kubectl("get", "namespace", *NAMESPACES, check=False)
        return "NotFound" in out.stderr and out.stdout.count("\n") <= 1

    deadline = time.monotonic() + 180  # test_install's plain manifests use mlflow-operator too
    while not gone():
        assert time.monotonic() < deadline, "namespaces of an earlier test still terminating"
        time.sleep(2)
    yield
    kube_cluster.kubectl(
        "delete", "-n", "ml", "mdep,mlflowserver", "--all", "--timeout=90s", check=False
    )
    helm("uninstall", "mlflow-operator", "-n", "mlflow-operator",
         kubeconfig=kube_cluster.kubeconfig, check=False)  # fmt: skip
    kube_cluster.kubectl("delete", "namespace", *NAMESPACES, "--wait=false", check=False)


def stand_in_images(node: NodeInfo, registry: str) -> list[str]:
    """The names `make images REGISTRY=registry` gives, on the locally built images."""
    publish = publish_module()
    tag = publish.operator_version()
    targets = []
    for image in publish.IMAGES:
        if image.target == "serving-gpu":
            continue  # not built here (no GPU); nothing in the quick start asks for it
        target = image.reference(registry, tag)
        node.tag_image(node.images[image.target], target)
        targets.append(target)
    postgres = f"docker.io/library/{POSTGRES_IMAGE}"
    node.tag_image(node.images["postgres"], postgres)
    return [*targets, postgres]


def test_the_readme_quick_start_runs_as_written(
    kube_cluster: KubeCluster, real_node: NodeInfo, clean_namespaces: None, tmp_path: Path
) -> None:
    lines = commands(quickstart_block())
    registry = setting(lines, "REGISTRY")
    publish = publish_module()
    assert "make images REGISTRY=$REGISTRY PUSH=1" in lines
    (helm_install,) = [line for line in lines if line.startswith("helm install ")]
    printed = publish.helm_line(registry, publish.operator_version())
    assert helm_install.replace("$REGISTRY", registry) == printed

    for namespace in ("mlflow-operator",):  # helm creates it and at once the operator's pod
        kube_cluster.kubectl("create", "namespace", namespace)
        for args in place_on_real_node(namespace):
            kube_cluster.kubectl(*args)
    tags = stand_in_images(real_node, registry)
    ports = {"5000": free_port(), "8080": free_port()}
    log = tmp_path / "quickstart.log"
    try:
        output = run_script(script(lines, ports), kube_cluster, tmp_path, log)
        for number, seconds in timings(output).items():
            print(f"quick start step {seconds:6.1f}s  {lines[int(number) - 1]}")
        assert '{"predictions": [0]}' in output, output[-3000:]

        notes = helm(
            "get", "notes", "mlflow-operator", "-n", "mlflow-operator",
            kubeconfig=kube_cluster.kubeconfig,
        ).stdout  # fmt: skip
        check_block = command_blocks(notes)[0]
        assert "helm test mlflow-operator -n mlflow-operator" in check_block
        # helm test's pod runs the operator image again: the stand-in names must still be there
        run_script(
            "set -euo pipefail\n" + check_block, kube_cluster, tmp_path, tmp_path / "notes.log"
        )
    finally:
        untag(real_node, tags)


def shell_env(cluster: KubeCluster, tmp_path: Path) -> dict[str, str]:
    """A user's shell: kubectl, helm and this venv's python3 and pip on the PATH, the test
    cluster in KUBECONFIG, nothing of MLflow's or the tests' settings."""
    venv_bin = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
    path = os.pathsep.join([str(helm_binary(quiet=True).parent), str(venv_bin), os.environ["PATH"]])
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "KUBE"))}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**keep, "PATH": path, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(home)}


def run_script(text: str, cluster: KubeCluster, tmp_path: Path, log: Path) -> str:
    """bash with the script, in a process group of its own (the port-forwards end with it)."""
    (tmp_path / "script.sh").write_text(text)
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", str(tmp_path / "script.sh")],
            cwd=ROOT,
            env=shell_env(cluster, tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    output = log.read_text()
    assert code == 0, f"the script failed ({code}):\n{output[-4000:]}"
    return output


def timings(output: str) -> dict[str, float]:
    marks = [
        (line.split()[1], float(line.split()[2]))
        for line in output.splitlines()
        if line.startswith(("::step ", "::done "))
    ]
    return {
        number: round(after - before, 1)
        for (number, before), (_, after) in itertools.pairwise(marks)
    }


def untag(node: NodeInfo, names: list[str]) -> None:
    """The extra names would keep the images of this build alive after the next one."""
    subprocess.run([*node.ctr, "images", "rm", *names], capture_output=True, check=False)
