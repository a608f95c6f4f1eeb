"""Why the pods of a version are not ready, as a user reads it in status and Events.

The pod objects are shaped as the kubelet writes them (seen on the real node); the e2e tests
in tests/e2e/test_modeldeployment_pods.py produce the same states with real containers.
"""

from __future__ import annotations

from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.observation import observe_deployment
from mlflow_operator.core.modeldeployment.resolution import Resolved
from tests.unit.core.test_rollout import spec, step
from tests.unit.observations import complete, deployment_object

EXCEEDED = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/opt/serving/lib/python3.11/site-packages/mlflow/pyfunc/__init__.py", line 1, in x\n'
    "    model = load(path)\n"
    "_pickle.UnpicklingError: invalid load key, 'n'.\n"
)


def pod(
    name: str,
    version: str,
    *,
    state: dict[str, Any],
    last_state: dict[str, Any] | None = None,
    started: bool | None = None,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "server",
        "ready": False,
        "restartCount": 1 if last_state else 0,
        "state": state,
        "lastState": last_state or {},
    }
    if started is not None:
        container["started"] = started
    resources = {"limits": {"memory": memory_limit}} if memory_limit else {}
    return {
        "metadata": {"name": name, "labels": {"mlflowops.dev/model-version": version}},
        "spec": {"containers": [{"name": "server", "resources": resources}]},
        "status": {"containerStatuses": [container]},
    }


CRASHING = pod(
    "fraud-crash",
    "2",
    state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting"}},
    last_state={"terminated": {"reason": "Error", "exitCode": 1, "message": TRACEBACK}},
)
OOM = pod(
    "fraud-oom",
    "2",
    state={"waiting": {"reason": "CrashLoopBackOff"}},
    last_state={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
    memory_limit="96Mi",
)
LOADING = pod(
    "fraud-slow",
    "2",
    state={"running": {"startedAt": "2026-11-23T09:59:00Z"}},
    started=False,
)


def troubles(*pods: dict[str, Any]) -> tuple[str, ...]:
    return observe_deployment(deployment_object("2", available=0), list(pods)).pod_troubles


def test_a_crash_loop_names_the_exit_code_and_the_last_log_lines() -> None:
    (found,) = troubles(CRASHING)
    assert found.startswith("pod fraud-crash: CrashLoopBackOff: exit code 1: ")
    assert "_pickle.UnpicklingError: invalid load key, 'n'." in found
    assert "Traceback" not in found  # the last lines, not the whole log


def test_a_crashed_container_running_again_is_reported_by_its_last_exit() -> None:
    again = pod(
        "fraud-again",
        "2",
        state={"running": {"startedAt": "2026-11-23T09:59:30Z"}},
        last_state={"terminated": {"reason": "Error", "exitCode": 1, "message": TRACEBACK}},
        started=False,
    )
    (found,) = troubles(again)
    assert found.startswith("pod fraud-again: exited (restarts: 1): exit code 1: ")
    assert "UnpicklingError" in found


def test_an_out_of_memory_kill_names_the_limit() -> None:
    (found,) = troubles(OOM)
    assert found == (
        "pod fraud-oom: OOMKilled: the container ran out of its memory limit 96Mi; "
        "raise resources.limits.memory"
    )


def test_a_model_still_loading_says_so() -> None:
    (found,) = troubles(LOADING)
    assert "the model has not loaded yet" in found
    assert "2026-11-23T09:59:00Z" in found


def test_the_worst_trouble_comes_first_and_other_versions_say_nothing() -> None:
    of_version_1 = pod(
        "fraud-old",
        "1",
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last_state={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
    )
    found = troubles(LOADING, CRASHING, of_version_1, OOM)
    assert [t.split(":")[0] for t in found] == [
        "pod fraud-oom",
        "pod fraud-crash",
        "pod fraud-slow",
    ]


def test_credentials_in_a_crash_log_are_redacted() -> None:
    leaky = pod(
        "fraud-leak",
        "2",
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last_state={
            "terminated": {
                "reason": "Error",
                "exitCode": 1,
                "message": "MlflowException: cannot reach http://admin:s3cret@mlflow:5000/api",
            }
        },
    )
    (found,) = troubles(leaky)
    assert "s3cret" not in found
    assert "http://***@mlflow:5000" in found


def test_the_reason_is_in_progressing_while_rolling_out() -> None:
    observed = observe_deployment(deployment_object("2", available=0), [CRASHING])
    plan = step(ModelDeploymentStatus(target_version="2", serving_version="1"), Resolved("2"),
                observed)  # fmt: skip
    progressing = get_condition(plan.status.conditions, "Progressing")
    assert progressing is not None
    assert progressing.status == "True"
    assert "CrashLoopBackOff: exit code 1" in progressing.message


def test_the_reason_outlives_the_pods_after_a_rollback() -> None:
    failing = observe_deployment(deployment_object("2", conditions=[EXCEEDED], available=0), [OOM])
    last = ModelDeploymentStatus(target_version="2", serving_version="1")
    plan = step(last, Resolved("2"), failing)
    assert plan.deploy_version == "1"
    (event,) = [e for e in plan.events if e.reason == "RolloutFailed"]
    assert "OOMKilled: the container ran out of its memory limit 96Mi" in event.message
    assert plan.status.history[-1].result == "RolledBack"
    assert "OOMKilled" in (plan.status.history[-1].message or "")

    # rolled back: version 2's pods are gone, the reason stays in Degraded
    later = step(plan.status, Resolved("2"), complete("1"), minutes=1)
    degraded = get_condition(later.status.conditions, "Degraded")
    assert degraded is not None
    assert (degraded.status, degraded.reason) == ("True", "RolloutFailed")
    assert "(pod fraud-oom: OOMKilled: the container ran out of its memory limit 96Mi" in (
        degraded.message
    )
    assert "serving version 1" in degraded.message


def test_with_autorollback_off_the_failed_version_keeps_its_reason() -> None:
    failing = observe_deployment(
        deployment_object("2", conditions=[EXCEEDED], available=0), [LOADING]
    )
    off = spec(rollout={"autoRollback": False})
    plan = step(ModelDeploymentStatus(target_version="2", serving_version="1"), Resolved("2"),
                failing, off)  # fmt: skip
    assert plan.deploy_version == "2"
    assert plan.status.history[-1].result == "Failed"
    degraded = get_condition(plan.status.conditions, "Degraded")
    assert degraded is not None
    assert "the model has not loaded yet" in degraded.message
    assert "autoRollback is off" in degraded.message
