"""``capplan plan``: exit 3 with the binding targets and the best reachable plan; exit 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simulator.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "scenarios" / "small.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_unreachable_targets_exit_3_with_the_binding_targets_and_the_best_plan(capsys, tmp_path: Path) -> None:
    out = tmp_path / "plan"
    rc, text, err = run(capsys, "plan", SMALL, "--out", out, "--set", "planning.targets.national_score_min=99")
    assert rc == 3, err
    assert "targets no plan can reach" in text and "national_score" in text
    assert "Traceback" not in text + err
    binding = pd.read_csv(out / "binding_targets.csv")
    nat = binding[binding["target"] == "national_score"]
    assert len(nat) == 1 and float(nat["best"].iloc[0]) < 99.0  # the best value reachable, below the ask
    # the best reachable plan is still written in full: actions, before/after, charts, summary
    assert (out / "plan_actions.csv").exists() and (out / "plan.md").exists()
    assert {p.name for p in out.glob("*.png")} >= {"scores_before_after.png", "cost_by_city.png"}
    assert "exit 3" in (out / "plan_summary.txt").read_text()
    assert "Targets no plan can reach" in (out / "plan.md").read_text()


@pytest.mark.parametrize("argv, field", [
    (["plan", ROOT / "scenarios" / "nowhere.yaml"], "nowhere.yaml"),
    (["plan", SMALL, "--set", "planning.max_hires_per_city=-1"], "planning.max_hires_per_city"),
    (["plan", SMALL, "--set", "planning.targets.city_score_mni=88"], "planning.targets.city_score_mni"),
])
def test_bad_input_exits_2_naming_the_field(capsys, argv: list, field: str) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and field in err and "Traceback" not in err
