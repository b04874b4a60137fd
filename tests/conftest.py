"""Shared fixtures of the simulator tests: small scenarios built in Python, and oracles.

Scenarios are built with the pydantic models of ``simulator.scenario`` (no YAML), small
enough that one replication takes a few tens of milliseconds. Fixtures are session-scoped
(scenarios are frozen, helpers are pure functions) so Hypothesis tests may use them.

Helpers are handed out as fixtures because ``tests/`` has no ``__init__.py`` and runs under
``--import-mode=importlib``: a test module cannot import another test module.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from simulator.demand import CityDemand
from simulator.engine import codebook
from simulator.scenario import (
    AgentGroup,
    Channel,
    Chatbot,
    City,
    Distribution,
    HandleTime,
    Routing,
    Scenario,
    Shift,
    TicketType,
    Tier,
)
from simulator.streams import CityStreams

HOUR = 3600.0
DAY = 86400.0


def exp(mean_s: float) -> Distribution:
    return Distribution(dist="exponential", mean_s=mean_s)


def lognormal(mean_s: float, cv: float) -> Distribution:
    return Distribution(dist="lognormal", mean_s=mean_s, cv=cv)


def base_scenario(cities: dict[str, City], *, horizon_h: float = 12.0, seed: int = 11, **kw) -> Scenario:
    """Two synchronous channels and one asynchronous, two ticket types, two tiers."""
    fields: dict = {
        "name": "crn",
        "horizon_days": horizon_h / 24.0,
        "seed": seed,
        "channels": {
            "phone": Channel(synchronous=True, target_s=60.0, patience=exp(240.0), retry_probability=0.3,
                             retry_delay=exp(900.0)),
            "chat": Channel(synchronous=True, target_s=30.0, patience=lognormal(300.0, 0.8)),
            "email": Channel(synchronous=False, target_s=4 * HOUR),
        },
        "channel_mix": {"phone": 0.5, "chat": 0.3, "email": 0.2},
        "ticket_types": {
            "simple": TicketType(handle=HandleTime(default=exp(240.0)), fcr=0.9, chatbot_eligible=True),
            "complex": TicketType(
                handle=HandleTime(default=lognormal(600.0, 0.7), by_channel={"email": exp(420.0)}),
                fcr=0.7, follow_up=True, fast_lane=False,
            ),
        },
        "type_mix": {"simple": 0.65, "complex": 0.35},
        "tiers": {"gold": Tier(share=0.2, rank=0), "std": Tier(share=0.8, rank=1)},
        "chatbot": Chatbot(response_s=30.0, channels=("chat", "email")),
        "cities": cities,
    }
    fields.update(kw)
    return Scenario(**fields)


def three_city_scenario() -> Scenario:
    """Alma (fifo, 24/7), Bexley (skills, a local language, shifts, a chatbot), Corvo (priority)."""
    return base_scenario(
        {
            "Alma": City(
                tickets_per_day=480.0,
                agent_groups=(AgentGroup(name="all", headcount=5),),
            ),
            "Bexley": City(
                tickets_per_day=400.0,
                languages={"kazakh": 0.3},
                chatbot_penetration=0.3,
                routing=Routing(policy="skills", language_wait_s=90.0),
                agent_groups=(
                    AgentGroup(name="day", headcount=3, shift=Shift(start_h=0.0, length_h=8.0)),
                    AgentGroup(name="late", headcount=2, shift=Shift(start_h=6.0, length_h=6.0)),
                    AgentGroup(name="kz", headcount=1, languages=("kazakh",)),
                ),
            ),
            "Corvo": City(
                tickets_per_day=360.0,
                tier_mix={"gold": 0.4, "std": 0.6},
                routing=Routing(policy="priority"),
                agent_groups=(AgentGroup(name="all", headcount=4),),
            ),
        }
    )


def with_city(sc: Scenario, name: str, **changes) -> Scenario:
    """A validated copy of ``sc`` with fields of city ``name`` replaced (or the city added)."""
    cities = dict(sc.cities)
    if name in cities:
        cities[name] = City.model_validate({**cities[name].model_dump(), **changes})
    else:
        cities[name] = City(**changes)
    return Scenario.model_validate({**sc.model_dump(), "cities": cities})


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Records with categoricals as plain strings (categories depend on the set of cities)."""
    out = frame.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.reset_index(drop=True)


def frame_digest(frame: pd.DataFrame) -> str:
    """A hash of a frame's values (order-sensitive), equal across processes."""
    h = pd.util.hash_pandas_object(plain(frame).astype(str), index=False).to_numpy()
    return hashlib.sha256(h.tobytes()).hexdigest()


def sampled_arrivals(
    sc: Scenario, city: str, seed: int, replication: int = 0, purpose: str = "run"
) -> pd.DataFrame:
    """Every primary arrival the demand sampler draws for ``city``, as a frame with names.

    This is what the engine must see (the engine draws its streams the same way); tests
    compare records against it.
    """
    book = codebook(sc)
    d = CityDemand(sc, city, book.languages)
    cols: dict[str, list] = {k: [] for k in ("time_s", "channel", "ttype", "tier", "lang", "handle_s",
                                            "deadline_s", "deflected", "lost")}
    for day in d.days(CityStreams(seed, purpose, replication, city)):
        for k, col in cols.items():
            col.extend(getattr(day, k))
    langs = book.languages
    return pd.DataFrame(
        {
            "arrival_s": np.array(cols["time_s"], dtype=float),
            "channel": [d.channels[i] for i in cols["channel"]],
            "ticket_type": [d.types[i] for i in cols["ttype"]],
            "tier": [d.tiers[i] for i in cols["tier"]],
            "language": [langs[i] if i >= 0 else None for i in cols["lang"]],
            "handle_s": np.array(cols["handle_s"], dtype=float),
            "deadline_s": np.array(cols["deadline_s"], dtype=float),
            "deflected": np.array(cols["deflected"], dtype=bool),
            "lost": np.array(cols["lost"], dtype=bool),
        }
    )


def shift_windows(shift: Shift, horizon_s: float) -> list[tuple[float, float]]:
    """On-shift intervals of a shift worked every day, computed here independently of the engine."""
    if set(shift.days) != {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}:
        raise NotImplementedError("only every-day shifts")
    out = []
    for d in range(-1, math.ceil(horizon_s / DAY) + 1):
        s = d * DAY + shift.start_h * HOUR
        e = s + shift.length_h * HOUR
        if e > 0 and s < horizon_s:
            out.append((max(s, 0.0), min(e, horizon_s)))
    return out


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis writes a patch for a failing example with libcst, whose import raises a
    # DeprecationWarning (mypy_extensions.TypedDict); under filterwarnings=error that turns a
    # readable failure into an INTERNALERROR.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:libcst.*")


class Helpers:
    """Namespace handed to tests through the ``h`` fixture."""

    exp = staticmethod(exp)
    lognormal = staticmethod(lognormal)
    base_scenario = staticmethod(base_scenario)
    three_city_scenario = staticmethod(three_city_scenario)
    with_city = staticmethod(with_city)
    plain = staticmethod(plain)
    frame_digest = staticmethod(frame_digest)
    sampled_arrivals = staticmethod(sampled_arrivals)
    shift_windows = staticmethod(shift_windows)


@pytest.fixture(scope="session")
def h() -> type[Helpers]:
    """Scenario builders and oracles shared by the simulator tests."""
    return Helpers


@pytest.fixture(scope="session")
def three_city() -> Scenario:
    """Three independent cities (no overflow): Alma fifo, Bexley skills+shifts+bot, Corvo priority."""
    return three_city_scenario()


@pytest.fixture(scope="session")
def records_equal() -> Callable[[pd.DataFrame, pd.DataFrame], None]:
    """``assert_frame_equal`` on plain-string copies (category sets may legitimately differ)."""

    def check(a: pd.DataFrame, b: pd.DataFrame) -> None:
        pd.testing.assert_frame_equal(plain(a), plain(b), check_exact=True)

    return check
