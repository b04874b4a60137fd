"""The ``capplan`` command line: ``validate`` and ``simulate`` (more commands register here).

``main(argv) -> int`` runs the typer ``app`` without typer's own exit handling and maps
errors to exit codes: 0 OK, 2 invalid scenario or bad usage (one message on stderr, no
traceback), 3 infeasible or unverified plan (for the optimizer's commands).

Adding a command from another module::

    from simulator.cli import app

    @app.command()
    def calibrate(scenario: Path) -> int: ...

then list the module in ``COMMAND_MODULES`` (simulator modules) or declare it as an entry
point of group ``capplan.commands`` (other packages, e.g. the optimizer, so that the
simulator never imports them): the entry point may be a module that registers on import,
a typer app (added as a sub-command group) or a function called with ``app``.
"""

from __future__ import annotations

import functools
import shlex
import sys
import time
from collections.abc import Sequence
from importlib import import_module, metadata
from pathlib import Path
from typing import Annotated

import typer

from simulator.kpi import process_map, replicate
from simulator.loader import ScenarioError, dump_scenario, load_scenario
from simulator.report import city_summary, kpi_table, scenario_line
from simulator.rundir import RunDir, now_utc

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_PLAN", "app", "main"]

EXIT_OK, EXIT_INVALID, EXIT_PLAN = 0, 2, 3
COMMAND_MODULES: tuple[str, ...] = ()
ENTRY_POINT_GROUP = "capplan.commands"
# click's ClickException, whether typer uses click or (typer >= 0.2x) its vendored copy
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

app = typer.Typer(
    name="capplan",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help text: predictable in logs and tests
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Customer-service capacity planning: validate and simulate scenarios."""


ScenarioPath = Annotated[
    Path,
    typer.Argument(
        show_default=False,
        help="Scenario file, or a what-if file with 'base' and 'patch'.",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", metavar="KEY=VALUE",
        help="Override a field, e.g. cities.Urumqi.agent_groups.day.headcount=24 (repeatable).",
    ),
]


@app.command()
def validate(
    scenario: ScenarioPath,
    overrides: SetOption = None,
    show: Annotated[
        bool, typer.Option("--show", help="Print the resolved scenario as YAML.")
    ] = False,
) -> int:
    """Check a scenario file (with its base files and overrides); print OK and its size."""
    sc = load_scenario(scenario, overrides or ())
    if show:
        typer.echo(dump_scenario(sc), nl=False)
    typer.echo(f"OK: {scenario_line(sc)}")
    return EXIT_OK


WorkersOption = Annotated[
    int, typer.Option(min=1, help="Processes running the replications (the numbers do not change).")
]


@app.command("simulate")
def simulate_command(
    ctx: typer.Context,
    scenario: ScenarioPath,
    replications: Annotated[
        int | None,
        typer.Option(
            "--replications", "-n", min=1, help="Replications (default: the scenario's)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="Root seed (default: the scenario's).")
    ] = None,
    overrides: SetOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", file_okay=False, help="Write the run's files to this directory."
        ),
    ] = None,
    cities: Annotated[
        str | None,
        typer.Option(
            metavar="A,B", help="Simulate only these cities (and those they overflow to)."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    workers: WorkersOption = 1,
) -> int:
    """Run replications of a scenario and print mean ± 95 % half-width of key KPIs by city."""
    started, t0 = now_utc(), time.perf_counter()
    sc = load_scenario(scenario, overrides or ())
    wanted = _cities(cities, list(sc.cities))
    n = sc.replications if replications is None else replications
    root = sc.seed if seed is None else seed
    run_dir = RunDir(out) if out is not None else None
    if run_dir is not None:
        run_dir.write_text("scenario.resolved.yaml", dump_scenario(sc))
    with process_map(workers, progress, f"simulating {sc.name}") as map_fn:
        reps = replicate(sc, n, seed=root, cities=wanted, sink=run_dir, progress=progress, map_fn=map_fn)
    summary = city_summary(reps)
    typer.echo(f"{sc.name}: {n} replications, seed {root}; mean ± 95 % half-width")
    typer.echo(kpi_table(summary))
    if run_dir is not None:
        run_dir.write_csv("kpis_city.csv", reps.kpis(("city",)))
        run_dir.write_csv("kpis_summary.csv", summary)
        argv = (ctx.obj or {}).get("argv", ["capplan", *sys.argv[1:]])
        run_dir.finish({
            "scenario": sc.name,
            "scenario_file": str(Path(scenario).resolve()),
            "overrides": list(overrides or ()),
            "seed": root,
            "replications": n,
            "purpose": reps.purpose,
            "cities": wanted,
            "command": argv,
            "command_line": shlex.join(argv),
            "started_utc": started,
            "wall_s": round(time.perf_counter() - t0, 3),
        })
        typer.echo(f"wrote {out}/ ({len(run_dir.files())} files)")
    return EXIT_OK


ReplicationsOption = Annotated[
    int | None,
    typer.Option("--replications", "-n", min=2, help="Replications (default: the scenario's)."),
]
SeedOption = Annotated[int | None, typer.Option(min=0, help="Root seed (default: the scenario's).")]


@app.command("calibrate")
def calibrate_command(
    scenario: ScenarioPath,
    replications: ReplicationsOption = None,
    seed: SeedOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", dir_okay=False,
                     help="Parameters file (default: the scenario's satisfaction.parameters_file)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> int:
    """Fit the satisfaction model to the scenario's observed scores; write parameters and residuals."""
    from simulator.calibration import calibrate

    sc = load_scenario(scenario)
    target = out or sc.satisfaction.parameters_file
    if sc.satisfaction.observed is None or target is None:
        missing = "satisfaction.observed" if sc.satisfaction.observed is None else "satisfaction.parameters_file"
        raise ScenarioError(str(scenario), missing, "calibration needs observed scores and a parameters file "
                            "(set satisfaction.parameters_file or pass --out)")
    result = calibrate(sc, target, replications=replications, seed=seed, progress=progress)
    typer.echo(result.text())
    typer.echo(f"wrote {target}")
    return EXIT_OK


@app.command("compare")
def compare_command(
    base: ScenarioPath,
    whatif: ScenarioPath,
    replications: ReplicationsOption = None,
    seed: SeedOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", dir_okay=False, help="Write the full comparison as CSV.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    workers: WorkersOption = 1,
) -> int:
    """Run BASE and WHATIF under common random numbers; print each city's changes with 95 % CIs."""
    from simulator.compare import compare, verdict
    from simulator.report import comparison_table

    a, b = load_scenario(base), load_scenario(whatif)
    n = replications or max(a.replications, b.replications)
    root = a.seed if seed is None else seed
    with process_map(workers, progress, "simulating") as map_fn:
        table = compare(a, b, n, root, progress=progress, map_fn=map_fn)
    typer.echo(f"{b.name} vs {a.name}: {n} paired replications, seed {root}; "
               "change = what-if - base, * = significant at 95 %")
    typer.echo(comparison_table(table, a))
    v = verdict(table, b)
    typer.echo("\ntargets (the what-if's planning.targets; ALL = national, weighted by contacts):")
    typer.echo(v.to_string(index=False))
    misses = v.loc[~(v["score_met"] & v["first_response_met"]), "city"].tolist()
    typer.echo("verdict: every target met" if not misses else f"verdict: targets missed in {', '.join(misses)}")
    if out is not None:
        from simulator.rundir import atomic_write

        atomic_write(Path(out), lambda p: table.to_csv(p, index=False))
        typer.echo(f"wrote {out}")
    return EXIT_OK


def _cities(text: str | None, known: list[str]) -> list[str] | None:
    """``A,B`` -> the list of cities, checked against the scenario's."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in known]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown cities {unknown}; the scenario has: {', '.join(known)}", param_hint="--cities"
        )
    return names


# -- registration and the entry point ---------------------------------------------------------
@functools.cache
def _load_commands() -> None:
    """Import the modules and entry points that register further commands on ``app`` (once)."""
    for name in COMMAND_MODULES:
        import_module(name)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not take the others down
            print(f"capplan: warning: cannot load command {ep.name!r}: {e}", file=sys.stderr)
            continue
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=ep.name)
        elif callable(obj):
            obj(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``capplan`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    _load_commands()
    command = typer.main.get_command(app)
    try:
        rv = command.main(
            args=args, prog_name="capplan", standalone_mode=False, obj={"argv": ["capplan", *args]}
        )
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INVALID
    except _CLICK_ERROR as e:  # usage errors exit 2, others 1
        e.show()  # type: ignore[attr-defined]
        return int(e.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        return 1
    return rv if isinstance(rv, int) else EXIT_OK
