"""The March 2025 baseline reproduces the review, simulated on streams the calibration never saw.

The satisfaction parameters in ``scenarios/march_2025.satisfaction.yaml`` were fitted on
``purpose="fit"`` streams; here the month is simulated on ``purpose="run"`` streams, so the
check is out of sample for the randomness (the scores are still in-sample for the fit).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.calibration import model_for, survey_weights
from simulator.kpi import process_map, replicate, t_interval
from simulator.loader import load_scenario
from simulator.satisfaction import DIMENSIONS, national

BASELINE = Path(__file__).parents[2] / "scenarios" / "march_2025.yaml"
REPLICATIONS = 4

pytestmark = pytest.mark.slow


@cache
def _baseline() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-replication city KPIs and scores of the whole month (computed once per session, the
    replications on two spawned workers)."""
    sc = load_scenario(BASELINE)
    with process_map(2) as map_fn:
        reps = replicate(sc, REPLICATIONS, purpose="run", groupings=(("city",),), map_fn=map_fn)
    per_rep = reps.kpis(("city",))
    per_rep["city"] = per_rep["city"].astype(str)
    model = model_for(sc)
    scores = []
    for rep, k in per_rep.groupby("replication"):
        k = k.set_index("city")
        s = model.scores(k)
        s["complaints_could_not_understand"] = model.complaints(k)["could_not_understand"]
        s["complaints_total"] = model.complaints(k).sum(axis=1)
        s["replication"] = rep
        scores.append(s)
    return per_rep, pd.concat(scores)


def _mean_by_city(frame: pd.DataFrame, col: str) -> pd.Series:
    return frame.groupby(level=0)[col].mean() if frame.index.name == "city" else frame.groupby("city")[col].mean()


def test_named_cities_scores_within_one_point() -> None:
    sc = load_scenario(BASELINE)
    _, scores = _baseline()
    overall = _mean_by_city(scores, "overall")
    for city, observed in sc.satisfaction.observed.cities.items():
        assert abs(overall[city] - observed) <= 1.0, f"{city}: simulated {overall[city]:.2f}, review {observed}"


def test_national_dimensions_and_overall_match_the_review() -> None:
    sc = load_scenario(BASELINE)
    obs = sc.satisfaction.observed
    per_rep, scores = _baseline()
    kpis = per_rep.groupby("city").mean(numeric_only=True)
    mean_scores = scores.groupby(level=0).mean(numeric_only=True)
    nat = national(mean_scores[[*DIMENSIONS, "overall"]], survey_weights(kpis, obs))
    for d in DIMENSIONS:
        assert abs(nat[d] - obs.national[d]) <= 1.0, f"{d}: {nat[d]:.2f} vs {obs.national[d]}"
    assert abs(nat["overall"] - obs.national["overall"]) <= 0.5


def test_urumqi_first_response_is_the_reviews_4_8_hours() -> None:
    per_rep, _ = _baseline()
    hours = per_rep.loc[per_rep["city"] == "Urumqi", "first_response_mean_s"].mean() / 3600
    assert abs(hours - 4.8) <= 0.15 * 4.8, f"Urumqi mean first response {hours:.2f} h"


def test_lost_tickets_in_the_month_cover_237() -> None:
    per_rep, _ = _baseline()
    monthly = per_rep.groupby("replication")["lost"].sum().to_numpy()
    lo, hi = t_interval(monthly)
    assert lo <= 237 <= hi, f"lost per month {monthly}, 95% CI [{lo:.0f}, {hi:.0f}]"
    assert hi - lo < 120  # narrow enough to mean something


def test_could_not_understand_is_about_a_third_of_hohhots_complaints() -> None:
    _, scores = _baseline()
    h = scores.loc["Hohhot"]
    share = float(np.mean(h["complaints_could_not_understand"] / h["complaints_total"]))
    assert 0.25 <= share <= 0.42, f"could-not-understand share of Hohhot complaints {share:.2f} (review: 32 %)"


def test_bottom_three_are_the_bottom_three() -> None:
    _, scores = _baseline()
    overall = _mean_by_city(scores, "overall").sort_values()
    assert set(overall.index[:3]) == {"Urumqi", "Lanzhou", "Hohhot"}
    assert set(overall.index[-2:]) <= {"Beijing", "Shanghai", "Shenzhen"}
