"""Stage 6 of 7 (optimizer): the national programme by price coordination (Dantzig-Wolfe).

Cities share three rows only: the national score, the training capacity and the budget.
Dualising them splits the programme into one small MIP per city (its pricing problem,
``cost + mu * trained - lam * weight * score``), which HiGHS or CBC solve to optimality in
a fraction of a second, where one branch-and-bound tree over 32 cities would take minutes.

1. Prices zero: each city's cheapest plan meeting its own targets. If the national rows
   hold, that plan is optimal for the whole programme (the relaxation is feasible).
2. Otherwise: a restricted master over the plans found so far (one per city, a convex
   combination in its LP relaxation) gives prices (LP duals); each city's pricing problem
   proposes a better plan while its reduced cost is negative. The first columns include
   each city's best-score plan, so the master is feasible whenever the programme is.
3. A city the master's relaxation splits between two plans gets its cheapest plan at the
   split's score as a column (``_split_cities``): prices find only plans on each city's convex
   hull of cost against score, and the integer master would pay for the dearer hull plan.
4. The master as a MIP (one plan per city) picks the plan. The master LP value is a lower
   bound for the restricted problem; the Lagrangian bound ``sum_c pricing_c + prices *
   right-hand sides`` bounds the full one: their gap is reported as ``Coordinated.bound``.
   The plan is the programme's optimum when prices alone close the gap; otherwise it is
   within the integrality gap (1.4 % on the two-city test, where the hull plans alone gave 4.3 %).

Soft mode prices every target's shortfall, the national one in the master.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import pulp

from optimizer.anchor import CityState
from optimizer.coordinate import Coordinated, _limits, _plan_cost, binding_row, solve_city
from optimizer.formulation import SCALE, SHORTFALL_PRICE, build_problem, read_plan
from optimizer.inputs import CityInputs
from optimizer.parallel import pmap
from optimizer.plan import CityPlan
from optimizer.solve import Infeasible, solve
from simulator.scenario import Planning

__all__ = ["solve_decomposed"]

MAX_ROUNDS = 2  # pricing rounds; the integer master then chooses among the columns found
BIG_LAMBDA = 1e6  # yuan per national score point: the "best score" columns
BUDGET_TIE = 1e-9  # budget mode: the cheaper of two equally good plans
PRICING_LIMIT_S = 1.0  # time limit of a priced city problem (its incumbent is still a column)
PRICING_SHARE = 4  # a priced city problem gets a quarter of the node limit (where one is given)


@dataclass(frozen=True)
class Column:
    """A city's candidate plan with what the master needs to know about it."""

    plan: CityPlan
    cost: float  # yuan per month plus priced city shortfalls (soft mode): the objective
    money: float  # yuan per month: what the budget caps
    score: float  # mean-anchored linearised score
    training: float  # agents trained or certified
    shortfall: tuple[tuple[str, float], ...]  # soft mode: (target, shortfall)
    proven: bool = True  # the pricing problem was solved to optimality


def _price(ci: CityInputs, st: CityState, pl: Planning, mode: str, lagrange: tuple[float, float, float],
           price: float, kw: dict, limit: float = PRICING_LIMIT_S,
           nodes: int | None = None) -> tuple[Column, float, float]:
    """Solve one city's pricing problem; return its column, objective and solver time."""
    # a column need not be proven optimal to be useful: an incumbent stopped early is still a plan
    kw = {**kw, "accept_incumbent": True}
    priced = lagrange[1] > 0.0 or lagrange[2] > 0.0 or lagrange[0] != 1.0
    if priced and kw.get("node_limit") is not None:  # work limits: the time limit stays a guard
        kw["node_limit"] = min(kw["node_limit"], nodes if nodes is not None else max(1, kw["node_limit"] // PRICING_SHARE))
    elif priced:
        kw["time_limit_s"] = min(kw.get("time_limit_s") or limit, limit)
    sp, wall = solve_city(ci, st, pl, mode=mode, lagrange=lagrange, shortfall_price=price, **kw)
    col = _column(sp, ci, price)
    return replace(col, proven=sp.proven), float(pulp.value(sp.prob.objective) or 0.0), wall


def _price_job(args: tuple) -> tuple[Column, float] | Infeasible:
    """A pricing problem in a worker: its column and objective, or the ``Infeasible`` raised."""
    ci, st, pl, mode, lagrange, price, kw, limit, nodes = args
    try:
        col, obj, _ = _price(ci, st, pl, mode, lagrange, price, kw, limit, nodes)
    except Infeasible as exc:
        return exc
    return col, obj


def _today(ci: CityInputs, st: CityState, pl: Planning, price: float, kw: dict) -> Column:
    """The city's plan of today (nothing bought) as a soft column: it fits any budget."""
    sp = build_problem({ci.city: ci}, {ci.city: st}, pl, mode="soft", coupled=False, lagrange=(1.0, 0.0, 0.0),
                       shortfall_price=price, fixed={ci.city: CityPlan(ci.city)})
    solve(sp, **kw)
    return _column(sp, ci, price)


def _column(sp, ci: CityInputs, price: float) -> Column:
    cv = sp.cities[ci.city]
    short = tuple((w, float(e.value() or 0.0)) for (c, w), e in sp.shortfall.items())
    penalty = sum(v * price / SCALE[w.split(":")[0]] for w, v in short)
    training = sum(float(v.value() or 0.0) for v in list(cv.trained.values()) + list(cv.certified.values()))
    score = cv.best_score()
    money = float(cv.cost.value() or 0.0)
    return Column(read_plan(sp)[ci.city], money + penalty, money,
                  score if score is not None else 0.0, round(training), short)


class _Master:
    def __init__(self, inputs, states, pl: Planning, mode: str, national_offset: float, price: float) -> None:
        self.inputs, self.states, self.pl, self.mode = inputs, states, pl, mode
        self.cols: dict[str, list[Column]] = {c: [] for c in inputs}
        anchors = {c: st.anchor for c, st in states.items()}
        self.scored = all(anchors.get(c) is not None for c in inputs)
        vol = {c: anchors[c].volume for c in inputs} if self.scored else {c: 1.0 for c in inputs}
        tot = sum(vol.values())
        self.w = {c: v / tot for c, v in vol.items()}
        tg = pl.targets
        self.nat_target = None if (tg.national_score_min is None or not self.scored or mode == "budget") \
            else tg.national_score_min + national_offset
        self.price = price

    def add(self, c: str, col: Column) -> bool:
        if any(x.plan.key() == col.plan.key() for x in self.cols[c]):
            return False
        self.cols[c].append(col)
        return True

    def solve(self, integer: bool, kw: dict) -> tuple[pulp.LpProblem, dict]:
        """The restricted master (always a minimisation, so LP duals read the same way)."""
        prob = pulp.LpProblem("master", pulp.LpMinimize)
        cat = pulp.LpInteger if integer else pulp.LpContinuous
        v = {(c, j): prob.add_variable(f"v_{i}_{j}", 0, 1, cat=cat)
             for i, c in enumerate(self.cols) for j in range(len(self.cols[c]))}
        for i, c in enumerate(self.cols):
            prob += pulp.lpSum(v[c, j] for j in range(len(self.cols[c]))) == 1, f"one_{i}"

        def total(f):
            return pulp.lpSum(f(c, col) * v[c, j] for c in self.cols for j, col in enumerate(self.cols[c]))

        cost = total(lambda c, col: col.cost)
        money = total(lambda c, col: col.money)
        score = total(lambda c, col: self.w[c] * col.score)
        e = None
        if self.nat_target is not None:
            if self.mode == "soft":
                e = prob.add_variable("nat_short", 0)
                prob += score + e >= self.nat_target, "national"
            else:
                prob += score >= self.nat_target, "national"
        if self.pl.max_trained_per_month is not None:
            prob += total(lambda c, col: col.training) <= self.pl.max_trained_per_month, "training"
        if self.pl.budget_per_month is not None and self.mode in ("budget", "soft"):
            prob += money <= self.pl.budget_per_month, "budget"
        if self.mode == "budget":
            prob += -1.0 * score + BUDGET_TIE * cost
        else:
            prob += cost + (self.price / SCALE["national_score"]) * e if e is not None else cost
        solve(_Wrap(prob), **kw)
        return prob, v

    def prices(self, prob: pulp.LpProblem) -> tuple[tuple[float, float, float], dict[str, float]]:
        """Pricing weights ``(alpha, lam, mu)`` and the convexity duals from the master LP."""
        def pi(name: str) -> float:
            c = prob.get_constraint_by_name(name)
            return float(c.pi or 0.0) if c is not None else 0.0

        lam = max(0.0, pi("national"))
        mu = max(0.0, -pi("training"))
        nu = max(0.0, -pi("budget"))
        if self.mode == "budget":
            alpha, lam = BUDGET_TIE + nu, 1.0
        else:
            alpha = 1.0 + nu
        return (alpha, lam, mu), {c: pi(f"one_{i}") for i, c in enumerate(self.cols)}


class _Wrap:
    """Just enough of a StaffingProblem for ``solve``."""

    def __init__(self, prob: pulp.LpProblem) -> None:
        self.prob = prob


def solve_decomposed(
    inputs: Mapping[str, CityInputs],
    states: Mapping[str, CityState],
    planning: Planning,
    *,
    national_offset: float = 0.0,
    soft: bool = False,
    shortfall_price: float = SHORTFALL_PRICE,
    solver: str = "highs",
    time_limit_s: float | None = 120.0,
    gap_rel: float = 1e-4,
    cache: dict | None = None,
    workers: int = 1,
    frozen: Mapping[str, CityPlan] | None = None,
    reprice: bool = False,
    floors: Mapping[str, CityPlan] | None = None,
    rounds: int = MAX_ROUNDS,
    pricing_limit_s: float = PRICING_LIMIT_S,
    node_limit: int | None = None,
    pricing_nodes: int | None = None,
) -> Coordinated:
    """Solve the programme city by city, coordinated by prices (see the module docstring).

    ``rounds`` bounds the pricing rounds and ``pricing_limit_s`` each priced problem's time:
    the defaults trade the last fraction of a percent of cost for minutes on 32 cities;
    enough rounds and time close the gap to the programme's relaxation (step 4 of the module
    docstring; the tests check how far the integer plan stays from the one-tree optimum).
    ``node_limit`` (HiGHS, ``solve``) stops each MIP at its first incumbent after that many
    nodes, ``pricing_nodes`` (default: a quarter of it) each priced one: limits of work, not
    time, so the plan is the same on any machine (the loop's choice; the time limits then only
    guard).

    ``frozen`` cities keep the given plan (one column, at its state's anchor: the loop freezes
    plans that passed in simulation); only the others are priced. With ``reprice`` they are
    priced too, the given plan staying among their columns (a known-good choice).
    ``floors`` prices those cities (frozen or not, with or without ``reprice``) with every
    decision at least the given plan's (its option kept): columns that only add to a plan that
    holds the city's targets. A city whose floored problem is infeasible under the model keeps
    its frozen column.

    ``cache`` (kept by the caller across calls) remembers each city's pricing result for a
    given state object and prices, so cities whose corrections did not change cost nothing.
    ``workers > 1`` prices cities in spawned processes (HiGHS's thread pool does not
    survive a fork), one solver thread each.
    """
    t0 = time.perf_counter()
    kw = {"solver": solver, "time_limit_s": time_limit_s, "gap_rel": gap_rel, "node_limit": node_limit}
    # CBC: one thread per worker process (HiGHS runs on one thread anyway: ``solve.HIGHS_THREADS``)
    job_kw = {**kw, "threads": 1} if workers > 1 and solver == "cbc" else kw
    mode = "soft" if soft else ("budget" if planning.budget_per_month is not None else "cost")
    city_mode = "soft" if soft else "cost"
    m = _Master(inputs, states, planning, mode, national_offset, shortfall_price)
    frozen = {c: cp for c, cp in (frozen or {}).items()
              if c in inputs and states[c].anchor is not None and states[c].anchor.plan.key() == cp.key()}
    floors = dict(floors or {})
    free = list(inputs) if reprice else [c for c in inputs if c not in frozen or c in floors]
    known = {c: _frozen(inputs[c], states[c], planning, cp) for c, cp in frozen.items()}
    calls = 0

    def job(c: str, lagrange: tuple[float, float, float], score: float | None = None) -> tuple:
        """City ``c``'s pricing job (``lagrange``: its own weights, the national price times its
        volume share; ``score``: a floor on its linearised score)."""
        return (inputs[c], states[c], planning, city_mode, lagrange, shortfall_price,
                {**job_kw, "floor": floors.get(c), "score_floor": score}, pricing_limit_s, pricing_nodes)

    def price_all(weights: tuple[float, float, float]) -> dict[str, tuple[Column, float]]:
        """Every city's pricing problem at these prices (cached, cities in parallel)."""
        nonlocal calls
        alpha, lam, mu = weights
        keys = {c: (c, id(states[c]), city_mode, round(alpha, 12), round(lam * m.w[c], 6), round(mu, 6),
                    shortfall_price, floors[c].key() if c in floors else None) for c in free}
        out = {c: cache[k][1] for c, k in keys.items()
               if cache is not None and k in cache and cache[k][0] is states[c]}
        todo = [c for c in free if c not in out]
        for c, res in zip(todo, pmap(_price_job, [job(c, (alpha, lam * m.w[c], mu)) for c in todo], workers)):
            if isinstance(res, Infeasible) and c in floors and c in known:
                res = (replace(known[c], proven=False), known[c].cost)  # nothing to add: the floor plan itself
            if isinstance(res, Infeasible):
                raise Infeasible(f"{c}: no plan meets the city's own targets", lp_path=res.lp_path)
            out[c] = res
            calls += 1
            if cache is not None:
                cache[keys[c]] = (states[c], res)
        return out

    first = {c: v[0] for c, v in price_all((1.0, 0.0, 0.0)).items()}  # prices zero
    for c, col in known.items():
        if reprice and col.money < first[c].money:  # the known-good plan is also the cheaper one
            first[c] = col
        first.setdefault(c, col)
    for c, col in list(first.items()) + list(known.items()):
        m.add(c, col)
    if mode != "budget" and _coupling_holds(m, first, planning):
        return _done(m, first, t0, calls, sum(col.money for col in first.values()), planning)
    if mode == "soft":  # today's plans cost nothing: the master fits any budget
        for c in free:
            m.add(c, _today(inputs[c], states[c], planning, shortfall_price, kw))
            calls += 1
    if m.scored:  # best-score columns keep the master feasible whenever anything is
        for c, res in zip(free, pmap(_price_job, [job(c, (1.0, BIG_LAMBDA, 0.0)) for c in free], workers)):
            if isinstance(res, Infeasible) and c in floors and c in known:
                continue
            if isinstance(res, Infeasible):
                raise Infeasible(f"{c}: no plan meets the city's own targets", lp_path=res.lp_path)
            m.add(c, res[0])
            calls += 1
    bound = None
    for _ in range(rounds):
        try:
            prob, v = m.solve(False, kw)
        except Infeasible:
            raise Infeasible("the national targets cannot be met by any combination of city plans") from None
        weights, conv = m.prices(prob)
        added, lagr = 0, 0.0
        priced = price_all(weights)
        exact = not (frozen and not reprice) and all(col.proven for col, _ in priced.values())
        for c in free:
            col, obj = priced[c]
            lagr += obj
            if obj - conv[c] < -1e-7 * (1.0 + abs(obj)) and m.add(c, col):
                added += 1
        if mode == "cost" and exact:  # the Lagrangian bound needs every pricing problem solved
            _, lam, mu = weights
            bound = lagr + (lam * m.nat_target if m.nat_target is not None else 0.0) - (
                mu * planning.max_trained_per_month if planning.max_trained_per_month is not None else 0.0)
        if not added:
            break
    if m.nat_target is not None and mode == "cost":
        calls += _split_cities(m, free, kw, workers, job)
    try:
        prob, v = m.solve(True, kw)
    except Infeasible:
        raise Infeasible("the national targets cannot be met by any combination of city plans") from None
    chosen = {c: next(col for j, col in enumerate(m.cols[c]) if (v[c, j].value() or 0) > 0.5) for c in inputs}
    return _done(m, chosen, t0, calls, bound, planning)


def _split_cities(m: _Master, free: list[str], kw: dict, workers: int, job: Callable[..., tuple]) -> int:
    """Columns for the cities the master's relaxation splits between plans: each such city's
    cheapest plan with at least the split's score. Returns the city programmes solved.

    Prices only find plans on each city's convex hull of cost against score; the integer master
    must then pick one of them, and where the relaxation needs a score between two hull plans
    it pays for the dearer one (two cities: 4.3 % above the one-tree programme's optimum, 1.4 %
    with these columns). A basic relaxation splits at most one city per coupling row, so this
    costs a few city programmes, not a pass over every city."""
    try:
        prob, v = m.solve(False, kw)
    except Infeasible:
        return 0
    mu = m.prices(prob)[0][2]
    split = {}
    for c in free:
        share = [(v[c, j].value() or 0.0, col) for j, col in enumerate(m.cols[c])]
        if max(x for x, _ in share) < 1.0 - 1e-6:
            split[c] = sum(x * col.score for x, col in share)
    for c, res in zip(split, pmap(_price_job, [job(c, (1.0, 0.0, mu), s) for c, s in split.items()], workers)):
        if not isinstance(res, Infeasible):
            m.add(c, res[0])
    return len(split)


def _frozen(ci: CityInputs, st: CityState, pl: Planning, cp: CityPlan) -> Column:
    """A frozen city's one column: its plan at the anchor, where the model's score is the simulated one."""
    money = _plan_cost(ci, pl, cp)
    training = sum(cp.trained.values()) + sum(cp.certified.values())
    return Column(cp, money, money, float(st.anchor.score_mean), training, ())


def _coupling_holds(m: _Master, chosen: Mapping[str, Column], pl: Planning) -> bool:
    if m.nat_target is not None and sum(m.w[c] * col.score for c, col in chosen.items()) < m.nat_target - 1e-9:
        return False
    if pl.max_trained_per_month is not None and sum(col.training for col in chosen.values()) > pl.max_trained_per_month:
        return False
    return not (pl.budget_per_month is not None and sum(col.money for col in chosen.values()) > pl.budget_per_month)


def _done(m: _Master, chosen: Mapping[str, Column], t0: float, calls: int, bound: float | None,
          planning: Planning) -> Coordinated:
    plans = {c: col.plan for c, col in chosen.items()}
    nat = sum(m.w[c] * col.score for c, col in chosen.items()) if m.scored else None
    tg = planning.targets
    shim = _Inputs(m.inputs)
    binding = [binding_row(c, w, short, tg, _limits(plans, c, planning, shim))
               for c, col in chosen.items() for w, short in col.shortfall if short > 1e-6]
    if m.mode == "soft" and m.nat_target is not None and nat is not None and nat < m.nat_target - 1e-6:
        binding.append(binding_row("national", "national_score", m.nat_target - nat, tg,
                                   _limits(plans, "national", planning, shim)))
    cost = sum(col.money for col in chosen.values())
    out = Coordinated(plans, cost, time.perf_counter() - t0, bound, binding, nat, calls)
    out.proven = all(col.proven for col in chosen.values())
    return out


class _Inputs:
    """The two attributes of a StaffingProblem that ``_limits`` reads."""

    def __init__(self, inputs: Mapping[str, CityInputs]) -> None:
        self.inputs = inputs
        self.total_cost = None
