"""The optimizer end to end: ``capplan plan``'s work timed by stage, solvers side by side, scaling.

Three parts (each can be skipped):

* **plan**: ``optimize`` on a scenario (default ``scenarios/march_2025.yaml``) with the
  verification on fresh streams, as ``capplan plan`` runs it (the report's paired
  before/after simulations excluded): wall time, time in the solver, in the simulator
  (loop and verification), the iterations and the plan's status and cost. Target: under
  3 minutes on the 2-core development machine.
* **solvers**: every city's least-cost programme at the baseline (no simulation, no
  coupling), solved by HiGHS (highspy) and by PuLP's bundled CBC: time and objective per
  solver, as ratios.
* **scale**: synthetic national scenarios (``synthetic.py``) of 32, 64 and 128 cities, one
  loop iteration without verification and service targets only (the synthetic scenarios
  carry no calibrated satisfaction model): how solver and simulator time grow with cities.

    python benchmarks/bench_plan.py                        # all three
    python benchmarks/bench_plan.py --skip solvers scale   # the 32-city plan only
    python benchmarks/bench_plan.py --skip plan --scale 32 64 128
    python benchmarks/bench_plan.py --skip solvers scale --seeds 3   # the plan on seeds s, s+1, s+2

``--seeds``: the loop's path, and with it the plan's cost, moves with small perturbations (on
March 2025 the same code gave 7,841,000 and 7,999,884 yuan a month on two seeds), so a change to
the loop is judged on several seeds: the summary gives each seed's time, solver time and cost.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import national_scenario
from optimizer.anchor import CityState
from optimizer.coordinate import solve_city
from optimizer.inputs import city_inputs
from optimizer.loop import optimize
from optimizer.solve import Infeasible
from simulator.loader import load_scenario
from simulator.scenario import Scenario, Targets

SERVICE_ONLY = Targets(city_score_min=None, national_score_min=None, dialect_coverage_min=None)


def _log(t0: float):
    return lambda s: print(f"  [{time.perf_counter() - t0:6.1f} s] {s}", flush=True)


def bench_plan(sc: Scenario, workers: int) -> dict[str, float]:
    print(f"\n== plan: {sc.name}, {len(sc.cities)} cities, {sc.horizon_days:g} days, "
          f"{sc.replications} verification replications, {workers} workers")
    t0 = time.perf_counter()
    try:
        res = optimize(sc, workers=workers, log=_log(t0))
    except Infeasible as exc:
        print(f"  infeasible: {exc}")
        res = exc.best
    wall = time.perf_counter() - t0
    t = res.timings
    print(res.iterations_frame().drop(columns=["failing_targets"]).to_string(index=False))
    print(f"  status {res.status}, cost {res.cost:,.0f} yuan/month, {len(res.iterations)} iterations")
    rest = wall - t.get("solve_s", 0.0) - t.get("simulate_s", 0.0) - t.get("verify_s", 0.0)
    print(f"  wall {wall:.1f} s = solver {t.get('solve_s', 0):.1f} s + loop simulation {t.get('simulate_s', 0):.1f} s"
          f" + verification {t.get('verify_s', 0):.1f} s + other {rest:.1f} s (inputs {t.get('inputs_s', 0):.1f} s)"
          f"; target 180 s: {'met' if wall <= 180 else 'MISSED'}")
    return {"seed": sc.seed, "wall_s": wall, "solve_s": t.get("solve_s", 0.0), "cost": res.cost,
            "iterations": len(res.iterations), "verified": res.status == "verified"}


def seeds_summary(rows: list[dict[str, float]]) -> None:
    """Each seed's plan side by side, and the spread of the cost (the loop's path noise)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    print("\n== the plan on each seed")
    print(frame.to_string(index=False, float_format=lambda x: f"{x:,.1f}"))
    cost = frame["cost"]
    print(f"  cost: mean {cost.mean():,.0f}, range {cost.min():,.0f} to {cost.max():,.0f} "
          f"({(cost.max() - cost.min()) / cost.mean():.1%} of the mean); wall: mean {frame['wall_s'].mean():.1f} s")


def bench_solvers(sc: Scenario, cities: int) -> None:
    names = list(sc.cities)[:cities]
    print(f"\n== solvers: least-cost programme of {len(names)} cities at the baseline (no coupling)")
    inputs = {c: city_inputs(sc, c) for c in names}
    out = {}
    for solver in ("highs", "cbc"):
        t0 = time.perf_counter()
        objs = {}
        for c in names:
            try:
                sp, _ = solve_city(inputs[c], CityState(), sc.planning, solver=solver, time_limit_s=60.0,
                                   gap_rel=1e-4, accept_incumbent=True)
                objs[c] = float(sp.cities[c].cost.value() or 0.0)
            except Infeasible:
                objs[c] = float("nan")
        out[solver] = (time.perf_counter() - t0, objs)
        print(f"  {solver:5s} {out[solver][0]:7.1f} s, total cost {sum(objs.values()):,.0f} yuan/month")
    (th, oh), (tc, oc) = out["highs"], out["cbc"]
    worst = max(abs(oh[c] - oc[c]) / max(1.0, abs(oh[c])) for c in names)
    print(f"  CBC / HiGHS time {tc / th:.2f}x; largest relative difference in a city's cost {worst:.2e}")


def bench_scale(sizes: list[int], workers: int) -> None:
    print("\n== scale: synthetic cities, one loop iteration, service targets, no verification")
    print(f"  {'cities':>6} {'wall_s':>8} {'solve_s':>8} {'simulate_s':>10} {'inputs_s':>8} {'s/city':>7}")
    for n in sizes:
        sc = national_scenario(n_cities=n, tickets_total_per_month=1_500_000 * n / 32)
        sc = sc.model_copy(update={"planning": sc.planning.model_copy(update={"targets": SERVICE_ONLY})})
        t0 = time.perf_counter()
        try:
            res = optimize(sc, workers=workers, max_iterations=1, verify=False, polish_sims=0, repair=False)
        except Infeasible as exc:
            res = exc.best
        wall = time.perf_counter() - t0
        t = res.timings
        print(f"  {n:6d} {wall:8.1f} {t.get('solve_s', 0):8.1f} {t.get('simulate_s', 0):10.1f} "
              f"{t.get('inputs_s', 0):8.1f} {wall / n:7.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="scenarios/march_2025.yaml")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--solver-cities", type=int, default=32, help="cities in the solver comparison")
    p.add_argument("--scale", type=int, nargs="*", default=[32, 64, 128])
    p.add_argument("--skip", nargs="*", default=[], choices=["plan", "solvers", "scale"])
    p.add_argument("--seeds", type=int, default=1, help="plan on this many root seeds: the scenario's, +1, ...")
    a = p.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    sc = load_scenario(a.scenario)
    if "plan" not in a.skip:
        rows = [bench_plan(sc.model_copy(update={"seed": sc.seed + k}), a.workers) for k in range(max(1, a.seeds))]
        if len(rows) > 1:
            seeds_summary(rows)
    if "solvers" not in a.skip:
        bench_solvers(sc, a.solver_cities)
    if "scale" not in a.skip:
        bench_scale(a.scale, a.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
