"""A plausible synthetic national scenario for benchmarks: ``national_scenario(...) -> Scenario``.

Built with the real schema (``simulator.scenario``), so it exercises the whole model:

* 4 channels (phone, chat, email, social) with the default targets and patience, plus a
  retry probability on the synchronous ones;
* 3 ticket types (simple_inquiry, complex_complaint, logistics_complaint) with lognormal
  handle times and per-channel overrides; complaints of the complex kind need a follow-up;
* 3 tiers (gold, silver, bronze) and 3 employment types;
* ``n_cities`` cities whose sizes follow a skewed (lognormal) distribution summing to
  ``tickets_total_per_month`` primary contacts over a 31-day month starting on a Saturday
  (like March 2025); a few cities have a local language;
* 2-4 agent groups per city on day / evening / night and weekday / weekend shifts, sized
  from the offered workload of the hours each group covers divided by ``target_occupancy``
  (0.85), i.e. the offered-load / occupancy rule rather than per-interval Erlang C, because
  the groups' shifts partition the week and the async backlog carries the peaks;
* a chatbot on all channels with penetration ~0.45 for the eligible ticket types;
* an hour-of-day profile with a morning and an afternoon peak and a day-of-week profile;
* routing mixed by city: fifo, priority, and skills (always skills where there is a
  local language); a small initial e-mail/social backlog; one short CRM outage.

Everything random in the layout comes from ``seed``; the same arguments give the same
scenario. ``python benchmarks/synthetic.py [--cities N] [--dump out.yaml]`` prints a
summary and can write the scenario as YAML (``model_dump`` of the pydantic model).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.scenario import (
    WEEKDAYS,
    AgentGroup,
    Channel,
    Chatbot,
    City,
    Distribution,
    Employment,
    HandleTime,
    Outage,
    Profiles,
    Routing,
    Scenario,
    Shift,
    TicketType,
    Tier,
    _default_channels,
)

HORIZON_DAYS = 31
START_WEEKDAY = "sat"  # 1 March 2025 was a Saturday

# Relative arrivals by hour of day: quiet night, morning peak ~10-11, lunch dip,
# afternoon peak ~14-16, long evening tail.
HOUR_OF_DAY = (
    0.20,
    0.12,
    0.08,
    0.07,
    0.07,
    0.12,
    0.30,
    0.65,
    1.10,
    1.60,
    1.85,
    1.75,
    1.35,
    1.45,
    1.75,
    1.80,
    1.55,
    1.25,
    1.05,
    0.95,
    0.80,
    0.62,
    0.45,
    0.30,
)
DAY_OF_WEEK = (1.12, 1.06, 1.03, 1.02, 1.00, 0.72, 0.58)  # Monday first

CHANNEL_MIX = {"phone": 0.45, "chat": 0.25, "email": 0.18, "social": 0.12}
TYPE_MIX = {"simple_inquiry": 0.55, "complex_complaint": 0.20, "logistics_complaint": 0.25}
LANGUAGES = ("lang_north", "lang_west", "lang_islands", "lang_south")

# Shift patterns (2-4 groups each, together covering every hour of the week, some
# overlapping at the peaks), as (group name, start_h, length_h, days, employment).
ALL = WEEKDAYS
WK = ("mon", "tue", "wed", "thu", "fri")
WE = ("sat", "sun")
PATTERNS: dict[str, list[tuple[str, float, float, tuple[str, ...], str]]] = {
    "two_shift": [
        ("day", 7.0, 12.0, ALL, "full_time"),
        ("night", 19.0, 12.0, ALL, "outsourced"),
    ],
    "day_night_mid": [
        ("day", 7.0, 12.0, ALL, "full_time"),
        ("night", 19.0, 12.0, ALL, "outsourced"),
        ("mid", 10.0, 8.0, WK, "part_time"),
    ],
    "three_shift": [
        ("day", 7.0, 8.0, ALL, "full_time"),
        ("evening", 13.0, 10.0, ALL, "part_time"),
        ("night", 23.0, 8.0, ALL, "full_time"),
    ],
    "weekday_weekend": [
        ("weekday_day", 8.0, 9.0, WK, "full_time"),
        ("weekday_late", 12.0, 9.0, WK, "part_time"),
        ("weekend", 8.0, 12.0, WE, "part_time"),
        ("night", 20.0, 12.0, ALL, "full_time"),
    ],
    "four_shift": [
        ("weekday_day", 7.0, 8.0, WK, "full_time"),
        ("weekday_evening", 15.0, 8.0, WK, "part_time"),
        ("weekend", 7.0, 16.0, WE, "part_time"),
        ("night", 23.0, 8.0, ALL, "outsourced"),
    ],
}
DAY_GROUPS = ("day", "weekday_day")  # where a local language's speakers split off


def _lognormal(mean_s: float, cv: float) -> Distribution:
    return Distribution(dist="lognormal", mean_s=mean_s, cv=cv)


def ticket_types() -> dict[str, TicketType]:
    """Three ticket types with lognormal handle times (chat slower, e-mail faster than phone)."""
    return {
        "simple_inquiry": TicketType(
            handle=HandleTime(
                default=_lognormal(240.0, 0.8),
                by_channel={"chat": _lognormal(330.0, 0.8), "email": _lognormal(180.0, 0.7)},
            ),
            fcr=0.90,
            chatbot_eligible=True,
            fast_lane=True,
        ),
        "complex_complaint": TicketType(
            handle=HandleTime(
                default=_lognormal(720.0, 1.0),
                by_channel={"chat": _lognormal(900.0, 1.0), "email": _lognormal(600.0, 0.9)},
            ),
            fcr=0.70,
            follow_up=True,
        ),
        "logistics_complaint": TicketType(
            handle=HandleTime(
                default=_lognormal(420.0, 0.9),
                by_channel={"chat": _lognormal(540.0, 0.9), "email": _lognormal(330.0, 0.8)},
            ),
            fcr=0.80,
            chatbot_eligible=True,
        ),
    }


def channels() -> dict[str, Channel]:
    """The default channels (targets, patience) with callers/chatters sometimes retrying."""
    d = _default_channels()
    return {
        "phone": d["phone"].model_copy(update={"retry_probability": 0.30}),
        "chat": d["chat"].model_copy(update={"retry_probability": 0.20}),
        "email": d["email"],
        "social": d["social"],
    }


EMPLOYMENT = {
    "full_time": Employment(cost_per_hour=32.0, handle_factor=1.00, fcr_factor=1.00),
    "part_time": Employment(cost_per_hour=26.0, handle_factor=1.05, fcr_factor=0.97),
    "outsourced": Employment(cost_per_hour=19.0, handle_factor=1.15, fcr_factor=0.90),
}
TIERS = {
    "gold": Tier(share=0.10, rank=0),
    "silver": Tier(share=0.30, rank=1),
    "bronze": Tier(share=0.60, rank=2),
}


def _work_per_contact_s(
    sc_types: dict[str, TicketType],
    chans: dict[str, Channel],
    ch_mix: dict[str, float],
    penetration: float,
    bot_channels: tuple[str, ...],
    recontact_p: float,
    follow_up_s: float,
    max_attempts: int,
) -> tuple[float, float]:
    """Expected agent seconds caused by one primary arrival: (synchronous, asynchronous part).

    Deflected ones cost nothing; the rest are handled once and re-contact (same channel,
    no chatbot) with probability (1 - fcr) * recontact_p, up to ``max_attempts`` contacts;
    resolved contacts of follow-up types add a follow-up task (counted as asynchronous
    work). Abandon-retries and language mismatches are ignored. Before employment factors.
    """
    sync = asyn = 0.0
    for tname, share_t in TYPE_MIX.items():
        tt = sc_types[tname]
        q = (1.0 - tt.fcr) * recontact_p
        contacts = sum(q**k for k in range(max_attempts))
        fu = follow_up_s * tt.fcr if tt.follow_up else 0.0
        for ch, share_c in ch_mix.items():
            deflect = penetration if (tt.chatbot_eligible and ch in bot_channels) else 0.0
            n = share_t * share_c * (1.0 - deflect) * contacts
            h = n * tt.handle.for_channel(ch).mean_s
            if chans[ch].synchronous:
                sync += h
            else:
                asyn += h
            asyn += n * fu
    return sync, asyn


def _week_requirement(
    tickets_per_day: float, work_s: tuple[float, float], target_occ: float
) -> np.ndarray:
    """Agents needed in each (weekday, hour) of the week: offered load / target occupancy.

    Synchronous work follows the hour-of-day profile; asynchronous work (e-mail, social,
    follow-ups: targets of hours) is spread evenly over its day, as a planner would.
    """
    hw = np.array(HOUR_OF_DAY) / np.mean(HOUR_OF_DAY)
    dw = np.array(DAY_OF_WEEK) / np.mean(DAY_OF_WEEK)
    per_hour = tickets_per_day / 24.0 * dw[:, None] * hw[None, :]  # arrivals in each hour
    sync = per_hour * work_s[0]
    asyn = np.repeat(per_hour.mean(axis=1, keepdims=True), 24, axis=1) * work_s[1]
    return (sync + asyn) / 3600.0 / target_occ  # shape (7, 24), Monday first


def _covered(start_h: float, length_h: float, days: tuple[str, ...]) -> list[tuple[int, int]]:
    """(weekday, hour) slots of the week a shift covers (whole hours)."""
    out = []
    for d in days:
        wd = WEEKDAYS.index(d)
        for k in range(int(length_h)):
            h = int(start_h) + k
            out.append(((wd + h // 24) % 7, h % 24))
    return out


def _staff(
    pattern: list[tuple[str, float, float, tuple[str, ...], str]],
    need: np.ndarray,
    speed: list[float],
    shortfall_cost: float,
) -> list[int]:
    """Headcount per group: a small LP trading staffed hours against uncovered need.

    minimise  sum_g hc_g * hours_g + shortfall_cost * sum_s short_s
    s.t.      sum_g cover_gs * speed_g * hc_g + short_s >= need_s   (each hour s of the week)

    A cost of 1 would staff only where every covered hour is short; 2 staffs each group
    to about the median of its hours' need; larger values approach full peak coverage.
    """
    from scipy.optimize import linprog

    G, S = len(pattern), 7 * 24
    cover = np.zeros((G, S))
    hours = np.zeros(G)
    for g, (_, start, length, days, _) in enumerate(pattern):
        for wd, h in _covered(start, length, days):
            cover[g, wd * 24 + h] = 1.0
        hours[g] = cover[g].sum()
    c = np.concatenate([hours, np.full(S, shortfall_cost)])
    A = -np.hstack([(cover * np.array(speed)[:, None]).T, np.eye(S)])
    res = linprog(c, A_ub=A, b_ub=-need.reshape(-1), bounds=(0, None), method="highs")
    if not res.success:  # pragma: no cover - the LP is always feasible (short_s is free)
        raise RuntimeError(res.message)
    return [max(1, math.ceil(x - 0.25)) for x in res.x[:G]]


def national_scenario(
    n_cities: int = 32,
    tickets_total_per_month: float = 1_500_000,
    seed: int = 2025,
    *,
    target_occupancy: float = 0.85,
    shortfall_cost: float = 2.5,
    size_sigma: float = 0.7,
    chatbot_penetration: float = 0.45,
    language_cities: int | None = None,
    outage: bool = True,
) -> Scenario:
    """A synthetic ``n_cities`` national month of ``tickets_total_per_month`` primary contacts."""
    if n_cities < 1:
        raise ValueError("n_cities must be >= 1")
    rng = np.random.default_rng(seed)
    types = ticket_types()
    chans = channels()
    bot = Chatbot(response_s=30.0, channels=("phone", "chat", "email", "social"))
    profiles = Profiles(hour_of_day=HOUR_OF_DAY, day_of_week=DAY_OF_WEEK)
    scenario_defaults = Scenario.model_fields
    resolution = scenario_defaults["resolution"].default
    follow_up = scenario_defaults["follow_up"].default

    # Expected month total = tickets_per_day * sum of the month's day weights; correct for
    # the weekday mix of this month so the total is exactly ``tickets_total_per_month``.
    dw = np.array(DAY_OF_WEEK) / np.mean(DAY_OF_WEEK)
    first = WEEKDAYS.index(START_WEEKDAY)
    month_days = sum(dw[(first + d) % 7] for d in range(HORIZON_DAYS))
    per_day_total = tickets_total_per_month / month_days

    size = np.sort(rng.lognormal(0.0, size_sigma, n_cities))[::-1]
    size = size / size.sum()
    n_lang = language_cities if language_cities is not None else max(1, round(n_cities * 5 / 32))
    lang_idx = set(rng.choice(n_cities, size=min(n_lang, n_cities), replace=False).tolist())
    pattern_names = list(PATTERNS)
    emp_mult = {k: e.handle_factor for k, e in EMPLOYMENT.items()}

    cities: dict[str, City] = {}
    lang_no = 0
    for i in range(n_cities):
        name = f"city_{i + 1:02d}" if n_cities < 100 else f"city_{i + 1:03d}"
        tpd = float(per_day_total * size[i])
        mix = rng.dirichlet(np.array(list(CHANNEL_MIX.values())) * 60.0)
        ch_mix = {c: float(round(x, 4)) for c, x in zip(CHANNEL_MIX, mix)}
        ch_mix["social"] = round(1.0 - sum(v for k, v in ch_mix.items() if k != "social"), 6)
        pen = float(np.clip(rng.normal(chatbot_penetration, 0.03), 0.0, 1.0))
        languages: dict[str, float] = {}
        if i in lang_idx:
            languages = {
                LANGUAGES[lang_no % len(LANGUAGES)]: float(round(rng.uniform(0.08, 0.30), 3))
            }
            lang_no += 1
        # routing: skills where a language needs it, otherwise a fifo/priority/skills mix
        if languages:
            policy = "skills"
        else:
            policy = str(rng.choice(["fifo", "priority", "skills"], p=[0.35, 0.45, 0.20]))
        work = _work_per_contact_s(
            types,
            chans,
            ch_mix,
            pen,
            bot.channels,
            resolution.recontact_probability,
            follow_up.handle.mean_s,
            resolution.max_attempts,
        )
        need = _week_requirement(tpd, work, target_occupancy)
        # a language city needs room for a speakers' group: at most 3 base groups
        choices = (
            pattern_names if not languages else [p for p in pattern_names if len(PATTERNS[p]) <= 3]
        )
        pattern = PATTERNS[str(rng.choice(choices))]
        certs = [int(rng.integers(1, 4)) for _ in pattern]
        speed = [
            1.0 / (emp_mult[emp] * resolution.handle_factor_per_cert_level ** (cert - 1))
            for (_, _, _, _, emp), cert in zip(pattern, certs)
        ]
        heads = _staff(pattern, need, speed, shortfall_cost)
        groups: list[AgentGroup] = []
        for (gname, start, length, days, emp), cert, hc in zip(pattern, certs, heads):
            shift = Shift(start_h=start, length_h=length, days=days)
            if languages and gname in DAY_GROUPS:
                # speakers of the local language split off the day group
                share = next(iter(languages.values()))
                speakers = max(1, min(hc - 1, round(hc * share * 1.3))) if hc > 1 else 1
                rest = hc - speakers
                groups.append(
                    AgentGroup(
                        name=f"{gname}_speakers",
                        headcount=speakers,
                        shift=shift,
                        employment=emp,
                        languages=tuple(languages),
                        certification=cert,
                    )
                )
                if rest > 0:
                    groups.append(
                        AgentGroup(
                            name=gname,
                            headcount=rest,
                            shift=shift,
                            employment=emp,
                            certification=cert,
                        )
                    )
            else:
                groups.append(
                    AgentGroup(
                        name=gname, headcount=hc, shift=shift, employment=emp, certification=cert
                    )
                )
        email_per_day = tpd * ch_mix["email"]
        social_per_day = tpd * ch_mix["social"]
        cities[name] = City(
            tickets_per_day=round(tpd, 3),
            channel_mix=ch_mix,
            languages=languages,
            chatbot_penetration=round(pen, 4),
            routing=Routing(policy=policy, language_wait_s=120.0),
            agent_groups=tuple(groups),
            initial_backlog={
                "email": int(email_per_day * 0.05),
                "social": int(social_per_day * 0.03),
            },
            volume_cv=0.08,
        )

    outages: tuple[Outage, ...] = ()
    if outage:
        hit = tuple(sorted(rng.choice(list(cities), size=min(3, n_cities), replace=False).tolist()))
        outages = (
            Outage(start_h=10 * 24 + 14.0, duration_h=1.5, cities=hit, loss_probability=0.4),
        )

    return Scenario(
        name=f"synthetic_national_{n_cities}",
        description=(
            f"Synthetic {n_cities}-city national month, {tickets_total_per_month:,.0f} "
            f"primary contacts, generated by benchmarks/synthetic.py (seed {seed})."
        ),
        horizon_days=float(HORIZON_DAYS),
        warmup_h=0.0,
        start_weekday=START_WEEKDAY,
        replications=10,
        seed=seed,
        channels=chans,
        ticket_types=types,
        tiers=TIERS,
        channel_mix=CHANNEL_MIX,
        type_mix=TYPE_MIX,
        employment=EMPLOYMENT,
        chatbot=bot,
        profiles=profiles,
        cities=cities,
        outages=outages,
        assumptions={
            "origin": "synthetic benchmark scenario, not calibrated to data",
            "staffing": (
                f"headcounts from an LP covering offered workload / {target_occupancy} per hour "
                f"(shortfall cost {shortfall_cost})"
            ),
            "volume": f"{tickets_total_per_month:,.0f} primary contacts in {HORIZON_DAYS} days",
        },
    )


def describe(sc: Scenario) -> str:
    """A few lines about a scenario's size."""
    groups = [g for c in sc.cities.values() for g in c.agent_groups]
    pol: dict[str, int] = {}
    for c in sc.cities.values():
        pol[c.routing.policy] = pol.get(c.routing.policy, 0) + 1
    tpd = sum(c.tickets_per_day for c in sc.cities.values())
    dw = sc.profiles.daily_weights()
    first = WEEKDAYS.index(sc.start_weekday)
    n_days = math.ceil(sc.horizon_days)
    month = tpd * sum(dw[(first + d) % 7] for d in range(n_days)) * sc.horizon_days / n_days
    langs = sum(1 for c in sc.cities.values() if c.languages)
    return (
        f"{sc.name}: {len(sc.cities)} cities, {sc.horizon_days:g} days from {sc.start_weekday}, "
        f"{tpd:,.0f} primary contacts/day (~{month:,.0f} expected over the horizon), "
        f"{len(groups)} agent groups, {sum(g.headcount for g in groups):,} agents, "
        f"policies {pol}, {langs} cities with a local language"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Build (and optionally dump) the synthetic national scenario."
    )
    p.add_argument("--cities", type=int, default=32)
    p.add_argument(
        "--tickets-per-month",
        type=float,
        default=None,
        help="primary contacts per month (default 1.5M x cities/32)",
    )
    p.add_argument("--seed", type=int, default=2025)
    p.add_argument("--dump", metavar="PATH", help="write the scenario as YAML")
    a = p.parse_args(argv)
    total = a.tickets_per_month or 1_500_000 * a.cities / 32
    sc = national_scenario(a.cities, total, seed=a.seed)
    print(describe(sc))
    if a.dump:
        import yaml

        Path(a.dump).write_text(yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False))
        print(f"wrote {a.dump}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
