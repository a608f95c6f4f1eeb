"""ToldOnce: a problem is told when it is new, and again after it went away and came back."""

from __future__ import annotations

from mlflow_operator.reconcilers.common import ToldOnce


def test_a_problem_is_told_once_while_it_lasts_and_again_when_it_returns() -> None:
    told = ToldOnce()
    seen = [
        told.news("ml/a", "route missing"),
        told.news("ml/a", "route missing"),
        told.news("ml/b", "route missing"),  # another object
        told.news("ml/a", "route sends nowhere"),  # another problem
        told.news("ml/a", None),  # gone
        told.news("ml/a", "route sends nowhere"),  # back
    ]
    assert seen == [True, False, True, True, False, True]
    assert told.current("ml/a") == "route sends nowhere"
    told.forget("ml/a")
    assert told.current("ml/a") is None
    assert told.news("ml/a", "route sends nowhere")
