"""Stage 5 of 7: city KPIs -> the four scored satisfaction dimensions and the weighted overall.

Each dimension is a logistic function of a few "badness" features computed from simulated
KPIs, with non-negative slopes, so every score is smooth and monotone (worse operations
never raise a score) and bounded in (0, 100):

    score_d = 100 * expit(intercept_d - sum_i slope_di * feature_i)

Shares enter as ``log(1 + share / scale)`` (Weber-Fechner): customers notice the first
late answers or misunderstandings far more than the difference between bad and very bad,
so a score is most sensitive near good operations and saturates when things are bad. The
scales below are part of the model's definition, not fitted.

=================  =====================================================================
dimension          features (0 when operations are perfect, larger is worse)
=================  =====================================================================
response_speed     late_share (answered after target, abandoned or unserved / offered),
                   response_index (mean log(1 + first response / target))
resolution         unresolved_share (1 - FCR), repeat_rate (retries, re-contacts and
                   returns after outages per first contact), lost_share
attitude           mismatch_share (served by a non-speaker / offered), certification_gap
                   ((5 - mean certification) / 5), overload (smooth hinge of occupancy
                   above 85 %: tired agents)
follow_up          follow_up_miss (owed follow-ups not done within 24 h)
=================  =====================================================================

The overall score weights the dimensions (30/40/20/10 by default, from the scenario). The
national score is the volume-weighted mean of city scores. The parameters are shared by
all cities, so no per-city constant can absorb the fit: a city's score comes from its
operations alone. ``calibration.fit`` fits them to observed scores with scipy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

DIMENSIONS = ("response_speed", "resolution", "attitude", "follow_up")
FEATURES: dict[str, tuple[str, ...]] = {
    "response_speed": ("late_share", "response_index"),
    "resolution": ("unresolved_share", "repeat_rate", "lost_share"),
    "attitude": ("mismatch_share", "certification_gap", "overload"),
    "follow_up": ("follow_up_miss",),
}
COMPLAINT_CAUSES = {  # cause -> KPI count it is drawn from
    "could_not_understand": "could_not_understand",
    "unresolved": "unresolved",
    "slow_response": "late",
    "lost_ticket": "lost",
}
SHARE_SCALES = {  # feature -> scale of its log(1 + x / scale) transform
    "late_share": 0.05, "unresolved_share": 0.1, "repeat_rate": 0.05, "lost_share": 0.001,
    "mismatch_share": 0.02, "follow_up_miss": 0.1,
}
MAX_CERTIFICATION = 5.0
OVERLOAD_KNEE, OVERLOAD_WIDTH = 0.85, 0.03


def features(kpis: pd.DataFrame) -> pd.DataFrame:
    """The satisfaction features of each row of a city-level KPI frame (means over replications)."""
    return pd.DataFrame(_features(kpis), index=kpis.index)


def _features(kpis: pd.DataFrame) -> dict[str, np.ndarray]:
    """``features`` as arrays: the loop scores every simulated plan, and column-wise pandas
    arithmetic cost half its assessment (the same element-wise numpy operations, the same
    numbers)."""
    col = {k: kpis[k].to_numpy(dtype=float) for k in (
        "offered", "late", "response_index", "fcr", "repeat_rate", "lost", "could_not_understand",
        "certification_mean", "occupancy", "follow_up_on_time")}
    offered = np.where(col["offered"] > 0, col["offered"], np.nan)
    occ = np.nan_to_num(col["occupancy"], nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = {
            "late_share": col["late"] / offered,
            "response_index": col["response_index"],
            "unresolved_share": 1.0 - col["fcr"],
            "repeat_rate": col["repeat_rate"],
            "lost_share": col["lost"] / (offered + col["lost"]),
            "mismatch_share": col["could_not_understand"] / offered,
            "certification_gap": (MAX_CERTIFICATION - col["certification_mean"]) / MAX_CERTIFICATION,
            "overload": OVERLOAD_WIDTH * np.logaddexp(0.0, (occ - OVERLOAD_KNEE) / OVERLOAD_WIDTH),
            "follow_up_miss": 1.0 - col["follow_up_on_time"],
        }
    f = {k: np.where(np.isnan(v), 0.0, v) for k, v in f.items()}
    for name, scale in SHARE_SCALES.items():
        f[name] = np.log1p(np.maximum(f[name], 0.0) / scale)
    return f


@dataclass(frozen=True)
class SatisfactionModel:
    """Fitted (or prior) parameters of the four dimension functions and their weights."""

    intercepts: Mapping[str, float]
    slopes: Mapping[str, Mapping[str, float]]
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"response_speed": 0.3, "resolution": 0.4, "attitude": 0.2, "follow_up": 0.1}
    )
    complaint_propensity: Mapping[str, float] = field(
        default_factory=lambda: {"could_not_understand": 0.05, "unresolved": 0.02,
                                 "slow_response": 0.002, "lost_ticket": 0.3}
    )
    calibrated: bool = False

    def __post_init__(self) -> None:
        for d in DIMENSIONS:
            bad = [k for k, v in self.slopes[d].items() if v < 0]
            if bad:
                raise ValueError(f"slopes must be >= 0 (monotone scores); {d}: {bad}")

    def scores(self, kpis: pd.DataFrame) -> pd.DataFrame:
        """Dimension scores and ``overall`` (0-100) for each row of a city KPI frame."""
        f = _features(kpis)
        out = {}
        for d in DIMENSIONS:
            z = self.intercepts[d] - sum(self.slopes[d][x] * f[x] for x in FEATURES[d])
            out[d] = 100.0 * expit(z)
        out["overall"] = sum(self.weights[d] * out[d] for d in DIMENSIONS)
        return pd.DataFrame(out, index=kpis.index)

    def complaints(self, kpis: pd.DataFrame) -> pd.DataFrame:
        """Expected complaints by cause: a propensity times the count of contacts with that cause."""
        return pd.DataFrame(
            {c: self.complaint_propensity[c] * kpis[k] for c, k in COMPLAINT_CAUSES.items()},
            index=kpis.index,
        )

    def to_dict(self) -> dict:
        return {
            "intercepts": dict(self.intercepts),
            "slopes": {d: dict(v) for d, v in self.slopes.items()},
            "weights": dict(self.weights),
            "complaint_propensity": dict(self.complaint_propensity),
            "calibrated": self.calibrated,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> SatisfactionModel:
        return cls(
            intercepts=dict(data["intercepts"]),
            slopes={d: dict(v) for d, v in data["slopes"].items()},
            weights=dict(data.get("weights", cls.prior().weights)),
            complaint_propensity=dict(data.get("complaint_propensity", cls.prior().complaint_propensity)),
            calibrated=bool(data.get("calibrated", False)),
        )

    def with_weights(self, weights: Mapping[str, float]) -> SatisfactionModel:
        return SatisfactionModel(self.intercepts, self.slopes, dict(weights), self.complaint_propensity,
                                 self.calibrated)

    @classmethod
    def prior(cls) -> SatisfactionModel:
        """Uncalibrated defaults: plausible magnitudes, the starting point and anchor of the fit."""
        return cls(
            intercepts={"response_speed": 3.0, "resolution": 3.0, "attitude": 3.0, "follow_up": 2.5},
            slopes={
                "response_speed": {"late_share": 0.5, "response_index": 0.5},
                "resolution": {"unresolved_share": 0.5, "repeat_rate": 0.5, "lost_share": 0.5},
                "attitude": {"mismatch_share": 0.3, "certification_gap": 1.0, "overload": 5.0},
                "follow_up": {"follow_up_miss": 0.5},
            },
        )


def national(scores: pd.DataFrame, volume: pd.Series) -> pd.Series:
    """Volume-weighted national mean of each score column."""
    w = volume / volume.sum()
    return scores.mul(w, axis=0).sum()


def score_replications(per_rep: pd.DataFrame, model: SatisfactionModel) -> pd.DataFrame:
    """Scores of every city in every replication, plus a national row (``city == "ALL"``).

    ``per_rep`` is ``Replications.kpis(("city",))``; the national score of a replication is
    the offered-volume-weighted mean of its city scores.
    """
    rows = []
    for rep, k in per_rep.groupby("replication", sort=True):
        k = k.set_index(k["city"].astype(str))
        s = model.scores(k)
        s.loc["ALL"] = national(s, k["offered"])
        s.insert(0, "replication", rep)
        rows.append(s.rename_axis("city").reset_index())
    return pd.concat(rows, ignore_index=True)
