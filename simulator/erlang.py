"""Analytic oracles: Erlang B/C, Erlang A (M/M/n+M) and Cobham's priority formula. Times in seconds, rates per second.

These closed forms serve as test oracles for the simulator and as fast
approximations inside the optimizer.  Everything is computed without factorials:
Erlang B by its recursion, the Erlang A stationary distribution in log space.

Erlang A notation: ``n`` agents, arrival rate ``lam``, service rate
``mu = 1 / aht_s``, abandonment rate ``theta = 1 / patience_s``.  An arrival that
finds ``j`` customers queued ahead of it (PASTA: arrivals see the stationary
distribution) would reach an agent after a virtual wait ``V`` that is a sum of
independent exponentials with rates ``n mu + i theta``, ``i = j, ..., 0``; it is
answered iff ``V`` beats its own ``Exp(theta)`` patience.  Tilting by
``exp(-theta V)`` turns ``V`` into a sum of exponentials with rates
``n mu + i theta``, ``i = 1, ..., j + 1``, which gives the closed forms used below:

* ``P(answered | j) = n mu / (n mu + (j + 1) theta)``,
* ``E[min(V, patience) | j] = (j + 1) / (n mu + (j + 1) theta)``,
* ``E[V | answered, j] = sum_{i=1}^{j+1} 1 / (n mu + i theta)``,
* ``P(V <= t | answered, j) = I_{1 - exp(-theta t)}(j + 1, n mu / theta + 1)``
  (regularised incomplete beta: a sum of exponentials with rates
  ``c + i theta``, ``i = 1..m``, is distributed as ``-log(Beta(c / theta + 1, m)) / theta``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, gammaln, logsumexp, xlogy

__all__ = [
    "ErlangA",
    "erlang_a",
    "erlang_b",
    "erlang_c",
    "min_agents",
    "mmn_mean_wait",
    "mmn_service_level",
    "priority_mean_waits",
]

_TAIL_MASS = 1e-14  # stationary mass dropped when truncating the Erlang A chain
_MAX_QUEUE = 2**20  # largest queue length the Erlang A chain may need


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _clip01(value: float) -> float:
    """Clamp a computed probability into [0, 1] (absorbs last-bit round-off)."""
    return min(1.0, max(0.0, float(value)))


def _check_load(agents: int, load: float) -> None:
    _require(agents >= 0, f"agents must be >= 0, got {agents}")
    _require(load >= 0.0, f"load must be >= 0, got {load}")


def _check_rates(agents: int, arrival_rate: float, aht_s: float) -> None:
    _require(agents >= 1, f"agents must be >= 1, got {agents}")
    _require(arrival_rate >= 0.0, f"arrival_rate must be >= 0, got {arrival_rate}")
    _require(aht_s > 0.0, f"aht_s must be > 0, got {aht_s}")


# --------------------------------------------------------------------------- Erlang B / C


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of the M/M/n/n loss system.

    Parameters
    ----------
    agents : int
        Number of servers ``n >= 0``.
    load : float
        Offered load ``arrival_rate * mean_service`` in Erlangs.

    Returns
    -------
    float
        ``B(n, a)`` via the stable recursion ``B_k = a B_{k-1} / (k + a B_{k-1})``.
    """
    _check_load(agents, load)
    blocking = 1.0
    for k in range(1, agents + 1):
        blocking = load * blocking / (k + load * blocking)
    return blocking


def erlang_c(agents: int, load: float) -> float:
    """Probability that an arrival waits in M/M/n (1.0 when ``load >= agents``).

    Parameters
    ----------
    agents : int
        Number of agents ``n >= 0``.
    load : float
        Offered load in Erlangs.
    """
    _check_load(agents, load)
    if load >= agents:
        return 1.0
    blocking = erlang_b(agents, load)
    return agents * blocking / (agents - load * (1.0 - blocking))


def _mmn_decay(agents: int, arrival_rate: float, aht_s: float) -> tuple[float, float]:
    """Return ``(C, n mu - lambda)`` for a stable-or-not M/M/n queue."""
    _check_rates(agents, arrival_rate, aht_s)
    return erlang_c(agents, arrival_rate * aht_s), agents / aht_s - arrival_rate


def mmn_mean_wait(agents: int, arrival_rate: float, aht_s: float) -> float:
    """Mean queueing delay over all arrivals (ASA) in M/M/n; ``inf`` if unstable.

    Returns ``C(n, a) / (n mu - lambda)`` in seconds.
    """
    prob_wait, decay = _mmn_decay(agents, arrival_rate, aht_s)
    return prob_wait / decay if decay > 0.0 else math.inf


def mmn_service_level(agents: int, arrival_rate: float, aht_s: float, target_s: float) -> float:
    """``P(wait <= target_s) = 1 - C exp(-(n mu - lambda) t)`` in M/M/n; 0 if unstable."""
    _require(target_s >= 0.0, f"target_s must be >= 0, got {target_s}")
    prob_wait, decay = _mmn_decay(agents, arrival_rate, aht_s)
    if decay <= 0.0:
        return 0.0
    return 1.0 - prob_wait * math.exp(-decay * target_s)


# --------------------------------------------------------------------------- Erlang A


@dataclass(frozen=True)
class ErlangA:
    """Steady-state performance of M/M/n+M (all probabilities per arrival).

    Attributes
    ----------
    p_wait : float
        P(an arrival finds all agents busy).
    p_abandon : float
        Share of arrivals that abandon.
    mean_wait_s : float
        Mean time in queue over all arrivals (abandoners until they leave).
    mean_wait_answered_s : float
        Mean wait of answered arrivals (including those answered at once).
    service_level_offered : float
        P(answered and wait <= target) over all arrivals.
    service_level_answered : float
        P(wait <= target | answered).
    occupancy : float
        Mean number of busy agents divided by agents.
    """

    p_wait: float
    p_abandon: float
    mean_wait_s: float
    mean_wait_answered_s: float
    service_level_offered: float
    service_level_answered: float
    occupancy: float


def _truncate(log_w: np.ndarray, log_beyond: float, keep_min: int) -> np.ndarray:
    """Normalise ``exp(log_w)`` and drop the tail whose mass is below ``_TAIL_MASS``.

    ``log_beyond`` bounds (in log, unnormalised) the mass beyond the last state.
    """
    log_total = logsumexp(log_w)
    prob = np.exp(log_w - log_total)
    tail = np.cumsum(prob[::-1])[::-1] + math.exp(log_beyond - log_total)  # mass of states >= k
    cut = int(np.argmax(tail < _TAIL_MASS)) if tail[-1] < _TAIL_MASS else tail.size
    prob = prob[: max(keep_min, cut)]
    return prob / prob.sum()


class _ChainTooLong(ValueError):
    """The Erlang A chain needs more than ``_MAX_QUEUE`` queue states."""


def _erlang_a_stationary(agents: int, lam: float, mu: float, theta: float) -> np.ndarray:
    """Stationary distribution of the M/M/n+M birth-death chain on ``0..N``.

    Built in log space; ``N`` is the first state beyond which the stationary
    mass is below ``_TAIL_MASS`` (the queue part is log-concave, so once the
    birth/death ratio ``r`` drops below 1 the tail beyond a state with weight
    ``w`` is at most ``w r / (1 - r)``).
    """
    service = agents * mu
    too_long = f"Erlang A chain needs more than {_MAX_QUEUE} queue states (patience too long)"
    if (lam - service) / theta > _MAX_QUEUE:
        raise _ChainTooLong(too_long)
    k = np.arange(agents + 1)
    head = xlogy(k, lam / mu) - gammaln(k + 1)
    size = 256
    while True:
        queue = head[-1] + np.cumsum(math.log(lam) - np.log(service + theta * np.arange(1, size + 1)))
        ratio = lam / (service + theta * (size + 1))
        if ratio < 1.0:
            log_beyond = queue[-1] + math.log(ratio / (1.0 - ratio))
            log_w = np.concatenate([head, queue])
            if log_beyond - logsumexp(log_w) < math.log(_TAIL_MASS):
                return _truncate(log_w, log_beyond, keep_min=agents + 1)
        if size >= _MAX_QUEUE:
            raise _ChainTooLong(too_long)
        size *= 2


def _answered_within(customers: int, service: float, theta: float, target_s: float) -> np.ndarray:
    """``P(sum_{i=1}^m Exp(service + i theta) <= target_s)`` for ``m = 1..customers``.

    Partial fractions of the hypoexponential density with rates ``c + i theta``
    collapse to a Beta integral: the sum is distributed as ``-log(B) / theta``
    with ``B ~ Beta(c / theta + 1, m)``.  Hence the CDF is the regularised
    incomplete beta ``I_{1 - exp(-theta t)}(m, c / theta + 1)``, which is stable
    for any rates (no alternating sums).
    """
    m = np.arange(1, customers + 1)
    return betainc(m, service / theta + 1.0, -math.expm1(-theta * target_s))


def erlang_a(
    agents: int, arrival_rate: float, aht_s: float, patience_s: float, target_s: float
) -> ErlangA:
    """Exact steady state of M/M/n+M (Palm / Erlang A) from its birth-death chain.

    Parameters
    ----------
    agents : int
        Number of agents ``n >= 1``.
    arrival_rate : float
        Poisson arrival rate per second.
    aht_s : float
        Mean (exponential) handling time in seconds.
    patience_s : float
        Mean (exponential) patience in seconds.
    target_s : float
        Service-level threshold in seconds.

    Returns
    -------
    ErlangA
        See the module docstring for the per-arrival formulas.

    Raises
    ------
    ValueError
        On invalid inputs, or if the chain is too long to evaluate (patience so
        long that the queue would need more than ~1 million states).
    """
    _check_rates(agents, arrival_rate, aht_s)
    _require(patience_s > 0.0, f"patience_s must be > 0, got {patience_s}")
    _require(target_s >= 0.0, f"target_s must be >= 0, got {target_s}")
    if arrival_rate == 0.0:
        return ErlangA(0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0)
    mu, theta = 1.0 / aht_s, 1.0 / patience_s
    service = agents * mu
    prob = _erlang_a_stationary(agents, arrival_rate, mu, theta)
    queued = prob[agents:]  # states n + j: an arrival finds j customers ahead
    ahead_plus_one = np.arange(1, queued.size + 1)
    leave_rate = service + theta * ahead_plus_one  # n mu + (j + 1) theta
    answer = service / leave_rate  # P(answered | j)
    wait_answered = np.cumsum(1.0 / leave_rate)  # E[V | answered, j]
    within = _answered_within(queued.size, service, theta, target_s)

    p_immediate = float(prob[:agents].sum())
    p_answered = p_immediate + float(queued @ answer)
    sl_offered = p_immediate + float(queued @ (answer * within))
    busy = float(np.minimum(np.arange(prob.size), agents) @ prob)
    return ErlangA(
        p_wait=_clip01(queued.sum()),
        p_abandon=_clip01(queued @ (theta * ahead_plus_one / leave_rate)),
        mean_wait_s=float(queued @ (ahead_plus_one / leave_rate)),
        mean_wait_answered_s=float(queued @ (answer * wait_answered)) / p_answered,
        service_level_offered=_clip01(sl_offered),
        service_level_answered=_clip01(sl_offered / p_answered),
        occupancy=_clip01(busy / agents),
    )


# --------------------------------------------------------------------------- priorities


def priority_mean_waits(agents: int, arrival_rates: Sequence[float], aht_s: float) -> list[float]:
    """Cobham's mean waits for non-preemptive priority M/M/n, equal service for all classes.

    Parameters
    ----------
    agents : int
        Number of agents.
    arrival_rates : Sequence[float]
        Per-class arrival rates, highest priority first.
    aht_s : float
        Mean handling time shared by all classes.

    Returns
    -------
    list[float]
        ``W_k = (C(n, a) / (n mu)) / ((1 - sigma_{k-1}) (1 - sigma_k))`` with
        ``sigma_k`` the cumulative utilisation of classes ``1..k``; ``inf`` where
        ``sigma_k >= 1``.
    """
    rates = np.asarray(arrival_rates, dtype=float)
    total = float(rates.sum())
    _check_rates(agents, total, aht_s)
    _require(bool(np.all(rates >= 0.0)), "arrival_rates must be >= 0")
    capacity = agents / aht_s
    residual = erlang_c(agents, total * aht_s) / capacity
    sigma = np.concatenate([[0.0], np.cumsum(rates) / capacity])
    return [
        float(residual / ((1.0 - lo) * (1.0 - hi))) if hi < 1.0 else math.inf
        for lo, hi in itertools.pairwise(sigma)
    ]


# --------------------------------------------------------------------------- staffing


def _first_true(predicate: Callable[[int], bool], lo: int, hi: int) -> int:
    """Smallest ``n`` in ``[lo, hi]`` with ``predicate(n)``, for a monotone predicate.

    Gallops upward from ``lo`` then bisects; raises ``ValueError`` if ``predicate(hi)``
    is false.
    """
    step, below = 1, lo - 1
    while not predicate(lo):
        below = lo
        _require(lo < hi, f"target not reachable with max_agents={hi}")
        lo = min(hi, lo + step)
        step *= 2
    while lo - below > 1:  # invariant: predicate(lo), not predicate(below)
        mid = (lo + below) // 2
        lo, below = (mid, below) if predicate(mid) else (lo, mid)
    return lo


def min_agents(
    arrival_rate: float,
    aht_s: float,
    target_s: float,
    service_level: float,
    patience_s: float | None = None,
    max_agents: int = 10_000,
) -> int:
    """Smallest agent count whose service level over offered calls meets ``service_level``.

    Parameters
    ----------
    arrival_rate, aht_s, target_s : float
        Arrival rate per second, mean handling time and service-level threshold.
    service_level : float
        Required ``P(answered and wait <= target_s)`` in ``(0, 1)``.
    patience_s : float, optional
        Mean patience; ``None`` uses Erlang C, otherwise Erlang A's
        ``service_level_offered``.
    max_agents : int
        Upper bound of the search; ``ValueError`` if even that is not enough.

    Returns
    -------
    int
        The minimal ``n`` (0 when ``arrival_rate == 0``).

    Notes
    -----
    The service level is increasing in ``n``, so the search gallops up from a
    lower bound and bisects.  Erlang C needs ``n > load``.  Under Erlang A the
    answered share is at most ``n / load``, so ``n >= service_level * load``;
    agent counts whose overloaded queue would exceed Erlang A's state limit
    are treated as not meeting the target: that happens only for absurdly long
    patience (a queue of ~1e6 customers, or utilisation within ~1e-5 of 1), where
    the service level is ~0 for any realistic ``target_s``.
    """
    _require(0.0 < service_level < 1.0, f"service_level must be in (0, 1), got {service_level}")
    _check_rates(max_agents, arrival_rate, aht_s)
    if arrival_rate == 0.0:
        return 0
    load = arrival_rate * aht_s
    if patience_s is None:
        start = math.floor(load) + 1

        def meets(n: int) -> bool:
            return mmn_service_level(n, arrival_rate, aht_s, target_s) >= service_level

    else:
        start = max(1, math.ceil(service_level * load))

        def meets(n: int) -> bool:
            try:
                result = erlang_a(n, arrival_rate, aht_s, patience_s, target_s)
            except _ChainTooLong:
                return False
            return result.service_level_offered >= service_level

    _require(start <= max_agents, f"target not reachable with max_agents={max_agents}")
    return _first_true(meets, start, max_agents)
