"""Reference M/M/n implementations that capplan's benchmark compares itself with.

Both model the same textbook queue - Poisson arrivals, exponential service,
``agents`` identical servers, FIFO, infinite patience - and return the same
:class:`BaselineResult`, so the benchmark can set capplan's speed and accuracy
beside them:

* :func:`plain_simpy_mmn` - an idiomatic hand-written SimPy model in the style
  of the SimPy documentation examples (``bank_renege``): a source process, a
  ``simpy.Resource`` and one process per customer. Random numbers are drawn up
  front in vectorised numpy, so the timing is essentially the cost of SimPy.
* :func:`ciw_mmn` - the same queue in Ciw 3.x, a dedicated queueing-network
  simulation library.

In both, the first 1 % of customers (in arrival order) are dropped from the
statistics as warm-up. ``seconds`` is the wall time of building and running the
simulation (``time.perf_counter``), excluding imports and the computation of
the summary statistics.

Run ``python benchmarks/baselines.py [n_tickets]`` for a small comparison table.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import ciw
import numpy as np
import simpy

WARMUP_FRACTION = 0.01
_ZERO_WAIT = 1e-9


@dataclass(frozen=True)
class BaselineResult:
    """Summary of one baseline run."""

    name: str
    tickets: int  # completed customers measured (after warm-up)
    seconds: float  # wall time of the simulation itself
    mean_wait_s: float
    p_wait: float  # share of customers with a wait > 1e-9 s
    service_level: float  # share of customers with a wait <= target_s

    @property
    def tickets_per_s(self) -> float:
        """Measured customers simulated per second of wall time."""
        return self.tickets / self.seconds if self.seconds > 0 else float("inf")


def _summarise(name: str, waits: np.ndarray, seconds: float, target_s: float) -> BaselineResult:
    """Build a :class:`BaselineResult` from post-warm-up waiting times."""
    return BaselineResult(
        name=name,
        tickets=int(waits.size),
        seconds=seconds,
        mean_wait_s=float(waits.mean()),
        p_wait=float(np.mean(waits > _ZERO_WAIT)),
        service_level=float(np.mean(waits <= target_s)),
    )


def _warmup(n_tickets: int) -> int:
    """Number of leading customers dropped as warm-up."""
    return int(n_tickets * WARMUP_FRACTION)


def plain_simpy_mmn(
    arrival_rate: float,
    aht_s: float,
    agents: int,
    n_tickets: int,
    seed: int,
    *,
    target_s: float = 20.0,
) -> BaselineResult:
    """Simulate ``n_tickets`` customers of an M/M/n queue in plain SimPy.

    ``arrival_rate`` is per second, ``aht_s`` the mean service time in seconds.
    The run ends when the last arrival has departed, so every customer is served.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    # Python floats: SimPy arithmetic on numpy scalars would be much slower.
    inter_arrivals = rng.exponential(1.0 / arrival_rate, n_tickets).tolist()
    services = rng.exponential(aht_s, n_tickets).tolist()
    waits = np.empty(n_tickets)

    env = simpy.Environment()
    counter = simpy.Resource(env, capacity=agents)

    def customer(i: int):
        arrive = env.now
        with counter.request() as req:
            yield req
            waits[i] = env.now - arrive
            yield env.timeout(services[i])

    def source():
        for i in range(n_tickets):
            yield env.timeout(inter_arrivals[i])
            env.process(customer(i))

    env.process(source())
    env.run()
    seconds = time.perf_counter() - start
    return _summarise("plain SimPy", waits[_warmup(n_tickets):], seconds, target_s)


def ciw_mmn(
    arrival_rate: float,
    aht_s: float,
    agents: int,
    n_tickets: int,
    seed: int,
    *,
    target_s: float = 20.0,
) -> BaselineResult:
    """Simulate an M/M/n queue in Ciw until ``n_tickets`` customers have arrived.

    Uses ``simulate_until_max_customers(method="Arrive")``; the few customers
    still in the system at that moment have no record and are not measured.
    """
    start = time.perf_counter()
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(arrival_rate)],
        service_distributions=[ciw.dists.Exponential(1.0 / aht_s)],
        number_of_servers=[agents],
    )
    ciw.seed(seed)
    sim = ciw.Simulation(network)
    sim.simulate_until_max_customers(n_tickets, method="Arrive")
    seconds = time.perf_counter() - start

    records = sim.get_all_records(only=["service"])
    warmup = _warmup(n_tickets)
    waits = np.fromiter(
        (r.waiting_time for r in records if r.id_number > warmup), dtype=float
    )
    return _summarise("Ciw", waits, seconds, target_s)


def _main(argv: list[str]) -> None:
    """Run both baselines at 50 agents, utilisation 0.9, AHT 300 s; print a table."""
    n_tickets = int(argv[1]) if len(argv) > 1 else 200_000
    agents, aht_s, rho = 50, 300.0, 0.9
    arrival_rate = rho * agents / aht_s
    print(f"M/M/{agents}, rho={rho}, AHT={aht_s:.0f} s, {n_tickets} tickets")
    print(f"{'baseline':<12}{'tickets':>9}{'seconds':>9}{'tickets/s':>11}"
          f"{'mean wait':>11}{'P(wait)':>9}{'SL(20s)':>9}")
    for run in (plain_simpy_mmn, ciw_mmn):
        r = run(arrival_rate, aht_s, agents, n_tickets, seed=1)
        print(f"{r.name:<12}{r.tickets:>9}{r.seconds:>9.2f}{r.tickets_per_s:>11.0f}"
              f"{r.mean_wait_s:>11.2f}{r.p_wait:>9.4f}{r.service_level:>9.4f}")


if __name__ == "__main__":
    _main(sys.argv)
