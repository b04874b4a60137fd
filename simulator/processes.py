"""Stage 3 of 7 (simulation): the SimPy processes. One actor each, ``env`` first.

Arrivals are one process per city that walks the day's sampled arrival times; agents are
one process each that pulls work from its router and sleeps on an event while idle. A
ticket is not a process: a waiting ticket costs no event at all unless it needs a timer
(a retry after abandoning, a language or overflow limit).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import simpy

from simulator.entities import Agent

if TYPE_CHECKING:
    from simulator.engine import Model

ProcessGenerator = Generator[simpy.Event, object, None]


def arrivals(env: simpy.Environment, model: Model, node: int) -> ProcessGenerator:
    """Bring one city's primary arrivals into the model at their sampled times."""
    arrive = model.arrive
    for day in model.demands[node].days(model.streams[node]):
        times, settled = day.time_s, day.settled
        for i in range(len(times)):
            # lost and chatbot-answered contacts never meet an agent: record them at once
            if not settled[i]:
                delay = times[i] - env.now
                if delay > 0:
                    yield env.timeout(delay)
            arrive(node, day, i)


def agent(
    env: simpy.Environment, model: Model, me: Agent, shifts: list[tuple[float, float]]
) -> ProcessGenerator:
    """Work each shift: take the next job, serve it, repeat; finish the job in hand at shift end."""
    router = model.routers[me.home]
    take, serve = router.take, model.serve
    starts = [s for s, _ in shifts[1:]] + [float("inf")]
    for (start, end), next_start in zip(shifts, starts):
        if start > env.now:
            yield env.timeout(start - env.now)
        me.on_shift = True
        model.at(end, model.end_shift, me)
        while me.on_shift:
            began = env.now
            job = take(me, began)
            if job is None:
                me.wake = env.event()
                router.add_idle(me)
                job = yield me.wake
                if job is None:
                    break
                began = env.now
            handle = serve(me, job, began)
            if began + handle > end:  # work past the shift end is overtime, staffed time too
                model.add_overtime(me, max(began, end), min(began + handle, next_start))
            yield env.timeout(handle)
