"""Time spent building the records DataFrame inside ``simulate`` (shared by the benchmarks).

It wraps ``Recorder.frame`` for the duration of a ``with`` block; no simulator code changes.
"""

from __future__ import annotations

import time
from typing import Self

from simulator import entities as _entities


class FrameTimer:
    """Times ``Recorder.frame`` (the records DataFrame build inside ``simulate``).

    The class attribute is wrapped for the duration of the ``with`` block only; the
    simulator's code is not modified.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._orig = None

    def __enter__(self) -> Self:
        self._orig = orig = _entities.Recorder.frame

        def timed(rec):
            t0 = time.perf_counter()
            try:
                return orig(rec)
            finally:
                self.seconds += time.perf_counter() - t0

        _entities.Recorder.frame = timed
        return self

    def __exit__(self, *exc: object) -> None:
        _entities.Recorder.frame = self._orig
