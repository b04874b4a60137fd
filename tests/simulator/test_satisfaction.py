"""The satisfaction model is bounded, smooth and monotone; the calibration fits what it can."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.calibration import fit, leave_one_out
from simulator.satisfaction import DIMENSIONS, FEATURES, SatisfactionModel, features, national
from simulator.scenario import Observed

BAD_DIRECTION = {  # KPI -> +1 if a larger value is worse for the customer
    "late": 1, "response_index": 1, "fcr": -1, "repeat_rate": 1, "lost": 1,
    "could_not_understand": 1, "certification_mean": -1, "occupancy": 1, "follow_up_on_time": -1,
}


def _kpis(n: int, rng: np.random.Generator) -> pd.DataFrame:
    offered = rng.uniform(5_000, 50_000, n)
    return pd.DataFrame(
        {
            "offered": offered,
            "late": offered * rng.uniform(0.02, 0.6, n),
            "response_index": rng.uniform(0.05, 3.0, n),
            "fcr": rng.uniform(0.6, 0.95, n),
            "repeat_rate": rng.uniform(0.02, 0.3, n),
            "lost": rng.uniform(0, 40, n),
            "could_not_understand": offered * rng.uniform(0, 0.1, n),
            "certification_mean": rng.uniform(0.5, 3.5, n),
            "occupancy": rng.uniform(0.5, 0.99, n),
            "follow_up_on_time": rng.uniform(0.3, 1.0, n),
        },
        index=[f"C{i}" for i in range(n)],
    )


@settings(max_examples=60, deadline=None)
@given(
    kpi=st.sampled_from(sorted(BAD_DIRECTION)),
    seed=st.integers(0, 10_000),
    step=st.floats(0.01, 0.3),
)
def test_scores_are_monotone_in_every_kpi(kpi: str, seed: int, step: float) -> None:
    m = SatisfactionModel.prior()
    k = _kpis(5, np.random.default_rng(seed))
    worse = k.copy()
    worse[kpi] = k[kpi] * (1 + BAD_DIRECTION[kpi] * step)
    s0, s1 = m.scores(k), m.scores(worse)
    assert (s1["overall"] <= s0["overall"] + 1e-12).all()
    assert ((s1[list(DIMENSIONS)] <= s0[list(DIMENSIONS)] + 1e-12).all()).all()


def test_scores_are_bounded_and_weighted() -> None:
    m = SatisfactionModel.prior()
    s = m.scores(_kpis(50, np.random.default_rng(1)))
    assert ((s > 0) & (s < 100)).all().all()
    expected = 0.3 * s["response_speed"] + 0.4 * s["resolution"] + 0.2 * s["attitude"] + 0.1 * s["follow_up"]
    np.testing.assert_allclose(s["overall"], expected)


def test_negative_slopes_are_rejected() -> None:
    p = SatisfactionModel.prior()
    slopes = {d: dict(v) for d, v in p.slopes.items()}
    slopes["attitude"]["mismatch_share"] = -1.0
    with pytest.raises(ValueError, match="slopes must be >= 0"):
        SatisfactionModel(p.intercepts, slopes)


def test_perfect_operations_give_zero_features() -> None:
    k = pd.DataFrame(
        {"offered": [100.0], "late": [0.0], "response_index": [0.0], "fcr": [1.0], "repeat_rate": [0.0],
         "lost": [0.0], "could_not_understand": [0.0], "certification_mean": [5.0], "occupancy": [0.0],
         "follow_up_on_time": [1.0]}
    )
    f = features(k)
    assert f.abs().max().max() < 1e-3  # the overload hinge is ~0 far below the knee


def _truth() -> SatisfactionModel:
    p = SatisfactionModel.prior()
    slopes = {d: {x: v * 1.3 for x, v in p.slopes[d].items()} for d in DIMENSIONS}
    intercepts = {d: v + 0.4 for d, v in p.intercepts.items()}
    return SatisfactionModel(intercepts, slopes)


def test_fit_recovers_scores_generated_by_a_known_model() -> None:
    truth = _truth()
    k = _kpis(32, np.random.default_rng(7))
    s = truth.scores(k)
    nat = national(s, k["offered"])
    named = list(k.index[:8])
    obs = Observed(
        cities={c: float(s.loc[c, "overall"]) for c in named},
        national={d: float(nat[d]) for d in [*DIMENSIONS, "overall"]},
        national_weighting="volume",
    )
    result = fit(k, obs, SatisfactionModel.prior())
    assert result.success
    assert result.cities["residual"].abs().max() < 0.6
    assert result.national["residual"].abs().max() < 0.3
    # the fit is better than the prior it started from
    prior_err = (SatisfactionModel.prior().scores(k).loc[named, "overall"] - s.loc[named, "overall"]).abs().max()
    assert result.cities["residual"].abs().max() < prior_err
    assert all(v >= 0 for d in DIMENSIONS for v in result.model.slopes[d].values())
    assert set(result.model.slopes["attitude"]) == set(FEATURES["attitude"])


def test_leave_one_out_predicts_held_out_cities() -> None:
    truth = _truth()
    k = _kpis(32, np.random.default_rng(11))
    s = truth.scores(k)
    nat = national(s, k["offered"])
    obs = Observed(
        cities={c: float(s.loc[c, "overall"]) for c in k.index[:8]},
        national={d: float(nat[d]) for d in [*DIMENSIONS, "overall"]},
        national_weighting="volume",
    )
    loo = leave_one_out(k, obs, SatisfactionModel.prior())
    assert len(loo) == 8
    assert loo["error"].abs().mean() < 1.5
