"""Stage 7 of 7: a verified plan -> the improvement plan a board reads (Markdown, CSV, PNG).

Writes into one directory: the actions and their monthly cost per city, the KPIs and scores
before and after with 95 % intervals (paired, common random numbers), national totals, the
loop's iterations and, when given, the department's own plan side by side: its cost and
which targets it meets or misses. Every file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from optimizer.department import DepartmentComparison
from optimizer.inputs import seat_factor
from simulator.rundir import atomic_write
from simulator.scenario import Scenario

BEFORE, AFTER, DEPARTMENT = "#9e9e9e", "#1f77b4", "#ff7f0e"  # the same colours in every chart
KEY_KPIS = ("overall", "response_speed", "resolution", "attitude", "follow_up",
            "first_response_mean_s", "sl_offered", "abandon_rate", "fcr", "mismatch_rate", "occupancy")


@dataclass(frozen=True)
class PlanReport:
    """What the report is made of (all frames are plain pandas)."""

    name: str
    status: str
    cost_per_month: float
    actions: pd.DataFrame  # city, action, what, count, cost_per_month
    before_after: pd.DataFrame  # compare() table: city, kpi, base, whatif, change, half_width, ...
    verification: pd.DataFrame | None
    iterations: pd.DataFrame
    timings: dict[str, float]
    department: DepartmentComparison | None = None  # the department's plan, target by target
    binding: pd.DataFrame | None = None


def scenario_cost(base: Scenario, whatif: Scenario) -> pd.DataFrame:
    """Monthly cost (yuan) of what a what-if adds to the base, priced with the base's planning block.

    New agent groups are priced as hires or temporary seats on their shift, added languages
    as training, raised certification as certification levels, triage where a fifo city
    gains it, and a higher chatbot penetration at the cheapest planning level covering it.
    """
    pl = base.planning
    rows = []
    for name, after in whatif.cities.items():
        before = base.cities.get(name)
        if before is None:
            continue
        old = {g.name: g for g in before.agent_groups}
        cost = {"hires": 0.0, "temporaries": 0.0, "training": 0.0, "certification": 0.0,
                "chatbot": 0.0, "triage": 0.0}
        for g in after.agent_groups:
            o = old.get(g.name)
            if o is None:
                per = pl.temporary_cost_per_month if g.employment == "temporary" else pl.hire_cost_per_month
                key = "temporaries" if g.employment == "temporary" else "hires"
                cost[key] += g.headcount * per * seat_factor(g.shift, pl.agent_hours_per_month)
                continue
            if set(g.languages) - set(o.languages):
                cost["training"] += g.headcount * pl.language_training_cost
            if g.certification > o.certification:
                cost["certification"] += g.headcount * (g.certification - o.certification) * pl.certification_cost_per_level
        if after.routing.level >= 1 and before.routing.level == 0:
            cost["triage"] += pl.triage_cost
        if after.chatbot_penetration > before.chatbot_penetration + 1e-9:
            levels = [lv for lv in pl.chatbot_levels if lv.penetration >= after.chatbot_penetration - 1e-9]
            cost["chatbot"] += min((lv.cost_per_month for lv in levels), default=max(
                lv.cost_per_month for lv in pl.chatbot_levels))
        if any(cost.values()):
            rows.append({"city": name, **cost, "total": sum(cost.values())})
    return pd.DataFrame(rows, columns=["city", "hires", "temporaries", "training", "certification",
                                       "chatbot", "triage", "total"])


def _kpi_wide(before_after: pd.DataFrame) -> pd.DataFrame:
    """Per city: score and first response before/after with the change's half-width."""
    t = before_after[before_after["kpi"].isin(KEY_KPIS)]
    out = t.pivot(index="city", columns="kpi", values=["base", "whatif", "change", "half_width"])
    out.columns = [f"{k}_{v}" for v, k in out.columns]
    return out


def _fmt_change(r: pd.Series, kpi: str, scale: float = 1.0, digits: int = 1) -> str:
    b, a, hw = r[f"{kpi}_base"] * scale, r[f"{kpi}_whatif"] * scale, r[f"{kpi}_half_width"] * scale
    return f"{b:.{digits}f} → {a:.{digits}f} (±{hw:.{digits}f})"


def markdown(rep: PlanReport, scenario: Scenario) -> str:
    """The improvement plan as Markdown."""
    t = scenario.planning.targets
    lines = [f"# Improvement plan: {rep.name}", "",
             f"Status: **{rep.status}**. Monthly cost of the plan: **{rep.cost_per_month:,.0f} yuan**.", ""]
    if rep.department is not None:
        lines += [rep.department.summary(), ""]
    lines += ["Targets: " + ", ".join(filter(None, [
        t.mean_first_response_h and f"mean first response ≤ {t.mean_first_response_h:g} h in every city",
        t.channel_target_share and f"{t.channel_target_share:.0%} of contacts within their channel target",
        t.city_score_min and f"every city's score ≥ {t.city_score_min:g}",
        t.national_score_min and f"national score ≥ {t.national_score_min:g} (volume-weighted)",
        t.dialect_coverage_min and f"dialect coverage ≥ {t.dialect_coverage_min:.0%}",
    ])) + f"; checked at {t.confidence:.0%} confidence on fresh random streams.", ""]
    if rep.binding is not None and len(rep.binding):
        lines += ["## Targets no plan can reach", "", rep.binding.to_markdown(index=False), ""]
    costs = rep.actions.groupby("city")["cost_per_month"].sum().sort_values(ascending=False)
    lines += ["## Actions by city", "", "| city | actions | cost (yuan/month) |", "|---|---|---:|"]
    for city, cost in costs.items():
        acts = rep.actions[(rep.actions["city"] == city) & (rep.actions["action"] != "triage")]
        text = "; ".join(f"{r.action} {r.what} ×{r['count']}" if r.action != "chatbot_penetration"
                         else f"chatbot {r.what}" for _, r in acts.iterrows())
        tri = rep.actions[(rep.actions["city"] == city) & (rep.actions["action"] == "triage")]
        if len(tri) and tri["what"].iloc[0] == "on":
            text += "; triage on"
        lines.append(f"| {city} | {text or '-'} | {cost:,.0f} |")
    lines += [f"| **total** | | **{rep.cost_per_month:,.0f}** |", ""]
    wide = _kpi_wide(rep.before_after)
    lines += ["## Before and after (mean, 95 % interval of the change, common random numbers)", "",
              "| city | overall score | mean first response (h) | share within target (%) | FCR (%) |",
              "|---|---|---|---|---|"]
    order = [c for c in wide.sort_values("overall_whatif").index if c != "ALL"] + ["ALL"] * ("ALL" in wide.index)
    for city, r in wide.loc[order].iterrows():
        lines.append(f"| {city} | {_fmt_change(r, 'overall')} | {_fmt_change(r, 'first_response_mean_s', 1 / 3600, 2)}"
                     f" | {_fmt_change(r, 'sl_offered', 100)} | {_fmt_change(r, 'fcr', 100)} |")
    lines.append("")
    if rep.department is not None:
        d = rep.department
        lines += ["## The department's three-step plan, on the same streams", "", d.summary(), ""]
        if len(d.department_misses):
            lines += ["Targets the department's plan misses and this plan meets:", "",
                      d.department_misses.round(3).to_markdown(index=False), ""]
        if len(d.plan_misses):
            lines += ["Targets this plan misses:", "", d.plan_misses.round(3).to_markdown(index=False), ""]
    if rep.verification is not None:
        fails = rep.verification[~rep.verification["ok"]]
        lines += ["## Verification on fresh streams", "",
                  f"{len(rep.verification)} target checks, {len(fails)} failing.", ""]
        if len(fails):
            lines += [fails.to_markdown(index=False), ""]
    lines += ["## How the plan was found", "", rep.iterations.to_markdown(index=False), "",
              "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in rep.timings.items()), ""]
    return "\n".join(lines)


def charts(rep: PlanReport, scenario: Scenario, out: Path) -> list[Path]:
    """Board charts as PNG: scores and first response before/after, cost by city."""
    wide = _kpi_wide(rep.before_after).drop(index="ALL", errors="ignore")
    t = scenario.planning.targets
    paths = []
    order = wide.sort_values("overall_whatif").index
    fig, ax = plt.subplots(figsize=(10, 7))
    y = range(len(order))
    ax.barh([i + 0.2 for i in y], wide.loc[order, "overall_base"], height=0.4, color=BEFORE, label="before")
    ax.barh([i - 0.2 for i in y], wide.loc[order, "overall_whatif"], height=0.4, color=AFTER, label="after")
    if t.city_score_min:
        ax.axvline(t.city_score_min, color="black", linestyle="--", linewidth=1,
                   label=f"city target {t.city_score_min:g}")
    ax.set_yticks(list(y), order)
    lo = min(wide["overall_base"].min(), wide["overall_whatif"].min())
    ax.set_xlim(max(0, lo - 3), 100)
    ax.set_xlabel("overall satisfaction score (0-100)")
    ax.set_title("Satisfaction by city, before and after the plan (sorted by score after)")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out / "scores_before_after.png"))

    fig, ax = plt.subplots(figsize=(10, 7))
    order = wide.sort_values("first_response_mean_s_base").index
    y = range(len(order))
    ax.barh([i + 0.2 for i in y], wide.loc[order, "first_response_mean_s_base"] / 3600, height=0.4,
            color=BEFORE, label="before")
    ax.barh([i - 0.2 for i in y], wide.loc[order, "first_response_mean_s_whatif"] / 3600, height=0.4,
            color=AFTER, label="after")
    if t.mean_first_response_h:
        ax.axvline(t.mean_first_response_h, color="black", linestyle="--", linewidth=1,
                   label=f"target {t.mean_first_response_h:g} h")
    ax.set_xscale("log")
    ax.set_yticks(list(y), order)
    ax.set_xlabel("mean first response (hours, log scale)")
    ax.set_title("Mean first response by city, before and after the plan")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out / "first_response_before_after.png"))

    costs = rep.actions.groupby("city")["cost_per_month"].sum()
    costs = costs[costs > 0].sort_values()
    fig, ax = plt.subplots(figsize=(10, max(3, 0.35 * len(costs) + 1)))
    ax.barh(costs.index, costs.to_numpy() / 1000, color=AFTER)
    ax.set_xlabel("cost of the plan (thousand yuan per month)")
    ax.set_title(f"Where the money goes: {rep.cost_per_month / 1000:,.0f} thousand yuan a month in all")
    paths.append(_save(fig, out / "cost_by_city.png"))
    return paths


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def write_report(rep: PlanReport, scenario: Scenario, out: Path) -> list[Path]:
    """Write plan.md, the CSVs and the PNG charts into ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in (("plan_actions.csv", rep.actions), ("before_after.csv", rep.before_after),
                        ("iterations.csv", rep.iterations), ("verification.csv", rep.verification),
                        ("department_plan.csv", None if rep.department is None else rep.department.table), ("binding_targets.csv", rep.binding)):
        if frame is not None:
            paths.append(atomic_write(out / name, lambda p, f=frame: f.to_csv(p, index=False)))
    paths += charts(rep, scenario, out)
    text = markdown(rep, scenario)
    paths.append(atomic_write(out / "plan.md", lambda p: p.write_text(text)))
    return paths
