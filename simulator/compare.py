"""What-if comparison: two scenarios under common random numbers, paired per replication.

Both scenarios run with the same root seed and replication numbers, so every city's primary
arrivals and their draws are identical; the difference of each KPI and score is taken per
replication (a paired design, far tighter than comparing two independent means) and
summarised with a Student-t interval. A change is significant when its interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from simulator.calibration import model_for
from simulator.kpi import Mapper, replication_kpis, summarize
from simulator.satisfaction import score_replications
from simulator.scenario import Scenario

SCORE_COLUMNS = ("response_speed", "resolution", "attitude", "follow_up", "overall")


def _serial(fn: Callable[[Any], Any], items: Sequence[Any], progress: bool = False) -> list:
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="simulating", unit="rep")
    return [fn(x) for x in items]


def per_replications(scenarios: Sequence[Scenario], replications: int, seed: int, progress: bool = False,
                     map_fn: Mapper | None = None) -> list[pd.DataFrame]:
    """Per scenario: KPIs and satisfaction scores per replication and city (national rows as
    ``ALL``). The replications are independent jobs for ``map_fn`` (a process pool's map, say:
    the caller owns the workers; default one by one in this process, with a progress bar if
    ``progress``)."""
    jobs = [(sc, seed, "run", r, None, (("city",), ()), None) for sc in scenarios for r in range(replications)]
    out = map_fn(replication_kpis, jobs) if map_fn is not None else _serial(replication_kpis, jobs, progress)
    frames = []
    for i, sc in enumerate(scenarios):
        mine = out[i * replications:(i + 1) * replications]
        city = pd.concat([o[0] for o in mine], ignore_index=True)
        scores = score_replications(city, model_for(sc))
        nat = pd.concat([o[1] for o in mine], ignore_index=True).drop(columns="all").assign(city="ALL")
        kpis = pd.concat([city.assign(city=city["city"].astype(str)), nat], ignore_index=True)
        frames.append(kpis.merge(scores, on=["replication", "city"], how="left"))
    return frames


def compare(
    base: Scenario, whatif: Scenario, replications: int, seed: int, level: float = 0.95,
    progress: bool = False, map_fn: Mapper | None = None,
) -> pd.DataFrame:
    """Per city and KPI: base mean, what-if mean, paired difference with its interval."""
    a, b = (f.set_index(["city", "replication"])
            for f in per_replications([base, whatif], replications, seed, progress, map_fn))
    common = a.index.intersection(b.index)
    cols = [c for c in a.columns if c in b.columns]
    diff = (b.loc[common, cols] - a.loc[common, cols]).reset_index()
    s = summarize(diff, ["city"], level).rename(columns={"mean": "change"})
    means = {
        name: f.loc[common, cols].reset_index().drop(columns="replication").groupby("city").mean()
        .stack().rename(name)
        for name, f in (("base", a), ("whatif", b))
    }
    s = s.join(means["base"], on=["city", "kpi"]).join(means["whatif"], on=["city", "kpi"])
    s["significant"] = (s["low"] > 0) | (s["high"] < 0)
    return s[["city", "kpi", "base", "whatif", "change", "half_width", "low", "high", "n", "significant"]]


def verdict(table: pd.DataFrame, whatif: Scenario) -> pd.DataFrame:
    """Does the what-if meet the scenario's planning targets? One row per city it changes + nation.

    A city counts as changed when any of its KPIs moved significantly. Each row gives the
    what-if's score and mean first response with their targets and whether they are met.
    """
    t = whatif.planning.targets
    w = table.set_index(["city", "kpi"])
    changed = table.loc[table["significant"] & (table["city"] != "ALL"), "city"].unique().tolist()
    rows = []
    for city in [*changed, "ALL"]:
        score = float(w.loc[(city, "overall"), "whatif"])
        fr_h = float(w.loc[(city, "first_response_mean_s"), "whatif"]) / 3600
        need = t.national_score_min if city == "ALL" else t.city_score_min
        rows.append({
            "city": city, "score": round(score, 2), "score_target": need,
            "score_met": need is None or score >= need,
            "first_response_h": round(fr_h, 2), "first_response_target_h": t.mean_first_response_h,
            "first_response_met": t.mean_first_response_h is None or fr_h <= t.mean_first_response_h,
        })
    return pd.DataFrame(rows)
