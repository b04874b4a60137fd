"""Erlang tables and their pieces against the simulator's exact formulas."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.tables import concave_pieces, curve, erlang_table
from simulator.erlang import erlang_a, mmn_mean_wait, mmn_service_level


@pytest.mark.parametrize("lam_h, aht, patience", [(50.0, 180.0, 200.0), (2.0, 300.0, 1200.0),
                                                   (1800.0, 60.0, 30.0), (3.0, 600.0, 300.0)])
def test_erlang_a_table_matches_the_closed_forms(lam_h, aht, patience):
    lam = lam_h / 3600.0
    taus = [0.0, 20.0, 60.0]
    tab = erlang_table(lam, aht, patience, taus, range(60))
    assert np.all(tab.within[0] == 0.0)  # nobody there, nobody answered
    for i, n in enumerate(tab.n[1:], start=1):
        for k, tau in enumerate(taus):
            exact = erlang_a(int(n), lam, aht, patience, tau)
            assert tab.within[i, k] == pytest.approx(exact.service_level_offered, abs=1e-10)
        assert tab.answered[i] == pytest.approx(1.0 - exact.p_abandon, abs=1e-10)
        assert tab.wait[i] == pytest.approx(exact.mean_wait_answered_s * (1.0 - exact.p_abandon), rel=1e-8, abs=1e-10)


def test_erlang_c_table_matches_the_closed_forms():
    lam, aht = 50 / 180, 180.0
    tab = erlang_table(lam, aht, None, [30.0], range(30, 80))
    for i, n in enumerate(tab.n):
        if n <= lam * aht:
            assert tab.within[i, 0] == 0.0 and np.isinf(tab.wait[i])  # unstable: nothing in target
        else:
            assert tab.within[i, 0] == pytest.approx(mmn_service_level(int(n), lam, aht, 30.0), abs=1e-12)
            assert tab.wait[i] == pytest.approx(mmn_mean_wait(int(n), lam, aht), rel=1e-10)


@pytest.mark.parametrize("lam_h, patience", [(40.0, 180.0), (400.0, 240.0), (120.0, None)])
def test_curve_is_exact_at_every_integer_from_its_concave_start(lam_h, patience):
    aht, tau = 300.0, 20.0
    c = curve(lam_h, aht, patience, [tau], [[1.0]], tolerance=0.0)
    lam = lam_h / 3600.0

    def sl(n: int) -> float:
        if n == 0:
            return 0.0
        return erlang_a(n, lam, aht, patience, tau).service_level_offered if patience else \
            mmn_service_level(n, lam, aht, tau)

    values = np.array([sl(n) for n in range(int(c.n_sat) + 4)])
    # the concave start is the first n after which increments never grow (checked from n = 0)
    d = np.diff(values)
    bad = np.nonzero(d[1:] > d[:-1] + 1e-12)[0]
    assert c.n_start == (0 if bad.size == 0 else bad[-1] + 1)
    p = c.within[0]
    for n in range(int(c.n_start), int(c.n_sat) + 3):
        model = min(p.lower_envelope(n), p.a[-1])
        assert model == pytest.approx(lam_h * min(values[n], values[int(c.n_sat)]), abs=1e-6 * lam_h)


def test_merged_pieces_are_never_optimistic():
    x = np.arange(0, 40, dtype=float)
    y = 100 * (1 - np.exp(-x / 6.0))  # concave, increasing
    exact = concave_pieces(x, y, 0.0)
    merged = concave_pieces(x, y, 0.5)
    assert len(merged) < len(exact)
    grid = np.linspace(0, 45, 400)
    m = np.array([merged.lower_envelope(g) for g in grid])
    e = np.array([exact.lower_envelope(g) for g in grid])
    assert np.all(m <= e + 1e-9)  # chords of a concave function lie below it
    assert np.max(e - m) <= 0.5 + 1e-9


def test_idle_tangent_lies_below_the_idle_curve():
    lam_h, aht = 400.0, 300.0
    c = curve(lam_h, aht, 240.0, [20.0], [[1.0]])
    tab = c.table
    idle = tab.n - lam_h / 3600.0 * aht * tab.answered
    a, b = c.idle
    keep = tab.n >= c.n_start
    assert np.all(a + b * tab.n[keep] <= idle[keep] + 1e-9)  # conservative: no extra idle time
    assert a + b * c.n_start >= -1e-9  # and never negative where the interval counts as staffed
