"""Tests for the analytic queueing oracles in ``simulator.erlang``.

Every oracle is checked against an independent computation: factorial sums for
Erlang B/C, a linear solve of the truncated M/M/n+M generator plus an absorbing
CTMC (matrix exponential / fundamental matrix) for Erlang A, and a seeded
Monte-Carlo of the virtual wait and patience.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm
from scipy.special import pdtr, pdtrc

from simulator.erlang import (
    ErlangA,
    erlang_a,
    erlang_b,
    erlang_c,
    min_agents,
    mmn_mean_wait,
    mmn_service_level,
    priority_mean_waits,
)

PROPERTY = settings(max_examples=40, deadline=None, database=None, derandomize=True)


# --------------------------------------------------------------------------- references


def _poisson_terms(agents: int, load: float) -> list[float]:
    return [load**k / math.factorial(k) for k in range(agents + 1)]


def _erlang_b_direct(agents: int, load: float) -> float:
    terms = _poisson_terms(agents, load)
    return terms[-1] / sum(terms)


def _erlang_c_direct(agents: int, load: float) -> float:
    terms = _poisson_terms(agents, load)
    top = terms[-1] * agents / (agents - load)
    return top / (sum(terms[:-1]) + top)


def _mmnm_stationary(agents: int, lam: float, mu: float, theta: float, queue: int) -> np.ndarray:
    """Stationary law of M/M/n+M truncated at ``agents + queue`` by a linear solve."""
    size = agents + queue + 1
    gen = np.zeros((size, size))
    for k in range(size):
        if k + 1 < size:
            gen[k, k + 1] = lam
        if k > 0:
            gen[k, k - 1] = min(k, agents) * mu + max(k - agents, 0) * theta
        gen[k, k] = -gen[k].sum()
    lhs = gen.T.copy()
    lhs[-1] = 1.0
    rhs = np.zeros(size)
    rhs[-1] = 1.0
    pi = np.maximum(np.linalg.solve(lhs, rhs), 0.0)  # clip round-off (~1e-19) below zero
    assert pi[-1] < 1e-15, "reference truncation too short"
    return pi / pi.sum()


def _tagged_customer(agents: int, mu: float, theta: float, ahead: int, target_s: float):
    """Absorbing CTMC of a waiting customer with ``i = 0..ahead`` customers in front.

    Returns per-start ``(P(served), E[wait; served], E[wait], P(served by target))``.
    """
    states = ahead + 1
    served, abandoned = states, states + 1
    gen = np.zeros((states + 2, states + 2))
    for i in range(states):
        gen[i, i - 1 if i > 0 else served] = agents * mu + i * theta
        gen[i, abandoned] = theta
        gen[i, i] = -gen[i].sum()
    fundamental = np.linalg.inv(-gen[:states, :states])  # expected time in each state
    p_served = fundamental @ gen[:states, served]
    return (
        p_served,
        fundamental @ p_served,
        fundamental.sum(axis=1),
        expm(gen * target_s)[:states, served],
    )


ERLANG_A_CASES = [
    # agents, arrival_rate, aht_s, patience_s, target_s
    (10, 8 / 180, 180.0, 300.0, 20.0),
    (10, 14 / 180, 180.0, 60.0, 20.0),  # overloaded: stable only through abandonment
    (3, 2.5 / 240, 240.0, 90.0, 30.0),
    (1, 0.9 / 60, 60.0, 600.0, 15.0),
    (25, 30 / 300, 300.0, 30.0, 0.0),  # target 0: service level is "answered at once"
]


@pytest.fixture(scope="module", params=ERLANG_A_CASES, ids=lambda c: f"n{c[0]}-pat{c[3]:g}")
def erlang_a_case(request):
    agents, lam, aht, patience, target = request.param
    result = erlang_a(agents, lam, aht, patience, target)
    pi = _mmnm_stationary(agents, lam, 1 / aht, 1 / patience, queue=80)
    return request.param, result, pi


# --------------------------------------------------------------------------- Erlang B / C


@pytest.mark.parametrize("load", [0.1, 1.0, 5.0, 12.5, 30.0])
@pytest.mark.parametrize("agents", [0, 1, 2, 7, 15, 25])
def test_erlang_b_matches_factorial_formula(agents: int, load: float) -> None:
    assert erlang_b(agents, load) == pytest.approx(_erlang_b_direct(agents, load), rel=1e-12)


@pytest.mark.parametrize(
    ("agents", "load", "table"),
    [(1, 1.0, 0.5), (2, 1.0, 0.2), (5, 2.0, 0.0367), (10, 5.0, 0.0184)],
)
def test_erlang_b_table_values(agents: int, load: float, table: float) -> None:
    assert erlang_b(agents, load) == pytest.approx(table, abs=5e-5)


@pytest.mark.parametrize("load", [0.5, 3.0, 9.9, 19.0])
@pytest.mark.parametrize("agents", [1, 2, 10, 20])
def test_erlang_c_matches_direct_formula(agents: int, load: float) -> None:
    if load >= agents:
        assert erlang_c(agents, load) == 1.0
    else:
        assert erlang_c(agents, load) == pytest.approx(_erlang_c_direct(agents, load), rel=1e-12)


@pytest.mark.parametrize("rho", [0.05, 0.5, 0.9, 0.999])
def test_erlang_c_textbook_closed_forms(rho: float) -> None:
    assert erlang_c(1, rho) == pytest.approx(rho, rel=1e-12)  # M/M/1
    assert erlang_c(2, 2 * rho) == pytest.approx(2 * rho**2 / (1 + rho), rel=1e-12)  # M/M/2


def test_erlang_c_reference_example() -> None:
    # Reference values (4 significant digits, hand-checked by the factorial sum): 10 agents,
    # 8 Erlangs -> 40.92 % of calls wait, ASA 36.83 s at 180 s AHT.
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=5e-5)
    assert mmn_mean_wait(10, 8 / 180, 180.0) == pytest.approx(36.83, abs=5e-3)


def test_erlang_b_c_large_systems_are_stable() -> None:
    # Compare with a log-space Poisson evaluation: B = pmf(n) / cdf(n), C from B.
    for agents, load in [(500, 400.0), (500, 499.9), (300, 250.0)]:
        pmf = math.exp(agents * math.log(load) - load - math.lgamma(agents + 1))
        blocking = pmf / pdtr(agents, load)
        assert erlang_b(agents, load) == pytest.approx(blocking, rel=1e-9)
        c_ref = agents * blocking / (agents - load * (1 - blocking))
        assert erlang_c(agents, load) == pytest.approx(c_ref, rel=1e-9)
        assert 0.0 < erlang_c(agents, load) < 1.0


def test_erlang_c_overload_and_idle() -> None:
    assert erlang_c(5, 5.0) == 1.0
    assert erlang_c(5, 7.0) == 1.0
    assert erlang_c(5, 0.0) == 0.0
    assert erlang_b(5, 0.0) == 0.0
    with pytest.raises(ValueError):
        erlang_b(-1, 1.0)
    with pytest.raises(ValueError):
        erlang_c(3, -1.0)


def test_mm1_wait_and_service_level() -> None:
    lam, aht, t = 0.8 / 60, 60.0, 45.0
    mu = 1 / aht
    rho = lam / mu
    assert mmn_mean_wait(1, lam, aht) == pytest.approx(rho / (mu - lam), rel=1e-12)
    expected = 1 - rho * math.exp(-(mu - lam) * t)
    assert mmn_service_level(1, lam, aht, t) == pytest.approx(expected, rel=1e-12)
    assert mmn_service_level(1, lam, aht, 0.0) == pytest.approx(1 - rho, rel=1e-12)


def test_mmn_unstable() -> None:
    assert mmn_mean_wait(4, 4 / 100, 100.0) == math.inf
    assert mmn_service_level(4, 5 / 100, 100.0, 20.0) == 0.0
    assert mmn_mean_wait(4, 0.0, 100.0) == 0.0


# --------------------------------------------------------------------------- Erlang A


def test_erlang_a_matches_linear_solve(erlang_a_case) -> None:
    (agents, lam, _, patience, _), result, pi = erlang_a_case
    k = np.arange(pi.size)
    queue_mean = float(pi @ np.maximum(k - agents, 0))
    assert result.p_wait == pytest.approx(pi[agents:].sum(), rel=1e-9)
    # Abandonment flow: lambda * P(abandon) = theta * E[queue length].
    assert lam * result.p_abandon == pytest.approx(queue_mean / patience, rel=1e-9)
    # Little's law for the queue (abandoners counted until they leave).
    assert result.mean_wait_s == pytest.approx(queue_mean / lam, rel=1e-9)
    assert result.occupancy == pytest.approx(float(pi @ np.minimum(k, agents)) / agents, rel=1e-9)


def test_erlang_a_occupancy_is_answered_throughput(erlang_a_case) -> None:
    (agents, lam, aht, _, _), result, _ = erlang_a_case
    assert result.occupancy == pytest.approx(lam * (1 - result.p_abandon) * aht / agents, rel=1e-9)


def test_erlang_a_matches_tagged_customer_ctmc(erlang_a_case) -> None:
    (agents, _, aht, patience, target), result, pi = erlang_a_case
    queued = pi[agents:]
    served, wait_served, wait_all, served_by_t = _tagged_customer(
        agents, 1 / aht, 1 / patience, queued.size - 1, target
    )
    p_now = pi[:agents].sum()
    p_answered = p_now + queued @ served
    assert result.p_abandon == pytest.approx(queued @ (1 - served), rel=1e-8)
    assert result.mean_wait_s == pytest.approx(queued @ wait_all, rel=1e-8)
    assert result.mean_wait_answered_s == pytest.approx(queued @ wait_served / p_answered, rel=1e-8)
    sl_offered = p_now + queued @ served_by_t
    assert result.service_level_offered == pytest.approx(sl_offered, rel=1e-8, abs=1e-12)
    assert result.service_level_answered == pytest.approx(sl_offered / p_answered, rel=1e-8)


def test_erlang_a_service_level_monte_carlo() -> None:
    # Overloaded with long waits, so the patience race matters for the service level.
    agents, lam, aht, patience, target = 5, 6 / 60, 60.0, 60.0, 30.0
    mu, theta = 1 / aht, 1 / patience
    result = erlang_a(agents, lam, aht, patience, target)
    rng = np.random.default_rng(20240611)
    samples = 200_000
    pi = _mmnm_stationary(agents, lam, mu, theta, queue=100)
    found = rng.choice(pi.size, size=samples, p=pi)  # PASTA
    ok = found < agents
    for ahead in np.unique(found[found >= agents] - agents):
        idx = np.flatnonzero(found == agents + ahead)
        rates = agents * mu + theta * np.arange(ahead + 1)
        virtual = (rng.exponential(size=(idx.size, ahead + 1)) / rates).sum(axis=1)
        own_patience = rng.exponential(patience, size=idx.size)
        ok[idx] = (virtual <= target) & (virtual < own_patience)
    p = result.service_level_offered
    assert abs(ok.mean() - p) < 5 * math.sqrt(p * (1 - p) / samples)


@pytest.mark.parametrize(("agents", "load"), [(1, 0.5), (10, 8.0), (50, 45.0), (200, 190.0)])
def test_erlang_a_long_patience_is_erlang_c(agents: int, load: float) -> None:
    aht, target = 240.0, 20.0
    lam = load / aht
    result = erlang_a(agents, lam, aht, 1e9, target)
    assert result.p_abandon < 1e-5
    assert result.p_wait == pytest.approx(erlang_c(agents, load), rel=1e-5)
    assert result.mean_wait_s == pytest.approx(mmn_mean_wait(agents, lam, aht), rel=1e-5)
    assert result.mean_wait_answered_s == pytest.approx(mmn_mean_wait(agents, lam, aht), rel=1e-5)
    sl = mmn_service_level(agents, lam, aht, target)
    assert result.service_level_offered == pytest.approx(sl, rel=1e-5)
    assert result.service_level_answered == pytest.approx(sl, rel=1e-5)
    assert result.occupancy == pytest.approx(load / agents, rel=1e-5)


@pytest.mark.parametrize(("agents", "load"), [(1, 0.5), (10, 8.0), (20, 25.0)])
def test_erlang_a_zero_patience_is_erlang_b(agents: int, load: float) -> None:
    aht = 180.0
    result = erlang_a(agents, load / aht, aht, 1e-6, 20.0)
    blocking = erlang_b(agents, load)
    assert result.p_wait == pytest.approx(blocking, rel=1e-6)
    assert result.p_abandon == pytest.approx(blocking, rel=1e-6)
    assert result.mean_wait_s < 1e-5
    assert result.service_level_offered == pytest.approx(1 - blocking, rel=1e-6)
    assert result.occupancy == pytest.approx(load * (1 - blocking) / agents, rel=1e-6)


def test_erlang_a_patience_equal_to_aht_is_infinite_server() -> None:
    agents, load, aht = 8, 9.5, 200.0
    result = erlang_a(agents, load / aht, aht, aht, 15.0)
    assert result.p_wait == pytest.approx(pdtrc(agents - 1, load), rel=1e-10)  # P(Pois >= n)
    k = np.arange(200)
    pmf = np.exp(k * math.log(load) - load - np.array([math.lgamma(x + 1) for x in k]))
    assert result.occupancy == pytest.approx(pmf @ np.minimum(k, agents) / agents, rel=1e-10)


def test_erlang_a_large_system_is_fast_and_sane() -> None:
    args = (200, 190 / 300, 300.0, 120.0, 20.0)
    erlang_a(*args)
    elapsed = min(_timed(erlang_a, *args) for _ in range(3))
    assert elapsed < 0.05
    for agents, load, patience in [(200, 190.0, 120.0), (500, 480.0, 600.0), (500, 650.0, 60.0)]:
        result = erlang_a(agents, load / 300, 300.0, patience, 20.0)
        values = {name: getattr(result, name) for name in ErlangA.__dataclass_fields__}
        assert all(math.isfinite(v) and v >= 0 for v in values.values())
        assert all(v <= 1.0 for k, v in values.items() if not k.startswith("mean_wait"))
        assert result.p_abandon <= result.p_wait


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def test_erlang_a_no_arrivals_and_bad_input() -> None:
    idle = erlang_a(3, 0.0, 100.0, 60.0, 20.0)
    assert (idle.p_wait, idle.service_level_offered, idle.occupancy) == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        erlang_a(3, 0.01, 100.0, 0.0, 20.0)
    with pytest.raises(ValueError):
        erlang_a(0, 0.01, 100.0, 60.0, 20.0)


# --------------------------------------------------------------------------- Cobham


@pytest.mark.parametrize(("agents", "lam"), [(1, 0.7 / 60), (10, 9 / 60), (40, 30 / 60)])
def test_cobham_single_class_is_fcfs(agents: int, lam: float) -> None:
    assert priority_mean_waits(agents, [lam], 60.0) == [
        pytest.approx(mmn_mean_wait(agents, lam, 60.0), rel=1e-12)
    ]


@pytest.mark.parametrize("rates", [[0.02, 0.05, 0.06], [0.1, 0.01], [0.0, 0.03, 0.03, 0.07]])
def test_cobham_conservation_law(rates: list[float]) -> None:
    agents, aht = 12, 80.0
    waits = priority_mean_waits(agents, rates, aht)
    fcfs = mmn_mean_wait(agents, sum(rates), aht)
    assert np.dot(rates, waits) / sum(rates) == pytest.approx(fcfs, rel=1e-12)
    assert waits == sorted(waits)  # lower priority never waits less


def test_cobham_overload_only_hits_low_classes() -> None:
    agents, aht = 4, 100.0
    waits = priority_mean_waits(agents, [0.02, 0.03], aht)  # total load 5 > 4 agents
    capacity = agents / aht
    assert waits[0] == pytest.approx(1 / (capacity * (1 - 0.02 / capacity)), rel=1e-12)
    assert waits[1] == math.inf


# --------------------------------------------------------------------------- staffing


@pytest.mark.parametrize(
    ("lam", "aht", "target", "level", "patience"),
    [
        (2.0, 300.0, 20.0, 0.8, None),
        (0.05, 180.0, 20.0, 0.9, None),
        (0.002, 300.0, 30.0, 0.95, None),
        (2.0, 300.0, 20.0, 0.8, 120.0),
        (0.05, 180.0, 20.0, 0.9, 45.0),
        (100 / 300, 300.0, 20.0, 0.5, 5.0),  # short patience: fewer agents than the load
    ],
)
def test_min_agents_is_minimal(lam, aht, target, level, patience) -> None:
    n = min_agents(lam, aht, target, level, patience)

    def sl(agents: int) -> float:
        if agents < 1:
            return 0.0
        if patience is None:
            return mmn_service_level(agents, lam, aht, target)
        return erlang_a(agents, lam, aht, patience, target).service_level_offered

    assert sl(n) >= level
    assert sl(n - 1) < level


def test_min_agents_edge_cases() -> None:
    assert min_agents(100 / 300, 300.0, 20.0, 0.5, 5.0) < 100  # below the offered load
    assert min_agents(2.0, 300.0, 20.0, 0.8, 1e9) == min_agents(2.0, 300.0, 20.0, 0.8)
    assert min_agents(0.0, 300.0, 20.0, 0.8) == 0
    with pytest.raises(ValueError):
        min_agents(2.0, 300.0, 20.0, 0.8, max_agents=500)
    with pytest.raises(ValueError):
        min_agents(2.0, 300.0, 20.0, 1.0)


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(agents=st.integers(1, 300), load=st.floats(0.01, 400.0))
def test_erlang_c_in_unit_interval_and_decreasing(agents: int, load: float) -> None:
    c = erlang_c(agents, load)
    assert 0.0 <= c <= 1.0
    assert erlang_c(agents + 1, load) <= c
    assert erlang_b(agents, load) <= c + 1e-15  # waiting is likelier than blocking


@PROPERTY
@given(
    agents=st.integers(1, 40),
    load=st.floats(0.5, 50.0),
    patience=st.floats(5.0, 2000.0),
    target=st.floats(0.0, 120.0),
)
def test_erlang_a_monotone_in_agents(agents: int, load: float, patience: float, target: float):
    aht = 120.0
    now = erlang_a(agents, load / aht, aht, patience, target)
    more = erlang_a(agents + 1, load / aht, aht, patience, target)
    assert more.p_abandon <= now.p_abandon * (1 + 1e-12)
    assert more.service_level_offered >= now.service_level_offered - 1e-12
    assert 0.0 <= now.p_abandon <= now.p_wait <= 1.0
    assert now.mean_wait_answered_s <= now.mean_wait_s / (1 - now.p_abandon) * (1 + 1e-12)
