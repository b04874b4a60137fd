"""Stage 7 of 7 (report): KPI summaries -> plain-text tables for the terminal.

Takes the long summary frame of ``Replications.summary`` (one row per group and KPI with
``mean`` and ``half_width``) and lays out one row per group, one column per key KPI, each
cell ``mean ± half-width``. Times are shown in minutes, shares in percent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from simulator.kpi import Replications
from simulator.scenario import Scenario

__all__ = ["KEY_KPIS", "NATIONAL", "Column", "city_summary", "kpi_table", "scenario_line"]

NATIONAL = "ALL"


@dataclass(frozen=True)
class Column:
    """How one KPI is shown: its header, a scale applied to the value and decimals."""

    kpi: str
    header: str
    scale: float = 1.0
    decimals: int = 0


KEY_KPIS: tuple[Column, ...] = (
    Column("offered", "offered"),
    Column("first_response_mean_s", "1st resp min", 1 / 60, 1),
    Column("sl_offered", "SL off %", 100, 1),
    Column("sl_answered", "SL ans %", 100, 1),
    Column("abandon_rate", "abandon %", 100, 1),
    Column("fcr", "FCR %", 100, 1),
    Column("occupancy", "occup %", 100, 1),
    Column("mismatch_rate", "mismatch %", 100, 1),
    Column("lost", "lost"),
    Column("backlog_end", "backlog"),
)


def _cell(mean: float, half: float, col: Column) -> str:
    """Format ``mean ± half`` in the column's unit; ``-`` when there is no value."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{mean * col.scale:,.{col.decimals}f}"
    if half is not None and not math.isnan(half):
        text += f" ± {half * col.scale:,.{col.decimals}f}"
    return text


def kpi_table(
    summary: pd.DataFrame, group: str = "city", columns: Sequence[Column] = KEY_KPIS
) -> str:
    """One text row per ``group`` value, one column per KPI: ``mean ± half-width``.

    Parameters
    ----------
    summary
        Long frame with columns ``group``, ``kpi``, ``mean`` and ``half_width``
        (as from ``Replications.summary``). Extra rows (e.g. a national ``ALL``) are rows too.
    group
        The column naming the rows.
    columns
        The KPIs to show, in order; KPIs missing from ``summary`` show as ``-``.

    Examples
    --------
    >>> s = pd.DataFrame({"city": ["A", "A"], "kpi": ["offered", "fcr"],
    ...                   "mean": [120.0, 0.8], "half_width": [4.0, 0.05]})
    >>> print(kpi_table(s, columns=KEY_KPIS[:1] + KEY_KPIS[5:6]))
    city  offered       FCR %
    A     120 ± 4  80.0 ± 5.0
    """
    cells = {(r[group], r["kpi"]): (r["mean"], r["half_width"]) for _, r in summary.iterrows()}
    groups = list(dict.fromkeys(summary[group]))
    header = [group] + [c.header for c in columns]
    rows = [
        [str(g)] + [_cell(*cells.get((g, c.kpi), (math.nan, math.nan)), c) for c in columns]
        for g in groups
    ]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for r in [header] + rows:
        first = r[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join([first] + rest).rstrip())
    return "\n".join(lines)


def city_summary(reps: Replications, level: float = 0.95) -> pd.DataFrame:
    """Summary by city plus the national row (``city`` = ``ALL``) when it was computed."""
    parts = [reps.summary(("city",), level)]
    if () in reps.frames:
        national = reps.summary((), level).drop(columns="all")
        parts.append(national.assign(city=NATIONAL)[parts[0].columns])
    return pd.concat(parts, ignore_index=True)


def scenario_line(sc: Scenario) -> str:
    """One line describing a validated scenario: its size and run settings."""
    groups = [g for c in sc.cities.values() for g in c.agent_groups]
    groups += [g for p in sc.pools.values() for g in p.agent_groups]
    agents = sum(g.headcount for g in groups)
    d = sc.horizon_days
    days = f"{d * 24:.3g} h" if d < 1 else f"{d:g} day" + ("" if d == 1 else "s")
    parts = [
        f"{len(sc.cities)} cities",
        f"{len(groups)} agent groups ({agents} agents)",
        f"{len(sc.channels)} channels",
        f"{len(sc.ticket_types)} ticket types",
        f"{len(sc.tiers)} tiers",
        days,
        f"{sc.replications} replications",
        f"seed {sc.seed}",
    ]
    if sc.pools:
        parts.insert(1, f"{len(sc.pools)} pools")
    return f"{sc.name}, " + ", ".join(parts)


COMPARE_KPIS: tuple[Column, ...] = (
    Column("overall", "score", 1, 1),
    Column("response_speed", "speed", 1, 1),
    Column("resolution", "resol.", 1, 1),
    Column("attitude", "attit.", 1, 1),
    Column("follow_up", "follow", 1, 1),
    Column("first_response_mean_s", "1st resp h", 1 / 3600, 2),
    Column("sl_offered", "SL off %", 100, 1),
    Column("fcr", "FCR %", 100, 1),
    Column("mismatch_rate", "mismatch %", 100, 1),
    Column("lost", "lost", 1, 0),
)


def comparison_table(table: pd.DataFrame, base: Scenario, columns: Sequence[Column] = COMPARE_KPIS) -> str:
    """Per city: the what-if score, then each KPI's change ``±`` half-width, ``*`` if significant."""
    rows = []
    for city, g in table.groupby("city", sort=False):
        g = g.set_index("kpi")
        row = {"city": city, "score after": _cell(g.loc["overall", "whatif"], math.nan, columns[0])
               if "overall" in g.index else "-"}
        for c in columns:
            if c.kpi not in g.index:
                row[c.header] = "-"
                continue
            r = g.loc[c.kpi]
            cell = _cell(r["change"], r["half_width"], c)
            row[c.header] = ("+" if r["change"] > 0 else "") + cell + ("*" if r["significant"] else "")
        rows.append(row)
    order = list(base.cities) + [NATIONAL]
    frame = pd.DataFrame(rows).set_index("city")
    frame = frame.loc[[c for c in order if c in frame.index]]
    return frame.to_string()
