"""The solver wrapper: what a cutoff means when the objective carries a constant, and the bulk
HiGHS interface against PuLP's own."""

from __future__ import annotations

import highspy
import numpy as np
import pulp
import pytest

from optimizer.formulation import build_problem, read_plan
from optimizer.inputs import city_inputs
from optimizer.solve import HIGHS_MIP, NoBetter, _solver, max_violation, solve


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


def test_the_bulk_interface_solves_the_model_pulp_s_own_highs_builds(patterns):
    """``solve`` hands HiGHS the model in bulk: the same columns, rows and bounds as PuLP's own
    ``pulp.HiGHS``, so the same optimum, the same values and the same check of the rows."""
    sc = patterns(tickets_per_day=1500.0)
    city = next(iter(sc.cities))
    ci = city_inputs(sc, city)

    def problem():
        return build_problem({city: ci}, {}, sc.planning, mode="cost", coupled=False)

    ours, theirs = problem(), problem()
    res = solve(ours, gap_rel=1e-9)
    theirs.prob.solve(pulp.HiGHS(msg=False, mip=True, gapRel=1e-9, threads=1, **HIGHS_MIP))
    assert pulp.LpStatus[theirs.prob.status] == "Optimal"
    assert res.objective == pytest.approx(pulp.value(theirs.prob.objective), rel=1e-12)
    assert res.columns == len(theirs.prob.variables()) and res.rows == len(theirs.prob.constraints())
    assert res.integers == sum(v.cat == pulp.LpInteger for v in theirs.prob.variables()) > 0
    got = {v.name: v.varValue for v in ours.prob.variables()}
    assert got == pytest.approx({v.name: v.varValue for v in theirs.prob.variables()}, abs=1e-9)
    assert read_plan(ours) == read_plan(theirs)
    # a row moved past the solution: both checks of the rows read the same violation
    row = next(c for c in ours.prob.constraints() if c.sense == pulp.LpConstraintGE and len(c))
    row.constant -= row.value() + 1.0
    slv = _solver("highs", None, None, False, None)
    slv.buildSolverModel(_Built(ours.prob))
    slv.x = np.array([v.varValue for v in slv.columns])
    assert slv.violation() == pytest.approx(max_violation(ours.prob), rel=1e-9) and slv.violation() > 1e-6


class _Built:
    """A problem with a HiGHS model to build into (``buildSolverModel`` alone)."""

    def __init__(self, prob: pulp.LpProblem) -> None:
        self._constraints, self.objective, self.sense = prob._constraints, prob.objective, prob.sense
        self.variables, self.solverModel = prob.variables, highspy.Highs()
