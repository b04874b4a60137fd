"""The solver wrapper: what a cutoff means when the objective carries a constant."""

from __future__ import annotations

import pulp
import pytest

from optimizer.solve import NoBetter, solve


class _Problem:
    def __init__(self, prob: pulp.LpProblem) -> None:
        self.prob = prob


def _with_constant() -> tuple[_Problem, pulp.LpVariable]:
    """min x - 100 with x integer >= 2.5: optimum -97 at x = 3 (a pricing problem's objective
    carries minus its score's constant, so HiGHS sees it shifted)."""
    prob = pulp.LpProblem("shifted", pulp.LpMinimize)
    x = prob.add_variable("x", 0, 10, cat=pulp.LpInteger)
    prob += x - 100.0
    prob += x >= 2.5, "floor"
    return _Problem(prob), x


def test_a_cutoff_above_the_optimum_finds_it_whatever_the_objective_s_constant():
    p, x = _with_constant()
    res = solve(p, cutoff=-96.0)
    assert x.varValue == pytest.approx(3.0)
    assert res.objective == pytest.approx(-97.0)


def test_a_cutoff_below_the_optimum_finds_nothing():
    p, _ = _with_constant()
    with pytest.raises(NoBetter):
        solve(p, cutoff=-98.0)
