"""Stage 6 of 7 (optimizer inputs): per-interval performance tables and their linear pieces.

For one interval (an hour of a day type) and one option (chatbot level, triage on or off)
the synchronous customers form one queue served by ``n`` effective agents. This module
tabulates, for integer ``n``, the exact M/M/n+M (Erlang A) quantities the programme needs,
per arrival: ``P(answered and wait <= tau)`` for several thresholds ``tau`` at once, the
answered share and the wait of answered customers (``E[W; answered]``). Without patience
(``patience_s=None``) the same quantities come from Erlang C. The formulas are those of
:mod:`simulator.erlang` (one stationary distribution per ``n`` serves every threshold, so a
table costs one chain per ``n`` instead of one per ``(n, tau)``); ``tests/optimizer`` checks
them against :func:`simulator.erlang.erlang_a` to 1e-9.

The curves are S-shaped in ``n``. The programme uses each curve only from its concave part
on (``Curve.n_start``, the first ``n`` from which every within-target curve has
non-increasing increments): there the hypograph of
the piecewise-linear interpolation through the integer points is exactly the set cut out
by its chords, so it needs no binaries and is exact at every integer ``n``. Below
``n_start`` the interval counts as understaffed (see ``formulation``). Pieces may be merged
while the merged chord stays within ``tolerance`` of the curve; chords of a concave
function lie below it, so merging is never optimistic. Times in seconds, rates per second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, gammaln, logsumexp

__all__ = ["Curve", "Pieces", "concave_pieces", "curve", "erlang_table"]

_TAIL = 1e-12


@dataclass(frozen=True)
class Table:
    """Erlang quantities per arrival for each ``n`` in ``n`` (rows) and threshold (columns)."""

    n: np.ndarray  # (N,) integer agent counts
    within: np.ndarray  # (N, K) P(answered and wait <= tau_k)
    answered: np.ndarray  # (N,) P(answered)
    wait: np.ndarray  # (N,) E[wait; answered] (seconds per arrival)


def _erlang_c(ns: np.ndarray, lam: float, mu: float, taus: np.ndarray) -> tuple[np.ndarray, ...]:
    """Within-target shares, answered share and E[W] of M/M/n (unstable rows: none in target)."""
    a = lam / mu
    top = int(ns.max())
    b = np.ones(top + 1)
    for k in range(1, top + 1):  # Erlang B recursion, every n at once
        b[k] = a * b[k - 1] / (k + a * b[k - 1])
    bn = b[ns]
    stable = ns > a
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(stable, ns * bn / (ns - a * (1.0 - bn)), 1.0)
        decay = ns * mu - lam
        within = np.where(stable[:, None], 1.0 - c[:, None] * np.exp(-decay[:, None] * taus[None, :]), 0.0)
        wait = np.where(stable, c / decay, np.inf)
    return within, np.ones(ns.size), wait


def _erlang_a(ns: np.ndarray, lam: float, mu: float, theta: float, taus: np.ndarray) -> tuple[np.ndarray, ...]:
    """Within-target shares, answered share and E[W; answered] of M/M/n+M for every ``n`` at once.

    Row ``i`` holds the chain of ``ns[i]`` agents: states ``0..n`` (Poisson head, shared by all
    rows) and queue states ``n + j``, ``j = 1..J`` (one matrix); normalised in log space.
    """
    top = int(ns.max())
    k = np.arange(top + 1)
    head = k * math.log(lam / mu) - gammaln(k + 1)
    lse_head = np.logaddexp.accumulate(head)  # log sum_{k <= m} w_k
    service = ns * mu  # (N,)
    size = int(max(0.0, (lam - service.min()) / theta) + 12.0 * math.sqrt(lam / theta + 1.0) + 64)
    while True:
        j = np.arange(1, size + 1)
        leave = service[:, None] + theta * j[None, :]  # (N, J): n mu + j theta
        queue = head[ns][:, None] + np.cumsum(math.log(lam) - np.log(leave), axis=1)
        ratio = lam / (service + theta * (size + 1))
        beyond = queue[:, -1] + np.log(ratio / (1.0 - ratio))
        total = np.logaddexp(lse_head[ns], logsumexp(queue, axis=1))
        if np.all(beyond - total < math.log(_TAIL)):
            break
        size *= 2
        if size > 2**22:
            raise ValueError("Erlang A chain too long (patience far longer than handle time)")
    p_imm = np.where(ns > 0, np.exp(lse_head[np.maximum(ns - 1, 0)] - total), 0.0)
    # queued states j = 0..J-1 ahead (state n + j), leave rate n mu + (j + 1) theta
    q0 = np.exp(head[ns] - total)[:, None]
    queued = np.concatenate([q0, np.exp(queue[:, :-1] - total[:, None])], axis=1)  # (N, J)
    answer = service[:, None] / leave
    qa = queued * answer
    x = -np.expm1(-theta * taus)  # (K,)
    rows, cols = np.nonzero(qa > 1e-16)  # the incomplete beta only where there is mass
    within = np.repeat(p_imm[:, None], taus.size, axis=1)
    for k in range(taus.size):
        if x[k] > 0.0:
            inc = betainc(j[cols].astype(float), service[rows] / theta + 1.0, x[k])
            within[:, k] += np.bincount(rows, inc * qa[rows, cols], minlength=ns.size)
    wait = np.einsum("nj,nj->n", qa, np.cumsum(1.0 / leave, axis=1))
    answered = p_imm + qa.sum(axis=1)
    return np.minimum(1.0, within), np.minimum(1.0, answered), wait


def erlang_table(
    arrival_rate: float,
    aht_s: float,
    patience_s: float | None,
    targets_s: Sequence[float],
    n_values: Sequence[int],
) -> Table:
    """Erlang A (or C without patience) quantities for every ``n`` in ``n_values``.

    ``n = 0`` answers nobody. ``within[i, k]`` equals
    ``erlang_a(n_i, arrival_rate, aht_s, patience_s, targets_s[k]).service_level_offered``.
    """
    taus = np.asarray(targets_s, dtype=float)
    ns = np.asarray(list(n_values), dtype=int)
    within = np.zeros((ns.size, taus.size))
    answered = np.zeros(ns.size)
    wait = np.zeros(ns.size)
    if arrival_rate <= 0.0:
        return Table(ns, np.ones((ns.size, taus.size)), np.ones(ns.size), wait)
    pos = ns > 0
    if pos.any():
        mu = 1.0 / aht_s
        if patience_s is None:
            out = _erlang_c(ns[pos], arrival_rate, mu, taus)
        else:
            out = _erlang_a(ns[pos], arrival_rate, mu, 1.0 / patience_s, taus)
        within[pos], answered[pos], wait[pos] = out
    return Table(ns, within, answered, wait)


@dataclass(frozen=True)
class Pieces:
    """Lines ``value <= a + b n``: the hypograph of a concave piecewise-linear function."""

    a: np.ndarray
    b: np.ndarray

    def __len__(self) -> int:
        return int(self.a.size)

    def lower_envelope(self, n: float) -> float:
        return float(np.min(self.a + self.b * n))


def _keep(x: np.ndarray, y: np.ndarray, tolerance: float) -> list[int]:
    """Indices of breakpoints kept so that each dropped point lies within ``tolerance`` of a chord."""
    keep = [0]
    i = 0
    while i < x.size - 1:
        j = i + 1
        while j + 1 < x.size:
            cand = j + 1
            seg = np.arange(i + 1, cand)
            chord = y[i] + (y[cand] - y[i]) * (x[seg] - x[i]) / (x[cand] - x[i])
            if np.max(np.abs(chord - y[seg])) > tolerance:
                break
            j = cand
        keep.append(j)
        i = j
    return keep


def _pieces(x: np.ndarray, y: np.ndarray, tolerance: float) -> Pieces:
    idx = _keep(x, y, tolerance)
    xs, ys = x[idx], y[idx]
    b = np.diff(ys) / np.diff(xs)
    a = ys[:-1] - b * xs[:-1]
    # beyond the last point the curve is flat at its last value
    a = np.append(a, ys[-1])
    b = np.append(b, 0.0)
    return Pieces(a, b)


def concave_pieces(x: np.ndarray, y: np.ndarray, tolerance: float = 0.0) -> Pieces:
    """Chords of a concave, non-decreasing sequence (the hypograph of its interpolation)."""
    return _pieces(x, y, tolerance)



@dataclass(frozen=True)
class Curve:
    """One interval's synchronous performance as functions of effective agents ``n >= n_start``.

    ``within[k]`` bounds the tickets per hour answered within target for output ``k``
    (a weighted mix of threshold columns); values at ``n_start`` are kept. With a
    ``shift`` the queue sees ``n - shift`` agents (the rest busy with deferred work), so
    ``n_start`` and the pieces are in units of ``n``.
    """

    n_start: float
    n_sat: float
    within: tuple[Pieces, ...]
    within_at_start: tuple[float, ...]
    wait_at_start: float  # seconds waited per hour by answered customers at n_start (first stable n)
    idle: tuple[float, float]  # (a, b): idle agents <= a + b n, a tangent of the convex idle curve
    table: Table


def _first_concave(values: np.ndarray, concave: bool) -> int:
    """First index from which increments are non-increasing (concave) or non-decreasing."""
    d = np.diff(values)
    bad = d[1:] > d[:-1] + 1e-12 if concave else d[1:] < d[:-1] - 1e-12
    idx = np.nonzero(bad)[0]
    return 0 if idx.size == 0 else int(idx[-1] + 1)


def _first_concave_all(outs: np.ndarray, tab: Table) -> int:
    """First row from which every within-target curve has non-increasing increments."""
    return max(_first_concave(outs[:, k], True) for k in range(outs.shape[1]))


def curve(
    rate_per_h: float,
    aht_s: float,
    patience_s: float | None,
    targets_s: Sequence[float],
    mixes: Sequence[Sequence[float]],
    *,
    tolerance: float = 0.0,
    saturation: float = 1e-5,
    operating_share: float = 0.8,
    shift: float = 0.0,
) -> Curve:
    """Tabulate one interval and cut it into pieces.

    Parameters
    ----------
    rate_per_h : float
        Synchronous arrivals per hour reaching agents.
    aht_s, patience_s : float
        Mean handle time and mean patience (``None``: customers never hang up).
    targets_s : sequence of float
        Distinct wait thresholds.
    mixes : sequence of weight vectors
        One output per vector: its within-target rate is ``rate_per_h * sum_k w_k within_k``.
    tolerance : float
        Largest error allowed when merging pieces, as a share of ``rate_per_h``.
    saturation : float
        The table stops at the first ``n`` whose within-target shares are all within this
        of their limit.
    operating_share : float
        The idle-time tangent is taken at the first ``n`` whose total within-target share
        reaches this (a plan's typical operating point), or lower, so that it is not
        negative at ``n_start``.
    shift : float
        Agents busy with other work: the queue is served by ``n - shift``.

    Notes
    -----
    Idle agents ``n - load * P(answered)`` are what the queue leaves for deferred work.
    The curve is convex in ``n``, so its tangent lies below it: a conservative linear bound.
    """
    lam = rate_per_h / 3600.0
    w = np.asarray(mixes, dtype=float)
    load = lam * aht_s
    lo = max(0, math.floor(load - 1.5 * math.sqrt(load) - 1))
    hi = max(lo + 4, math.ceil(load + 4.5 * math.sqrt(load) + 6))
    tab = erlang_table(lam, aht_s, patience_s, targets_s, range(lo, hi + 1))
    while True:
        outs = tab.within @ w.T  # (N, outputs)
        grow_hi = np.any(np.abs(outs[-1] - outs[-2]) > saturation)
        grow_lo = lo > 0 and _first_concave_all(outs, tab) == 0
        if not (grow_hi or grow_lo):
            break
        new_lo = max(0, lo - max(4, (hi - lo) // 2)) if grow_lo else lo
        new_hi = hi + max(8, (hi - lo) // 2) if grow_hi else hi
        parts = []
        if new_lo < lo:
            parts.append(erlang_table(lam, aht_s, patience_s, targets_s, range(new_lo, lo)))
        parts.append(tab)
        if new_hi > hi:
            parts.append(erlang_table(lam, aht_s, patience_s, targets_s, range(hi + 1, new_hi + 1)))
        tab = Table(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("n", "within", "answered", "wait")))
        lo, hi = new_lo, new_hi
    i0 = _first_concave_all(outs, tab)
    wait_rate = tab.wait * lam * 3600.0
    idle_a, idle_b = _idle_tangent(tab, load, outs.sum(axis=1) / max(w.sum(), 1e-12), i0, operating_share)
    sat_rows = np.nonzero(np.all(np.abs(outs - outs[-1]) <= saturation, axis=1))[0]
    i1 = max(i0 + 1, int(sat_rows[0]) if sat_rows.size else outs.shape[0] - 1)
    x = tab.n[i0 : i1 + 1].astype(float) + shift
    tol = tolerance * rate_per_h
    within = tuple(
        concave_pieces(x, rate_per_h * outs[i0 : i1 + 1, k], tol) for k in range(outs.shape[1])
    )
    finite = np.nonzero(np.isfinite(wait_rate[i0:]))[0]
    wait0 = float(wait_rate[i0 + finite[0]]) if finite.size else 0.0
    return Curve(
        float(tab.n[i0]) + shift, float(tab.n[i1]) + shift, within,
        tuple(float(rate_per_h * v) for v in outs[i0]), wait0,
        (idle_a - idle_b * shift, idle_b), tab,
    )


def _idle_tangent(tab: Table, load: float, share: np.ndarray, i0: int, target: float) -> tuple[float, float]:
    """Tangent (forward difference) of idle(n) = n - load * answered(n) at the operating point."""
    idle = tab.n - load * tab.answered
    ok = np.nonzero(share[i0:] >= target)[0]
    i = min(i0 + (int(ok[0]) if ok.size else 0), idle.size - 2)
    while True:
        b = float(idle[i + 1] - idle[i])
        a = float(idle[i] - b * tab.n[i])
        if a + b * tab.n[i0] >= 0.0 or i <= i0:
            return (a, b) if a + b * tab.n[i0] >= 0.0 else (0.0, 0.0)
        i -= 1
