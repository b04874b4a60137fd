"""The routers without SimPy: hand-made tickets and agents, every decision checked.

A router answers two questions: which idle agent takes an arriving ticket
(``choose_agent``) and which waiting job a free agent takes next (``take``). Abandonment is
lazy: an expired ticket is dropped, and reported once through ``on_abandon``, when it reaches
the head of a queue. The engine marks tickets TAKEN / GONE; here the tests do.
"""

from __future__ import annotations

from simulator.entities import GONE, INF, TAKEN, WAITING, Agent, FollowUpTask, Ticket
from simulator.routing import PriorityRouter, Router, SkillsRouter, make_router

KAZAKH, RUSSIAN = 0, 1


def ticket(arrival: float, *, deadline: float = INF, cls: int = 0, lang: int = -1, city: int = 0) -> Ticket:
    return Ticket(arrival, deadline, 100.0, 0.5, city, 0, 0, 0, lang, 0, 0, cls, False)


def agent(*langs: int, group: int = 0, home: int = 0) -> Agent:
    return Agent(group, home, frozenset(langs), 1.0, 1.0, 0.0, 1)


class Abandons:
    """An ``on_abandon`` callback that marks the ticket gone (as the engine does) and logs it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Ticket, float]] = []

    def __call__(self, t: Ticket, now: float) -> None:
        t.state = GONE
        self.calls.append((t, now))


def drain(router: Router, a: Agent, now: float) -> list:
    """Everything ``a`` would take, one job after another, at time ``now`` (marking it taken)."""
    out = []
    while (job := router.take(a, now)) is not None:
        job.state = TAKEN
        out.append(job)
    return out


# -- fifo -----------------------------------------------------------------------------------
def test_make_router_picks_the_policy():
    ab = Abandons()
    assert type(make_router(0, 8, ab, 60.0)) is Router
    assert len(make_router(0, 8, ab, 60.0).queues) == 1
    assert type(make_router(1, 8, ab, 60.0)) is PriorityRouter
    assert len(make_router(1, 8, ab, 60.0).queues) == 8
    for level in (2, 3):
        r = make_router(level, 8, ab, 45.0)
        assert type(r) is SkillsRouter and r.wait_s == 45.0


def test_fifo_takes_in_arrival_order_and_drops_the_expired_once():
    ab = Abandons()
    r = Router(1, ab)
    ts = [ticket(0.0), ticket(1.0, deadline=5.0), ticket(2.0, deadline=10.0), ticket(3.0), ticket(4.0, deadline=9.0)]
    for t in ts:
        r.enqueue(t)
    a = agent()
    assert r.take(a, 10.0) is ts[0]
    ts[0].state = TAKEN
    # ts[1] (deadline 5) and ts[2] (deadline 10 == now: patience used up) are dropped
    assert r.take(a, 10.0) is ts[3]
    assert [(t, now) for t, now in ab.calls] == [(ts[1], 10.0), (ts[2], 10.0)]
    ts[3].state = TAKEN
    assert drain(r, a, 10.0) == []
    assert [t for t, _ in ab.calls] == [ts[1], ts[2], ts[4]]
    assert r.take(a, 99.0) is None
    assert len(ab.calls) == 3  # each exactly once
    assert r.waiting() == []


def test_fifo_skips_tickets_taken_elsewhere_without_abandoning_them():
    ab = Abandons()
    r = Router(1, ab)
    t1, t2, t3 = ticket(0.0, deadline=1.0), ticket(1.0, deadline=1.5), ticket(2.0)
    for t in (t1, t2, t3):
        r.enqueue(t)
    t1.state = TAKEN  # served through another queue (an overflow inbox)
    t2.state = GONE  # already recorded as abandoned by its timer
    assert r.waiting() == [t3]
    assert r.take(agent(), 50.0) is t3
    assert ab.calls == []


def test_fifo_gives_an_arrival_the_longest_idle_agent():
    r = Router(1, Abandons())
    a1, a2, a3 = agent(group=1), agent(KAZAKH, group=2), agent(group=3)
    for a in (a1, a2, a3):
        r.add_idle(a)
    t = ticket(0.0, lang=KAZAKH)
    assert [r.choose_agent(t, 0.0) for _ in range(4)] == [a1, a2, a3, None]
    assert not r.needs_language_timer(t)


def test_remove_idle_reports_whether_the_agent_was_idle():
    r = Router(1, Abandons())
    a1, a2 = agent(), agent()
    r.add_idle(a1)
    assert r.remove_idle(a1) is True
    assert r.remove_idle(a1) is False
    assert r.remove_idle(a2) is False
    assert r.choose_agent(ticket(0.0), 0.0) is None


# -- priority -------------------------------------------------------------------------------
def test_priority_serves_class_zero_first_and_fifo_within_a_class():
    r = PriorityRouter(4, Abandons())
    a = ticket(0.0, cls=1)
    b = ticket(1.0, cls=0)
    c = ticket(2.0, cls=3)
    d = ticket(3.0, cls=0)
    e = ticket(4.0, cls=1)
    for t in (a, b, c, d, e):
        r.enqueue(t)
    assert drain(r, agent(), 10.0) == [b, d, a, e, c]


def test_priority_drops_an_expired_high_class_ticket_and_serves_the_next():
    ab = Abandons()
    r = PriorityRouter(2, ab)
    hi = ticket(0.0, cls=0, deadline=3.0)
    lo = ticket(1.0, cls=1)
    r.enqueue(lo)
    r.enqueue(hi)
    assert r.take(agent(), 5.0) is lo
    assert [t for t, _ in ab.calls] == [hi]


# -- follow-ups and overflow inbox ----------------------------------------------------------
def test_own_queues_then_inbox_then_follow_ups():
    for r in (Router(1, Abandons()), PriorityRouter(2, Abandons()), SkillsRouter(2, Abandons(), 60.0)):
        own = ticket(5.0, cls=len(r.queues) - 1)  # the lowest class there is
        foreign = ticket(0.0, city=1)  # older, but from another city
        fu_done, fu = FollowUpTask(0, 0.0, 100.0, 60.0), FollowUpTask(0, 1.0, 100.0, 60.0)
        fu_done.state = TAKEN
        r.follow_ups.extend([fu_done, fu])
        r.inbox.append(foreign)
        r.enqueue(own)
        a = agent()
        assert r.take(a, 10.0) is own
        own.state = TAKEN
        assert r.take(a, 10.0) is foreign
        foreign.state = TAKEN
        assert r.take(a, 10.0) is fu  # the one already taken is skipped
        fu.state = TAKEN
        assert r.take(a, 10.0) is None


def test_inbox_skips_tickets_served_at_home_and_drops_expired_ones():
    ab = Abandons()
    r = Router(1, ab)
    home_served, expired, live = ticket(0.0), ticket(1.0, deadline=4.0), ticket(2.0)
    home_served.state = TAKEN
    r.inbox.extend([home_served, expired, live])
    assert r.take(agent(), 5.0) is live
    assert [t for t, _ in ab.calls] == [expired]


def test_follow_ups_wait_while_any_ticket_waits():
    r = Router(1, Abandons())
    fu = FollowUpTask(0, 0.0, 10.0, 60.0)
    r.follow_ups.append(fu)
    t = ticket(3.0)
    r.enqueue(t)
    assert r.take(agent(), 4.0) is t


# -- skills ---------------------------------------------------------------------------------
def skills(wait_s: float = 60.0, n_classes: int = 2) -> tuple[SkillsRouter, Abandons]:
    ab = Abandons()
    return SkillsRouter(n_classes, ab, wait_s), ab


def test_language_ticket_goes_to_an_idle_speaker_first():
    r, _ = skills()
    plain, speaker = agent(), agent(KAZAKH)
    r.add_idle(plain)  # idle longer
    r.add_idle(speaker)
    t = ticket(0.0, lang=KAZAKH)
    assert r.needs_language_timer(t)
    assert r.choose_agent(t, 0.0) is speaker
    assert list(r.idle) == [plain]
    assert not r.idle_by_lang.get(KAZAKH)


def test_language_ticket_waits_for_a_speaker_then_anyone_takes_it():
    r, _ = skills(wait_s=60.0)
    plain = agent()
    r.add_idle(plain)
    t = ticket(100.0, lang=KAZAKH)
    assert r.choose_agent(t, 100.0) is None
    assert r.choose_agent(t, 159.0) is None
    assert list(r.idle) == [plain]  # refusing does not consume the agent
    assert r.choose_agent(t, 160.0) is plain


def test_free_agent_takes_a_language_ticket_only_if_it_speaks_it_or_the_wait_is_over():
    r, _ = skills(wait_s=60.0)
    t = ticket(100.0, lang=KAZAKH)
    r.enqueue(t)
    plain, speaker, russian = agent(), agent(KAZAKH), agent(RUSSIAN)
    assert r.take(plain, 130.0) is None
    assert r.take(russian, 130.0) is None
    assert r.take(speaker, 130.0) is t
    r2, _ = skills(wait_s=60.0)
    t2 = ticket(100.0, lang=KAZAKH)
    r2.enqueue(t2)
    assert r2.take(plain, 160.0) is t2


def test_skills_takes_the_oldest_eligible_ticket_within_a_class_and_classes_in_order():
    r, _ = skills(wait_s=60.0, n_classes=2)
    kz_old = ticket(5.0, lang=KAZAKH, cls=0)
    plain_new = ticket(10.0, cls=0)
    ru_older = ticket(1.0, lang=RUSSIAN, cls=0)
    low = ticket(0.0, cls=1)
    for x in (low, plain_new, kz_old, ru_older):
        r.enqueue(x)
    speaker = agent(KAZAKH)
    # the Russian ticket is oldest but this agent cannot take it yet; the Kazakh one is next
    assert r.take(speaker, 20.0) is kz_old
    kz_old.state = TAKEN
    assert r.take(speaker, 20.0) is plain_new
    plain_new.state = TAKEN
    assert r.take(speaker, 20.0) is low  # class 1 only after class 0 is empty for this agent
    low.state = TAKEN
    assert r.take(speaker, 20.0) is None
    assert r.take(speaker, 61.0) is ru_older  # waited out its 60 s


def test_skills_skips_language_tickets_taken_elsewhere_and_drops_expired_once():
    r, ab = skills(wait_s=0.0)
    taken, expired, live = (ticket(0.0, lang=KAZAKH), ticket(1.0, lang=KAZAKH, deadline=2.0),
                            ticket(3.0, lang=KAZAKH))
    for x in (taken, expired, live):
        r.enqueue(x)
    taken.state = TAKEN
    assert r.waiting() == [expired, live]
    assert r.take(agent(), 5.0) is live
    assert [t for t, _ in ab.calls] == [expired]
    assert r.take(agent(), 6.0) is None
    assert len(ab.calls) == 1


def test_plain_ticket_prefers_an_agent_without_languages():
    r, _ = skills()
    speaker, plain = agent(KAZAKH), agent()
    r.add_idle(speaker)  # idle longer
    r.add_idle(plain)
    assert not r.needs_language_timer(ticket(0.0))
    assert r.choose_agent(ticket(0.0), 0.0) is plain
    # only a speaker left: a plain ticket still gets served rather than wait
    assert r.choose_agent(ticket(0.0), 0.0) is speaker
    assert r.choose_agent(ticket(0.0), 0.0) is None
    assert not r.idle_by_lang.get(KAZAKH)


def test_idle_by_language_stays_consistent():
    r, _ = skills()
    both = agent(KAZAKH, RUSSIAN)
    kz = agent(KAZAKH)
    r.add_idle(both)
    r.add_idle(kz)
    # ``both`` leaves through its Kazakh entry: it must leave the Russian one too
    assert r.choose_agent(ticket(0.0, lang=KAZAKH), 0.0) is both
    assert both not in r.idle_by_lang.get(RUSSIAN, [])
    assert r.choose_agent(ticket(0.0, lang=RUSSIAN), 0.0) is None  # no Russian speaker idle
    # shift end removes an idle agent from every index
    assert r.remove_idle(kz) is True
    assert r.remove_idle(kz) is False
    assert not r.idle and not any(r.idle_by_lang.values())
    assert r.choose_agent(ticket(0.0, lang=KAZAKH), 0.0) is None
    # back from a job: indexed again, once
    r.add_idle(both)
    assert list(r.idle_by_lang[KAZAKH]) == [both] and list(r.idle_by_lang[RUSSIAN]) == [both]
    assert r.choose_agent(ticket(0.0, lang=RUSSIAN), 0.0) is both
    assert not r.idle and not any(r.idle_by_lang.values())


def test_an_agent_chosen_for_a_plain_ticket_leaves_the_language_index():
    r, _ = skills()
    kz = agent(KAZAKH)
    r.add_idle(kz)
    assert r.choose_agent(ticket(0.0), 0.0) is kz
    assert r.choose_agent(ticket(0.0, lang=KAZAKH), 0.0) is None


def test_waiting_lists_plain_and_language_queues():
    r, _ = skills()
    xs = [ticket(0.0), ticket(1.0, lang=KAZAKH, cls=1), ticket(2.0, lang=RUSSIAN)]
    for x in xs:
        r.enqueue(x)
    xs[2].state = TAKEN
    assert sorted(r.waiting(), key=lambda t: t.arrival_s) == xs[:2]
    assert all(t.state == WAITING for t in r.waiting())


def test_language_ticket_is_released_exactly_when_its_wait_is_over():
    """The release timer fires at fl(arrival + wait); that instant must count as waited out."""
    r, _ = skills(wait_s=90.7)
    plain = agent()
    r.add_idle(plain)
    arrival = 1000.1
    t = ticket(arrival, lang=KAZAKH)
    release_at = arrival + 90.7  # what the engine's timer computes
    assert release_at - arrival < 90.7  # the rounding that trips the comparison
    assert r.choose_agent(t, release_at) is plain
