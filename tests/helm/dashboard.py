"""The Grafana dashboard of the chart: charts/mlflow-operator/dashboards/mlflow-operator.json.

    python -m tests.helm.dashboard          # writes the JSON
    python -m tests.helm.dashboard --check  # exit 1 when it differs from what this file makes

Written here, as data, so that every query is one readable line and the tests can run each of
them against a real Prometheus (tests/e2e/test_dashboard.py). The operator's series carry
`namespace` and `name` of their ModelDeployment; the serving pods' series (runtime `batched`)
carry `namespace` and `modeldeployment`, as the chart's PodMonitor labels them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "charts" / "mlflow-operator" / "dashboards" / "mlflow-operator.json"
UID = "mlflow-operator"
MD = 'namespace=~"$namespace", name=~"$modeldeployment"'
POD = 'namespace=~"$namespace", modeldeployment=~"$modeldeployment"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Registry and rollouts (operator)",
        (
            Panel(
                "Target and serving version",
                "The version the registry selects (target) and the one every ready pod serves.",
                (
                    Query(
                        f"max by (namespace, name) "
                        f"(mlflow_operator_modeldeployment_target_version{{{MD}}})",
                        "{{namespace}}/{{name}} target",
                    ),
                    Query(
                        f"max by (namespace, name) "
                        f"(mlflow_operator_modeldeployment_serving_version{{{MD}}})",
                        "{{namespace}}/{{name}} serving",
                    ),
                ),
                unit="none",
            ),
            Panel(
                "Serving another version than the registry selects",
                "1 while a ModelDeployment's serving version differs from its target; the "
                "MLflowModelServingVersionBehindTarget alert fires after 15 minutes of it "
                "(not while suspended).",
                (
                    Query(
                        f"max by (namespace, name) "
                        f"(mlflow_operator_serving_differs_from_target{{{MD}}})",
                        "{{namespace}}/{{name}} behind",
                    ),
                    Query(
                        f"max by (namespace, name) "
                        f"(mlflow_operator_modeldeployment_suspended{{{MD}}})",
                        "{{namespace}}/{{name}} suspended",
                    ),
                ),
                unit="none",
            ),
            Panel(
                "Rollouts and rollbacks",
                "Finished rollouts by result, and rollbacks to the last good version.",
                (
                    Query(
                        f"sum by (namespace, name, result) "
                        f"(increase(mlflow_operator_rollouts_total{{{MD}}}[$__rate_interval]))",
                        "{{namespace}}/{{name}} {{result}}",
                    ),
                    Query(
                        f"sum by (namespace, name) "
                        f"(increase(mlflow_operator_rollbacks_total{{{MD}}}[$__rate_interval]))",
                        "{{namespace}}/{{name}} rolled back",
                    ),
                ),
            ),
            Panel(
                "Registry sync age",
                "Seconds since the registry was read: per registry, and per ModelDeployment "
                "(set at every sweep; its status.lastRegistrySync is written only with "
                "other changes).",
                (
                    Query(
                        "time() - max by (endpoint) "
                        "(mlflow_operator_registry_last_sync_timestamp_seconds)",
                        "{{endpoint}}",
                    ),
                    Query(
                        f"time() - max by (namespace, name) "
                        f"(mlflow_operator_modeldeployment_last_registry_sync_timestamp_seconds"
                        f"{{{MD}}})",
                        "{{namespace}}/{{name}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Registry reachable",
                "1 when the last sweep of a registry succeeded; MLflowRegistryUnreachable "
                "fires after 10 minutes at 0.",
                (Query("max by (endpoint) (mlflow_operator_registry_up)", "{{endpoint}}"),),
                unit="none",
            ),
        ),
    ),
    (
        "Serving (runtime batched)",
        (
            Panel(
                "Request rate",
                "Scoring requests answered per second, all statuses.",
                (
                    Query(
                        f"sum by (namespace, modeldeployment) "
                        f"(rate(mlflow_serving_requests_total{{{POD}}}[$__rate_interval]))",
                        "{{namespace}}/{{modeldeployment}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Errors",
                "Requests per second answered with another status than 2xx, by status.",
                (
                    Query(
                        f"sum by (namespace, modeldeployment, status) "
                        f'(rate(mlflow_serving_requests_total{{{POD}, status!~"2.."}}'
                        f"[$__rate_interval]))",
                        "{{namespace}}/{{modeldeployment}} {{status}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Latency p99",
                "99th percentile of the time from request received to response ready.",
                (
                    Query(
                        f"histogram_quantile(0.99, sum by (namespace, modeldeployment, le) "
                        f"(rate(mlflow_serving_request_duration_seconds_bucket{{{POD}}}"
                        f"[$__rate_interval])))",
                        "{{namespace}}/{{modeldeployment}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Batch size",
                "Rows per predict call, on average: how much adaptive batching merges.",
                (
                    Query(
                        f"sum by (namespace, modeldeployment) "
                        f"(rate(mlflow_serving_batch_size_rows_sum{{{POD}}}[$__rate_interval]))"
                        f" / sum by (namespace, modeldeployment) "
                        f"(rate(mlflow_serving_batch_size_rows_count{{{POD}}}[$__rate_interval]))",
                        "{{namespace}}/{{modeldeployment}}",
                    ),
                ),
            ),
            Panel(
                "Queue depth",
                "Requests parsed and waiting for the model, summed over the pods.",
                (
                    Query(
                        f"sum by (namespace, modeldeployment) "
                        f"(mlflow_serving_queue_depth{{{POD}}})",
                        "{{namespace}}/{{modeldeployment}}",
                    ),
                ),
            ),
        ),
    ),
    (
        "Model monitoring (serving.monitoring)",
        (
            Panel(
                "Feature drift (PSI)",
                "Population Stability Index of each input column and output of the serving "
                "pods' last ~1,000 rows against the version's reference, the largest of the "
                "pods': under 0.1 stable, above 0.25 significant (docs/monitoring.md).",
                (
                    Query(
                        f"max by (namespace, modeldeployment, model_version, kind, feature) "
                        f"(mlflow_serving_feature_drift{{{POD}}})",
                        "{{namespace}}/{{modeldeployment}} v{{model_version}} {{kind}} {{feature}}",
                    ),
                ),
                unit="none",
            ),
            Panel(
                "Features above the drift threshold",
                "Features above serving.monitoring.thresholds.drift (status.monitoring.drifting); "
                "MLflowModelDrift fires after 30 minutes above 0.",
                (
                    Query(
                        f"max by (namespace, name) "
                        f"(mlflow_operator_modeldeployment_drifting_features{{{MD}}})",
                        "{{namespace}}/{{name}}",
                    ),
                ),
                unit="none",
            ),
            Panel(
                "Live quality (ground truth)",
                "serving.monitoring.quality.metric over the latest labelled rows of the serving "
                "version (status.monitoring.quality.value); MLflowModelQualityDropped fires after "
                "30 minutes worse than the training metric by more than thresholds.quality.",
                (
                    Query(
                        f"max by (namespace, name) "
                        f"(mlflow_operator_modeldeployment_live_quality{{{MD}}})",
                        "{{namespace}}/{{name}}",
                    ),
                ),
                unit="none",
            ),
            Panel(
                "Labels posted",
                "Ground-truth labels the serving pods took (POST /labels) per second, by what "
                "became of them: written next to the samples, failed to upload, refused.",
                (
                    Query(
                        f"sum by (namespace, modeldeployment, outcome) "
                        f"(rate(mlflow_serving_labels_total{{{POD}}}[$__rate_interval]))",
                        "{{namespace}}/{{modeldeployment}} {{outcome}}",
                    ),
                ),
            ),
        ),
    ),
)


def panels() -> list[Panel]:
    return [panel for _, row in ROWS for panel in row]


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for title, row in ROWS:
        items.append(
            {
                "type": "row",
                "title": title,
                "id": next_id,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        for index, panel in enumerate(row):
            items.append(
                {
                    "type": panel.kind,
                    "title": panel.title,
                    "description": panel.description,
                    "id": next_id,
                    "datasource": DATASOURCE,
                    "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": y + 8 * (index // 2)},
                    "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                    "targets": [
                        {
                            "datasource": DATASOURCE,
                            "expr": query.expr,
                            "legendFormat": query.legend,
                            "refId": chr(ord("A") + n),
                        }
                        for n, query in enumerate(panel.queries)
                    ],
                }
            )
            next_id += 1
        y += 8 * ((len(row) + 1) // 2)
    return {
        "__comment": "Generated by `python -m tests.helm.dashboard` (make manifests); do not edit.",
        "uid": UID,
        "title": "mlflow-operator",
        "description": "ModelDeployments: registry versions, rollouts, serving traffic.",
        "tags": ["mlflow", "mlflow-operator"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable(
                    "namespace",
                    "Namespace",
                    "label_values(mlflow_operator_modeldeployment_target_version, namespace)",
                ),
                _variable(
                    "modeldeployment",
                    "ModelDeployment",
                    "label_values(mlflow_operator_modeldeployment_target_version"
                    '{namespace=~"$namespace"}, name)',
                ),
            ]
        },
        "annotations": {"list": []},
        "panels": items,
    }


def rendered() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the JSON is stale")
    args = parser.parse_args(argv)
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != rendered():
            print(f"stale: {OUTPUT.relative_to(ROOT)}; run `make manifests`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(rendered())
    print(OUTPUT.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
