"""Stage 7 of 7 (comparison): the department's own plan checked against the same targets as ours.

The department's plan is a what-if file (``scenarios/three_step_plan.yaml``). It is simulated
on the verification's streams (common random numbers with the plan's verification), every
planning target is checked the same way, and the two are set side by side target by target:
which targets each meets, and by how much each overshoots the ones it meets.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from optimizer.verify import Verification, verify_scenario
from simulator.satisfaction import SatisfactionModel
from simulator.scenario import Scenario

__all__ = ["DepartmentComparison", "against_department"]


@dataclass(frozen=True)
class DepartmentComparison:
    """Target by target: the plan and the department's plan on the same streams, and their costs."""

    table: pd.DataFrame  # city, target, sense, required, plan_mean, plan_ok, department_mean, department_ok
    plan_cost: float
    department_cost: float

    @property
    def department_misses(self) -> pd.DataFrame:
        """Targets the department's plan misses and the plan meets."""
        return self.table[~self.table["department_ok"] & self.table["plan_ok"]]

    @property
    def plan_misses(self) -> pd.DataFrame:
        return self.table[~self.table["plan_ok"]]

    def summary(self) -> str:
        t = self.table
        cheaper = self.plan_cost < self.department_cost
        text = (f"The plan costs {self.plan_cost:,.0f} yuan a month, the department's plan "
                f"{self.department_cost:,.0f} ({'more' if cheaper else 'less'}). Of {len(t)} target checks the plan "
                f"meets {int(t['plan_ok'].sum())}, the department's plan {int(t['department_ok'].sum())}.")
        over = t[t["plan_ok"] & t["department_ok"]]
        if len(over):
            margin = (over["department_mean"] - over["plan_mean"]) * over["sense"].map({">=": 1.0, "<=": -1.0})
            text += (f" Where both meet a target, the department's plan beats it by more than the plan in "
                     f"{int((margin > 0).sum())} of {len(over)} checks (it buys margin the targets do not ask for).")
        return text


def against_department(scenario: Scenario, plan_cost: float, plan_verification: Verification,
                       department: Scenario, department_cost: float, *, model: SatisfactionModel,
                       workers: int = 1) -> DepartmentComparison:
    """Simulate ``department`` on the verification's streams and compare it target by target."""
    dep = verify_scenario(department, scenario, plan_verification.n, plan_verification.seed, model=model,
                          workers=workers)
    keys = ["city", "target", "sense", "required"]
    ours = plan_verification.table[keys + ["mean", "ok"]].rename(columns={"mean": "plan_mean", "ok": "plan_ok"})
    theirs = dep.table[["city", "target", "mean", "ok"]].rename(
        columns={"mean": "department_mean", "ok": "department_ok"})
    table = ours.merge(theirs, on=["city", "target"], how="outer")
    table[["plan_ok", "department_ok"]] = table[["plan_ok", "department_ok"]].fillna(False).astype(bool)
    return DepartmentComparison(table, float(plan_cost), float(department_cost))
