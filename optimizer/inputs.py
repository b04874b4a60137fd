"""Stage 6 of 7 (optimizer inputs): one city's demand, agents and options as the programme sees them.

``city_inputs(scenario, city)`` turns the scenario into the programme's data. Rates per hour,
handle times and patience in seconds, costs in yuan per month.

Intervals
    The week is 168 hour slots. Weekdays on which every agent group and every candidate
    shift pattern covers the same hours form one *day type*; the model's intervals are the
    24 hours of each day type. ``weight`` counts the slot's hours inside the simulated
    horizon after warm-up, so totals over intervals are totals over the horizon.

Demand (per option: chatbot level x triage)
    Primary arrivals follow the hour-of-day and day-of-week profiles. Chatbot-eligible
    types on chatbot channels are answered by the bot with the option's penetration; the
    rest of them reach agents after ``chatbot.response_s``, so their effective target is
    ``target_s - response_s``. Unresolved agent contacts come back (re-contacts, same
    channel, up to ``max_attempts``) after an exponential delay, convolved over the week.
    The initial backlog is spread over the horizon's days as arrivals at 00:00.
    Resolved follow-up types create follow-up work. Retries after abandonment are left out
    (a good plan has few); the simulation loop corrects what this leaves out.

Synchronous queue
    All synchronous channels share one queue (one agent, one ticket at a time). With triage
    on, synchronous customers are served first, but agents are work-conserving: they take
    the hour's asynchronous tickets and follow-ups whenever no caller waits, and a caller
    arriving then waits for one to finish. So each interval's curve is that of the
    synchronous load served by the agents net of that deferred work (``shift``). Without
    triage one FIFO queue holds every ticket: the curve uses the pooled load, whose
    abandonment rate is the synchronous one diluted by the asynchronous share (they never
    hang up), shifted by the follow-up work only.

Agents
    Existing groups are sunk; candidate pools are ``hire:<pattern>`` (permanent, full_time
    factors) and ``temp:<pattern>`` (temporary; the scenario's ``temporary`` employment if
    any, else full_time factors: an assumption). A seat on a pattern costs its monthly rate
    times ``hours_per_month(pattern) / agent_hours_per_month`` (assumption: wages scale with
    the hours a seat is staffed; a 7-day 8-hour seat is 1.45 agents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from optimizer.tables import Curve, curve
from simulator.scenario import Scenario, Shift

WEEK_H = 168
DAYS_PER_MONTH = 365.25 / 12.0
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TEMPORARY = "temporary"
PERMANENT = "full_time"


@dataclass(frozen=True)
class Pool:
    """Agents that share a shift and factors: an existing group or a candidate pattern."""

    key: str  # group name, "hire:<pattern>" or "temp:<pattern>"
    kind: str  # "existing" | "hire" | "temporary"
    pattern: str | None
    headcount: int  # existing agents (new pools start at 0)
    employment: str
    certification: int
    languages: frozenset[str]
    cover: np.ndarray  # (T,) share of each interval on shift
    speed: float  # 1 / handle-time multiplier
    fcr_mult: float
    fcr_add: float
    hours: float  # staffed hours of one seat over the horizon
    seat_cost: float  # yuan per month for one seat (0 for existing)

    @property
    def new(self) -> bool:
        return self.kind != "existing"


@dataclass(frozen=True)
class Option:
    """One (chatbot penetration, triage) choice of a city with its demand and curves."""

    key: str
    penetration: float
    triage: bool
    cost: float  # yuan per month (chatbot level + triage when switched on)
    dominated: bool  # never worth choosing (kept to evaluate today's plan)
    curves: tuple[Curve, ...]  # per interval; outputs in ``CityInputs.sync_channels`` order
    offered: dict[str, np.ndarray]  # per channel, per interval: contacts per hour (bot + agents)
    deflected: dict[str, np.ndarray]  # answered by the chatbot
    escalated: dict[str, np.ndarray]  # passed on by the chatbot to agents (after its response time)
    to_agents: dict[str, np.ndarray]  # reaching agents (incl. re-contacts)
    sync_load: np.ndarray  # (T,) synchronous workload in agents (Erlangs)
    async_rate: np.ndarray  # (T,) asynchronous tickets per hour reaching agents
    follow_up_s: np.ndarray  # (T,) follow-up work created, agent-seconds per hour
    work_s: float  # agent-seconds of work over the horizon
    deflect_share: float  # share of primary contacts answered by the bot
    primary: float  # primary contacts over the horizon (offered, first attempt)


@dataclass(frozen=True)
class CityInputs:
    """Everything the programme needs about one city."""

    city: str
    day_types: tuple[tuple[str, ...], ...]  # weekdays of each day type
    weight: np.ndarray  # (T,) hours of each interval in the horizon
    pools: tuple[Pool, ...]
    options: tuple[Option, ...]
    sync_channels: tuple[str, ...]
    async_channels: tuple[str, ...]
    targets_s: dict[str, float]  # channel first-response targets
    async_share: dict[str, float]  # share of each async channel in async tickets
    async_aht_s: float
    follow_up_aht_s: float
    languages: dict[str, float]  # local languages needed and their ticket shares
    fcr_type_mean: float  # mean type FCR of agent-handled primary contacts
    mismatch_fcr: float
    mismatch_handle: float
    fcr_per_cert_level: float
    handle_per_cert_level: float
    triage_now: bool
    penetration_now: float
    seat_cap: int  # a generous bound on new seats per pool
    assumptions: dict[str, str] = field(default_factory=dict)

    @property
    def T(self) -> int:
        return int(self.weight.size)

    @property
    def hour(self) -> np.ndarray:
        return np.tile(np.arange(24), len(self.day_types))

    def option(self, key: str) -> Option:
        return next(o for o in self.options if o.key == key)


# ---------------------------------------------------------------------------- calendar
def week_cover(shift: Shift) -> np.ndarray:
    """Share of each of the 168 hour slots of the week (Monday 00:00 first) a shift covers."""
    out = np.zeros(WEEK_H)
    for d in shift.days:
        start = WEEKDAYS.index(d) * 24 + shift.start_h
        end = start + shift.length_h
        h = math.floor(start)
        while h < end:
            out[h % WEEK_H] += max(0.0, min(end, h + 1) - max(start, h))
            h += 1
    return np.minimum(out, 1.0)


def horizon_hours(scenario: Scenario) -> np.ndarray:
    """Hours of each week slot inside [warm-up, horizon) of the scenario."""
    first = WEEKDAYS.index(scenario.start_weekday) * 24
    lo, hi = scenario.warmup_s / 3600.0, scenario.horizon_s / 3600.0
    out = np.zeros(WEEK_H)
    h = math.floor(lo)
    while h < hi:
        out[(first + h) % WEEK_H] += max(0.0, min(hi, h + 1) - max(lo, h))
        h += 1
    return out


def seat_factor(shift: Shift, agent_hours_per_month: float) -> float:
    """Agents needed to staff one seat of ``shift`` for a month (hours per month / agent hours)."""
    return shift.length_h * len(shift.days) * DAYS_PER_MONTH / 7.0 / agent_hours_per_month


def _day_types(covers: list[np.ndarray], hours: np.ndarray) -> list[tuple[int, ...]]:
    """Weekdays grouped by identical coverage of every pool (weekdays outside the horizon dropped)."""
    groups: dict[tuple, list[int]] = {}
    for d in range(7):
        sl = slice(d * 24, d * 24 + 24)
        if hours[sl].sum() <= 0:
            continue
        sig = tuple(tuple(np.round(c[sl], 6)) for c in covers)
        groups.setdefault(sig, []).append(d)
    return [tuple(v) for v in groups.values()]


def _to_intervals(x: np.ndarray, hours: np.ndarray, types: list[tuple[int, ...]]) -> np.ndarray:
    """Hour-weighted mean of a weekly (168,) series within each day type's hours -> (T,)."""
    out = []
    for days in types:
        idx = np.array([[d * 24 + h for d in days] for h in range(24)])  # (24, n_days)
        w = hours[idx]
        num = (x[idx] * w).sum(axis=1)
        den = w.sum(axis=1)
        out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), x[idx].mean(axis=1)))
    return np.concatenate(out)


def _interval_weight(hours: np.ndarray, types: list[tuple[int, ...]]) -> np.ndarray:
    return np.concatenate([np.array([hours[[d * 24 + h for d in days]].sum() for h in range(24)]) for days in types])


# ---------------------------------------------------------------------------- demand
@dataclass(frozen=True)
class _Demand:
    """Weekly (168,) contact rates per channel of one option, split by how they are handled."""

    deflected: dict[str, np.ndarray]
    direct: dict[str, np.ndarray]  # reach agents at once (not bot-eligible) or as re-contacts
    escalated: dict[str, np.ndarray]  # bot-eligible, not resolved by the bot
    handle_s: dict[str, float]  # mean base handle time of agent contacts on the channel
    follow_up_s: np.ndarray  # follow-up work created per hour (agent-seconds)
    primary: float


def _recontact_kernel(mean_s: float) -> np.ndarray:
    """Share of re-contacts arriving k = 0..167 hours after the contact (cyclic week)."""
    edges = np.arange(WEEK_H + 1, dtype=float) * 3600.0
    cdf = -np.expm1(-edges / mean_s)
    k = np.diff(cdf)
    return k / k.sum()


def _demand(sc: Scenario, city: str, penetration: float, agent_fcr: dict[str, float]) -> _Demand:
    c = sc.cities[city]
    ch_mix = sc.channel_mix_of(city)
    type_mix = sc.type_mix_of(city)
    weights = {t: type_mix.get(t, 0.0) * c.surge.get(t, 1.0) for t in sc.ticket_types}
    vf = sum(weights.values())
    p_type = {t: w / vf for t, w in weights.items()} if vf > 0 else weights
    hw = np.array(sc.profiles.hourly_weights())
    dw = np.array(sc.profiles.daily_weights())
    base = c.tickets_per_day * vf * np.repeat(dw, 24) * np.tile(hw, 7) / 24.0  # (168,)
    res = sc.resolution
    kernel = np.fft.rfft(_recontact_kernel(res.recontact_delay.mean_s))
    bot = set(sc.chatbot.channels)
    defl, direct, esc, handle = {}, {}, {}, {}
    fu = np.zeros(WEEK_H)
    fu_h = sc.follow_up.handle.mean_s
    for ch in sc.channels:
        share = ch_mix.get(ch, 0.0)
        d_ch, first, e_ch = np.zeros(WEEK_H), np.zeros(WEEK_H), np.zeros(WEEK_H)
        rec = np.zeros(WEEK_H)
        work = count = 0.0
        for t, tt in sc.ticket_types.items():
            rate = base * share * p_type.get(t, 0.0)
            if not rate.any():
                continue
            ok = tt.chatbot_eligible and ch in bot
            d = rate * penetration if ok else 0.0 * rate
            agents = rate - d
            (e_ch if ok else first)[:] += agents
            d_ch += d
            q = (1.0 - agent_fcr[t]) * res.recontact_probability
            extra = sum(q**k for k in range(1, res.max_attempts))
            again = np.fft.irfft(np.fft.rfft(agents) * kernel, WEEK_H) * extra
            rec += again
            h = tt.handle.for_channel(ch).mean_s
            work += h * (agents.sum() + again.sum())
            count += agents.sum() + again.sum()
            if tt.follow_up:
                fu += (agents + again) * agent_fcr[t] * fu_h
        defl[ch], direct[ch], esc[ch] = d_ch, first + np.maximum(rec, 0.0), e_ch
        handle[ch] = work / count if count > 0 else 1.0
    return _Demand(defl, direct, esc, handle, fu, float(base.sum()))


# ---------------------------------------------------------------------------- pools
def _pools(sc: Scenario, city: str, types: list[tuple[int, ...]], hours: np.ndarray,
           covers: dict[str, np.ndarray]) -> list[Pool]:
    c = sc.cities[city]
    res, pl = sc.resolution, sc.planning
    weight = _interval_weight(hours, types)

    def make(key: str, kind: str, pattern: str | None, heads: int, emp: str, cert: int,
             langs: frozenset[str], shift: Shift, rate: float) -> Pool:
        e = sc.employment.get(emp) or sc.employment.get(PERMANENT) or next(iter(sc.employment.values()))
        cov = _to_intervals(covers[key], hours, types)
        speed = 1.0 / (e.handle_factor * res.handle_factor_per_cert_level ** (cert - 1))
        return Pool(key, kind, pattern, heads, emp, cert, langs, cov, speed, e.fcr_factor,
                    res.fcr_per_cert_level * (cert - 1), float(weight @ cov),
                    rate * seat_factor(shift, pl.agent_hours_per_month))

    out = [make(g.name, "existing", None, g.headcount, g.employment, g.certification,
                frozenset(g.languages), g.shift, 0.0) for g in c.agent_groups]
    for p, shift in pl.shift_patterns.items():
        out.append(make(f"hire:{p}", "hire", p, 0, PERMANENT, 1, frozenset(), shift, pl.hire_cost_per_month))
        out.append(make(f"temp:{p}", "temporary", p, 0, TEMPORARY, 1, frozenset(), shift,
                        pl.temporary_cost_per_month))
    return out


def _all_covers(sc: Scenario, city: str) -> dict[str, np.ndarray]:
    covers = {g.name: week_cover(g.shift) for g in sc.cities[city].agent_groups}
    for p, shift in sc.planning.shift_patterns.items():
        covers[f"hire:{p}"] = covers[f"temp:{p}"] = week_cover(shift)
    return covers


def _agent_fcr(sc: Scenario, pools: list[Pool], lang_share: float) -> dict[str, float]:
    """First-contact resolution of agent-handled contacts per type at today's agent mix."""
    heads = np.array([p.headcount * p.hours for p in pools])
    if heads.sum() <= 0:
        mult, add = 1.0, 0.0
    else:
        w = heads / heads.sum()
        mult = float(w @ np.array([p.fcr_mult for p in pools]))
        add = float(w @ np.array([p.fcr_add for p in pools]))
    mm = 1.0 - lang_share * (1.0 - sc.resolution.mismatch_fcr_factor) * 0.5
    return {t: min(1.0, (tt.fcr * mult + add) * mm) for t, tt in sc.ticket_types.items()}


# ---------------------------------------------------------------------------- options
def _chatbot_levels(sc: Scenario, city: str) -> list[tuple[str, float, float, bool]]:
    """(key, penetration, cost, dominated) of the chatbot choices: today's and every level above.

    A choice is dominated when another gives at least its penetration for at most its cost
    (strictly better in one); dominated choices are kept only to evaluate today's plan.
    """
    now = sc.cities[city].chatbot_penetration
    cands = [("current", now, 0.0)] + [
        (f"bot{lv.penetration:g}", lv.penetration, lv.cost_per_month)
        for lv in sc.planning.chatbot_levels if lv.penetration > now + 1e-9
    ]
    if not _bot_matters(sc, city):
        return [(cands[0][0], now, 0.0, False)] + [(k, p, c, True) for k, p, c in cands[1:]]
    out = []
    for k, p, cost in cands:
        dominated = any((p2 >= p and c2 <= cost) and (p2 > p or c2 < cost) for _, p2, c2 in cands)
        out.append((k, p, cost, dominated))
    return out


def _bot_matters(sc: Scenario, city: str) -> bool:
    """Whether any ticket of the city can be answered by the chatbot."""
    mix = sc.channel_mix_of(city)
    types = sc.type_mix_of(city)
    return any(
        mix.get(ch, 0) > 0 and types.get(t, 0) > 0 and tt.chatbot_eligible
        for ch in sc.chatbot.channels for t, tt in sc.ticket_types.items()
    )


def _option(sc: Scenario, city: str, key: str, pen: float, cost: float, triage: bool, dominated: bool,
            agent_fcr: dict[str, float], types: list[tuple[int, ...]], hours: np.ndarray,
            tolerance: float) -> Option:
    dem = _demand(sc, city, pen, agent_fcr)
    chans = sc.channels
    sync = [ch for ch in chans if chans[ch].synchronous]
    asyn = [ch for ch in chans if not chans[ch].synchronous]
    resp = sc.chatbot.response_s
    iv = {k: {ch: _to_intervals(v[ch], hours, types) for ch in chans}
          for k, v in (("defl", dem.deflected), ("direct", dem.direct), ("esc", dem.escalated))}
    weight = _interval_weight(hours, types)
    T = weight.size
    # the initial backlog, amortised over the horizon's days at 00:00 (its total is kept)
    days = max(float(hours.sum()) / 24.0, 1e-9)
    first = np.zeros(T)
    first[np.arange(T) % 24 == 0] = 1.0
    backlog = {ch: first * float(sc.cities[city].initial_backlog.get(ch, 0)) / days for ch in chans}
    to_agents = {ch: iv["direct"][ch] + iv["esc"][ch] + backlog[ch] for ch in chans}
    offered = {ch: to_agents[ch] + iv["defl"][ch] for ch in chans}
    async_rate = sum((to_agents[ch] for ch in asyn), np.zeros(T))
    taus = sorted({chans[ch].target_s for ch in sync} | {max(0.0, chans[ch].target_s - resp) for ch in sync})
    curves = []
    sync_load = np.zeros(T)
    fu = _to_intervals(dem.follow_up_s, hours, types)
    async_work = sum((to_agents[ch] * dem.handle_s[ch] for ch in asyn), np.zeros(T))
    for t in range(T):
        rates = {ch: to_agents[ch][t] for ch in sync}
        lam_sync = sum(rates.values())
        work = sum(rates[ch] * dem.handle_s[ch] for ch in sync)
        sync_load[t] = work / 3600.0
        lam = lam_sync + (0.0 if triage else async_rate[t])
        if not triage:
            work += sum(to_agents[ch][t] * dem.handle_s[ch] for ch in asyn)
        aht = work / lam if lam > 0 else 1.0
        abandon = sum(rates[ch] / chans[ch].patience.mean_s for ch in sync if chans[ch].patience)
        patience = lam / abandon if abandon > 0 else None
        mixes = []
        for ch in sync:
            row = np.zeros(len(taus))
            if lam > 0:
                row[taus.index(chans[ch].target_s)] += iv["direct"][ch][t] / lam
                if chans[ch].target_s >= resp:
                    row[taus.index(max(0.0, chans[ch].target_s - resp))] += iv["esc"][ch][t] / lam
            mixes.append(row)
        if not mixes:
            mixes = [np.zeros(len(taus) or 1)]
            taus = taus or [0.0]
        # work-conserving agents take deferred work as it comes: the hour's asynchronous
        # tickets (with triage; without, they are in the pooled queue) and its follow-ups
        shift = (fu[t] + (async_work[t] if triage else 0.0)) / 3600.0
        curves.append(curve(lam, aht, patience, taus, mixes, tolerance=tolerance, shift=shift,
                            operating_share=sc.planning.targets.channel_target_share or 0.8))
    work_s = float(weight @ (sync_load * 3600.0 + async_work + fu))
    tot_offered = sum(float(weight @ offered[ch]) for ch in chans)
    defl = sum(float(weight @ iv["defl"][ch]) for ch in chans)
    primary_agents = sum(float(weight @ (iv["esc"][ch] + iv["direct"][ch])) for ch in chans)
    return Option(
        key=f"{key}|{'triage' if triage else 'fifo'}", penetration=pen, triage=triage, cost=cost,
        dominated=dominated,
        curves=tuple(curves), offered=offered, deflected=iv["defl"], escalated=iv["esc"], to_agents=to_agents,
        sync_load=sync_load, async_rate=async_rate, follow_up_s=fu, work_s=work_s,
        deflect_share=defl / max(defl + primary_agents, 1e-9), primary=tot_offered,
    )


def city_inputs(scenario: Scenario, city: str, *, tolerance: float = 0.003) -> CityInputs:
    """The programme's data for ``city`` (see the module docstring); ``tolerance`` merges pieces."""
    sc = scenario
    c = sc.cities[city]
    hours = horizon_hours(sc)
    covers = _all_covers(sc, city)
    types = _day_types(list(covers.values()), hours)
    pools = _pools(sc, city, types, hours, covers)
    languages = {k: v for k, v in c.languages.items() if v > 0}
    agent_fcr = _agent_fcr(sc, pools, sum(languages.values()))
    triage_now = c.routing.level >= 1
    triages = [True] if triage_now else [False, True]
    options = [
        _option(sc, city, key, pen, cost + (sc.planning.triage_cost if tri and not triage_now else 0.0),
                tri, dom, agent_fcr, types, hours, tolerance)
        for key, pen, cost, dom in _chatbot_levels(sc, city) for tri in triages
    ]
    chans = sc.channels
    sync = tuple(ch for ch in chans if chans[ch].synchronous)
    asyn = tuple(ch for ch in chans if not chans[ch].synchronous)
    o = options[0]
    weight = _interval_weight(hours, types)
    a_tot = {ch: float(weight @ o.to_agents[ch]) for ch in asyn}
    s = sum(a_tot.values())
    dem = _demand(sc, city, options[0].penetration, agent_fcr)
    a_aht = sum(a_tot[ch] * dem.handle_s[ch] for ch in asyn) / s if s > 0 else 600.0
    mix = sc.type_mix_of(city)
    fcr_mean = sum(mix.get(t, 0.0) * tt.fcr for t, tt in sc.ticket_types.items())
    peak = max(float(np.max(op.sync_load + op.async_rate * a_aht / 3600.0)) for op in options)
    return CityInputs(
        city=city,
        day_types=tuple(tuple(WEEKDAYS[d] for d in days) for days in types),
        weight=weight,
        pools=tuple(pools),
        options=tuple(options),
        sync_channels=sync,
        async_channels=asyn,
        targets_s={ch: chans[ch].target_s for ch in chans},
        async_share={ch: (a_tot[ch] / s if s > 0 else 1.0 / len(asyn)) for ch in asyn},
        async_aht_s=a_aht,
        follow_up_aht_s=sc.follow_up.handle.mean_s,
        languages=languages,
        fcr_type_mean=fcr_mean,
        mismatch_fcr=sc.resolution.mismatch_fcr_factor,
        mismatch_handle=sc.resolution.mismatch_handle_factor,
        fcr_per_cert_level=sc.resolution.fcr_per_cert_level,
        handle_per_cert_level=sc.resolution.handle_factor_per_cert_level,
        triage_now=triage_now,
        penetration_now=c.chatbot_penetration,
        seat_cap=math.ceil(3.0 * peak + 10),
        assumptions={
            "seat_cost": "a seat's monthly cost scales with its pattern's hours / agent_hours_per_month",
            "new_agents": "hires and temporaries start at certification 1 without local languages",
            "temporary": "temporaries work with the scenario's 'temporary' employment factors, "
                         "or full_time ones where it has none",
        },
    )
