"""``pmap``: results in the order of the items; spawned pools kept, reused and closed at exit;
shared values sent by name."""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import textwrap
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.parallel import _LOADED, _SHARED, _load, pmap, share, split
from optimizer.plan import CityPlan

ROOT = Path(__file__).resolve().parents[2]


def test_results_come_in_the_order_of_the_items_whatever_the_workers():
    items = [-5, 3, -1, 4, -2]
    assert pmap(abs, items, 1) == pmap(abs, items, 2) == [5, 3, 1, 4, 2]


def test_a_spawned_pool_is_started_once_and_closed_quietly_at_exit():
    code = textwrap.dedent("""
        from optimizer.parallel import _KEPT, pmap
        if __name__ == "__main__":
            first = pmap(abs, [-1, -2, -3], 2)
            pool = _KEPT[2]
            second = pmap(abs, [-4, 5], 2)
            print(first, second, _KEPT[2] is pool)
    """)
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], check=False, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1, 2, 3] [4, 5] True"
    assert "ResourceWarning" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr


def _big() -> CityPlan:
    return CityPlan("Big", hires={f"pattern{i}": i for i in range(20_000)})


def test_a_shared_value_travels_to_the_workers_as_a_name_and_arrives_whole():
    plan = share(_big())
    assert len(ForkingPickler.dumps(plan)) < 300 and len(pickle.dumps(plan)) > 100_000  # a name, not the value
    assert pmap(repr, [plan, plan, plan], 2) == [repr(plan)] * 3
    never = _big()  # the same type, not shared: whole, as before
    assert len(ForkingPickler.dumps(never)) > 100_000 and pickle.loads(ForkingPickler.dumps(never)) == never
    path = _SHARED[id(plan)][1]
    assert os.path.exists(path)
    del plan
    gc.collect()
    assert not os.path.exists(path)  # its file goes with it


def test_a_worker_keeps_a_shared_value_only_while_its_file_exists(tmp_path):
    a, b = str(tmp_path / "a.pkl"), str(tmp_path / "b.pkl")
    for path, value in ((a, [1]), (b, [2])):
        with open(path, "wb") as f:
            pickle.dump(value, f)
    first = _load(a)
    assert first == [1] and _load(a) is first  # unpickled once
    os.remove(a)
    assert _load(b) == [2] and a not in _LOADED  # the next load drops what is gone


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.1, 5000.0), min_size=1, max_size=40), st.integers(1, 6))
def test_split_keeps_every_item_once_and_balances_the_groups(weights, parts):
    items = list(range(len(weights)))
    groups = split(items, lambda i: weights[i], parts)
    assert sorted(i for g in groups for i in g) == items  # a partition
    assert len(groups) == min(parts, len(items)) and all(g == sorted(g) for g in groups)
    loads = [sum(weights[i] for i in g) for g in groups]
    assert max(loads) - min(loads) <= max(weights) + 1e-9  # no group heavier than another by more than one item


def test_the_report_s_before_after_gives_the_same_table_on_the_workers():
    from functools import partial

    import pandas as pd

    from simulator.compare import compare
    from simulator.loader import load_scenario

    small = ROOT / "scenarios" / "small.yaml"
    base = load_scenario(small)
    whatif = load_scenario(small, ["cities.Urumqi.agent_groups.uyghur_day.headcount=6"])
    serial = compare(base, whatif, 3, 11)
    pooled = compare(base, whatif, 3, 11, map_fn=partial(pmap, workers=2))
    pd.testing.assert_frame_equal(serial, pooled, check_exact=True)
    assert serial["n"].max() == 3 and serial["significant"].any()
