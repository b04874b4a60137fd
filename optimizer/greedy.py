"""Stage 6 of 7 (comparison): ``greedy(scenario) -> PlanResult``, a marginal-analysis heuristic.

The yardstick the programme must beat: starting from today's staffing, repeatedly take the
single action with the best improvement per yuan until every target holds, where both the
improvement and "holds" are measured by the same simulator, streams and bounds as
``optimize`` uses (``fit`` streams, loop horizon, prediction bounds for the verification).

Actions (within the planning caps): seats on a shift pattern (temporary, or permanent where
temporaries are capped or work differently), agents taught the local language (from the
pool with the most untrained hours), agents certified one level up (lowest level, most
hours), the next chatbot level, triage on. An action starts at one unit; one that wins
twice in a row is tried next in doubled batches (up to 8), halved when it stops paying. The improvement of a city
is the drop of its *deficit*: the sum over its failing targets of the shortfall in units
of ``formulation.SCALE`` (0.01 of share, 0.1 h, one score point). Cities are independent,
so each failing city takes its best action in every round; once all hold, actions are
chosen across cities by national-score gain per yuan.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from optimizer.formulation import SCALE
from optimizer.inputs import PERMANENT, TEMPORARY, CityInputs, city_inputs, horizon_hours
from optimizer.loop import Iteration, PlanResult, fit_kpis, loop_scenario
from optimizer.parallel import pmap
from optimizer.plan import CityPlan, Plan, apply_plan, local_languages, plan_cost
from optimizer.verify import add_to_pool, assess_cities, national_check, verify_plan
from simulator.calibration import model_for
from simulator.scenario import Scenario

__all__ = ["deficit", "greedy"]

SCREEN = 2  # replications of a candidate's first look, with a shortlist (``greedy``)


def deficit(table: pd.DataFrame) -> float:
    """Sum of the failing targets' shortfalls, each in units of its ``SCALE``."""
    total = 0.0
    for r in table.itertuples():
        if r.ok:
            continue
        gap = (r.required - r.bound) if r.sense == ">=" else (r.bound - r.required)
        total += max(0.0, float(gap)) / SCALE[r.target.split(":")[0]]
    return total


class _Sim:
    """Simulate one city's plan on fit streams and check its targets (as the loop does).

    With ``screen`` > 0, ``look`` gives a plan's targets on its first ``screen`` replications
    only, a cheap first look to rank candidates by; a full simulation after it runs only the
    remaining replications (a replication's numbers do not depend on the others, so the frames
    are exactly those of one full run)."""

    def __init__(self, scenario: Scenario, n: int, seed: int, horizon_days: float | None, future: int | None,
                 pool: dict | None = None, workers: int = 1, memo: dict | None = None,
                 shift: Mapping[tuple[str, str], float] | None = None, screen: int = 0):
        self.sc = scenario
        self.sc_loop = loop_scenario(scenario, horizon_days)
        self.hours = horizon_hours(scenario)  # dialect coverage counts the full horizon's agent hours
        self.n, self.seed, self.future, self.workers, self.screen = n, seed, future, workers, screen
        self.scale = float(np.sqrt(min(1.0, self.sc_loop.horizon_s / scenario.horizon_s)))
        self.sat = model_for(scenario)
        self.pool: dict = {} if pool is None else pool
        self.memo: dict[tuple, tuple[pd.DataFrame, pd.DataFrame]] = {} if memo is None else memo
        self.pending: dict[tuple, dict] = {}  # (city, plan key) -> its variances, pooled once taken
        self.frames: dict[tuple, tuple] = {}  # (city, plan key) -> (scenario, per city, per channel, replications)
        self.looks: dict[tuple, pd.DataFrame] = {}  # (city, plan key) -> targets on the first replications
        self.shift = shift
        self.calls = 0.0  # city simulations of ``n`` replications (a look counts screen / n)
        self.wall = 0.0

    def _simulate(self, cps: list[CityPlan], n: int) -> None:
        """Frames of replications 0..n-1 of each plan in ``self.frames``, the missing ones
        simulated on ``workers`` processes."""
        todo = list({(cp.city, cp.key()): cp for cp in cps
                     if self.frames.get((cp.city, cp.key()), (0, 0, 0, 0))[3] < n}.values())
        jobs = []
        for cp in todo:
            known = self.frames.get((cp.city, cp.key()))
            a = known[0] if known else apply_plan(self.sc_loop, Plan.build(self.sc_loop, {cp.city: cp}))
            jobs.append((a, n, self.seed, [cp.city], known[3] if known else 0))
        for cp, job, (per_city, per_channel) in zip(todo, jobs, pmap(fit_kpis, jobs, self.workers)):
            known = self.frames.get((cp.city, cp.key()))
            if known:
                per_city = pd.concat([known[1], per_city], ignore_index=True)
                per_channel = pd.concat([known[2], per_channel], ignore_index=True)
            self.frames[(cp.city, cp.key())] = (job[0], per_city, per_channel, n)
            self.calls += (n - job[4]) / self.n

    def _assess(self, cp: CityPlan, n: int, pending: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
        a, per_city, per_channel, _ = self.frames[(cp.city, cp.key())]
        if n < self.n:
            per_city, per_channel = per_city[per_city["replication"] < n], per_channel[per_channel["replication"] < n]
        res = assess_cities(a, per_city, per_channel, self.sat, self.sc.planning.targets, [cp.city],
                            future=self.future, future_scale=self.scale, pool=self.pool, shift=self.shift,
                            pending=pending, hours=self.hours)
        return res.table, res.city_rep

    def look(self, cps: list[CityPlan]) -> list[pd.DataFrame]:
        """Each plan's target table on its first ``screen`` replications (the pool read only)."""
        t0 = time.perf_counter()
        self._simulate([cp for cp in cps if (cp.city, cp.key()) not in self.looks], self.screen)
        for cp in cps:
            if (cp.city, cp.key()) not in self.looks:
                self.looks[(cp.city, cp.key())] = self._assess(cp, self.screen, {})[0]
        self.wall += time.perf_counter() - t0
        return [self.looks[(cp.city, cp.key())] for cp in cps]

    def run_many(self, cps: list[CityPlan]) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
        """Each plan's target table and per-replication rows, judged as a candidate (the pooled
        variances read, not added to: ``commit``). Each plan is simulated once, the new ones on
        ``workers`` processes."""
        t0 = time.perf_counter()
        todo = list({(cp.city, cp.key()): cp for cp in cps if (cp.city, cp.key()) not in self.memo}.values())
        self._simulate(todo, self.n)
        for cp in todo:
            pending = self.pending[(cp.city, cp.key())] = {}
            self.memo[(cp.city, cp.key())] = self._assess(cp, self.n, pending)
            if not self.screen:  # no look will want its first replications (the yardstick's thousands)
                del self.frames[(cp.city, cp.key())]
        self.wall += time.perf_counter() - t0
        return [self.memo[(cp.city, cp.key())] for cp in cps]

    def commit(self, cp: CityPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A plan taken: its variances join the pool (the verdict is the candidate's, ``_bound``)."""
        # a plan that came with the memo was pooled by whoever simulated it
        add_to_pool(self.pool, self.pending.pop((cp.city, cp.key()), {}))
        return self.memo[(cp.city, cp.key())]


def _add(table: dict, key: str, n: int = 1, cap: int | None = None) -> dict:
    out = dict(table)
    out[key] = out.get(key, 0) + n if cap is None else min(cap, out.get(key, 0) + n)
    return out


def _moves(sc: Scenario, ci: CityInputs, cp: CityPlan, trained_total: int,
           batch: dict[str, int]) -> list[tuple[str, CityPlan]]:
    """The actions available to a city under the planning caps (``batch`` units of each)."""
    pl = sc.planning
    out: list[tuple[str, CityPlan]] = []
    room_t = None if pl.max_temporary_per_city is None else pl.max_temporary_per_city - sum(cp.temporaries.values())
    room_h = None if pl.max_hires_per_city is None else pl.max_hires_per_city - sum(cp.hires.values())
    differs = TEMPORARY in sc.employment and sc.employment[TEMPORARY] != sc.employment.get(PERMANENT)
    for pat in pl.shift_patterns:
        if room_t is None or room_t > 0:
            k = batch.get(f"temporary {pat}", 1) if room_t is None else min(room_t, batch.get(f"temporary {pat}", 1))
            out.append((f"temporary {pat}", _replace(cp, temporaries=_add(dict(cp.temporaries), pat, k))))
        if (room_h is None or room_h > 0) and (differs or not (room_t is None or room_t > 0)):
            k = batch.get(f"hire {pat}", 1) if room_h is None else min(room_h, batch.get(f"hire {pat}", 1))
            out.append((f"hire {pat}", _replace(cp, hires=_add(dict(cp.hires), pat, k))))
    room = None if pl.max_trained_per_month is None else pl.max_trained_per_month - trained_total
    langs = set(local_languages(sc, ci.city))
    pools = sorted(ci.pools, key=lambda p: -p.hours)
    if (room is None or room > 0) and langs:
        for p in pools:
            free = cp.heads(p.key, p.headcount) - cp.trained.get(p.key, 0)
            if not langs <= p.languages and free > 0:
                k = min(free, batch.get("train", 1), room if room is not None else free)
                out.append(("train", _replace(cp, trained=_add(dict(cp.trained), p.key, k))))
                break
    if room is None or room > 0:
        for p in sorted(pools, key=lambda p: p.certification):
            free = cp.heads(p.key, p.headcount) - cp.certified.get(p.key, 0)
            if p.certification < 5 and free > 0:
                k = min(free, batch.get("certify", 1), room if room is not None else free)
                out.append(("certify", _replace(cp, certified=_add(dict(cp.certified), p.key, k))))
                break
    now = cp.chatbot_penetration if cp.chatbot_penetration is not None else ci.penetration_now
    ups = sorted(lv.penetration for lv in pl.chatbot_levels if lv.penetration > now + 1e-9)
    if ups:
        out.append((f"chatbot {ups[0]:g}", _replace(cp, chatbot_penetration=ups[0])))
    if not (cp.triage or ci.triage_now):
        out.append(("triage on", _replace(cp, triage=True)))
    return out


def _replace(cp: CityPlan, **kw: object) -> CityPlan:
    return dataclasses.replace(cp, **kw)  # type: ignore[arg-type]


def greedy(
    scenario: Scenario,
    *,
    replications: int = 5,
    verify_replications: int | None = None,
    seed: int | None = None,
    loop_horizon_days: float | None = 7.0,
    max_steps: int = 400,
    verify: bool = True,
    log: Callable[[str], None] | None = None,
    start: Mapping[str, CityPlan] | None = None,
    pool: dict | None = None,
    workers: int = 1,
    max_cost: float | None = None,
    memo: dict | None = None,
    shift: Mapping[tuple[str, str], float] | None = None,
    shortlist: int = 0,
    inputs: Mapping[str, CityInputs] | None = None,
) -> PlanResult:
    """Marginal analysis on the simulator (see the module docstring); ``max_steps`` bounds the actions.

    ``start``: plans to start from instead of today's (the loop's repair of the cities its
    programme could not bring to their targets). ``pool``: the replication variances to pool
    with (the loop's, so that its repair accepts what the loop accepts). Each plan of a city is
    simulated once (``memo``: results to share between calls, keyed by city and plan): after an
    action, only that city's next actions are new (cities are independent under common random
    numbers), so a national round costs a few simulations. ``max_cost``: actions that would take
    the plan's monthly cost above it are not taken (the loop's exchange repairs within a saving).
    ``shift``: added to targets' simulated values (``assess_cities``; the loop's learnt horizon bias).
    ``shortlist`` > 0: a failing city simulates its candidates' first ``SCREEN`` replications, and
    only the ``shortlist`` best of them (deficit reduction per yuan) in full; 0: every candidate
    in full (the yardstick). ``inputs``: the cities' programme data where the caller has it (the
    loop's repair and exchange call greedy once per city and round; computed here otherwise)."""
    t0 = time.perf_counter()
    say = log or (lambda s: None)
    root = scenario.seed if seed is None else seed
    n_verify = verify_replications or scenario.replications
    sim = _Sim(scenario, replications, root, loop_horizon_days, n_verify, pool, workers, memo, shift,  # bounds for
               screen=min(SCREEN, replications - 1) if shortlist else 0)  # the verification to come
    known = inputs or {}
    inputs = {c: known[c] if c in known else city_inputs(scenario, c) for c in scenario.cities}
    plans = {c: CityPlan(c, chatbot_penetration=scenario.cities[c].chatbot_penetration,
                         triage=scenario.cities[c].routing.level >= 1) for c in scenario.cities}
    plans.update({c: cp for c, cp in (start or {}).items() if c in plans})
    sim.run_many([plans[c] for c in scenario.cities])
    first = [sim.commit(plans[c]) for c in scenario.cities]
    tables = {c: t for c, (t, _) in zip(scenario.cities, first)}
    reps = {c: r for c, (_, r) in zip(scenario.cities, first)}
    steps: list[Iteration] = []

    def trained_total() -> int:
        return sum(sum(p.trained.values()) + sum(p.certified.values()) for p in plans.values())

    batches: dict[str, dict[str, int]] = {c: {} for c in scenario.cities}
    last: dict[str, str] = {}

    def took(c: str, label: str, ratio: float, why: str) -> None:
        """Record an action; one that wins again is tried in doubled batches next (halved when it stalls)."""
        b = batches[c].get(label, 1)
        batches[c][label] = min(8, 2 * b) if (last.get(c) == label and ratio > 0) else max(1, b // 2)
        last[c] = label
        steps.append(Iteration(len(steps) + 1, _total(scenario, plans), 0.0, 0.0, (c,), (), note=f"{c}: {label}{why}"))

    def candidates(c: str) -> list[tuple[str, CityPlan]]:
        moves = _moves(scenario, inputs[c], plans[c], trained_total(), batches[c])
        if max_cost is not None:
            room = max_cost - _total(scenario, plans) + plan_cost(scenario, plans[c])
            moves = [(label, cand) for label, cand in moves if plan_cost(scenario, cand) <= room + 1e-6]
        return moves

    def shortlisted(c: str, moves: list[tuple[str, CityPlan]]) -> list[tuple[str, CityPlan]]:
        """A failing city's candidates worth a full simulation: the ``shortlist`` with the best
        deficit reduction per yuan on their first look (all of them without a shortlist)."""
        if not sim.screen or len(moves) <= shortlist:
            return moves
        base_cost = plan_cost(scenario, plans[c])
        now, *looks = sim.look([plans[c]] + [cand for _, cand in moves])
        ratio = [(deficit(now) - deficit(t)) / max(plan_cost(scenario, cand) - base_cost, 1.0)
                 for (_, cand), t in zip(moves, looks)]
        best = sorted(range(len(moves)), key=lambda i: -ratio[i])[:shortlist]
        return [moves[i] for i in sorted(best)]

    def best_move(c: str, moves: list[tuple[str, CityPlan]], gain: Callable[[pd.DataFrame, pd.DataFrame], float]):
        base_cost = plan_cost(scenario, plans[c])
        best = None
        for (label, cand), (t, r) in zip(moves, sim.run_many([cand for _, cand in moves])):
            dc = max(plan_cost(scenario, cand) - base_cost, 1.0)
            g = gain(t, r)
            if best is None or g / dc > best[0]:
                best = (g / dc, label, cand, t, r)
        return best

    while len(steps) < max_steps:
        failing = [c for c in scenario.cities if deficit(tables[c]) > 1e-12]
        if failing:
            if max_cost is None:  # every failing city's candidates in one batch for the workers: a city's
                # verdicts do not depend on the others' actions (its own pooled variances only)
                if sim.screen:
                    sim.look([cp for c in failing for cp in [plans[c], *(cand for _, cand in candidates(c))]])
                sim.run_many([cand for c in failing for _, cand in shortlisted(c, candidates(c))])
            moved = False
            for c in failing:
                d0 = deficit(tables[c])
                move = best_move(c, shortlisted(c, candidates(c)), lambda t, r, d0=d0: d0 - deficit(t))
                if move is None:
                    continue
                ratio, label, plans[c], _, _ = move
                tables[c], reps[c] = sim.commit(plans[c])
                moved = True
                took(c, label, ratio, "")
            say(f"greedy: {len(steps)} actions, {len(failing)} cities short, {_total(scenario, plans):,.0f} yuan/month")
            if not moved:  # every failing city is at its caps
                break
            continue
        nat_table, (now, _) = national_check(pd.concat(reps.values(), ignore_index=True),
                                             scenario.planning.targets, future=sim.future,
                                             future_scale=sim.scale, pool=dict(sim.pool))
        if nat_table.empty or bool(nat_table["ok"].all()):
            break
        if max_cost is None:
            sim.run_many([cand for c in scenario.cities for _, cand in candidates(c)])
        best = None
        for c in scenario.cities:
            def nat_gain(t, r, c=c, now=now):
                if deficit(t) > 1e-12:  # an action may not break the city's own targets
                    return -np.inf
                rows = pd.concat([reps[k] for k in scenario.cities if k != c] + [r], ignore_index=True)
                return float(national_check(rows, scenario.planning.targets)[1][0] - now)
            move = best_move(c, candidates(c), nat_gain)
            if move is not None and (best is None or move[0] > best[0][0]):
                best = (move, c)
        if best is None or not best[0][0] > 0:  # no action raises the national score
            break
        (ratio, label, plans[best[1]], _, _), c = best
        tables[c], reps[c] = sim.commit(plans[c])
        took(c, label, ratio, " (national)")
        if len(steps) % 10 == 0:
            say(f"greedy: {len(steps)} actions, national score {now:.2f}, {_total(scenario, plans):,.0f} yuan/month")
    plan = Plan.build(scenario, plans, {"greedy": "marginal analysis on the simulator (fit streams)"})
    nat = national_check(pd.concat(reps.values(), ignore_index=True), scenario.planning.targets,
                         future=sim.future, future_scale=sim.scale, pool=dict(sim.pool))[0]
    table = pd.concat([t for t in list(tables.values()) + [nat] if len(t)], ignore_index=True).astype({"ok": bool})
    ver = verify_plan(plan, scenario, n_verify, root) if verify and table["ok"].all() else None
    ok = bool(table["ok"].all()) and (ver is None or ver.ok)
    status = ("verified" if ver is not None and ver.ok else "fit") if ok else "unverified"
    timings = {"simulate_s": sim.wall, "simulations": float(sim.calls), "total_s": time.perf_counter() - t0}
    return PlanResult(plan, status, steps, ver, table, {}, timings)


def _total(sc: Scenario, plans: dict[str, CityPlan]) -> float:
    return float(sum(plan_cost(sc, cp) for cp in plans.values()))
