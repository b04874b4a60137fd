"""The acceptance check on the March 2025 baseline (issue 4): the whole 32-city plan, verified.

One optimisation (about 15 minutes on 2 cores) feeds every test of the module: the plan holds
every target on streams the loop never saw, misses none beyond the noise on another root seed, and against
the department's three-step plan it costs less or meets targets that plan misses.
"""

from __future__ import annotations

import pytest

from optimizer.department import against_department
from optimizer.loop import optimize
from optimizer.report import scenario_cost
from optimizer.verify import verify_plan
from simulator import load_scenario
from simulator.calibration import model_for

# The loop's path is deterministic (node limits on its programmes, simulation budgets on its
# descent; no time limit decides anything), so this run is the run a planner gets on any machine.
# Here (the loop's whole week, HiGHS 1.16, 2 cores): verified at 7,573,938 yuan a month in 294 s
# (one verification round).
pytestmark = pytest.mark.slow

MARCH = "scenarios/march_2025.yaml"
DEPARTMENT = "scenarios/three_step_plan.yaml"
OTHER_SEED = 7919  # added to the scenario's root seed: streams neither the loop nor the verification used


@pytest.fixture(scope="module")
def march():
    return load_scenario(MARCH)


@pytest.fixture(scope="module")
def result(march):
    return optimize(march, workers=2)


def _bound(table, target: str) -> list[float]:
    return table.loc[table["target"] == target, "bound"].tolist()


def test_march_plan_holds_every_target_on_fresh_streams(march, result):
    assert result.status == "verified", result.verification.failing if result.verification else result.fit
    ver = result.verification
    assert ver.ok and ver.n == march.replications and ver.table["ok"].all()
    t = ver.table
    targets = march.planning.targets
    assert min(_bound(t, "national_score")) >= targets.national_score_min
    city = _bound(t, "city_score")
    assert len(city) == len(march.cities) and min(city) >= targets.city_score_min
    dialect = t[t["target"].str.startswith("dialect_coverage:")]
    assert len(dialect) > 0 and (dialect["bound"] >= targets.dialect_coverage_min).all()
    first = _bound(t, "mean_first_response")
    assert len(first) == len(march.cities) and max(first) <= targets.mean_first_response_h * 3600.0


def test_march_plan_misses_no_target_on_another_root_seed(march, result):
    """On streams of another root seed no target is missed beyond the noise: each target's
    confidence interval (``targets.confidence``, one-sided, on that side) still reaches it.

    Not the point means: the loop keeps the cheapest plan whose bounds clear the targets, so
    several targets sit at their margin, and another seed's mean of one of them can fall below
    by a hundredth (one run: Tianjin's chat share, 0.8041 as the verification's bound, 0.7990
    as another seed's mean with the interval reaching 0.8096). A true miss shows as an
    interval wholly on the wrong side.
    """
    other = verify_plan(result.plan, march, march.replications, march.seed + OTHER_SEED,
                        model=model_for(march), workers=2)
    t = other.table
    far = 2.0 * t["mean"] - t["bound"]  # the other end of the one-sided interval
    reached = (far >= t["required"] - 1e-12).where(t["sense"] == ">=", far <= t["required"] + 1e-9)
    assert reached.all(), t[~reached]


def test_march_plan_against_the_department_three_step_plan(march, result):
    department = load_scenario(DEPARTMENT)
    dep_cost = float(scenario_cost(march, department)["total"].sum())
    versus = against_department(march, result.cost, result.verification, department, dep_cost,
                                model=model_for(march), workers=2)
    assert versus.plan_misses.empty, versus.plan_misses
    assert result.cost < dep_cost or len(versus.department_misses) > 0
    # the department's plan misses targets the baseline misses too: it is not enough on its own
    assert len(versus.department_misses) > 0
