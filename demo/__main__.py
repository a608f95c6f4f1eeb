"""Registry-driven rollout, end to end, on this machine.

Starts the local Kubernetes cluster (a real node running containers, next to KWOK-simulated
ones) and a real MLflow (PostgreSQL, MinIO), runs the operator, registers a real scikit-learn
model, follows alias `champion`, promotes v2, and shows a real prediction from the serving pods,
asked through their Service.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from tests.cluster.launcher import ControlPlane, KubeCluster
from tests.e2e.operator_process import OperatorProcess, local_images_env
from tests.mlflowstack import stack as mlflow_stack
from tests.mlflowstack.models import ModelRegistry, sample_input

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "ml-demo"
MODEL = "iris-classifier"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(cluster: KubeCluster, *args: str) -> str:
    out = cluster.kubectl(*args).stdout
    print(out, end="", flush=True)
    return out


def mdep_status(cluster: KubeCluster) -> dict[str, Any]:
    body = json.loads(cluster.kubectl("get", "-n", NAMESPACE, "mdep", MODEL, "-o", "json").stdout)
    result: dict[str, Any] = body.get("status", {})
    return result


def wait_serving(cluster: KubeCluster, version: str, timeout: float = 300) -> float:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        line = cluster.kubectl("get", "-n", NAMESPACE, "mdep", MODEL, "--no-headers").stdout
        if line != last:
            print(line, end="", flush=True)
            last = line
        status = mdep_status(cluster)
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        if status.get("servingVersion") == version and ready and ready[0]["status"] == "True":
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"version {version} not serving after {timeout:.0f}s")


def predict(url: str) -> list[int]:
    body = json.dumps({"dataframe_split": sample_input(5).to_dict(orient="split")}).encode()
    request = urllib.request.Request(  # noqa: S310  (a loopback http URL we built)
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310  (loopback)
        return [int(p) for p in json.loads(resp.read())["predictions"]]


def manifest(tracking_uri: str, runtime: str, placement: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(
        (ROOT / "examples" / "modeldeployment-alias-cpu.yaml").read_text()
    )
    body["metadata"] = {"name": MODEL, "namespace": NAMESPACE}
    body["spec"]["model"]["name"] = MODEL
    body["spec"]["registry"] = {"trackingUri": tracking_uri, "pollInterval": "5s"}
    body["spec"]["serving"]["runtime"] = runtime
    # the local cluster's real node is tainted: pods that should run containers ask for it
    body["spec"]["serving"]["podTemplate"] = placement
    return body


def service_url(cluster: KubeCluster) -> str:
    service = json.loads(
        cluster.kubectl("get", "-n", NAMESPACE, "service", MODEL, "-o", "json").stdout
    )
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def run(runtime: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mlflow-operator-demo-"))
    plane = ControlPlane()
    try:
        say(
            "Starting Kubernetes: control plane, a real node (containerd, kubelet, kube-proxy, "
            "CoreDNS) and simulated KWOK nodes; the first run builds them and the images"
        )
        cluster = plane.start()
        if cluster.node is None:
            raise SystemExit("the demo needs the real node (MLFLOW_OPERATOR_TEST_REAL_NODE=0?)")
        show(cluster, "get", "nodes", "-o", "wide")
        say("Starting MLflow on PostgreSQL and MinIO")
        with mlflow_stack.running(workdir / "mlflow") as stack:
            tracking_uri = f"http://{cluster.expose_to_pods(stack.server.port)}"
            print(f"tracking server: {tracking_uri}")
            registry = ModelRegistry(stack.tracking_uri)
            say("Installing the CRDs and starting the operator")
            cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
            for name in ("modeldeployments", "mlflowservers"):
                cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}.mlflowops.dev")
            operator = OperatorProcess(
                cluster.kubeconfig, workdir, extra_env=local_images_env(cluster)
            ).start()
            try:
                say(f"Registering {MODEL} v1 (scikit-learn on iris) and setting alias champion")
                v1 = registry.log_version(MODEL, c=1.0)
                registry.set_alias(MODEL, "champion", v1.version)
                say("kubectl apply -f modeldeployment.yaml  (follows alias:champion)")
                cluster.kubectl("create", "namespace", NAMESPACE)
                cluster.apply(manifest(tracking_uri, runtime, cluster.node.placement))
                print(f"Ready on v1 after {wait_serving(cluster, '1'):.1f}s")
                say("Registering v2 and moving alias champion to it: that is the whole release")
                v2 = registry.log_version(MODEL, c=0.01)
                registry.set_alias(MODEL, "champion", v2.version)
                print(f"Rolled out v2 in {wait_serving(cluster, '2'):.1f}s")
                show(cluster, "get", "-n", NAMESPACE, "mdep")
                show(cluster, "get", "-n", NAMESPACE, "deploy,svc,pods", "-o", "wide")
                say("Events")
                show(
                    cluster, "get", "events", "-n", NAMESPACE,
                    "--field-selector", "involvedObject.kind=ModelDeployment",
                    "--sort-by", ".metadata.creationTimestamp",
                    "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
                )  # fmt: skip
                say("One real prediction from the serving pods, through their Service")
                url = service_url(cluster)
                served = predict(url)
                print(f"POST {url}/invocations -> {served}")
                print(f"predictions of v2 in memory: {v2.predict(sample_input(5))}")
                if served != v2.predict(sample_input(5)):
                    raise SystemExit("the served predictions differ from the model's")
                say("Done: the registry moved, the cluster followed.")
            finally:
                operator.stop()
    finally:
        plane.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--runtime", choices=["mlflow", "batched"], default="mlflow")
    args = parser.parse_args(argv)
    run(args.runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
