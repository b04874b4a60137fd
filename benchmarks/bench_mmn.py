"""M/M/n speed and accuracy: capplan vs plain SimPy vs Ciw vs Erlang C, in one run.

The same queue - Poisson arrivals, exponential handle times, ``--agents`` identical
agents, FIFO, infinite patience - is simulated three ways:

* **capplan**: ``single_queue(...)`` + ``simulate(...)``, horizon = tickets / arrival rate,
  warm-up = 1 % of the horizon. Its time covers building the scenario, sampling and the
  run. Building the records DataFrame (done inside ``simulate``) is timed separately and
  shown in a second row (``capplan + frame``), which is the end-to-end cost of a call.
  A third row (``capplan, events``) runs the same model on a plain ``simpy.Environment``,
  every timer a SimPy Timeout: what ``simulator.clock.Clock``'s bare calls save (the records
  are identical).
* **plain SimPy** and **Ciw**: ``benchmarks/baselines.py`` (first 1 % of customers dropped).

Each is compared with the analytic Erlang C values (P(wait), mean wait, SL at the target).
Tickets counted are the measured (post-warm-up, answered) ones; tickets/s = tickets / seconds.

    python benchmarks/bench_mmn.py                 # 1,000,000 tickets, rho 0.9, 50 agents
    python benchmarks/bench_mmn.py --quick         # 100,000 tickets (smoke run)
    python benchmarks/bench_mmn.py --repeat 3          # fastest of 3 interleaved runs each
    python benchmarks/bench_mmn.py --profile runs/mmn.prof   # + cProfile of capplan (top 25)
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


import numpy as np
import simpy
from baselines import BaselineResult, ciw_mmn, plain_simpy_mmn
from frametimer import FrameTimer

from simulator import simulate, single_queue
from simulator.clock import Clock
from simulator.erlang import erlang_c, mmn_mean_wait, mmn_service_level

WARMUP_FRACTION = 0.01


@dataclass(frozen=True)
class Row:
    name: str
    tickets: int
    seconds: float
    mean_wait_s: float
    p_wait: float
    service_level: float
    note: str = ""

    @property
    def tickets_per_s(self) -> float:
        return self.tickets / self.seconds if self.seconds > 0 else math.inf


def capplan_mmn(
    arrival_rate: float,
    aht_s: float,
    agents: int,
    n_tickets: int,
    seed: int,
    target_s: float,
    profile: str | None = None,
    clock: type[simpy.Environment] = Clock,
) -> tuple[Row, Row, dict[str, float]]:
    """Run the M/M/n case in capplan; rows without and with the records-frame build."""
    horizon_h = n_tickets / arrival_rate / 3600.0
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    with FrameTimer() as ft:
        if prof is not None:
            prof.enable()
        t0 = time.perf_counter()
        sc = single_queue(
            arrival_rate_per_h=arrival_rate * 3600.0,
            agents=agents,
            aht_s=aht_s,
            patience_s=None,
            horizon_h=horizon_h,
            warmup_h=WARMUP_FRACTION * horizon_h,
            target_s=target_s,
            seed=seed,
        )
        run = simulate(sc, seed=seed, clock=clock)
        total = time.perf_counter() - t0
        if prof is not None:
            prof.disable()
    if prof is not None:
        _report_profile(prof, profile)
    r = run.records
    out = r["outcome"].to_numpy()
    arr = r["arrival_s"].to_numpy()
    post = arr >= run.warmup_s
    answered = post & (out == "answered")
    order = np.argsort(arr[answered], kind="stable")
    waits = (r["answer_s"].to_numpy() - arr)[answered][order]
    n_unserved = int((post & (out == "unserved")).sum())
    stats = {
        "mean_wait_s": float(waits.mean()),
        "p_wait": float(np.mean(waits > 1e-9)),
        "service_level": float(np.mean(waits <= target_s)),
    }
    ci = {
        k: _batch_means_halfwidth(v)
        for k, v in (
            ("mean_wait_s", waits),
            ("p_wait", (waits > 1e-9).astype(float)),
            ("service_level", (waits <= target_s).astype(float)),
        )
    }
    extra = {
        "frame_s": ft.seconds,
        "unserved": n_unserved,
        "records": len(r),
        **{f"ci_{k}": v for k, v in ci.items()},
    }
    sim = Row(
        "capplan",
        int(waits.size),
        total - ft.seconds,
        **stats,
        note="build scenario + sample + run",
    )
    e2e = Row(
        "capplan + frame",
        int(waits.size),
        total,
        **stats,
        note=f"incl. records frame {ft.seconds:.2f} s",
    )
    return sim, e2e, extra


def _batch_means_halfwidth(x: np.ndarray, batches: int = 20) -> float:
    """95 % half-width of the mean by batch means (waits are autocorrelated)."""
    from scipy import stats

    n = x.size // batches
    if n < 2:
        return math.nan
    m = x[: n * batches].reshape(batches, n).mean(axis=1)
    return float(stats.t.ppf(0.975, batches - 1) * m.std(ddof=1) / math.sqrt(batches))


def _report_profile(prof, path: str, top: int = 25) -> None:
    import io
    import pstats

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(path)
    s = io.StringIO()
    pstats.Stats(prof, stream=s).strip_dirs().sort_stats("tottime").print_stats(top)
    print(f"\ncProfile of capplan (sorted by tottime; saved to {path}):")
    print(s.getvalue())


def machine() -> str:
    import ciw
    import pandas
    import simpy

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    aff = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {cpu or 'unknown CPU'}, {os.cpu_count()} cores ({aff} usable), "
        f"{platform.system()} {platform.release()}\n"
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"simpy {simpy.__version__}, ciw {ciw.__version__}, numpy {np.__version__}, "
        f"pandas {pandas.__version__}"
    )


def _rel(x: float, ref: float) -> str:
    if ref == 0 or not math.isfinite(ref):
        return "n/a"
    return f"{(x - ref) / ref:+.2%}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--tickets", type=int, default=1_000_000, help="arrivals to simulate (default 1e6)"
    )
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--rho", type=float, default=0.9, help="utilisation lambda*aht/agents")
    p.add_argument("--aht", type=float, default=300.0, help="mean handle time, s")
    p.add_argument("--target", type=float, default=20.0, help="service-level target, s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="smoke run: 100,000 tickets")
    p.add_argument(
        "--only",
        choices=("capplan", "simpy", "ciw"),
        action="append",
        help="run only these implementations (repeatable); ratios need all",
    )
    p.add_argument("--repeat", type=int, default=1, help="run each N times, keep the fastest")
    p.add_argument(
        "--profile",
        metavar="PATH",
        help="after the timed runs, profile capplan once more; save to PATH, print the top 25",
    )
    a = p.parse_args(argv)
    if a.quick:
        a.tickets = 100_000
    if not 0 < a.rho < 1:
        p.error("--rho must be in (0, 1)")
    lam = a.rho * a.agents / a.aht  # per second
    only = set(a.only or ("capplan", "simpy", "ciw"))

    print(machine())
    print(
        f"case: M/M/{a.agents}, rho={a.rho}, AHT={a.aht:.0f} s, lambda={lam * 3600:.1f}/h, "
        f"{a.tickets:,} tickets, warm-up 1 %, seed {a.seed}\n"
    )

    print(f"load average before: {_loadavg()}")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    best: dict[str, Row] = {}
    extra: dict[str, float] = {}

    def keep(row: Row) -> None:
        if row.name not in best or row.seconds < best[row.name].seconds:
            best[row.name] = row

    for _ in range(a.repeat):  # interleaved repeats; the fastest of each is kept
        if "capplan" in only:
            gc.collect()
            sim, e2e, ex = capplan_mmn(lam, a.aht, a.agents, a.tickets, a.seed, a.target)
            if "capplan" not in best or sim.seconds < best["capplan"].seconds:
                extra = ex
            keep(sim)
            keep(e2e)
            gc.collect()
            ref = capplan_mmn(lam, a.aht, a.agents, a.tickets, a.seed, a.target, clock=simpy.Environment)[0]
            keep(replace(ref, name="capplan, events", note="the same on SimPy Timeouts"))
        for key, fn in (("simpy", plain_simpy_mmn), ("ciw", ciw_mmn)):
            if key in only:
                gc.collect()
                b: BaselineResult = fn(lam, a.aht, a.agents, a.tickets, a.seed, target_s=a.target)
                keep(Row(b.name, b.tickets, b.seconds, b.mean_wait_s, b.p_wait, b.service_level))
    share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    print(
        f"load average after:  {_loadavg()}; CPU/wall of this process {share:.2f} "
        f"(1.00 = it had a core to itself; lower = other work inflated the timings)\n"
    )
    rows = list(best.values())
    base = {k: best[n] for k, n in (("simpy", "plain SimPy"), ("ciw", "Ciw")) if n in best}

    ec_p = erlang_c(a.agents, lam * a.aht)
    ec_w = mmn_mean_wait(a.agents, lam, a.aht)
    ec_sl = mmn_service_level(a.agents, lam, a.aht, a.target)

    sl = f"SL({a.target:g}s)"
    head = (
        f"{'implementation':<16}{'tickets':>10}{'seconds':>9}{'tickets/s':>11}{'/SimPy':>8}"
        f"{'/Ciw':>7}{'P(wait)':>9}{'err':>8}{'mean wait':>11}{'err':>8}{sl:>9}{'err':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        vs = {
            k: (f"{r.tickets_per_s / base[k].tickets_per_s:.2f}x" if k in base else "-")
            for k in ("simpy", "ciw")
        }
        print(
            f"{r.name:<16}{r.tickets:>10,}{r.seconds:>9.2f}{r.tickets_per_s:>11,.0f}"
            f"{vs['simpy']:>8}{vs['ciw']:>7}"
            f"{r.p_wait:>9.4f}{_rel(r.p_wait, ec_p):>8}"
            f"{r.mean_wait_s:>11.2f}{_rel(r.mean_wait_s, ec_w):>8}"
            f"{r.service_level:>9.4f}{_rel(r.service_level, ec_sl):>8}"
        )
    print(
        f"{'Erlang C':<16}{'':>10}{'':>9}{'':>11}{'':>8}{'':>7}{ec_p:>9.4f}{'':>8}"
        f"{ec_w:>11.2f}{'':>8}{ec_sl:>9.4f}{'':>8}"
    )
    if extra:
        print(
            f"\ncapplan: records frame {extra['frame_s']:.2f} s ({extra['records']:,} rows); "
            f"{extra['unserved']} tickets still queued at the horizon (not measured)."
        )
        print(
            "capplan batch-means 95 % half-widths (20 batches): "
            f"P(wait) +/-{extra['ci_p_wait']:.4f}, "
            f"mean wait +/-{extra['ci_mean_wait_s']:.2f} s, {sl} +/-{extra['ci_service_level']:.4f}"
        )
    if "capplan" in best and "simpy" in base:
        ratio = best["capplan"].tickets_per_s / base["simpy"].tickets_per_s
        verdict = "MET" if ratio >= 1.0 else "NOT MET"
        print(
            f"target 'capplan at least as fast as plain SimPy': {verdict} ({ratio:.2f}x"
            + (
                f", {best['capplan'].tickets_per_s / base['ciw'].tickets_per_s:.2f}x Ciw)"
                if "ciw" in base
                else ")"
            )
        )
    if a.profile:
        gc.collect()
        capplan_mmn(lam, a.aht, a.agents, a.tickets, a.seed, a.target, a.profile)
    return 0


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    sys.exit(main())
