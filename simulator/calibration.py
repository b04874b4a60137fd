"""Stage 5 of 7 (fit): satisfaction parameters fitted to observed scores with scipy.

The fit sees city-level KPIs (means over replications on ``purpose="fit"`` streams) and the
observed scores: named cities' overall scores, national dimension scores and the national
overall. It solves a bounded least-squares problem (slopes >= 0 keep the scores monotone)
with a ridge pull toward the prior, so that 13 targets do not over-determine 13 parameters
into nonsense, and a floor under every slope (a quarter of its prior): customers name attitude,
resolution, speed and follow-up as what matters (seed facts, section 3), so the fit may not
switch any of them off because two features move together across the eight cities.
The observed national scores average cities as the survey did (``national_weighting``).
Shared parameters only: no city has a constant of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import least_squares

from simulator.diagnostics import ScenarioError
from simulator.kpi import replicate
from simulator.rundir import atomic_write
from simulator.satisfaction import DIMENSIONS, FEATURES, SatisfactionModel, national
from simulator.scenario import Observed, Scenario

RIDGE = 0.02  # weight of the pull toward the prior (score points per unit of a parameter, x10)
MIN_SLOPE_SHARE = 0.25  # every slope keeps a quarter of its prior: the survey says each matters
NATIONAL_WEIGHT = 2.0  # a national score rests on 5,842 respondents, a city's on ~180


@dataclass(frozen=True)
class Fit:
    """A fitted model and how well it reproduces each target."""

    model: SatisfactionModel
    cities: pd.DataFrame  # city, observed, fitted, residual
    national: pd.DataFrame  # score, observed, fitted, residual
    cost: float
    success: bool

    def to_dict(self) -> dict:
        return {
            "parameters": self.model.to_dict(),
            "fit": {
                "success": self.success,
                "cost": round(self.cost, 6),
                "cities": _records(self.cities),
                "national": _records(self.national),
            },
        }


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in df.to_dict("records")]


def _pack(m: SatisfactionModel) -> np.ndarray:
    return np.array([v for d in DIMENSIONS for v in (m.intercepts[d], *(m.slopes[d][x] for x in FEATURES[d]))])


def _unpack(x: np.ndarray, base: SatisfactionModel) -> SatisfactionModel:
    it = iter(x.tolist())
    intercepts, slopes = {}, {}
    for d in DIMENSIONS:
        intercepts[d] = next(it)
        slopes[d] = {f: max(0.0, next(it)) for f in FEATURES[d]}
    return SatisfactionModel(intercepts, slopes, base.weights, base.complaint_propensity, calibrated=True)


def fit(
    kpis: pd.DataFrame,
    observed: Observed,
    prior: SatisfactionModel,
    exclude: tuple[str, ...] = (),
) -> Fit:
    """Fit the model to ``observed`` from a city-indexed frame of mean KPIs (``offered`` weights)."""
    volume = survey_weights(kpis, observed)
    cities = {c: v for c, v in observed.cities.items() if c not in exclude}
    named = list(cities)
    obs_c = np.array([cities[c] for c in named])
    nat_keys = list(observed.national)
    obs_n = np.array([observed.national[k] for k in nat_keys])
    x0 = _pack(prior)
    lower = np.array([-np.inf if _is_intercept(i) else MIN_SLOPE_SHARE * x0[i] for i in range(x0.size)])

    def residuals(x: np.ndarray) -> np.ndarray:
        m = _unpack(x, prior)
        s = m.scores(kpis)
        n = national(s, volume)
        r_city = s.loc[named, "overall"].to_numpy() - obs_c
        r_nat = NATIONAL_WEIGHT * (n[nat_keys].to_numpy() - obs_n)
        ridge = RIDGE * (x - x0) * 10.0
        return np.concatenate([r_city, r_nat, ridge])

    sol = least_squares(residuals, x0, bounds=(lower, np.full(x0.size, np.inf)), method="trf")
    model = _unpack(sol.x, prior)
    return _report(model, kpis, observed, sol.cost, bool(sol.success))


def survey_weights(kpis: pd.DataFrame, observed: Observed) -> pd.Series:
    """City weights of the observed national scores: equal, or by offered contacts."""
    if observed.national_weighting == "equal":
        return pd.Series(1.0, index=kpis.index)
    return kpis["offered"]


def _is_intercept(i: int) -> bool:
    starts, pos = set(), 0
    for d in DIMENSIONS:
        starts.add(pos)
        pos += 1 + len(FEATURES[d])
    return i in starts


def _report(model: SatisfactionModel, kpis: pd.DataFrame, observed: Observed, cost: float, ok: bool) -> Fit:
    s = model.scores(kpis)
    n = national(s, survey_weights(kpis, observed))
    cities = pd.DataFrame(
        [(c, v, float(s.loc[c, "overall"])) for c, v in observed.cities.items()],
        columns=["city", "observed", "fitted"],
    )
    cities["residual"] = cities["fitted"] - cities["observed"]
    nat = pd.DataFrame(
        [(k, v, float(n[k])) for k, v in observed.national.items()], columns=["score", "observed", "fitted"]
    )
    nat["residual"] = nat["fitted"] - nat["observed"]
    return Fit(model, cities, nat, float(cost), ok)


def leave_one_out(kpis: pd.DataFrame, observed: Observed, prior: SatisfactionModel) -> pd.DataFrame:
    """Refit without each named city in turn and predict its score: an honest error estimate."""
    rows = []
    for city, obs in observed.cities.items():
        m = fit(kpis, observed, prior, exclude=(city,)).model
        pred = float(m.scores(kpis.loc[[city]])["overall"].iloc[0])
        rows.append((city, obs, pred, pred - obs))
    return pd.DataFrame(rows, columns=["city", "observed", "predicted", "error"])


def city_means(per_rep: pd.DataFrame) -> pd.DataFrame:
    """Mean KPIs per city over replications, indexed by city (the fit's input)."""
    return per_rep.drop(columns="replication").groupby("city", observed=True).mean(numeric_only=True)


def model_for(scenario: Scenario) -> SatisfactionModel:
    """The scenario's satisfaction model: its parameters file if any, else the prior; its weights."""
    path = scenario.satisfaction.parameters_file
    base = SatisfactionModel.prior()
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ScenarioError(
                scenario.name, "satisfaction.parameters_file",
                f"{p} does not exist. Fix: run `capplan calibrate` on the scenario to create it",
            )
        data = yaml.safe_load(p.read_text())
        base = SatisfactionModel.from_dict(data["parameters"])
    return base.with_weights(scenario.satisfaction.weights)


def save_fit(fit_: Fit, path: str | Path, extra: Mapping | None = None) -> None:
    """Write parameters and residuals as YAML, atomically."""
    doc = fit_.to_dict() | dict(extra or {})
    atomic_write(Path(path), lambda p: p.write_text(yaml.safe_dump(doc, sort_keys=False)))


def fit_complaints(model: SatisfactionModel, kpis: pd.DataFrame, observed: Observed) -> SatisfactionModel:
    """Fit the complaint propensities to the observed complaint mix and the period's total.

    The prior's propensities are relative guesses. Each observed share of a cause in a
    city's complaints fixes that cause's propensity relative to the others (closed form);
    ``feedback_cases`` then fixes their common scale.
    """
    prop = dict(model.complaint_propensity)
    for city, shares in observed.complaint_shares.items():
        for cause, share in shares.items():
            counts = _with(model, prop).complaints(kpis.loc[[city]]).iloc[0]
            rest = counts.sum() - counts[cause]
            if counts[cause] > 0 and 0 < share < 1:
                prop[cause] *= float(share * rest / ((1 - share) * counts[cause]))
    if observed.feedback_cases:
        expected = float(_with(model, prop).complaints(kpis).to_numpy().sum())
        k = observed.feedback_cases / expected if expected > 0 else 1.0
        prop = {c: float(v * k) for c, v in prop.items()}
    return _with(model, prop)


def _with(m: SatisfactionModel, propensity: Mapping[str, float]) -> SatisfactionModel:
    return SatisfactionModel(m.intercepts, m.slopes, m.weights, dict(propensity), m.calibrated)


@dataclass(frozen=True)
class Calibration:
    """What ``capplan calibrate`` produced: the fit, the leave-one-out check and the inputs."""

    fit: Fit
    loo: pd.DataFrame
    kpis: pd.DataFrame

    def text(self) -> str:
        """The fit as a terminal report."""
        c = self.fit.cities.merge(self.loo[["city", "predicted", "error"]], on="city")
        lines = [
            "satisfaction fit (overall score per named city; LOO = refit without that city)",
            c.to_string(index=False, float_format=lambda v: f"{v:7.2f}"),
            "",
            "national scores",
            self.fit.national.to_string(index=False, float_format=lambda v: f"{v:7.2f}"),
            "",
            (f"max |residual|: cities {self.fit.cities['residual'].abs().max():.2f}, "
            f"national {self.fit.national['residual'].abs().max():.2f}; "
            f"leave-one-out mean |error| {self.loo['error'].abs().mean():.2f}, "
            f"max {self.loo['error'].abs().max():.2f}"),
        ]
        return "\n".join(lines)


def calibrate(
    scenario: Scenario, path: str | Path, *, replications: int | None = None, seed: int | None = None,
    progress: bool = False,
) -> Calibration:
    """Simulate the scenario on ``fit`` streams, fit, check by leave-one-out, write ``path``."""
    observed = scenario.satisfaction.observed
    assert observed is not None
    n = replications or scenario.replications
    root = scenario.seed if seed is None else seed
    reps = replicate(scenario, n, seed=root, purpose="fit", groupings=(("city",),), progress=progress)
    kpis = city_means(reps.kpis(("city",)))
    kpis.index = kpis.index.astype(str)
    prior = SatisfactionModel.prior().with_weights(scenario.satisfaction.weights)
    result = fit(kpis, observed, prior)
    model = fit_complaints(result.model, kpis, observed)
    result = Fit(model, result.cities, result.national, result.cost, result.success)
    loo = leave_one_out(kpis, observed, prior)
    save_fit(result, path, {
        "leave_one_out": _records(loo),
        "inputs": {"scenario": scenario.name, "replications": n, "seed": root, "purpose": "fit"},
    })
    return Calibration(result, loo, kpis)
