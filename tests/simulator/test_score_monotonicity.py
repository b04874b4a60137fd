"""More agents, dialect coverage, certification or chatbot never lower a city's expected score.

Each case simulates one city of the March baseline alone (its numbers equal those of the
national run), before and after one improvement, on common random numbers, and tests the
paired per-replication differences of the calibrated overall score: the mean change may not
be negative beyond noise (one-sided, 2.5 standard errors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.calibration import model_for
from simulator.kpi import replicate
from simulator.loader import load_scenario
from simulator.scenario import AgentGroup, Scenario

BASELINE = Path(__file__).parents[2] / "scenarios" / "march_2025.yaml"
REPS = 3
pytestmark = pytest.mark.slow


def _scores(sc: Scenario, city: str) -> np.ndarray:
    reps = replicate(sc, REPS, purpose="run", cities=[city], groupings=(("city",),))
    k = reps.kpis(("city",))
    k = k[k["city"].astype(str) == city].set_index("replication")
    return model_for(sc).scores(k)["overall"].to_numpy()


def _with_city(sc: Scenario, city: str, **changes) -> Scenario:
    cities = dict(sc.cities)
    cities[city] = cities[city].model_copy(update=changes)
    return sc.model_copy(update={"cities": cities})


def more_agents(sc: Scenario, city: str, k: int) -> Scenario:
    g = AgentGroup(name="extra", headcount=k, shift=sc.cities[city].agent_groups[0].shift)
    return _with_city(sc, city, agent_groups=sc.cities[city].agent_groups + (g,))


def more_dialect(sc: Scenario, city: str, k: int) -> Scenario:
    langs = tuple(sc.cities[city].languages)
    groups = tuple(
        g.model_copy(update={"languages": langs}) if i < k else g
        for i, g in enumerate(sc.cities[city].agent_groups)
    )
    return _with_city(sc, city, agent_groups=groups)


def more_certification(sc: Scenario, city: str, k: int) -> Scenario:
    groups = tuple(
        g.model_copy(update={"certification": min(5, g.certification + 1)}) if i < k else g
        for i, g in enumerate(sc.cities[city].agent_groups)
    )
    return _with_city(sc, city, agent_groups=groups)


def more_chatbot(sc: Scenario, city: str, k: int) -> Scenario:
    return _with_city(sc, city, chatbot_penetration=min(0.9, sc.cities[city].chatbot_penetration + 0.1 * k))


CHANGES = {"agents": more_agents, "dialect": more_dialect, "certification": more_certification,
           "chatbot": more_chatbot}


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    city=st.sampled_from(["Hohhot", "Chengdu", "Guangzhou"]),
    change=st.sampled_from(sorted(CHANGES)),
    k=st.integers(1, 4),
)
def test_improvements_never_lower_the_expected_score(city: str, change: str, k: int) -> None:
    sc = load_scenario(BASELINE)
    if change == "dialect" and not sc.cities[city].languages:
        change = "agents"
    before = _scores(sc, city)
    after = _scores(CHANGES[change](sc, city, k), city)
    d = after - before
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert d.mean() + 2.5 * max(se, 1e-3) >= 0, f"{city} {change}+{k}: score change {d.mean():.3f} (se {se:.3f})"


def test_dialect_training_raises_hohhots_score() -> None:
    """Not only 'not lower': covering Hohhot's Mongolian speakers lifts its score clearly."""
    sc = load_scenario(BASELINE)
    before = _scores(sc, "Hohhot")
    after = _scores(more_dialect(sc, "Hohhot", len(sc.cities["Hohhot"].agent_groups)), "Hohhot")
    assert (after - before).mean() > 0.3
