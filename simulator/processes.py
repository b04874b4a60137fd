"""Stage 3 of 7 (simulation): the actors, one object each, stepped by timed calls.

Arrivals walk one city's sampled arrival times; an agent works its shifts, pulling work from
its router and sleeping while idle. Each is a small state machine whose steps are timed calls
on the model's clock (``clock.later``), where a SimPy generator process would yield a Timeout
and be resumed: the same steps at the same times in the same order, without a process resume
per step or an event to wait on while idle. A ticket is not an actor: a waiting ticket costs
no event at all unless it needs a timer (a retry after abandoning, a language or overflow
limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.entities import INF, Agent, FollowUpTask, Ticket

if TYPE_CHECKING:
    from simulator.demand import Arrivals
    from simulator.engine import Model


class ArrivalStream:
    """Brings one city's primary arrivals into the model at their sampled times."""

    __slots__ = ("arrive", "day", "days", "env", "i", "later", "node")

    def __init__(self, model: Model, node: int) -> None:
        self.env, self.later, self.arrive, self.node = model.env, model.later, model.arrive, node
        self.days = model.demands[node].days(model.streams[node])
        # the day's draws come from the city's own streams: drawn now or at the first step, the same numbers
        self.day: Arrivals | None = next(self.days, None)
        self.i = 0

    def start(self) -> None:
        """The first step, at time zero."""
        self._next(False)

    def _next(self, due: bool) -> None:
        """Bring in the arrival whose time has come (``due``) and those settled before the next
        one (lost and chatbot-answered contacts never meet an agent: recorded at once), then
        sleep until the next one."""
        arrive, node, day, i = self.arrive, self.node, self.day, self.i
        if due:
            arrive(node, day, i)
            i += 1
        now = self.env.now
        while day is not None:
            times, settled = day.time_s, day.settled
            while i < len(times):
                if not settled[i]:
                    delay = times[i] - now
                    if delay > 0:
                        self.day, self.i = day, i
                        self.later(delay, self._next, True)
                        return
                arrive(node, day, i)
                i += 1
            day, i = next(self.days, None), 0


class AgentShifts:
    """Works one agent's shifts: take the next job, serve it, repeat; idle, sleep until
    ``wake`` (a job from ``Model.dispatch``, or None at shift end); finish the job in hand at
    shift end, the time past it counted as overtime."""

    __slots__ = (
        "add_idle",
        "end",
        "env",
        "k",
        "later",
        "me",
        "model",
        "next_start",
        "serve",
        "shifts",
        "take",
    )

    def __init__(self, model: Model, me: Agent, shifts: list[tuple[float, float]]) -> None:
        router = model.routers[me.home]
        self.env, self.later, self.model, self.me = model.env, model.later, model, me
        self.take, self.add_idle, self.serve = router.take, router.add_idle, model.serve
        self.shifts, self.k = shifts, -1
        self.end = self.next_start = 0.0
        me.wake = self.wake

    def start(self) -> None:
        """The first step, at time zero."""
        self._next_shift()

    def _next_shift(self) -> None:
        self.k += 1
        if self.k == len(self.shifts):
            return
        start, self.end = self.shifts[self.k]
        self.next_start = self.shifts[self.k + 1][0] if self.k + 1 < len(self.shifts) else INF
        now = self.env.now
        if start > now:
            self.later(start - now, self._begin, None)
        else:
            self._begin(None)

    def _begin(self, _: None) -> None:
        me = self.me
        me.on_shift = True
        self.model.at(self.end, self.model.end_shift, me)
        self._work()

    def _work(self) -> None:
        """Free: the next job now, or idle until woken."""
        me, began = self.me, self.env.now
        job = self.take(me, began)
        if job is None:
            self.add_idle(me)
        else:
            self._serve(job, began)

    def _serve(self, job: Ticket | FollowUpTask, began: float) -> None:
        me, end = self.me, self.end
        handle = self.serve(me, job, began)
        if began + handle > end:  # work past the shift end is overtime, staffed time too
            self.model.add_overtime(me, max(began, end), min(began + handle, self.next_start))
        self.later(handle, self._done, None)

    def _done(self, _: None) -> None:
        if self.me.on_shift:
            self._work()
        else:
            self._next_shift()

    def wake(self, job: Ticket | FollowUpTask | None) -> None:
        """Wake the idle agent: serve ``job``, or (None) its shift is over."""
        if job is None:
            self._next_shift()
        else:
            self._serve(job, self.env.now)
