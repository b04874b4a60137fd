"""capplan's optimizer: a PuLP programme for staffing, shifts, training, chatbot and triage, checked by simulation.

Pipeline: ``inputs`` (scenario -> per-city data) -> ``tables`` (Erlang curves) ->
``formulation`` (the programme) -> ``solve`` (CBC or HiGHS, status checked) ->
``coordinate``/``decompose`` (cities coupled by national rows) -> ``loop`` (simulation
cutting planes until the targets hold) -> ``verify`` (fresh streams). ``greedy`` is the
marginal-analysis yardstick.
"""

from optimizer.coordinate import solve_plan
from optimizer.formulation import StaffingProblem, build_problem
from optimizer.greedy import greedy
from optimizer.inputs import CityInputs, city_inputs
from optimizer.loop import Iteration, PlanResult, optimize
from optimizer.plan import CityPlan, Plan, apply_plan
from optimizer.solve import Infeasible, SolverError, solve
from optimizer.verify import Verification, verify_plan

__all__ = [
    "CityInputs", "CityPlan", "Infeasible", "Iteration", "Plan", "PlanResult", "SolverError",
    "StaffingProblem", "Verification", "apply_plan", "build_problem", "city_inputs", "greedy",
    "optimize", "solve", "solve_plan", "verify_plan",
]
