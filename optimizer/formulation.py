"""Stage 6 of 7 (optimizer): ``build_problem(...) -> StaffingProblem``, the mixed-integer programme.

Per city, decisions: seats per candidate pattern (``hire:<p>``, ``temp:<p>``, integer),
agents trained in the local language and agents certified one level up per pool (integer),
one option (chatbot level x triage, binary). Staffing and shifts are decided together: the
effective agents present in interval ``t`` are ``n_t = sum_pools cover_t * speed * heads``
(certification adds its faster handle time; the state's ``efficiency`` and language
``mm_factor`` scale everyone), and every target is written on the intervals' performance
aggregated over the horizon, never on per-interval requirements rounded up and then added.

One agent serves one ticket at a time: an agent adds to ``n_t`` once, whatever its channels
or languages; all synchronous channels share one queue (its Erlang curve per option), so no
agent is counted in two queues. Per interval and option, ``n_t`` splits into ``m1`` (the
interval staffed at or above its curve's concave start, binary ``z``) and ``m0`` (below it:
nothing answered in target, nothing left for deferred work). The Erlang chords hold in
perspective form, ``x <= a z + b m1``: the convex hull of the two cases, exact at every
integer ``m1``. Only quiet intervals (load at most ``quiet_share`` of the peak) may stay
understaffed, and without triage none with asynchronous tickets (one FIFO queue).

Asynchronous tickets (e-mail, social) and follow-ups: work-conserving agents take them as
they come, so the curves are shifted by that work (see ``inputs``); in a staffed interval
the hour's fresh tickets are answered within it; tickets of understaffed intervals wait in
a fluid backlog with hourly age buckets and are answered in later intervals' idle time (a
tangent of the queue's convex idle curve, conservative); a ticket older than its channel's
target is late; the backlog's time integral is their waiting time.

Targets (``planning.targets``; each ``None`` is off): each channel's share within target
(allowed misses scaled by the state's ``miss_ratio``), the mean first response (scaled by
``response_ratio``), each city's score (separable concave approximation at the anchor, see
``anchor``), the national volume-weighted score, dialect coverage (speaker share of agent
hours for every local language). Modes: ``cost`` (minimise monthly cost), ``budget``
(maximise the national score within the budget), ``soft`` (every target may fall short at a
price), ``evaluate`` (decisions ``fixed``: the model's prediction at a plan). ``lagrange``
turns a one-city problem into its pricing problem for ``decompose``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pulp

from optimizer.anchor import SKILLS_MISMATCH, CityState, ModelKpis
from optimizer.inputs import CityInputs
from optimizer.plan import CityPlan
from simulator.scenario import Planning, Targets

__all__ = ["SCALE", "SHORTFALL_PRICE", "CityVars", "StaffingProblem", "build_problem", "model_kpis", "read_plan"]

DROP_WAIT_H = 24.0  # a dropped (never answered) asynchronous ticket is charged this wait

QUIET_SHARE = 0.5  # an interval may stay understaffed only if its load is at most this share of the peak
SHORTFALL_PRICE = 1e6  # yuan per month for one unit of shortfall (SCALE) in the soft programme

SCALE = {  # one unit of shortfall in each target's own units, for the soft programme
    "channel_share": 0.01,
    "mean_first_response": 360.0,
    "city_score": 1.0,
    "national_score": 1.0,
    "dialect_coverage": 0.01,
}


def _lin(terms: list[tuple[pulp.LpVariable, float]], const: float = 0.0) -> pulp.LpAffineExpression:
    """A linear expression; repeated variables add up."""
    acc: dict[pulp.LpVariable, float] = {}
    for v, c in terms:
        if c != 0.0:
            acc[v] = acc.get(v, 0.0) + float(c)
    return pulp.LpAffineExpression([(v, c) for v, c in acc.items() if c != 0.0], constant=const)


@dataclass
class CityVars:
    """The variables and expressions of one city's block."""

    seats: dict[str, pulp.LpVariable] = field(default_factory=dict)
    trained: dict[str, pulp.LpVariable] = field(default_factory=dict)
    certified: dict[str, pulp.LpVariable] = field(default_factory=dict)
    option: dict[str, pulp.LpVariable] = field(default_factory=dict)
    cost: pulp.LpAffineExpression | None = None
    late: pulp.LpAffineExpression | None = None
    within: dict[str, pulp.LpAffineExpression] = field(default_factory=dict)  # per channel, horizon
    offered: dict[str, pulp.LpAffineExpression] = field(default_factory=dict)
    wait_s: pulp.LpAffineExpression | None = None
    answered: pulp.LpAffineExpression | None = None
    backlog: pulp.LpAffineExpression | None = None
    score: pulp.LpAffineExpression | None = None  # city constraint (bound-anchored)
    score_mean: pulp.LpAffineExpression | None = None  # national constraint (mean-anchored)
    levers: list = field(default_factory=list)  # (value at anchor, Pieces, change expression)
    score_base: float = 0.0  # mean-anchored score at the anchor

    def best_score(self) -> float | None:
        """The linearised (mean-anchored) score of the solved decisions, each lever at its bound."""
        if self.score_mean is None:
            return None
        total = self.score_base
        for v0, pieces, change in self.levers:
            total += pieces.lower_envelope(v0 + float(change.value()))
        return float(total)


@dataclass
class StaffingProblem:
    """A PuLP problem with the variable maps needed to read a plan back."""

    prob: pulp.LpProblem
    cities: dict[str, CityVars]
    inputs: Mapping[str, CityInputs]
    mode: str
    rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # row name -> (city, target)
    shortfall: dict[tuple[str, str], pulp.LpVariable] = field(default_factory=dict)
    national: pulp.LpAffineExpression | None = None
    total_cost: pulp.LpAffineExpression | None = None
    weights: dict[str, float] = field(default_factory=dict)
    proven: bool = True  # False when the solver stopped at its node (or time) limit with an incumbent


class _Builder:
    def __init__(self, inputs: Mapping[str, CityInputs], states: Mapping[str, CityState],
                 planning: Planning, mode: str, fixed: Mapping[str, CityPlan] | None) -> None:
        self.inputs, self.states, self.pl, self.mode = inputs, states, planning, mode
        self.tg: Targets = planning.targets
        self.fixed = dict(fixed or {})
        sense = pulp.LpMinimize
        self.prob = pulp.LpProblem("capplan", sense)
        self.sp = StaffingProblem(self.prob, {}, inputs, mode)
        self.n_rows = 0

    # -- rows -----------------------------------------------------------------------------
    def row(self, expr: pulp.LpAffineExpression, sense: int, rhs: float) -> None:
        self.n_rows += 1
        self.prob.addConstraint(pulp.LpConstraint(expr, sense=sense, rhs=rhs), name=f"r{self.n_rows}")

    def target(self, city: str, what: str, lhs: pulp.LpAffineExpression, rhs: float, unit_mult: float) -> None:
        """``lhs >= rhs``; in the soft modes a priced shortfall (in target units) may fill the gap."""
        self.n_rows += 1
        name = f"t{self.n_rows}"
        lhs = lhs * (1.0 / unit_mult)  # rows in the target's own units keep tolerances meaningful
        rhs = rhs / unit_mult
        if self.mode == "soft":
            e = self.prob.add_variable(f"short{self.n_rows}", lowBound=0)
            self.sp.shortfall[(city, what)] = e
            lhs = lhs + e
        self.prob.addConstraint(pulp.LpConstraint(lhs, sense=pulp.LpConstraintGE, rhs=rhs), name=name)
        self.sp.rows[name] = (city, what)

    # -- a city ---------------------------------------------------------------------------
    def city(self, ix: int, ci: CityInputs) -> CityVars:
        st = self.states.get(ci.city, CityState())
        cv = CityVars()
        fx = self.fixed.get(ci.city)
        fl = self.floor.get(ci.city)
        if fx is not None or fl is not None:
            self.opts = [ci.option(self._fixed_option(ci, fx or fl))]
        elif self.only_option is not None:
            self.opts = [ci.option(self.only_option[ci.city])]
        else:
            self.opts = [o for o in ci.options if not o.dominated]
        tag = f"c{ix}"
        self.tag = tag
        self._decisions(tag, ci, cv, fx)
        if fl is not None:
            self._floor(ci, cv, fl)
        n_t, heads = self._agents(ci, st, cv)
        self._operations(tag, ci, st, cv, n_t)
        self._cost(ci, cv)
        if self.mode != "evaluate":
            self._targets(ci, st, cv, heads)
        return cv

    def _decisions(self, tag: str, ci: CityInputs, cv: CityVars, fx: CityPlan | None) -> None:
        pl = self.pl
        langs = set(ci.languages)
        for p in ci.pools:
            if p.new:
                cap = ci.seat_cap
                v = self.prob.add_variable(f"{tag}_seat_{len(cv.seats)}", 0, cap, cat=pulp.LpInteger)
                if fx is not None:
                    v.lowBound = v.upBound = fx.heads(p.key)
                cv.seats[p.key] = v
            bound = p.headcount if not p.new else ci.seat_cap
            if langs and not langs <= p.languages:
                v = self.prob.add_variable(f"{tag}_train_{len(cv.trained)}", 0, bound, cat=pulp.LpInteger)
                if fx is not None:
                    v.lowBound = v.upBound = fx.trained.get(p.key, 0)
                cv.trained[p.key] = v
            if p.certification < 5:
                v = self.prob.add_variable(f"{tag}_cert_{len(cv.certified)}", 0, bound, cat=pulp.LpInteger)
                if fx is not None:
                    v.lowBound = v.upBound = fx.certified.get(p.key, 0)
                cv.certified[p.key] = v
            if p.new:
                for table in (cv.trained, cv.certified):
                    if p.key in table:
                        self.row(_lin([(table[p.key], 1.0), (cv.seats[p.key], -1.0)]), pulp.LpConstraintLE, 0.0)
        for o in self.opts:
            v = self.prob.add_variable(f"{tag}_opt_{len(cv.option)}", 0, 1, cat=pulp.LpInteger)
            if fx is not None:
                v.lowBound = 1
            cv.option[o.key] = v
        self.row(_lin([(v, 1.0) for v in cv.option.values()]), pulp.LpConstraintEQ, 1.0)
        hires = [v for k, v in cv.seats.items() if k.startswith("hire:")]
        temps = [v for k, v in cv.seats.items() if k.startswith("temp:")]
        if pl.max_hires_per_city is not None and fx is None:
            self.row(_lin([(v, 1.0) for v in hires]), pulp.LpConstraintLE, pl.max_hires_per_city)
        if pl.max_temporary_per_city is not None and fx is None:
            self.row(_lin([(v, 1.0) for v in temps]), pulp.LpConstraintLE, pl.max_temporary_per_city)

    @staticmethod
    def _floor(ci: CityInputs, cv: CityVars, fl: CityPlan) -> None:
        """Every decision at least the floor plan's (its option is the city's only one)."""
        floors = [(v, fl.heads(key)) for key, v in cv.seats.items()]
        floors += [(v, got.get(key, 0)) for table, got in ((cv.trained, fl.trained), (cv.certified, fl.certified))
                   for key, v in table.items()]
        for v, low in floors:
            v.lowBound = max(v.lowBound or 0, low)
            v.upBound = max(v.upBound, v.lowBound)

    @staticmethod
    def _fixed_option(ci: CityInputs, cp: CityPlan) -> str:
        pen = ci.penetration_now if cp.chatbot_penetration is None else cp.chatbot_penetration
        tri = cp.triage or ci.triage_now
        for o in ci.options:
            if abs(o.penetration - pen) < 1e-9 and o.triage == tri:
                return o.key
        raise ValueError(f"{ci.city}: no option with penetration {pen} and triage {tri}")

    def _agents(self, ci: CityInputs, st: CityState, cv: CityVars) -> tuple[list, dict]:
        """Effective agents per interval and head expressions per pool."""
        heads: dict[str, pulp.LpAffineExpression] = {}
        per_t: list[list[tuple[pulp.LpVariable, float]]] = [[] for _ in range(ci.T)]
        const = np.zeros(ci.T)
        up = 1.0 / ci.handle_per_cert_level - 1.0
        for p in ci.pools:
            speed = p.speed * st.efficiency / st.mm_factor
            if p.new:
                heads[p.key] = _lin([(cv.seats[p.key], 1.0)])
            else:
                heads[p.key] = _lin([], float(p.headcount))
                const += p.cover * speed * p.headcount
            for t in np.nonzero(p.cover > 0)[0]:
                if p.new:
                    per_t[t].append((cv.seats[p.key], float(p.cover[t] * speed)))
                if p.key in cv.certified:
                    per_t[t].append((cv.certified[p.key], float(p.cover[t] * speed * up)))
        n_t = [_lin(per_t[t], float(const[t])) for t in range(ci.T)]
        self.n_max = [float(const[t]) + sum(c * ci.seat_cap * 1.1 for _, c in per_t[t]) for t in range(ci.T)]
        return n_t, heads

    def _operations(self, tag: str, ci: CityInputs, st: CityState, cv: CityVars, n_t: list) -> None:
        """Synchronous performance per interval and option, and what is left for deferred work.

        Per interval ``t`` and option ``o`` the agents present split as ``m1 + m0``: ``m1``
        staffs the interval at or above the curve's concave start under binary ``z``
        (``z <= u_o``), ``m0`` below it (``z = 0``: nothing answered in target, nothing left
        for deferred work). The Erlang chords hold in perspective form, ``x <= a z + b m1``,
        the convex hull of the two cases, so the relaxation stays tight.
        """
        T, opts = ci.T, self.opts
        u = cv.option
        sync = ci.sync_channels
        idle = []  # per interval: expression bounding the agents free for deferred work
        within_t = {ch: [] for ch in sync}  # horizon-weighted terms
        V = self.prob.add_variable
        quiet = {o.key: float(np.max(o.sync_load)) * self.quiet_share for o in opts}
        for t in range(T):
            m_terms, idle_terms = [], []
            staffed = []
            n0 = float(n_t[t].constant)
            for j, o in enumerate(opts):
                cur = o.curves[t]
                ns = float(cur.n_start)
                m1 = V(f"{tag}_m{t}_{j}", 0)
                m_terms.append((m1, 1.0))
                # with triage an interval may stay understaffed; without, one FIFO queue would
                # put its unanswered tickets ahead of the next hours' callers, so it may not
                free = (o.triage or float(o.async_rate[t]) <= 0.0) and o.sync_load[t] <= quiet[o.key]
                if ns > 0 and n0 < ns and (free or self.mode in ("evaluate", "soft")):
                    z = V(f"{tag}_z{t}_{j}", 0, 1, cat=pulp.LpInteger)
                    m0 = V(f"{tag}_n{t}_{j}", 0)
                    m_terms.append((m0, 1.0))
                    self.row(_lin([(z, 1.0), (u[o.key], -1.0)]), pulp.LpConstraintLE, 0.0)
                    self.row(_lin([(m0, 1.0), (u[o.key], -ns), (z, ns)]), pulp.LpConstraintLE, 0.0)
                else:
                    z = u[o.key]
                staffed.append((z, o))
                self.row(_lin([(m1, 1.0), (z, -ns)]), pulp.LpConstraintGE, 0.0)
                self.row(_lin([(m1, 1.0), (z, -self.n_max[t] - ns)]), pulp.LpConstraintLE, 0.0)
                ia, ib = cur.idle
                idle_terms += [(z, ia), (m1, ib)]
                for k, ch in enumerate(sync):
                    pieces = cur.within[k]
                    top = float(pieces.a[-1])
                    if top <= 0:
                        continue
                    x = V(f"{tag}_x{t}_{j}_{k}", 0, top)
                    for a, b in zip(pieces.a, pieces.b):
                        self.row(_lin([(x, 1.0), (z, -float(a)), (m1, -float(b))]), pulp.LpConstraintLE, 0.0)
                    if z is not u[o.key]:
                        self.row(_lin([(x, 1.0), (z, -top)]), pulp.LpConstraintLE, 0.0)
                    within_t[ch].append((x, float(ci.weight[t])))
            self.row(_lin(m_terms) - n_t[t], pulp.LpConstraintEQ, 0.0)
            idle.append((_lin(idle_terms), staffed))
        backlog, late_async = self._async(tag, ci, cv, idle)
        self._horizon(ci, st, cv, within_t, backlog, late_async)

    def _async(self, tag: str, ci: CityInputs, cv: CityVars, idle: list):
        """Fluid backlog of asynchronous tickets, cyclic per day type.

        In a staffed interval the hour's fresh tickets are answered within it (their work is
        already in the curves' shift); tickets arriving while the interval is understaffed
        wait. ``q[t][a]``: tickets at the start of interval ``t`` that arrived ``a`` hours
        before (``a = 1..A``); ``over[t]``: older ones. Carried tickets are answered in the
        synchronous queue's idle time. A ticket reaching age ``k + 1`` has waited more than
        ``k`` hours: late for a channel whose target is ``k`` hours. Overdue tickets may be
        dropped (never answered), charged ``DROP_WAIT_H`` of waiting.
        """
        T, u = ci.T, cv.option
        kmax = max([max(1, round(ci.targets_s[ch] / 3600.0)) for ch in ci.async_channels] or [1])
        A = kmax + 1
        h_async = ci.async_aht_s / 3600.0
        arr = [_lin([(u[o.key], float(o.async_rate[t])) for o in self.opts]) for t in range(T)]
        V = self.prob.add_variable
        q = [[None] + [V(f"{tag}_q{t}_{a}", 0) for a in range(1, A + 1)] for t in range(T)]
        s = [[V(f"{tag}_s{t}_{a}", 0) for a in range(A + 1)] for t in range(T)]  # s[t][0]: fresh
        over = [V(f"{tag}_o{t}", 0) for t in range(T)]
        s_over = [V(f"{tag}_so{t}", 0) for t in range(T)]
        drop = [V(f"{tag}_d{t}", 0) for t in range(T)]
        for d in range(len(ci.day_types)):
            for t in range(d * 24, d * 24 + 24):
                nxt = d * 24 + (t - d * 24 + 1) % 24
                self.row(_lin([(q[nxt][1], 1.0), (s[t][0], 1.0)]) - arr[t], pulp.LpConstraintEQ, 0.0)
                for a in range(1, A):
                    self.row(_lin([(q[nxt][a + 1], 1.0), (q[t][a], -1.0), (s[t][a], 1.0)]),
                             pulp.LpConstraintEQ, 0.0)
                self.row(_lin([(over[nxt], 1.0), (over[t], -1.0), (q[t][A], -1.0), (s[t][A], 1.0),
                               (s_over[t], 1.0), (drop[t], 1.0)]), pulp.LpConstraintEQ, 0.0)
                bound, staffed = idle[t]
                carried = _lin([(s[t][a], h_async) for a in range(1, A + 1)] + [(s_over[t], h_async)])
                self.row(carried - bound, pulp.LpConstraintLE, 0.0)
                # fresh tickets are answered in their hour exactly when it is staffed
                self.row(_lin([(s[t][0], 1.0)] + [(z, -float(o.async_rate[t])) for z, o in staffed]),
                         pulp.LpConstraintEQ, 0.0)
        wt = ci.weight
        backlog = _lin([(q[t][a], float(wt[t])) for t in range(T) for a in range(1, A + 1)]
                       + [(over[t], float(wt[t])) for t in range(T)]
                       + [(drop[t], float(wt[t]) * DROP_WAIT_H) for t in range(T)])
        late = {}
        for ch in ci.async_channels:
            k = max(1, round(ci.targets_s[ch] / 3600.0))
            late[ch] = _lin([(q[t][k + 1], float(wt[t] * ci.async_share[ch])) for t in range(T)])
        return backlog, late

    def _horizon(self, ci: CityInputs, st: CityState, cv: CityVars, within_t: dict, backlog, late_async) -> None:
        """Horizon totals: within-target, offered, late and waiting time per city."""
        u, wt = cv.option, ci.weight
        late_terms: list = []
        late_const = 0.0
        for ch in ci.sync_channels:
            offered = [(u[o.key], float(wt @ o.offered[ch])) for o in self.opts]
            defl = [(u[o.key], float(wt @ o.deflected[ch])) for o in self.opts]
            cv.offered[ch] = _lin(offered)
            cv.within[ch] = _lin(defl + within_t[ch])
            late_terms += offered + [(v, -c) for v, c in defl] + [(v, -c) for v, c in within_t[ch]]
        for ch in ci.async_channels:
            offered = [(u[o.key], float(wt @ o.offered[ch])) for o in self.opts]
            cv.offered[ch] = _lin(offered)
            cv.within[ch] = _lin(offered) - late_async[ch]
            late_terms += [(v, c) for v, c in late_async[ch].items()]
        cv.late = _lin(late_terms, late_const)
        cv.backlog = backlog
        waits = []
        for o in self.opts:
            sync = sum(float(wt[t]) * o.curves[t].wait_at_start for t in range(ci.T))
            bot = sum(float(wt @ (o.deflected[ch] + o.escalated[ch])) for ch in o.deflected) * self.bot_s
            waits.append((u[o.key], sync + bot))
        cv.wait_s = _lin(waits) + 3600.0 * backlog
        cv.answered = _lin([(u[o.key], st.answered_ratio * sum(float(wt @ o.offered[ch]) for ch in o.offered))
                            for o in self.opts])

    def _cost(self, ci: CityInputs, cv: CityVars) -> None:
        pl = self.pl
        terms = [(cv.seats[p.key], p.seat_cost) for p in ci.pools if p.new]
        terms += [(v, pl.language_training_cost) for v in cv.trained.values()]
        terms += [(v, pl.certification_cost_per_level) for v in cv.certified.values()]
        terms += [(cv.option[o.key], o.cost) for o in self.opts]
        cv.cost = _lin(terms)

    # -- targets --------------------------------------------------------------------------
    def _targets(self, ci: CityInputs, st: CityState, cv: CityVars, heads: dict) -> None:
        tg = self.tg
        anchor = st.anchor
        if tg.channel_target_share is not None:
            for ch, within in cv.within.items():
                # misses allowed, scaled by the simulated / model miss ratio at the anchor
                need = 1.0 - (1.0 - tg.channel_target_share) / st.miss_ratio.get(ch, 1.0)
                off_k = self._magnitude(cv.offered[ch])
                self.target(ci.city, f"channel_share:{ch}", within - need * cv.offered[ch], 0.0, off_k)
        if tg.mean_first_response_h is not None:
            limit = tg.mean_first_response_h * 3600.0 / st.response_ratio
            ans_k = self._magnitude(cv.answered)
            self.target(ci.city, "mean_first_response", limit * cv.answered - cv.wait_s, 0.0, ans_k)
        if tg.dialect_coverage_min is not None and ci.languages:
            total = _lin([])
            for p in ci.pools:
                total += p.hours * heads[p.key]
            h_k = self._magnitude(total)
            for lang in ci.languages:
                spk = _lin([])
                for p in ci.pools:
                    if lang in p.languages:
                        spk += p.hours * heads[p.key]
                    elif p.key in cv.trained:
                        spk += p.hours * cv.trained[p.key]
                self.target(ci.city, f"dialect_coverage:{lang}", spk - tg.dialect_coverage_min * total, 0.0, h_k)
        if anchor is not None:
            delta = self._score_delta(ci, st, cv, heads)
            cv.score = delta + anchor.score
            cv.score_mean = delta + anchor.score_mean
            cv.score_base = anchor.score_mean
            if tg.city_score_min is not None:
                self.target(ci.city, "city_score", cv.score, tg.city_score_min, 1.0)
            if ci.city in self.score_floor:
                self.row(cv.score_mean, pulp.LpConstraintGE, self.score_floor[ci.city])

    @staticmethod
    def _magnitude(expr: pulp.LpAffineExpression) -> float:
        """Size of an option-weighted expression (constant plus its largest option term), >= 1."""
        opt = [abs(c) for v, c in expr.items() if "_opt_" in v.name]
        return max(1.0, abs(float(expr.constant)) + (max(opt) if opt else 0.0))

    def _score_delta(self, ci: CityInputs, st: CityState, cv: CityVars, heads: dict) -> pulp.LpAffineExpression:
        """First-order change of the city's score from the anchor (see ``anchor``)."""
        an = st.anchor
        H = max(an.hours, 1e-9)
        u = cv.option
        lang = sum(ci.languages.values())
        d_heads = {p.key: heads[p.key] - an.heads[p.key] for p in ci.pools}
        d_cert = {k: v - an.certified[k] for k, v in cv.certified.items()}
        d_train = {k: v - an.trained[k] for k, v in cv.trained.items()}
        dH = _lin([])
        d_fm = _lin([])
        d_fa = _lin([])
        d_c = _lin([])
        d_spk = _lin([])
        for p in ci.pools:
            dh = p.hours * d_heads[p.key]
            dH += dh
            d_fm += (p.fcr_mult - an.fcr_mult) / H * dh
            d_fa += (p.fcr_add - an.fcr_add) / H * dh
            d_c += (p.certification - an.cert_mean) / H * dh
            if p.key in d_cert:
                d_fa += ci.fcr_per_cert_level * p.hours / H * d_cert[p.key]
                d_c += p.hours / H * d_cert[p.key]
            if lang > 0:
                share = sum(v for k, v in ci.languages.items() if k in p.languages) / lang
                d_spk += share * dh
                if p.key in d_train:
                    d_spk += p.hours * d_train[p.key]
        d_cov = (d_spk - an.coverage * dH) * (1.0 / H)
        k_opt = ci.option(an.option)
        rho_k = SKILLS_MISMATCH if k_opt.triage else 1.0
        d_mm = -rho_k * d_cov
        if lang > 0:
            for o in self.opts:
                rho = SKILLS_MISMATCH if o.triage else 1.0
                d_mm += (rho - rho_k) * (1.0 - an.coverage) * u[o.key]
        d_d = _lin([(u[o.key], o.deflect_share) for o in self.opts], -an.deflect)
        F = ci.fcr_type_mean
        d_p = F * d_fm + d_fa - F * (1.0 - ci.mismatch_fcr) * lang * d_mm
        d_unres = -(1.0 - an.deflect) * d_p - (1.0 - an.pbar) * d_d
        d_late = (cv.late - an.late_model) * (1.0 / max(an.offered, 1e-9))
        d_work = _lin([(u[o.key], o.work_s / max(an.work_s, 1e-9)) for o in self.opts], -1.0)
        d_occ = an.occupancy * d_work - (an.occupancy / H) * dH
        change = {"late_share": d_late, "unresolved_share": d_unres,
                  "mismatch_share": lang * an.agent_share * d_mm, "certification_mean": d_c,
                  "occupancy": d_occ}
        cv.levers = [(v0, pieces, change[lever]) for lever, (v0, pieces) in an.levers.items()]
        delta = _lin([])
        for lever, (v0, pieces) in an.levers.items():
            g = self.prob.add_variable(f"{self.tag}_g_{lever}")
            for a, b in zip(pieces.a, pieces.b):  # gain <= a + b * (value at anchor + change)
                self.row(g - float(b) * change[lever], pulp.LpConstraintLE, float(a) + float(b) * v0)
            delta += g
        return delta

    # -- national -------------------------------------------------------------------------
    def national(self) -> None:
        sp, tg, pl = self.sp, self.tg, self.pl
        sp.total_cost = pulp.lpSum(cv.cost for cv in sp.cities.values())
        if not self.coupled:
            return
        anchors = {c: self.states[c].anchor for c in sp.cities if c in self.states}
        if self.mode != "evaluate" and all(a is not None for a in anchors.values()) and anchors:
            vol = {c: a.volume for c, a in anchors.items()}
            tot = sum(vol.values())
            sp.weights = {c: v / tot for c, v in vol.items()}
            sp.national = pulp.lpSum(sp.weights[c] * sp.cities[c].score_mean for c in sp.cities)
            offset = self.national_offset
            if tg.national_score_min is not None and self.mode != "budget":
                self.target("national", "national_score", sp.national - offset, tg.national_score_min, 1.0)
        if pl.max_trained_per_month is not None and not self.fixed:
            terms = [(v, 1.0) for cv in sp.cities.values() for v in list(cv.trained.values()) + list(cv.certified.values())]
            self.row(_lin(terms), pulp.LpConstraintLE, pl.max_trained_per_month)
        if pl.budget_per_month is not None and self.mode in ("budget", "soft") and not self.fixed:
            self.row(sp.total_cost, pulp.LpConstraintLE, pl.budget_per_month)

    def objective(self, shortfall_price: float) -> None:
        sp = self.sp
        if self.lagrange is not None:  # a city's pricing problem in the decomposition
            alpha, lam, mu = self.lagrange
            short = pulp.lpSum(e * (shortfall_price / SCALE[w.split(":")[0]]) for (c, w), e in sp.shortfall.items())
            train = pulp.lpSum(v for cv in sp.cities.values() for v in list(cv.trained.values())
                               + list(cv.certified.values()))
            score = pulp.lpSum(cv.score_mean for cv in sp.cities.values() if cv.score_mean is not None)
            self.prob.setObjective(alpha * sp.total_cost + short + mu * train - lam * score)
            return
        if self.mode == "evaluate":
            # the model's operations at fixed decisions: least late, then least waiting
            self.prob.setObjective(pulp.lpSum(cv.late + 1e-4 * cv.backlog for cv in sp.cities.values()))
        elif self.mode == "soft":
            short = pulp.lpSum(e * (shortfall_price / SCALE[w.split(":")[0]]) for (c, w), e in sp.shortfall.items())
            self.prob.setObjective(sp.total_cost + short)
        elif self.mode == "budget" and sp.national is not None:
            self.prob.setObjective(-1.0 * sp.national + 1e-7 * sp.total_cost)
        else:
            self.prob.setObjective(sp.total_cost)


def build_problem(
    inputs: Mapping[str, CityInputs],
    states: Mapping[str, CityState],
    planning: Planning,
    *,
    mode: str = "cost",
    fixed: Mapping[str, CityPlan] | None = None,
    shortfall_price: float = SHORTFALL_PRICE,
    national_offset: float = 0.0,
    bot_response_s: float = 30.0,
    quiet_share: float = QUIET_SHARE,
    coupled: bool = True,
    lagrange: tuple[float, float, float] | None = None,
    only_option: Mapping[str, str] | None = None,
    floor: Mapping[str, CityPlan] | None = None,
    score_floor: Mapping[str, float] | None = None,
) -> StaffingProblem:
    """The programme for ``inputs`` (one or many cities).

    ``mode``: ``cost`` | ``budget`` | ``soft`` (every target may fall short at
    ``shortfall_price`` yuan per month per unit of ``SCALE``) | ``evaluate`` (decisions
    ``fixed``, targets dropped, the model's operations computed). ``national_offset`` is
    subtracted from the mean-anchored national score (mean minus lower bound).
    ``coupled=False`` leaves out the national rows (score, training capacity, budget);
    ``lagrange=(alpha, lam, mu)`` sets the objective ``alpha * cost + shortfall prices +
    mu * trained-and-certified - lam * score`` (a city's pricing problem);
    ``only_option`` restricts a city to one option (city -> option key); ``floor`` keeps a
    city's decisions at least those of a plan, with its option (city -> plan: score bought on
    top of a plan that already holds the city's targets, never in place of it); ``score_floor``
    keeps a city's linearised (mean-anchored) score at least this (city -> score).
    """
    if mode not in ("cost", "budget", "soft", "evaluate"):
        raise ValueError(f"unknown mode {mode!r}")
    b = _Builder(inputs, states, planning, mode, fixed)
    b.bot_s = bot_response_s
    b.quiet_share = quiet_share
    b.coupled = coupled
    b.lagrange = lagrange
    b.only_option = only_option
    b.floor = dict(floor or {})
    b.score_floor = dict(score_floor or {})
    b.national_offset = national_offset
    for ix, (city, ci) in enumerate(inputs.items()):
        b.sp.cities[city] = b.city(ix, ci)
    b.national()
    b.objective(shortfall_price)
    return b.sp


def read_plan(sp: StaffingProblem) -> dict[str, CityPlan]:
    """The decisions of a solved problem as ``CityPlan`` objects."""
    out = {}
    for city, cv in sp.cities.items():
        ci = sp.inputs[city]
        r = lambda v: round(v.value() or 0.0)
        hires = {k[5:]: r(v) for k, v in cv.seats.items() if k.startswith("hire:") and r(v)}
        temps = {k[5:]: r(v) for k, v in cv.seats.items() if k.startswith("temp:") and r(v)}
        trained = {k: r(v) for k, v in cv.trained.items() if r(v)}
        certified = {k: r(v) for k, v in cv.certified.items() if r(v)}
        key = max(cv.option, key=lambda k: cv.option[k].value() or 0.0)
        o = ci.option(key)
        out[city] = CityPlan(city, hires, temps, trained, certified,
                             chatbot_penetration=o.penetration, triage=o.triage)
    return out


def model_kpis(sp: StaffingProblem, city: str) -> ModelKpis:
    """The model's prediction for a city of a solved problem."""
    cv = sp.cities[city]
    offered = {ch: float(e.value()) for ch, e in cv.offered.items()}
    sl = {ch: (float(cv.within[ch].value()) / offered[ch] if offered[ch] > 0 else 1.0) for ch in offered}
    ans = float(cv.answered.value())
    key = max(cv.option, key=lambda k: cv.option[k].value() or 0.0)
    return ModelKpis(
        offered=sum(offered.values()),
        late=float(cv.late.value()),
        sl=sl,
        response_s=float(cv.wait_s.value()) / ans if ans > 0 else 0.0,
        option=key,
    )

