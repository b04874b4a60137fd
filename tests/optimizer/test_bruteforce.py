"""Small instances: the programme's optimum equals a brute-force enumeration of every decision.

The oracle evaluates each decision vector with the exact Erlang A formulas of
``simulator.erlang`` (not the programme's tables) and the model's stated rules: an hour staffed
below the concave start of its curve answers nothing within target, and only quiet hours
(load at most half the peak) may be left so.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pulp
import pytest

from optimizer.anchor import CityState
from optimizer.coordinate import solve_city
from optimizer.formulation import QUIET_SHARE, build_problem, read_plan
from optimizer.inputs import city_inputs, seat_factor, week_cover
from optimizer.solve import solve
from simulator.erlang import erlang_a


def _oracle(sc, max_seats: dict[str, int]) -> tuple[float, dict]:
    """Cheapest decisions meeting the channel share, by enumeration with exact Erlang A."""
    pl, city = sc.planning, sc.cities["Solo"]
    hw = np.array(sc.profiles.hourly_weights())
    primary = city.tickets_per_day * hw / 24.0
    aht = {t: tt.handle.default.mean_s for t, tt in sc.ticket_types.items()}
    patience = sc.channels["phone"].patience.mean_s
    target, resp = sc.channels["phone"].target_s, sc.chatbot.response_s
    covers = {p: week_cover(s)[:24] for p, s in pl.shift_patterns.items()}
    seat_cost = {p: pl.temporary_cost_per_month * seat_factor(s, pl.agent_hours_per_month)
                 for p, s in pl.shift_patterns.items()}
    options = [(city.chatbot_penetration, 0.0)] + [(lv.penetration, lv.cost_per_month) for lv in pl.chatbot_levels]
    best = (np.inf, None)
    for pen, bot_cost in options:
        esc = primary * 0.5 * (1 - pen)
        direct = primary * 0.5
        lam = esc + direct
        mean_h = (esc * aht["simple"] + direct * aht["hard"]) / lam
        load = lam * mean_h / 3600.0
        quiet = load <= QUIET_SHARE * load.max()

        @cache
        def within(h: int, n: int, esc=esc, direct=direct, lam=lam, mean_h=mean_h) -> float:
            if n == 0:
                return 0.0
            a = erlang_a(n, lam[h] / 3600.0, mean_h[h], patience, target - resp).service_level_offered
            b = erlang_a(n, lam[h] / 3600.0, mean_h[h], patience, target).service_level_offered
            return esc[h] * a + direct[h] * b

        def start(h: int) -> int:  # first n from which increments never grow
            vals = np.array([within(h, n) for n in range(60)])
            d = np.diff(vals)
            bad = np.nonzero(d[1:] > d[:-1] + 1e-12)[0]
            return 0 if bad.size == 0 else int(bad[-1] + 1)

        starts = [start(h) for h in range(24)]
        offered = primary.sum()
        deflected = (primary * 0.5 * pen).sum()
        for seats in itertools.product(*(range(max_seats[p] + 1) for p in covers)):
            n = sum(np.rint(covers[p]).astype(int) * k for p, k in zip(covers, seats))
            if any(n[h] < starts[h] and not quiet[h] for h in range(24)):
                continue  # a busy hour left understaffed: not a plan the model allows
            ok = sum(within(h, int(n[h])) for h in range(24) if n[h] >= starts[h])
            if (deflected + ok) / offered < pl.targets.channel_target_share - 1e-12:
                continue
            cost = bot_cost + sum(seat_cost[p] * k for p, k in zip(covers, seats))
            if cost < best[0] - 1e-6:
                best = (cost, {"seats": dict(zip(covers, seats)), "penetration": pen})
    return best


@pytest.mark.parametrize("tickets, share", [(900.0, 0.8), (600.0, 0.9)])
def test_optimum_equals_brute_force(patterns, tickets, share):
    sc = patterns(tickets_per_day=tickets, share=share)
    ci = city_inputs(sc, "Solo", tolerance=0.0)
    sp, _ = solve_city(ci, CityState(), sc.planning, gap_rel=1e-9)
    plan = read_plan(sp)["Solo"]
    mip_cost = float(sp.total_cost.value())
    limits = {"day": 14, "late": 10, "night": 6}
    assert all(plan.temporaries.get(p, 0) < limits[p] for p in limits)  # the enumeration covers it
    cost, decisions = _oracle(sc, limits)
    assert mip_cost == pytest.approx(cost, rel=1e-9)
    assert not plan.triage  # triage changes nothing here and costs money
    assert plan.chatbot_penetration == pytest.approx(decisions["penetration"])


def test_highs_and_cbc_agree_and_every_solve_is_checked(patterns):
    sc = patterns(tickets_per_day=900.0)
    ci = city_inputs(sc, "Solo", tolerance=0.0)
    results = {}
    for solver in ("highs", "cbc"):
        sp = build_problem({"Solo": ci}, {"Solo": CityState()}, sc.planning, coupled=False)
        res = solve(sp, solver=solver, gap_rel=1e-9)
        assert res.status == "Optimal" and res.proven
        assert pulp.LpStatus[sp.prob.status] == "Optimal"
        assert sp.prob.sol_status == pulp.LpSolutionOptimal
        assert sp.prob.valid(eps=1e-6)
        results[solver] = (res.objective, read_plan(sp)["Solo"])
    assert results["highs"][0] == pytest.approx(results["cbc"][0], rel=1e-9)


def test_a_node_limit_stops_at_an_incumbent_the_same_way_every_time(patterns):
    sc = patterns(tickets_per_day=900.0)
    ci = city_inputs(sc, "Solo")

    def run(**kw: object) -> tuple:
        sp = build_problem({"Solo": ci}, {"Solo": CityState()}, sc.planning, coupled=False)
        res = solve(sp, gap_rel=1e-9, **kw)
        return res.proven, sp.prob.solverModel.getInfo().mip_node_count, res.objective, read_plan(sp)["Solo"]

    proven, nodes, objective, plan = run()
    assert proven and nodes > 1  # this programme branches
    stopped = run(node_limit=1, accept_incumbent=True)
    assert not stopped[0] and stopped[1] < nodes  # stopped early: an unproven incumbent
    assert stopped[2] >= objective - 1e-6
    assert run(node_limit=1, accept_incumbent=True) == stopped  # a limit of work, not of time: same answer
    assert run(node_limit=1) == (proven, nodes, objective, plan)  # a stop short of a proof needs consent
    sp = build_problem({"Solo": ci}, {"Solo": CityState()}, sc.planning, coupled=False)
    cbc = solve(sp, solver="cbc", gap_rel=1e-9, node_limit=1, accept_incumbent=True)  # CBC's maxNodes
    assert not cbc.proven and cbc.objective >= objective - 1e-6


def test_a_cutoff_ends_a_search_that_cannot_beat_it_and_keeps_one_that_can(patterns, tmp_path):
    from optimizer.solve import NoBetter

    sc = patterns(tickets_per_day=900.0)
    ci = city_inputs(sc, "Solo")

    def problem():
        return build_problem({"Solo": ci}, {"Solo": CityState()}, sc.planning, coupled=False)

    sp = problem()
    optimum = solve(sp, gap_rel=1e-9).objective
    plan = read_plan(sp)["Solo"]
    with pytest.raises(NoBetter):  # far below the optimum: no plan, and no model file written
        solve(problem(), gap_rel=1e-9, cutoff=0.5 * optimum, lp_dir=tmp_path)
    assert not list(tmp_path.iterdir())
    try:  # just below it HiGHS may still return the optimum (its bound is no strict cutoff), never less
        assert solve(problem(), gap_rel=1e-9, cutoff=optimum - 1.0).objective >= optimum - 1e-6
    except NoBetter:
        pass
    sp = problem()
    above = solve(sp, gap_rel=1e-9, cutoff=optimum + 1.0)  # room below the cutoff: the same optimum
    assert above.proven and above.objective == pytest.approx(optimum, rel=1e-9)
    assert read_plan(sp)["Solo"] == plan
    # the city's best option is the same with its later options cut off at the best so far
    sp_city, _ = solve_city(ci, CityState(), sc.planning, gap_rel=1e-9)
    assert float(sp_city.total_cost.value()) <= optimum + 1e-6


def test_an_infeasible_programme_raises_with_the_model_written(patterns, tmp_path):
    from optimizer.solve import Infeasible

    sc = patterns(tickets_per_day=900.0)
    pl = sc.planning.model_copy(update={"max_temporary_per_city": 2})
    ci = city_inputs(sc, "Solo")
    sp = build_problem({"Solo": ci}, {"Solo": CityState()}, pl, coupled=False)
    with pytest.raises(Infeasible) as err:
        solve(sp, lp_dir=tmp_path)
    assert err.value.lp_path is not None and err.value.lp_path.endswith(".lp")
    assert (tmp_path / err.value.lp_path.split("/")[-1]).exists()
