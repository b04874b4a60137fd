"""Stage 6 of 7 (optimizer): solve the programme for every city, coupled by national constraints.

Cities share only three constraints: the national (volume-weighted) score, the national
training capacity and the budget. ``solve_plan`` builds and solves the whole programme at
once for a few cities; beyond ``monolithic_max`` cities it decomposes (see
``decompose``), because branch-and-bound on 32 independent blocks proves optimality far
more slowly than 32 small trees do.

``soft=True`` solves the soft programme (each target may fall short at a price, by default
1 million yuan a month per score point, per point of share, per 0.1 h) and reports, per
target that falls short, the best value reachable at that price and the caps at their bound.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from optimizer.anchor import CityState, ModelKpis
from optimizer.formulation import (
    SHORTFALL_PRICE,
    StaffingProblem,
    build_problem,
    model_kpis,
    read_plan,
)
from optimizer.inputs import CityInputs
from optimizer.plan import CityPlan
from optimizer.solve import Infeasible, solve
from simulator.scenario import Planning, Targets

__all__ = ["Coordinated", "evaluate_city", "solve_city", "solve_plan"]


@dataclass
class Coordinated:
    """A solved programme: plans per city, monthly cost, solver time, a lower bound if known."""

    plans: dict[str, CityPlan]
    cost: float
    wall_s: float
    bound: float | None = None
    binding: list[dict] = field(default_factory=list)
    national: float | None = None  # linearised national score of the plan
    solver_calls: int = 1
    problems: list[StaffingProblem] = field(default_factory=list)
    proven: bool = True  # every chosen plan came from a problem solved to optimality


def evaluate_city(ci: CityInputs, state: CityState, planning: Planning, cp: CityPlan, *,
                  solver: str = "highs") -> ModelKpis:
    """The performance model's prediction for one city's decisions (operations optimised)."""
    sp = build_problem({ci.city: ci}, {ci.city: state}, planning, mode="evaluate", fixed={ci.city: cp})
    solve(sp, solver=solver, time_limit_s=60.0, gap_rel=1e-6)
    return model_kpis(sp, ci.city)


def solve_city(
    ci: CityInputs,
    state: CityState,
    planning: Planning,
    *,
    mode: str = "cost",
    lagrange: tuple[float, float, float] | None = None,
    shortfall_price: float = SHORTFALL_PRICE,
    solver: str = "highs",
    time_limit_s: float | None = 120.0,
    gap_rel: float = 1e-4,
    node_limit: int | None = None,
    threads: int | None = None,
    accept_incumbent: bool = False,
    floor: CityPlan | None = None,
    score_floor: float | None = None,
) -> tuple[StaffingProblem, float]:
    """One city's programme, option by option (chatbot level x triage).

    Each option's programme has no option binaries and a sixth of the rows, so the
    branch-and-bound trees stay small. Options are visited in the order of their LP bounds
    and skipped once the bound cannot beat the best plan found; each option's search after the
    first is cut off at the best plan's objective (HiGHS drops every node that cannot beat it:
    on March 2025 most options then end at their root). Returns the best solved
    problem and the solver time. Raises ``Infeasible`` when no option is feasible.
    ``floor``: every decision at least this plan's, in its option; ``score_floor``: the city's
    linearised score at least this (both ``build_problem``).
    """
    kw = {"solver": solver, "time_limit_s": time_limit_s, "gap_rel": gap_rel, "node_limit": node_limit,
          "threads": threads, "accept_incumbent": accept_incumbent}
    floors = {ci.city: floor} if floor is not None else None
    opts = [o.key for o in ci.options if not o.dominated] if floor is None else ["floor"]
    wall = 0.0

    def build(key: str) -> StaffingProblem:
        return build_problem({ci.city: ci}, {ci.city: state}, planning, mode=mode, coupled=False,
                             lagrange=lagrange, shortfall_price=shortfall_price,
                             only_option=None if floors else {ci.city: key}, floor=floors,
                             score_floor=None if score_floor is None else {ci.city: score_floor})

    bounds = []
    for key in opts:
        sp = build(key)
        if len(opts) > 1:
            try:
                res = solve(sp, relax=True, **kw)
            except Infeasible:
                continue
            wall += res.wall_s
            bounds.append((res.objective, key, sp))
        else:
            bounds.append((0.0, key, sp))
    best: tuple[float, StaffingProblem] | None = None
    for bound, key, sp in sorted(bounds, key=lambda b: b[0]):
        if best is not None and bound >= best[0] - abs(best[0]) * gap_rel - 1e-9:
            break
        t0 = time.perf_counter()
        try:  # an option is worth its search only below the best plan found
            res = solve(sp, cutoff=None if best is None else best[0], **kw)
        except Infeasible:  # NoBetter included
            continue
        finally:
            wall += time.perf_counter() - t0
        sp.proven = res.proven
        if best is None or res.objective < best[0]:
            best = (res.objective, sp)
    if best is None:
        raise Infeasible(f"{ci.city}: no plan meets the city's targets")
    return best[1], wall


def _mode(planning: Planning) -> str:
    return "budget" if planning.budget_per_month is not None else "cost"


def solve_plan(
    inputs: Mapping[str, CityInputs],
    states: Mapping[str, CityState],
    planning: Planning,
    *,
    solver: str = "highs",
    national_offset: float = 0.0,
    soft: bool = False,
    shortfall_price: float = SHORTFALL_PRICE,
    time_limit_s: float | None = 120.0,
    gap_rel: float = 1e-4,
    monolithic_max: int = 1,
    cache: dict | None = None,
    workers: int = 1,
    frozen: Mapping[str, CityPlan] | None = None,
    reprice: bool = False,
    floors: Mapping[str, CityPlan] | None = None,
    node_limit: int | None = None,
    pricing_nodes: int | None = None,
) -> Coordinated:
    """Solve the programme for all ``inputs`` (raises ``Infeasible`` when the hard one is).

    ``frozen`` cities keep their plans, or with ``reprice`` keep them among their choices;
    ``floors`` cities only add to their plans (decomposed programme only; see ``decompose``);
    ``node_limit`` and ``pricing_nodes``: work limits of the city programmes (``decompose``).
    """
    kw = {"solver": solver, "time_limit_s": time_limit_s, "gap_rel": gap_rel, "node_limit": node_limit}
    if len(inputs) > monolithic_max:
        from optimizer.decompose import solve_decomposed

        return solve_decomposed(inputs, states, planning, national_offset=national_offset, soft=soft,
                                shortfall_price=shortfall_price, cache=cache, workers=workers, frozen=frozen,
                                reprice=reprice, floors=floors, pricing_nodes=pricing_nodes, **kw)
    if len(inputs) == 1 and _mode(planning) == "cost":
        (city, ci), = inputs.items()
        sp, wall = solve_city(ci, states.get(city, CityState()), planning, mode="soft" if soft else "cost",
                              shortfall_price=shortfall_price, **kw)
        return _result(sp, wall, 1, binding_report(sp, planning) if soft else None)
    if soft:
        return _soft(inputs, states, planning, national_offset, kw, shortfall_price)
    sp = build_problem(inputs, states, planning, mode=_mode(planning), national_offset=national_offset)
    res = solve(sp, **kw)
    return _result(sp, res.wall_s, 1)


def _result(sp: StaffingProblem, wall_s: float, calls: int, binding: list[dict] | None = None) -> Coordinated:
    nat = float(sp.national.value()) if sp.national is not None else None
    return Coordinated(read_plan(sp), float(sp.total_cost.value() or 0.0), wall_s, None, binding or [], nat,
                       calls, [sp])


def _soft(inputs, states, planning, national_offset, kw, price) -> Coordinated:
    sp = build_problem(inputs, states, planning, mode="soft", national_offset=national_offset,
                       shortfall_price=price)
    r = solve(sp, **kw)
    return _result(sp, r.wall_s, 1, binding_report(sp, planning))


def binding_report(sp: StaffingProblem, planning: Planning) -> list[dict]:
    """Targets with a shortfall in a solved soft programme: required, best reachable, caps at bound."""
    tg = planning.targets
    plans = read_plan(sp)
    out = []
    for (city, what), e in sp.shortfall.items():
        short = float(e.value() or 0.0)
        if short <= 1e-6:
            continue
        out.append(binding_row(city, what, short, tg, _limits(plans, city, planning, sp)))
    return out


def binding_row(city: str, what: str, short: float, tg: Targets, limited_by: list[str]) -> dict:
    """One target's row in a binding report: required, best reachable (``short`` is in the
    programme's row units: seconds for the mean first response), the caps at their bound."""
    kind = what.split(":")[0]
    if kind == "mean_first_response":
        required = float(tg.mean_first_response_h)
        best = required + short / 3600.0
    else:
        required = float({"channel_share": tg.channel_target_share, "city_score": tg.city_score_min,
                          "national_score": tg.national_score_min,
                          "dialect_coverage": tg.dialect_coverage_min}[kind])
        best = required - short
    return {"city": city, "target": what, "required": required, "best": best, "limited_by": limited_by}


def _limits(plans: Mapping[str, CityPlan], city: str, pl: Planning, sp: StaffingProblem) -> list[str]:
    """Caps that sit at their bound in the plan (what would have to give to reach more)."""
    out = []
    cities = [city] if city in plans else list(plans)
    for c in cities:
        cp = plans[c]
        if pl.max_hires_per_city is not None and sum(cp.hires.values()) >= pl.max_hires_per_city:
            out.append(f"max_hires_per_city={pl.max_hires_per_city}" + ("" if c == city else f" ({c})"))
        if pl.max_temporary_per_city is not None and sum(cp.temporaries.values()) >= pl.max_temporary_per_city:
            out.append(f"max_temporary_per_city={pl.max_temporary_per_city}" + ("" if c == city else f" ({c})"))
        cap = sp.inputs[c].seat_cap
        if any(v >= cap for v in list(cp.hires.values()) + list(cp.temporaries.values())):
            out.append(f"seat bound {cap} per pattern ({c})")
    if pl.max_trained_per_month is not None:
        used = sum(sum(cp.trained.values()) + sum(cp.certified.values()) for cp in plans.values())
        if used >= pl.max_trained_per_month:
            out.append(f"max_trained_per_month={pl.max_trained_per_month}")
    if pl.budget_per_month is not None:
        spent = sum(_plan_cost(sp.inputs[c], pl, cp) for c, cp in plans.items())
        seats = [p.seat_cost for c in plans for p in sp.inputs[c].pools if p.new]
        if pl.budget_per_month - spent < min(seats or [0.0]):  # not even one more seat fits
            out.append(f"budget_per_month={pl.budget_per_month:g}")
    return sorted(set(out))


def _plan_cost(ci: CityInputs, pl: Planning, cp: CityPlan) -> float:
    """A plan's monthly cost from the programme's own data (seats, training, option)."""
    seats = sum(p.seat_cost * cp.heads(p.key) for p in ci.pools if p.new)
    train = pl.language_training_cost * sum(cp.trained.values())
    cert = pl.certification_cost_per_level * sum(cp.certified.values())
    pen = ci.penetration_now if cp.chatbot_penetration is None else cp.chatbot_penetration
    tri = cp.triage or ci.triage_now
    option = next((o.cost for o in ci.options if abs(o.penetration - pen) < 1e-9 and o.triage == tri), 0.0)
    return float(seats + train + cert + option)
