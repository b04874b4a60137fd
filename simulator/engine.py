"""Stage 3 of 7: ``simulate(scenario, seed, replication) -> RunResult``.

Cities that share no agents run in separate SimPy environments (a component each), so a
city simulated alone gives exactly the numbers it gives inside the national run, and the
optimizer can re-simulate one city cheaply. Cities linked by overflow, and the remote pools
they overflow to, share one environment. Times in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from simulator.clock import Clock, later
from simulator.demand import DAY, HOUR, WEEKDAY_INDEX, Arrivals, CityDemand
from simulator.entities import (
    ABANDONED,
    ANSWERED,
    BACKLOG,
    DEFLECTED,
    GONE,
    INF,
    LOST,
    OUTAGE_RETURN,
    PRIMARY,
    RECONTACT,
    RETRY,
    TAKEN,
    UNSERVED,
    WAITING,
    Agent,
    Codebook,
    FollowUpTask,
    Recorder,
    Ticket,
)
from simulator.processes import AgentShifts, ArrivalStream
from simulator.routing import Router, make_router
from simulator.scenario import AgentGroup, Distribution, Scenario, Shift
from simulator.streams import CityStreams

NAN = math.nan


@dataclass
class RunResult:
    """What one replication leaves: contact records, follow-ups and agent time, as frames."""

    scenario: str
    seed: int
    replication: int
    purpose: str
    horizon_s: float
    warmup_s: float
    records: pd.DataFrame
    follow_ups: pd.DataFrame
    agents: pd.DataFrame
    cities: tuple[str, ...] = field(default=())


class Model:
    """The state of one component: routers, agents, streams and the recorder."""

    def __init__(
        self, sc: Scenario, nodes: Sequence[str], book: Codebook, root: int, purpose: str, rep: int,
        clock: type[simpy.Environment] = Clock,
    ) -> None:
        self.sc, self.book = sc, book
        self.env = clock()
        self.later = later(self.env)
        self.rec = Recorder(book)
        self.fu_rows: list[tuple[int, float, float, float]] = []
        self.horizon_s, self.warmup_s = sc.horizon_s, sc.warmup_s
        self.nodes = [book.cities.index(n) for n in nodes]
        n_all = len(book.cities)
        self.routers: list[Router | None] = [None] * n_all
        self.demands: list[CityDemand | None] = [None] * n_all
        self.streams: list[CityStreams | None] = [None] * n_all
        self.rng_again: list[np.random.Generator | None] = [None] * n_all
        self.overflow: list[tuple[float, list[int]] | None] = [None] * n_all
        # [ticket type][channel]: the bot answers first, then escalates (None: no bot here)
        self.escalate: list[list[list[bool]] | None] = [None] * n_all
        self.city_fcr = [sc.cities[n].fcr_factor if n in sc.cities else 1.0 for n in book.cities]
        self.follow_up_share = [
            sc.cities[n].follow_up_share if n in sc.cities else 0.0 for n in book.cities
        ]
        self.agents: list[tuple[Agent, list[tuple[float, float]]]] = []
        self.group_rows: list[tuple[int, int, str, str, int, int, float]] = []
        n_ranks = len({t.rank for t in sc.tiers.values()})
        self.n_classes = 4 * n_ranks
        self.fcr = [t.fcr for t in sc.ticket_types.values()]
        self.follows = [t.follow_up for t in sc.ticket_types.values()]
        res = sc.resolution
        self.mm_handle, self.mm_fcr = res.mismatch_handle_factor, res.mismatch_fcr_factor
        # the secondary contacts' durations, one sampler each (by channel code for retries)
        self.draw_outage_return = sampler(sc.outage_recontact_delay)
        self.draw_retry = [sampler(ch.retry_delay) for ch in sc.channels.values()]
        self.draw_recontact = sampler(res.recontact_delay)
        self.draw_follow_up = sampler(sc.follow_up.handle)
        for name in nodes:
            self._add_node(name, root, purpose, rep)

    # -- construction ----------------------------------------------------------------------
    def _add_node(self, name: str, root: int, purpose: str, rep: int) -> None:
        sc, i = self.sc, self.book.cities.index(name)
        city = sc.cities.get(name)
        routing = city.routing if city is not None else None
        level = routing.level if routing is not None else 0
        wait = routing.language_wait_s if routing is not None else 0.0
        self.routers[i] = make_router(level, self.n_classes, self.abandon, wait)
        groups = city.agent_groups if city is not None else sc.pools[name].agent_groups
        for g in groups:
            self._add_group(i, g)
        if city is None:
            return
        self.streams[i] = CityStreams(root, purpose, rep, name)
        self.rng_again[i] = self.streams[i].recontact  # the hot path skips __getattr__
        d = self.demands[i] = CityDemand(sc, name, self.book.languages)
        if sc.chatbot.response_s > 0 and d.penetration > 0:
            self.escalate[i] = d.bot_ok.tolist()
        self.classes_of_node(i, level)
        if routing.overflow is not None and level >= 3:
            targets = [self.book.cities.index(t) for t in routing.overflow.to]
            self.overflow[i] = (routing.overflow.after_s, targets)

    def classes_of_node(self, i: int, level: int) -> None:
        """Priority class of each (channel, type, tier); all zero without triage."""
        sc = self.sc
        ranks = sorted({t.rank for t in sc.tiers.values()})
        R = len(ranks)
        table = {}
        for c, ch in enumerate(sc.channels.values()):
            for y, tt in enumerate(sc.ticket_types.values()):
                for r, tier in enumerate(sc.tiers.values()):
                    cls = (0 if ch.synchronous else 1) * 2 * R + (0 if tt.fast_lane else 1) * R
                    table[c, y, r] = (cls + ranks.index(tier.rank)) if level >= 1 else 0
        self.cls_tables = getattr(self, "cls_tables", {})
        self.cls_tables[i] = table

    def _add_group(self, node: int, g: AgentGroup) -> None:
        sc = self.sc
        emp = sc.employment[g.employment]
        res = sc.resolution
        lvl = g.certification - 1
        langs = frozenset(self.book.languages.index(lang) for lang in g.languages)
        shifts = shift_intervals(g.shift, sc.start_weekday, self.horizon_s)
        gid = self.book.groups.index(f"{self.book.cities[node]}/{g.name}")
        for _ in range(g.headcount):
            a = Agent(
                gid, node, langs, emp.handle_factor * res.handle_factor_per_cert_level**lvl,
                emp.fcr_factor, res.fcr_per_cert_level * lvl, g.certification,
            )
            self.agents.append((a, shifts))
        staffed = sum(_clip(s, e, self.warmup_s, self.horizon_s) for s, e in shifts)
        self.group_rows.append((node, gid, g.employment, g.name, g.headcount, g.certification, staffed))

    # -- scheduling helpers ----------------------------------------------------------------
    def at(self, when: float, fn, arg) -> None:
        """Call ``fn(arg)`` at time ``when`` (or now, if that is past)."""
        delay = when - self.env.now
        self.later(delay if delay > 0.0 else 0.0, fn, arg)  # noqa: FURB136 - no max() call

    # -- ticket life ------------------------------------------------------------------------
    def arrive(self, node: int, day: Arrivals, i: int) -> None:
        """A primary arrival: lost to an outage, answered by the chatbot, or offered to agents."""
        t = Ticket(
            day.time_s[i], day.deadline_s[i], day.handle_s[i], day.u_resolve[i], node,
            day.channel[i], day.ttype[i], day.tier[i], day.lang[i], PRIMARY, 0, 0, day.retry[i],
        )
        if day.lost[i]:
            self.rec.add(t, NAN, LOST, 0, -1)
            g = self.rng_again[node]
            if g.random() < self.sc.outage_recontact_probability:
                self.again(t, OUTAGE_RETURN, t.arrival_s + self.draw_outage_return(g))
            return
        t.cls = self.cls_tables[node][t.channel, t.ttype, t.tier]
        if day.deflected[i]:
            self.rec.add(t, t.arrival_s + self.sc.chatbot.response_s, DEFLECTED, Recorder.RESOLVED, -1)
            return
        escalate = self.escalate[node]
        if escalate is not None and escalate[t.ttype][t.channel]:
            bot_s = self.sc.chatbot.response_s
            t.deadline_s += bot_s  # escalated: joins the queue after the bot
            if t.arrival_s + bot_s >= self.horizon_s:
                self.rec.add(t, NAN, UNSERVED, 0, -1)
            else:
                self.at(t.arrival_s + bot_s, self.offer, t)
            return
        self.offer(t)

    def offer(self, t: Ticket) -> None:
        """``t`` joins its city's queue now, or goes straight to an idle agent."""
        now = self.env.now
        router = self.routers[t.city]
        a = router.choose_agent(t, now)
        if a is not None:
            self.dispatch(a, t)
            return
        router.enqueue(t)
        if t.retry and t.deadline_s < INF:
            self.at(t.deadline_s, self.expire, t)
        if router.needs_language_timer(t):
            self.at(now + router.wait_s, self.release, t)  # type: ignore[attr-defined]
        overflow = self.overflow[t.city]
        if overflow is not None:
            self.at(now + overflow[0], self.spill, t)

    def dispatch(self, a: Agent, t: Ticket) -> None:
        t.state = TAKEN
        self.later(0.0, a.wake, t)

    def expire(self, t: Ticket) -> None:
        if t.state == WAITING:
            self.abandon(t, self.env.now)

    def _still_waiting(self, t: Ticket) -> bool:
        """True if ``t`` waits; a ticket past its deadline is recorded as abandoned first."""
        if t.state != WAITING:
            return False
        if t.deadline_s <= self.env.now:
            self.abandon(t, self.env.now)
            return False
        return True

    def release(self, t: Ticket) -> None:
        """A language ticket's wait limit is over: any idle agent may take it now."""
        if self._still_waiting(t):
            a = self.routers[t.city].choose_agent(t, self.env.now)
            if a is not None:
                self.dispatch(a, t)

    def spill(self, t: Ticket) -> None:
        """Overflow: offer a ticket that waited too long to the targets' agents."""
        if not self._still_waiting(t):
            return
        for target in self.overflow[t.city][1]:
            a = self.routers[target].choose_agent(t, self.env.now)
            if a is not None:
                self.dispatch(a, t)
                return
        for target in self.overflow[t.city][1]:
            self.routers[target].inbox.append(t)

    def abandon(self, t: Ticket, now: float) -> None:
        """Record a customer who hung up at their deadline; some call back later."""
        t.state = GONE
        self.rec.add(t, NAN, ABANDONED, 0, -1)
        if t.retry:
            g = self.rng_again[t.city]
            self.again(t, RETRY, t.deadline_s + self.draw_retry[t.channel](g))

    def again(self, t: Ticket, kind: int, when: float) -> None:
        """Schedule the same customer's next contact, with fresh draws from the recontact stream."""
        if t.attempt + 1 >= self.sc.resolution.max_attempts or when >= self.horizon_s:
            return
        d = self.demands[t.city]
        g = self.rng_again[t.city]
        ch = t.channel
        handle = d.handle_factor * d.handle.scalar(t.ttype * d.nch + ch, g.random())
        patience = d.patience.scalar(ch, g.random())
        nt = Ticket(
            when, when + patience, handle, g.random(), t.city, ch, t.ttype, t.tier, t.lang,
            kind, t.attempt + 1, self.cls_tables[t.city][ch, t.ttype, t.tier],
            g.random() < d.p_retry[ch],
        )
        self.at(when, self.offer, nt)

    def serve(self, a: Agent, job: Ticket | FollowUpTask, now: float) -> float:
        """Start serving ``job``; decide its outcome now and return the handle time."""
        if job.__class__ is FollowUpTask:
            job.state = TAKEN
            self.fu_rows.append((job.city, job.created_s, job.due_s, now))
            h = job.handle_s * a.handle_mult
            a.busy_s += _clip(now, now + h, self.warmup_s, self.horizon_s)
            return h
        t: Ticket = job  # type: ignore[assignment]
        t.state = TAKEN
        h = t.handle_s * a.handle_mult
        p = self.fcr[t.ttype] * self.city_fcr[t.city] * a.fcr_mult + a.fcr_add
        flags = 0
        if t.lang >= 0 and t.lang not in a.languages:
            h *= self.mm_handle
            p *= self.mm_fcr
            flags = Recorder.MISMATCH
        if a.home != t.city:
            flags |= Recorder.OVERFLOW
        end = now + h
        if t.u_resolve < p:
            flags |= Recorder.RESOLVED
            if self.follows[t.ttype]:
                self._owe_follow_up(t.city, end)
        else:
            g = self.rng_again[t.city]
            if g.random() < self.sc.resolution.recontact_probability:
                self.again(t, RECONTACT, end + self.draw_recontact(g))
        # a timeout can land one rounding step before its target time: never a negative wait
        self.rec.add(t, now if now > t.arrival_s else t.arrival_s, ANSWERED, flags, a.group)  # noqa: FURB136
        a.busy_s += _clip(now, end, self.warmup_s, self.horizon_s)
        return h

    def add_overtime(self, a: Agent, start: float, end: float) -> None:
        a.overtime_s += _clip(start, end, self.warmup_s, self.horizon_s)

    def _owe_follow_up(self, city: int, created: float) -> None:
        """A resolved complex ticket owes a follow-up: scheduled, or (no closed loop) never made."""
        fu = self.sc.follow_up
        g = self.rng_again[city]
        if g.random() >= self.follow_up_share[city]:
            self.fu_rows.append((city, created, created + fu.due_s, NAN))
            return
        task = FollowUpTask(city, created, created + fu.due_s, self.draw_follow_up(g))
        self.at(created, self.routers[city].follow_ups.append, task)

    def end_shift(self, a: Agent) -> None:
        a.on_shift = False
        if self.routers[a.home].remove_idle(a):
            self.later(0.0, a.wake, None)

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> None:
        """Seed the initial backlog, start every process and run to the horizon."""
        actors: list[ArrivalStream | AgentShifts] = []
        for node in self.nodes:
            if self.demands[node] is not None:
                self._seed_backlog(node)
                actors.append(ArrivalStream(self, node))
        actors += [AgentShifts(self, a, shifts) for a, shifts in self.agents if shifts]
        for actor in actors:  # first steps at time zero, after the backlog, in the order SimPy
            actor.start()  # would start processes: before any event
        self.env.run(until=self.horizon_s)
        self._close()

    def _seed_backlog(self, node: int) -> None:
        name = self.book.cities[node]
        backlog = self.sc.cities[name].initial_backlog
        if not any(backlog.values()):
            return
        d = self.demands[node]
        rng = CityStreams(self.streams[node]._root, self.streams[node]._purpose,
                          self.streams[node]._rep, name + "/backlog")
        ch = np.concatenate([np.full(n, d.channels.index(c)) for c, n in backlog.items()])
        day = d.attributes(np.zeros(ch.size), rng, channel=ch)
        for i in range(len(day)):
            t = Ticket(0.0, day.deadline_s[i], day.handle_s[i], day.u_resolve[i], node,
                       day.channel[i], day.ttype[i], day.tier[i], day.lang[i], BACKLOG, 0,
                       self.cls_tables[node][day.channel[i], day.ttype[i], day.tier[i]], False)
            self.offer(t)

    def _close(self) -> None:
        """At the horizon: waiting tickets are abandoned (deadline passed) or unserved backlog."""
        seen: set[int] = set()
        for node in self.nodes:
            r = self.routers[node]
            for t in r.waiting() + list(r.inbox):
                if t.state != WAITING or id(t) in seen:
                    continue
                seen.add(id(t))
                t.state = GONE
                out = ABANDONED if t.deadline_s <= self.horizon_s else UNSERVED
                self.rec.add(t, NAN, out, 0, -1)
            for f in r.follow_ups:
                if f.state == WAITING:
                    self.fu_rows.append((f.city, f.created_s, f.due_s, NAN))

    def agent_frame(self) -> pd.DataFrame:
        busy: dict[int, float] = {}
        over: dict[int, float] = {}
        for a, _ in self.agents:
            busy[a.group] = busy.get(a.group, 0.0) + a.busy_s
            over[a.group] = over.get(a.group, 0.0) + a.overtime_s
        rows = [
            (self.book.cities[n], name, emp, hc, cert, staffed * hc + over.get(gid, 0.0), busy.get(gid, 0.0))
            for n, gid, emp, name, hc, cert, staffed in self.group_rows
        ]
        cols = ["city", "group", "employment", "headcount", "certification", "staffed_s", "busy_s"]
        return pd.DataFrame(rows, columns=cols)


def sampler(d: Distribution) -> Callable[[np.random.Generator], float]:
    """Draws of a duration from a generator (scalar path for the rarer secondary events).

    The lognormal's parameters are worked out once, not per draw: the same numbers.
    """
    if d.dist == "exponential":
        mean_s = d.mean_s
        return lambda g: mean_s * g.standard_exponential()
    s2 = math.log1p(d.cv**2)
    mu, sigma = math.log(d.mean_s) - s2 / 2, math.sqrt(s2)
    return lambda g: math.exp(mu + sigma * g.standard_normal())


def _clip(s: float, e: float, lo: float, hi: float) -> float:
    """The length of [s, e] inside [lo, hi]; comparisons, not min/max calls (a hot path)."""
    d = (e if e < hi else hi) - (s if s > lo else lo)  # noqa: FURB136
    return d if d > 0.0 else 0.0  # noqa: FURB136


def shift_intervals(shift: Shift, start_weekday: str, horizon_s: float) -> list[tuple[float, float]]:
    """The on-shift intervals of a pattern within [0, horizon), adjacent ones merged."""
    first = WEEKDAY_INDEX[start_weekday]
    days = {WEEKDAY_INDEX[d] for d in shift.days}
    out: list[tuple[float, float]] = []
    for d in range(-1, math.ceil(horizon_s / DAY) + 1):
        if (first + d) % 7 not in days:
            continue
        s = d * DAY + shift.start_h * HOUR
        e = min(s + shift.length_h * HOUR, horizon_s)
        s = max(s, 0.0)
        if e <= s:
            continue
        if out and s <= out[-1][1] + 1e-9:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def codebook(sc: Scenario) -> Codebook:
    """Integer codes for every name a record refers to."""
    nodes = tuple(sc.cities) + tuple(sc.pools)
    langs = tuple(sorted({lang for c in sc.cities.values() for lang in c.languages}
                         | {lang for p in sc.pools.values() for g in p.agent_groups for lang in g.languages}))
    groups = tuple(
        f"{n}/{g.name}"
        for n in nodes
        for g in (sc.cities[n].agent_groups if n in sc.cities else sc.pools[n].agent_groups)
    )
    return Codebook(nodes, tuple(sc.channels), tuple(sc.ticket_types), tuple(sc.tiers), langs, groups)


def components(sc: Scenario) -> list[list[str]]:
    """Groups of cities and pools that share agents through overflow (connected components)."""
    parent = {n: n for n in list(sc.cities) + list(sc.pools)}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for name, city in sc.cities.items():
        if city.routing.overflow is not None and city.routing.level >= 3:
            for t in city.routing.overflow.to:
                parent[find(t)] = find(name)
    groups: dict[str, list[str]] = {}
    for n in parent:
        groups.setdefault(find(n), []).append(n)
    return list(groups.values())


def simulate(
    scenario: Scenario,
    *,
    seed: int | None = None,
    replication: int = 0,
    purpose: str = "run",
    cities: Iterable[str] | None = None,
    clock: type[simpy.Environment] = Clock,
) -> RunResult:
    """Simulate one replication. Randomness depends only on (seed, purpose, replication, city).

    ``cities`` restricts the run to the components holding those cities; their numbers are
    identical to the ones they have in a full run. ``clock``: the environment (a plain
    ``simpy.Environment`` runs every timer as a SimPy Timeout: the same numbers, slower).
    """
    root = scenario.seed if seed is None else seed
    book = codebook(scenario)
    wanted = set(scenario.cities) if cities is None else set(cities)
    unknown = wanted - set(scenario.cities)
    if unknown:
        raise ValueError(f"unknown cities: {sorted(unknown)}")
    recs, fus, ags = [], [], []
    ran: list[str] = []
    for comp in components(scenario):
        if not wanted.intersection(comp):
            continue
        m = Model(scenario, comp, book, root, purpose, replication, clock)
        m.run()
        recs.append(m.rec.frame())
        fus.append(pd.DataFrame(m.fu_rows, columns=["city", "created_s", "due_s", "done_s"]))
        ags.append(m.agent_frame())
        ran.extend(c for c in comp if c in scenario.cities)
    fu = pd.concat(fus, ignore_index=True)
    fu["city"] = pd.Categorical.from_codes(fu["city"].astype(int), book.cities) if len(fu) else fu["city"]
    return RunResult(
        scenario.name, root, replication, purpose, scenario.horizon_s, scenario.warmup_s,
        pd.concat(recs, ignore_index=True), fu, pd.concat(ags, ignore_index=True), tuple(ran),
    )
