"""The simulator reduced to M/M/n, M/M/n+M and the M/M/n priority queue, against exact values.

Each case runs independent replications (seeds fixed, so the verdict is deterministic),
builds a Student-t interval of each KPI over replications and asserts that the exact value
lies inside it, and that the interval is narrow enough to mean something. The intervals
hold 95 % jointly over a test family (Bonferroni: with k checks each is at 1 - 0.05/k), so
a correct simulator passes the whole family with at least 95 % probability; one check at a
bare 95 % would fail somewhere among 18 checks more often than not.
"""

from __future__ import annotations

import dataclasses

import pytest

from simulator import simulate, single_queue
from simulator.erlang import (
    erlang_a,
    erlang_c,
    mmn_mean_wait,
    mmn_service_level,
    priority_mean_waits,
)
from simulator.kpi import compute_kpis, t_interval

AHT = 300.0
TARGET = 20.0


def _family_level(checks: int) -> float:
    return 1.0 - 0.05 / checks


def _rep_kpis(sc, reps: int, root: int, by=()):
    """KPIs of each replication, arrivals in the last hour dropped (still in system at the end)."""
    out = []
    for rep in range(reps):
        run = simulate(sc, seed=root, replication=rep)
        recs = run.records[run.records["arrival_s"] < run.horizon_s - 3600.0]
        out.append(compute_kpis(dataclasses.replace(run, records=recs), sc, by))
    return out


def _assert_covered(kp: list, exact: dict[str, float], level: float) -> None:
    """Each exact value lies in its replication interval, and the interval is narrow."""
    for kpi, value in exact.items():
        lo, hi = t_interval([k[kpi].iloc[0] for k in kp], level)
        assert lo <= value <= hi, f"{kpi}: exact {value:.4f} outside CI [{lo:.4f}, {hi:.4f}]"
        limit = WAIT_WIDTH * value if kpi == "asa_s" else PROB_WIDTH
        assert hi - lo < limit, f"{kpi}: CI width {hi - lo:.4f} too wide to mean anything"


def _scenario(agents: int, rho: float, tickets: int, patience_s: float | None = None, **kw):
    lam_h = rho * agents / AHT * 3600.0
    hours = tickets / lam_h + 1.0
    # warm-up: a generous multiple of the relaxation time of the queue
    warm = min(max(1.0, 0.05 * hours), 0.2 * hours)
    return single_queue(
        arrival_rate_per_h=lam_h, agents=agents, aht_s=AHT, patience_s=patience_s,
        horizon_h=hours + warm, warmup_h=warm, target_s=TARGET, **kw,
    )


ERLANG_C_CASES = [
    # agents, utilisation, tickets per replication, replications
    (1, 0.5, 8_000, 20),
    (5, 0.7, 15_000, 20),
    (20, 0.8, 20_000, 20),
    (50, 0.9, 40_000, 20),
    pytest.param(100, 0.95, 100_000, 16, marks=pytest.mark.slow),
    pytest.param(200, 0.95, 150_000, 12, marks=pytest.mark.slow),
]
PROB_WIDTH = 0.08  # widest joint interval allowed on a probability (8 points)
WAIT_WIDTH = 0.35  # ... and on a mean wait, relative to the exact value


@pytest.mark.parametrize(("agents", "rho", "tickets", "reps"), ERLANG_C_CASES)
def test_mmn_matches_erlang_c(agents: int, rho: float, tickets: int, reps: int) -> None:
    sc = _scenario(agents, rho, tickets)
    lam = rho * agents / AHT
    exact = {
        "p_wait": erlang_c(agents, rho * agents),
        "asa_s": mmn_mean_wait(agents, lam, AHT),
        "sl_offered": mmn_service_level(agents, lam, AHT, TARGET),
    }
    kp = _rep_kpis(sc, reps, root=100 + agents)
    _assert_covered(kp, exact, _family_level(len(ERLANG_C_CASES) * len(exact)))


ERLANG_A_CASES = [
    # agents, utilisation (offered), patience, tickets, replications
    (3, 0.8, 600.0, 10_000, 20),
    (10, 1.1, 180.0, 20_000, 20),
    (50, 0.95, 120.0, 40_000, 15),
    pytest.param(120, 1.0, 300.0, 80_000, 12, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("agents", "rho", "patience", "tickets", "reps"), ERLANG_A_CASES)
def test_mmn_plus_m_matches_erlang_a(
    agents: int, rho: float, patience: float, tickets: int, reps: int
) -> None:
    sc = _scenario(agents, rho, tickets, patience_s=patience)
    ea = erlang_a(agents, rho * agents / AHT, AHT, patience, TARGET)
    exact = {
        "p_wait": ea.p_wait,
        "abandon_rate": ea.p_abandon,
        "asa_s": ea.mean_wait_answered_s,
        "sl_offered": ea.service_level_offered,
        "sl_answered": ea.service_level_answered,
        "occupancy": ea.occupancy,
    }
    kp = _rep_kpis(sc, reps, root=200 + agents)
    _assert_covered(kp, exact, _family_level(len(ERLANG_A_CASES) * len(exact)))


def test_priority_two_classes_match_cobham() -> None:
    agents, rho, shares = 10, 0.85, {"high_value": 0.3, "potential": 0.7}
    sc = _scenario(agents, rho, 40_000, classes=shares, policy="priority")
    lam = rho * agents / AHT
    exact = priority_mean_waits(agents, [lam * s for s in shares.values()], AHT)
    kp = _rep_kpis(sc, 20, root=300, by=("tier",))
    for tier, value in zip(shares, exact):
        waits = [k.set_index("tier").loc[tier, "asa_s"] for k in kp]
        lo, hi = t_interval(waits, _family_level(len(shares)))
        assert lo <= value <= hi, f"{tier}: Cobham {value:.2f}s outside CI [{lo:.2f}, {hi:.2f}]"
        assert hi - lo < WAIT_WIDTH * value
    # and the classes really differ: triage is doing something
    assert exact[0] < 0.5 * exact[1]
