"""Copy crds/ into the chart and generate the plain manifests from the chart.

    python -m tests.helm.manifests          # writes charts/mlflow-operator/crds/ and
                                            # deploy/mlflow-operator.yaml
    python -m tests.helm.manifests --check  # exit 1 when either differs from its source

The file holds the Namespace, the CRDs, and the chart rendered with its default values
(operator watching all namespaces, no monitoring objects, no MLflowServer). A test runs the
check, so a chart change without a regenerated file fails CI.
"""

from __future__ import annotations

import argparse
import sys

from tests.helm.chart import CHART as CHART_DIR
from tests.helm.chart import CHART_CRDS, CRDS, ROOT, helm

OUTPUT = ROOT / "deploy" / "mlflow-operator.yaml"
RELEASE = "mlflow-operator"
NAMESPACE = "mlflow-operator"

HEADER = f"""\
# mlflow-operator: CRDs, RBAC and the operator, for `kubectl apply --server-side -f`.
# Generated from charts/mlflow-operator with its default values by
# `python -m tests.helm.manifests` (make manifests). Do not edit by hand; to change a value,
# install the chart instead, or render it yourself:
#   helm template {RELEASE} charts/mlflow-operator -n {NAMESPACE} --include-crds --set ...
---
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/part-of: mlflow-operator
"""


def rendered() -> str:
    out = helm(
        "template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--include-crds"
    ).stdout
    return HEADER + out.lstrip()


def crd_files() -> dict[str, bytes]:
    """The generated CRDs (crds/, from the API models), as the chart must carry them."""
    return {path.name: path.read_bytes() for path in sorted(CRDS.glob("*.yaml"))}


def chart_crd_files() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(CHART_CRDS.glob("*.yaml"))}


def sync_chart_crds() -> None:
    CHART_CRDS.mkdir(parents=True, exist_ok=True)
    wanted = crd_files()
    for path in CHART_CRDS.glob("*.yaml"):
        if path.name not in wanted:
            path.unlink()
    for name, content in wanted.items():
        (CHART_CRDS / name).write_bytes(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when an output is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = []
        if chart_crd_files() != crd_files():
            stale.append(str(CHART_CRDS.relative_to(ROOT)))
        if not OUTPUT.exists() or OUTPUT.read_text() != rendered():
            stale.append(str(OUTPUT.relative_to(ROOT)))
        if stale:
            print(
                f"stale: {', '.join(stale)}; run `python -m tests.helm.manifests` (make manifests)",
                file=sys.stderr,
            )
            return 1
        return 0
    sync_chart_crds()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(rendered())
    print(CHART_CRDS.relative_to(ROOT))
    print(OUTPUT.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
