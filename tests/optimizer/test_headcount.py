"""One city, one channel, one skill, flat demand, a 24/7 pattern: the programme's head count is Erlang's."""

from __future__ import annotations

import pytest

from optimizer.anchor import CityState
from optimizer.coordinate import solve_city
from optimizer.formulation import read_plan
from optimizer.inputs import city_inputs
from simulator.erlang import min_agents

CASES = [
    # calls per hour, handle time, target, service level
    (60.0, 180.0, 20.0, 0.8),
    (240.0, 300.0, 20.0, 0.8),
    (240.0, 300.0, 60.0, 0.9),
    (900.0, 240.0, 30.0, 0.95),
    (12.0, 600.0, 60.0, 0.7),
]


def _seats(sc) -> int:
    ci = city_inputs(sc, "Solo", tolerance=0.0)
    sp, _ = solve_city(ci, CityState(), sc.planning, gap_rel=1e-9)
    assert sp.prob.status == 1  # pulp.LpStatusOptimal
    return read_plan(sp)["Solo"].temporaries.get("all", 0)


@pytest.mark.parametrize("rate, aht, target, share", CASES)
def test_head_count_equals_erlang_c_minimum(solo, rate, aht, target, share):
    expected = min_agents(rate / 3600.0, aht, target, share)
    assert _seats(solo(rate, aht, None, target, share)) == expected


@pytest.mark.parametrize("patience", [60.0, 240.0, 1800.0])
@pytest.mark.parametrize("rate, aht, target, share", CASES)
def test_head_count_equals_erlang_a_minimum(solo, rate, aht, target, share, patience):
    expected = min_agents(rate / 3600.0, aht, target, share, patience_s=patience)
    assert _seats(solo(rate, aht, patience, target, share)) == expected


def test_default_piece_merging_costs_at_most_one_agent(solo):
    """Merged pieces are pessimistic by construction: never fewer agents, at most one more."""
    sc = solo(240.0, 300.0, 240.0, 20.0, 0.8)
    exact = min_agents(240.0 / 3600.0, 300.0, 20.0, 0.8, patience_s=240.0)
    sp, _ = solve_city(city_inputs(sc, "Solo"), CityState(), sc.planning)
    got = read_plan(sp)["Solo"].temporaries["all"]
    assert exact <= got <= exact + 1
