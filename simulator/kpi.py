"""Stage 4 of 7: contact records -> KPIs per city (or any grouping), and replication summaries.

Definitions (contacts arriving after the warm-up; times in seconds):

- ``offered``: contacts that reached the chatbot or the agents' queue (lost ones excluded);
  ``to_agents``: those that reached the agents (answered + abandoned + unserved).
- ``first_response_*``: time from arrival to the first answer, by an agent or the chatbot,
  over answered contacts: mean, median and 90th percentile.
- ``sl_offered``: contacts answered within their channel's target over all offered contacts
  (an abandoned or unserved one counts as a miss); ``sl_answered``: the same over answered
  contacts only. With abandonment the two differ widely, so both are reported.
- ``asa_s``: mean wait of agent-answered contacts; ``p_wait``: share of contacts reaching
  agents that did not find one free (Erlang C's and Erlang A's P(wait)).
- ``abandon_rate``: abandoned over contacts reaching agents.
- ``fcr``: share of first contacts (kind primary) handled by agent or chatbot that were
  resolved then. ``recontact_rate``: re-contacts over first contacts; ``repeat_rate``: every
  further contact (retry after hanging up, re-contact, return after an outage) over first
  contacts: the customer's repeated effort.
- ``mismatch_rate``: answered contacts needing a local language served by a non-speaker,
  over answered contacts needing one; ``could_not_understand`` counts them.
- ``lost``: contacts lost to CRM outages. ``backlog_end``: contacts still waiting at the horizon.
- ``response_index``: mean of log(1 + first response / channel target) over answered
  contacts; a smooth measure of lateness that the satisfaction model uses.
- ``unresolved``: agent-answered contacts not resolved; ``late``: contacts answered after
  their target, abandoned or unserved (both counts, the raw material of complaints).
- ``occupancy``: agents' busy time over staffed time (city level);
  ``certification_mean``: busy-time-weighted certification level of the agents (city level).
- ``follow_up_on_time``: follow-ups owed (due before the horizon) done by their due time,
  those a centre never schedules counted as missed (city level).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from simulator.engine import RunResult, simulate
from simulator.entities import (
    ABANDONED,
    ANSWERED,
    DEFLECTED,
    LOST,
    OUTAGE_RETURN,
    PRIMARY,
    RECONTACT,
    RETRY,
    UNSERVED,
)
from simulator.scenario import Scenario

Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list]  # a process pool's map, say

KPI_COLUMNS = (
    "offered", "to_agents", "first_response_mean_s", "first_response_median_s",
    "first_response_p90_s", "sl_offered", "sl_answered", "asa_s", "p_wait", "abandon_rate",
    "fcr", "recontact_rate", "repeat_rate", "mismatch_rate", "could_not_understand", "lost", "backlog_end",
    "response_index", "unresolved", "late", "occupancy", "certification_mean", "follow_up_on_time",
)


def compute_kpis(run: RunResult, scenario: Scenario, by: Sequence[str] = ("city",)) -> pd.DataFrame:
    """One row of KPIs per group of ``by`` (any of city, channel, tier, language, ticket_type)."""
    r = run.records
    by = list(by)
    r = r[r["arrival_s"] >= run.warmup_s] if run.warmup_s > 0 else r
    # work on category codes: no Python string per row (the frame can hold millions of rows)
    out = r["outcome"].cat.codes.to_numpy()
    kind = r["kind"].cat.codes.to_numpy()
    ch = r["channel"].cat
    target = np.array([scenario.channels[c].target_s for c in ch.categories])[ch.codes.to_numpy()]
    answered = (out == ANSWERED) | (out == DEFLECTED)
    agent_answered = out == ANSWERED
    gave_up = (out == ABANDONED) | (out == UNSERVED)
    primary = kind == PRIMARY
    resolved = r["resolved"].to_numpy()
    wait = (r["answer_s"] - r["arrival_s"]).to_numpy()
    f = pd.DataFrame(
        {
            "offered": out != LOST,
            "to_agents": agent_answered | gave_up,
            "answered": answered,
            "agent_answered": agent_answered,
            "within": answered & (wait <= target + 1e-9),
            "waited": gave_up | (agent_answered & (wait > 1e-9)),
            "abandoned": out == ABANDONED,
            "primary_handled": primary & answered,
            "primary_resolved": primary & answered & resolved,
            "primary": primary,
            "recontact": kind == RECONTACT,
            "repeat": (kind == RETRY) | (kind == RECONTACT) | (kind == OUTAGE_RETURN),
            "lang_answered": r["language"].notna().to_numpy() & agent_answered,
            "mismatch": r["mismatch"].to_numpy() & agent_answered,
            "lost": out == LOST,
            "unserved": out == UNSERVED,
            "response": np.where(answered, wait, np.nan),
            "response_log": np.where(answered, np.log1p(np.maximum(wait, 0.0) / target), np.nan),
            "unresolved": agent_answered & ~resolved,
            "late": gave_up | (answered & (wait > target + 1e-9)),
            "agent_wait": np.where(agent_answered, wait, np.nan),
        }
    )
    keys = [r[k].reset_index(drop=True) for k in by] if by else [np.zeros(len(r), dtype=int)]
    g = f.groupby(keys, sort=True, observed=True, dropna=False)
    sums = g.sum(numeric_only=True)
    s = {c: v.to_numpy() for c, v in sums.items()}
    response = g["response"]
    # one frame from columns (not one column at a time: a small city's week is a few thousand
    # rows, and pandas' per-call overhead, not the rows, was most of the time)
    k = pd.DataFrame({
        "offered": s["offered"],
        "to_agents": s["to_agents"],
        "first_response_mean_s": response.mean().to_numpy(),
        "first_response_median_s": response.median().to_numpy(),
        "first_response_p90_s": response.quantile(0.9).to_numpy(),
        "sl_offered": _ratio(s["within"], s["offered"]),
        "sl_answered": _ratio(s["within"], s["answered"]),
        "asa_s": g["agent_wait"].mean().to_numpy(),
        "p_wait": _ratio(s["waited"], s["to_agents"]),
        "abandon_rate": _ratio(s["abandoned"], s["to_agents"]),
        "fcr": _ratio(s["primary_resolved"], s["primary_handled"]),
        "recontact_rate": _ratio(s["recontact"], s["primary"]),
        "repeat_rate": _ratio(s["repeat"], s["primary"]),
        "mismatch_rate": _ratio(s["mismatch"], s["lang_answered"]),
        "could_not_understand": s["mismatch"],
        "lost": s["lost"],
        "backlog_end": s["unserved"],
        "response_index": g["response_log"].mean().to_numpy(),
        "unresolved": s["unresolved"],
        "late": s["late"],
    }, index=sums.index)
    k.index.names = by or ["all"]
    k = k.reset_index()
    for col in by:  # names as plain strings (no language -> "nan", as before)
        k[col] = k[col].astype(str)
    if by in (["city"], []):
        return _add_city_level(k, run, by)
    return k.assign(occupancy=np.nan, certification_mean=np.nan, follow_up_on_time=np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den`` > 0, else NaN."""
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1), np.nan).astype(float)


def _add_city_level(k: pd.DataFrame, run: RunResult, by: list[str]) -> pd.DataFrame:
    """Occupancy and follow-up timeliness, which belong to cities, not to contacts."""
    a = run.agents
    fu = run.follow_ups
    fu = fu[(fu["created_s"] >= run.warmup_s) & (fu["due_s"] <= run.horizon_s)]
    on_time = fu["done_s"].le(fu["due_s"])
    if by:
        a = a[a["city"].isin(k["city"])]
        per = a.assign(cert_busy=a["certification"] * a["busy_s"]).groupby("city")[
            ["busy_s", "staffed_s", "cert_busy"]].sum()
        occ = per["busy_s"] / per["staffed_s"].where(per["staffed_s"] > 0)
        cert = per["cert_busy"] / per["busy_s"].where(per["busy_s"] > 0)
        fot = on_time.groupby(fu["city"].astype(str)).mean() if len(fu) else pd.Series(dtype=float)
        return k.assign(occupancy=k["city"].map(occ).astype(float),
                        certification_mean=k["city"].map(cert).astype(float),
                        follow_up_on_time=k["city"].map(fot).astype(float))
    staffed = a["staffed_s"].sum()
    busy = a["busy_s"].sum()
    return k.assign(occupancy=busy / staffed if staffed > 0 else np.nan,
                    certification_mean=(a["certification"] * a["busy_s"]).sum() / busy if busy > 0 else np.nan,
                    follow_up_on_time=on_time.mean() if len(fu) else np.nan)


@dataclass
class Replications:
    """KPIs of independent replications of one scenario, and their confidence intervals."""

    scenario: Scenario
    seed: int
    purpose: str
    frames: dict[tuple[str, ...], list[pd.DataFrame]] = field(default_factory=dict)

    def add(self, run: RunResult, groupings: Iterable[Sequence[str]]) -> None:
        for by in groupings:
            kp = compute_kpis(run, self.scenario, by)
            kp.insert(0, "replication", run.replication)
            self.frames.setdefault(tuple(by), []).append(kp)

    def kpis(self, by: Sequence[str] = ("city",)) -> pd.DataFrame:
        """Per-replication KPIs (one row per replication and group)."""
        return pd.concat(self.frames[tuple(by)], ignore_index=True)

    def summary(self, by: Sequence[str] = ("city",), level: float = 0.95) -> pd.DataFrame:
        """Long table: group, kpi, mean, half-width of the ``level`` t-interval, low, high, n."""
        return summarize(self.kpis(by), list(by) or ["all"], level)


def summarize(per_rep: pd.DataFrame, keys: list[str], level: float = 0.95) -> pd.DataFrame:
    """Mean and t confidence interval over replications of every KPI column."""
    cols = [c for c in per_rep.columns if c not in keys and c != "replication"]
    long = per_rep.melt(id_vars=keys + ["replication"], value_vars=cols, var_name="kpi")
    g = long.groupby(keys + ["kpi"], sort=False)["value"]
    res = g.agg(["mean", "std", "count"]).reset_index()
    tq = stats.t.ppf(0.5 + level / 2, np.maximum(res["count"] - 1, 1))
    res["half_width"] = np.where(res["count"] > 1, tq * res["std"] / np.sqrt(res["count"]), np.nan)
    res["low"] = res["mean"] - res["half_width"]
    res["high"] = res["mean"] + res["half_width"]
    return res.rename(columns={"count": "n"}).drop(columns="std")


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The ``level`` Student-t confidence interval of the mean of ``values``."""
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def replicate(
    scenario: Scenario,
    replications: int | None = None,
    *,
    seed: int | None = None,
    purpose: str = "run",
    cities: Iterable[str] | None = None,
    groupings: Iterable[Sequence[str]] = (("city",), ()),
    sink: Callable[[RunResult], None] | None = None,
    progress: bool = False,
    start: int = 0,
    map_fn: Mapper | None = None,
) -> Replications:
    """Run replications ``start``..n-1 and keep their KPIs; records go to ``sink`` and are dropped.

    A replication's numbers do not depend on the others, so runs of 0..k-1 and k..n-1 together
    give exactly the frames of one run of 0..n-1 (a search can look at a few first), and
    ``map_fn`` (a process pool's map: the caller owns the workers) can run them as separate
    jobs (``replication_kpis``) with the same frames. The records then stay in the workers:
    each calls its own copy of ``sink`` (a ``RunDir`` writes files, so it can be copied)."""
    n = scenario.replications if replications is None else replications
    root = scenario.seed if seed is None else seed
    reps = Replications(scenario, root, purpose)
    groupings = [tuple(g) for g in groupings]
    if map_fn is not None:
        wanted = None if cities is None else list(cities)
        out = map_fn(replication_kpis, [(scenario, root, purpose, r, wanted, groupings, sink)
                                        for r in range(start, n)])
        for k, by in enumerate(groupings):
            reps.frames[by] = [frames[k] for frames in out]
        return reps
    it: Iterable[int] = range(start, n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"simulating {scenario.name}", unit="rep")
    for rep in it:
        run = simulate(scenario, seed=root, replication=rep, purpose=purpose, cities=cities)
        reps.add(run, groupings)
        if sink is not None:
            sink(run)
    return reps


def replication_kpis(args: tuple) -> list[pd.DataFrame]:
    """One replication's KPI frames, one per grouping: a job for a worker, everything it needs
    in ``args`` (scenario, root seed, purpose, replication, cities or None, groupings, sink or
    None)."""
    scenario, seed, purpose, rep, cities, groupings, sink = args
    reps = replicate(scenario, rep + 1, seed=seed, purpose=purpose, cities=cities, groupings=groupings,
                     sink=sink, start=rep)
    return [reps.kpis(by) for by in groupings]


@contextmanager
def process_map(workers: int, progress: bool = False, desc: str = "simulating") -> Iterator[Mapper | None]:
    """A ``map_fn`` for ``replicate`` and ``compare``: an ordered map over ``workers`` spawned
    processes (None for one: this process), with a progress bar on stderr if ``progress``."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:

        def map_fn(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list:
            done = pool.map(fn, jobs)
            if progress:
                from tqdm import tqdm

                done = tqdm(done, total=len(jobs), desc=desc, unit="rep")
            return list(done)

        yield map_fn
