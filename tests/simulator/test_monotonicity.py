"""Monotonicity under common random numbers (style guide section 6.5, after pydesrap).

Each comparison runs both configurations on the same seed and replications, so the same
customers arrive wanting the same work; the paired differences then carry little noise.
"Never raises" is a one-sided paired t test: the mean increase must stay below
t(0.999, n-1) standard errors. Where the effect is large, the test also asserts that it is
there, paired t > 3 (a simulator that ignored the change would pass the one-sided test
trivially).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from simulator import simulate, single_queue
from simulator.kpi import compute_kpis
from simulator.scenario import AgentGroup, City, Overflow, Routing, Shift

REPS = 8


def _kpis(sc, reps: int = REPS, seed: int = 21, by=("city",)) -> pd.DataFrame:
    rows = []
    for rep in range(reps):
        k = compute_kpis(simulate(sc, seed=seed, replication=rep), sc, by)
        k["replication"] = rep
        rows.append(k)
    return pd.concat(rows, ignore_index=True)


def _paired(before: pd.Series, after: pd.Series) -> tuple[float, float, int]:
    """Mean of after - before, its standard error and n."""
    d = after.to_numpy(dtype=float) - before.to_numpy(dtype=float)
    d = d[~np.isnan(d)]
    se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else 0.0
    return float(d.mean()), float(se), int(d.size)


def assert_not_raised(before: pd.Series, after: pd.Series, what: str) -> float:
    """One-sided paired t test at 0.1 %: ``after`` is not larger than ``before`` beyond noise."""
    mean, se, n = _paired(before, after)
    assert n >= 3, what
    limit = stats.t.ppf(0.999, n - 1) * se + 1e-12
    assert mean <= limit, f"{what}: rose by {mean:.4g} (SE {se:.3g}, n {n})"
    return mean


def assert_lowered(before: pd.Series, after: pd.Series, what: str) -> None:
    """``after`` is clearly smaller (paired t > 3): the change had the expected effect."""
    mean, se, _ = _paired(before, after)
    assert mean < 0 and (se == 0 or -mean / se > 3), f"{what}: changed by {mean:.4g} (SE {se:.3g})"


# -- staffing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("agents", [(5, 6), (6, 7), (7, 10)])
def test_more_agents_never_raise_wait_or_abandonment_single_queue(agents):
    lo, hi = agents
    kw = {"arrival_rate_per_h": 60.0, "aht_s": 300.0, "patience_s": 240.0, "horizon_h": 16.0}
    a = _kpis(single_queue(agents=lo, **kw))
    b = _kpis(single_queue(agents=hi, **kw))
    assert_not_raised(a["asa_s"], b["asa_s"], "asa_s")
    assert_not_raised(a["abandon_rate"], b["abandon_rate"], "abandon_rate")
    assert_not_raised(a["p_wait"], b["p_wait"], "p_wait")
    assert_lowered(a["asa_s"], b["asa_s"], "asa_s")
    assert_lowered(a["abandon_rate"], b["abandon_rate"], "abandon_rate")
    # under CRN the offered load is the same customers
    assert (a["offered"].to_numpy() == b["offered"].to_numpy()).all()


def _two_cities(h, extra_b: int):
    """North overflows to South after 90 s; both work shifts; South gets ``extra_b`` agents."""
    shifts = (
        AgentGroup(name="early", headcount=3, shift=Shift(start_h=0.0, length_h=8.0)),
        AgentGroup(name="late", headcount=3, shift=Shift(start_h=6.0, length_h=8.0)),
    )
    south = (
        AgentGroup(name="early", headcount=2 + extra_b, shift=Shift(start_h=0.0, length_h=8.0)),
        AgentGroup(name="late", headcount=2, shift=Shift(start_h=5.0, length_h=9.0)),
    )
    return h.base_scenario(
        {
            "North": City(tickets_per_day=1300.0, agent_groups=shifts,
                          routing=Routing(policy="overflow", overflow=Overflow(after_s=90.0, to=("South",)))),
            "South": City(tickets_per_day=900.0, agent_groups=south, routing=Routing(policy="priority")),
        },
        horizon_h=14.0,
    )


def test_more_agents_never_raise_wait_or_abandonment_two_cities_with_shifts(h):
    a = _kpis(_two_cities(h, 0))
    b = _kpis(_two_cities(h, 3))
    for city in ("North", "South"):
        x, y = a[a["city"] == city], b[b["city"] == city]
        assert len(x) == len(y) == REPS
        assert_not_raised(x["asa_s"], y["asa_s"], f"{city} asa_s")
        assert_not_raised(x["abandon_rate"], y["abandon_rate"], f"{city} abandon_rate")
        assert_not_raised(x["first_response_p90_s"], y["first_response_p90_s"], f"{city} p90")
    s0, s1 = a[a["city"] == "South"], b[b["city"] == "South"]
    assert_lowered(s0["asa_s"], s1["asa_s"], "South asa_s")
    # North's tickets reach South's new agents through overflow: North's wait falls too
    n0, n1 = a[a["city"] == "North"], b[b["city"] == "North"]
    assert_lowered(n0["asa_s"], n1["asa_s"], "North asa_s")
    # occupancy of the enlarged city cannot rise when demand is the same
    assert_not_raised(s0["occupancy"], s1["occupancy"], "South occupancy")


# -- chatbot ----------------------------------------------------------------------------------
def _bot_city(h, penetration: float):
    return h.base_scenario(
        {"Bot": City(tickets_per_day=1000.0, chatbot_penetration=penetration,
                     agent_groups=(AgentGroup(name="all", headcount=7),))},
        horizon_h=10.0,
    )


def test_more_chatbot_penetration_never_raises_agent_volume(h):
    pens = (0.0, 0.3, 0.6, 0.9)
    runs = {p: [simulate(_bot_city(h, p), seed=5, replication=r).records for r in range(REPS)] for p in pens}
    for lo, hi in itertools.pairwise(pens):
        for r0, r1 in zip(runs[lo], runs[hi]):
            p0, p1 = r0[r0["kind"] == "primary"], r1[r1["kind"] == "primary"]
            # pathwise under CRN: whoever the bot resolves at a lower penetration it resolves
            # at a higher one, and the primary contacts reaching agents form a subset
            d0 = set(p0.loc[p0["outcome"] == "deflected", "arrival_s"])
            d1 = set(p1.loc[p1["outcome"] == "deflected", "arrival_s"])
            assert d0 <= d1
            to0 = set(p0.loc[p0["outcome"] != "deflected", "arrival_s"])
            to1 = set(p1.loc[p1["outcome"] != "deflected", "arrival_s"])
            assert to1 <= to0
        ans = {p: pd.Series([(x["outcome"] == "answered").sum() for x in runs[p]]) for p in (lo, hi)}
        assert_not_raised(ans[lo], ans[hi], f"agent-answered {lo}->{hi}")
        assert_lowered(ans[lo], ans[hi], f"agent-answered {lo}->{hi}")


# -- skills routing ---------------------------------------------------------------------------
def _language_city(h, policy: str, wait_s: float = 120.0):
    return h.base_scenario(
        {"Lang": City(
            tickets_per_day=900.0, languages={"uyghur": 0.3},
            routing=Routing(policy=policy, language_wait_s=wait_s),
            agent_groups=(AgentGroup(name="plain", headcount=5),
                          AgentGroup(name="speakers", headcount=2, languages=("uyghur",))),
        )},
        horizon_h=10.0,
    )


def test_skills_routing_lowers_the_mismatch_rate(h):
    fifo = _kpis(_language_city(h, "fifo"))
    skills = _kpis(_language_city(h, "skills"))
    assert (fifo["mismatch_rate"] > 0.4).all()  # fifo ignores language: ~5 of 7 agents mismatch
    assert_lowered(fifo["mismatch_rate"], skills["mismatch_rate"], "mismatch_rate")
    assert_not_raised(fifo["mismatch_rate"], skills["mismatch_rate"], "mismatch_rate")


def test_longer_language_wait_never_raises_mismatch(h):
    short = _kpis(_language_city(h, "skills", wait_s=0.0))
    long = _kpis(_language_city(h, "skills", wait_s=600.0))
    assert_not_raised(short["mismatch_rate"], long["mismatch_rate"], "mismatch_rate")
    assert_lowered(short["mismatch_rate"], long["mismatch_rate"], "mismatch_rate")
