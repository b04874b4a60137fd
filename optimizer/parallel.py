"""Process-parallel map for work that is independent by city or by replication.

Simulations run in forked workers: they inherit the parent's modules and data. Solver jobs
run in *spawned* workers (``start="spawn"``): HiGHS keeps a thread pool in the process that
used it, and a forked copy of that pool deadlocks. With ``workers <= 1`` or one item,
everything runs in this process. Results are in the order of the items, so the numbers do
not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["pmap"]


def pmap(fn: Callable[[T], R], items: Sequence[T], workers: int, start: str = "fork") -> list[R]:
    """``[fn(x) for x in items]``, on up to ``workers`` processes started by ``start``."""
    items = list(items)
    if workers <= 1 or len(items) <= 1 or start not in mp.get_all_start_methods():
        return [fn(x) for x in items]
    with mp.get_context(start).Pool(min(workers, len(items))) as pool:
        return pool.map(fn, items, chunksize=1)
