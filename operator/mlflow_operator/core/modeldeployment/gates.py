"""Promotion gates (spec.gates): may a new version get pods at all? Pure.

Checked once the registry selects a version that has not rolled out here yet, before any pod
of it is created: a required version tag (the open-source stand-in for an approval step), metric
thresholds on the version's run, and a comparison with the serving version's run (compare and
promote). A blocked version never gets a pod; what serves keeps serving. The version's tags come
with the registry sweep (so a tag set later unblocks it at the next poll or webhook); run
metrics are read once per version and tag set (registry/client.py `run_metrics`, cached by the
reconciler), never per poll.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from mlflow_operator.api.modeldeployment import GatesSpec, ModelDeploymentSpec
from mlflow_operator.core.modeldeployment.resolution import Resolution, Resolved
from mlflow_operator.core.registry_view import ModelSnapshot

PASSED = "Passed"
BLOCKED = "Blocked"


@dataclass(frozen=True)
class RunMetrics:
    """The latest value of each metric of one MLflow run, or why they could not be read."""

    run_id: str
    values: Mapping[str, float]
    error: str = ""  # the run could not be read (the gate holds, and is asked again)


@dataclass(frozen=True)
class GateVerdict:
    version: str
    passed: bool
    message: str  # every gate with the values it saw

    @property
    def verdict(self) -> str:
        return PASSED if self.passed else BLOCKED


@dataclass(frozen=True)
class GateQuestion:
    """What the reconcile must read to judge a version: its run, and the serving one's."""

    version: str
    run_id: str  # "" when the version has no run
    tags: Mapping[str, str]
    serving_version: str | None
    serving_run_id: str  # "" when nothing serves or its run is unknown

    def runs_to_read(self, gates: GatesSpec) -> list[str]:
        """The runs whose metrics the gates look at (none for a tag gate alone)."""
        runs: list[str] = []
        if (gates.metrics or gates.not_worse_than_serving) and self.run_id:
            runs.append(self.run_id)
        if gates.not_worse_than_serving and self.serving_version and self.serving_run_id:
            runs.append(self.serving_run_id)
        return runs


def gate_question(
    spec: ModelDeploymentSpec,
    resolution: Resolution | None,
    snapshot: ModelSnapshot | None,
    rolled_out: Collection[str | None],
    serving_version: str | None,
) -> GateQuestion | None:
    """The version to judge now, or None: no gates, no fresh selection, or the version has
    rolled out here already (gates guard new versions; adding a gate never removes what
    serves, and a rollback to the last good version is never held up)."""
    if spec.gates is None or not isinstance(resolution, Resolved):
        return None
    version = resolution.version
    if version in rolled_out:
        return None
    versions = snapshot.versions if snapshot is not None else {}
    info = versions.get(version)
    serving = versions.get(serving_version) if serving_version else None
    return GateQuestion(
        version=version,
        run_id=info.run_id if info is not None else resolution.run_id,
        tags=dict(info.tags) if info is not None else {},
        serving_version=serving_version,
        serving_run_id=serving.run_id if serving is not None else "",
    )


def judge(
    gates: GatesSpec,
    question: GateQuestion,
    candidate: RunMetrics | None,
    serving: RunMetrics | None,
) -> GateVerdict:
    """Every gate, in spec order; the message names each failing gate with the values (and,
    when all pass, what passed), so a person can check it in the MLflow UI."""
    failed: list[str] = []
    passed: list[str] = []
    for check in (
        _tag_gates(gates, question),
        _metric_gates(gates, question, candidate),
        _comparisons(gates, question, candidate, serving),
    ):
        for ok, text in check:
            (passed if ok else failed).append(text)
    version = question.version
    if failed:
        return GateVerdict(version, False, f"version {version} is blocked: " + "; ".join(failed))
    return GateVerdict(version, True, f"version {version} passed: " + "; ".join(passed))


def _tag_gates(gates: GatesSpec, question: GateQuestion) -> list[tuple[bool, str]]:
    results = []
    for key, wanted in sorted((gates.require_tags or {}).items()):
        have = question.tags.get(key)
        if have == wanted:
            results.append((True, f"tag {key}={wanted}"))
        else:
            shown = "is not set" if have is None else f"is {have!r}"
            results.append((False, f"tag {key} {shown}, not {wanted!r} (spec.gates.requireTags)"))
    return results


def _metric_gates(
    gates: GatesSpec, question: GateQuestion, candidate: RunMetrics | None
) -> list[tuple[bool, str]]:
    results: list[tuple[bool, str]] = []
    for i, gate in enumerate(gates.metrics):
        where = f"spec.gates.metrics[{i}]"
        value = _metric(question.version, question.run_id, candidate, gate.name, where)
        if isinstance(value, str):
            results.append((False, value))
        elif gate.min is not None and value < gate.min:
            results.append((False, f"{gate.name} {value:g} < min {gate.min:g} ({where})"))
        elif gate.max is not None and value > gate.max:
            results.append((False, f"{gate.name} {value:g} > max {gate.max:g} ({where})"))
        else:
            results.append((True, f"{gate.name} {value:g} within {_bounds(gate.min, gate.max)}"))
    return results


def _comparisons(
    gates: GatesSpec,
    question: GateQuestion,
    candidate: RunMetrics | None,
    serving: RunMetrics | None,
) -> list[tuple[bool, str]]:
    results: list[tuple[bool, str]] = []
    for i, comparison in enumerate(gates.not_worse_than_serving):
        where = f"spec.gates.notWorseThanServing[{i}]"
        name = comparison.metric
        if question.serving_version is None:
            results.append((True, f"{name}: no version serves yet to compare with"))
            continue
        value = _metric(question.version, question.run_id, candidate, name, where)
        base = _metric(
            f"serving version {question.serving_version}", question.serving_run_id, serving,
            name, where,
        )  # fmt: skip
        if isinstance(value, str) or isinstance(base, str):
            results.extend((False, v) for v in (value, base) if isinstance(v, str))
            continue
        worse_by = base - value if comparison.better == "higher" else value - base
        versus = f"{name} {value:g} vs {base:g} of serving version {question.serving_version}"
        if worse_by > comparison.tolerance:
            results.append((False,
                f"{versus}: worse by {worse_by:g}, more than the tolerance "
                f"{comparison.tolerance:g} ({comparison.better} is better; {where})",
            ))  # fmt: skip
        else:
            results.append((True, f"{versus} (tolerance {comparison.tolerance:g})"))
    return results


def _metric(
    what: str, run_id: str, metrics: RunMetrics | None, name: str, where: str
) -> float | str:
    """The metric's value, or why there is none (a failing gate's text)."""
    label = what if not what[:1].isdigit() else f"version {what}"
    if not run_id:
        return f"{label} has no MLflow run, so no {name} ({where})"
    if metrics is None or metrics.error:
        error = metrics.error if metrics is not None else "not read yet"
        return f"the metrics of {label}'s run {run_id} cannot be read: {error} ({where})"
    value = metrics.values.get(name)
    if value is None:
        return f"{label}'s run {run_id} has no metric {name} ({where})"
    return value


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"[{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}"
