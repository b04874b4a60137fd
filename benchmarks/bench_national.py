"""Time and memory of one replication of the national month, on one core.

By default the scenario is the synthetic 32-city month of ``benchmarks/synthetic.py``
(1.5 M primary contacts); ``--scenario PATH`` loads a scenario file instead (through
``simulator.loader.load_scenario``), ``--cities N`` builds a synthetic one with N cities
(and 1.5 M x N / 32 contacts unless ``--tickets-per-month`` says otherwise).

Each measurement runs in a fresh subprocess pinned to one CPU with single-threaded
numeric libraries, so ``ru_maxrss`` is the peak of that run alone (interpreter and
imports included; the figure after imports is reported beside it). Reported: scenario
build, ``simulate`` (of which the records DataFrame), ``compute_kpis``, tickets simulated
(rows of the records frame: primary contacts incl. chatbot-deflected ones, retries,
re-contacts, backlog), tickets/s and peak memory, against the targets (< 60 s, < 2 GB).

    python benchmarks/bench_national.py                     # synthetic 32 cities
    python benchmarks/bench_national.py --cities 128        # scaling
    python benchmarks/bench_national.py --scenario scenarios/march_2025.yaml
    python benchmarks/bench_national.py --tracemalloc       # + Python-heap peak (slower, extra run)
    python benchmarks/bench_national.py --profile runs/national.prof   # + cProfile (extra run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET_S = 60.0
TARGET_BYTES = 2 * 1024**3


# ----------------------------------------------------------------------------- child side
def _maxrss_bytes() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def _build(args: dict):
    if args["scenario"]:
        try:
            from simulator.loader import load_scenario
        except ImportError as exc:  # the loader is being written elsewhere
            raise SystemExit(f"--scenario needs simulator.loader.load_scenario: {exc}") from exc
        return load_scenario(args["scenario"])
    from synthetic import national_scenario

    n = args["cities"]
    total = args["tickets_per_month"] or 1_500_000 * n / 32
    return national_scenario(n, total, seed=args["layout_seed"])


def child(args: dict) -> dict:
    """One measured replication; returns a JSON-able dict."""
    sys.path[:0] = [str(HERE), str(ROOT)]
    if hasattr(os, "sched_setaffinity") and args["pin"]:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
    import numpy as np
    import pandas as pd
    import simpy

    from simulator import simulate
    from simulator.kpi import compute_kpis

    out: dict = {"rss_after_imports": _maxrss_bytes()}
    if args["tracemalloc"]:
        import tracemalloc

        tracemalloc.start()
    prof = None
    if args["profile"]:
        import cProfile

        prof = cProfile.Profile()

    t0 = time.perf_counter()
    sc = _build(args)
    t1 = time.perf_counter()
    c1 = time.process_time()
    from frametimer import FrameTimer  # beside this script

    with FrameTimer() as ft:
        if prof is not None:
            prof.enable()
        run = simulate(sc, seed=args["seed"], replication=0)
        if prof is not None:
            prof.disable()
    t2 = time.perf_counter()
    out["simulate_cpu_s"] = time.process_time() - c1
    out["rss_after_simulate"] = _maxrss_bytes()
    kpis = compute_kpis(run, sc)
    t3 = time.perf_counter()
    national = compute_kpis(run, sc, by=())
    out["rss_peak"] = _maxrss_bytes()
    if args["tracemalloc"]:
        import tracemalloc

        out["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if prof is not None:
        import io
        import pstats

        Path(args["profile"]).parent.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(args["profile"])
        s = io.StringIO()
        pstats.Stats(prof, stream=s).strip_dirs().sort_stats("tottime").print_stats(args["top"])
        out["profile_text"] = s.getvalue()

    r = run.records
    outcome = r["outcome"].value_counts().to_dict()
    kind = r["kind"].value_counts().to_dict()
    k = national.iloc[0]
    groups = [g for c in sc.cities.values() for g in c.agent_groups]
    out.update(
        scenario=sc.name,
        cities=len(sc.cities),
        horizon_days=sc.horizon_days,
        agents=sum(g.headcount for g in groups),
        groups=len(groups),
        build_s=t1 - t0,
        simulate_s=t2 - t1,
        frame_s=ft.seconds,
        kpis_s=t3 - t2,
        records=len(r),
        records_mb=float(r.memory_usage(deep=True).sum() / 1e6),
        outcome={str(a): int(b) for a, b in outcome.items()},
        kind={str(a): int(b) for a, b in kind.items()},
        follow_ups=len(run.follow_ups),
        kpi_rows=len(kpis),
        occupancy=float(k["occupancy"]),
        abandon_rate=float(k["abandon_rate"]),
        sl_offered=float(k["sl_offered"]),
        asa_s=float(k["asa_s"]),
        versions={
            "python": platform.python_version(),
            "simpy": simpy.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
    )
    return out


# ---------------------------------------------------------------------------- parent side
def _spawn(args: dict) -> dict:
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[v] = "1"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"child run failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--scenario", metavar="PATH", help="scenario file (via simulator.loader.load_scenario)"
    )
    src.add_argument(
        "--cities", type=int, default=32, help="synthetic scenario with N cities (default 32)"
    )
    p.add_argument(
        "--tickets-per-month",
        type=float,
        default=None,
        help="synthetic primary contacts per month (default 1.5M x cities / 32)",
    )
    p.add_argument("--layout-seed", type=int, default=2025, help="seed of the synthetic layout")
    p.add_argument("--seed", type=int, default=1, help="simulation seed")
    p.add_argument(
        "--repeat", type=int, default=1, help="measured runs (fresh process each); fastest kept"
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin the child to one CPU")
    p.add_argument(
        "--tracemalloc", action="store_true", help="extra run with tracemalloc (Python-heap peak)"
    )
    p.add_argument(
        "--profile", metavar="PATH", help="extra run of simulate() under cProfile; save and print"
    )
    p.add_argument("--top", type=int, default=30, help="profile lines to print")
    p.add_argument("--json", metavar="PATH", help="also write the measurements as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.child is not None:
        print(json.dumps(child(json.loads(a.child))))
        return 0

    base = {
        "scenario": a.scenario,
        "cities": a.cities,
        "tickets_per_month": a.tickets_per_month,
        "layout_seed": a.layout_seed,
        "seed": a.seed,
        "pin": not a.no_pin,
        "tracemalloc": False,
        "profile": None,
        "top": a.top,
    }
    print(
        f"machine: {_cpu()}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; "
        f"one replication per fresh process{', pinned to one CPU' if base['pin'] else ''}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    runs = []
    for _ in range(max(1, a.repeat)):
        runs.append(_spawn(base))
    m = min(runs, key=lambda r: r["simulate_s"])
    v = m["versions"]
    print(f"python {v['python']}, simpy {v['simpy']}, numpy {v['numpy']}, pandas {v['pandas']}")
    print(
        f"scenario: {m['scenario']} - {m['cities']} cities, {m['horizon_days']:g} days, "
        f"{m['agents']:,} agents in {m['groups']} groups"
    )
    sim_only = m["simulate_s"] - m["frame_s"]
    total = m["build_s"] + m["simulate_s"] + m["kpis_s"]
    prim = m["kind"].get("primary", 0)
    answered = m["outcome"].get("answered", 0)
    rows = [
        ("tickets simulated (records)", f"{m['records']:,}"),
        ("  of which primary / answered by agents", f"{prim:,} / {answered:,}"),
        ("  outcomes", ", ".join(f"{k} {n:,}" for k, n in m["outcome"].items() if n)),
        ("  kinds", ", ".join(f"{k} {n:,}" for k, n in m["kind"].items() if n)),
        ("scenario build", f"{m['build_s']:.2f} s"),
        (
            "simulate() (sample + run + frames)",
            f"{m['simulate_s']:.2f} s wall, {m['simulate_cpu_s']:.2f} s CPU"
            + (
                "  <- CPU << wall: the machine was busy"
                if m["simulate_cpu_s"] < 0.9 * m["simulate_s"]
                else ""
            ),
        ),
        ("  of which records DataFrame", f"{m['frame_s']:.2f} s"),
        ("compute_kpis (by city)", f"{m['kpis_s']:.2f} s"),
        ("total (build + simulate + KPIs)", f"{total:.2f} s"),
        ("tickets/s (simulate, excl. frame)", f"{m['records'] / sim_only:,.0f}"),
        ("tickets/s (build + simulate + KPIs)", f"{m['records'] / total:,.0f}"),
        ("peak RSS (ru_maxrss)", _mb(m["rss_peak"])),
        (
            "  after imports / after simulate",
            f"{_mb(m['rss_after_imports'])} / {_mb(m['rss_after_simulate'])}",
        ),
        ("records frame in memory", f"{m['records_mb']:,.0f} MB"),
        (
            "national KPIs (sanity)",
            (
                f"occupancy {m['occupancy']:.3f}, abandon {m['abandon_rate']:.3f}, "
                f"SL(offered) {m['sl_offered']:.3f}, ASA {m['asa_s']:.1f} s"
            ),
        ),
    ]
    if len(runs) > 1:
        rows.insert(
            6, ("  simulate() over runs", ", ".join(f"{r['simulate_s']:.2f}" for r in runs) + " s")
        )
    w = max(len(k) for k, _ in rows)
    for k, val in rows:
        print(f"  {k:<{w}}  {val}")
    ok_t = total < TARGET_S
    ok_m = m["rss_peak"] < TARGET_BYTES
    print(
        f"targets: time < {TARGET_S:.0f} s {'MET' if ok_t else 'NOT MET'} ({total:.1f} s); "
        f"peak < 2 GiB {'MET' if ok_m else 'NOT MET'} ({_mb(m['rss_peak'])})"
    )

    if a.tracemalloc:
        t = _spawn({**base, "tracemalloc": True})
        print(
            f"tracemalloc (extra run, slower): Python-heap peak {_mb(t['tracemalloc_peak'])}, "
            f"RSS peak {_mb(t['rss_peak'])}, simulate {t['simulate_s']:.1f} s under tracing"
        )
        m["tracemalloc_peak"] = t["tracemalloc_peak"]
    if a.profile:
        pr = _spawn({**base, "profile": a.profile})
        print(
            f"\ncProfile of simulate() (extra run, {pr['simulate_s']:.1f} s under profiling; "
            f"saved to {a.profile}):"
        )
        print(pr["profile_text"])
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"best": m, "runs": runs}, indent=2))
    return 0 if (ok_t and ok_m) else 1


if __name__ == "__main__":
    sys.exit(main())
