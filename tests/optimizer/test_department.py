"""The department's plan set against ours target by target, on the verification's streams."""

from __future__ import annotations

import pytest

from optimizer.department import against_department
from optimizer.plan import CityPlan, Plan, apply_plan
from optimizer.report import scenario_cost
from optimizer.verify import verify_plan
from simulator import load_scenario
from simulator.calibration import model_for
from simulator.scenario import Targets


@pytest.fixture(scope="module")
def small():
    sc = load_scenario("scenarios/small.yaml")
    targets = Targets(city_score_min=None, national_score_min=None, dialect_coverage_min=None)
    return sc.model_copy(update={"planning": sc.planning.model_copy(update={"targets": targets})})


def test_a_bigger_department_plan_costs_more_and_is_compared_target_by_target(small):
    ours = Plan.build(small, {"Urumqi": CityPlan("Urumqi", temporaries={"late": 4}, triage=True)})
    theirs = apply_plan(small, Plan.build(small, {"Urumqi": CityPlan("Urumqi", temporaries={"late": 8}, triage=True)}))
    ver = verify_plan(ours, small, 3, small.seed)
    cost = float(scenario_cost(small, theirs)["total"].sum())
    versus = against_department(small, ours.cost, ver, theirs, cost, model=model_for(small))
    t = versus.table
    assert cost > ours.cost > 0
    assert len(t) == len(ver.table) and set(t["target"]) == set(ver.table["target"])
    assert (t["plan_ok"] == t.merge(ver.table, on=["city", "target"])["ok"]).all()
    # the department's four extra seats on the same streams: Urumqi answers faster
    fr = t[(t["city"] == "Urumqi") & (t["target"] == "mean_first_response")].iloc[0]
    assert fr["department_mean"] < fr["plan_mean"]
    assert "costs" in versus.summary() and "(more)" in versus.summary()
    assert versus.department_misses.equals(t[~t["department_ok"] & t["plan_ok"]])
