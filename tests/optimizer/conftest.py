"""Scenario builders for the optimizer tests (fixtures return functions, since ``tests/`` has no package)."""

from __future__ import annotations

import pytest

from simulator.scenario import (
    AgentGroup,
    Channel,
    Chatbot,
    ChatbotLevel,
    City,
    Distribution,
    HandleTime,
    Planning,
    Profiles,
    Resolution,
    Routing,
    Scenario,
    Shift,
    Targets,
    TicketType,
    single_queue,
)

ONLY_SHARE = {"mean_first_response_h": None, "city_score_min": None, "national_score_min": None,
              "dialect_coverage_min": None}
# a morning and an afternoon peak, quiet nights
PROFILE = (0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.5, 0.9, 1.4, 1.8, 2.0, 1.9,
           1.5, 1.6, 1.8, 1.8, 1.6, 1.3, 1.1, 1.0, 0.8, 0.6, 0.5, 0.4)


def solo_scenario(rate_per_h: float, aht_s: float, patience_s: float | None, target_s: float,
                  share: float) -> Scenario:
    """One city, one phone queue, one skill, flat demand, one 24/7 pattern, no agents yet.

    Certification has no effect here, so agents are the only lever.
    """
    sc = single_queue(arrival_rate_per_h=rate_per_h, agents=0, aht_s=aht_s, patience_s=patience_s,
                      target_s=target_s, horizon_h=24.0)
    planning = Planning(
        shift_patterns={"all": Shift(start_h=0.0, length_h=24.0)},
        max_hires_per_city=0,
        targets=Targets(channel_target_share=share, **ONLY_SHARE),
    )
    # certification would make agents faster (a second lever); here an agent is an agent
    flat = Resolution(handle_factor_per_cert_level=1.0, fcr_per_cert_level=0.0)
    return sc.model_copy(update={"planning": planning, "resolution": flat})


def patterns_scenario(*, tickets_per_day: float = 900.0, bot_levels: bool = True, share: float = 0.8,
                      patterns: dict[str, Shift] | None = None, existing: int = 0) -> Scenario:
    """One city, phone only (half the tickets chatbot-eligible), an hour-of-day profile, a few patterns.

    Certification changes nothing (factor 1, no FCR gain) and everything is resolved first time,
    so the only levers are seats on the patterns, the chatbot level and triage.
    """
    phone = Channel(synchronous=True, target_s=60.0, patience=Distribution(dist="exponential", mean_s=240.0))
    exp = lambda m: HandleTime(default=Distribution(dist="exponential", mean_s=m))
    levels = (ChatbotLevel(penetration=0.4, cost_per_month=4_000.0),) if bot_levels else ()
    planning = Planning(
        shift_patterns=patterns or {
            "day": Shift(start_h=8.0, length_h=8.0),
            "late": Shift(start_h=12.0, length_h=8.0),
            "night": Shift(start_h=20.0, length_h=12.0),
        },
        chatbot_levels=levels,
        triage_cost=1_500.0,
        max_hires_per_city=0,
        targets=Targets(channel_target_share=share, **ONLY_SHARE),
    )
    groups = (AgentGroup(name="base", headcount=existing, shift=Shift(start_h=0.0, length_h=24.0)),) if existing else ()
    return Scenario(
        name="patterns",
        horizon_days=1.0,
        channels={"phone": phone},
        channel_mix={"phone": 1.0},
        ticket_types={
            "simple": TicketType(handle=exp(240.0), fcr=1.0, chatbot_eligible=True),
            "hard": TicketType(handle=exp(420.0), fcr=1.0),
        },
        type_mix={"simple": 0.5, "hard": 0.5},
        chatbot=Chatbot(response_s=30.0, channels=("phone",)),
        resolution=Resolution(handle_factor_per_cert_level=1.0, fcr_per_cert_level=0.0),
        profiles=Profiles(hour_of_day=PROFILE),
        cities={"Solo": City(tickets_per_day=tickets_per_day, chatbot_penetration=0.0, agent_groups=groups)},
        planning=planning,
    )


def tiny_national(*, targets: Targets | None = None, **planning_kw) -> Scenario:
    """Two small cities (one with a local language), phone + email, one day: quick to simulate."""
    phone = Channel(synchronous=True, target_s=60.0, patience=Distribution(dist="exponential", mean_s=240.0))
    email = Channel(synchronous=False, target_s=4 * 3600.0)
    planning = Planning(
        shift_patterns={"day": Shift(start_h=8.0, length_h=8.0), "late": Shift(start_h=14.0, length_h=8.0),
                        "night": Shift(start_h=22.0, length_h=10.0)},
        targets=targets or Targets(city_score_min=None, national_score_min=None),
        **planning_kw,
    )
    day = Shift(start_h=8.0, length_h=10.0)
    return Scenario(
        name="tiny_national",
        horizon_days=1.0,
        replications=6,
        channels={"phone": phone, "email": email},
        channel_mix={"phone": 0.7, "email": 0.3},
        ticket_types={"inquiry": TicketType(handle=HandleTime(default=Distribution(dist="exponential", mean_s=300.0)),
                                            fcr=0.9, chatbot_eligible=True)},
        type_mix={"inquiry": 1.0},
        chatbot=Chatbot(response_s=30.0, channels=("email",)),
        profiles=Profiles(hour_of_day=PROFILE),
        cities={
            "North": City(tickets_per_day=500.0, chatbot_penetration=0.45, routing=Routing(policy="priority"),
                          agent_groups=(AgentGroup(name="day", headcount=4, shift=day),)),
            "West": City(tickets_per_day=400.0, chatbot_penetration=0.45, languages={"uyghur": 0.3},
                         agent_groups=(AgentGroup(name="day", headcount=3, shift=day),
                                       AgentGroup(name="speakers", headcount=1, shift=day, languages=("uyghur",)))),
        },
        planning=planning,
    )


@pytest.fixture(scope="session")
def solo():
    return solo_scenario


@pytest.fixture(scope="session")
def patterns():
    return patterns_scenario


@pytest.fixture(scope="session")
def national():
    return tiny_national
