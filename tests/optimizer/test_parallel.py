"""``pmap``: results in the order of the items; spawned pools kept, reused and closed at exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.parallel import pmap, split

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
