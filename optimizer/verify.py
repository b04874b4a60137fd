"""Stage 7 of 7 (verified plan): simulate a plan and check every target at the stated confidence.

``verify_plan(plan, scenario, replications, seed)`` applies the plan, simulates it on
``purpose="verify"`` streams (never seen by the optimizer, which fits on ``"fit"`` streams),
and checks each target with a one-sided Student-t bound at ``targets.confidence``:

========================  ======================================================  =========
target                    measured per replication                                  holds if
========================  ======================================================  =========
channel_share:<ch>        share of the channel's offered contacts answered within   lower >= x
                          its first-response target (``sl_offered`` by channel)
mean_first_response       mean first response over answered contacts (seconds)      upper <= x
city_score                the satisfaction model's overall score of the city        lower >= x
national_score            offered-volume-weighted mean of city scores              lower >= x
dialect_coverage:<lang>   speaker share of staffed agent hours (deterministic)      value >= x
========================  ======================================================  =========

With one replication the bound is the mean itself (no interval); ``Verification.n`` says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from optimizer.anchor import SimPoint
from optimizer.inputs import horizon_hours, week_cover
from optimizer.parallel import pmap, split
from optimizer.plan import Plan, apply_plan, local_languages
from simulator.calibration import city_means, model_for
from simulator.engine import components
from simulator.kpi import Replications, replicate, replication_kpis
from simulator.satisfaction import SatisfactionModel, features
from simulator.scenario import Scenario, Targets

__all__ = ["GROUPINGS", "Verification", "add_to_pool", "assess", "coverage", "verify_plan", "verify_scenario"]

GROUPINGS = (("city",), ("city", "channel"))
# replication variance is pooled over this many of the latest plans of a (city, target): a
# search's early plans are far from its last (an understaffed plan's responses vary far more)
POOL_PLANS = 3
FIT_LEVEL = 0.99  # confidence of the fit-stream part of a prediction bound (see ``_bound``)
COLUMNS = ["city", "target", "sense", "required", "mean", "bound", "n", "ok"]


def coverage(scenario: Scenario, city: str, hours: np.ndarray | None = None) -> dict[str, float]:
    """Share of the city's staffed agent hours held by speakers of each local language, over the
    scenario's horizon or the week-slot ``hours`` given (``inputs.horizon_hours``)."""
    hours = horizon_hours(scenario) if hours is None else hours
    total = 0.0
    spk = {lang: 0.0 for lang in local_languages(scenario, city)}
    for g in scenario.cities[city].agent_groups:
        h = g.headcount * float(week_cover(g.shift) @ hours)
        total += h
        for lang in spk:
            if lang in g.languages:
                spk[lang] += h
    return {lang: (v / total if total > 0 else 0.0) for lang, v in spk.items()}


def _bound(values: np.ndarray, level: float, lower: bool, future: int | None = None,
           scale: float = 1.0, pool: dict | None = None, key: tuple | None = None,
           pending: dict | None = None) -> tuple[float, float]:
    """Mean and one-sided bound at ``level``.

    With ``future`` (replications of a later verification whose replications have standard
    deviation ``scale`` times these), the bound is one the later verification's own bound
    will clear with confidence ``level``: the later mean is predicted with variance
    ``s^2 (1/n + scale^2/future)`` and its bound lies a further ``t scale s / sqrt(future)``.
    The prediction part uses at least ``FIT_LEVEL``: the loop keeps the cheapest plan that
    passes on its own streams, which flatters it (the winner's curse).

    With ``pending`` the pool is read, and this plan's variance goes to ``pending[key]`` instead
    (``add_to_pool`` once the plan is kept): a search's candidates are judged against the plans
    it kept, so a kept plan's bound does not depend on which candidates were tried before it
    (judged again later, it gets the same verdict).
    """
    x = values[np.isfinite(values)]
    if x.size == 0:
        return float("nan"), float("nan")
    m = float(x.mean())
    if x.size < 2:
        return m, m
    ss, df = float(((x - m) ** 2).sum()), x.size - 1
    if pool is not None:  # pooled with the plans simulated just before (nearby plans, similar spread)
        # a plan simulated again on the same streams repeats its numbers: not new evidence
        recent = _recent(pool, key, (ss, df))
        if pending is None:
            pool[key] = (*recent, (ss, df))
        else:
            pending[key] = (ss, df)
        ss, df = ss + sum(r[0] for r in recent), df + sum(r[1] for r in recent)
    sd = float(np.sqrt(ss / df))
    if future is None or future < 2:
        half = float(stats.t.ppf(level, df) * sd / np.sqrt(x.size))
    else:
        fit_level = max(level, FIT_LEVEL)  # plans are chosen on these streams: a selection bias
        half = float(stats.t.ppf(fit_level, df) * sd * np.sqrt(1.0 / x.size + scale**2 / future)
                     + stats.t.ppf(level, future - 1) * scale * sd / np.sqrt(future))
    return m, (m - half if lower else m + half)


def _recent(pool: dict, key: tuple | None, entry: tuple[float, int]) -> tuple:
    """The pool's latest plans to pool ``entry`` with: a plan simulated again on the same streams
    repeats its numbers, so it is not counted twice."""
    return tuple(r for r in pool.get(key, ()) if r != entry)[-(POOL_PLANS - 1):]


def add_to_pool(pool: dict, pending: Mapping[tuple, tuple[float, int]]) -> None:
    """A kept plan's variances (``pending`` from its look) join the pool."""
    for key, entry in pending.items():
        pool[key] = (*_recent(pool, key, entry), entry)


@dataclass
class Assessment:
    """Target checks and the simulated quantities the loop needs (one scenario, some cities)."""

    table: pd.DataFrame  # COLUMNS
    points: dict[str, SimPoint] = field(default_factory=dict)
    city_rep: pd.DataFrame | None = None  # per replication: city, replication, offered, score
    national: tuple[float, float] | None = None  # (mean, lower bound)

    @property
    def ok(self) -> bool:
        return bool(self.table["ok"].all()) if len(self.table) else True

    @property
    def failing(self) -> pd.DataFrame:
        return self.table[~self.table["ok"]]


def assess_cities(
    scenario: Scenario,
    per_city: pd.DataFrame,
    per_channel: pd.DataFrame,
    model: SatisfactionModel,
    targets: Targets,
    cities: Iterable[str],
    future: int | None = None,
    future_scale: float = 1.0,
    pool: dict | None = None,
    shift: Mapping[tuple[str, str], float] | None = None,
    pending: dict | None = None,
    hours: np.ndarray | None = None,
) -> Assessment:
    """City-level checks (channels, response, score, coverage) from per-replication KPI frames.

    ``future``: bounds are prediction bounds for a verification with that many replications
    (whose replications vary ``future_scale`` times as much); ``pool`` pools the variance
    of each (city, target) with earlier calls; ``shift`` is added to a (city, target)'s
    values first (the loop's learnt difference between its short horizon and the full one);
    ``pending`` takes what would join the pool instead (a candidate's look, ``_bound``).
    ``hours``: the week-slot hours dialect coverage is counted over (default ``scenario``'s
    horizon). Coverage is no simulated quantity but the plan's share of agent hours over the
    planning horizon, as the programme and the verification count it: a loop that simulates a
    cut horizon passes the full one's (March 2025's loop week has no Saturday, and Fuzhou's
    coverage read 0.245 there against 0.252 over the month).
    """
    shift = shift or {}
    level = targets.confidence
    rows, points = [], {}
    scores = model.scores(per_city)["overall"]
    rep = per_city[["city", "replication", "offered"]].assign(score=scores.to_numpy())
    means = city_means(per_city)
    for city in cities:
        pc = per_city[per_city["city"] == city]
        ch = per_channel[per_channel["city"] == city]
        sl_mean, sl_bound = {}, {}
        for name, g in ch.groupby("channel", observed=True):
            key = (city, f"channel_share:{name}")
            m, b = _bound(g["sl_offered"].to_numpy(float) + shift.get(key, 0.0), level, lower=True, future=future,
                          scale=future_scale, pool=pool, key=key, pending=pending)
            sl_mean[str(name)], sl_bound[str(name)] = m, b
            if targets.channel_target_share is not None and np.isfinite(m):
                rows.append((city, f"channel_share:{name}", ">=", targets.channel_target_share, m, b, len(g),
                             b >= targets.channel_target_share - 1e-12))
        r_mean, r_bound = _bound(pc["first_response_mean_s"].to_numpy(float)
                                 + shift.get((city, "mean_first_response"), 0.0), level, lower=False, future=future,
                                 scale=future_scale, pool=pool, key=(city, "mean_first_response"),
                                 pending=pending)
        if targets.mean_first_response_h is not None:
            lim = targets.mean_first_response_h * 3600.0
            rows.append((city, "mean_first_response", "<=", lim, r_mean, r_bound, len(pc), r_bound <= lim + 1e-9))
        s = rep.loc[rep["city"] == city, "score"].to_numpy(float) + shift.get((city, "city_score"), 0.0)
        s_mean, s_bound = _bound(s, level, lower=True, future=future, scale=future_scale, pool=pool,
                                 key=(city, "city_score"), pending=pending)
        if targets.city_score_min is not None:
            rows.append((city, "city_score", ">=", targets.city_score_min, s_mean, s_bound, len(s),
                         s_bound >= targets.city_score_min - 1e-12))
        if targets.dialect_coverage_min is not None:
            for lang, v in coverage(scenario, city, hours).items():
                rows.append((city, f"dialect_coverage:{lang}", ">=", targets.dialect_coverage_min, v, v, 1,
                             v >= targets.dialect_coverage_min - 1e-12))
        k = means.loc[city]
        points[city] = SimPoint(k, sl_bound, sl_mean, r_bound, s_mean, s_bound,
                                features(means.loc[[city]]).iloc[0])
    return Assessment(pd.DataFrame(rows, columns=COLUMNS).astype({"ok": bool}), points, rep)


def national_check(city_rep: pd.DataFrame, targets: Targets, future: int | None = None,
                   future_scale: float = 1.0, pool: dict | None = None,
                   shift: float = 0.0) -> tuple[pd.DataFrame, tuple[float, float]]:
    """The national score per replication (offered-weighted city scores) and its check
    (``shift`` added to each replication's score: the loop's learnt horizon difference)."""
    g = city_rep.assign(w=city_rep["score"] * city_rep["offered"]).groupby("replication")
    nat = (g["w"].sum() / g["offered"].sum()).to_numpy(float) + shift
    m, b = _bound(nat, targets.confidence, lower=True, future=future, scale=future_scale, pool=pool,
                  key=("national", "national_score"))
    rows = []
    if targets.national_score_min is not None:
        rows.append(("national", "national_score", ">=", targets.national_score_min, m, b, nat.size,
                     b >= targets.national_score_min - 1e-12))
    return pd.DataFrame(rows, columns=COLUMNS), (m, b)


def assess(scenario: Scenario, reps, model: SatisfactionModel | None = None,
           targets: Targets | None = None, cities: Sequence[str] | None = None) -> Assessment:
    """Every target of ``scenario`` checked on a ``Replications`` of it (all its cities)."""
    model = model or model_for(scenario)
    targets = targets or scenario.planning.targets
    per_city = reps.kpis(("city",))
    per_channel = reps.kpis(("city", "channel"))
    cities = list(cities) if cities is not None else sorted(per_city["city"].astype(str).unique())
    a = assess_cities(scenario, per_city, per_channel, model, targets, cities)
    nat_rows, a.national = national_check(a.city_rep, targets)
    a.table = pd.concat([a.table, nat_rows], ignore_index=True) if len(nat_rows) else a.table
    a.table = a.table.astype({"ok": bool})
    return a


@dataclass
class Verification:
    """The verdict on a plan: every target checked on fresh streams."""

    ok: bool
    table: pd.DataFrame
    kpis: pd.DataFrame  # mean KPIs per city
    scores: pd.DataFrame  # mean score per city (dimensions and overall)
    national: tuple[float, float] | None
    n: int
    seed: int
    wall_s: float

    @property
    def failing(self) -> pd.DataFrame:
        return self.table[~self.table["ok"]]


def in_run_order(f: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """KPI rows in the order one run of every city gives them (replication, then the scenario's
    cities and channels), whatever jobs made them: sums downstream round in their rows' order."""
    rank = {"city": {c: i for i, c in enumerate(scenario.cities)},
            "channel": {c: i for i, c in enumerate(scenario.channels)}}
    keys = [k for k in ("replication", "city", "channel") if k in f.columns]
    return f.sort_values(keys, key=lambda col: col.map(rank[col.name]) if col.name in rank else col,
                         kind="stable", ignore_index=True)


def replicate_parallel(scenario: Scenario, n: int, seed: int, purpose: str, workers: int) -> Replications:
    """``simulator.kpi.replicate`` over ``workers`` processes (same replications, same numbers).

    One job per replication and group of cities, the groups of nearly equal volume (cities that
    share agents, ``components``, stay together): five replications of 32 cities on two
    workers used to leave one worker idle for the fifth. ``GROUPINGS`` are by city, so the
    jobs' rows put together are the whole run's."""
    if workers <= 1 or n <= 1:
        return replicate(scenario, n, seed=seed, purpose=purpose, groupings=GROUPINGS)
    comps = [[c for c in comp if c in scenario.cities] for comp in components(scenario)]
    groups = split([comp for comp in comps if comp], lambda comp: sum(scenario.cities[c].tickets_per_day for c in comp),
                   workers)
    cities = [[c for comp in g for c in comp] for g in groups]
    jobs = [(r, i) for r in range(n) for i in range(len(groups))]
    done = dict(zip(jobs, pmap(replication_kpis, [(scenario, seed, purpose, r, cities[i], GROUPINGS, None)
                                                  for r, i in jobs], workers)))
    reps = Replications(scenario, seed, purpose)
    for k, by in enumerate(GROUPINGS):
        frames = []
        for r in range(n):
            frames.append(in_run_order(pd.concat([done[r, i][k] for i in range(len(groups))]), scenario))
        reps.frames[tuple(by)] = frames
    return reps


def verify_plan(plan: Plan, scenario: Scenario, replications: int | None = None, seed: int | None = None,
                **kw: object) -> Verification:
    """Simulate the applied plan on ``purpose="verify"`` streams and check every target
    (``verify_scenario``'s keywords: ``model``, ``targets``, ``workers``)."""
    return verify_scenario(apply_plan(scenario, plan), scenario, replications, seed, **kw)  # type: ignore[arg-type]


def verify_scenario(
    whatif: Scenario,
    scenario: Scenario,
    replications: int | None = None,
    seed: int | None = None,
    *,
    model: SatisfactionModel | None = None,
    targets: Targets | None = None,
    workers: int = 1,
) -> Verification:
    """Check ``scenario``'s targets on a what-if of it (a plan applied, or the department's own
    plan), simulated on ``purpose="verify"`` streams: the same streams for every what-if."""
    t0 = time.perf_counter()
    n = replications or scenario.replications
    root = scenario.seed if seed is None else seed
    reps = replicate_parallel(whatif, n, root, "verify", workers)
    model = model or model_for(scenario)
    a = assess(whatif, reps, model, targets or scenario.planning.targets)
    means = city_means(reps.kpis(("city",)))
    return Verification(
        ok=a.ok, table=a.table, kpis=means, scores=model.scores(means), national=a.national,
        n=n, seed=root, wall_s=time.perf_counter() - t0,
    )
