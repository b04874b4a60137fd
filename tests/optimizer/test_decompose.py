"""Price coordination equals the one-tree national programme; parallel simulation changes nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from optimizer.coordinate import solve_plan
from optimizer.decompose import solve_decomposed
from optimizer.formulation import build_problem
from optimizer.loop import _Loop
from optimizer.plan import CityPlan
from optimizer.solve import solve
from optimizer.verify import GROUPINGS, replicate_parallel
from simulator.kpi import replicate
from simulator.scenario import Targets


@pytest.fixture(scope="module")
def linearised(national):
    """Two cities linearised at their simulated baseline (as the loop's first programme sees them)."""
    sc = national(targets=Targets(city_score_min=70.0, national_score_min=70.0))
    L = _Loop(sc, solver="highs", loop_replications=4, seed=sc.seed, loop_horizon_days=7, solve_kw={},
              log=lambda s: None)
    L.sim_s = L.simulate({c: CityPlan(c) for c in sc.cities}, list(sc.cities), corrected=False)
    return sc, L


def test_decomposition_comes_within_its_integrality_gap_of_the_national_programme(linearised):
    """Prices find only plans on each city's convex hull of cost against score; the integer
    master then picks among them, so it can pay more than the one-tree programme's optimum (4 %
    here with hull plans only). The cities the relaxation splits get their cheapest plan at the
    split's score as a column, which brings it within 1.5 %."""
    sc, L = linearised
    free = solve_plan(L.inputs, L.states, L.pl)
    tg = sc.planning.targets.model_copy(update={"national_score_min": free.national + 0.5})
    pl = sc.planning.model_copy(update={"targets": tg})
    dec = solve_decomposed(L.inputs, L.states, pl, rounds=12, pricing_limit_s=60.0)
    sp = build_problem(L.inputs, L.states, pl)
    mono = solve(sp, gap_rel=1e-7)
    assert dec.cost > free.cost  # the national row binds: it costs something
    assert mono.objective - 1e-6 <= dec.cost <= 1.015 * mono.objective
    assert dec.national >= tg.national_score_min - 1e-6
    assert dec.bound is not None and dec.bound <= mono.objective + 1e-6  # a valid lower bound


def test_floors_only_add_to_the_given_plans(linearised):
    sc, L = linearised
    free = solve_plan(L.inputs, L.states, L.pl)
    tg = sc.planning.targets.model_copy(update={"national_score_min": free.national + 0.5})
    pl = sc.planning.model_copy(update={"targets": tg})
    floors = {c: cp for c, cp in free.plans.items()}
    up = solve_decomposed(L.inputs, L.states, pl, floors=floors, rounds=12, pricing_limit_s=60.0)
    best = solve_decomposed(L.inputs, L.states, pl, rounds=12, pricing_limit_s=60.0)
    assert up.national >= tg.national_score_min - 1e-6
    assert up.cost >= best.cost - 1e-6  # a floor can only cost more than the free optimum
    for c, fl in floors.items():
        cp = up.plans[c]
        assert (cp.chatbot_penetration, cp.triage) == (fl.chatbot_penetration, fl.triage)
        for name in ("hires", "temporaries", "trained", "certified"):
            got, low = getattr(cp, name), getattr(fl, name)
            assert all(got.get(k, 0) >= v for k, v in low.items()), (c, name, got, low)
    assert any(up.plans[c].key() != floors[c].key() for c in floors)  # the score was bought on top


def test_a_national_target_no_combination_reaches_is_infeasible(linearised):
    from optimizer.solve import Infeasible

    sc, L = linearised
    tg = sc.planning.targets.model_copy(update={"national_score_min": 99.5})
    with pytest.raises(Infeasible):
        solve_decomposed(L.inputs, L.states, sc.planning.model_copy(update={"targets": tg}))


def test_parallel_replications_give_the_same_numbers(national):
    sc = national()
    serial = replicate(sc, 3, seed=11, purpose="verify", groupings=GROUPINGS)
    parallel = replicate_parallel(sc, 3, 11, "verify", workers=2)
    for by in GROUPINGS:
        pd.testing.assert_frame_equal(serial.kpis(by), parallel.kpis(by))
