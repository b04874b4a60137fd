"""capplan's simulator: scenario file -> validated model -> simulation -> KPIs -> satisfaction."""

from simulator.engine import RunResult, simulate
from simulator.loader import ScenarioError, load_scenario
from simulator.scenario import Scenario, single_queue

__all__ = ["RunResult", "Scenario", "ScenarioError", "load_scenario", "simulate", "single_queue"]
