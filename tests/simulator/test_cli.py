"""Tests for the ``capplan`` command line: exit codes, error messages and a run's output files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from simulator.cli import main
from simulator.engine import simulate
from simulator.kpi import compute_kpis
from simulator.loader import load_scenario

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
TINY = DATA / "tiny.yaml"
SMALL = ROOT / "scenarios" / "small.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return Path(shutil.copy(TINY, tmp_path / "tiny.yaml"))


def edited(tiny: Path, old: str, new: str) -> Path:
    text = tiny.read_text()
    assert old in text
    bad = tiny.parent / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    return bad


BAD = {  # name: (old text of tiny.yaml, new text, field the message must name)
    "unknown key": (
        "tickets_per_day: 600",
        "tickets_per_dya: 600",
        "cities.Lanzhou.tickets_per_dya",
    ),
    "negative rate": (
        "tickets_per_day: 600",
        "tickets_per_day: -5",
        "cities.Lanzhou.tickets_per_day",
    ),
    "shift over a day": (
        "length_h: 12",
        "length_h: 30",
        "cities.Lanzhou.agent_groups.pt_day.shift.length_h",
    ),
    "share above 1": (
        "chatbot_penetration: 0.4",
        "chatbot_penetration: 1.4",
        "cities.Lanzhou.chatbot_penetration",
    ),
    "overflow to a city that does not exist": (
        "routing: {policy: skills}",
        "routing: {policy: overflow, overflow: {to: [Atlantis]}}",
        "cities.Urumqi.routing.overflow.to",
    ),
    "malformed YAML": (
        "channel_mix: {phone: 0.7, email: 0.3}",
        "channel_mix: {phone: 0.7, email: [0.3}",
        "line 14",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_scenario_exits_2_naming_file_and_field(capsys, tiny: Path, case: str) -> None:
    old, new, field = BAD[case]
    rc, out, err = run(capsys, "validate", edited(tiny, old, new))
    assert rc == 2
    assert "bad.yaml: " in err and field in err
    assert "Traceback" not in err and out == ""


def test_missing_base_names_the_referring_file(capsys, tmp_path: Path) -> None:
    f = tmp_path / "whatif.yaml"
    f.write_text("base: nowhere/base.yaml\npatch: {seed: 1}\n")
    rc, _, err = run(capsys, "simulate", f)
    assert rc == 2 and "whatif.yaml: base: base file not found: " in err and "nowhere" in err
    assert "Traceback" not in err


def test_what_if_patch_of_a_field_that_does_not_exist(capsys, tiny: Path) -> None:
    f = tiny.parent / "whatif.yaml"
    f.write_text(
        "base: tiny.yaml\npatch:\n  cities:\n    Urumqi:\n      agent_groups:\n"
        "        - {name: ft_day, headcont: 5}\n"
    )
    rc, _, err = run(capsys, "validate", f)
    assert rc == 2 and "Traceback" not in err
    assert "whatif.yaml: cities.Urumqi.agent_groups.ft_day.headcont: unknown field" in err
    assert "did you mean 'headcount'" in err and "tiny.yaml" not in err


def test_set_of_a_path_that_does_not_exist(capsys) -> None:
    rc, _, err = run(capsys, "validate", TINY, "--set", "cities.Atlantis.tickets_per_day=4")
    assert rc == 2 and err.startswith("error: --set: cities.Atlantis.tickets_per_day: ")


def test_python_tag_is_refused_and_not_run(capsys, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    f = tmp_path / "evil.yaml"
    f.write_text(f'name: test\ncities: !!python/object/apply:os.system ["touch {marker}"]\n')
    rc, _, err = run(capsys, "validate", f)
    assert rc == 2 and "evil.yaml: cities: " in err and "python/object/apply" in err
    assert not marker.exists() and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate"],  # no scenario
        ["simulate", str(TINY), "--replications", "0"],
        ["simulate", str(TINY), "--cities", "Atlantis"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(capsys, argv: list[str]) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and "Error" in err and "Traceback" not in err


def test_validate_prints_ok_and_applies_set(capsys) -> None:
    rc, out, _ = run(capsys, "validate", SMALL)
    assert rc == 0 and out.startswith("OK: small, 3 cities, ")
    rc, out, _ = run(
        capsys,
        "validate",
        DATA / "tiny_whatif.yaml",
        "--set",
        "replications=4",
        "-s",
        "cities.Urumqi.agent_groups.uyghur.headcount=6",
    )
    assert rc == 0
    assert out.strip() == (
        "OK: tiny-more-agents, 2 cities, 5 agent groups (18 agents), 2 channels, "
        "2 ticket types, 2 tiers, 2 h, 4 replications, seed 7"
    )


def test_simulate_writes_a_complete_run(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    rc, out, err = run(
        capsys, "simulate", SMALL, "--replications", "2", "--seed", "11", "--out", out_dir
    )
    assert rc == 0, err
    for city in ("Beijing", "Hangzhou", "Urumqi", "ALL"):
        assert f"\n{city} " in out
    assert "simulating small" in err  # the progress bar, on stderr
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    assert files == [
        "kpis_city.csv",
        "kpis_summary.csv",
        "records/rep-000.parquet",
        "records/rep-001.parquet",
        "run.json",
        "scenario.resolved.yaml",
    ]  # no temp files

    meta = json.loads((out_dir / "run.json").read_text())
    assert (meta["seed"], meta["replications"], meta["purpose"]) == (11, 2, "run")
    assert set(meta["versions"]) >= {"simpy", "numpy", "pandas", "scipy", "pydantic"}
    assert meta["command"][:2] == ["capplan", "simulate"] and "source_codes" in meta["streams"]
    resolved = load_scenario(out_dir / "scenario.resolved.yaml")
    assert resolved == load_scenario(SMALL)

    per_rep = pd.read_csv(out_dir / "kpis_city.csv")
    summary = pd.read_csv(out_dir / "kpis_summary.csv")
    assert sorted(per_rep["replication"].unique()) == [0, 1]
    assert set(summary["city"]) == {"Beijing", "Hangzhou", "Urumqi", "ALL"}
    for rep in (0, 1):
        rec = pd.read_parquet(out_dir / "records" / f"rep-{rep:03d}.parquet")
        kp = per_rep[per_rep["replication"] == rep].set_index("city")
        # every record is a contact that was offered or lost to the outage
        assert len(rec) == (kp["offered"] + kp["lost"]).sum() > 1000
        assert (rec["replication"] == rep).all()
        out = rec.groupby(rec["city"].astype(str))["outcome"].value_counts().unstack(fill_value=0)
        to_agents = out["answered"] + out["abandoned"] + out["unserved"]
        pd.testing.assert_series_equal(
            (out["abandoned"] / to_agents).sort_index(),
            kp["abandon_rate"].sort_index(),
            check_names=False,
        )
        assert (out["lost"] > 0).all()  # the 14:00 outage
        assert rec["arrival_s"].between(0, 86400).all()

    # the numbers are those of simulate() with the same seed and replication
    direct = compute_kpis(
        simulate(load_scenario(SMALL), seed=11, replication=1), load_scenario(SMALL)
    )
    pd.testing.assert_frame_equal(
        direct.set_index("city")[["offered", "abandon_rate", "fcr", "occupancy"]],
        per_rep[per_rep["replication"] == 1].set_index("city")[
            ["offered", "abandon_rate", "fcr", "occupancy"]
        ],
        check_dtype=False,
        check_index_type=False,
    )


def test_rerun_into_the_same_directory_drops_stale_records(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    assert run(capsys, "simulate", TINY, "-n", "2", "--no-progress", "-o", out_dir)[0] == 0
    rc, out, _ = run(
        capsys, "simulate", TINY, "-n", "1", "--cities", "Urumqi", "--no-progress", "-o", out_dir
    )
    assert rc == 0 and "Lanzhou" not in out
    assert [p.name for p in (out_dir / "records").iterdir()] == ["rep-000.parquet"]
    assert set(pd.read_csv(out_dir / "kpis_city.csv")["city"]) == {"Urumqi"}
    assert json.loads((out_dir / "run.json").read_text())["cities"] == ["Urumqi"]


def test_simulate_on_two_workers_writes_the_same_run(capsys, tmp_path: Path) -> None:
    """``--workers 2``: the replications run in spawned processes, each writing its own records."""
    outs, dirs = [], []
    for workers in (1, 2):
        out_dir = tmp_path / f"workers{workers}"
        rc, out, err = run(capsys, "simulate", SMALL, "-n", "3", "--seed", "5", "--workers", str(workers),
                           "--no-progress", "-o", out_dir)
        assert rc == 0, err
        outs.append(out.replace(str(out_dir), "DIR"))
        dirs.append(out_dir)
    assert outs[0] == outs[1]  # the same KPI table, the same file count
    one, two = dirs
    for name in ("kpis_city.csv", "kpis_summary.csv"):
        assert (one / name).read_text() == (two / name).read_text()
    for rep in range(3):
        name = f"records/rep-{rep:03d}.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(one / name), pd.read_parquet(two / name), check_exact=True)
    meta = [json.loads((d / "run.json").read_text()) for d in dirs]
    assert meta[0]["files"] == meta[1]["files"] and "records/rep-002.parquet" in meta[0]["files"]
    assert meta[0]["record_rows"] == meta[1]["record_rows"] == sum(
        len(pd.read_parquet(one / f"records/rep-{rep:03d}.parquet")) for rep in range(3))


def test_compare_on_two_workers_prints_the_same_comparison(capsys, tmp_path: Path) -> None:
    whatif = tmp_path / "urumqi_bot.yaml"
    whatif.write_text(f"base: {SMALL}\nname: urumqi-bot\npatch:\n  cities:\n    Urumqi: {{chatbot_penetration: 0.5}}\n")
    outs = []
    for workers in (1, 2):
        rc, out, err = run(capsys, "compare", SMALL, whatif, "-n", "3", "--workers", str(workers), "--no-progress")
        assert rc == 0, err
        outs.append(out)
    assert outs[0] == outs[1] and "Urumqi" in outs[0] and "verdict:" in outs[0]


def test_installed_console_script(tmp_path: Path) -> None:
    exe = shutil.which("capplan")
    if exe is None:
        pytest.skip("capplan is not installed (pip install -e .)")
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    bad = subprocess.run(
        [exe, "validate", str(evil)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "evil.yaml" in bad.stderr and "Traceback" not in bad.stderr
    assert not marker.exists()
    good = subprocess.run(
        [sys.executable, "-m", "simulator", "validate", str(TINY)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0 and good.stdout.startswith("OK: tiny, 2 cities")


def test_other_modules_can_register_commands(capsys) -> None:
    import typer

    from simulator.cli import EXIT_PLAN, app

    @app.command("zz-plan")
    def _plan(scenario: Path) -> int:
        typer.echo(f"planned {load_scenario(scenario).name}")
        return EXIT_PLAN

    try:
        rc, out, _ = run(capsys, "zz-plan", TINY)
        assert (rc, out) == (3, "planned tiny\n")
        rc, _, err = run(capsys, "zz-plan", DATA / "nowhere.yaml")
        assert rc == 2 and "nowhere.yaml: file not found" in err
    finally:
        app.registered_commands[:] = [c for c in app.registered_commands if c.name != "zz-plan"]
