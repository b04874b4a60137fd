"""``capplan plan``: optimise, verify, compare with the department's plan, write the report.

Registered on the simulator's ``capplan`` app through the ``capplan.commands`` entry point,
so the simulator never imports the optimizer. Exit codes: 0 a verified plan; 3 targets no
plan can reach (the binding targets and the best reachable plan are written) or a plan the
simulator could not verify; 2 an invalid scenario.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from optimizer.department import against_department
from optimizer.loop import PlanResult, optimize
from optimizer.parallel import pmap
from optimizer.plan import apply_plan
from optimizer.report import PlanReport, scenario_cost, write_report
from optimizer.solve import Infeasible
from optimizer.verify import verify_plan
from simulator.calibration import model_for
from simulator.compare import compare
from simulator.loader import load_scenario
from simulator.rundir import atomic_write
from simulator.scenario import Scenario

EXIT_OK, EXIT_PLAN = 0, 3


_T0 = time.perf_counter()


def _log(text: str) -> None:
    print(f"[plan {time.perf_counter() - _T0:6.0f} s] {text}", file=sys.stderr, flush=True)


def build_report(scenario: Scenario, result: PlanResult, replications: int, seed: int,
                 department: Scenario | None, binding: list[dict] | None = None) -> PlanReport:
    """Simulate before/after under CRN, check the department's plan, and assemble the report."""
    after = apply_plan(scenario, result.plan)
    _log(f"before/after: {replications} paired replications")
    before_after = compare(scenario, after, replications, seed, map_fn=partial(pmap, workers=2))
    versus = None
    if department is not None:
        _log(f"department's plan '{department.name}': {replications} replications on the verification's streams")
        model = model_for(scenario)
        ver = result.verification or verify_plan(result.plan, scenario, replications, seed, model=model, workers=2)
        dep_cost = float(scenario_cost(scenario, department)["total"].sum())
        versus = against_department(scenario, result.cost, ver, department, dep_cost, model=model, workers=2)
    return PlanReport(
        name=scenario.name,
        status=result.status,
        cost_per_month=result.cost,
        actions=result.plan.to_frame(),
        before_after=before_after,
        verification=None if result.verification is None else result.verification.table,
        iterations=result.iterations_frame(),
        timings=result.timings,
        department=versus,
        binding=pd.DataFrame(binding) if binding else None,
    )


def register(app: typer.Typer) -> None:
    """Add ``plan`` to the ``capplan`` app."""

    @app.command("plan")
    def plan_command(
        scenario: Annotated[Path, typer.Argument(help="Scenario with a planning block.")],
        out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, help="Report directory.")] = Path(
            "plans/latest"),
        department: Annotated[
            Path | None,
            typer.Option(help="The department's own plan (a what-if file) to compare with."),
        ] = None,
        solver: Annotated[str, typer.Option(help="highs or cbc.")] = "highs",
        replications: Annotated[
            int | None, typer.Option("--replications", "-n", min=2,
                                     help="Replications for verification and the report.")] = None,
        seed: Annotated[int | None, typer.Option(min=0, help="Root seed.")] = None,
        overrides: Annotated[list[str] | None, typer.Option("--set", "-s", metavar="KEY=VALUE")] = None,
    ) -> int:
        """Least-cost plan meeting the planning targets, verified in the simulator; report to OUT."""
        sc = load_scenario(scenario, overrides or ())
        dep = load_scenario(department) if department is not None else _default_department(scenario, sc)
        n = replications or sc.replications
        root = sc.seed if seed is None else seed
        code, binding = EXIT_OK, None
        try:
            result = optimize(sc, solver=solver, verify_replications=n, seed=root, log=_log)
        except Infeasible as e:
            _log(str(e))
            if e.best is None:
                typer.echo(f"infeasible: {e}", err=True)
                return EXIT_PLAN
            result, binding, code = e.best, e.binding, EXIT_PLAN
        if result.status != "verified" and code == EXIT_OK:
            code = EXIT_PLAN
        rep = build_report(sc, result, n, root, dep, binding)
        paths = write_report(rep, sc, out)
        atomic_write(out / "plan_summary.txt", lambda p: p.write_text(
            f"status {result.status}\ncost_per_month {result.cost:.0f}\nexit {code}\n"))
        typer.echo(f"{result.status} plan: {result.cost:,.0f} yuan a month; "
                   f"{len(result.iterations)} iterations; report in {out}/ ({len(paths) + 1} files)")
        if binding:
            typer.echo("targets no plan can reach:")
            typer.echo(pd.DataFrame(binding).to_string(index=False))
        return code


def _default_department(path: Path, scenario: Scenario) -> Scenario | None:
    """The department's three-step plan beside the scenario, if it plans the same cities."""
    candidate = Path(path).parent / "three_step_plan.yaml"
    if not candidate.exists() or candidate.resolve() == Path(path).resolve():
        return None
    dep = load_scenario(candidate)
    return dep if set(dep.cities) == set(scenario.cities) else None
