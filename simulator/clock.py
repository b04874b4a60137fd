"""Stage 3 of 7 (simulation): the event clock, SimPy's environment with bare timed calls.

Nearly every event of the model is a timer that calls one function with one argument (an
arrival due, a service done, a patience or overflow limit, an idle agent woken). As a SimPy
``Timeout`` each costs an event object with a value, a trigger state and a callback list.
``Clock`` is a ``simpy.Environment`` whose heap also holds bare calls
``(time, priority, id, fn, arg)``, keyed exactly as SimPy keys a Timeout (the same id
counter, ``NORMAL`` priority), so bare calls and SimPy events run together in SimPy's order;
SimPy's own events (a ``run(until=...)`` limit, any process) still go through SimPy's
``step``. ``later(env)`` gives the same timer on a plain ``simpy.Environment``, as a Timeout
with a callback: a test runs the model both ways and gets identical numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.core import NORMAL

__all__ = ["Clock", "Later", "later"]

Later = Callable[[float, Callable[[Any], object], object], None]


class Clock(simpy.Environment):
    """A SimPy environment that also runs bare calls (``call_later``) without an event object.

    It reads and pushes onto ``Environment``'s own heap, clock and id counter (``_queue``,
    ``_now``, ``_eid``: SimPy 4's, hence the pin ``simpy>=4.1,<5``)."""

    def call_later(self, delay: float, fn: Callable[[Any], object], arg: object = None) -> None:
        """Call ``fn(arg)`` after ``delay`` seconds, ordered like a Timeout made now."""
        heappush(self._queue, (self._now + delay, NORMAL, next(self._eid), fn, arg))

    def step(self) -> None:
        """Make the bare calls due before the next SimPy event, then process that event by
        SimPy (``run`` calls ``step`` until its limit event stops it, as in SimPy)."""
        queue = self._queue
        while queue and len(queue[0]) == 5:
            self._now, _, _, fn, arg = heappop(queue)
            fn(arg)
        super().step()


def later(env: simpy.Environment) -> Later:
    """``env``'s way to call ``fn(arg)`` after a delay: ``Clock.call_later``, or else a Timeout
    whose callback makes the call (the reference the clock is tested against)."""
    if isinstance(env, Clock):
        return env.call_later

    def timeout(delay: float, fn: Callable[[Any], object], arg: object = None) -> None:
        env.timeout(delay, (fn, arg)).callbacks.append(_fire)

    return timeout


def _fire(ev: simpy.Event) -> None:
    fn, arg = ev.value
    fn(arg)
