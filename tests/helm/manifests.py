"""Derived files: the chart's CRDs, the plain manifests, the Argo CD ConfigMap, docs/api.md, the
chart README's values table.

    python -m tests.helm.manifests          # writes charts/mlflow-operator/crds/,
                                            # deploy/crds.yaml, deploy/mlflow-operator.yaml,
                                            # gitops/argocd/argocd-cm.yaml, docs/api.md,
                                            # the values table of charts/mlflow-operator/README.md,
                                            # the chart's Grafana dashboard
    python -m tests.helm.manifests --check  # exit 1 when one differs from its source

deploy/crds.yaml holds the two CRDs; deploy/mlflow-operator.yaml the Namespace and the chart
rendered with its default values (operator watching all namespaces, no monitoring objects, no
MLflowServer), without the CRDs: `kubectl delete -f deploy/mlflow-operator.yaml` removes the
operator and never, with the CRDs, every ModelDeployment and MLflowServer of the cluster. A
test runs the check, so a chart change without a regenerated file fails CI.
"""

from __future__ import annotations

import argparse
import sys

from tests.helm import apidocs, dashboard, valuesdoc
from tests.helm.chart import CHART as CHART_DIR
from tests.helm.chart import CHART_CRDS, CRDS, ROOT, helm

OUTPUT = ROOT / "deploy" / "mlflow-operator.yaml"
CRDS_OUTPUT = ROOT / "deploy" / "crds.yaml"
ARGOCD = ROOT / "gitops" / "argocd"
ARGOCD_CM = ARGOCD / "argocd-cm.yaml"
# argocd-cm keys of the health scripts: resource.customizations.health.<group>_<kind>
HEALTH_SCRIPTS = {
    "mlflowops.dev_ModelDeployment": ARGOCD / "health-modeldeployment.lua",
    "mlflowops.dev_MLflowServer": ARGOCD / "health-mlflowserver.lua",
}
RELEASE = "mlflow-operator"
NAMESPACE = "mlflow-operator"

HEADER = f"""\
# mlflow-operator: RBAC and the operator, for `kubectl apply --server-side -f`, after
# deploy/crds.yaml. The CRDs are not in this file, so that deleting it removes the operator and
# leaves every ModelDeployment and MLflowServer (and what serves them) alone.
# Generated from charts/mlflow-operator with its default values by
# `python -m tests.helm.manifests` (make manifests). Do not edit by hand; to change a value,
# install the chart instead, or render it yourself:
#   helm template {RELEASE} charts/mlflow-operator -n {NAMESPACE} --set ...
---
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/part-of: mlflow-operator
"""


CRDS_HEADER = """\
# The CustomResourceDefinitions of mlflow-operator: ModelDeployment and MLflowServer.
#   install or upgrade: kubectl apply --server-side -f deploy/crds.yaml
# Deleting a CRD deletes every object of its kind in the cluster, and with them what the
# operator created for them (serving Deployments, tracking servers): see docs/install.md,
# "Uninstall", before you ever `kubectl delete -f` this file.
# Generated from crds/ by `python -m tests.helm.manifests` (make manifests); do not edit.
"""


def rendered() -> str:
    # --skip-tests: the `helm test` pod is for helm users; kubectl would run it as a workload
    out = helm("template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--skip-tests").stdout
    return HEADER + out.lstrip()


def rendered_crds() -> str:
    return CRDS_HEADER + "".join(f"---\n{content.decode()}" for content in crd_files().values())


def argocd_configmap() -> str:
    """argocd-cm data with both health scripts, to merge into Argo CD's own argocd-cm."""
    lines = [
        "# Argo CD health checks of ModelDeployment and MLflowServer: merge into argocd-cm, e.g.",
        "#   kubectl -n argocd patch configmap argocd-cm --patch-file gitops/argocd/argocd-cm.yaml",
        "# Generated from gitops/argocd/health-*.lua by `python -m tests.helm.manifests`.",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "  labels:",
        "    app.kubernetes.io/name: argocd-cm",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
    ]
    for key, script in HEALTH_SCRIPTS.items():
        lines.append(f"  resource.customizations.health.{key}: |")
        lines += [f"    {line}" if line else "" for line in script.read_text().splitlines()]
    return "\n".join(lines) + "\n"


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
        if not CRDS_OUTPUT.exists() or CRDS_OUTPUT.read_text() != rendered_crds():
            stale.append(str(CRDS_OUTPUT.relative_to(ROOT)))
        if not ARGOCD_CM.exists() or ARGOCD_CM.read_text() != argocd_configmap():
            stale.append(str(ARGOCD_CM.relative_to(ROOT)))
        if not apidocs.is_fresh():
            stale.append(str(apidocs.OUTPUT.relative_to(ROOT)))
        if not dashboard.OUTPUT.exists() or dashboard.OUTPUT.read_text() != dashboard.rendered():
            stale.append(str(dashboard.OUTPUT.relative_to(ROOT)))
        if not valuesdoc.is_fresh():
            stale.append(str(valuesdoc.README.relative_to(ROOT)))
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
    CRDS_OUTPUT.write_text(rendered_crds())
    ARGOCD_CM.write_text(argocd_configmap())
    valuesdoc.write()
    dashboard.OUTPUT.write_text(dashboard.rendered())
    for path in (
        CHART_CRDS,
        CRDS_OUTPUT,
        OUTPUT,
        ARGOCD_CM,
        apidocs.write(),
        valuesdoc.README,
        dashboard.OUTPUT,
    ):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
