"""capplan's simulator: scenario file -> validated model -> simulation -> KPIs -> satisfaction."""

from simulator.engine import RunResult, simulate
from simulator.scenario import Scenario, single_queue

__all__ = ["RunResult", "Scenario", "simulate", "single_queue"]
