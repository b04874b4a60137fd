"""Stage 3 of 7 (simulation): routing policies, free of SimPy.

A router holds one city's (or remote pool's) waiting tickets and idle agents and answers
two questions: which idle agent takes an arriving ticket (``choose_agent``) and which
waiting ticket a free agent takes next (``take``). Abandonment is lazy: a ticket whose
patience ran out is dropped (and reported through ``on_abandon``) when it reaches the head
of its queue, so no event is spent on it. Tickets may sit in several queues at once (home
queue and an overflow inbox); whoever takes one first marks it, the others skip it.

Policies form a ladder, each including the one before:
``fifo`` one queue, no triage; ``priority`` class queues (synchronous first, fast lane,
tier rank); ``skills`` a language ticket waits up to ``language_wait_s`` for a speaker;
``overflow`` tickets waiting past a limit are also offered to other cities or pools.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from simulator.entities import WAITING, Agent, FollowUpTask, Ticket

Job = Ticket | FollowUpTask
EPS = 1e-9  # seconds: a timer set for arrival + wait may fire one rounding step early


class Router:
    """``fifo``: one queue for every ticket, longest-idle agent first."""

    def __init__(self, n_classes: int, on_abandon: Callable[[Ticket, float], None]) -> None:
        self.queues: list[deque[Ticket]] = [deque() for _ in range(max(1, n_classes))]
        # bit c set: class c's queues may hold tickets; ``take`` clears it when they are empty,
        # so it visits the few classes in use, in class order, instead of every class
        self.live = 0
        self.inbox: deque[Ticket] = deque()  # tickets overflowed here from elsewhere
        self.follow_ups: deque[FollowUpTask] = deque()
        self.idle: deque[Agent] = deque()
        self.on_abandon = on_abandon

    # -- arriving tickets -----------------------------------------------------------------
    def choose_agent(self, ticket: Ticket, now: float) -> Agent | None:
        """Pop the idle agent that should take ``ticket`` now, if any."""
        return self.idle.popleft() if self.idle else None

    def enqueue(self, ticket: Ticket) -> None:
        self.queues[ticket.cls].append(ticket)
        self.live |= 1 << ticket.cls

    # -- free agents ----------------------------------------------------------------------
    def take(self, agent: Agent, now: float) -> Job | None:
        """The next job for a free ``agent``: own tickets, then overflow, then follow-ups."""
        head, queues, live = self._head, self.queues, self.live
        while live:
            bit = live & -live  # the lowest class left
            live ^= bit
            q = queues[bit.bit_length() - 1]
            if head(q, now) is not None:
                return q.popleft()
            self.live &= ~bit
        return self._take_foreign(agent, now)

    def _take_foreign(self, agent: Agent, now: float) -> Job | None:
        if self.inbox and self._head(self.inbox, now) is not None:
            return self.inbox.popleft()
        fq = self.follow_ups
        while fq:
            f = fq.popleft()
            if f.state == WAITING:
                return f
        return None

    def _head(self, q: deque[Ticket], now: float) -> Ticket | None:
        """The first live ticket of ``q``, dropping taken ones and recording abandonments."""
        while q:
            t = q[0]
            if t.state != WAITING:
                q.popleft()
            elif t.deadline_s <= now:
                q.popleft()
                self.on_abandon(t, now)
            else:
                return t
        return None

    # -- idle agents ----------------------------------------------------------------------
    def add_idle(self, agent: Agent) -> None:
        self.idle.append(agent)

    def remove_idle(self, agent: Agent) -> bool:
        """Take ``agent`` out of the idle set (shift end); False if it was not idle."""
        try:
            self.idle.remove(agent)
        except ValueError:
            return False
        return True

    def waiting(self) -> list[Ticket]:
        """Every live ticket still queued here (for the end-of-horizon backlog)."""
        return [t for q in self.queues for t in q if t.state == WAITING]

    def needs_language_timer(self, ticket: Ticket) -> bool:
        return False


class PriorityRouter(Router):
    """``priority``: class queues served in order (class 0 first), FIFO within a class."""


class SkillsRouter(PriorityRouter):
    """``skills``: language tickets wait ``wait_s`` for a speaker, then go to anyone."""

    def __init__(
        self, n_classes: int, on_abandon: Callable[[Ticket, float], None], wait_s: float
    ) -> None:
        super().__init__(n_classes, on_abandon)
        self.wait_s = wait_s
        self.lang_queues: list[dict[int, deque[Ticket]]] = [{} for _ in self.queues]
        self.idle_by_lang: dict[int, deque[Agent]] = {}
        self.idle_plain: deque[Agent] = deque()  # the idle agents with no language, in idle order

    def choose_agent(self, ticket: Ticket, now: float) -> Agent | None:
        lang = ticket.lang
        if lang >= 0:
            speakers = self.idle_by_lang.get(lang)
            while speakers:
                a = speakers.popleft()
                if self.remove_idle(a):
                    return a
            if now - ticket.arrival_s < self.wait_s - EPS:
                return None
        return self._prefer_plain()

    def _prefer_plain(self) -> Agent | None:
        """Any idle agent, preferring one with no language skill (keep speakers free)."""
        if not self.idle:
            return None
        chosen = self.idle_plain[0] if self.idle_plain else self.idle[0]
        self.remove_idle(chosen)
        return chosen

    def enqueue(self, ticket: Ticket) -> None:
        if ticket.lang < 0:
            self.queues[ticket.cls].append(ticket)
        else:
            self.lang_queues[ticket.cls].setdefault(ticket.lang, deque()).append(ticket)
        self.live |= 1 << ticket.cls

    def needs_language_timer(self, ticket: Ticket) -> bool:
        return ticket.lang >= 0 and self.wait_s > 0

    def take(self, agent: Agent, now: float) -> Job | None:
        head, speaks, wait = self._head, agent.languages, self.wait_s - EPS
        live = self.live
        while live:
            bit = live & -live  # the lowest class left
            live ^= bit
            cls = bit.bit_length() - 1
            q = self.queues[cls]
            best, best_q = (head(q, now) if q else None), q  # skip the call on empty queues
            empty = best is None
            for lang, lq in self.lang_queues[cls].items():
                t = head(lq, now) if lq else None
                if t is None:
                    continue
                empty = False
                if lang not in speaks and now - t.arrival_s < wait:
                    continue
                if best is None or t.arrival_s < best.arrival_s:
                    best, best_q = t, lq
            if best is not None:
                return best_q.popleft()
            if empty:
                self.live &= ~bit
        return self._take_foreign(agent, now)

    def add_idle(self, agent: Agent) -> None:
        self.idle.append(agent)
        if not agent.languages:
            self.idle_plain.append(agent)
        for lang in agent.languages:
            self.idle_by_lang.setdefault(lang, deque()).append(agent)

    def remove_idle(self, agent: Agent) -> bool:
        if not super().remove_idle(agent):
            return False
        if not agent.languages:
            self.idle_plain.remove(agent)
        for lang in agent.languages:
            q = self.idle_by_lang.get(lang)
            if q is not None and agent in q:
                q.remove(agent)
        return True

    def waiting(self) -> list[Ticket]:
        extra = [t for d in self.lang_queues for q in d.values() for t in q if t.state == WAITING]
        return super().waiting() + extra


def make_router(
    level: int, n_classes: int, on_abandon: Callable[[Ticket, float], None], language_wait_s: float
) -> Router:
    """The router for a policy ``level`` (index in ``scenario.POLICIES``)."""
    if level == 0:
        return Router(1, on_abandon)
    if level == 1:
        return PriorityRouter(n_classes, on_abandon)
    return SkillsRouter(n_classes, on_abandon, language_wait_s)
