"""Randomness: one root seed -> independent numpy Generators keyed by name, never by call order.

A stream is identified by (purpose, replication, city, source). The key is built from
names (CRC-32 of the city, a fixed number per source), so adding a city or a source leaves
every other stream unchanged, and a sweep gives the same numbers on one worker or many.
Scenarios compared with the same root and replication share their streams: common random
numbers. ``purpose="verify"`` gives streams an optimizer never saw.
"""

from __future__ import annotations

import zlib

import numpy as np

PURPOSE = {"run": 0, "fit": 1, "verify": 2}
SOURCE = {
    "arrivals": 0,  # counts and times per interval
    "attributes": 1,  # type, tier, language of each arrival
    "handle": 2,  # handle-time draws (standardised, scaled at service)
    "patience": 3,
    "resolution": 4,  # first-contact resolution uniforms
    "chatbot": 5,
    "recontact": 6,  # retries, re-contacts, outage losses and follow-ups
    "volume": 7,  # day-to-day volume multipliers
    "outage": 8,
    "backlog": 9,
}


def stream(root: int, purpose: str, replication: int, city: str, source: str) -> np.random.Generator:
    """The generator for one city's ``source`` of randomness in one replication."""
    key = (PURPOSE[purpose], replication, zlib.crc32(city.encode()), SOURCE[source])
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(root, spawn_key=key)))


class CityStreams:
    """Lazily created generators for one city, one replication."""

    __slots__ = ("_cache", "_city", "_purpose", "_rep", "_root")

    def __init__(self, root: int, purpose: str, replication: int, city: str) -> None:
        if purpose not in PURPOSE:
            raise ValueError(f"purpose must be one of {sorted(PURPOSE)}, got {purpose!r}")
        self._root, self._purpose, self._rep, self._city = root, purpose, replication, city
        self._cache: dict[str, np.random.Generator] = {}

    def __getattr__(self, source: str) -> np.random.Generator:
        if source.startswith("_"):
            raise AttributeError(source)
        try:
            return self._cache[source]
        except KeyError:
            if source not in SOURCE:
                raise AttributeError(f"no random source {source!r}") from None
            g = self._cache[source] = stream(self._root, self._purpose, self._rep, self._city, source)
            return g
