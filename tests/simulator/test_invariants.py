"""Invariants of every run (style guide section 6.1), Hypothesis over small random scenarios.

The records are checked against an independent account of what must have happened:

- every primary arrival the demand sampler drew appears exactly once as a primary row, with
  its own channel, type, tier and language, lost / deflected exactly when its draws say so;
- nobody is answered before arriving, after the horizon, after hanging up, off shift, or by
  another city's agent without the overflow flag; a mismatch is flagged exactly when the
  agent's group does not speak the ticket's language;
- staffed time is what the shifts say, busy time lies between 0 and staffed time;
- with agents to spare nobody waits;
- the model's clock runs every event as SimPy's own Timeouts would.

Known engine bugs are excluded from the random checks and pinned by the strict ``xfail``
tests at the end of the file (remove the exclusion when the xfail starts passing).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import simpy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from simulator import simulate
from simulator.scenario import (
    AgentGroup,
    Channel,
    Chatbot,
    City,
    Distribution,
    FollowUp,
    HandleTime,
    Outage,
    Overflow,
    Resolution,
    Routing,
    Scenario,
    Shift,
    TicketType,
    Tier,
)

HOUR = 3600.0
EPS = 1e-6
# derandomize: a fixed set of examples, so the verdict is deterministic; no explain phase (its
# report imports a formatter whose DeprecationWarning turns a failure into an INTERNALERROR)
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink)
SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, database=None, phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow],
)


def _exp(m: float) -> Distribution:
    return Distribution(dist="exponential", mean_s=m)


# -- the random scenarios -------------------------------------------------------------------
def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def _group(draw, name: str, languages: tuple[str, ...], max_agents: int = 8) -> AgentGroup:
    if draw(st.booleans()):
        shift = Shift(start_h=0.0, length_h=24.0)
    else:
        shift = Shift(start_h=draw(_floats(0.0, 23.5)), length_h=draw(_floats(1.0, 24.0)))
    langs = tuple(lang for lang in languages if draw(st.booleans()))
    return AgentGroup(
        name=name, headcount=draw(st.integers(1, max_agents)), shift=shift, languages=langs,
        certification=draw(st.integers(1, 3)),
    )


@st.composite
def scenarios(draw, *, max_agents: int = 8) -> Scenario:
    horizon_h = draw(st.sampled_from([4.0, 6.0, 9.0]))
    patience = draw(st.one_of(st.none(), _floats(20.0, 900.0)))
    channels = {
        "phone": Channel(
            synchronous=True, target_s=60.0, patience=None if patience is None else _exp(patience),
            retry_probability=draw(st.sampled_from([0.0, 0.4, 1.0])), retry_delay=_exp(draw(_floats(30, 1800))),
        ),
        "email": Channel(synchronous=False, target_s=HOUR),
    }
    phone = draw(st.sampled_from([1.0, 0.7, 0.4]))
    simple = draw(st.sampled_from([1.0, 0.6, 0.3]))
    types = {
        "simple": TicketType(
            handle=HandleTime(default=_exp(draw(_floats(30.0, 600.0)))), fcr=draw(_floats(0.3, 1.0)),
            chatbot_eligible=draw(st.booleans()), fast_lane=draw(st.booleans()),
        ),
        "complex": TicketType(
            handle=HandleTime(default=Distribution(mean_s=draw(_floats(120.0, 1200.0)), cv=draw(_floats(0.2, 1.5)))),
            fcr=draw(_floats(0.3, 1.0)), follow_up=draw(st.booleans()),
        ),
    }
    tiers = (
        {"all": Tier(share=1.0, rank=0)} if draw(st.booleans())
        else {"vip": Tier(share=0.3, rank=0), "std": Tier(share=0.7, rank=1)}
    )
    names = ["Ash", "Birch"][: draw(st.integers(1, 2))]
    outages = ()
    if draw(st.booleans()):
        outages = (
            Outage(start_h=draw(_floats(0.0, horizon_h - 0.5)), duration_h=draw(_floats(0.2, 2.0)),
                   cities=draw(st.sampled_from(["all", (names[0],)])), loss_probability=draw(_floats(0.0, 1.0))),
        )
    cities = {}
    for i, name in enumerate(names):
        langs = {}
        if draw(st.booleans()):
            langs["loc"] = draw(_floats(0.05, 0.5))
            if i == 1 and draw(st.booleans()):
                langs["alt"] = 0.2
        policy = draw(st.sampled_from(["fifo", "priority", "skills"] + (["overflow"] if len(names) == 2 else [])))
        overflow = Overflow(after_s=draw(_floats(0.0, 600.0)), to=(names[1 - i],)) if policy == "overflow" else None
        groups = [draw(_group("g0", tuple(langs), max_agents))]
        if draw(st.booleans()):
            groups.append(draw(_group("g1", tuple(langs), max_agents)))
        cities[name] = City(
            tickets_per_day=24.0 * draw(_floats(2.0, 60.0)),
            channel_mix={"phone": phone, "email": round(1.0 - phone, 10)} if phone < 1 else {"phone": 1.0},
            type_mix={"simple": simple, "complex": round(1.0 - simple, 10)},
            languages=langs,
            chatbot_penetration=draw(st.sampled_from([0.0, 0.3, 0.9])),
            routing=Routing(policy=policy, language_wait_s=draw(_floats(0.0, 200.0)), overflow=overflow),
            agent_groups=tuple(groups),
            initial_backlog=draw(st.sampled_from([{}, {"email": 3}, {"phone": 2, "email": 1}])),
            volume_cv=draw(st.sampled_from([0.0, 0.4])),
        )
    return Scenario(
        name="random",
        horizon_days=horizon_h / 24.0,
        seed=draw(st.integers(0, 2**31)),
        channels=channels,
        channel_mix={"phone": 1.0},
        ticket_types=types,
        tiers=tiers,
        resolution=Resolution(
            recontact_probability=draw(_floats(0.0, 1.0)), recontact_delay=_exp(draw(_floats(300.0, 3 * HOUR))),
            max_attempts=draw(st.integers(1, 4)),
        ),
        follow_up=FollowUp(due_s=draw(_floats(600.0, 4 * HOUR)), handle=_exp(120.0)),
        chatbot=Chatbot(response_s=draw(st.sampled_from([0.0, 30.0])),
                        channels=draw(st.sampled_from([("phone", "email"), ("email",), ()]))),
        outages=outages,
        cities=cities,
    )


# -- the checks -----------------------------------------------------------------------------
def _escalated(sc: Scenario, frame: pd.DataFrame) -> np.ndarray:
    """Contacts that go through the chatbot first (and reach agents response_s later)."""
    if sc.chatbot.response_s <= 0:
        return np.zeros(len(frame), dtype=bool)
    ok_type = frame["ticket_type"].astype(str).map(lambda t: sc.ticket_types[t].chatbot_eligible)
    ok_channel = frame["channel"].astype(str).isin(sc.chatbot.channels)
    return (ok_type.to_numpy(dtype=bool) & ok_channel.to_numpy(dtype=bool))


def check_primary_arrivals(sc: Scenario, run, h) -> None:
    """Each sampled arrival: one primary row, same attributes, lost/deflected as drawn, in time."""
    rec = run.records
    H = sc.horizon_s
    for city in sc.cities:
        s = h.sampled_arrivals(sc, city, run.seed, run.replication, run.purpose)
        p = h.plain(rec[(rec["city"] == city) & (rec["kind"] == "primary")])
        assert p["arrival_s"].is_unique
        assert p["arrival_s"].isin(s["arrival_s"]).all(), "a primary row nobody sampled"
        assert len(p) == len(s), f"{city}: {len(s)} arrivals sampled, {len(p)} primary rows"
        m = s.merge(p, on="arrival_s", suffixes=("", "_rec"), validate="one_to_one")
        assert len(m) == len(s)
        for col in ("channel", "ticket_type", "tier", "language"):
            assert (m[col].fillna("-") == m[col + "_rec"].fillna("-")).all(), col
        assert ((m["outcome"] == "lost") == m["lost"]).all()
        assert ((m["outcome"] == "deflected") == (m["deflected"] & ~m["lost"])).all()
        assert (m.loc[m["outcome"] == "lost", "arrival_s"].map(lambda t, c=city: _in_outage(sc, c, t))).all()

        # patience: answered no later than the deadline, abandoned only if it passed by the horizon
        deadline = m["deadline_s"] + np.where(_escalated(sc, m), sc.chatbot.response_s, 0.0)
        answered = (m["outcome"] == "answered").to_numpy()
        late = answered & (m["answer_s"].to_numpy() > deadline.to_numpy() + EPS)
        assert not late.any(), m[late].head()
        ab = (m["outcome"] == "abandoned").to_numpy()
        assert (deadline.to_numpy()[ab] <= H + EPS).all()
        un = (m["outcome"] == "unserved").to_numpy()
        assert (deadline.to_numpy()[un] > H - EPS).all()


def _in_outage(sc: Scenario, city: str, t: float) -> bool:
    return any(
        o.start_h * HOUR <= t < (o.start_h + o.duration_h) * HOUR
        for o in sc.outages
        if o.cities == "all" or city in o.cities
    )


def check_rows(sc: Scenario, run) -> None:
    """Row-level consistency of outcomes, times, groups, flags and kinds."""
    r = run.records
    H = sc.horizon_s
    out = r["outcome"].astype(str)
    ans, defl = out == "answered", out == "deflected"
    wait = r["answer_s"] - r["arrival_s"]
    assert (r["arrival_s"] >= 0).all() and (r["arrival_s"] < H).all()
    assert (wait[ans] >= 0).all(), "negative wait"
    assert (r.loc[ans, "answer_s"] <= H).all()
    assert np.allclose(wait[defl], sc.chatbot.response_s)
    assert r.loc[defl, "resolved"].all()
    assert r.loc[ans, "group"].notna().all()
    gone = ~(ans | defl)
    assert r.loc[gone, "answer_s"].isna().all() and r.loc[~ans, "group"].isna().all()
    assert not r.loc[gone, "resolved"].any() and not r.loc[~ans, "mismatch"].any()
    assert not r.loc[~ans, "overflowed"].any()
    # only customers on a line with finite patience hang up
    patient = [n for n, c in sc.channels.items() if c.patience is not None]
    assert r.loc[out == "abandoned", "channel"].astype(str).isin(patient).all()
    # kinds and attempts
    kind = r["kind"].astype(str)
    first = kind.isin(["primary", "backlog"])
    assert (r.loc[first, "attempt"] == 0).all()
    assert (r.loc[~first, "attempt"] >= 1).all()
    assert (r["attempt"] < sc.resolution.max_attempts).all()
    # every secondary contact has a cause among the records
    assert (kind == "retry").sum() <= (out == "abandoned").sum()
    assert (kind == "outage_return").sum() <= (out == "lost").sum()
    assert (kind == "recontact").sum() <= (ans & ~r["resolved"]).sum()
    if not any(c.retry_probability > 0 for c in sc.channels.values()):
        assert (kind == "retry").sum() == 0
    if not sc.outages:
        assert (out == "lost").sum() == 0
    backlog = sum(sum(c.initial_backlog.values()) for c in sc.cities.values())
    assert (kind == "backlog").sum() == backlog


def _gaps_longer_than_jobs(shift: Shift) -> bool:
    """Off-shift gaps of at least 8 h (no job in these scenarios runs into the next shift)."""
    return shift.length_h <= 16.0 or shift.length_h >= 24.0


def check_agents(sc: Scenario, run, h) -> None:
    """Who answered: own city unless overflowed, on shift, mismatch flag right; occupancy."""
    r = run.records
    H = sc.horizon_s
    groups = {
        f"{c}/{g.name}": (c, g) for c, city in sc.cities.items() for g in city.agent_groups
    }
    a = h.plain(r[r["outcome"] == "answered"])
    home = a["group"].map(lambda g: groups[g][0])
    assert ((home != a["city"]) == a["overflowed"]).all()
    for name, (c, g) in groups.items():
        rows = a[a["group"] == name]
        wins = h.shift_windows(g.shift, H)
        t = rows["answer_s"].to_numpy()
        on = np.zeros(len(t), dtype=bool)
        for s, e in wins:
            on |= (t >= s - EPS) & (t <= e + EPS)
        assert on.all(), f"{name} answered off shift at {t[~on][:3]}"
        lang = rows["language"]
        mism = lang.notna() & ~lang.isin(g.languages)
        assert (mism == rows["mismatch"]).all(), name
        ag = run.agents[(run.agents["city"] == c) & (run.agents["group"] == g.name)]
        assert len(ag) == 1
        scheduled = g.headcount * sum(e - s for s, e in wins)
        staffed = float(ag["staffed_s"].iloc[0])  # scheduled time plus overtime past shift ends
        busy = float(ag["busy_s"].iloc[0])
        assert staffed >= scheduled * (1 - 1e-9) - EPS
        if len(wins) == 1 and wins[0] == (0.0, H):  # on shift all along: no overtime possible
            assert math.isclose(staffed, scheduled, rel_tol=1e-9, abs_tol=EPS)
        assert busy >= 0.0
        assert busy <= staffed * (1 + 1e-9) + EPS, (name, busy, staffed)
        if len(rows) == 0 and not len(run.follow_ups):
            assert busy == 0.0
        assert staffed <= g.headcount * H * (1 + 1e-9), (name, staffed, g.headcount * H)
    # follow-ups: created by resolved answered contacts of follow-up types, done after creation
    fu = run.follow_ups
    done = fu["done_s"].notna()
    assert (fu.loc[done, "done_s"] >= fu.loc[done, "created_s"]).all()
    assert (fu["due_s"] > fu["created_s"]).all()
    fu_types = [n for n, t in sc.ticket_types.items() if t.follow_up]
    assert len(fu) <= (a["resolved"] & a["ticket_type"].isin(fu_types)).sum()


@SETTINGS
@given(sc=scenarios())
def test_invariants_hold_on_random_scenarios(sc, h):
    run = simulate(sc, replication=1)
    check_primary_arrivals(sc, run, h)
    check_rows(sc, run)
    check_agents(sc, run, h)


@SETTINGS
@given(sc=scenarios())
def test_the_clock_runs_every_event_as_simpy_would(sc):
    """``Clock``'s bare calls against the same timers as SimPy Timeouts on a plain environment:
    identical frames, so the clock keeps SimPy's times and order (ties included) everywhere."""
    fast = simulate(sc, replication=1)
    ref = simulate(sc, replication=1, clock=simpy.Environment)
    for a, b in [(fast.records, ref.records), (fast.agents, ref.agents), (fast.follow_ups, ref.follow_ups)]:
        pd.testing.assert_frame_equal(a, b, check_exact=True)


@settings(max_examples=15, deadline=None, derandomize=True, database=None, phases=PHASES)
@given(
    rate_h=_floats(5.0, 120.0),
    patience=st.one_of(st.none(), _floats(1.0, 300.0)),
    policy=st.sampled_from(["fifo", "priority", "skills"]),
    lang_share=_floats(0.0, 0.6),
    response_s=st.sampled_from([0.0, 30.0]),
    seed=st.integers(0, 1000),
)
def test_agents_to_spare_means_nobody_waits(rate_h, patience, policy, lang_share, response_s, seed):
    """500 agents (all speaking the local language) for at most 120 tickets an hour."""
    sc = Scenario(
        horizon_days=4 / 24,
        seed=seed,
        channels={"phone": Channel(synchronous=True, target_s=20.0,
                                   patience=None if patience is None else _exp(patience))},
        ticket_types={
            "a": TicketType(handle=HandleTime(default=_exp(600.0)), chatbot_eligible=True),
            "b": TicketType(handle=HandleTime(default=Distribution(mean_s=900.0, cv=1.2))),
        },
        type_mix={"a": 0.5, "b": 0.5},
        tiers={"vip": Tier(share=0.3, rank=0), "std": Tier(share=0.7, rank=1)},
        chatbot=Chatbot(response_s=response_s, channels=("phone",)),
        cities={"Solo": City(
            tickets_per_day=24 * rate_h, languages={"loc": lang_share} if lang_share > 0 else {},
            chatbot_penetration=0.2, routing=Routing(policy=policy),
            agent_groups=(AgentGroup(name="many", headcount=500, languages=("loc",) if lang_share > 0 else ()),),
        )},
    )
    run = simulate(sc)
    r = run.records
    out = r["outcome"].astype(str)
    assert (out == "answered").sum() > 0
    # the only contacts not answered: escalations still with the chatbot at the horizon
    unserved = r[out == "unserved"]
    assert (unserved["arrival_s"] >= sc.horizon_s - response_s).all()
    assert set(out) <= {"answered", "deflected", "unserved"}, out.value_counts()
    a = r[out == "answered"]
    wait = (a["answer_s"] - a["arrival_s"]).to_numpy()
    bot = _escalated(sc, a) & (a["kind"] == "primary").to_numpy()
    assert np.allclose(wait[~bot], 0.0, atol=1e-9)
    assert np.allclose(wait[bot], response_s, atol=1e-9)  # the bot's turn, then an agent at once
    assert not a["mismatch"].any()


# -- Little's law on the service stage ------------------------------------------------------
@pytest.mark.parametrize("agents,rate_h", [(3, 30.0), (8, 80.0)])
def test_littles_law_for_busy_agents(agents, rate_h):
    """Mean number of busy agents (agents' own clock) = throughput x mean handle time.

    L = busy_s / horizon is accumulated by the agents, lambda * W from the records and the
    configured handle time: independent accounts of the same work. No abandonment, 24/7
    staff, fcr 1 (no re-contacts), so every answered contact takes one exponential(AHT).
    """
    aht = 300.0
    ratios = []
    for rep in range(4):
        sc = Scenario(
            horizon_days=1.0, seed=77,
            channels={"phone": Channel(synchronous=True, target_s=20.0)},
            ticket_types={"call": TicketType(handle=HandleTime(default=_exp(aht)), fcr=1.0)},
            type_mix={"call": 1.0}, chatbot=Chatbot(channels=()),
            cities={"Solo": City(tickets_per_day=24 * rate_h,
                                 agent_groups=(AgentGroup(name="all", headcount=agents),))},
        )
        run = simulate(sc, replication=rep)
        n = int((run.records["outcome"] == "answered").sum())
        L = run.agents["busy_s"].sum() / sc.horizon_s
        lam_w = n * aht / sc.horizon_s
        # 4 SE of a sum of n exponentials, plus at most one job per agent cut at the horizon
        tol = (4 * math.sqrt(n) * aht + agents * 5 * aht) / sc.horizon_s
        assert abs(L - lam_w) <= tol, (rep, L, lam_w, tol)
        assert L <= agents
        ratios.append(L / lam_w)
    assert abs(np.mean(ratios) - 1.0) < 0.05


# -- known engine bugs, pinned --------------------------------------------------------------
def test_escalated_arrivals_at_the_horizon_are_recorded(h):
    sc = Scenario(
        horizon_days=2 / 24,
        ticket_types={"q": TicketType(handle=HandleTime(default=_exp(200.0)), chatbot_eligible=True)},
        type_mix={"q": 1.0}, chatbot=Chatbot(response_s=300.0, channels=("phone",)),
        cities={"A": City(tickets_per_day=2400.0, agent_groups=(AgentGroup(name="g", headcount=50),))},
    )
    run = simulate(sc, seed=1)
    sampled = h.sampled_arrivals(sc, "A", seed=1)
    assert (sampled["arrival_s"] >= sc.horizon_s - 300.0).sum() > 0  # the case is exercised
    assert (run.records["kind"] == "primary").sum() == len(sampled)


def _impatient_language_city(**city) -> Scenario:
    """Patience ~60 s (lognormal, cv 0.001), tickets free to go elsewhere only after 120 s."""
    patience = Distribution(dist="lognormal", mean_s=60.0, cv=0.001)
    return Scenario(
        horizon_days=4 / 24,
        channels={"phone": Channel(synchronous=True, target_s=20.0, patience=patience)},
        ticket_types={"q": TicketType(handle=HandleTime(default=_exp(600.0)), fcr=1.0)},
        type_mix={"q": 1.0}, chatbot=Chatbot(channels=()),
        cities=city,
    )


def test_language_ticket_is_not_answered_after_hanging_up():
    sc = _impatient_language_city(
        A=City(tickets_per_day=24 * 30.0, languages={"x": 0.5},
               routing=Routing(policy="skills", language_wait_s=120.0),
               agent_groups=(AgentGroup(name="g", headcount=20),)),
    )
    r = simulate(sc, seed=1).records
    a = r[r["outcome"] == "answered"]
    assert (a["language"] == "x").sum() == 0 or (a["answer_s"] - a["arrival_s"]).max() <= 61.0


def test_overflowed_ticket_is_not_answered_after_hanging_up():
    sc = _impatient_language_city(
        A=City(tickets_per_day=24 * 60.0, routing=Routing(policy="overflow", overflow=Overflow(after_s=120.0, to=("B",))),
               agent_groups=(AgentGroup(name="g", headcount=2),)),
        B=City(tickets_per_day=0.0, agent_groups=(AgentGroup(name="g", headcount=10),)),
    )
    r = simulate(sc, seed=1).records
    a = r[r["outcome"] == "answered"]
    assert (a["answer_s"] - a["arrival_s"]).max() <= 61.0


def test_language_ticket_waits_no_longer_than_the_limit_when_agents_are_idle():
    sc = Scenario(
        horizon_days=4 / 24,
        channels={"phone": Channel(synchronous=True, target_s=20.0)},
        ticket_types={"q": TicketType(handle=HandleTime(default=_exp(100.0)))}, type_mix={"q": 1.0},
        chatbot=Chatbot(channels=()),
        cities={"A": City(tickets_per_day=24 * 30.0, languages={"x": 0.5},
                          routing=Routing(policy="skills", language_wait_s=45.3),
                          agent_groups=(AgentGroup(name="g", headcount=20),))},
    )
    r = simulate(sc, seed=1).records
    a = r[(r["outcome"] == "answered") & (r["language"] == "x")]
    assert len(a) > 20
    # 20 agents for 0.8 erlang: someone is always idle at the 45.3 s mark
    assert (a["answer_s"] - a["arrival_s"]).max() <= 45.3 + 1e-6


def _overtime_scenario(shift: Shift, handle_mean_s: float, days: float = 1.0) -> Scenario:
    """Three overloaded agents with long jobs: most shifts end with a job in hand."""
    return Scenario(
        horizon_days=days,
        channels={"email": Channel(synchronous=False, target_s=HOUR)}, channel_mix={"email": 1.0},
        ticket_types={"q": TicketType(handle=HandleTime(default=Distribution(mean_s=handle_mean_s, cv=0.3)), fcr=1.0)},
        type_mix={"q": 1.0}, chatbot=Chatbot(channels=()),
        cities={"A": City(tickets_per_day=400.0, agent_groups=(AgentGroup(name="g", headcount=3, shift=shift),))},
    )


def test_occupancy_is_at_most_one_with_shifts():
    """A job finished after the shift end is overtime: busy and staffed both count it."""
    sc = _overtime_scenario(Shift(start_h=9.0, length_h=8.0), 1800.0)
    ag = simulate(sc, seed=1).agents
    scheduled = 3 * 8 * HOUR
    staffed, busy = float(ag["staffed_s"].iloc[0]), float(ag["busy_s"].iloc[0])
    assert busy > scheduled  # the case is exercised: work went on past 17:00
    assert busy <= staffed * (1 + 1e-12)
    assert staffed - scheduled < 3 * 4 * 1800.0  # overtime is at most one (long) job per agent
    assert busy / staffed > 0.95  # overloaded: busy nearly all the time it is staffed


def test_job_running_past_the_horizon_after_a_shift_counts_as_overtime():
    """Shift 03:00-04:00, horizon 06:00, 4 h jobs: the 03:00 job is busy 3 h, staffed 1 h."""
    sc = _overtime_scenario(Shift(start_h=3.0, length_h=1.0), 4 * HOUR, days=0.25)
    ag = simulate(sc, seed=1).agents
    staffed, busy = float(ag["staffed_s"].iloc[0]), float(ag["busy_s"].iloc[0])
    assert busy > 3 * HOUR  # the case is exercised: the three agents worked past 04:00
    assert busy <= staffed, (busy, staffed)


def test_overtime_into_the_next_shift_is_not_counted_twice():
    """23 h shifts and 4 h jobs: a job started at 22:59 runs into the next shift at 00:00."""
    sc = _overtime_scenario(Shift(start_h=0.0, length_h=23.0), 4 * HOUR, days=3.0)
    ag = simulate(sc, seed=1).agents
    assert float(ag["staffed_s"].iloc[0]) <= 3 * sc.horizon_s  # nobody is staffed > 24 h a day


def test_waits_are_never_negative():
    """300 agents, re-contacts an hour after early calls: answered on arrival, to the ulp."""
    sc = Scenario(
        horizon_days=3 / 24, seed=3,
        channels={"phone": Channel(synchronous=True, target_s=60.0)},
        ticket_types={"q": TicketType(handle=HandleTime(default=_exp(300.0)), fcr=0.2)},
        type_mix={"q": 1.0}, chatbot=Chatbot(channels=()),
        resolution=Resolution(recontact_probability=1.0, recontact_delay=_exp(HOUR), max_attempts=4),
        cities={"A": City(tickets_per_day=24 * 400.0, agent_groups=(AgentGroup(name="g", headcount=300),))},
    )
    r = simulate(sc).records
    a = r[r["outcome"] == "answered"]
    assert len(a) > 1000
    assert (a["answer_s"] >= a["arrival_s"]).all(), (a["answer_s"] - a["arrival_s"]).min()


def _types_scenario(n: int) -> Scenario:
    names = [f"t{i:02d}" for i in range(n)]
    return Scenario(
        horizon_days=0.25,
        ticket_types={x: TicketType(handle=HandleTime(default=_exp(60.0))) for x in names},
        type_mix={x: 1 / n for x in names}, chatbot=Chatbot(channels=()),
        cities={"A": City(tickets_per_day=4000.0, agent_groups=(AgentGroup(name="g", headcount=20),))},
    )


def test_records_keep_each_contacts_type_with_the_most_types_supported():
    sc = _types_scenario(16)
    r = simulate(sc, seed=1).records
    assert set(r["channel"].astype(str)) == {"phone"}
    assert set(r["ticket_type"].astype(str)) == set(sc.ticket_types)


def test_more_types_than_records_can_hold_are_rejected():
    with pytest.raises(ValidationError, match="ticket_types: at most 16"):
        _types_scenario(17)


def test_nine_to_five_agents_answer_only_nine_to_five():
    """Email and phone all day, agents 09:00-17:00 for two days: every answer lies in a shift."""
    sc = Scenario(
        horizon_days=2.0,
        channels={"email": Channel(synchronous=False, target_s=HOUR),
                  "phone": Channel(synchronous=True, target_s=60.0, patience=_exp(180.0))},
        channel_mix={"email": 0.6, "phone": 0.4},
        ticket_types={"q": TicketType(handle=HandleTime(default=_exp(400.0)), fcr=1.0)},
        type_mix={"q": 1.0}, chatbot=Chatbot(channels=()),
        cities={"A": City(tickets_per_day=300.0,
                          agent_groups=(AgentGroup(name="g", headcount=4, shift=Shift(start_h=9.0, length_h=8.0)),))},
    )
    r = simulate(sc, seed=2).records
    a = r[r["outcome"] == "answered"]
    hour = (a["answer_s"] % 86400.0) / HOUR
    assert len(a) > 300
    assert ((hour >= 9.0) & (hour <= 17.0)).all(), hour[(hour < 9.0) | (hour > 17.0)].head()
    # the night's email waits for the morning: some answers come right at 09:00
    assert (np.isclose(hour, 9.0, atol=1e-6)).sum() >= 4
    night_phone = r[(r["channel"] == "phone") & (((r["arrival_s"] % 86400.0) / HOUR) < 8.0)]
    assert len(night_phone) > 10 and (night_phone["outcome"] == "abandoned").all()  # 3 min patience
