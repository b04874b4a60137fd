"""Reproducibility and common random numbers (style guide section 6.4).

Randomness depends only on (seed, purpose, replication, city, source), never on call order,
on the other cities of the scenario or on Python's hash randomisation. So:

- the same key gives an identical records frame;
- a change confined to one city (staffing, routing, chatbot) leaves every other city's
  records identical, and that city's primary arrivals identical;
- adding a city leaves the others' records identical;
- a city simulated alone gives exactly its rows of the full run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from simulator import simulate
from simulator.kpi import process_map, replicate
from simulator.scenario import AgentGroup, City, Routing, Scenario, Shift

ROOT = Path(__file__).resolve().parents[2]
PRIMARY_COLS = ["arrival_s", "channel", "ticket_type", "tier", "language"]


def _primary(records: pd.DataFrame, city: str, h) -> pd.DataFrame:
    """A city's primary arrivals (who came, when, wanting what), sorted by arrival."""
    r = records[(records["city"] == city) & (records["kind"] == "primary")]
    return h.plain(r[PRIMARY_COLS].sort_values("arrival_s"))


def _city_rows(records: pd.DataFrame, city: str) -> pd.DataFrame:
    return records[records["city"] == city].reset_index(drop=True)


def test_same_key_gives_identical_frames(three_city):
    a = simulate(three_city, seed=5, replication=2)
    b = simulate(three_city, seed=5, replication=2)
    assert len(a.records) > 500
    assert set(a.records["outcome"]) >= {"answered", "abandoned", "deflected"}
    pd.testing.assert_frame_equal(a.records, b.records, check_exact=True)
    pd.testing.assert_frame_equal(a.agents, b.agents, check_exact=True)
    pd.testing.assert_frame_equal(a.follow_ups, b.follow_ups, check_exact=True)


def test_scenario_seed_is_the_default_key(three_city):
    a = simulate(three_city)
    b = simulate(three_city, seed=three_city.seed, replication=0)
    pd.testing.assert_frame_equal(a.records, b.records, check_exact=True)


@pytest.mark.parametrize("other", [{"replication": 1}, {"seed": 6}], ids=["replication", "seed"])
def test_another_key_gives_other_arrivals(three_city, other, h):
    base = simulate(three_city, seed=5, replication=0)
    run = simulate(three_city, **{"seed": 5, "replication": 0, **other})
    for city in three_city.cities:
        x, y = _primary(base.records, city, h), _primary(run.records, city, h)
        # continuous arrival times: two independent streams share no value
        assert not set(x["arrival_s"]) & set(y["arrival_s"]), city


def test_verify_purpose_gives_streams_the_optimizer_never_saw(three_city, h):
    run = simulate(three_city, seed=5, purpose="run")
    ver = simulate(three_city, seed=5, purpose="verify")
    ver2 = simulate(three_city, seed=5, purpose="verify")
    pd.testing.assert_frame_equal(ver.records, ver2.records, check_exact=True)
    for city in three_city.cities:
        x, y = _primary(run.records, city, h), _primary(ver.records, city, h)
        assert not set(x["arrival_s"]) & set(y["arrival_s"]), city
    with pytest.raises(ValueError, match="purpose"):
        simulate(three_city, purpose="tuning")


def _bexley_changes() -> dict[str, dict]:
    return {
        "staffing": {
            "agent_groups": (
                AgentGroup(name="day", headcount=6, shift=Shift(start_h=0.0, length_h=8.0)),
                AgentGroup(name="late", headcount=1, shift=Shift(start_h=6.0, length_h=6.0)),
            )
        },
        "routing": {"routing": Routing(policy="fifo")},
        "chatbot": {"chatbot_penetration": 0.8},
        "priority": {"routing": Routing(policy="priority")},
    }


@pytest.mark.parametrize("change", sorted(_bexley_changes()))
def test_change_in_one_city_keeps_crn(three_city, change, h, records_equal):
    """Bexley changes: Alma and Corvo are untouched, Bexley's arrivals are the same people."""
    base = simulate(three_city, seed=3, replication=1)
    changed_sc = h.with_city(three_city, "Bexley", **_bexley_changes()[change])
    run = simulate(changed_sc, seed=3, replication=1)

    for city in ("Alma", "Corvo"):
        records_equal(_city_rows(base.records, city), _city_rows(run.records, city))
    pd.testing.assert_frame_equal(
        _primary(base.records, "Bexley", h), _primary(run.records, "Bexley", h), check_exact=True
    )
    # the change did something (otherwise the test proves nothing)
    b0, b1 = _city_rows(base.records, "Bexley"), _city_rows(run.records, "Bexley")
    assert not h.plain(b0).equals(h.plain(b1))


def test_handle_times_are_common_random_numbers_too(three_city, h):
    """Doubling Bexley's staff changes who waits, not the sampled handle times (same stream)."""
    a = h.sampled_arrivals(three_city, "Bexley", seed=3, replication=1)
    sc = h.with_city(three_city, "Bexley", agent_groups=(AgentGroup(name="x", headcount=12),))
    b = h.sampled_arrivals(sc, "Bexley", seed=3, replication=1)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize("where", ["first", "last"])
def test_adding_a_city_leaves_the_others_unchanged(three_city, where, h, records_equal):
    """A new city (with a language that sorts first, so codes shift) changes nobody else."""
    new = City(
        tickets_per_day=300.0,
        languages={"aymara": 0.4},
        routing=Routing(policy="skills"),
        agent_groups=(AgentGroup(name="all", headcount=3), AgentGroup(name="ay", headcount=1,
                                                                       languages=("aymara",))),
    )
    cities = {"Aardvark": new, **three_city.cities} if where == "first" else {**three_city.cities, "Zeal": new}
    bigger = Scenario.model_validate({**three_city.model_dump(), "cities": cities})
    base = simulate(three_city, seed=9)
    run = simulate(bigger, seed=9)
    for city in three_city.cities:
        records_equal(_city_rows(base.records, city), _city_rows(run.records, city))
    newname = next(iter(set(bigger.cities) - set(three_city.cities)))
    assert (run.records["city"] == newname).sum() > 50


@pytest.mark.parametrize("city", ["Alma", "Bexley"])
def test_city_alone_equals_its_rows_of_the_full_run(three_city, city):
    full = simulate(three_city, seed=4, replication=3)
    alone = simulate(three_city, seed=4, replication=3, cities=[city])
    assert alone.cities == (city,)
    assert set(alone.records["city"]) == {city}
    pd.testing.assert_frame_equal(alone.records, _city_rows(full.records, city), check_exact=True)
    fa = full.agents[full.agents["city"] == city].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.agents.reset_index(drop=True), fa, check_exact=True)
    with pytest.raises(ValueError, match="unknown cities"):
        simulate(three_city, cities=["Atlantis"])


def test_replications_on_workers_give_the_frames_of_one_process(three_city):
    """``replicate(map_fn=...)``: the same replications as separate jobs on spawned workers."""
    groupings = (("city",), ("city", "channel"), ())
    serial = replicate(three_city, 4, seed=6, purpose="verify", groupings=groupings, start=1)
    with process_map(2) as map_fn:
        pooled = replicate(three_city, 4, seed=6, purpose="verify", groupings=groupings, start=1, map_fn=map_fn)
    for by in groupings:
        pd.testing.assert_frame_equal(pooled.kpis(by), serial.kpis(by), check_exact=True)
    assert sorted(pooled.kpis(())["replication"]) == [1, 2, 3]


_CHILD = r"""
import json, sys, hashlib
import pandas as pd
from simulator import simulate
from simulator.scenario import Scenario
sc = Scenario.model_validate_json(sys.stdin.read())
# call order perturbed: other replications, another purpose and a lone city first
simulate(sc, seed=8, replication=7)
simulate(sc, seed=8, replication=0, purpose="verify", cities=["Corvo"])
{digest}
run = simulate(sc, seed=8, replication=0)
print(json.dumps({{"records": frame_digest(run.records), "agents": frame_digest(run.agents)}}))
"""


def _digest_source() -> str:
    """The digest function's source, shared by parent and child (conftest is not importable)."""
    return (
        "def frame_digest(frame):\n"
        "    out = frame.copy()\n"
        "    for c in out.columns:\n"
        "        if isinstance(out[c].dtype, pd.CategoricalDtype):\n"
        "            out[c] = out[c].astype(object).where(out[c].notna(), None)\n"
        "    hv = pd.util.hash_pandas_object(out.reset_index(drop=True).astype(str), index=False)\n"
        "    return hashlib.sha256(hv.to_numpy().tobytes()).hexdigest()\n"
    )


def test_fresh_interpreters_give_the_same_numbers(three_city, h):
    """Two fresh processes with different hash seeds and call orders reproduce this process."""
    ns: dict = {}
    exec("import hashlib\nimport pandas as pd\n" + _digest_source(), ns)  # noqa: S102
    run = simulate(three_city, seed=8, replication=0)
    expected = {"records": ns["frame_digest"](run.records), "agents": ns["frame_digest"](run.agents)}
    assert expected["records"] == h.frame_digest(run.records)

    code = _CHILD.format(digest=_digest_source())
    procs = []
    for hashseed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(ROOT)}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        )
    payload = three_city.model_dump_json()
    for p in procs:
        out, err = p.communicate(payload, timeout=120)
        assert p.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == expected
