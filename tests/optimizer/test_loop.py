"""The simulation-optimisation loop: verified plans, unreachable targets, budgets, verification."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer.loop import optimize
from optimizer.plan import CityPlan, Plan, apply_plan
from optimizer.solve import Infeasible
from optimizer.verify import GROUPINGS, POOL_PLANS, _bound, assess_cities, verify_plan
from simulator.calibration import model_for
from simulator.kpi import replicate
from simulator.scenario import Targets

REACHABLE = Targets(city_score_min=70.0, national_score_min=74.0)  # the prior satisfaction model's range


def test_loop_ends_with_a_plan_verified_on_fresh_streams(national):
    res = optimize(national(targets=REACHABLE), polish_sims=0)
    assert res.status == "verified"
    assert res.verification is not None and res.verification.ok
    assert res.verification.table["ok"].all() and len(res.verification.table) == 10
    frame = res.iterations_frame()
    assert len(frame) >= 1 and frame["failing"].iloc[-1] == 0 and frame["solve_s"].ge(0).all()
    assert res.cost == pytest.approx(res.plan.cost) and res.cost > 0  # baseline fails: something was bought
    assert res.timings["total_s"] < 60.0
    cov = res.verification.table.query("target == 'dialect_coverage:uyghur'")
    assert float(cov["mean"].iloc[0]) >= 0.8


def test_a_hiring_cap_of_zero_reports_the_binding_targets_and_the_best_plan(national):
    sc = national(targets=Targets(city_score_min=None, national_score_min=None),
                  max_hires_per_city=0, max_temporary_per_city=0)
    with pytest.raises(Infeasible) as err:
        optimize(sc)
    e = err.value
    rows = pd.DataFrame(e.binding)
    assert set(rows["target"]) == {"channel_share:phone"}
    assert (rows["best"] < rows["required"]).all()
    assert rows["limited_by"].map(lambda x: "max_temporary_per_city=0" in x).all()
    assert e.best is not None and e.best.status == "soft"
    assert e.best.plan.cities and all(not cp.hires and not cp.temporaries for cp in e.best.plan.cities.values())
    failing = e.best.fit[~e.best.fit["ok"]]
    assert set(failing["target"]) == {"channel_share:phone"}  # the simulation agrees on what binds
    assert "binding" in str(e) and "best reachable" in str(e)


def test_a_score_of_99_is_reported_with_the_best_reachable_score(national):
    with pytest.raises(Infeasible) as err:
        optimize(national(targets=Targets(city_score_min=99.0, national_score_min=None)))
    rows = pd.DataFrame(err.value.binding)
    assert set(rows["target"]) == {"city_score"} and set(rows["city"]) == {"North", "West"}
    assert rows["best"].between(80.0, 99.0).all()
    assert err.value.best.plan.cost > 0


@pytest.mark.slow
def test_a_budget_buys_the_best_national_score_within_it(national):
    small = optimize(national(targets=REACHABLE, budget_per_month=180_000.0), verify=False, polish_sims=0)
    large = optimize(national(targets=REACHABLE, budget_per_month=400_000.0), verify=False, polish_sims=0)
    assert small.cost <= 180_000.0 + 1e-6 and large.cost <= 400_000.0 + 1e-6
    nat = lambda r: float(r.fit.query("target == 'national_score'")["mean"].iloc[0])
    assert nat(large) >= nat(small) - 0.5  # more money never buys a (clearly) worse national score
    assert large.cost > small.cost  # and the larger budget is used for it


def test_a_budget_too_small_for_the_service_targets_is_named(national):
    with pytest.raises(Infeasible) as err:
        optimize(national(targets=REACHABLE, budget_per_month=60_000.0))
    rows = pd.DataFrame(err.value.binding)
    assert len(rows) and rows["limited_by"].map(lambda x: "budget_per_month=60000" in x).any()
    assert err.value.best.plan.cost <= 60_000.0 + 1e-6


def test_verification_uses_streams_the_loop_never_saw(national):
    sc = national(targets=REACHABLE)
    plan = Plan.build(sc, {"North": CityPlan("North", temporaries={"late": 3})})
    a = verify_plan(plan, sc, 3, sc.seed)
    b = verify_plan(plan, sc, 3, sc.seed)
    pd.testing.assert_frame_equal(a.table, b.table)  # reproducible
    fit = replicate(apply_plan(sc, plan), 3, seed=sc.seed, purpose="fit", cities=["North"])
    fit_mean = fit.kpis(("city",)).query("city == 'North'")["first_response_mean_s"].mean()
    assert a.kpis.loc["North", "first_response_mean_s"] != pytest.approx(fit_mean, rel=1e-12)


def test_prediction_bounds_are_wider_than_plain_bounds_and_tighten_with_pooling():
    x = np.array([0.86, 0.84, 0.88, 0.85, 0.87])
    m, plain = _bound(x, 0.95, lower=True)
    _, pred = _bound(x, 0.95, lower=True, future=10)
    assert pred < plain < m
    def plan(k: int) -> np.ndarray:  # the k-th of several plans with about the same spread
        return x.mean() + (x - x.mean()) * (1.0 + 0.01 * k)

    pool: dict = {}
    for k in range(5):  # five plans: more degrees of freedom
        _, pooled = _bound(plan(k), 0.95, lower=True, future=10, pool=pool, key=("c", "t"))
    assert pooled > pred
    again: dict = {}
    for _ in range(3):  # one plan looked at three times (the same streams) is one plan's evidence
        _, same = _bound(x, 0.95, lower=True, future=10, pool=again, key=("c", "t"))
    assert same == pytest.approx(pred)
    wide: dict = {}
    _bound(x * 10.0 - 8.0, 0.95, lower=True, future=10, pool=wide, key=("c", "t"))  # an early, erratic plan
    after = [_bound(plan(k), 0.95, lower=True, future=10, pool=wide, key=("c", "t"))[1] for k in range(5 - POOL_PLANS, 5)]
    assert after[0] < pred  # its spread still counts next to it
    assert after[-1] == pytest.approx(pooled)  # and is forgotten once POOL_PLANS later plans are seen
    look = dict(pool)  # a candidate reads the pool without joining it, and a kept plan gets the same bound
    assert _bound(x, 0.95, lower=True, future=10, pool=look, key=("c", "t"), pending={}) == \
        _bound(x, 0.95, lower=True, future=10, pool=dict(pool), key=("c", "t")) and look == pool
    _, month = _bound(x, 0.95, lower=True, future=10, scale=0.5)
    assert month > pred  # a verification over a longer horizon varies less


def test_a_learnt_horizon_shift_moves_a_target_check_by_exactly_the_shift(national):
    sc = national(targets=REACHABLE)
    applied = apply_plan(sc, Plan.build(sc, {"North": CityPlan("North", temporaries={"late": 3})}))
    reps = replicate(applied, 3, seed=sc.seed, purpose="fit", cities=["North"], groupings=GROUPINGS)
    per_city, per_channel = reps.kpis(("city",)), reps.kpis(("city", "channel"))
    model = model_for(sc)
    plain = assess_cities(applied, per_city, per_channel, model, sc.planning.targets, ["North"]).table
    row = plain.query("target == 'channel_share:phone'").iloc[0]
    shift = {("North", "channel_share:phone"): 0.8 - row["bound"] - 0.01}  # the month 1 point below the target
    moved = assess_cities(applied, per_city, per_channel, model, sc.planning.targets, ["North"], shift=shift).table
    new = moved.query("target == 'channel_share:phone'").iloc[0]
    assert new["mean"] == pytest.approx(row["mean"] + shift[("North", "channel_share:phone")])
    assert new["bound"] == pytest.approx(0.79) and not new["ok"]
    others = moved["target"] != "channel_share:phone"
    pd.testing.assert_frame_equal(moved[others], plain[others])  # nothing else moves


def test_a_failed_verification_teaches_the_loop_the_month_or_doubles_its_replications(national):
    from optimizer.loop import _learn_from_verification, _Loop
    from optimizer.verify import Verification

    sc = national(targets=REACHABLE)
    L = _Loop(sc, solver="highs", loop_replications=3, seed=sc.seed, loop_horizon_days=None, solve_kw={},
              log=lambda s: None, future=5)
    plans = {"North": CityPlan("North", temporaries={"late": 3}), "West": CityPlan("West")}
    L.simulate(plans, ["North", "West"], corrected=True)
    L.plans = plans
    week = L.table["North"].set_index("target").loc["channel_share:phone"]

    def verdict(mean: float) -> Verification:
        row = {"city": "North", "target": "channel_share:phone", "sense": ">=", "required": 0.8, "mean": mean,
               "bound": mean - 0.01, "n": 5, "ok": False}
        return Verification(False, pd.DataFrame([row]), pd.DataFrame(), pd.DataFrame(), None, 5, sc.seed, 0.0)

    _learn_from_verification(L, verdict(week["mean"] - 0.05))  # the month 5 points worse than the week
    assert L.shift == {("North", "channel_share:phone"): pytest.approx(-0.05)} and L.n == 3
    again = L.table["North"].set_index("target").loc["channel_share:phone"]
    assert again["mean"] == pytest.approx(week["mean"] - 0.05)  # the same plan, seen as the month sees it
    assert set(L.simulated_key) == {"North", "West"}  # the loop goes on from today's plans
    _learn_from_verification(L, verdict(again["mean"] + 0.01))  # no worse than the loop saw: noise
    assert L.n == 6 and L.shift == {("North", "channel_share:phone"): pytest.approx(-0.05)}
    L.national_check()
    week_nat = L.national[0]
    nat = {"city": "national", "target": "national_score", "sense": ">=", "required": 74.0,
           "mean": week_nat - 0.2, "bound": week_nat - 0.3, "n": 5, "ok": False}
    _learn_from_verification(L, Verification(False, pd.DataFrame([nat]), pd.DataFrame(), pd.DataFrame(), None,
                                             5, sc.seed, 0.0))
    assert L.nat_shift == pytest.approx(-0.2) and L.n == 6  # the month's national score, learnt
    L.national_check()
    assert L.national[0] == pytest.approx(week_nat - 0.2)


def test_a_plan_greedy_takes_gets_the_same_verdict_when_the_loop_simulates_it_again(national):
    from optimizer.greedy import greedy
    from optimizer.loop import fit_kpis, loop_scenario

    sc = national(targets=REACHABLE).model_copy(update={"horizon_days": 3.0})
    pool: dict = {}
    res = greedy(sc, replications=3, loop_horizon_days=None, verify=False, pool=pool)
    assert len(res.iterations) >= 2  # several rounds of candidates were judged against the pool
    model, short = model_for(sc), loop_scenario(sc, None)
    for city, cp in res.plan.cities.items():
        applied = apply_plan(short, Plan.build(short, {city: cp}))
        per_city, per_channel = fit_kpis((applied, 3, sc.seed, [city]))
        again = assess_cities(applied, per_city, per_channel, model, sc.planning.targets, [city],
                              future=sc.replications, pool=pool).table
        took = res.fit[res.fit["city"] == city]
        assert again["bound"].to_numpy() == pytest.approx(took["bound"].to_numpy(), rel=1e-12)


def test_a_first_look_and_the_rest_of_the_replications_give_one_run_s_frames(national):
    from optimizer.loop import fit_kpis

    sc = national(targets=REACHABLE).model_copy(update={"horizon_days": 2.0})
    whole = fit_kpis((sc, 4, sc.seed, ["West"]))
    first, rest = fit_kpis((sc, 2, sc.seed, ["West"])), fit_kpis((sc, 4, sc.seed, ["West"], 2))
    for w, f, r in zip(whole, first, rest):
        assert set(r["replication"]) == {2, 3}
        pd.testing.assert_frame_equal(w, pd.concat([f, r], ignore_index=True), check_exact=True)


@pytest.mark.slow
def test_a_shortlisted_greedy_meets_the_targets_with_fewer_simulations(national):
    from optimizer.greedy import greedy

    sc = national(targets=Targets(city_score_min=70.0, national_score_min=None)).model_copy(
        update={"horizon_days": 3.0})
    full = greedy(sc, replications=4, loop_horizon_days=None, verify=False)
    short = greedy(sc, replications=4, loop_horizon_days=None, verify=False, shortlist=3)
    assert bool(full.fit["ok"].all()) and bool(short.fit["ok"].all())
    # a look runs two of the four replications: a round of ten candidates costs 5.5 city simulations
    # (looks at them and at the plan) + 1.5 (the rest of three), against 10
    assert short.timings["simulations"] < 0.9 * full.timings["simulations"]
    assert short.cost <= 1.1 * full.cost


def test_the_descent_stops_after_its_budget_of_simulations_not_seconds(national):
    from optimizer.loop import _Loop, _polish

    sc = national(targets=REACHABLE)
    L = _Loop(sc, solver="highs", loop_replications=3, seed=sc.seed, loop_horizon_days=2.0, solve_kw={},
              log=lambda s: None, future=5)
    plans = {"North": CityPlan("North", temporaries={"late": 3, "day": 2}), "West": CityPlan("West")}
    L.simulate(plans, ["North", "West"], corrected=True)
    L.plans = plans
    assert L.sims == 2
    _polish(L, 2, lambda s: None)
    assert L.sims == 4  # two candidate reductions simulated, then the budget is spent
    _polish(L, 0, lambda s: None)
    assert L.sims == 4
    pooled = dict(L.pool)
    cand = CityPlan("North", temporaries={"late": 2})
    L.simulate({"North": cand}, ["North"], corrected=True, record=False)  # a candidate's look
    assert L.pool == pooled
    L.commit("North", cand)  # kept: its variances join the pool, one plan per target
    grown = {k for k in L.pool if L.pool[k] != pooled.get(k)}
    assert grown and all(k[0] == "North" for k in grown)


def test_the_loop_sees_the_same_numbers_on_one_worker_or_two(national):
    from optimizer.loop import _Loop

    sc = national(targets=REACHABLE)
    plans = {"North": CityPlan("North", temporaries={"late": 3}), "West": CityPlan("West")}
    seen = []
    for workers in (1, 2):
        L = _Loop(sc, solver="highs", loop_replications=3, seed=sc.seed, loop_horizon_days=2.0, solve_kw={},
                  log=lambda s: None, future=5, workers=workers)
        L.simulate(plans, ["West", "North"], corrected=True)
        seen.append((pd.concat(L.table.values()), pd.concat(L.rep_rows.values()), L.national_check()))
    for one, two in zip(*seen):
        pd.testing.assert_frame_equal(one.reset_index(drop=True), two.reset_index(drop=True))


def test_the_polish_looking_ahead_on_two_workers_keeps_what_one_worker_keeps(national):
    from optimizer.loop import _Loop, _polish

    sc = national(targets=REACHABLE)
    plans = {"North": CityPlan("North", temporaries={"late": 8, "day": 8, "night": 2}), "West": CityPlan("West")}
    out = []
    for workers in (1, 2):
        L = _Loop(sc, solver="highs", loop_replications=3, seed=sc.seed, loop_horizon_days=2.0, solve_kw={},
                  log=lambda s: None, future=5, workers=workers)
        L.simulate(plans, ["North", "West"], corrected=True)
        L.plans = dict(plans)
        runs, look = [], L.look_ahead
        L.look_ahead = lambda c, cands, look=look, runs=runs: runs.append(look(c, cands)) or runs[-1]
        kept = _polish(L, 8, lambda s: None)
        out.append((kept, L.sims, {c: cp.key() for c, cp in L.plans.items()}, dict(L.pool), L.ahead,
                    sum(w > 0 for w in runs)))
    (kept1, sims1, plans1, pool1, _, ran1), (kept2, sims2, plans2, pool2, ahead2, ran2) = out
    assert ran1 == 0 and ran2 >= 2  # on two workers, pairs of candidates were simulated side by side
    assert kept1 >= 1 and plans1["North"] != plans["North"].key()  # the descent dropped seats
    assert (kept2, sims2, plans2) == (kept1, sims1, plans1) and sims1 == 10  # the budget counts the plans tried
    assert pool2 == pool1 and not ahead2  # the same verdicts; frames never tried are dropped


def test_the_loop_counts_dialect_coverage_over_the_planning_horizon_not_its_cut_week(national):
    """Coverage is the plan's share of agent hours over the horizon the programme plans and the
    verification checks; a loop that simulates fewer days must not count it over those days
    (before, a plan that met 0.8 for the month could fail in the loop for ever: no correction
    of the programme moves a target it already meets)."""
    from optimizer.greedy import greedy
    from optimizer.loop import _Loop
    from optimizer.verify import coverage
    from simulator.scenario import AgentGroup, Shift

    sc = national(targets=REACHABLE)
    west = sc.cities["West"]
    weekend = AgentGroup(name="weekend", headcount=2, shift=Shift(start_h=8.0, length_h=10.0, days=("sat", "sun")),
                         languages=("uyghur",))
    sc = sc.model_copy(update={"horizon_days": 8.0, "start_weekday": "mon",
                               "cities": {**sc.cities, "West": west.model_copy(
                                   update={"agent_groups": (*west.agent_groups, weekend)})}})
    L = _Loop(sc, solver="highs", loop_replications=2, seed=sc.seed, loop_horizon_days=2.0, solve_kw={},
              log=lambda s: None, future=5)
    month, week = coverage(sc, "West")["uyghur"], coverage(L.sc_loop, "West")["uyghur"]
    assert week < month - 0.05  # the cut week has no weekend: the case where the two differ
    L.simulate({"West": CityPlan("West")}, ["West"], corrected=False)
    row = L.table["West"].set_index("target").loc["dialect_coverage:uyghur"]
    assert row["mean"] == pytest.approx(month, rel=1e-12)
    one = sc.only(["West"])
    res = greedy(one, replications=2, loop_horizon_days=2.0, verify=False, max_steps=0)
    row = res.fit.set_index("target").loc["dialect_coverage:uyghur"]
    assert row["mean"] == pytest.approx(month, rel=1e-12)


def test_the_loop_s_week_measures_every_weekday_once_after_its_warm_up(national):
    """The loop's days are counted after the warm-up: with the warm-up inside its 7 days, March
    2025's loop (1 March, a Saturday, warm-up) measured no Saturday at all."""
    from optimizer.inputs import horizon_hours
    from optimizer.loop import loop_scenario

    sc = national(targets=REACHABLE).model_copy(update={"horizon_days": 31.0, "warmup_h": 24.0,
                                                        "start_weekday": "sat"})
    week = loop_scenario(sc, 7.0)
    assert week.horizon_days == 8.0 and week.warmup_h == 24.0
    per_day = horizon_hours(week).reshape(7, 24).sum(axis=1)
    assert per_day.tolist() == [24.0] * 7
    assert loop_scenario(sc, 30.0) is sc and loop_scenario(sc, None) is sc


def test_the_baseline_gives_the_first_programme_its_efficiency_and_miss_ratios(national):
    """The corrections the baseline measures carry to the first plan (on March 2025 within a few
    per cent): its efficiency makes the model's synchronous miss share the simulated one, and
    each channel's allowed misses scale by the simulated bound over the model. The response
    ratio did not carry (0.3 at an overloaded baseline, 1.1 at the plan) and stays 1."""
    from optimizer.anchor import MISS_FLOOR, _sync_miss, effective_agents
    from optimizer.loop import _Loop

    sc = national(targets=REACHABLE)
    L = _Loop(sc, solver="highs", loop_replications=3, seed=sc.seed, loop_horizon_days=None, solve_kw={},
              log=lambda s: None, future=5)
    base = {c: CityPlan(c) for c in sc.cities}
    L.simulate(base, list(sc.cities), corrected=False)
    for c in sc.cities:
        st, sim, model, ci = L.states[c], L.points[c], L.model[c], L.inputs[c]
        assert st.response_ratio == 1.0
        assert st.efficiency != 1.0
        option = model.option
        off = {ch: float(ci.weight @ ci.option(option).offered[ch]) for ch in ci.sync_channels}
        simulated = sum((1.0 - sim.sl_mean[ch]) * off[ch] for ch in off) / sum(off.values())
        assert _sync_miss(ci, option, effective_agents(ci, base[c], st)) == pytest.approx(
            simulated, abs=1e-6)
        assert set(st.miss_ratio) == set(model.sl)
        for ch, ratio in st.miss_ratio.items():
            want = (1.0 - sim.sl_bound[ch]) / max(1.0 - model.sl[ch], MISS_FLOOR)
            assert ratio == pytest.approx(min(10.0, max(0.1, want)), rel=1e-9)
