"""Stage 6 of 7 (optimizer): run a solver on a ``StaffingProblem`` and check what came back.

The only module that speaks PuLP's camelCase (``timeLimit``, ``gapRel``, ``msg``). Two
solvers: ``"cbc"`` (the CBC binary bundled with PuLP, run by ``COIN_CMD`` as a subprocess fed
an MPS file) and ``"highs"`` (HiGHS in-process through highspy, the model handed over in bulk
by ``_HiGHS``, a subclass of PuLP's interface that builds the same model with less Python).

A MIP may stop early in two ways: ``node_limit`` (HiGHS: interrupted by a callback at the first
incumbent after that many branch-and-bound nodes; CBC: its ``maxNodes``), a limit of work, so a
run's path does not depend on the machine's speed or load; and ``time_limit_s`` (wall clock, a
guard). Every solve is checked: PuLP's ``LpStatus`` must be ``Optimal`` and its solution status
``LpSolutionOptimal`` (a MIP stopped early with an incumbent reads ``Optimal`` with
``LpSolutionIntegerFeasible``; that is accepted only with ``accept_incumbent=True`` and flagged
``proven=False``). An infeasible problem raises ``Infeasible``; anything else raises
``SolverError``; both write the model as an ``.lp`` file (path in the exception) for inspection.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import highspy
import numpy as np
import pulp
import scipy.sparse as sps

from optimizer.formulation import StaffingProblem

__all__ = ["SOLVERS", "Infeasible", "NoBetter", "Solved", "SolverError", "max_violation", "solve"]

SOLVERS = ("highs", "cbc")
# HiGHS MIP options: a city programme's time went to sub-MIP heuristics (RINS, RENS: 2.0 of
# Chengdu's 3.6 s) and a restart after its root; feasibility jump seldom found its incumbent.
# Off, March 2025's first solve took 44 s instead of 70 s and cost 0.04 % more (32 cities).
# Strong branching took 40 % of a city's LP iterations (Chengdu: 5,430 of 12,235), spent on
# pseudo-costs that a search of 200 nodes hardly uses: without it (``mip_pscost_minreliable``
# 0) twelve March cities solved in 17 % less time at prices zero and 27 % less priced, at
# +0.02 % and +0.04 % on their objectives.
HIGHS_MIP = {"mip_allow_restart": False, "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
             "mip_heuristic_run_feasibility_jump": False, "mip_pscost_minreliable": 0}
# HiGHS runs on one thread unless asked otherwise: the loop runs cities' programmes in parallel
# processes (with HiGHS's default, two threads, 8 March cities took 28.1 s of CPU, on one thread
# 24.0 s), a process's HiGHS thread count is fixed at its first solve, and a MIP's path depends
# on its thread count: one thread everywhere gives the same plans on any machine and any workers.
HIGHS_THREADS = 1


class SolverError(RuntimeError):
    """The solver failed or returned something other than a proven (or accepted) optimum."""

    def __init__(self, message: str, status: str = "", lp_path: str | None = None) -> None:
        self.status, self.lp_path = status, lp_path
        super().__init__(message + (f" (model written to {lp_path})" if lp_path else ""))


class Infeasible(Exception):
    """No plan meets the targets.

    Attributes
    ----------
    binding : list of dict
        One row per target that cannot be met: ``city``, ``target``, ``required``, ``best``
        (the best value reachable, from the soft programme) and ``limited_by`` (caps at
        their bound in the best plan).
    best : object
        The best plan reachable with priced shortfalls (a ``PlanResult`` from ``optimize``),
        or ``None`` when raised by ``solve`` itself.
    lp_path : str or None
        The infeasible model written as an ``.lp`` file.
    """

    def __init__(self, message: str, binding: list[dict] | None = None, best: object = None,
                 lp_path: str | None = None) -> None:
        self.binding, self.best, self.lp_path = list(binding or []), best, lp_path
        super().__init__(message)

    def __str__(self) -> str:
        lines = [self.args[0]]
        for b in self.binding:
            lines.append(
                f"  {b['city']}: {b['target']} needs {b['required']:.4g}, best reachable "
                f"{b['best']:.4g}" + (f" (limited by {', '.join(b['limited_by'])})" if b.get("limited_by") else "")
            )
        return "\n".join(lines)


class NoBetter(Infeasible):
    """A solve with a ``cutoff`` found no solution better than it (or none at all, or none
    within its node limit)."""


@dataclass(frozen=True)
class Solved:
    """What one solve returned (values are read from the problem's variables)."""

    solver: str
    status: str
    proven: bool
    objective: float
    wall_s: float
    rows: int
    columns: int
    integers: int


def _stop_after(nodes: int, cutoff: bool) -> Callable[..., None]:
    """HiGHS MIP interrupt callback: stop once ``nodes`` nodes are explored and an incumbent
    exists (with a ``cutoff``, even without one: a search below it may be empty)."""

    def callback(kind: object, message: str, out: object, into: object, user_data: object) -> None:
        if out.mip_node_count >= nodes and (cutoff or out.mip_primal_bound < highspy.kHighsInf):  # type: ignore[attr-defined]
            into.user_interrupt = True  # type: ignore[attr-defined]

    return callback


class _HiGHS(pulp.HiGHS):
    """PuLP's HiGHS interface, with the model passed to HiGHS in bulk.

    The same model as ``pulp.HiGHS`` builds (columns in ``LpProblem.variables()`` order, rows
    in the problem's order, the same bounds and coefficients), so the same solve. PuLP's own
    build scans every row for the variables three times a solve and hands HiGHS one column and
    one row per call: a third of a March city programme's time was PuLP's, not HiGHS's. The
    arrays (``_Arrays``, which ``max_violation`` uses too) also check the solution.
    """

    def actualSolve(self, lp: pulp.LpProblem) -> int:
        self.createAndConfigureSolver(lp)
        self.buildSolverModel(lp)
        self.callSolver(lp)
        status, sol_status = self.findSolutionValues(lp)
        lp.assignStatus(status, sol_status)
        return status

    def buildSolverModel(self, lp: pulp.LpProblem) -> None:
        self.columns = cols = lp.variables()
        self.rows = list(lp._constraints.values())
        self.arrays = arr = _Arrays.of(cols, self.rows)
        sign = -1.0 if lp.sense == pulp.LpMaximize else 1.0
        cost = np.array([sign * lp.objective.get(v, 0.0) for v in cols], dtype=float)
        inf = highspy.kHighsInf
        h, m = lp.solverModel, arr.matrix
        h.addCols(len(cols), cost, arr.lower, arr.upper, 0, np.zeros(len(cols), dtype=np.int32),
                  np.zeros(0, dtype=np.int32), np.zeros(0))
        h.addRows(m.shape[0], np.where(arr.sense == pulp.LpConstraintLE, -inf, -arr.constant),
                  np.where(arr.sense == pulp.LpConstraintGE, inf, -arr.constant), m.nnz, m.indptr[:-1],
                  m.indices, m.data)
        ints = np.array([i for i, v in enumerate(cols) if v.cat == pulp.LpInteger], dtype=np.int32)
        self.integers = len(ints)
        if self.mip and len(ints):
            h.changeColsIntegrality(len(ints), ints, np.full(len(ints), 1, dtype=np.uint8))

    def findSolutionValues(self, lp: pulp.LpProblem) -> tuple[int, int]:
        h = lp.solverModel
        sol = h.getSolution()
        self.x = np.array(sol.col_value, dtype=float)
        for v, x, d in zip(self.columns, sol.col_value, sol.col_dual):
            v.varValue, v.dj = x, d
        for c, r, pi in zip(self.rows, sol.row_value, sol.row_dual):
            c.slack = -(c.constant + r) if c.sense == pulp.LpConstraintLE else c.constant + r
            c.pi = pi
        return _status(h.getModelStatus(), h.getObjectiveValue())

    def violation(self) -> float:
        """``max_violation`` of the solution, on the arrays handed to HiGHS."""
        return self.arrays.worst(self.x)


@dataclass(frozen=True)
class _Arrays:
    """A problem's rows and bounds as arrays (rows in the problem's order, columns in the
    given order, zero coefficients dropped, as HiGHS is handed them)."""

    matrix: sps.csr_matrix
    constant: np.ndarray  # each row's lhs constant: lhs - rhs = matrix @ x + constant
    sense: np.ndarray
    lower: np.ndarray  # column bounds, infinite where PuLP has none
    upper: np.ndarray

    @classmethod
    def of(cls, cols: list[pulp.LpVariable], rows: list[pulp.LpConstraint]) -> _Arrays:
        pos = {v.name: i for i, v in enumerate(cols)}
        start, index, value, constant, sense = [], [], [], [], []
        for c in rows:
            start.append(len(index))
            constant.append(c.constant)
            sense.append(c.sense)
            for v, a in c.items():
                if a != 0:
                    index.append(pos[v.name])
                    value.append(a)
        start.append(len(index))
        inf = highspy.kHighsInf
        matrix = sps.csr_matrix((np.array(value, dtype=float), np.array(index, dtype=np.int32),
                                 np.array(start, dtype=np.int32)), shape=(len(rows), len(cols)))
        return cls(matrix, np.array(constant, dtype=float), np.array(sense, dtype=int),
                   np.array([-inf if v.lowBound is None else v.lowBound for v in cols], dtype=float),
                   np.array([inf if v.upBound is None else v.upBound for v in cols], dtype=float))

    def worst(self, x: np.ndarray) -> float:
        """Largest violation of a row or bound at ``x``, relative to the row's size
        (``1 + sum |a_j x_j| + |b|``) or the value's (``1 + |x|``)."""
        worst = 0.0
        if self.matrix.shape[0]:
            val = self.matrix @ x + self.constant  # lhs - rhs
            act = abs(self.matrix) @ np.abs(x)
            viol = np.where(self.sense == pulp.LpConstraintGE, -val,
                            np.where(self.sense == pulp.LpConstraintLE, val, np.abs(val)))
            worst = max(worst, float(np.max(viol / (1.0 + act + np.abs(self.constant)))))
        if len(x):
            with np.errstate(invalid="ignore"):
                below = np.where(np.isfinite(self.lower), self.lower - x, 0.0)
                above = np.where(np.isfinite(self.upper), x - self.upper, 0.0)
            worst = max(worst, float(np.max(np.maximum(below, above) / (1.0 + np.abs(x)))))
        return worst


_FEASIBLE = {highspy.HighsModelStatus.kObjectiveBound, highspy.HighsModelStatus.kObjectiveTarget,
             highspy.HighsModelStatus.kInterrupt, highspy.HighsModelStatus.kTimeLimit,
             highspy.HighsModelStatus.kIterationLimit}


def _status(status: highspy.HighsModelStatus, objective: float) -> tuple[int, int]:
    """PuLP's reading of a HiGHS model status (as ``pulp.HiGHS.findSolutionValues`` reads it)."""
    m = highspy.HighsModelStatus
    if status == m.kOptimal:
        return pulp.LpStatusOptimal, pulp.LpSolutionOptimal
    if status in (m.kInfeasible, m.kUnboundedOrInfeasible):
        return pulp.LpStatusInfeasible, pulp.LpSolutionInfeasible
    if status == m.kUnbounded:
        return pulp.LpStatusUnbounded, pulp.LpSolutionUnbounded
    if status in _FEASIBLE and not (objective == float(highspy.kHighsInf)
                                    and status in (m.kTimeLimit, m.kIterationLimit)):
        return pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible
    return pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound


def _solver(name: str, time_limit_s: float | None, gap_rel: float | None, msg: bool,
            threads: int | None, mip: bool = True, node_limit: int | None = None,
            cutoff: float | None = None) -> pulp.LpSolver:
    if name == "highs":
        # PuLP maps HiGHS's kInterrupt to a feasible, unproven solution (its kSolutionLimit, which
        # the node options mip_max_nodes / mip_max_leaves end with, it does not map at all)
        stop = {"callbackTuple": (_stop_after(node_limit, cutoff is not None), None),
                "callbacksToActivate": [highspy.cb.HighsCallbackType.kCallbackMipInterrupt]} \
            if mip and node_limit is not None else {}
        if cutoff is not None:  # HiGHS prunes every node whose bound is above it
            stop["objective_bound"] = float(cutoff)
        if mip:
            stop.update(HIGHS_MIP)
        return _HiGHS(mip=mip, msg=msg, timeLimit=time_limit_s, gapRel=gap_rel,
                      threads=HIGHS_THREADS if threads is None else threads, **stop)
    if name == "cbc":  # the CBC binary bundled with PuLP, through COIN_CMD (PULP_CBC_CMD is deprecated);
        # "Stopped on nodes - objective value" reads as a feasible, unproven solution
        return pulp.COIN_CMD(path=pulp.PULP_CBC_CMD.pulp_cbc_path, mip=mip, msg=msg, timeLimit=time_limit_s,
                             gapRel=gap_rel, threads=threads, maxNodes=node_limit if mip else None)
    raise ValueError(f"solver must be one of {SOLVERS}, got {name!r}")


def _write_lp(prob: pulp.LpProblem, lp_dir: str | os.PathLike[str] | None) -> str:
    d = Path(lp_dir) if lp_dir is not None else Path(tempfile.gettempdir()) / "capplan-lp"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{prob.name}-{os.getpid()}-{time.time_ns()}.lp"
    prob.writeLP(str(path))
    return str(path)


def max_violation(prob: pulp.LpProblem, variables: list | None = None) -> float:
    """Largest violation of a row or bound, relative to the row's size (``1 + sum |a_j x_j| + |b|``)."""
    cols = variables if variables is not None else prob.variables()
    x = np.array([v.varValue or 0.0 for v in cols], dtype=float)
    return _Arrays.of(cols, prob.constraints()).worst(x)


def solve(
    problem: StaffingProblem,
    *,
    solver: str = "highs",
    time_limit_s: float | None = 120.0,
    gap_rel: float | None = 1e-6,
    node_limit: int | None = None,
    msg: bool = False,
    threads: int | None = None,
    accept_incumbent: bool = False,
    relax: bool = False,
    cutoff: float | None = None,
    lp_dir: str | os.PathLike[str] | None = None,
) -> Solved:
    """Solve in place and check the status; raise ``Infeasible`` or ``SolverError`` otherwise.

    Parameters
    ----------
    solver : {"highs", "cbc"}
    time_limit_s : float or None
        Wall-clock limit handed to the solver.
    node_limit : int or None
        Stop at the first incumbent once this many branch-and-bound nodes are explored (HiGHS;
        CBC stops at the limit, with its incumbent), only with ``accept_incumbent``. Unlike the time limit it gives the same plan on any machine.
    gap_rel : float or None
        Relative MIP gap at which the solver may stop (``1e-6``: optimal in practice).
    accept_incumbent : bool
        Accept a feasible, not proven optimal, solution when the time limit stops the search.
    relax : bool
        Solve the LP relaxation (integrality dropped): a lower bound.
    cutoff : float or None
        A minimisation known to be worth finishing only below this objective (HiGHS MIP: its
        ``objective_bound``, which prunes the nodes whose bound is above it; ignored by CBC):
        raises ``NoBetter`` when nothing is found (with ``node_limit``: within that many nodes).
        It is no strict cutoff: HiGHS may still return a solution above it, which the caller
        compares as usual. It is the objective's value, constant included (HiGHS is handed
        the objective without its constant, so its bound is moved by it).
    """
    prob = problem.prob
    t0 = time.perf_counter()
    nodes = node_limit if accept_incumbent else None  # a stop short of a proof is only for who accepts it
    # only HiGHS's MIP search takes a cutoff, and only a minimisation's reads the same way
    cutoff = cutoff if prob.sense == pulp.LpMinimize and solver == "highs" and not relax else None
    # HiGHS is handed the objective without its constant: so is its bound
    bound = None if cutoff is None else cutoff - float(prob.objective.constant)
    slv = _solver(solver, time_limit_s, gap_rel, msg, threads, not relax, nodes, bound)
    status = prob.solve(slv)
    wall = time.perf_counter() - t0
    name = pulp.LpStatus[status]
    sol = prob.sol_status
    if name == "Infeasible" and cutoff is not None:
        raise NoBetter(f"nothing below the cutoff {cutoff:.6g} ({solver})")
    if cutoff is not None and prob.solverModel.getInfo().primal_solution_status == highspy.kSolutionStatusNone:
        raise NoBetter(f"nothing below the cutoff {cutoff:.6g} within {nodes} nodes ({solver})")
    if name == "Infeasible":
        raise Infeasible(f"the programme is infeasible ({solver})", lp_path=_write_lp(prob, lp_dir))
    proven = name == "Optimal" and sol == pulp.LpSolutionOptimal
    feasible = name == "Optimal" and sol in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if not proven and not (accept_incumbent and feasible):
        detail = pulp.LpSolution.get(sol, str(sol))
        raise SolverError(f"{solver} returned status {name} / {detail}", name, _write_lp(prob, lp_dir))
    fast = isinstance(slv, _HiGHS)
    variables = slv.columns if fast else prob.variables()
    worst = slv.violation() if fast else max_violation(prob, variables)
    if worst > 1e-6:
        raise SolverError(f"{solver}: the returned solution violates a constraint by {worst:.2e} "
                          "(relative)", name, _write_lp(prob, lp_dir))
    n_int = slv.integers if fast else sum(1 for v in variables if v.cat == pulp.LpInteger)
    return Solved(solver, name, proven, float(pulp.value(prob.objective) or 0.0), wall,
                  len(prob.constraints()), len(variables), n_int)
