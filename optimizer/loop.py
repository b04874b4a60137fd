"""Stage 6-7 of 7: ``optimize(scenario) -> PlanResult``, the simulation-optimisation loop.

1. Inputs per city (``inputs``); the baseline simulated on ``purpose="fit"`` streams gives
   the first satisfaction linearisation (with the model's own late share), efficiency and
   channel miss ratios (``anchor.make_state``).
2. Solve the programme (``coordinate.solve_plan``; cities coupled by the national score, the
   training capacity and the budget are coordinated by prices, ``decompose``).
3. Simulate the plan on ``fit`` streams, only in the cities whose plan changed (cities are
   independent; common random numbers give unchanged cities the same numbers; while some
   city fails, those that passed keep their plans, ``_Loop.frozen``), on a horizon
   cut to the warm-up and ``loop_horizon_days`` measured days (outages folded in, ``loop_scenario``).
4. Check every target with a prediction bound: the bound the verification will clear at
   ``targets.confidence`` (replication variance pooled over the simulated plans).
5. Learn from the simulated point: corrected table entries at it (``anchor.make_state``) and
   a new satisfaction expansion there; a plan that failed and comes back is cut off by
   tightening that city's corrections. Back to 2 until every target holds (or the
   programme is infeasible: then the soft programme's best plan is simulated and
   ``Infeasible`` raised with the binding targets; or ``max_iterations`` ends it).
6. Keep, per city, the cheapest plan that passed (the incumbent), then *polish*: drop one
   unit at a time while the simulation still passes every target (the model's remaining
   pessimism), within ``polish_sims`` candidate simulations.
7. ``verify_plan`` on ``purpose="verify"`` streams over the full horizon; if a target fails
   there, learn the horizon's difference or double the loop's replications, tighten, and go
   on from the plan (``_learn_from_verification``, ``verify_rounds``).

This is the LP-plus-simulation cutting-plane scheme of Atlason, Epelman and Henderson
(2004) with corrected tables in place of simulated subgradients; ``PlanResult.iterations``
records each pass: cost, solver and simulator time, failing targets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from optimizer.anchor import CityState, ModelKpis, SimPoint, fit_efficiency, make_anchor, make_state
from optimizer.coordinate import Coordinated, evaluate_city, solve_plan
from optimizer.inputs import CityInputs, city_inputs, horizon_hours
from optimizer.parallel import pmap, share, split
from optimizer.plan import CityPlan, Plan, apply_plan, plan_cost
from optimizer.solve import Infeasible
from optimizer.verify import (
    COLUMNS,
    GROUPINGS,
    Assessment,
    Verification,
    add_to_pool,
    assess_cities,
    in_run_order,
    national_check,
    verify_plan,
)
from simulator.calibration import model_for
from simulator.kpi import replicate
from simulator.satisfaction import SatisfactionModel
from simulator.scenario import Scenario

__all__ = ["Iteration", "PlanResult", "loop_scenario", "optimize"]

REPAIRS = 3  # rounds of programme then repair (after a repair, the programme buys what the national score lacks)
STALL = 2  # iterations without fewer failing targets before the failing cities go to the repair
NATIONAL_STEP = 0.05  # national score points an iteration must gain to count as progress
NATIONAL_SHARE = 0.5  # volume share the unfrozen cities need to carry the national row in a solve
# the national phase asks the model for at most 1 / MIN_NAT_RATIO times the shortfall: on March 2025
# a clip at 0.1 asked ten times a 0.3-point shortfall (+4.9 M yuan a month), one at 0.25 four
# times a 0.38-point one (+4.1 M for +0.71 points: the simulation gave 0.47 of the model's gain)
MIN_NAT_RATIO = 0.5
NODE_LIMIT = 200  # branch-and-bound nodes of a city option's programme before its incumbent is taken
EXCHANGE_STEPS = 6  # greedy actions an exchange may take to repair a city after dropping a seat
SHORTLIST = 4  # candidates of a failing city the repair simulates in full after a first look at all


@dataclass(frozen=True)
class Iteration:
    """One pass of the loop."""

    k: int
    cost: float
    solve_s: float
    simulate_s: float
    simulated: tuple[str, ...]
    failing: tuple[str, ...]  # "city:target" failing in the fit simulation
    bound: float | None = None  # lower bound on the programme's optimum (decomposition)
    note: str = ""


@dataclass
class PlanResult:
    """A plan, how the loop reached it and how it fared on fresh streams."""

    plan: Plan
    status: str  # "verified" | "unverified" | "soft"
    iterations: list[Iteration]
    verification: Verification | None
    fit: pd.DataFrame  # the last fit-stream assessment (targets table)
    model: dict[str, ModelKpis]
    timings: dict[str, float] = field(default_factory=dict)
    binding: list[dict] = field(default_factory=list)

    @property
    def cost(self) -> float:
        return self.plan.cost

    def iterations_frame(self) -> pd.DataFrame:
        return pd.DataFrame([
            {"iteration": i.k, "cost_per_month": i.cost, "solve_s": i.solve_s, "simulate_s": i.simulate_s,
             "simulated": len(i.simulated), "failing": len(i.failing), "bound": i.bound,
             "failing_targets": "; ".join(i.failing), "note": i.note}
            for i in self.iterations
        ])


def fit_kpis(args: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit-stream KPI frames of some cities (a worker's share of a loop simulation): arguments
    ``(scenario, n, seed, cities)``, or ``(..., start)`` for replications ``start``..n-1 only."""
    scenario, n, seed, cities, *start = args
    reps = replicate(scenario, n, seed=seed, purpose="fit", cities=cities, groupings=GROUPINGS,
                     start=start[0] if start else 0)
    return reps.kpis(("city",)), reps.kpis(("city", "channel"))


def inputs_of(args: tuple[Scenario, list[str]]) -> list[CityInputs]:
    """Some cities' programme data (a worker's share of the loop's inputs: their Erlang tables
    took 9 s of March 2025's run in one process, with the workers idle)."""
    scenario, cities = args
    return [city_inputs(scenario, c) for c in cities]


def refresh(args: tuple) -> tuple[CityState, ModelKpis]:
    """A simulated city's new state and model prediction (a worker's job: the model's evaluation
    and the satisfaction expansion took a fifth of each loop simulation's time in one process,
    with the workers idle). Arguments ``(inputs, plan, simulated point, planning, satisfaction
    model, solver, corrected)``: the model's evaluation at the simulated plan, then the anchor
    and corrections there."""
    ci, cp, sim, pl, sat, solver, corrected = args
    mm = float(sim.kpis.get("mismatch_rate", np.nan))
    lang = sum(ci.languages.values())
    state = CityState(mm_factor=1.0 + lang * (mm if np.isfinite(mm) else 0.0) * (ci.mismatch_handle - 1.0))
    state = replace(state, efficiency=fit_efficiency(ci, cp, _option_key(ci, cp), state, sim))
    model = evaluate_city(ci, state, pl, cp, solver=solver)
    anchor = make_anchor(ci, cp, model, sim, sat, corrected=corrected)
    return make_state(ci, anchor, model, sim, corrected=corrected, mm_factor=state.mm_factor,
                      efficiency=state.efficiency), model


def loop_scenario(scenario: Scenario, horizon_days: float | None) -> Scenario:
    """The scenario the loop simulates: the warm-up, then ``horizon_days`` measured days.

    The days are counted after the warm-up, so that a 7-day loop measures every weekday once:
    counted with it, March 2025's loop (1 March, a Saturday, is warm-up) measured no Saturday,
    read the month's weekends wrong, and on the same seed took 566 s to a plan of 7,686,902 yuan
    a month (two verification rounds) against 459 s and 7,410,723 (one).

    A cut horizon would lose the events after it and overweight those at its start, so the
    cut scenario keeps the whole horizon's expected shares: each outage is folded into the
    window at the same weekday and hour (whole weeks back) with its loss probability scaled by
    ``window / horizon``, and each initial backlog is scaled by the same factor (an
    approximation: the expected lost and backlog shares match, their timing does not).
    """
    h = math.inf if horizon_days is None else scenario.warmup_h / 24.0 + max(horizon_days, 1.0)
    if h >= scenario.horizon_days:
        return scenario
    ratio = (h * 24.0 - scenario.warmup_h) / (scenario.horizon_days * 24.0 - scenario.warmup_h)
    outages = []
    for o in scenario.outages:
        start = o.start_h
        while start + o.duration_h > h * 24.0 and start >= 168.0:
            start -= 168.0
        if start + o.duration_h <= h * 24.0:
            outages.append(o.model_copy(update={"start_h": start,
                                                "loss_probability": min(1.0, o.loss_probability * ratio)}))
    data = scenario.model_dump()
    data["horizon_days"] = h
    data["outages"] = [o.model_dump() for o in outages]
    for c in data["cities"].values():
        c["initial_backlog"] = {k: round(v * ratio) for k, v in c["initial_backlog"].items()}
    return Scenario.model_validate(data)


class _Loop:
    """State of one optimisation: inputs, corrections, the cache of simulated plans."""

    def __init__(self, scenario: Scenario, *, solver: str, loop_replications: int, seed: int,
                 loop_horizon_days: float | None, solve_kw: dict, log: Callable[[str], None],
                 future: int | None = None, workers: int = 1) -> None:
        self.sc = scenario
        self.workers = workers
        self.future = future
        self.sc_loop = loop_scenario(scenario, loop_horizon_days)
        self.horizon_days = loop_horizon_days
        self.hours = horizon_hours(scenario)  # dialect coverage counts the full horizon's agent hours
        # a verification over the full horizon averages over more days: its replications vary less
        self.future_scale = float(np.sqrt(min(1.0, self.sc_loop.horizon_s / scenario.horizon_s)))
        self.solver, self.n, self.seed, self.solve_kw, self.log = solver, loop_replications, seed, solve_kw, log
        self.pl = scenario.planning
        self.sat: SatisfactionModel = model_for(scenario)
        groups = split(list(scenario.cities), lambda c: scenario.cities[c].tickets_per_day, workers)
        done = {ci.city: ci for part in pmap(inputs_of, [(scenario, g) for g in groups], workers) for ci in part}
        # every pricing pass and refresh sends a city its inputs: by name, after the first time
        self.inputs: dict[str, CityInputs] = {c: share(done[c]) if workers > 1 else done[c] for c in scenario.cities}
        self.states: dict[str, CityState] = {}
        self.points: dict[str, SimPoint] = {}
        self.rep_rows: dict[str, pd.DataFrame] = {}  # city -> per replication offered, score
        self.table: dict[str, pd.DataFrame] = {}  # city -> target rows
        self.plans: dict[str, CityPlan] = {}
        self.simulated_key: dict[str, tuple] = {}
        self.failed: dict[str, set] = {}  # city -> plan keys that failed
        self.model: dict[str, ModelKpis] = {}
        self.national: tuple[float, float] | None = None
        self.cache: dict = {}  # pricing results per (city, state, prices)
        self.pool: dict = {}  # replication variance per (city, target), pooled over simulated plans
        self.seen: dict[str, dict] = {}  # city -> plan key -> (passed, cost, plan, rep rows, table)
        self._nat_key: tuple | None = None
        self.owned: set[str] = set()  # cities the repair planned: the programme leaves them to it
        self.nat_ratio = 1.0  # simulated over modelled national gain, in the national phase
        self.nat_bias = 0.0  # model over simulated national score at the simulated plans
        self.shift: dict[tuple[str, str], float] = {}  # (city, target) -> full horizon minus loop horizon
        self.nat_shift = 0.0  # the same for the national score
        self.sim_s = 0.0  # seconds simulating (loop) and verifying
        self.sims = 0.0  # city simulations (one city, the loop's replications): the descent's budget
        self.pending: dict[tuple, dict] = {}  # (city, plan key) -> a candidate's variances, pooled once kept
        self.ahead: dict[tuple, tuple] = {}  # (city, plan key) -> frames simulated ahead (``look_ahead``)
        self.verify_s = 0.0

    # -- simulation -------------------------------------------------------------------------
    def simulate(self, plans: Mapping[str, CityPlan], cities: list[str], corrected: bool,
                 record: bool = True) -> float:
        """Simulate ``cities`` under ``plans`` (fit streams) and refresh their anchors.

        ``record=False``: a candidate's look; its variances join the pool only if it is kept
        (``commit``), so rejected candidates do not move the bounds of the plans after them."""
        if not cities:
            return 0.0
        t0 = time.perf_counter()
        self.sims += len(cities)
        pending: dict = {}
        ahead = self.ahead.pop((cities[0], plans[cities[0]].key()), None) if len(cities) == 1 else None
        if ahead is not None:
            applied, per_city, per_channel = ahead
        else:
            applied, per_city, per_channel = self._frames({c: plans[c] for c in cities}, cities)
        a: Assessment = assess_cities(applied, per_city, per_channel, self.sat, self.pl.targets, cities,
                                      future=self.future, future_scale=self.future_scale,
                                      pool=self.pool if corrected else None, shift=self.shift,
                                      pending=None if record else pending, hours=self.hours)
        wall = time.perf_counter() - t0
        if not record:
            for c in cities:
                self.pending[(c, plans[c].key())] = {k: v for k, v in pending.items() if k[0] == c}
        for c in cities:
            self.points[c] = a.points[c]
            self.rep_rows[c] = a.city_rep[a.city_rep["city"] == c]
            self.table[c] = a.table[a.table["city"] == c]
            self.simulated_key[c] = plans[c].key()
            if corrected:
                self.seen.setdefault(c, {})[plans[c].key()] = (
                    bool(self.table[c]["ok"].all()), plan_cost(self.sc, plans[c]), plans[c],
                    self.rep_rows[c], self.table[c])
        jobs = [(self.inputs[c], plans[c], self.points[c], self.pl, self.sat, self.solver, corrected) for c in cities]
        for c, (state, model) in zip(cities, pmap(refresh, jobs, self.workers)):
            self.states[c], self.model[c] = state, model
        return wall

    def _frames(self, plans: Mapping[str, CityPlan], cities: list[str]) -> tuple[Scenario, pd.DataFrame, pd.DataFrame]:
        """The scenario under ``plans`` and its fit-stream KPI frames of ``cities`` (on the workers)."""
        applied = apply_plan(self.sc_loop, Plan.build(self.sc_loop, dict(plans)))
        groups = split(cities, lambda c: self.sc.cities[c].tickets_per_day, self.workers)
        out = pmap(fit_kpis, [(applied, self.n, self.seed, g) for g in groups], self.workers)
        # rows in one run's order, the same whatever the workers
        return (applied, in_run_order(pd.concat([o[0] for o in out]), applied),
                in_run_order(pd.concat([o[1] for o in out]), applied))

    def look_ahead(self, c: str, cands: list[CityPlan]) -> float:
        """Simulate candidate plans of city ``c`` side by side (one per worker) and keep their
        frames until ``simulate`` asks for one of them: a search that tries candidates one by one
        keeps every worker busy, and each candidate is judged when its turn comes, exactly as if
        simulated then (common random numbers: a plan's frames do not depend on when it runs)."""
        todo = [cp for cp in cands if cp.key() not in self.seen.get(c, {}) and (c, cp.key()) not in self.ahead]
        if len(todo) < 2:
            return 0.0  # nothing to run side by side: ``simulate`` runs it when asked
        t0 = time.perf_counter()
        applied = [apply_plan(self.sc_loop, Plan.build(self.sc_loop, {c: cp})) for cp in todo]
        out = pmap(fit_kpis, [(a, self.n, self.seed, [c]) for a in applied], self.workers)
        for cp, a, (per_city, per_channel) in zip(todo, applied, out):
            self.ahead[(c, cp.key())] = (a, in_run_order(per_city, a), in_run_order(per_channel, a))
        return time.perf_counter() - t0

    def commit(self, c: str, cp: CityPlan) -> None:
        """A candidate kept: its variances join the pool (its verdict stands, ``verify._bound``)."""
        add_to_pool(self.pool, self.pending.pop((c, cp.key()), {}))

    def incumbent(self) -> dict[str, CityPlan] | None:
        """Each city's cheapest plan that passed in simulation, if together they pass nationally.

        Common random numbers make the cities' replications of different iterations
        combinable: replication r of a city is the same whatever the other cities do.
        """
        best = {}
        for c in self.sc.cities:
            ok = [v for v in self.seen.get(c, {}).values() if v[0]]
            if not ok:
                return None
            best[c] = min(ok, key=lambda v: v[1])
        rows = pd.concat([v[3] for v in best.values()], ignore_index=True)
        nat, _ = national_check(rows, self.pl.targets, future=self.future, future_scale=self.future_scale,
                                shift=self.nat_shift)
        if len(nat) and not bool(nat["ok"].all()):
            return None
        return {c: v[2] for c, v in best.items()}

    def frozen(self, every: bool = False) -> dict[str, CityPlan]:
        """Plans kept as they are in the next solve: those that passed in simulation, while some
        city still fails (the programme then works on the failing cities only, against the
        passing cities' simulated scores). Once every city passes, nothing is frozen (unless
        ``every``), so a failing national target may draw on any city. The repair's cities stay
        with the repair (the programme's model of them is what failed)."""
        if not self.plans:
            return {}
        passing = {c: cp for c, cp in self.plans.items()
                   if c in self.table and bool(self.table[c]["ok"].all()) and self.simulated_key.get(c) == cp.key()}
        owned = {c: self.plans[c] for c in self.owned}
        return {**passing, **owned} if every or len(passing) < len(self.sc.cities) else owned

    def use(self, plans: Mapping[str, CityPlan]) -> None:
        """Make ``plans`` (all simulated before) the current ones, with their simulated rows."""
        for c, cp in plans.items():
            _, _, _, rows, table = self.seen[c][cp.key()]
            self.rep_rows[c], self.table[c] = rows, table
        self.plans = dict(plans)

    def national_check(self) -> pd.DataFrame:
        rows = pd.concat(list(self.rep_rows.values()), ignore_index=True)
        table, self.national = national_check(rows, self.pl.targets, future=self.future,
                                              future_scale=self.future_scale, pool=self._nat_pool(),
                                              shift=self.nat_shift)
        return table

    def _nat_pool(self) -> dict | None:
        """Pool the national variance once per distinct set of plans (not per look at it)."""
        key = tuple(sorted(self.simulated_key.items()))
        if not self.plans or key == self._nat_key:
            return {k: v for k, v in self.pool.items()} if self.plans else None
        self._nat_key = key
        return self.pool

    def assessment(self) -> pd.DataFrame:
        parts = [t for t in list(self.table.values()) + [self.national_check()] if len(t)]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(COLUMNS))
        return table.astype({"ok": bool})

    # -- the loop ---------------------------------------------------------------------------
    def tighten(self, c: str, failing: pd.DataFrame) -> None:
        """A plan failed again in city ``c``: move its corrections against the failing targets.

        Efficiency drops 5 % (more agents needed everywhere), the failing channels' miss
        ratios and the response ratio grow 25 %, a failing score anchor drops a quarter point.
        """
        st = self.states[c]
        miss = dict(st.miss_ratio)
        resp = st.response_ratio
        anchor = st.anchor
        for t in failing["target"]:
            if t.startswith("channel_share:"):
                ch = t.split(":", 1)[1]
                miss[ch] = miss.get(ch, 1.0) * 1.25
            elif t == "mean_first_response":
                resp *= 1.25
            elif t == "city_score" and anchor is not None:
                anchor = replace(anchor, score=anchor.score - 0.25)
        self.states[c] = replace(st, efficiency=st.efficiency * 0.95, miss_ratio=miss, response_ratio=resp,
                                 anchor=anchor)


def optimize(
    scenario: Scenario,
    *,
    solver: str = "highs",
    loop_replications: int = 5,
    verify_replications: int | None = None,
    seed: int | None = None,
    max_iterations: int = 12,
    loop_horizon_days: float | None = 7.0,
    verify: bool = True,
    verify_rounds: int = 3,
    polish_sims: int = 40,
    repair: bool = True,
    workers: int = 2,
    time_limit_s: float | None = 60.0,
    node_limit: int | None = NODE_LIMIT,
    gap_rel: float = 1e-3,
    log: Callable[[str], None] | None = None,
) -> PlanResult:
    """Plan at least cost (or, with a budget, at most budget and best national score).

    Parameters
    ----------
    loop_replications, verify_replications : int
        Replications per simulated plan in the loop (``fit`` streams, the warm-up and then
        ``loop_horizon_days`` measured days) and in the verification (``verify`` streams, full horizon;
        default ``scenario.replications``). The loop accepts a plan when the prediction
        bound says the verification's bounds will clear the targets.
    verify_rounds : int
        If verification fails, the loop learns from it (``_learn_from_verification``: the
        month's difference from the loop's week, or twice the replications), goes on from the
        plan and verifies again, at most this many rounds in all (polish only in the first).
    polish_sims : int
        City simulations for a simulation-checked descent from the loop's plan (one unit at a
        time, largest saving first, kept while every target holds on the fit streams); as many
        for the exchange that follows (greedy's simulations included), half for the polish
        after it; 0: none. A count, not seconds, so the plan is the same on any machine (on
        March 2025, 40 took 30 s where the 45-s budget they replace was spent).
    repair : bool
        Repair the cities the programme leaves failing by greedy marginal analysis from its
        plan (``_repair``); False: the loop's plan as it is.
    workers : int
        Processes for the simulations (the loop's cities, the verification's replications)
        and the cities' programmes (1: all in this process). Results do not depend on it.
    node_limit, time_limit_s, gap_rel
        Limits of each city option's programme: it stops at the 0.1 % gap, or at its first
        incumbent after ``node_limit`` branch-and-bound nodes (a quarter of that when priced;
        HiGHS), or after ``time_limit_s`` seconds (a guard). An unproven incumbent is accepted:
        the programme's plan is a candidate the simulation checks, and the gap is far below the
        simulation's noise. A node limit, unlike a time limit, gives the same plan on any
        machine at any load (on March 2025's first solve: 0.09 % dearer than a 3-s limit, as
        fast; a run's path used to differ between machines).

    Raises
    ------
    Infeasible
        When no plan meets the targets; ``.binding`` names the targets and the best values
        reachable, ``.best`` is the soft programme's plan (a ``PlanResult``, simulated).
    """
    t_start = time.perf_counter()
    say = log or (lambda s: None)
    root = scenario.seed if seed is None else seed
    n_verify = verify_replications or scenario.replications
    solve_kw = {"time_limit_s": time_limit_s, "gap_rel": gap_rel, "node_limit": node_limit}
    L = _Loop(scenario, solver=solver, loop_replications=loop_replications, seed=root,
              loop_horizon_days=loop_horizon_days, solve_kw={**solve_kw, "workers": workers}, log=say,
              future=n_verify if verify else None, workers=workers)
    t_inputs = time.perf_counter() - t_start
    base = {c: CityPlan(c) for c in scenario.cities}
    L.sim_s += L.simulate(base, list(scenario.cities), corrected=False)
    say(f"baseline: {int((~L.assessment()['ok']).sum())} targets fail in simulation")
    iterations: list[Iteration] = []
    ver = None
    for round_ in range(max(1, verify_rounds)):
        if round_:
            say(f"verification failed; {_learn_from_verification(L, ver)}")
        for _ in range(REPAIRS):  # the programme, then greedy repair of the cities it left failing
            _iterate(L, iterations, max_iterations, t_start)
            if repair:
                _repair(L, iterations)
            if not repair or bool(L.assessment()["ok"].all()):
                break
        if polish_sims > 0 and not round_ and L.plans and bool(L.assessment()["ok"].all()):
            t_pol = time.perf_counter()
            kept = _polish(L, polish_sims, say)
            iterations.append(Iteration(len(iterations) + 1, sum(plan_cost(scenario, cp) for cp in L.plans.values()),
                                        0.0, time.perf_counter() - t_pol, (), (), None,
                                        f"polish: {kept} one-unit reductions kept (simulation-checked)"))
            t_pol = time.perf_counter()
            traded = _exchange(L, polish_sims, say)
            # greedy's repair can overshoot: drop what the exchanged plans do not need
            kept = _polish(L, polish_sims // 2, say) if traded else 0
            iterations.append(Iteration(len(iterations) + 1, sum(plan_cost(scenario, cp) for cp in L.plans.values()),
                                        0.0, time.perf_counter() - t_pol, (), (), None,
                                        f"exchange: {traded} seats traded for greedy's cheaper actions, "
                                        f"then {kept} one-unit reductions"))
        plan = Plan.build(scenario, L.plans or base, assumptions=_assumptions(L))
        if not verify or not L.assessment()["ok"].all():
            break
        t_ver = time.perf_counter()
        ver = verify_plan(plan, scenario, n_verify, root, model=L.sat, workers=workers)
        L.verify_s += time.perf_counter() - t_ver
        failing = "; ".join(f"{r.city}:{r.target} {r.mean:.4g} (bound {r.bound:.4g}, needs {r.required:.4g})"
                            for r in ver.failing.itertuples())
        say(f"verification ({n_verify} replications, fresh streams): "
            f"{'all targets hold' if ver.ok else f'{len(ver.failing)} targets fail: {failing}'}")
        if ver.ok:
            break
    table = L.assessment()
    status = "verified" if (table["ok"].all() and (ver is not None and ver.ok)) else "unverified"
    if not verify and table["ok"].all():
        status = "fit"
    timings = {"inputs_s": t_inputs, "simulate_s": L.sim_s, "solve_s": sum(i.solve_s for i in iterations),
               "verify_s": L.verify_s, "total_s": time.perf_counter() - t_start}
    return PlanResult(plan, status, iterations, ver, table, dict(L.model), timings)


def _learn_from_verification(L: _Loop, ver: Verification) -> str:
    """A verification failed: learn from it, simulate today's plans again, and say what was learnt.

    A failing target whose verification mean is worse than the loop's mean for the same plan
    shows a difference of horizons, not noise: the loop simulates a week, folded, of the month
    (on March 2025 Taiyuan's chat share was 0.837 in the week and 0.804 in the month). That
    difference is added to the target's simulated values from now on (``L.shift``; the national
    score's to its replications, ``L.nat_shift``, and the programme's national row asks for that
    much more). A failing
    target the loop saw no better is noise the loop tuned its plan to: the fit streams get twice
    the replications. The loop goes on from today's plans (starting over from the programme
    would throw away the national phase's work), with the failing cities' corrections
    tightened; no polish follows.
    """
    learnt, noise = [], False
    for r in ver.failing.itertuples():
        if r.city == "national":
            d = float(r.mean - L.national[0]) if L.national is not None else 0.0
        else:
            fit = L.table.get(r.city)
            fit = fit[fit["target"] == r.target] if fit is not None else None
            d = float(r.mean - fit["mean"].iloc[0]) if fit is not None and len(fit) else 0.0
        if not (d < 0.0 if r.sense == ">=" else d > 0.0):
            noise = True
        elif r.city == "national":
            L.nat_shift += d
            learnt.append(f"national score {d:+.4g}")
        else:
            L.shift[(r.city, r.target)] = L.shift.get((r.city, r.target), 0.0) + d
            learnt.append(f"{r.city}:{r.target} {d:+.4g}")
    if noise:
        L.n *= 2
    L.simulated_key.clear()
    L.seen.clear()
    L.sim_s += L.simulate(L.plans, list(L.sc.cities), corrected=True)
    for city, rows in ver.failing.groupby("city"):
        if city in L.states:  # after the simulation, which re-anchors every city
            L.tighten(city, rows)
    return (f"the month differs from the loop's week in {', '.join(learnt)}; " if learnt else "") + \
        f"today's plans simulated again ({L.n} replications), the loop goes on"


def _iterate(L: _Loop, iterations: list[Iteration], max_iterations: int, t_start: float) -> None:
    """Solve, simulate the changed cities, correct; until the fit simulation passes."""
    say = L.log
    k0 = len(iterations)
    best, stalled = (10**9, 0.0), 0
    for k in range(k0 + 1, k0 + max_iterations + 1):
        nat_off = (L.national[0] - L.national[1]) if (k > 1 and L.national) else 0.0
        try:
            solved, national_phase = _solve(L, nat_off)
        except Infeasible as exc:
            raise _infeasible(L, nat_off, iterations, exc, t_start) from None
        plans = solved.plans
        changed = [c for c in L.sc.cities if plans[c].key() != L.simulated_key.get(c)]
        if national_phase and not changed and solved.national is not None and _national_short(L) > 0 \
                and solved.national - (L.national[0] - L.nat_shift) > L.nat_bias + 1e-6:
            # the model scores today's plans above the simulation (its volume weights differ): raise the row
            L.nat_bias = solved.national - (L.national[0] - L.nat_shift)
            iterations.append(Iteration(k, solved.cost, solved.wall_s, 0.0, (), (), solved.bound,
                                        f"national row raised by {L.nat_bias:.2f} (model above simulation)"))
            continue
        known = [c for c in changed if plans[c].key() in L.seen.get(c, {}) and L.seen[c][plans[c].key()][0]]
        if known and len(known) == len(changed):  # only plans that already passed: nothing new to learn
            iterations.append(Iteration(k, solved.cost, solved.wall_s, 0.0, (), (), solved.bound,
                                        "plans already simulated"))
            L.use({**L.plans, **{c: plans[c] for c in known}})
            _finish(L, say)
            return
        repeat = [c for c in changed if plans[c].key() in L.failed.get(c, set())]
        if repeat:  # a plan that already failed: tighten there and solve again, no simulation
            for c in repeat:
                L.tighten(c, L.table[c][~L.table[c]["ok"]])
            iterations.append(Iteration(k, solved.cost, solved.wall_s, 0.0, (), (), solved.bound,
                                        f"repeat of a failed plan in {', '.join(repeat)}: tightened"))
            continue
        before = L.national[0] if L.national is not None else None
        sim = L.simulate(plans, changed, corrected=True)
        L.sim_s += sim
        L.plans = dict(plans)
        table = L.assessment()
        if national_phase and solved.national is not None and before is not None and L.national is not None:
            promised, got = solved.national - L.nat_bias - before, L.national[0] - before
            if promised > 1e-6:  # the national row's correction (never above 1: model gains are not discounted)
                L.nat_ratio = float(np.clip(got / promised, MIN_NAT_RATIO, 1.0))
        bad = table[~table["ok"]]
        for c in set(bad["city"]) - {"national"}:
            L.failed.setdefault(c, set()).add(plans[c].key())
        fails = tuple(f"{r.city}:{r.target}" for r in bad.itertuples())
        iterations.append(Iteration(k, solved.cost, solved.wall_s, sim, tuple(changed), fails, solved.bound,
                                    "" if solved.proven else "some city plans are unproven incumbents (node limit)"))
        nat = "" if L.national is None else f", national score {L.national[0]:.2f} (bound {L.national[1]:.2f})"
        say(f"iteration {k}: cost {solved.cost:,.0f}/month, {len(changed)} cities simulated, "
            f"{len(fails)} targets fail{nat}")
        if not fails or not changed:
            break
        # progress: fewer failing targets, or a national shortfall smaller by NATIONAL_STEP points
        # (on March 2025 the national phase bought 1.3 million yuan a month for hundredths)
        progress = (len(fails), _national_short(L))
        better = progress[0] < best[0] or (progress[0] == best[0] and progress[1] < best[1] - NATIONAL_STEP)
        stalled = 0 if better else stalled + 1
        best = min(best, progress) if better else best
        if stalled >= STALL:
            say(f"no progress in {STALL} iterations: the failing cities go to the repair")
            break
    _finish(L, say)


def _solve(L: _Loop, nat_off: float) -> tuple[Coordinated, bool]:
    """The programme for the failing cities, the passing ones frozen; or, once every city
    passes and only the national score falls short, national score bought on top of them
    (the *national phase*: the second value returned says which it was).

    While cities fail, the national score stays in the solve only if the unfrozen cities
    carry at least ``NATIONAL_SHARE`` of the volume: with fewer it would fall on the few
    failing cities alone (on March 2025 one small city was asked to lift the national score by
    itself: 3.3 million yuan a month). Once every city passes, each passing plan is a floor
    (the programme adds to plans that hold their cities' targets, never swaps them: re-solving
    from scratch traded one city's margin for another's and regressed from 5 failing targets
    to 20), and the cities the repair planned stay as they are (their models are what failed).
    If the frozen solve is infeasible (a training or budget cap shared with the frozen
    cities), every city is solved again with its passing plan as a floor.
    """
    # the model predicts the loop's week; the month scores nat_shift off it
    kw = {"solver": L.solver, "national_offset": nat_off - L.nat_shift, "cache": L.cache, **L.solve_kw}
    known = L.frozen(every=True)
    if len(known) == len(L.sc.cities) and L.plans:  # every city passes (or is the repair's)
        floors = {c: cp for c, cp in known.items() if c not in L.owned}
        kw["national_offset"] += L.nat_bias  # the model's score at today's plans is sim + bias
        if L.national is not None and L.pl.targets.national_score_min is not None and L.nat_ratio < 1.0:
            # the simulation gave nat_ratio of the gain the model promised: ask the model for more,
            # as far as the model can go (beyond that, the plain target is the last word)
            short = max(0.0, L.pl.targets.national_score_min + nat_off - L.national[0])
            scaled = kw["national_offset"] + short * (1.0 / L.nat_ratio - 1.0)
            try:
                return solve_plan(L.inputs, L.states, L.pl, frozen=known, floors=floors,
                                  **{**kw, "national_offset": scaled}), True
            except Infeasible:
                pass
        return solve_plan(L.inputs, L.states, L.pl, frozen=known, floors=floors, **kw), True
    if known:  # the passing cities and the repair's, as L.frozen() gives them while some city fails
        pl = L.pl
        volume = {c: city.tickets_per_day for c, city in L.sc.cities.items()}
        free = sum(v for c, v in volume.items() if c not in known) / sum(volume.values())
        if pl.budget_per_month is None and free < NATIONAL_SHARE:
            pl = pl.model_copy(update={"targets": pl.targets.model_copy(update={"national_score_min": None})})
        try:
            return solve_plan(L.inputs, L.states, pl, frozen=known, **kw), False
        except Infeasible as exc:
            L.log(f"the failing cities' programme is infeasible with the others frozen ({exc}): "
                  "every city is solved again on floors")
    return solve_plan(L.inputs, L.states, L.pl, frozen=known, reprice=True, floors=known, **kw), False


def _national_short(L: _Loop) -> float:
    """How far the national score's bound is below its target (0 when it holds or has none)."""
    target = L.pl.targets.national_score_min
    if target is None or L.national is None:
        return 0.0
    return round(max(0.0, target - L.national[1]), 3)


def _repair(L: _Loop, iterations: list[Iteration]) -> None:
    """Cities the programme left failing: greedy marginal analysis from their plans.

    The corrected tables learn slowly where a city's plan sits near a cliff of its curve (a
    few cities can fail for several iterations in a row). From the programme's plan, each
    failing city takes the action with the best deficit reduction per yuan until its own
    targets hold (``greedy``, with the loop's streams and pooled variances, so it accepts what
    the loop accepts; each round looks at every candidate on two replications and simulates
    the ``SHORTLIST`` best in full: on March 2025 about half the simulations of full greedy, for
    1 to 2 % more on the repaired cities' cost). The cities it changes stay with it; the
    national score stays with the programme (greedy's national actions gain about 0.002 points
    each on March 2025, far too slow for a shortfall of a few tenths).
    """
    bad = [c for c in L.sc.cities if c in L.table and not bool(L.table[c]["ok"].all())]
    if not bad:
        return
    t0 = time.perf_counter()
    # greedy starts from the loop's own simulated rows: a fresh look at the same plans could pool
    # other variances and call a city the loop saw failing a pass (then it would do nothing)
    memo = {(c, L.plans[c].key()): (L.table[c], L.rep_rows[c]) for c in bad}
    res = _greedy_from(L, {c: L.plans[c] for c in bad}, log=L.log, memo=memo)
    changed = [c for c, cp in res.plan.cities.items() if cp.key() != L.simulated_key.get(c)]
    plans = {**L.plans, **res.plan.cities}
    L.sim_s += L.simulate(plans, changed, corrected=True)
    L.plans = plans
    L.owned |= set(changed)
    fails = tuple(f"{r.city}:{r.target}" for r in L.assessment().query("~ok").itertuples())
    iterations.append(Iteration(len(iterations) + 1, sum(plan_cost(L.sc, cp) for cp in plans.values()), 0.0,
                                time.perf_counter() - t0, tuple(changed), fails, None,
                                f"repair: greedy marginal analysis in {', '.join(bad)} ({len(res.iterations)} actions)"))
    L.log(f"repair of {', '.join(bad)} by greedy marginal analysis: {len(res.iterations)} actions "
          f"({res.timings['simulations']:.0f} city simulations), "
          f"{len(fails)} targets fail")


def _greedy_from(L: _Loop, start: dict[str, CityPlan], **kw: object) -> PlanResult:
    """Greedy marginal analysis of ``start``'s cities from those plans, on the loop's streams and
    pooled variances (so it accepts what the loop accepts), their own targets only."""
    from optimizer.greedy import greedy

    sub = L.sc.only(list(start))
    sub = sub.model_copy(update={"planning": sub.planning.model_copy(update={
        "targets": sub.planning.targets.model_copy(update={"national_score_min": None})})})
    return greedy(sub, replications=L.n, seed=L.seed, loop_horizon_days=L.horizon_days, verify=False,
                  start=start, verify_replications=L.future, pool=L.pool, workers=L.workers, shift=L.shift,
                  shortlist=SHORTLIST, inputs=L.inputs, **kw)  # type: ignore[arg-type]


def _removals(L: _Loop, c: str) -> list[CityPlan]:
    """One-unit reductions of a city's plan (a seat leaves with its agent's skills), the largest saving first."""
    cp = L.plans[c]
    ci = L.inputs[c]
    out = []

    def minus(table: Mapping[str, int], key: str) -> dict:
        t = dict(table)
        t[key] -= 1
        return {k: v for k, v in t.items() if v}

    def fields(**kw: object) -> CityPlan:
        return replace(cp, **kw)  # type: ignore[arg-type]

    for name in ("hires", "temporaries"):
        for p, n in getattr(cp, name).items():
            pool = ("hire:" if name == "hires" else "temp:") + p
            # a seat leaves with its skills when every agent on it is trained or certified
            skills = {s: minus(getattr(cp, s), pool) for s in ("trained", "certified")
                      if getattr(cp, s).get(pool, 0) >= n}
            out.append(fields(**{name: minus(getattr(cp, name), p)}, **skills))
    for name in ("trained", "certified"):
        for pool in getattr(cp, name):
            out.append(fields(**{name: minus(getattr(cp, name), pool)}))
    lower = [o.penetration for o in ci.options if o.penetration < (cp.chatbot_penetration or 0.0) - 1e-9]
    if lower:
        out.append(fields(chatbot_penetration=max(lower)))
    if cp.triage and not ci.triage_now:
        out.append(fields(triage=False))
    return sorted(out, key=lambda x: plan_cost(L.sc, x) - plan_cost(L.sc, cp))


def _polish(L: _Loop, budget: int, say: Callable[[str], None]) -> int:
    """Simulation-checked descent from the loop's plan: drop one unit while every target holds.

    The programme's plan carries the model's remaining pessimism; each candidate reduction is
    simulated on the fit streams and kept if the city's targets and the national score still
    pass (the same criterion as the loop). Returns the number of reductions kept.
    """
    return _descend(L, budget, say, "polish: {} reductions kept", lambda c, current, cand: cand, ahead=True)


def _exchange(L: _Loop, budget: int, say: Callable[[str], None]) -> int:
    """Seats traded for cheaper actions: drop one seat, let greedy marginal analysis repair the
    city from there (``EXCHANGE_STEPS`` actions at most), keep the result if it is cheaper and
    every target still holds.

    The one-unit descent cannot swap a seat for skills: on a small instance the programme kept a
    fifth temporary seat where greedy certified two agents for less. After the exchange no single
    seat can be traded for greedy's actions at a saving. Returns the number of exchanges kept.
    """
    memo: dict = {}  # simulated plans, shared by the exchanges' greedy runs

    def repaired(c: str, current: CityPlan, cand: CityPlan) -> CityPlan | None:
        if (cand.hires, cand.temporaries) == (current.hires, current.temporaries):
            return None  # seats only: the descent has tried the rest
        res = _greedy_from(L, {c: cand}, max_steps=EXCHANGE_STEPS, memo=memo,
                           max_cost=plan_cost(L.sc, current) - 1.0)
        L.sims += res.timings["simulations"]  # greedy's candidates count against the budget
        new = res.plan.cities[c]
        cheaper = plan_cost(L.sc, new) < plan_cost(L.sc, current) - 1e-6
        return new if bool(res.fit["ok"].all()) and cheaper else None

    return _descend(L, budget, say, "exchange: {} seats traded", repaired)


def _descend(L: _Loop, budget: int, say: Callable[[str], None], done: str,
             propose: Callable[[str, CityPlan, CityPlan], CityPlan | None], ahead: bool = False) -> int:
    """Local search shared by the polish and the exchange: cities most expensive first, each
    one-unit reduction turned by ``propose`` into a plan to try (or ``None``), the first that
    passes kept and the city searched again; stops once ``budget`` city simulations are spent
    (a count, not seconds: the plan must not depend on the machine's speed). ``ahead``: the
    candidates are the plans tried (the polish); the next ones within the budget are simulated
    side by side, one per worker (``look_ahead``: the same plan, in less time)."""
    start = L.sims
    kept = 0
    for c in sorted(L.plans, key=lambda x: -plan_cost(L.sc, L.plans[x])):
        improved = True
        while improved and L.sims - start < budget:
            improved = False
            current = L.plans[c]
            cands = _removals(L, c)
            for i, cand in enumerate(cands):
                if L.sims - start >= budget:
                    break
                if ahead:
                    room = math.ceil(budget - (L.sims - start))
                    L.sim_s += L.look_ahead(c, cands[i:i + min(L.workers, room)])
                new = propose(c, current, cand)
                if new is not None and _keep_if_passes(L, c, new):
                    kept += 1
                    improved = True
                    break
    L.ahead.clear()  # frames of candidates never tried (the loop's replications may change)
    if kept:
        say(done.format(kept) + f", cost {sum(plan_cost(L.sc, cp) for cp in L.plans.values()):,.0f}/month")
    return kept


def _keep_if_passes(L: _Loop, c: str, cand: CityPlan) -> bool:
    """Make ``cand`` city ``c``'s plan if it passes on the fit streams with the national score;
    simulated once (``L.seen``), else the plan stays as it was."""
    current = L.plans[c]
    known = L.seen.get(c, {}).get(cand.key())
    if known is None:
        L.sim_s += L.simulate({c: cand}, [c], corrected=True, record=False)
        known = L.seen[c][cand.key()]
    if known[0]:
        L.use({**L.plans, c: cand})
        if bool(L.national_check()["ok"].all()):
            L.commit(c, cand)
            return True
    L.use({**L.plans, c: current})
    return False


def _finish(L: _Loop, say: Callable[[str], None]) -> None:
    """Keep the incumbent (cheapest plans that passed) when it beats the last plans."""
    inc = L.incumbent()
    if inc is None:
        return
    last_ok = bool(L.assessment()["ok"].all())
    if not last_ok or sum(plan_cost(L.sc, cp) for cp in inc.values()) < sum(
            plan_cost(L.sc, cp) for cp in L.plans.values()) - 1e-6:
        L.use(inc)
        say(f"incumbent: the cheapest plans that passed, {sum(plan_cost(L.sc, cp) for cp in inc.values()):,.0f}/month")


def _option_key(ci: CityInputs, cp: CityPlan) -> str:
    pen = ci.penetration_now if cp.chatbot_penetration is None else cp.chatbot_penetration
    tri = cp.triage or ci.triage_now
    return next(o.key for o in ci.options if abs(o.penetration - pen) < 1e-9 and o.triage == tri)


def _assumptions(L: _Loop) -> dict[str, str]:
    notes = {}
    for ci in L.inputs.values():
        notes.update({f"optimizer.{k}": v for k, v in ci.assumptions.items()})
        break
    if L.sc_loop is not L.sc:
        notes["optimizer.loop_horizon"] = (
            f"the loop simulates {L.sc_loop.horizon_days:g} of {L.sc.horizon_days:g} days; "
            "verification uses the full horizon")
    return notes


def _infeasible(L: _Loop, nat_off: float, iterations: list[Iteration], exc: Infeasible,
                t_start: float) -> Infeasible:
    """Solve the soft programme, simulate its plan, and build the error that reports it."""
    soft = solve_plan(L.inputs, L.states, L.pl, solver=L.solver, national_offset=nat_off, soft=True, **L.solve_kw)
    changed = [c for c in L.sc.cities if soft.plans[c].key() != L.simulated_key.get(c)]
    L.simulate(soft.plans, changed, corrected=True)
    L.plans = dict(soft.plans)
    table = L.assessment()
    plan = Plan.build(L.sc, soft.plans, assumptions=_assumptions(L))
    iterations.append(Iteration(len(iterations) + 1, soft.cost, soft.wall_s, 0.0, tuple(changed),
                                tuple(f"{r.city}:{r.target}" for r in table[~table["ok"]].itertuples()),
                                None, "soft programme (targets with priced shortfalls)"))
    best = PlanResult(plan, "soft", iterations, None, table, dict(L.model),
                      {"total_s": time.perf_counter() - t_start}, soft.binding)
    names = ", ".join(f"{b['city']}:{b['target']}" for b in soft.binding) or "(none in the model)"
    return Infeasible(f"no plan meets every target; binding: {names}", soft.binding, best, exc.lp_path)
